//! What a filter responds to: **filter ascent** (activation maximization, as Lucid /
//! tf-keras-vis), gradient ascent on the input image to maximize one filter's mean
//! activation at a layer, with the usual regularizers (L2 decay, jitter, periodic Gaussian
//! blur, total variation, octaves, gradient normalization). All filters of a layer are
//! optimized together as one batch: image b maximizes filter b. The gradient comes from the
//! network's own WGSL backward (`Network::explain_backward` seeded with 1/S on channel b's
//! plane of image b), the image updates are kernels in shaders/ascent.wgsl, and the CPU
//! reads back only the final images and activations. What a filter does on a given image:
//! `filter_outputs`.
//!
//! f64 references of the update kernels: src/reference/ascent.rs (tests/ascent.rs compares).

use super::Model;
use crate::gpu::{shaders::ASCENT, Dispatch, Gpu, Tensor};
use crate::render;
use crate::rng::Rng;
use crate::{bail, ensure, Error, Result};
use image::RgbImage;
use std::path::Path;

const WG: u32 = 256;
/// What shape errors of the update kernels name.
const WHAT: &str = "filter ascent";

/// Mirror of the shader's `Params` (one struct for every entry point; each dispatch fills
/// the fields its kernel reads).
#[repr(C)]
#[derive(Clone, Copy, Default, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    n: u32,
    batch: u32,
    c: u32,
    h: u32,
    w: u32,
    s: u32,
    src_h: u32,
    src_w: u32,
    seed: u32,
    sign: i32,
    radius: u32,
    normalize: u32,
    lr: f32,
    decay: f32,
    tv: f32,
    center: f32,
    amp: f32,
    lo: f32,
    hi: f32,
    sigma: f32,
    eps: f32,
    _pad: [u32; 3],
}

/// `[N, C, H, W]` of an image batch tensor, or an error naming `role`.
fn nchw(t: &Tensor, role: &str) -> Result<[usize; 4]> {
    match *t.shape() {
        [n, c, h, w] => Ok([n, c, h, w]),
        ref s => bail!("{WHAT}: {role} ({}) has shape {s:?}, expected [N, C, H, W]", t.label()),
    }
}

fn u32_of(what: &str, v: usize) -> Result<u32> {
    u32::try_from(v).map_err(|_| Error::new(format!("{WHAT}: {what} = {v} does not fit in u32")))
}

/// The update kernels of shaders/ascent.wgsl, one constructor each (tests call them on small
/// shapes against `reference::ascent`). Image tensors are `[N, C, H, W]`.
pub mod kernels {
    use super::*;

    fn dispatch(gpu: &Gpu, entry: &str, p: &Params, bindings: &[(u32, &Tensor)], groups: [u32; 3]) -> Result<Dispatch> {
        let label = format!("ascent {entry}");
        let params = gpu.uniform(&format!("{label} params"), p);
        let mut b: Vec<(u32, wgpu::BindingResource)> = vec![(0, params.as_entire_binding())];
        b.extend(bindings.iter().map(|(i, t)| (*i, t.binding())));
        Dispatch::new(gpu, &label, &ASCENT, entry, &[], &b, groups)
    }

    fn elementwise(gpu: &Gpu, entry: &str, p: &Params, bindings: &[(u32, &Tensor)]) -> Result<Dispatch> {
        let groups = gpu.groups_1d(&format!("ascent {entry}"), p.n as u64, WG)?;
        dispatch(gpu, entry, p, bindings, groups)
    }

    fn per_image(gpu: &Gpu, entry: &str, p: &Params, bindings: &[(u32, &Tensor)]) -> Result<Dispatch> {
        let groups = gpu.groups_1d(&format!("ascent {entry}"), p.n as u64, 1)?;
        dispatch(gpu, entry, p, bindings, groups)
    }

    /// `y = center + amp * (2u - 1)` with u uniform in [0, 1) from a hash of (`seed`, the
    /// image's filter index `filters[b]`, the index inside the image): a filter's start image
    /// does not depend on which batch it is in.
    pub fn init(gpu: &Gpu, y: &Tensor, filters: &Tensor, seed: u32, center: f32, amp: f32) -> Result<Dispatch> {
        let [n, c, h, w] = nchw(y, "image")?;
        filters.expect_len(WHAT, "filter indices", n)?;
        let p = Params { n: u32_of("elements", y.len())?, s: u32_of("image size", c * h * w)?, seed, center, amp, ..Default::default() };
        elementwise(gpu, "ascent_init", &p, &[(2, y), (5, filters)])
    }

