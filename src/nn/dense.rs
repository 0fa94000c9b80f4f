//! dense: not written yet.
