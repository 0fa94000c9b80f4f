//! Input-gradient saliency maps: vanilla gradients (Simonyan et al. 2014), SmoothGrad
//! (Smilkov et al. 2017) and Integrated Gradients (Sundararajan et al. 2017).
//!
//! Everything runs through the network's WGSL forward and inference backward, batched: the
//! noisy / interpolated copies are written by shaders/saliency.wgsl straight into the
//! network's input batch, and the gradients of each batch are summed per image on the GPU
//! (`saliency_accumulate`), so a chunk of images is read back once. The host computes only
//! the per-image noise scale (max - min of an image) and the final max |.| over channels.
//! Reference: src/reference/saliency.rs.
//!
//! Also here, shared by the other explanation modules: [`Target`] (which class to explain),
//! [`logits`] / [`predicted`] / [`scores`], and the evaluation helpers [`spearman`] and
//! [`argmax`].

use super::batching::{self, Batch, Chunk, CopyKernel, Cursor, Layout};
use super::Model;
use crate::gpu::{shaders::SALIENCY, Dispatch, Gpu, Tensor};
use crate::nn::u32_of;
use crate::{ensure, Result};
use std::mem::offset_of;

/// Which class each image is explained for.
#[derive(Debug, Clone, PartialEq, Default)]
pub enum Target {
    /// The model's prediction (argmax of the logits) for each image.
    #[default]
    Predicted,
    /// One class for every image.
    Class(usize),
    /// One class per image.
    PerImage(Vec<u32>),
}

impl Target {
    /// The class of each image; a class out of range or a wrong count is an error.
    pub fn resolve(&self, gpu: &Gpu, model: &Model, images: &[f32]) -> Result<Vec<u32>> {
        crate::platform::block_on(self.resolve_async(gpu, model, images))
    }

    /// `resolve`, awaitable (the browser's form; see `crate::platform`).
    pub async fn resolve_async(&self, gpu: &Gpu, model: &Model, images: &[f32]) -> Result<Vec<u32>> {
        let n = image_count(model, images)?;
        match self {
            Target::Predicted => predicted_async(gpu, model, images).await,
            _ => self.resolve_given(model, n).map(|c| c.expect("explicit target")),
        }
    }

    /// The classes of an explicit target (checked), or None for `Predicted`.
    pub(crate) fn resolve_given(&self, model: &Model, n: usize) -> Result<Option<Vec<u32>>> {
        match self {
            Target::Predicted => Ok(None),
            Target::Class(c) => {
                model.check_class(*c)?;
                Ok(Some(vec![*c as u32; n]))
            }
            Target::PerImage(v) => {
                ensure!(v.len() == n, "{} target classes for {n} images", v.len());
                for &c in v {
                    model.check_class(c as usize)?;
                }
                Ok(Some(v.clone()))
            }
        }
    }

    /// The classes given the logits [n, K] of the images.
    pub(crate) fn resolve_from_logits(&self, model: &Model, logits: &[f32]) -> Result<Vec<u32>> {
        let k = model.classes();
        let n = logits.len() / k;
        Ok(match self.resolve_given(model, n)? {
            Some(c) => c,
            None => logits.chunks(k).map(|l| argmax(l) as u32).collect(),
        })
    }
}

/// Number of images in `images` (a whole number of C*H*W images, at least one), or an
/// error naming the expected size.
pub fn image_count(model: &Model, images: &[f32]) -> Result<usize> {
    let len = model.image_len();
    let [c, h, w] = model.info.input_chw;
    ensure!(
        !images.is_empty() && images.len().is_multiple_of(len),
        "{} values are not a whole number of images: the model takes {c}x{h}x{w} images (C x H x W = {len} values each)",
        images.len()
    );
    Ok(images.len() / len)
}

/// Logits [n, K] of any number of images (inference forward, in batches).
pub fn logits(gpu: &Gpu, model: &Model, images: &[f32]) -> Result<Vec<f32>> {
    crate::platform::block_on(logits_async(gpu, model, images))
}