    /// The layer's output gradient: `y[b, k, s] = k == filters[b] ? 1/S : 0` (`y` is the
    /// layer's output, `[N, K, ...]`).
    pub fn seed(gpu: &Gpu, y: &Tensor, filters: &Tensor) -> Result<Dispatch> {
        ensure!(y.shape().len() >= 2, "{WHAT}: layer output {} has shape {:?}, expected [N, K, ...]", y.label(), y.shape());
        let (n, k) = (y.shape()[0], y.shape()[1]);
        filters.expect_len(WHAT, "filter indices", n)?;
        let s = y.len() / (n * k);
        let p = Params { n: u32_of("elements", y.len())?, c: k as u32, s: s as u32, ..Default::default() };
        elementwise(gpu, "ascent_seed", &p, &[(2, y), (5, filters)])
    }

    /// `y = roll(x, sign * shift[b])` per image (numpy.roll over H and W; `shift` is `[N, 2]`
    /// i32 (dy, dx)).
    pub fn roll(gpu: &Gpu, y: &Tensor, x: &Tensor, shift: &Tensor, sign: i32) -> Result<Dispatch> {
        let [n, c, h, w] = nchw(x, "roll input")?;
        y.expect_len(WHAT, "roll output", x.len())?;
        shift.expect_len(WHAT, "shifts", 2 * n)?;
        let p = Params { n: u32_of("elements", x.len())?, c: c as u32, h: h as u32, w: w as u32, s: (h * w) as u32, sign, ..Default::default() };
        elementwise(gpu, "ascent_roll", &p, &[(1, x), (2, y), (4, shift)])
    }

    fn resize_params(y: &Tensor, x: &Tensor) -> Result<Params> {
        let [n, c, sh, sw] = nchw(x, "resize input")?;
        let [yn, yc, h, w] = nchw(y, "resize output")?;
        ensure!((yn, yc) == (n, c), "{WHAT}: resize from {:?} to {:?}: batch and channels must agree", x.shape(), y.shape());
        Ok(Params { n: u32_of("elements", y.len())?, c: c as u32, h: h as u32, w: w as u32, s: (h * w) as u32, src_h: sh as u32, src_w: sw as u32, ..Default::default() })
    }

    /// `y = bilinear resize of x` to `y`'s H x W (as render::resize_bilinear).
    pub fn resize(gpu: &Gpu, y: &Tensor, x: &Tensor) -> Result<Dispatch> {
        let p = resize_params(y, x)?;
        elementwise(gpu, "ascent_resize", &p, &[(1, x), (2, y)])
    }

    /// `dx = resize^T dy`: the gradient of a resize from `dx`'s size to `dy`'s.
    pub fn resize_backward(gpu: &Gpu, dx: &Tensor, dy: &Tensor) -> Result<Dispatch> {
        let mut p = resize_params(dy, dx)?;
        p.n = u32_of("elements", dx.len())?;
        p.s = p.src_h * p.src_w;
        elementwise(gpu, "ascent_resize_backward", &p, &[(3, dy), (2, dx)])
    }

    /// `out[b] = 1 / (sqrt(mean(g[b]^2)) + eps)`.
    pub fn inv_rms(gpu: &Gpu, out: &Tensor, g: &Tensor, eps: f32) -> Result<Dispatch> {
        let n = g.shape()[0];
        out.expect_len(WHAT, "inverse RMS", n)?;
        let p = Params { n: n as u32, s: u32_of("image size", g.len() / n)?, eps, ..Default::default() };
        per_image(gpu, "ascent_inv_rms", &p, &[(3, g), (6, out)])
    }

