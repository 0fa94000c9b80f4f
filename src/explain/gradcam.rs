//! Grad-CAM (Selvaraju et al. 2017) and Grad-CAM++ (Chattopadhay et al. 2018) for any
//! convolution layer.
//!
//! The activations A [K, h', w'] are the conv block's output (`Model::block_output`: after
//! its BatchNorm and activation, as Keras users read a conv layer with a fused
//! activation), and dY_c / dA comes from the network's inference backward from the logits
//! (one-hot on class c) down to that layer, both on the GPU, batched. The channel weights
//! and the weighted sum ReLU(sum_k w_k A_k) are a small reduction over K*h'*w' values per
//! image, done on the CPU in f64 ([`channel_weights`], [`weighted_map`]); the coarse map is
//! upsampled to the input size with `render::resize_bilinear`.

use super::saliency::{argmax, image_count, Target};
use super::Model;
use crate::gpu::Gpu;
use crate::render::resize_bilinear;
use crate::{bail, ensure, Error, Result};

/// Which convolution layer to explain.
#[derive(Debug, Clone, PartialEq, Default)]
pub enum LayerChoice {
    /// The model's last convolution.
    #[default]
    LastConv,
    /// A conv layer by index in `model.net.layers`.
    Index(usize),
    /// A conv layer by name (`conv2d_3`).
    Name(String),
}

/// Grad-CAM settings.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct GradCamOptions {
    pub layer: LayerChoice,
    pub target: Target,
    /// Grad-CAM++ weights instead of the spatial mean of the gradients.
    pub plus_plus: bool,
}

/// Grad-CAM maps of a set of images.
#[derive(Debug, Clone)]
pub struct GradCam {
    /// [n, H*W]: the coarse maps upsampled to the input size (bilinear), >= 0.
    pub maps: Vec<f32>,
    /// [n, h'*w']: ReLU(sum_k w_k A_k) at the layer's resolution.
    pub coarse: Vec<f32>,
    pub coarse_hw: (usize, usize),
    /// [n, K]: the channel weights.
    pub weights: Vec<f32>,
    pub classes: Vec<u32>,
    /// The conv layer chosen and the layer whose output was read (its block output).
    pub conv: usize,
    pub layer: usize,
    pub hw: (usize, usize),
}

impl GradCam {
    pub fn len(&self) -> usize {
        self.classes.len()
    }
    pub fn is_empty(&self) -> bool {
        self.classes.is_empty()
    }
    /// The upsampled map [H*W] of image i.
    pub fn map(&self, i: usize) -> &[f32] {
        let s = self.hw.0 * self.hw.1;
        &self.maps[i * s..(i + 1) * s]
    }
}

/// The conv layer `choice` names. An unknown name lists the model's layers; an index out
/// of range or a layer that is not a convolution names the conv layers.
pub fn conv_layer(model: &Model, choice: &LayerChoice) -> Result<usize> {
    let convs = model.conv_layers();
    let names = |v: &[usize]| v.iter().map(|&i| model.net.layers[i].name.as_str()).collect::<Vec<_>>().join(", ");
    if convs.is_empty() {
        bail!("model {} has no convolution layer: Grad-CAM needs one (use a saliency method instead)", model.net.spec.name);
    }
    let i = match choice {
        LayerChoice::LastConv => return Ok(*convs.last().unwrap()),
        LayerChoice::Index(i) => {
            ensure!(
                *i < model.net.layers.len(),
                "layer index {i} is out of range: the model has {} layers (0..{}); its conv layers are {}",
                model.net.layers.len(),
                model.net.layers.len(),
                convs.iter().map(|&c| format!("{c} ({})", model.net.layers[c].name)).collect::<Vec<_>>().join(", ")
            );
            *i
        }
        LayerChoice::Name(name) => model.layer_index(name)?,
    };
    if !model.net.layers[i].is_conv() {
        return Err(Error::new(format!(
            "layer {} ({}) is not a convolution; Grad-CAM needs one of the conv layers: {}",
            model.net.layers[i].name,
            model.net.layers[i].spec.kind_name(),
            names(&convs)
        )));
    }
    Ok(i)
}

/// Channel weights [K] of one image from its activations and gradients [K, S] (S = h'*w'):
/// Grad-CAM: w_k = mean_s g_ks.
/// Grad-CAM++: w_k = sum_s alpha_ks * relu(g_ks), alpha_ks = g^2 / (2 g^2 + sum_s' A_ks' * g^3)
/// (0 where the denominator is 0): the closed form for an exponential of the score, as in
/// the paper's implementation and pytorch-grad-cam.
pub fn channel_weights(acts: &[f32], grads: &[f32], k: usize, s: usize, plus_plus: bool) -> Vec<f64> {
    assert!(acts.len() == k * s && grads.len() == k * s, "channel_weights: expected {k}x{s} values");
    (0..k)
        .map(|c| {
            let a = &acts[c * s..(c + 1) * s];
            let g = &grads[c * s..(c + 1) * s];
            if !plus_plus {
                return g.iter().map(|&v| v as f64).sum::<f64>() / s as f64;
            }
            let sum_a: f64 = a.iter().map(|&v| v as f64).sum();
            g.iter()
                .map(|&v| {
                    let v = v as f64;
                    let (g2, g3) = (v * v, v * v * v);
                    let den = 2.0 * g2 + sum_a * g3;
                    let alpha = if den != 0.0 { g2 / den } else { 0.0 };
                    alpha * v.max(0.0)
                })
                .sum()
        })
        .collect()
}

