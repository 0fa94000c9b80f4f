//! gradcam: not written yet.