    /// `t = d TV(x) / d x` (anisotropic total variation per plane).
    pub fn tv_grad(gpu: &Gpu, t: &Tensor, x: &Tensor) -> Result<Dispatch> {
        let [_, c, h, w] = nchw(x, "image")?;
        t.expect_len(WHAT, "TV gradient", x.len())?;
        let p = Params { n: u32_of("elements", x.len())?, c: c as u32, h: h as u32, w: w as u32, s: (h * w) as u32, ..Default::default() };
        elementwise(gpu, "ascent_tv_grad", &p, &[(1, x), (2, t)])
    }

    /// `img = clamp(img + lr * (g * r - decay * (img - center) - tv * t), lo, hi)` with
    /// `r = inv_rms[b]`, or 1 without it. In place.
    pub fn step(gpu: &Gpu, img: &Tensor, g: &Tensor, t: &Tensor, inv_rms: Option<&Tensor>, cfg: &StepConfig) -> Result<Dispatch> {
        let [n, c, h, w] = nchw(img, "image")?;
        g.expect_len(WHAT, "image gradient", img.len())?;
        t.expect_len(WHAT, "TV gradient", img.len())?;
        if let Some(r) = inv_rms {
            r.expect_len(WHAT, "inverse RMS", n)?;
        }
        let p = Params {
            n: u32_of("elements", img.len())?,
            s: u32_of("image size", c * h * w)?,
            normalize: inv_rms.is_some() as u32,
            lr: cfg.lr,
            decay: cfg.decay,
            tv: cfg.tv,
            center: cfg.center,
            lo: cfg.lo,
            hi: cfg.hi,
            ..Default::default()
        };
        // Without normalization the shader never reads inv_rms; bind g there (read-only).
        elementwise(gpu, "ascent_step", &p, &[(9, img), (3, g), (8, t), (7, inv_rms.unwrap_or(g))])
    }

    /// Blur half-width for `sigma`: ceil(3 sigma), at most the larger image side.
    pub fn blur_radius(sigma: f32, h: usize, w: usize) -> usize {
        ((3.0 * sigma).ceil().max(0.0) as usize).min(h.max(w))
    }

    /// Separable Gaussian blur of `x` in place through `tmp` (same shape): along W into tmp,
    /// along H back into x.
    pub fn blur(gpu: &Gpu, x: &Tensor, tmp: &Tensor, sigma: f32) -> Result<[Dispatch; 2]> {
        let [_, c, h, w] = nchw(x, "image")?;
        tmp.expect_len(WHAT, "blur scratch", x.len())?;
        ensure!(sigma > 0.0 && sigma.is_finite(), "{WHAT}: blur sigma {sigma} must be positive");
        let p = Params {
            n: u32_of("elements", x.len())?,
            c: c as u32,
            h: h as u32,
            w: w as u32,
            s: (h * w) as u32,
            sigma,
            radius: blur_radius(sigma, h, w) as u32,
            ..Default::default()
        };
        Ok([elementwise(gpu, "ascent_blur_h", &p, &[(1, x), (2, tmp)])?, elementwise(gpu, "ascent_blur_v", &p, &[(1, tmp), (2, x)])?])
    }

    /// `out[b] = mean of act[b, filters[b], ...]` (`act` is a layer output `[N, K, ...]`).
    pub fn filter_mean(gpu: &Gpu, out: &Tensor, act: &Tensor, filters: &Tensor) -> Result<Dispatch> {
        ensure!(act.shape().len() >= 2, "{WHAT}: layer output {} has shape {:?}, expected [N, K, ...]", act.label(), act.shape());
        let (n, k) = (act.shape()[0], act.shape()[1]);
        out.expect_len(WHAT, "filter means", n)?;
        filters.expect_len(WHAT, "filter indices", n)?;
        let p = Params { n: n as u32, c: k as u32, s: u32_of("plane size", act.len() / (n * k))?, ..Default::default() };
        per_image(gpu, "ascent_filter_mean", &p, &[(1, act), (5, filters), (6, out)])
    }
}

/// The parameters of one `ascent_step`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StepConfig {
    pub lr: f32,
    pub decay: f32,
    pub tv: f32,
    pub center: f32,
    pub lo: f32,
    pub hi: f32,
}

