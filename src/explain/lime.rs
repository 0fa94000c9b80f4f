//! LIME for images (Ribeiro, Singh, Guestrin 2016), as the `lime` package's
//! `LimeImageExplainer.explain_instance` does it:
//!
//! 1. superpixels of the image (SLIC on the gray image, `superpixels::slic`);
//! 2. `samples` random on/off vectors z over the K superpixels (each bit 1 with probability
//!    1/2, seeded; sample 0 is all ones = the image itself); a superpixel that is off shows
//!    `Fill` (default: its own mean, as `lime`'s `hide_color=None`). The perturbed images
//!    are built on the GPU by `shaders/lime.wgsl` straight into the network's input batch
//!    and evaluated in batches by the batching driver (softmax probabilities);
//! 3. per explained class, a weighted ridge regression (alpha = 1, with intercept, like
//!    sklearn's `Ridge`) of the class probability on z, sample weight
//!    `sqrt(exp(-d^2 / width^2))`, d the cosine distance of z to all-ones, width 0.25:
//!    one coefficient per superpixel, the intercept and the weighted R^2 (`lime`'s `score`);
//! 4. pictures: the top positive superpixels green (support the class), the top negative
//!    red (against it), via `render::outline_segments_scaled`; `class_row` draws one panel
//!    per class.
//!
//! The CPU does the segmentation and the fill image (one picture), the sampling of the
//! binary vectors and the K x K linear systems.

use super::batching::{self, Batch, Chunk, CopyKernel, Layout, Output};
use super::superpixels::{gaussian_blur, slic, Segmentation, SlicOptions};
use super::Model;
use crate::gpu::{shaders::LIME, Dispatch, Gpu, Tensor};
use crate::rng::Rng;
use crate::{bail, ensure, Result};
use image::RgbImage;

/// What a switched-off superpixel shows.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Fill {
    /// The superpixel's own mean (per channel): `lime`'s `hide_color=None`. Removes texture
    /// and edges but keeps the brightness.
    SegmentMean,
    /// The whole image's mean (per channel).
    ImageMean,
    /// A constant value (`hide_color=0` in `lime` is `Constant(0.0)`).
    Constant(f32),
    /// A Gaussian-blurred copy of the image (sigma in pixels).
    Blur { sigma: f32 },
}

/// Which classes to explain.
#[derive(Debug, Clone, PartialEq)]
pub enum Classes {
    /// The model's class for the unperturbed image.
    Predicted,
    /// The `n` most probable classes (`lime`'s `top_labels`).
    Top(usize),
    /// These classes.
    List(Vec<usize>),
    All,
}

#[derive(Debug, Clone, PartialEq)]
pub struct LimeOptions {
    pub slic: SlicOptions,
    /// Perturbed images (including the unperturbed sample 0).
    pub samples: usize,
    pub seed: u64,
    pub fill: Fill,
    /// Width of the exponential kernel on cosine distance.
    pub kernel_width: f64,
    /// Ridge penalty (not applied to the intercept).
    pub alpha: f64,
}

impl Default for LimeOptions {
    fn default() -> Self {
        LimeOptions { slic: SlicOptions::default(), samples: 1000, seed: 0, fill: Fill::SegmentMean, kernel_width: 0.25, alpha: 1.0 }
    }
}

/// A weighted ridge fit: `y ~ intercept + x . coefficients`.
#[derive(Debug, Clone, PartialEq)]
pub struct RidgeFit {
    pub coefficients: Vec<f64>,
    pub intercept: f64,
    /// Weighted R^2 on the fitted data (1 - weighted SSE / weighted total SS; sklearn's
    /// convention for zero total variance: 1 if the fit is exact, else 0).
    pub score: f64,
}

/// The explanation of one class.
#[derive(Debug, Clone, PartialEq)]
pub struct ClassExplanation {
    pub class: usize,
    pub name: String,
    /// The model's probability for this class on the unperturbed image.
    pub probability: f32,
    /// One weight per superpixel: change of the class probability when it is present.
    pub coefficients: Vec<f64>,
    pub intercept: f64,
    /// Weighted R^2 of the local linear model.
    pub score: f64,
    /// The linear model's prediction for the unperturbed image (all superpixels on).
    pub local_prediction: f64,
}

