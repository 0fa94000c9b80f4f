//! Filter outputs (keract-style): every filter's activation map of one layer for one image,
//! drawn as a grid of heat maps beside the input; or every conv block at once. One inference
//! forward; the maps are the network's own activations read back.

use super::Model;
use crate::gpu::Gpu;
use crate::render::{self, Colormap};
use crate::{bail, ensure, Result};
use image::RgbImage;
use std::path::Path;

/// Every filter's activation map of one layer for one image: `values` is `[K, h, w]`
/// (`h = w = 1` after a dense layer).
#[derive(Debug, Clone)]
pub struct FilterOutputs {
    pub layer: String,
    pub channels: usize,
    pub h: usize,
    pub w: usize,
    pub values: Vec<f32>,
}

impl FilterOutputs {
    pub fn map(&self, k: usize) -> &[f32] {
        &self.values[k * self.h * self.w..(k + 1) * self.h * self.w]
    }
    /// Mean of each map.
    pub fn means(&self) -> Vec<f32> {
        (0..self.channels).map(|k| self.map(k).iter().sum::<f32>() / (self.h * self.w) as f32).collect()
    }
}

fn check_image(model: &Model, image: &[f32]) -> Result<()> {
    let [c, h, w] = model.info.input_chw;
    ensure!(image.len() == model.image_len(), "image has {} values; the model expects {c}x{h}x{w} = {}", image.len(), model.image_len());
    Ok(())
}

fn outputs_of(gpu: &Gpu, model: &Model, layers: &[usize]) -> Result<Vec<FilterOutputs>> {
    layers
        .iter()
        .map(|&i| {
            let l = &model.net.layers[i];
            let shape = &l.out_shape;
            let (h, w) = match shape.len() {
                4 => (shape[2], shape[3]),
                2 => (1, 1),
                _ => bail!("layer {}: output shape {shape:?} has no filters", l.name),
            };
            let per = shape[1..].iter().product::<usize>();
            let values = gpu.read(model.net.activation(i).0)?[..per].to_vec();
            Ok(FilterOutputs { layer: l.name.clone(), channels: shape[1], h, w, values })
        })
        .collect()
}

/// The activations of every filter of `layer` for `image` (one image, C*H*W values): one
/// forward pass (the batch filled with copies of the image).
pub fn filter_outputs(gpu: &Gpu, model: &Model, image: &[f32], layer: &str) -> Result<FilterOutputs> {
    check_image(model, image)?;
    let li = model.layer_index(layer)?;
    let (batch, _) = model.batches(image).next().expect("one image");
    model.forward(gpu, &batch)?;
    Ok(outputs_of(gpu, model, &[li])?.remove(0))
}

/// Filter outputs of every conv block (the post-BN / activation layer of each conv, as
/// Keras users read a conv layer with a fused activation), from one forward pass.
pub fn conv_outputs(gpu: &Gpu, model: &Model, image: &[f32]) -> Result<Vec<FilterOutputs>> {
    check_image(model, image)?;
    let layers: Vec<usize> = model.conv_layers().into_iter().map(|i| model.block_output(i)).collect();
    ensure!(!layers.is_empty(), "model {} has no convolution layer", model.net.spec.name);
    let (batch, _) = model.batches(image).next().expect("one image");
    model.forward(gpu, &batch)?;
    outputs_of(gpu, model, &layers)
}

/// Grid of the input (first cell, labelled with the layer) and one heat map per filter
/// (viridis, each map min..max normalized, labelled with its index and maximum). Maps are
/// upscaled to the input's size (nearest when it divides evenly, else bilinear).
pub fn outputs_image(image: &[f32], hw: (usize, usize), outs: &FilterOutputs, cols: usize, scale: u32) -> Result<RgbImage> {
    let (h, w) = hw;
    ensure!(image.len() >= h * w, "image has {} values, fewer than {h}x{w}", image.len());
    let mut cells = vec![render::gray_to_rgb(&image[..h * w], h, w)];
    let mut labels = vec![format!("input\n{}", outs.layer)];
    for k in 0..outs.channels {
        let map = outs.map(k);
        let heat = if h % outs.h == 0 && w % outs.w == 0 && h / outs.h == w / outs.w {
            render::upscale_nearest(&render::heatmap(map, outs.h, outs.w, Colormap::Viridis), (h / outs.h) as u32)
        } else {
            render::heatmap(&render::resize_bilinear(map, outs.h, outs.w, h, w), h, w, Colormap::Viridis)
        };
        cells.push(heat);
        let max = map.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        labels.push(format!("{k}\nmax {max:.2}"));
    }
    let cols = if cols == 0 { ((cells.len() as f64).sqrt().ceil() as usize).max(1) } else { cols };
    render::grid_image(&cells, cols, &labels, scale).map_err(|e| e.context(format!("filter outputs of {}", outs.layer)))
}

/// [`outputs_image`] saved as a PNG.
pub fn save_filter_outputs(image: &[f32], hw: (usize, usize), outs: &FilterOutputs, cols: usize, scale: u32, path: &Path) -> Result<()> {
    render::save_png(&outputs_image(image, hw, outs, cols, scale)?, path)
}

/// One tall PNG: the grid of each layer (from [`conv_outputs`]) stacked top to bottom,
/// left-aligned on white.
pub fn save_conv_outputs(image: &[f32], hw: (usize, usize), outs: &[FilterOutputs], cols: usize, scale: u32, path: &Path) -> Result<()> {
    ensure!(!outs.is_empty(), "{}: no layers to draw", path.display());
    let parts: Vec<RgbImage> = outs.iter().map(|o| outputs_image(image, hw, o, cols, scale)).collect::<Result<_>>()?;
    let width = parts.iter().map(|p| p.width()).max().unwrap_or(1);
    let height = parts.iter().map(|p| p.height()).sum();
    let mut canvas = RgbImage::from_pixel(width, height, image::Rgb([255, 255, 255]));
    let mut y = 0;
    for p in &parts {
        image::imageops::replace(&mut canvas, p, 0, y as i64);
        y += p.height();
    }
    render::save_png(&canvas, path)
}
