//! optim: not written yet.