/// `logits`, awaitable (the browser's form; see `crate::platform`).
pub async fn logits_async(gpu: &Gpu, model: &Model, images: &[f32]) -> Result<Vec<f32>> {
    image_count(model, images)?;
    let k = model.classes();
    let mut out = Vec::new();
    for (chunk, m) in model.batches(images) {
        model.forward(gpu, &chunk)?;
        out.extend_from_slice(&gpu.read_async(model.net.logits()).await?[..m * k]);
    }
    Ok(out)
}

/// The predicted class (argmax of the logits) of each image.
pub fn predicted(gpu: &Gpu, model: &Model, images: &[f32]) -> Result<Vec<u32>> {
    crate::platform::block_on(predicted_async(gpu, model, images))
}

/// `predicted`, awaitable (the browser's form; see `crate::platform`).
pub async fn predicted_async(gpu: &Gpu, model: &Model, images: &[f32]) -> Result<Vec<u32>> {
    let k = model.classes();
    Ok(logits_async(gpu, model, images).await?.chunks(k).map(|l| argmax(l) as u32).collect())
}

/// The score (logit) of class `classes[i]` for image i.
pub fn scores(gpu: &Gpu, model: &Model, images: &[f32], classes: &[u32]) -> Result<Vec<f32>> {
    crate::platform::block_on(scores_async(gpu, model, images, classes))
}

/// `scores`, awaitable (the browser's form; see `crate::platform`).
pub async fn scores_async(gpu: &Gpu, model: &Model, images: &[f32], classes: &[u32]) -> Result<Vec<f32>> {
    let n = image_count(model, images)?;
    ensure!(classes.len() == n, "{} classes for {n} images", classes.len());
    for &c in classes {
        model.check_class(c as usize)?;
    }
    let k = model.classes();
    Ok(logits_async(gpu, model, images).await?.chunks(k).zip(classes).map(|(l, &c)| l[c as usize]).collect())
}

/// Saliency of a set of images.
#[derive(Debug, Clone)]
pub struct Saliency {
    /// [n, H*W]: max over channels of |attribution| (what is drawn).
    pub maps: Vec<f32>,
    /// [n, C*H*W], signed: the gradient (vanilla), the mean gradient over the noisy copies
    /// (SmoothGrad), or (x - baseline) * mean path gradient (Integrated Gradients).
    pub attributions: Vec<f32>,
    /// The class explained for each image.
    pub classes: Vec<u32>,
    pub chw: [usize; 3],
}

impl Saliency {
    fn new(attributions: Vec<f32>, classes: Vec<u32>, chw: [usize; 3]) -> Saliency {
        Saliency { maps: channel_max_abs(&attributions, chw), attributions, classes, chw }
    }
    pub fn len(&self) -> usize {
        self.classes.len()
    }
    pub fn is_empty(&self) -> bool {
        self.classes.is_empty()
    }
    /// The map [H*W] of image i.
    pub fn map(&self, i: usize) -> &[f32] {
        let s = self.chw[1] * self.chw[2];
        &self.maps[i * s..(i + 1) * s]
    }
    /// The attributions [C*H*W] of image i.
    pub fn attribution(&self, i: usize) -> &[f32] {
        let l: usize = self.chw.iter().product();
        &self.attributions[i * l..(i + 1) * l]
    }
}

/// Per-pixel map [n, H*W] of attributions [n, C, H, W]: max over channels of |a|.
pub fn channel_max_abs(attributions: &[f32], chw: [usize; 3]) -> Vec<f32> {
    let [c, h, w] = chw;
    let s = h * w;
    attributions
        .chunks(c * s)
        .flat_map(|img| (0..s).map(move |p| (0..c).map(|ch| img[ch * s + p].abs()).fold(0.0f32, f32::max)))
        .collect()
}

/// Vanilla gradient: attributions = d score_c / d x (one forward and backward per batch).
pub fn vanilla(gpu: &Gpu, model: &Model, images: &[f32], target: &Target) -> Result<Saliency> {
    crate::platform::block_on(vanilla_async(gpu, model, images, target))
}