impl ClassExplanation {
    /// Up to `n` superpixels with coefficient > `min_weight`, largest first.
    pub fn top_positive(&self, n: usize, min_weight: f64) -> Vec<u32> {
        self.ranked(|c| c).into_iter().filter(|&(_, c)| c > min_weight).take(n).map(|(i, _)| i).collect()
    }
    /// Up to `n` superpixels with coefficient < -`min_weight`, most negative first.
    pub fn top_negative(&self, n: usize, min_weight: f64) -> Vec<u32> {
        self.ranked(|c| -c).into_iter().filter(|&(_, c)| -c > min_weight).take(n).map(|(i, _)| i).collect()
    }
    /// The `n` superpixels of largest |coefficient| with their coefficients (`lime`'s
    /// `local_exp` order).
    pub fn top_features(&self, n: usize) -> Vec<(u32, f64)> {
        self.ranked(f64::abs).into_iter().take(n).collect()
    }
    fn ranked(&self, key: impl Fn(f64) -> f64) -> Vec<(u32, f64)> {
        let mut v: Vec<(u32, f64)> = self.coefficients.iter().enumerate().map(|(i, &c)| (i as u32, c)).collect();
        v.sort_by(|a, b| key(b.1).total_cmp(&key(a.1)).then(a.0.cmp(&b.0)));
        v
    }
}

/// Everything one LIME run produced; `fit` explains further classes without new samples.
#[derive(Debug, Clone)]
pub struct LimeExplanation {
    /// The image [C, H, W] and its gray version [H, W] (channel mean) the superpixels and
    /// pictures use.
    pub image: Vec<f32>,
    pub chw: [usize; 3],
    pub gray: Vec<f32>,
    pub segments: Segmentation,
    /// What switched-off superpixels showed [C, H, W].
    pub fill: Vec<f32>,
    /// On/off vectors [samples, K]; row 0 is all ones.
    pub masks: Vec<u8>,
    /// Model probabilities [samples, classes] of the perturbed images.
    pub probabilities: Vec<f32>,
    /// Kernel weights [samples].
    pub weights: Vec<f64>,
    pub class_names: Vec<String>,
    /// argmax of the unperturbed image's probabilities.
    pub predicted: usize,
    pub alpha: f64,
    /// The explained classes, in the order asked for.
    pub classes: Vec<ClassExplanation>,
}

impl LimeExplanation {
    pub fn samples(&self) -> usize {
        self.weights.len()
    }
    pub fn num_classes(&self) -> usize {
        self.class_names.len()
    }
    /// The explanation of `class` if it was explained.
    pub fn class(&self, class: usize) -> Option<&ClassExplanation> {
        self.classes.iter().find(|c| c.class == class)
    }

    /// Fit the local model of `class` on this run's samples.
    pub fn fit(&self, class: usize) -> Result<ClassExplanation> {
        let nc = self.num_classes();
        ensure!(class < nc, "class {class} is out of range: the model has {nc} classes ({})", self.class_names.join(", "));
        let k = self.segments.count;
        let x: Vec<f64> = self.masks.iter().map(|&m| m as f64).collect();
        let y: Vec<f64> = (0..self.samples()).map(|s| self.probabilities[s * nc + class] as f64).collect();
        let fit = weighted_ridge(&x, &y, &self.weights, k, self.alpha)?;
        let local_prediction = fit.intercept + fit.coefficients.iter().sum::<f64>();
        Ok(ClassExplanation {
            class,
            name: self.class_names[class].clone(),
            probability: self.probabilities[class],
            coefficients: fit.coefficients,
            intercept: fit.intercept,
            score: fit.score,
            local_prediction,
        })
    }

