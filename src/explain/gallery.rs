//! The per-class gallery's maps (the report's `gallery.png`, the page's Explain panel):
//! every method's map [n, H*W] for each image's class, in the gallery's column order.

use super::gradcam::{self, GradCamOptions, LayerChoice, Weighting};
use super::lime::{self, LimeOptions};
use super::occlusion::{self, OcclusionOptions};
use super::saliency::{self, Baseline, IgOptions, SmoothGradOptions, Target};
use super::Model;
use crate::gpu::Gpu;
use crate::Result;

/// Samples of the sampled methods and their seed.
#[derive(Debug, Clone, PartialEq)]
pub struct GalleryOptions {
    /// SmoothGrad noisy copies and Integrated Gradients steps.
    pub samples: usize,
    /// LIME perturbed images per image.
    pub lime_samples: usize,
    pub seed: u64,
}

/// The gallery methods without LIME, for the class `preds[i]` of image i.
pub fn maps(gpu: &Gpu, model: &Model, images: &[f32], preds: &[u32], opts: &GalleryOptions) -> Result<Vec<(&'static str, Vec<f32>)>> {
    crate::platform::block_on(maps_async(gpu, model, images, preds, opts))
}

/// `maps`, awaitable (the browser's form; see `crate::platform`).
pub async fn maps_async(gpu: &Gpu, model: &Model, images: &[f32], preds: &[u32], opts: &GalleryOptions) -> Result<Vec<(&'static str, Vec<f32>)>> {
    let target = Target::PerImage(preds.to_vec());
    let vanilla = saliency::vanilla_async(gpu, model, images, &target).await?;
    let smooth = saliency::smoothgrad_async(gpu, model, images, &SmoothGradOptions { samples: opts.samples, seed: opts.seed as u32, target: target.clone(), ..Default::default() }).await?;
    // A white baseline: black would zero the attributions of the dark strokes that carry
    // the expression (IG multiplies the gradient by x - baseline).
    let ig = saliency::integrated_gradients_async(gpu, model, images, &IgOptions { steps: opts.samples, baseline: Baseline::Value(1.0), target: target.clone() }).await?;
    let cam = gradcam::gradcam_async(gpu, model, images, &GradCamOptions { target: target.clone(), ..Default::default() }).await?;
    // Grad-CAM++ at the deepest of the default's layers (its channel weights need a
    // layer's features; at the last conv block the maps barely point, see gradcam.rs).
    let deepest = *gradcam::auto_layers(model)?.last().expect("at least one layer");
    let campp = gradcam::gradcam_async(gpu, model, images, &GradCamOptions { target: target.clone(), layer: LayerChoice::Index(deepest), weighting: Weighting::PlusPlus }).await?;
    let (h, _) = model.hw();
    let occ = occlusion::occlusion_async(gpu, model, images, &OcclusionOptions { size: (h / 8).max(2), stride: (h / 16).max(1), target, ..Default::default() }).await?;
    Ok(vec![
        ("saliency", vanilla.maps),
        ("SmoothGrad", smooth.maps),
        ("Integrated Gradients", ig.saliency.maps),
        ("Grad-CAM", cam.maps),
        ("Grad-CAM++", campp.maps),
        ("occlusion", occ.maps),
    ])
}

/// `maps` and LIME's, painted from its superpixel coefficients.
pub fn maps_with_lime(gpu: &Gpu, model: &Model, images: &[f32], preds: &[u32], opts: &GalleryOptions) -> Result<Vec<(&'static str, Vec<f32>)>> {
    crate::platform::block_on(maps_with_lime_async(gpu, model, images, preds, opts))
}

/// `maps_with_lime`, awaitable.
pub async fn maps_with_lime_async(gpu: &Gpu, model: &Model, images: &[f32], preds: &[u32], opts: &GalleryOptions) -> Result<Vec<(&'static str, Vec<f32>)>> {
    let mut maps = maps_async(gpu, model, images, preds, opts).await?;
    let lime_opts = LimeOptions { samples: opts.lime_samples, seed: opts.seed, ..Default::default() };
    let mut lime_maps = Vec::with_capacity(images.len());
    for (img, &c) in images.chunks(model.image_len()).zip(preds) {
        let e = lime::explain_async(gpu, model, img, &lime::Classes::List(vec![c as usize]), &lime_opts).await?;
        let coef = &e.class(c as usize).expect("explained class").coefficients;
        lime_maps.extend(e.segments.labels.iter().map(|&s| coef[s as usize] as f32));
    }
    maps.push(("LIME", lime_maps));
    Ok(maps)
}