/// `vanilla`, awaitable (the browser's form; see `crate::platform`).
pub async fn vanilla_async(gpu: &Gpu, model: &Model, images: &[f32], target: &Target) -> Result<Saliency> {
    let classes = target.resolve_async(gpu, model, images).await?;
    let grads = model.class_gradients_async(gpu, images, &classes).await?;
    Ok(Saliency::new(grads, classes, model.info.input_chw))
}

/// SmoothGrad settings.
#[derive(Debug, Clone, PartialEq)]
pub struct SmoothGradOptions {
    /// Noisy copies per image (at least 1).
    pub samples: usize,
    /// Noise standard deviation as a fraction of each image's value range (max - min);
    /// Smilkov et al. find 0.1-0.2 best. 0 gives the vanilla gradient.
    pub sigma: f32,
    /// Seeds the noise (the same seed and images give the same maps).
    pub seed: u32,
    pub target: Target,
}

impl Default for SmoothGradOptions {
    fn default() -> Self {
        SmoothGradOptions { samples: 25, sigma: 0.15, seed: 0, target: Target::Predicted }
    }
}

/// SmoothGrad: attributions = mean over `samples` noisy copies x + N(0, (sigma * range)^2)
/// of d score_c / d x (c fixed per image: the target at the clean image).
pub fn smoothgrad(gpu: &Gpu, model: &Model, images: &[f32], opts: &SmoothGradOptions) -> Result<Saliency> {
    crate::platform::block_on(smoothgrad_async(gpu, model, images, opts))
}

/// `smoothgrad`, awaitable (the browser's form; see `crate::platform`).
pub async fn smoothgrad_async(gpu: &Gpu, model: &Model, images: &[f32], opts: &SmoothGradOptions) -> Result<Saliency> {
    ensure!(opts.samples >= 1, "SmoothGrad needs at least 1 sample (got {})", opts.samples);
    ensure!(opts.sigma.is_finite() && opts.sigma >= 0.0, "SmoothGrad noise sigma {} must be a finite fraction >= 0 of the value range", opts.sigma);
    let classes = opts.target.resolve_async(gpu, model, images).await?;
    let mode = Mode::Noise { sigma: opts.sigma, seed: opts.seed };
    let mean = path_gradients_async(gpu, model, images, &classes, opts.samples, mode).await?;
    Ok(Saliency::new(mean, classes, model.info.input_chw))
}

/// The Integrated Gradients reference image.
#[derive(Debug, Clone, PartialEq, Default)]
pub enum Baseline {
    /// All zeros.
    #[default]
    Black,
    /// Every pixel this value (e.g. 0.5 for mid-gray).
    Value(f32),
    /// A full image [C*H*W] (e.g. a blurred copy or the data mean).
    Image(Vec<f32>),
}

impl Baseline {
    /// The baseline as an image of `len` values.
    pub fn image(&self, len: usize) -> Result<Vec<f32>> {
        Ok(match self {
            Baseline::Black => vec![0.0; len],
            Baseline::Value(v) => vec![*v; len],
            Baseline::Image(img) => {
                ensure!(img.len() == len, "the Integrated Gradients baseline image has {} values, the model takes {len}", img.len());
                img.clone()
            }
        })
    }
}

/// Integrated Gradients settings.
#[derive(Debug, Clone, PartialEq)]
pub struct IgOptions {
    /// Points on the path from the baseline to the image (midpoint rule; at least 1).
    pub steps: usize,
    pub baseline: Baseline,
    pub target: Target,
}

impl Default for IgOptions {
    fn default() -> Self {
        IgOptions { steps: 32, baseline: Baseline::Black, target: Target::Predicted }
    }
}

/// The completeness axiom of Integrated Gradients for one image: the attributions should
/// sum to score(x) - score(baseline); the gap is the path integral's discretisation error.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Completeness {
    /// Sum of the image's attributions (f64).
    pub attribution_sum: f64,
    /// score_c(x) and score_c(baseline) (logits).
    pub score: f32,
    pub baseline_score: f32,
}

