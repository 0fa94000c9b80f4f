//! pad: not written yet.
