//! batchnorm: not written yet.
