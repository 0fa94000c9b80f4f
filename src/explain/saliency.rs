//! saliency: not written yet.