/// Settings of [`filter_ascent`]. The defaults suit 48x48 gray faces in [0, 1].
#[derive(Debug, Clone, PartialEq)]
pub struct AscentOptions {
    /// Gradient steps per octave.
    pub steps: usize,
    /// Step size: with `normalize`, the RMS change of a pixel per step.
    pub lr: f32,
    /// L2 decay towards `center` (the gradient of decay/2 * |x - center|^2 is subtracted).
    pub decay: f32,
    /// Each step the image is rolled (wrapping) by a random shift of up to this many pixels
    /// per axis before the forward pass, and the gradient rolled back (0: no jitter).
    pub jitter: usize,
    /// Blur the images every `blur_every` steps (0: never) ...
    pub blur_every: usize,
    /// ... with a Gaussian of this standard deviation in pixels.
    pub blur_sigma: f32,
    /// Weight of the total-variation penalty (anisotropic, per pixel gradient in [-4, 4]).
    pub tv: f32,
    /// Resolutions: 1 optimizes at the model's size; k > 1 starts at size / scale^(k-1),
    /// upscaling bilinearly between octaves. A smaller image is parameterized by its own
    /// pixels and resized bilinearly to the model's input for the forward pass.
    pub octaves: usize,
    pub octave_scale: f32,
    /// Divide the activation gradient by its RMS per image (the regularizers are added after).
    pub normalize: bool,
    /// Clamp pixels to this range after every step (`None`: unbounded).
    pub clamp: Option<(f32, f32)>,
    /// Start: `center` plus uniform noise of half-range `init_noise`.
    pub center: f32,
    pub init_noise: f32,
    pub seed: u64,
    /// At most this many filters per batch (`None`: all at once); more are done in chunks.
    pub max_batch: Option<usize>,
    /// What `filter_ascent_run` builds the model for (nn::precision; default f32).
    pub precision: crate::nn::precision::Precision,
}

impl Default for AscentOptions {
    fn default() -> Self {
        AscentOptions {
            steps: 128,
            lr: 0.05,
            decay: 0.05,
            jitter: 2,
            blur_every: 4,
            blur_sigma: 0.5,
            tv: 0.05,
            octaves: 1,
            octave_scale: 1.4,
            normalize: true,
            clamp: Some((0.0, 1.0)),
            center: 0.5,
            init_noise: 0.1,
            seed: 1,
            max_batch: None,
            precision: crate::nn::precision::Precision::F32,
        }
    }
}

impl AscentOptions {
    fn check(&self) -> Result<()> {
        ensure!(self.steps > 0, "{WHAT}: steps must be at least 1");
        ensure!(self.lr.is_finite() && self.lr > 0.0, "{WHAT}: learning rate {} must be positive", self.lr);
        ensure!(self.decay.is_finite() && self.decay >= 0.0, "{WHAT}: decay {} must be >= 0", self.decay);
        ensure!(self.tv.is_finite() && self.tv >= 0.0, "{WHAT}: TV weight {} must be >= 0", self.tv);
        ensure!(self.blur_every == 0 || (self.blur_sigma.is_finite() && self.blur_sigma > 0.0), "{WHAT}: blur sigma {} must be positive", self.blur_sigma);
        ensure!(self.octaves >= 1, "{WHAT}: octaves must be at least 1");
        ensure!(self.octaves == 1 || (self.octave_scale.is_finite() && self.octave_scale >= 1.0), "{WHAT}: octave scale {} must be >= 1", self.octave_scale);
        if let Some((lo, hi)) = self.clamp {
            ensure!(lo.is_finite() && hi.is_finite() && lo < hi, "{WHAT}: clamp range [{lo}, {hi}] must be finite and non-empty");
        }
        ensure!(self.max_batch != Some(0), "{WHAT}: max batch must be at least 1");
        Ok(())
    }

    fn step_config(&self) -> StepConfig {
        let (lo, hi) = self.clamp.unwrap_or((f32::MIN, f32::MAX));
        StepConfig { lr: self.lr, decay: self.decay, tv: self.tv, center: self.center, lo, hi }
    }

    /// Image size of each octave, smallest first; the last is the model's.
    pub fn octave_sizes(&self, h: usize, w: usize) -> Vec<(usize, usize)> {
        (0..self.octaves)
            .map(|o| {
                let f = self.octave_scale.powi((self.octaves - 1 - o) as i32) as f64;
                (((h as f64 / f).round() as usize).max(1), ((w as f64 / f).round() as usize).max(1))
            })
            .collect()
    }
}

