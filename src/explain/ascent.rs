//! ascent: not written yet.
