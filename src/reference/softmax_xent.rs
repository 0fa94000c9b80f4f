//! softmax_xent: not written yet.
