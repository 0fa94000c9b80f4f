//! pool: not written yet.