impl Completeness {
    /// score(x) - score(baseline).
    pub fn delta(&self) -> f64 {
        self.score as f64 - self.baseline_score as f64
    }
    /// |sum of attributions - delta|.
    pub fn error(&self) -> f64 {
        (self.attribution_sum - self.delta()).abs()
    }
    /// error / |delta| (delta floored at 1e-6).
    pub fn relative_error(&self) -> f64 {
        self.error() / self.delta().abs().max(1e-6)
    }
}

/// Integrated Gradients with the completeness check of every image.
#[derive(Debug, Clone)]
pub struct IntegratedGradients {
    pub saliency: Saliency,
    pub completeness: Vec<Completeness>,
}

impl IntegratedGradients {
    /// Completeness error of the whole set: sum over images of |sum of attributions -
    /// delta| over the sum of |delta| (robust to images whose delta is near 0, where the
    /// per-image relative error is meaningless).
    pub fn completeness_error(&self) -> f64 {
        let err: f64 = self.completeness.iter().map(Completeness::error).sum();
        let delta: f64 = self.completeness.iter().map(|c| c.delta().abs()).sum();
        err / delta.max(1e-12)
    }
}

/// Integrated Gradients: attributions = (x - b) * mean over a_k = (k + 0.5) / steps of
/// d score_c / d x at b + a_k (x - b); c is the target at the clean image.
pub fn integrated_gradients(gpu: &Gpu, model: &Model, images: &[f32], opts: &IgOptions) -> Result<IntegratedGradients> {
    crate::platform::block_on(integrated_gradients_async(gpu, model, images, opts))
}

/// `integrated_gradients`, awaitable (the browser's form; see `crate::platform`).
pub async fn integrated_gradients_async(gpu: &Gpu, model: &Model, images: &[f32], opts: &IgOptions) -> Result<IntegratedGradients> {
    ensure!(opts.steps >= 1, "Integrated Gradients needs at least 1 step (got {})", opts.steps);
    image_count(model, images)?;
    let len = model.image_len();
    let base = opts.baseline.image(len)?;
    let k = model.classes();
    let lx = logits_async(gpu, model, images).await?;
    let classes = opts.target.resolve_from_logits(model, &lx)?;
    let lb = logits_async(gpu, model, &base).await?;
    let attr = path_gradients_async(gpu, model, images, &classes, opts.steps, Mode::Path { baseline: &base }).await?;
    let completeness = attr
        .chunks(len)
        .zip(&classes)
        .enumerate()
        .map(|(i, (a, &c))| Completeness {
            attribution_sum: a.iter().map(|&v| v as f64).sum(),
            score: lx[i * k + c as usize],
            baseline_score: lb[c as usize],
        })
        .collect();
    Ok(IntegratedGradients { saliency: Saliency::new(attr, classes, model.info.input_chw), completeness })
}

/// How the copies of an image are made.
#[derive(Clone, Copy)]
enum Mode<'a> {
    /// x + sigma * range(x) * N(0, 1); the gradients are averaged.
    Noise { sigma: f32, seed: u32 },
    /// Midpoint path points from the baseline; the mean gradient is multiplied by (x - b).
    Path { baseline: &'a [f32] },
}

