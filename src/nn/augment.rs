//! Random rotation, shifts, zoom and horizontal flip of an image batch on the GPU, as Keras'
//! `ImageDataGenerator(rotation_range, width_shift_range, height_shift_range, zoom_range,
//! horizontal_flip, fill_mode)`: applied to the input data only (no backward). Kernels:
//! shaders/augment.wgsl. Reference (the same draws bit for bit, the same map in f64):
//! src/reference/augment.rs.
//!
//! Per sample (shared by its channels): angle uniform in [-rotation, rotation) degrees,
//! shifts uniform in [-shift, shift) of W and H, zoom factors uniform in [1 - zoom,
//! 1 + zoom) drawn independently per axis (as Keras), flip with probability 0.5. Each
//! output pixel is a bilinear sample of the input at the inverse-mapped position about the
//! image centre; taps outside the image clamp to the edge ([`Fill::Nearest`], Keras'
//! default) or read 0 ([`Fill::Constant`]).
//!
//! Differences from Keras, all within a pixel: the centre is the geometric one, ((H-1)/2,
//! (W-1)/2), where Keras' `transform_matrix_offset_center` uses (H/2 + 0.5, W/2 + 0.5), one
//! pixel off (so here a flip or a 90-degree turn is an exact pixel permutation); constant
//! fill blends to 0 across the one-pixel band outside the image (scipy's "grid-constant")
//! where Keras' scipy "constant" cuts to 0 at the border; shift ranges are fractions only
//! (Keras reads values >= 1 as pixels).
//!
//! The seed lives in the op's uniform: call [`Augment::set_seed`] before each step (a 4-byte
//! `queue.write_buffer`; no new buffers or bind groups).

use super::{nchw, u32_of};
use crate::gpu::{shaders::AUGMENT, Dispatch, Gpu, Tensor};
use crate::{ensure, Result};

/// Taps outside the image.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Fill {
    /// Clamp to the nearest edge pixel (Keras' default `fill_mode="nearest"`).
    Nearest,
    /// Zero (Keras' `fill_mode="constant"`, `cval=0`).
    Constant,
}

/// Ranges of the random transform, as Keras' ImageDataGenerator arguments.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct AugmentConfig {
    /// Angle uniform in [-rotation_deg, rotation_deg] degrees; 0..=180.
    pub rotation_deg: f32,
    /// Horizontal shift uniform in [-width_shift, width_shift] times W; 0..1.
    pub width_shift: f32,
    /// Vertical shift uniform in [-height_shift, height_shift] times H; 0..1.
    pub height_shift: f32,
    /// Zoom factors uniform in [1 - zoom, 1 + zoom], one per axis; 0..1 (>1 zooms out).
    pub zoom: f32,
    /// Mirror left-right with probability 0.5.
    pub horizontal_flip: bool,
    pub fill: Fill,
}

impl AugmentConfig {
    /// No augmentation: the output equals the input exactly.
    pub fn none() -> Self {
        AugmentConfig { rotation_deg: 0.0, width_shift: 0.0, height_shift: 0.0, zoom: 0.0, horizontal_flip: false, fill: Fill::Nearest }
    }

    /// What the FER2013 reports used: `ImageDataGenerator(rotation_range=10,
    /// width_shift_range=0.1, height_shift_range=0.1, zoom_range=0.1, horizontal_flip=True)`
    /// with the default fill_mode="nearest".
    pub fn reports() -> Self {
        AugmentConfig { rotation_deg: 10.0, width_shift: 0.1, height_shift: 0.1, zoom: 0.1, horizontal_flip: true, fill: Fill::Nearest }
    }

    /// True when every range is 0 and flip is off.
    pub fn is_identity(&self) -> bool {
        self.rotation_deg == 0.0 && self.width_shift == 0.0 && self.height_shift == 0.0 && self.zoom == 0.0 && !self.horizontal_flip
    }

    /// Error unless every range is within Keras' sensible bounds, naming the op.
    pub fn validate(&self, name: &str) -> Result<()> {
        ensure!(
            (0.0..=180.0).contains(&self.rotation_deg),
            "layer {name}: rotation range {} degrees must be in [0, 180]",
            self.rotation_deg
        );
        for (what, v) in [("width shift", self.width_shift), ("height shift", self.height_shift), ("zoom", self.zoom)] {
            ensure!((0.0..1.0).contains(&v), "layer {name}: {what} range {v} must be in [0, 1)");
        }
        Ok(())
    }
}

