//! A one-value channel whose receiver is a future: the bridge from wgpu's `map_async`
//! callback to an `.await` (natively the callback runs inside a blocking device poll; in a
//! browser when the JS promise resolves).

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};

struct Shared<T> {
    value: Option<T>,
    waker: Option<Waker>,
    sender_dropped: bool,
}

pub struct Sender<T>(Arc<Mutex<Shared<T>>>);
pub struct Receiver<T>(Arc<Mutex<Shared<T>>>);

pub fn oneshot<T>() -> (Sender<T>, Receiver<T>) {
    let s = Arc::new(Mutex::new(Shared { value: None, waker: None, sender_dropped: false }));
    (Sender(s.clone()), Receiver(s))
}

impl<T> Sender<T> {
    pub fn send(self, value: T) {
        let mut s = self.0.lock().unwrap();
        s.value = Some(value);
        if let Some(w) = s.waker.take() {
            w.wake();
        }
    }
}

impl<T> Drop for Sender<T> {
    fn drop(&mut self) {
        let mut s = self.0.lock().unwrap();
        s.sender_dropped = true;
        if let Some(w) = s.waker.take() {
            w.wake();
        }
    }
}

impl<T> Future for Receiver<T> {
    /// None when the sender was dropped without sending (the callback never ran).
    type Output = Option<T>;
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<T>> {
        let mut s = self.0.lock().unwrap();
        if let Some(v) = s.value.take() {
            return Poll::Ready(Some(v));
        }
        if s.sender_dropped {
            return Poll::Ready(None);
        }
        s.waker = Some(cx.waker().clone());
        Poll::Pending
    }
}