/// Per-image mean gradient (times x - b for `Path`) over `copies` GPU-made copies: [n, L].
async fn path_gradients_async(gpu: &Gpu, model: &Model, images: &[f32], classes: &[u32], copies: usize, mode: Mode<'_>) -> Result<Vec<f32>> {
    let n = image_count(model, images)?;
    ensure!(classes.len() == n, "{} classes for {n} images", classes.len());
    let (b, len, k) = (model.batch(), model.image_len(), model.classes());
    // Images per chunk: as many as the batch (the chunk's tensors are then the input's size).
    let chunk_images = b.min(n);
    let (label, seed, ig) = match mode {
        Mode::Noise { seed, .. } => ("smoothgrad", seed, false),
        Mode::Path { .. } => ("integrated gradients", 0, true),
    };
    let op = Perturb::new(gpu, label, b, len, chunk_images, copies, seed, 1.0 / copies as f32, ig)?;
    let x = gpu.tensor(&format!("{label} images"), &[chunk_images, len])?;
    let sigma = gpu.tensor(&format!("{label} sigma"), &[chunk_images])?;
    let base = match mode {
        Mode::Path { baseline } => gpu.upload(&format!("{label} baseline"), &[len], baseline)?,
        Mode::Noise { .. } => gpu.tensor(&format!("{label} baseline"), &[len])?,
    };
    let acc = gpu.tensor(&format!("{label} sums"), &[chunk_images, len])?;
    let grad = model.net.input_grad().expect("explanation models are built with input gradients");
    let make = match mode {
        Mode::Noise { .. } => op.noise(gpu, &x, &sigma, model.net.input())?,
        Mode::Path { .. } => op.interpolate(gpu, &x, &base, model.net.input())?,
    };
    let gather = op.accumulate(gpu, &acc, grad, &x, &base)?;
    let noise = match mode {
        Mode::Noise { sigma: frac, .. } => Some((&sigma, frac)),
        Mode::Path { .. } => None,
    };
    let kernel = PerturbCopies { op: &op, x: &x, noise, make: &make };
    let last = model.net.layers.len() - 1;
    let dlogits = model.net.activation(last).1.expect("logits gradient");
    let net: Vec<&Dispatch> = model.net.forward_infer_dispatches().chain(&model.backward).chain(std::iter::once(&gather)).collect();

    batching::Driver::new(gpu, model, &kernel)?
        .run_async(
            images,
            &net,
            // One-hot logits gradient of each row's image class. No wait: the writes are
            // ordered before the batch's submission, and the chunk's read waits for all.
            |chunk, batch| {
                let mut seed = vec![0.0f32; b * k];
                for j in 0..b {
                    seed[j * k + classes[chunk.image0 + batch.copy(j) / copies] as usize] = 1.0;
                }
                gpu.write(dlogits, &seed)
            },
            |_, _| {},
            &acc,
            |chunk| chunk.images * len,
        )
        .await
}

/// The noise or path kernel bound to its chunk buffers, for the batching driver.
struct PerturbCopies<'a> {
    op: &'a Perturb,
    x: &'a Tensor,
    /// SmoothGrad: the per-image noise scales [M] and sigma as a fraction of the range.
    noise: Option<(&'a Tensor, f32)>,
    make: &'a Dispatch,
}

impl CopyKernel for PerturbCopies<'_> {
    fn layout(&self) -> Layout {
        self.op.layout()
    }

    fn load(&self, gpu: &Gpu, chunk: &Chunk, images: &[f32]) -> Result<()> {
        batching::upload_chunk(gpu, self.x, images)?;
        if let Some((sigma, frac)) = self.noise {
            let s: Vec<f32> = images
                .chunks(self.op.len)
                .map(|img| {
                    let (lo, hi) = img.iter().fold((f32::INFINITY, f32::NEG_INFINITY), |(lo, hi), &v| (lo.min(v), hi.max(v)));
                    frac * (hi - lo)
                })
                .collect();
            batching::upload_chunk(gpu, sigma, &s)?;
        }
        self.op.set_chunk(gpu, chunk.total, chunk.image0)
    }

    fn seek(&self, gpu: &Gpu, batch: &Batch) -> Result<()> {
        self.op.set_first(gpu, batch.first)
    }

    fn dispatch(&self) -> &Dispatch {
        self.make
    }
}

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    len: u32,
    copies: u32,
    rows: u32,
    images: u32,
    first: u32,
    total: u32,
    image0: u32,
    seed: u32,
    weight: f32,
    ig: u32,
    _pad0: u32,
    _pad1: u32,
}

const WG: u32 = 256;