impl Default for AugmentConfig {
    fn default() -> Self {
        AugmentConfig::none()
    }
}

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    n: u32,
    c: u32,
    h: u32,
    w: u32,
    seed: u32,
    rotation: f32,
    width_shift: f32,
    height_shift: f32,
    zoom: f32,
    flip: u32,
    fill: u32,
    batch: u32,
}

/// Byte offset of `seed` in `Params` (what `set_seed` rewrites).
const SEED_OFFSET: u64 = 16;

const WG: u32 = 256;

/// Draws per sample written by [`Augment::draws`].
pub const DRAWS: usize = 6;

pub struct Augment {
    pub name: String,
    pub cfg: AugmentConfig,
    /// Input (= output) shape [N, C, H, W].
    pub shape: [usize; 4],
    params: wgpu::Buffer,
}

impl Augment {
    /// `shape` is `[N, C, H, W]`; the seed starts at 0.
    pub fn new(gpu: &Gpu, name: &str, cfg: AugmentConfig, shape: &[usize]) -> Result<Self> {
        cfg.validate(name)?;
        let shape = nchw(name, shape)?;
        let [n, c, h, w] = shape;
        // Pixel coordinates are f32: exact below 2^24.
        ensure!(h < 1 << 24 && w < 1 << 24, "layer {name}: image size {h}x{w} is too large (each side must be below 2^24)");
        let p = Params {
            n: u32_of(name, "elements", n * c * h * w)?,
            c: c as u32,
            h: h as u32,
            w: w as u32,
            seed: 0,
            rotation: cfg.rotation_deg,
            width_shift: cfg.width_shift,
            height_shift: cfg.height_shift,
            zoom: cfg.zoom,
            flip: cfg.horizontal_flip as u32,
            fill: match cfg.fill {
                Fill::Nearest => 0,
                Fill::Constant => 1,
            },
            batch: n as u32,
        };
        let params = gpu.uniform(&format!("{name} params"), &p);
        Ok(Augment { name: name.to_string(), cfg, shape, params })
    }

    /// Seed of the transforms of the next submitted forward (queued; ordered before the next
    /// submit). Sample n of a batch gets the transform of (seed, n).
    pub fn set_seed(&self, gpu: &Gpu, seed: u32) {
        gpu.queue.write_buffer(&self.params, SEED_OFFSET, bytemuck::bytes_of(&seed));
    }

    fn len(&self) -> usize {
        self.shape.iter().product()
    }

    fn dispatch(&self, gpu: &Gpu, entry: &str, invocations: usize, bindings: &[(u32, &Tensor)]) -> Result<Dispatch> {
        let label = format!("{} {entry}", self.name);
        let mut b: Vec<(u32, wgpu::BindingResource)> = vec![(0, self.params.as_entire_binding())];
        b.extend(bindings.iter().map(|(i, t)| (*i, t.binding())));
        let groups = gpu.groups_1d(&label, invocations as u64, WG)?;
        Dispatch::new(gpu, &label, &AUGMENT, entry, &[], &b, groups)
    }

    /// y = x under each sample's random transform of the current seed. Overwrites y (which
    /// must be another buffer than x: every pixel reads its neighbours).
    pub fn forward(&self, gpu: &Gpu, x: &Tensor, y: &Tensor) -> Result<Dispatch> {
        x.expect_shape(&self.name, "input", &self.shape)?;
        y.expect_shape(&self.name, "output", &self.shape)?;
        ensure!(
            x.buffer() != y.buffer(),
            "layer {}: {} and {} share one buffer; augmentation cannot run in place",
            self.name,
            x.label(),
            y.label()
        );
        self.dispatch(gpu, "augment_forward", self.len(), &[(1, x), (2, y)])
    }

    /// Debug / tests: each sample's raw draws under the current seed into `out` [N, 6]:
    /// angle in degrees, width and height shift fractions, zoom deviations dzx, dzy (factor
    /// 1 + dz), flip (0 / 1). `reference::augment::draws` computes the same bits.
    pub fn draws(&self, gpu: &Gpu, out: &Tensor) -> Result<Dispatch> {
        out.expect_shape(&self.name, "draws", &[self.shape[0], DRAWS])?;
        self.dispatch(gpu, "augment_draws", self.shape[0], &[(3, out)])
    }
}