/// Result of [`filter_ascent`].
#[derive(Debug, Clone)]
pub struct Ascent {
    pub layer: String,
    pub filters: Vec<usize>,
    /// Per image: channels, height, width (the model's input).
    pub chw: [usize; 3],
    /// `[filters.len(), C, H, W]`: image i maximizes `filters[i]`.
    pub images: Vec<f32>,
    /// Mean activation of each filter for its start image and its final image (no jitter).
    pub start_activation: Vec<f32>,
    pub activation: Vec<f32>,
}

impl Ascent {
    pub fn image(&self, i: usize) -> &[f32] {
        let len = self.chw.iter().product::<usize>();
        &self.images[i * len..(i + 1) * len]
    }

    /// "filter 12  act 3.41" per image.
    pub fn labels(&self) -> Vec<String> {
        self.filters.iter().zip(&self.activation).map(|(f, a)| format!("filter {f}  act {a:.2}")).collect()
    }

    /// The images as gray pictures (the first channel), each contrast-stretched to its own
    /// min..max when `stretch`, else shown as is (clamped to [0, 1]).
    pub fn pictures(&self, stretch: bool) -> Vec<RgbImage> {
        let [_, h, w] = self.chw;
        (0..self.filters.len())
            .map(|i| {
                let plane = &self.image(i)[..h * w];
                if stretch {
                    render::gray_to_rgb(&render::normalize(plane, None), h, w)
                } else {
                    render::gray_to_rgb(plane, h, w)
                }
            })
            .collect()
    }

    /// Labelled grid PNG ([`render::grid`]): `cols` per row (0: about square), each cell
    /// upscaled `scale`x.
    pub fn save_grid(&self, path: &Path, cols: usize, scale: u32, stretch: bool) -> Result<()> {
        let cols = if cols == 0 { (self.filters.len() as f64).sqrt().ceil() as usize } else { cols };
        render::grid(&self.pictures(stretch), cols, &self.labels(), scale, path)
    }

    /// The raw images as a NumPy `.npy` file: little-endian f32, shape (n, H, W) for one
    /// channel, (n, C, H, W) otherwise (`numpy.load` reads it).
    pub fn save_npy(&self, path: &Path) -> Result<()> {
        let [c, h, w] = self.chw;
        let shape = if c == 1 { vec![self.filters.len(), h, w] } else { vec![self.filters.len(), c, h, w] };
        write_npy(path, &shape, &self.images)
    }

    /// `filter,start_activation,activation` rows.
    pub fn save_csv(&self, path: &Path) -> Result<()> {
        let mut s = String::from("filter,start_activation,activation\n");
        for ((f, a0), a) in self.filters.iter().zip(&self.start_activation).zip(&self.activation) {
            s += &format!("{f},{a0},{a}\n");
        }
        crate::io::write_atomic(path, s.as_bytes())
    }
}

/// Write `values` as a NumPy v1.0 `.npy` file of `shape` (f32, C order).
pub fn write_npy(path: &Path, shape: &[usize], values: &[f32]) -> Result<()> {
    ensure!(shape.iter().product::<usize>() == values.len(), "{}: {} values for shape {shape:?}", path.display(), values.len());
    let dims: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
    let tuple = if dims.len() == 1 { format!("({},)", dims[0]) } else { format!("({})", dims.join(", ")) };
    let mut header = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': {tuple}, }}");
    // Magic (6) + version (2) + length (2) + header + '\n', padded to a multiple of 64.
    let total = (10 + header.len() + 1).div_ceil(64) * 64;
    header += &" ".repeat(total - 10 - header.len() - 1);
    header.push('\n');
    let mut bytes = Vec::with_capacity(total + 4 * values.len());
    bytes.extend_from_slice(b"\x93NUMPY\x01\x00");
    bytes.extend_from_slice(&(header.len() as u16).to_le_bytes());
    bytes.extend_from_slice(header.as_bytes());
    for v in values {
        bytes.extend_from_slice(&v.to_le_bytes());
    }
    crate::io::write_atomic(path, &bytes)
}