    /// The picture for `class`: the gray image upscaled `scale`x, its `n` most supporting
    /// superpixels green and `n` most opposing red (coefficients beyond `min_weight`).
    pub fn render(&self, class: usize, n: usize, min_weight: f64, scale: u32) -> Result<RgbImage> {
        let fitted;
        let c = match self.class(class) {
            Some(c) => c,
            None => {
                fitted = self.fit(class)?;
                &fitted
            }
        };
        let (h, w) = (self.segments.h, self.segments.w);
        Ok(crate::render::outline_segments_scaled(
            &self.gray,
            &self.segments.labels,
            h,
            w,
            &c.top_positive(n, min_weight),
            &c.top_negative(n, min_weight),
            scale,
        ))
    }

    /// One panel per class of the model (7 for FER2013), labelled with the class name (the
    /// predicted one marked *), its probability and the local model's R^2: a row to put in
    /// a report. Classes not explained yet are fitted on this run's samples. A panel shows
    /// up to `n` supporting and `n` opposing superpixels whose |coefficient| is at least
    /// `ROW_MIN_RELATIVE` of the class's largest, so sampling noise is not painted.
    pub fn class_row(&self, n: usize, scale: u32) -> Result<RgbImage> {
        let mut cells = Vec::new();
        let mut labels = Vec::new();
        for class in 0..self.num_classes() {
            let c = match self.class(class) {
                Some(c) => c.clone(),
                None => self.fit(class)?,
            };
            let largest = c.coefficients.iter().fold(0.0f64, |m, v| m.max(v.abs()));
            cells.push(self.render(class, n, ROW_MIN_RELATIVE * largest, scale)?);
            let mark = if class == self.predicted { "*" } else { "" };
            labels.push(format!("{}{mark}\np {:.2}  R\u{b2} {:.2}", c.name, c.probability, c.score));
        }
        crate::render::grid_image(&cells, cells.len(), &labels, 1)
    }
}

/// `class_row` paints superpixels whose |coefficient| is at least this fraction of the
/// class's largest.
pub const ROW_MIN_RELATIVE: f64 = 0.1;

/// Gray version of a [C, H, W] image: the channel mean.
fn gray_of(image: &[f32], [c, h, w]: [usize; 3]) -> Vec<f32> {
    if c == 1 {
        return image.to_vec();
    }
    (0..h * w).map(|p| (0..c).map(|ch| image[ch * h * w + p]).sum::<f32>() / c as f32).collect()
}

/// The [C, H, W] image a switched-off superpixel shows, per `fill`.
pub fn fill_image(image: &[f32], chw: [usize; 3], segments: &Segmentation, fill: Fill) -> Result<Vec<f32>> {
    let [c, h, w] = chw;
    ensure!(image.len() == c * h * w, "lime fill: {} values for a {c}x{h}x{w} image", image.len());
    ensure!((segments.h, segments.w) == (h, w), "lime fill: segments are {}x{}, the image {h}x{w}", segments.h, segments.w);
    let hw = h * w;
    let mut out = vec![0.0f32; c * hw];
    for ch in 0..c {
        let plane = &image[ch * hw..(ch + 1) * hw];
        let dst = &mut out[ch * hw..(ch + 1) * hw];
        match fill {
            Fill::SegmentMean => {
                let mut sum = vec![0.0f64; segments.count];
                let mut cnt = vec![0usize; segments.count];
                for (p, &l) in segments.labels.iter().enumerate() {
                    sum[l as usize] += plane[p] as f64;
                    cnt[l as usize] += 1;
                }
                for (p, &l) in segments.labels.iter().enumerate() {
                    dst[p] = (sum[l as usize] / cnt[l as usize] as f64) as f32;
                }
            }
            Fill::ImageMean => dst.fill((plane.iter().map(|&v| v as f64).sum::<f64>() / hw as f64) as f32),
            Fill::Constant(v) => dst.fill(v),
            Fill::Blur { sigma } => {
                ensure!(sigma.is_finite() && sigma > 0.0, "lime fill: blur sigma {sigma} must be positive");
                let plane: Vec<f64> = plane.iter().map(|&v| v as f64).collect();
                let b = gaussian_blur(&plane, h, w, sigma as f64);
                dst.iter_mut().zip(b).for_each(|(d, v)| *d = v as f32);
            }
        }
    }
    Ok(out)
}

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    n: u32,
    chw: u32,
    hw: u32,
    k: u32,
}

const WG: u32 = 256;

