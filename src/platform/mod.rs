//! The platform seam: the one place that knows whether mien runs as a native process or in
//! a browser tab (wasm32 with wgpu's WebGPU backend). Everything above it is the same code.
//!
//! - Readbacks are async at the core (`Gpu::read_async`: `map_async`, then await the
//!   callback). Natively `block_on` drives them to completion with a blocking device poll,
//!   so the sync forms (`Gpu::read`, `Model::probabilities`, ...) keep their behaviour; in a
//!   browser the page awaits the `_async` forms and the sync forms refuse to block (a panic
//!   naming the call: a bug in the page, not something a user can cause).
//! - `Progress`: the terminal progress bar natively (indicatif), silent in a browser (the
//!   page draws its own chart).
//! - `Instant`: `web_time::Instant`, std's natively and `performance.now()` in a browser.
//! - `cli_main` (binaries only): logging to stderr and `error: ...` exits.
//!
//! Files (`std::fs`) compile everywhere and fail with an error in a browser; the page passes
//! bytes instead (`checkpoint::read_bytes`, `save_bytes`).

pub use web_time::{Instant, SystemTime, UNIX_EPOCH};

mod oneshot;
pub use oneshot::{oneshot, Receiver, Sender};

#[cfg(feature = "native")]
mod native;
#[cfg(feature = "native")]
pub use native::*;

#[cfg(not(feature = "native"))]
mod web;
#[cfg(not(feature = "native"))]
pub use web::*;