/// The default layer of filter ascent: the model's first convolution (see
/// [`is_affine_stationary`] for why its pictures are uniform).
/// The first conv layer's block output (after its BN and activation): the conv layer as a
/// Keras user sees it with a fused activation. The raw conv output is affine in the image,
/// so its ascent images come out as flat squares (see `is_affine_stationary`).
pub fn default_layer(model: &Model) -> Result<usize> {
    model.conv_layers().first().map(|&c| model.block_output(c)).ok_or_else(|| {
        let names: Vec<&str> = model.net.layers.iter().map(|l| l.name.as_str()).collect();
        Error::new(format!("model {} has no convolution layer; name a layer: {}", model.net.spec.name, names.join(", ")))
    })
}

/// Is layer `i` reached from the image through convolutions, padding, BatchNorm (inference)
/// and dropout only? Then it is affine in the image and shift-equivariant, so its mean
/// activation weighs every pixel away from the borders alike: the ascent can only raise or
/// lower overall brightness and its images come out uniform (with border effects). The
/// conv block's output (after its activation, [`Model::block_output`]) shows patterns.
pub fn is_affine_stationary(model: &Model, i: usize) -> bool {
    model.net.layers[..=i].iter().all(|l| l.spec.is_affine_stationary())
}

/// Number of filters (channels, or units after a dense layer) of layer `i`'s output.
pub fn filter_count(model: &Model, i: usize) -> usize {
    model.net.layers[i].out_shape[1]
}

fn filter_noun(model: &Model, i: usize) -> &'static str {
    let l = &model.net.layers[i];
    if l.is_conv() {
        "filters"
    } else if l.out_shape.len() == 2 {
        "units"
    } else {
        "channels"
    }
}

/// Check filter indices against layer `i`, naming the layer and its filter count.
pub fn check_filters(model: &Model, i: usize, filters: &[usize]) -> Result<()> {
    let name = &model.net.layers[i].name;
    ensure!(!filters.is_empty(), "layer {name}: no filters to visualize");
    let k = filter_count(model, i);
    if let Some(f) = filters.iter().find(|&&f| f >= k) {
        bail!("filter {f} is out of range: layer {name} has {k} {} (0..={})", filter_noun(model, i), k - 1);
    }
    Ok(())
}

/// Parse "0,1,5" / "3-7" / "0,4-6,9" (ranges inclusive) into indices.
pub fn parse_filters(s: &str) -> Result<Vec<usize>> {
    let mut out = Vec::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let num = |t: &str| t.trim().parse::<usize>().map_err(|_| Error::new(format!("filters {s:?}: {t:?} is not a filter index (use e.g. 0,1,5 or 0-7)")));
        match part.split_once(['-', ':']) {
            Some((a, b)) => {
                let (a, b) = (num(a)?, num(b)?);
                ensure!(a <= b, "filters {s:?}: range {part} is empty");
                out.extend(a..=b);
            }
            None => out.push(num(part)?),
        }
    }
    ensure!(!out.is_empty(), "filters {s:?}: no filter indices");
    Ok(out)
}

/// The model's inference forward dispatches up to and including layer `layer` (dispatch
/// labels start with their layer's name): the ascent needs nothing after it.
fn forward_prefix(model: &Model, layer: usize) -> Vec<&Dispatch> {
    let later: Vec<&str> = model.net.layers[layer + 1..].iter().map(|l| l.name.as_str()).collect();
    model
        .net
        .forward_infer_dispatches()
        .take_while(|d| !later.contains(&d.label.split(' ').next().unwrap_or("")))
        .collect()
}

/// Per-filter jitter streams: filter f's shifts do not depend on its batch.
fn jitter_rng(seed: u64, filter: usize) -> Rng {
    Rng::new(seed ^ (filter as u64 + 1).wrapping_mul(0xD134_2543_DE82_EF95))
}

/// Gradient ascent on the input for each filter of `layer` (every filter when `filters` is
/// `None`), in chunks of `model.batch()` images (the last chunk padded by repeating its last
/// filter). See [`AscentOptions`] for the regularizers.
pub fn filter_ascent(gpu: &Gpu, model: &Model, layer: &str, filters: Option<&[usize]>, opts: &AscentOptions) -> Result<Ascent> {
    crate::platform::block_on(filter_ascent_async(gpu, model, layer, filters, opts))
}