/// The GPU perturbation kernel bound to one image and an output batch [B, C, H, W]:
/// `set_masks` uploads B on/off rows [B, K], then `dispatch` writes the B images.
pub struct Perturbation {
    pub batch: usize,
    pub k: usize,
    _image: Tensor,
    _fill: Tensor,
    _segments: Tensor,
    masks: Tensor,
    _params: wgpu::Buffer,
    dispatch: Dispatch,
}

impl Perturbation {
    pub fn new(gpu: &Gpu, image: &[f32], fill: &[f32], segments: &Segmentation, out: &Tensor) -> Result<Perturbation> {
        let shape = out.shape();
        ensure!(shape.len() == 4, "lime: the output batch has shape {shape:?}, expected [B, C, H, W]");
        let (b, c, h, w) = (shape[0], shape[1], shape[2], shape[3]);
        ensure!((segments.h, segments.w) == (h, w), "lime: segments are {}x{}, the batch's images {h}x{w}", segments.h, segments.w);
        ensure!(image.len() == c * h * w, "lime: image has {} values, expected C*H*W = {c}*{h}*{w} = {}", image.len(), c * h * w);
        ensure!(fill.len() == c * h * w, "lime: fill image has {} values, expected {}", fill.len(), c * h * w);
        let k = segments.count;
        let n = b * c * h * w;
        ensure!(n <= u32::MAX as usize && b * k <= u32::MAX as usize, "lime: batch of {n} values is too large for 32-bit indices");
        let image_t = gpu.upload("lime image", &[c, h, w], image)?;
        let fill_t = gpu.upload("lime fill", &[c, h, w], fill)?;
        let seg_t = gpu.upload("lime segments", &[h, w], &segments.labels)?;
        let masks = gpu.tensor("lime masks", &[b, k])?;
        let params = gpu.uniform("lime params", &Params { n: n as u32, chw: (c * h * w) as u32, hw: (h * w) as u32, k: k as u32 });
        let groups = gpu.groups_1d("lime_perturb", n as u64, WG)?;
        let dispatch = Dispatch::new(
            gpu,
            "lime_perturb",
            &LIME,
            "lime_perturb",
            &[],
            &[
                (0, params.as_entire_binding()),
                (1, image_t.binding()),
                (2, fill_t.binding()),
                (3, seg_t.binding()),
                (4, masks.binding()),
                (5, out.binding()),
            ],
            groups,
        )?;
        Ok(Perturbation { batch: b, k, _image: image_t, _fill: fill_t, _segments: seg_t, masks, _params: params, dispatch })
    }

    /// Upload the on/off rows [B, K] (nonzero = on) the next dispatch uses.
    pub fn set_masks(&self, gpu: &Gpu, masks: &[u32]) -> Result<()> {
        ensure!(masks.len() == self.batch * self.k, "lime: {} mask values, expected batch {} x {} superpixels", masks.len(), self.batch, self.k);
        gpu.write(&self.masks, masks)
    }

    pub fn dispatch(&self) -> &Dispatch {
        &self.dispatch
    }
}

/// The perturbation kernel with every on/off row, for the batching driver: one image, copy
/// r shows the superpixels that row r of `masks` [samples, K] switches on.
struct MaskCopies<'a> {
    perturb: &'a Perturbation,
    masks: &'a [u8],
}

impl CopyKernel for MaskCopies<'_> {
    fn layout(&self) -> Layout {
        Layout { rows: self.perturb.batch, copies: self.masks.len() / self.perturb.k, chunk_images: 1 }
    }
    /// Nothing per chunk: the image and its fill are bound when the kernel is built.
    fn load(&self, _: &Gpu, _: &Chunk, _: &[f32]) -> Result<()> {
        Ok(())
    }
    /// The batch's rows [B, K] (padded rows repeat the last copy's).
    fn seek(&self, gpu: &Gpu, batch: &Batch) -> Result<()> {
        let k = self.perturb.k;
        let rows: Vec<u32> = (0..batch.rows).flat_map(|j| &self.masks[batch.copy(j) * k..][..k]).map(|&v| v as u32).collect();
        self.perturb.set_masks(gpu, &rows)
    }
    fn dispatch(&self) -> &Dispatch {
        self.perturb.dispatch()
    }
}

