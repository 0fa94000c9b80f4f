//! Layers: one module per layer family, named as in shaders/ and src/reference/.
//!
//! Each op is created once per (layer, input shape, batch) with `new`, which validates the
//! shapes and writes its uniform buffer; its `forward` / `backward_*` methods take the
//! tensors they read and write, check their shapes (errors name the layer), and return
//! `Dispatch`es that are recorded once and replayed every step.
//!
//! Beside the layers: the model spec (`spec`), the network that wires them (`network`) and
//! its checkpoints (`checkpoint`, safetensors), which training, prediction and the
//! explanations all read.

pub mod activation;
pub mod augment;
pub mod batchnorm;
pub mod checkpoint;
pub mod conv2d;
pub mod dense;
pub mod dropout;
pub mod fuse;
pub mod layer;
pub mod loss_scale;
pub mod memory;
pub mod network;
pub mod optim;
pub mod params;
pub mod pad;
pub mod pool;
pub mod precision;
pub mod softmax_xent;
pub mod spec;

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

/// The `ACCUMULATE` override of kernels that reduce over the batch (weight, bias, BN and
/// PReLU gradients; BN statistics): false overwrites the output, true adds to it, so a batch
/// processed as several chunks sums its contributions.
pub fn accumulate_constant(accumulate: bool) -> (&'static str, f64) {
    ("ACCUMULATE", if accumulate { 1.0 } else { 0.0 })
}

/// A size as a u32 for a uniform, or an error naming the layer.
pub fn u32_of(layer: &str, what: &str, v: usize) -> Result<u32> {
    u32::try_from(v).map_err(|_| crate::Error::new(format!("layer {layer}: {what}={v} does not fit in 32 bits")))
}

/// Spatial padding of a convolution or pooling window, per axis.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Padding {
    /// No padding: out = floor((in - k) / stride) + 1.
    Valid,
    /// Keras / TensorFlow "same": out = ceil(in / stride); the extra row/column goes to the
    /// bottom/right when the total padding is odd.
    Same,
    /// Explicit zeros: (top, bottom, left, right).
    Explicit { top: usize, bottom: usize, left: usize, right: usize },
}

/// Padding before and after along one axis and the output size, for input `len`, window
/// `k`, `stride`. `before_after` is used only by `Padding::Explicit`.
pub fn resolve_axis(layer: &str, padding: Padding, len: usize, k: usize, stride: usize, before_after: (usize, usize)) -> Result<(usize, usize, usize)> {
    ensure!(k > 0 && stride > 0, "layer {layer}: window {k} and stride {stride} must be positive");
    let (before, after) = match padding {
        Padding::Valid => (0, 0),
        Padding::Same => {
            let out = len.div_ceil(stride);
            let total = ((out - 1) * stride + k).saturating_sub(len);
            (total / 2, total - total / 2)
        }
        Padding::Explicit { .. } => before_after,
    };
    let padded = len + before + after;
    ensure!(padded >= k, "layer {layer}: window {k} is larger than the padded input {padded} (input {len}, padding {before}+{after})");
    Ok((before, after, (padded - k) / stride + 1))
}

/// Resolve padding for both axes of an `[N, C, H, W]` input with window `(kh, kw)` and
/// `stride`: returns (pad_top, pad_left, out_h, out_w).
pub fn resolve_padding(layer: &str, padding: Padding, h: usize, w: usize, k: (usize, usize), stride: (usize, usize)) -> Result<(usize, usize, usize, usize)> {
    let (tb, lr) = match padding {
        Padding::Explicit { top, bottom, left, right } => ((top, bottom), (left, right)),
        _ => ((0, 0), (0, 0)),
    };
    let (top, _, oh) = resolve_axis(layer, padding, h, k.0, stride.0, tb)?;
    let (left, _, ow) = resolve_axis(layer, padding, w, k.1, stride.1, lr)?;
    Ok((top, left, oh, ow))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_padding_matches_keras() {
        // 48 -> 48 with a 3x3 window; stride 2 gives ceil(48/2) = 24 with one pad at the end.
        assert_eq!(resolve_axis("t", Padding::Same, 48, 3, 1, (0, 0)).unwrap(), (1, 1, 48));
        assert_eq!(resolve_axis("t", Padding::Same, 48, 3, 2, (0, 0)).unwrap(), (0, 1, 24));
        assert_eq!(resolve_axis("t", Padding::Same, 7, 2, 2, (0, 0)).unwrap(), (0, 1, 4));
        assert_eq!(resolve_axis("t", Padding::Valid, 7, 2, 2, (0, 0)).unwrap(), (0, 0, 3));
        assert!(resolve_axis("conv9", Padding::Valid, 2, 3, 1, (0, 0)).unwrap_err().to_string().contains("conv9"));
    }
}
