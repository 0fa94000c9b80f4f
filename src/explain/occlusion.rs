//! occlusion: not written yet.