/// `samples` on/off vectors over `k` superpixels ([samples, k], 1 = on), each bit a fair
/// coin from `seed`; row 0 is all ones (the image itself), as `lime` does.
pub fn sample_masks(samples: usize, k: usize, seed: u64) -> Vec<u8> {
    let mut rng = Rng::new(seed);
    let mut m: Vec<u8> = (0..samples * k).map(|_| (rng.next_u64() >> 63) as u8).collect();
    let first = k.min(m.len());
    m[..first].fill(1);
    m
}

/// `lime`'s kernel weights: d = cosine distance of each row to all-ones (1 for an all-zero
/// row, as sklearn's `pairwise_distances`), weight `sqrt(exp(-d^2 / width^2))`.
pub fn kernel_weights(masks: &[u8], k: usize, width: f64) -> Vec<f64> {
    masks
        .chunks(k)
        .map(|row| {
            let on = row.iter().filter(|&&b| b != 0).count() as f64;
            let d = 1.0 - (on / k as f64).sqrt();
            (-(d * d) / (width * width)).exp().sqrt()
        })
        .collect()
}

/// Weighted ridge regression with an unpenalised intercept (sklearn's `Ridge(alpha,
/// fit_intercept=True).fit(x, y, sample_weight=weights)`): centre x and y on their weighted
/// means, solve `(Xc^T W Xc + alpha I) b = Xc^T W yc` by Cholesky, intercept
/// `ybar - xbar . b`. `x` is [n, features] row-major. Errors: mismatched lengths, negative
/// or all-zero weights, a system that is not positive definite (alpha = 0 with collinear
/// features).
pub fn weighted_ridge(x: &[f64], y: &[f64], weights: &[f64], features: usize, alpha: f64) -> Result<RidgeFit> {
    let n = y.len();
    let k = features;
    ensure!(k > 0, "ridge: no features");
    ensure!(x.len() == n * k, "ridge: x has {} values, expected {n} samples x {k} features", x.len());
    ensure!(weights.len() == n, "ridge: {} weights for {n} samples", weights.len());
    ensure!(alpha.is_finite() && alpha >= 0.0, "ridge: alpha {alpha} must be >= 0");
    ensure!(weights.iter().all(|w| w.is_finite() && *w >= 0.0), "ridge: weights must be finite and >= 0");
    let wsum: f64 = weights.iter().sum();
    ensure!(wsum > 0.0, "ridge: all sample weights are 0");
    let mut xbar = vec![0.0; k];
    let mut ybar = 0.0;
    for s in 0..n {
        let ws = weights[s];
        ybar += ws * y[s];
        for j in 0..k {
            xbar[j] += ws * x[s * k + j];
        }
    }
    ybar /= wsum;
    xbar.iter_mut().for_each(|v| *v /= wsum);
    // A = Xc^T W Xc + alpha I (lower triangle), r = Xc^T W yc.
    let mut a = vec![0.0; k * k];
    let mut r = vec![0.0; k];
    let mut row = vec![0.0; k];
    for s in 0..n {
        let ws = weights[s];
        if ws == 0.0 {
            continue;
        }
        for j in 0..k {
            row[j] = x[s * k + j] - xbar[j];
        }
        let yc = y[s] - ybar;
        for i in 0..k {
            let wi = ws * row[i];
            r[i] += wi * yc;
            for j in 0..=i {
                a[i * k + j] += wi * row[j];
            }
        }
    }
    for i in 0..k {
        a[i * k + i] += alpha;
    }
    let coef = cholesky_solve(&mut a, &r, k)?;
    let intercept = ybar - xbar.iter().zip(&coef).map(|(m, b)| m * b).sum::<f64>();
    let (mut sse, mut sst) = (0.0, 0.0);
    for s in 0..n {
        let pred = intercept + (0..k).map(|j| x[s * k + j] * coef[j]).sum::<f64>();
        sse += weights[s] * (y[s] - pred).powi(2);
        sst += weights[s] * (y[s] - ybar).powi(2);
    }
    let score = if sst > 0.0 {
        1.0 - sse / sst
    } else if sse == 0.0 {
        1.0
    } else {
        0.0
    };
    Ok(RidgeFit { coefficients: coef, intercept, score })
}