/// `filter_ascent`, awaitable (the browser's form; see `crate::platform`).
pub async fn filter_ascent_async(gpu: &Gpu, model: &Model, layer: &str, filters: Option<&[usize]>, opts: &AscentOptions) -> Result<Ascent> {
    opts.check()?;
    let li = model.layer_index(layer)?;
    let all: Vec<usize>;
    let filters = match filters {
        Some(f) => f,
        None => {
            all = (0..filter_count(model, li)).collect();
            &all
        }
    };
    check_filters(model, li, filters)?;
    let chunk = opts.max_batch.unwrap_or(usize::MAX).min(model.batch());
    let len = model.image_len();
    let mut out = Ascent {
        layer: layer.to_string(),
        filters: filters.to_vec(),
        chw: model.info.input_chw,
        images: Vec::with_capacity(filters.len() * len),
        start_activation: Vec::new(),
        activation: Vec::new(),
    };
    for part in filters.chunks(chunk) {
        let (images, start, end) = ascend_batch_async(gpu, model, li, part, opts).await?;
        out.images.extend_from_slice(&images[..part.len() * len]);
        out.start_activation.extend_from_slice(&start[..part.len()]);
        out.activation.extend_from_slice(&end[..part.len()]);
    }
    Ok(out)
}

/// [`filter_ascent`] on a trained run: loads `run_dir` with a batch of all the filters (or
/// `opts.max_batch`). `layer` defaults to the first conv layer, `filters` to all of them.
pub fn filter_ascent_run(gpu: &Gpu, run_dir: &Path, layer: Option<&str>, filters: Option<&[usize]>, opts: &AscentOptions) -> Result<Ascent> {
    opts.check()?;
    // A batch-1 build first: layer names and filter counts, and the errors about them.
    let probe = Model::load_with(gpu, run_dir, 1, opts.precision)?;
    let li = match layer {
        Some(name) => probe.layer_index(name)?,
        None => default_layer(&probe)?,
    };
    let all: Vec<usize> = (0..filter_count(&probe, li)).collect();
    let filters = filters.unwrap_or(&all);
    check_filters(&probe, li, filters)?;
    let name = probe.net.layers[li].name.clone();
    drop(probe);
    let batch = filters.len().min(opts.max_batch.unwrap_or(usize::MAX));
    let model = Model::load_with(gpu, run_dir, batch, opts.precision)?;
    filter_ascent(gpu, &model, &name, Some(filters), opts)
}

