//! One error type for everything a user can cause: files, flags, shapes, device limits.
//! The message names the file / line / layer and what was expected; panics are for bugs.

use std::fmt;

#[derive(Debug, Clone, PartialEq)]
pub struct Error(pub String);

pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    pub fn new(msg: impl Into<String>) -> Self {
        Error(msg.into())
    }
    /// Prefix the message with where it happened (a layer, a file).
    pub fn context(self, what: impl fmt::Display) -> Self {
        Error(format!("{what}: {}", self.0))
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Error {}

/// `bail!("layer {name}: expected {x}")` returns `Err(Error)` from the current function.
#[macro_export]
macro_rules! bail {
    ($($arg:tt)*) => { return Err($crate::Error::new(format!($($arg)*))) };
}

/// `ensure!(cond, "message")` bails when `cond` is false.
#[macro_export]
macro_rules! ensure {
    // The condition is bound first so that `!` negates a bool, not a float comparison (a
    // NaN fails `ensure!(x >= 0.0, ..)` either way).
    ($cond:expr, $($arg:tt)*) => {{ let ok: bool = $cond; if !ok { $crate::bail!($($arg)*); } }};
}