/// Solve A x = b for symmetric positive definite A (lower triangle used, overwritten by L).
fn cholesky_solve(a: &mut [f64], b: &[f64], k: usize) -> Result<Vec<f64>> {
    for j in 0..k {
        let mut d = a[j * k + j];
        for p in 0..j {
            d -= a[j * k + p] * a[j * k + p];
        }
        let scale = a[j * k + j].abs().max(1e-300);
        // Not positive, or NaN: singular.
        if d.partial_cmp(&(1e-12 * scale)) != Some(std::cmp::Ordering::Greater) {
            bail!("ridge: the normal equations are singular (feature {j}); use alpha > 0");
        }
        let d = d.sqrt();
        a[j * k + j] = d;
        for i in j + 1..k {
            let mut v = a[i * k + j];
            for p in 0..j {
                v -= a[i * k + p] * a[j * k + p];
            }
            a[i * k + j] = v / d;
        }
    }
    let mut z = b.to_vec();
    for i in 0..k {
        for p in 0..i {
            z[i] -= a[i * k + p] * z[p];
        }
        z[i] /= a[i * k + i];
    }
    for i in (0..k).rev() {
        for p in i + 1..k {
            z[i] -= a[p * k + i] * z[p];
        }
        z[i] /= a[i * k + i];
    }
    Ok(z)
}

/// LIME for one image [C, H, W] of `model`: SLIC superpixels per `opts.slic`, then
/// [`explain_with_segments`].
pub fn explain(gpu: &Gpu, model: &Model, image: &[f32], classes: &Classes, opts: &LimeOptions) -> Result<LimeExplanation> {
    crate::platform::block_on(explain_async(gpu, model, image, classes, opts))
}

/// `explain`, awaitable (the browser's form; see `crate::platform`).
pub async fn explain_async(gpu: &Gpu, model: &Model, image: &[f32], classes: &Classes, opts: &LimeOptions) -> Result<LimeExplanation> {
    let chw = check_image(model, image)?;
    let segments = slic(&gray_of(image, chw), chw[1], chw[2], &opts.slic)?;
    explain_with_segments_async(gpu, model, image, segments, classes, opts).await
}

fn check_image(model: &Model, image: &[f32]) -> Result<[usize; 3]> {
    let chw = model.info.input_chw;
    ensure!(
        image.len() == model.image_len(),
        "lime: the image has {} values; the model takes {}x{}x{} = {} (C x H x W)",
        image.len(),
        chw[0],
        chw[1],
        chw[2],
        model.image_len()
    );
    Ok(chw)
}

/// LIME with a given segmentation: perturbed images built on the GPU and evaluated in
/// batches of `model.batch()`, then one ridge fit per class in `classes`. Errors: wrong
/// image size, class out of range, a segmentation of another size, 0 samples.
pub fn explain_with_segments(
    gpu: &Gpu,
    model: &Model,
    image: &[f32],
    segments: Segmentation,
    classes: &Classes,
    opts: &LimeOptions,
) -> Result<LimeExplanation> {
    crate::platform::block_on(explain_with_segments_async(gpu, model, image, segments, classes, opts))
}

