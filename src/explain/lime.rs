//! lime: not written yet.