/// ReLU(sum_k w_k A_k) [S] of one image's activations [K, S].
pub fn weighted_map(acts: &[f32], weights: &[f64], s: usize) -> Vec<f64> {
    (0..s).map(|p| weights.iter().enumerate().map(|(c, w)| w * acts[c * s + p] as f64).sum::<f64>().max(0.0)).collect()
}

/// Grad-CAM (or Grad-CAM++) maps of any number of images, batched.
pub fn gradcam(gpu: &Gpu, model: &Model, images: &[f32], opts: &GradCamOptions) -> Result<GradCam> {
    let n = image_count(model, images)?;
    let given = opts.target.resolve_given(model, n)?;
    let conv = conv_layer(model, &opts.layer)?;
    let layer = model.block_output(conv);
    let last = model.net.layers.len() - 1;
    ensure!(layer < last, "layer {}: Grad-CAM needs layers between it and the logits", model.net.layers[layer].name);
    let shape = model.net.layers[layer].out_shape.clone();
    ensure!(shape.len() == 4, "layer {}: output {shape:?} is not [N, K, H, W]", model.net.layers[layer].name);
    let (k, hh, ww) = (shape[1], shape[2], shape[3]);
    let s = hh * ww;
    let (h, w) = model.hw();
    let (acts, dacts) = model.net.activation(layer);
    let dacts = dacts.expect("activation gradient");
    let dlogits = model.net.activation(last).1.expect("logits gradient");
    let back = model.net.explain_backward(gpu, last, layer + 1)?;
    let nk = model.classes();

    let mut out = GradCam { maps: vec![], coarse: vec![], coarse_hw: (hh, ww), weights: vec![], classes: vec![], conv, layer, hw: (h, w) };
    for (bi, (chunk, m)) in model.batches(images).enumerate() {
        model.forward(gpu, &chunk)?;
        let classes: Vec<u32> = match &given {
            Some(c) => c[bi * model.batch()..bi * model.batch() + m].to_vec(),
            None => gpu.read(model.net.logits())?.chunks(nk).take(m).map(|l| argmax(l) as u32).collect(),
        };
        let mut seed = vec![0.0f32; model.batch() * nk];
        for (j, &c) in classes.iter().enumerate() {
            seed[j * nk + c as usize] = 1.0;
        }
        gpu.write(dlogits, &seed)?;
        gpu.run(&back)?;
        let (a, g) = (gpu.read(acts)?, gpu.read(dacts)?);
        for j in 0..m {
            let (a, g) = (&a[j * k * s..(j + 1) * k * s], &g[j * k * s..(j + 1) * k * s]);
            let wts = channel_weights(a, g, k, s, opts.plus_plus);
            let cam: Vec<f32> = weighted_map(a, &wts, s).iter().map(|&v| v as f32).collect();
            out.maps.extend(resize_bilinear(&cam, hh, ww, h, w));
            out.coarse.extend(cam);
            out.weights.extend(wts.iter().map(|&v| v as f32));
        }
        out.classes.extend(classes);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weights_and_maps_by_hand() {
        // K = 2 channels of S = 2 positions.
        let acts = [1.0f32, 2.0, 3.0, 4.0];
        let grads = [0.5f32, -0.5, 1.0, 1.0];
        // Grad-CAM: spatial means of the gradients.
        let w = channel_weights(&acts, &grads, 2, 2, false);
        assert_eq!(w, vec![0.0, 1.0]);
        assert_eq!(weighted_map(&acts, &w, 2), vec![3.0, 4.0]);
        // Grad-CAM++: channel 0, sum A = 3: g = 0.5 gives alpha = 0.25 / (0.5 + 3 * 0.125)
        // = 2/7, times relu(0.5); g = -0.5 adds 0. Channel 1, sum A = 7: alpha = 1 / (2 + 7)
        // at both positions, times relu(1).
        let w = channel_weights(&acts, &grads, 2, 2, true);
        assert!((w[0] - 1.0 / 7.0).abs() < 1e-12 && (w[1] - 2.0 / 9.0).abs() < 1e-12, "{w:?}");
        let m = weighted_map(&acts, &w, 2);
        assert!((m[0] - (1.0 / 7.0 + 6.0 / 9.0)).abs() < 1e-12 && (m[1] - (2.0 / 7.0 + 8.0 / 9.0)).abs() < 1e-12);
        // ReLU of a negative sum, and zero gradients (0/0 alphas) give 0.
        assert_eq!(weighted_map(&acts, &[-1.0, 0.0], 2), vec![0.0, 0.0]);
        assert_eq!(channel_weights(&acts, &[0.0; 4], 2, 2, true), vec![0.0, 0.0]);
    }
}