/// `explain_with_segments`, awaitable (the browser's form; see `crate::platform`).
pub async fn explain_with_segments_async(
    gpu: &Gpu,
    model: &Model,
    image: &[f32],
    segments: Segmentation,
    classes: &Classes,
    opts: &LimeOptions,
) -> Result<LimeExplanation> {
    let chw = check_image(model, image)?;
    let nc = model.classes();
    if let Classes::List(list) = classes {
        ensure!(!list.is_empty(), "lime: no classes to explain");
        for &c in list {
            model.check_class(c)?;
        }
    }
    if let Classes::Top(t) = classes {
        ensure!(*t >= 1 && *t <= nc, "lime: top {t} classes asked for; the model has {nc}");
    }
    ensure!(opts.samples >= 1, "lime: at least 1 sample needed");
    ensure!(opts.kernel_width.is_finite() && opts.kernel_width > 0.0, "lime: kernel width {} must be positive", opts.kernel_width);
    ensure!((segments.h, segments.w) == (chw[1], chw[2]), "lime: segments are {}x{}, the image {}x{}", segments.h, segments.w, chw[1], chw[2]);
    let k = segments.count;
    let fill = fill_image(image, chw, &segments, opts.fill)?;
    let masks = sample_masks(opts.samples, k, opts.seed);
    let weights = kernel_weights(&masks, k, opts.kernel_width);

    let perturb = Perturbation::new(gpu, image, &fill, &segments, model.net.input())?;
    let kernel = MaskCopies { perturb: &perturb, masks: &masks };
    let probabilities = batching::Driver::new(gpu, model, &kernel)?.scores_async(image, Output::Probabilities).await?;
    let p0 = &probabilities[..nc];
    let predicted = (0..nc).max_by(|&a, &b| p0[a].total_cmp(&p0[b]).then(b.cmp(&a))).unwrap();
    let chosen: Vec<usize> = match classes {
        Classes::Predicted => vec![predicted],
        Classes::Top(t) => {
            let mut order: Vec<usize> = (0..nc).collect();
            order.sort_by(|&a, &b| p0[b].total_cmp(&p0[a]).then(a.cmp(&b)));
            order.truncate(*t);
            order
        }
        Classes::List(list) => list.clone(),
        Classes::All => (0..nc).collect(),
    };
    let mut out = LimeExplanation {
        image: image.to_vec(),
        chw,
        gray: gray_of(image, chw),
        segments,
        fill,
        masks,
        probabilities,
        weights,
        class_names: model.info.class_names.clone(),
        predicted,
        alpha: opts.alpha,
        classes: Vec::new(),
    };
    out.classes = chosen.iter().map(|&c| out.fit(c)).collect::<Result<_>>()?;
    Ok(out)
}

/// LIME of every class for one image and its row of pictures (one panel per class, `n`
/// supporting / opposing superpixels each, upscaled `scale`x).
pub fn class_row(gpu: &Gpu, model: &Model, image: &[f32], opts: &LimeOptions, n: usize, scale: u32) -> Result<(RgbImage, LimeExplanation)> {
    let e = explain(gpu, model, image, &Classes::All, opts)?;
    Ok((e.class_row(n, scale)?, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_weights_match_lime() {
        // All on: distance 0, weight 1. Half on of 4: d = 1 - sqrt(1/2).
        let w = kernel_weights(&[1, 1, 1, 1, 1, 0, 1, 0, 0, 0, 0, 0], 4, 0.25);
        assert!((w[0] - 1.0).abs() < 1e-15);
        let d: f64 = 1.0 - 0.5f64.sqrt();
        assert!((w[1] - (-(d * d) / 0.0625).exp().sqrt()).abs() < 1e-15);
        assert!((w[2] - (-16.0f64).exp().sqrt()).abs() < 1e-15);
    }

    #[test]
    fn masks_are_seeded_with_an_all_ones_first_row() {
        let a = sample_masks(50, 7, 3);
        assert_eq!(a, sample_masks(50, 7, 3));
        assert_ne!(a, sample_masks(50, 7, 4));
        assert!(a[..7].iter().all(|&v| v == 1));
        let ones = a[7..].iter().filter(|&&v| v == 1).count() as f64 / (49.0 * 7.0);
        assert!((ones - 0.5).abs() < 0.1, "{ones}");
    }

    #[test]
    fn ridge_errors() {
        assert!(weighted_ridge(&[1.0, 1.0], &[1.0, 2.0], &[1.0, 1.0], 1, 0.0).unwrap_err().0.contains("singular"));
        assert!(weighted_ridge(&[1.0], &[1.0, 2.0], &[1.0, 1.0], 1, 1.0).unwrap_err().0.contains("x has 1"));
        assert!(weighted_ridge(&[1.0, 2.0], &[1.0, 2.0], &[0.0, 0.0], 1, 1.0).is_err());
    }
}