/// The kernels of shaders/saliency.wgsl for one shape: a chunk of `images` images of `len`
/// values, `copies` copies each, made `rows` at a time (the network's batch), numbered as
/// in `batching`. The host sets the chunk (`set_chunk`) and each batch's first copy
/// (`set_first`) with small uniform writes (queued, ordered before the next submit); the
/// dispatches are built once.
pub struct Perturb {
    pub name: String,
    pub len: usize,
    cursor: Cursor,
}

impl Perturb {
    /// `weight` scales the accumulated gradient sums (1 / copies for a mean); `ig` also
    /// multiplies them by (x - baseline). The chunk starts full (images * copies copies,
    /// image0 = 0, first = 0).
    #[allow(clippy::too_many_arguments)]
    pub fn new(gpu: &Gpu, name: &str, rows: usize, len: usize, images: usize, copies: usize, seed: u32, weight: f32, ig: bool) -> Result<Perturb> {
        ensure!(
            rows > 0 && len > 0 && images > 0 && copies > 0,
            "{name}: rows {rows}, image size {len}, images {images} and copies {copies} must be positive"
        );
        let total = u32_of(name, "copies in a chunk", images * copies)?;
        u32_of(name, "batch elements", rows * len)?;
        u32_of(name, "chunk elements", images * len)?;
        let p = Params {
            len: len as u32,
            copies: copies as u32,
            rows: rows as u32,
            images: images as u32,
            first: 0,
            total,
            image0: 0,
            seed,
            weight,
            ig: ig as u32,
            _pad0: 0,
            _pad1: 0,
        };
        let params = gpu.uniform(&format!("{name} params"), &p);
        let layout = Layout { rows, copies, chunk_images: images };
        let cursor = Cursor::new(name, params, layout, offset_of!(Params, first), offset_of!(Params, total), Some(offset_of!(Params, image0)));
        Ok(Perturb { name: name.to_string(), len, cursor })
    }

    /// The chunk holds `total` copies (m real images * copies, m <= images); its first
    /// image is number `image0` of all the images explained (part of the noise key).
    pub fn set_chunk(&self, gpu: &Gpu, total: usize, image0: usize) -> Result<()> {
        self.cursor.set_chunk(gpu, total, image0)
    }

    /// The copy held by batch row 0 for the next submitted dispatches.
    pub fn set_first(&self, gpu: &Gpu, first: usize) -> Result<()> {
        self.cursor.set_first(gpu, first)
    }

    fn dispatch(&self, gpu: &Gpu, entry: &str, n: usize, bindings: &[(u32, &Tensor)]) -> Result<Dispatch> {
        let label = format!("{} {entry}", self.name);
        let mut b: Vec<(u32, wgpu::BindingResource)> = vec![(0, self.cursor.params().as_entire_binding())];
        b.extend(bindings.iter().map(|(i, t)| (*i, t.binding())));
        let groups = gpu.groups_1d(&label, n as u64, WG)?;
        Dispatch::new(gpu, &label, &SALIENCY, entry, &[], &b, groups)
    }

    fn check(&self, t: &Tensor, role: &str, n: usize) -> Result<()> {
        t.expect_len(&self.name, role, n)
    }

    /// Batch rows, copies per image and images per chunk.
    pub fn layout(&self) -> Layout {
        self.cursor.layout()
    }

    /// saliency_noise: out [rows, len] = x [images, len] + sigma [images] * N(0, 1).
    pub fn noise(&self, gpu: &Gpu, x: &Tensor, sigma: &Tensor, out: &Tensor) -> Result<Dispatch> {
        let Layout { rows, chunk_images: images, .. } = self.layout();
        self.check(x, "images", images * self.len)?;
        self.check(sigma, "noise scales", images)?;
        self.check(out, "noisy batch", rows * self.len)?;
        self.dispatch(gpu, "saliency_noise", rows * self.len, &[(1, x), (2, sigma), (4, out)])
    }

