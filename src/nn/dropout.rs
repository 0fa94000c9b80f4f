//! dropout: not written yet.