/// One batch: `part.len() <= model.batch()` filters. Returns (images, start, final
/// activation) for the whole (padded) batch.
async fn ascend_batch_async(gpu: &Gpu, model: &Model, li: usize, part: &[usize], opts: &AscentOptions) -> Result<(Vec<f32>, Vec<f32>, Vec<f32>)> {
    let net = &model.net;
    let n = model.batch();
    let [c, h, w] = model.info.input_chw;
    let mut padded: Vec<u32> = part.iter().map(|&f| f as u32).collect();
    padded.resize(n, *padded.last().expect("a non-empty chunk"));
    let filters = gpu.upload("ascent filters", &[n], &padded)?;
    let (act, dact) = net.activation(li);
    let dact = dact.ok_or_else(|| Error::new(format!("layer {}: no output gradient buffer", net.layers[li].name)))?;
    let input_grad = net.input_grad().ok_or_else(|| Error::new("filter ascent needs a model built with input gradients (Model::load does)"))?;

    let forward = forward_prefix(model, li);
    let backward = net.explain_backward(gpu, li, 0)?;
    let shift = gpu.tensor("ascent shifts", &[n, 2])?;
    let inv_rms = gpu.tensor("ascent inverse RMS", &[n])?;
    let means = gpu.tensor("ascent filter means", &[n])?;
    let full = [n, c, h, w];
    let gfull = gpu.tensor("ascent gradient", &full)?;
    let upsampled = gpu.tensor("ascent upsampled image", &full)?;
    let mean_dispatch = kernels::filter_mean(gpu, &means, act, &filters)?;
    gpu.run([&kernels::seed(gpu, dact, &filters)?])?;

    let cfg = opts.step_config();
    let sizes = opts.octave_sizes(h, w);
    let zero_shift = vec![0i32; 2 * n];
    let mut rngs: Vec<Rng> = padded.iter().map(|&f| jitter_rng(opts.seed, f as usize)).collect();
    let mut image: Option<Tensor> = None;
    let mut start = Vec::new();
    for (o, &(oh, ow)) in sizes.iter().enumerate() {
        let shape = [n, c, oh, ow];
        let p = gpu.tensor(&format!("ascent image octave {o}"), &shape)?;
        match &image {
            None => gpu.run([&kernels::init(gpu, &p, &filters, opts.seed as u32 ^ (opts.seed >> 32) as u32, opts.center, opts.init_noise)?])?,
            Some(prev) => gpu.run([&kernels::resize(gpu, &p, prev)?])?,
        }
        let low = (oh, ow) != (h, w);
        // Image -> (resize) -> roll -> network input; input gradient -> roll back ->
        // (resize adjoint) -> step.
        let mut pre = Vec::new();
        if low {
            pre.push(kernels::resize(gpu, &upsampled, &p)?);
        }
        pre.push(kernels::roll(gpu, net.input(), if low { &upsampled } else { &p }, &shift, 1)?);
        let tvg = gpu.tensor("ascent TV gradient", &shape)?;
        let gp = if low { gpu.tensor("ascent low-res gradient", &shape)? } else { gfull.clone() };
        let mut post = vec![kernels::roll(gpu, &gfull, input_grad, &shift, -1)?];
        if low {
            post.push(kernels::resize_backward(gpu, &gp, &gfull)?);
        }
        if opts.normalize {
            post.push(kernels::inv_rms(gpu, &inv_rms, &gp, 1e-8)?);
        }
        if opts.tv > 0.0 {
            post.push(kernels::tv_grad(gpu, &tvg, &p)?);
        }
        post.push(kernels::step(gpu, &p, &gp, &tvg, opts.normalize.then_some(&inv_rms), &cfg)?);
        let blur = if opts.blur_every > 0 {
            let tmp = gpu.tensor("ascent blur scratch", &shape)?;
            Some(kernels::blur(gpu, &p, &tmp, opts.blur_sigma)?)
        } else {
            None
        };
        let step: Vec<&Dispatch> = pre.iter().chain(forward.iter().copied()).chain(&backward).chain(&post).collect();
        let measure: Vec<&Dispatch> = pre.iter().chain(forward.iter().copied()).chain([&mean_dispatch]).collect();

        if o == 0 {
            gpu.write(&shift, &zero_shift)?;
            gpu.run(measure.iter().copied())?;
            start = gpu.read_async(&means).await?;
        }
        let mut shifts = vec![0i32; 2 * n];
        let mut last = None;
        for t in 0..opts.steps {
            if opts.jitter > 0 {
                let j = opts.jitter as i64;
                for (b, rng) in rngs.iter_mut().enumerate() {
                    shifts[2 * b] = (rng.below(2 * opts.jitter + 1) as i64 - j) as i32;
                    shifts[2 * b + 1] = (rng.below(2 * opts.jitter + 1) as i64 - j) as i32;
                }
            }
            gpu.write(&shift, &shifts)?;
            let blur_now = blur.as_ref().filter(|_| (t + 1) % opts.blur_every.max(1) == 0);
            let idx = gpu.submit(step.iter().copied().chain(blur_now.into_iter().flatten()));
            // Keep the queue a few steps deep (bounded staging memory, responsive drivers).
            if t % 8 == 7 {
                gpu.wait(last.take())?;
            }
            last = Some(idx);
        }
        gpu.wait(last)?;
        if o + 1 == sizes.len() {
            gpu.write(&shift, &zero_shift)?;
            gpu.run(measure.iter().copied())?;
        }
        image = Some(p);
    }
    let images = gpu.read_async(image.as_ref().expect("at least one octave")).await?;
    let end = gpu.read_async(&means).await?;
    Ok((images, start, end))
}
