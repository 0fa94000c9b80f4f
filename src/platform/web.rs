//! The browser side: nothing may block (the GPU's answers arrive only when the page returns
//! to the event loop), there is no terminal.

use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

/// Complete `f` only if it is already complete at its first poll (no GPU readback in it);
/// else panic: blocking in a browser tab would hang it. The page calls the `_async` forms.
pub fn block_on<F: Future>(f: F) -> F::Output {
    let mut f = pin!(f);
    match f.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(v) => v,
        Poll::Pending => panic!("a blocking mien call was made in a browser; await its _async form"),
    }
}

/// No terminal: the page shows its own progress (the Train panel's chart).
pub struct Progress;

impl Progress {
    pub fn new(_visible: bool, _images: u64, _epoch: usize, _epochs: usize) -> Progress {
        Progress
    }
    pub fn inc(&self, _n: u64) {}
    pub fn set_message(&self, _msg: String) {}
    pub fn finish_and_clear(&self) {}
}

/// plotters in a browser draws text with the page's own fonts (no registration there); the
/// page draws its pictures on canvases and never calls mien's PNG renderers.
pub fn register_font(_name: &str, _style: plotters::style::FontStyle, _bytes: &'static [u8]) -> bool {
    true
}
