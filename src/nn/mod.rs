//! Layers: one module per layer family, named as in shaders/ and src/reference/.
//!
//! Each op is created once per (layer, input shape, batch) with `new`, which validates the
//! shapes and writes its uniform buffer; its `forward` / `backward_*` methods take the
//! tensors they read and write, check their shapes (errors name the layer), and return
//! `Dispatch`es that are recorded once and replayed every step.

pub mod activation;
pub mod batchnorm;
pub mod conv2d;
pub mod dense;
pub mod dropout;
pub mod optim;
pub mod pad;
pub mod pool;
pub mod softmax_xent;

use crate::{ensure, Result};

/// Split an activation shape `[N, C, ...spatial]` into (N, C, S = product of spatial dims).
/// `[N, F]` (after a dense layer) gives (N, F, 1).
pub fn nc_s(layer: &str, shape: &[usize]) -> Result<(usize, usize, usize)> {
    ensure!(shape.len() >= 2, "layer {layer}: input shape {shape:?} needs at least [N, C]");
    ensure!(shape.iter().all(|&d| d > 0), "layer {layer}: input shape {shape:?} has a zero dimension");
    Ok((shape[0], shape[1], shape[2..].iter().product()))
}

/// Error unless `shape` is `[N, C, H, W]`; returns it as an array.
pub fn nchw(layer: &str, shape: &[usize]) -> Result<[usize; 4]> {
    ensure!(shape.len() == 4, "layer {layer}: input shape {shape:?} is not [N, C, H, W]");
    ensure!(shape.iter().all(|&d| d > 0), "layer {layer}: input shape {shape:?} has a zero dimension");
    Ok([shape[0], shape[1], shape[2], shape[3]])
}

/// A size as a u32 for a uniform, or an error naming the layer.
pub fn u32_of(layer: &str, what: &str, v: usize) -> Result<u32> {
    u32::try_from(v).map_err(|_| crate::Error::new(format!("layer {layer}: {what}={v} does not fit in 32 bits")))
}
