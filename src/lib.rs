//! mien: facial-expression CNNs trained on any GPU that wgpu reaches, with hand-written
//! WGSL compute shaders (`shaders/`), checked against a plain f64 CPU reference
//! (`reference`). See DESIGN.md in the shared notes and README.md.

pub mod data;
pub mod error;
pub mod explain;
pub mod gpu;
pub mod io;
pub mod nn;
pub mod platform;
pub mod reference;
pub mod render;
pub mod rng;
pub mod train;

pub use error::{Error, Result};
pub use gpu::{Dispatch, Gpu, Tensor};
/// The wgpu this build of mien uses (the page's crate reads its feature flags).
pub use wgpu;