    /// saliency_interpolate: out [rows, len] = b + (k + 0.5) / copies * (x - b).
    pub fn interpolate(&self, gpu: &Gpu, x: &Tensor, base: &Tensor, out: &Tensor) -> Result<Dispatch> {
        let Layout { rows, chunk_images: images, .. } = self.layout();
        self.check(x, "images", images * self.len)?;
        self.check(base, "baseline", self.len)?;
        self.check(out, "path batch", rows * self.len)?;
        self.dispatch(gpu, "saliency_interpolate", rows * self.len, &[(1, x), (3, base), (4, out)])
    }

    /// saliency_accumulate: acc [images, len] (+)= weight [* (x - b)] * the batch's
    /// gradients g [rows, len] summed per image (overwrites on an image's first copy).
    pub fn accumulate(&self, gpu: &Gpu, acc: &Tensor, g: &Tensor, x: &Tensor, base: &Tensor) -> Result<Dispatch> {
        let Layout { rows, chunk_images: images, .. } = self.layout();
        self.check(acc, "gradient sums", images * self.len)?;
        self.check(g, "batch gradients", rows * self.len)?;
        self.check(x, "images", images * self.len)?;
        self.check(base, "baseline", self.len)?;
        self.dispatch(gpu, "saliency_accumulate", images * self.len, &[(1, x), (3, base), (5, g), (6, acc)])
    }
}

/// Index of the largest value (the first on ties; NaN never wins).
pub fn argmax(v: &[f32]) -> usize {
    let mut best = 0;
    for (i, &x) in v.iter().enumerate() {
        if x > v[best] || v[best].is_nan() {
            best = i;
        }
    }
    best
}

/// Ranks (1-based, ties get their average rank).
fn ranks(v: &[f32]) -> Vec<f64> {
    let mut idx: Vec<usize> = (0..v.len()).collect();
    idx.sort_by(|&a, &b| v[a].total_cmp(&v[b]));
    let mut r = vec![0.0; v.len()];
    let mut i = 0;
    while i < idx.len() {
        let mut j = i;
        while j + 1 < idx.len() && v[idx[j + 1]] == v[idx[i]] {
            j += 1;
        }
        let avg = (i + j) as f64 / 2.0 + 1.0;
        for &k in &idx[i..=j] {
            r[k] = avg;
        }
        i = j + 1;
    }
    r
}

/// Spearman rank correlation of two maps (Pearson correlation of their ranks, ties
/// averaged). NaN when either map is constant (its ranks have no variance).
pub fn spearman(a: &[f32], b: &[f32]) -> f64 {
    assert_eq!(a.len(), b.len(), "spearman: maps of different sizes");
    let (ra, rb) = (ranks(a), ranks(b));
    let n = ra.len() as f64;
    let (ma, mb) = (ra.iter().sum::<f64>() / n, rb.iter().sum::<f64>() / n);
    let (mut sab, mut saa, mut sbb) = (0.0, 0.0, 0.0);
    for (x, y) in ra.iter().zip(&rb) {
        sab += (x - ma) * (y - mb);
        saa += (x - ma) * (x - ma);
        sbb += (y - mb) * (y - mb);
    }
    if saa == 0.0 || sbb == 0.0 {
        return f64::NAN;
    }
    sab / (saa * sbb).sqrt()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spearman_of_monotone_and_reversed_maps() {
        let a = [0.1f32, 0.5, 0.2, 0.9, 0.3];
        let b: Vec<f32> = a.iter().map(|v| v.powi(3) + 2.0).collect();
        assert!((spearman(&a, &b) - 1.0).abs() < 1e-12);
        let c: Vec<f32> = a.iter().map(|v| -v).collect();
        assert!((spearman(&a, &c) + 1.0).abs() < 1e-12);
        // Ties share their average rank.
        assert_eq!(ranks(&[3.0, 1.0, 3.0, 2.0]), vec![3.5, 1.0, 3.5, 2.0]);
        assert!(spearman(&[1.0, 1.0, 1.0], &[1.0, 2.0, 3.0]).is_nan());
        assert_eq!(argmax(&[0.0, 2.0, 2.0, -1.0]), 1);
    }
}
