//! Occlusion sensitivity (Zeiler & Fergus 2014): slide a square patch of a fill value over
//! the image and record how much the class probability drops at each position.
//!
//! The occluded copies are made on the GPU by shaders/occlusion.wgsl straight into the
//! network's input batch, a batch at a time, and scored by the batching driver
//! (`batching::Driver::scores`: probabilities read back once per chunk of images). The host turns the
//! drops [P] of an image into a map (each pixel averages the drops of the patches that
//! cover it). Reference: src/reference/occlusion.rs.

use super::batching::{self, Batch, Chunk, CopyKernel, Cursor, Layout, Output};
use super::saliency::{image_count, Target};
use super::Model;
use crate::gpu::{shaders::OCCLUSION, Dispatch, Gpu, Tensor};
use crate::nn::u32_of;
use crate::{ensure, Result};
use std::mem::offset_of;

/// Occlusion settings.
#[derive(Debug, Clone, PartialEq)]
pub struct OcclusionOptions {
    /// Patch side in pixels (1..=min(H, W)).
    pub size: usize,
    /// Step between patch positions (>= 1); the last row / column is clamped inside.
    pub stride: usize,
    /// Value the patch is filled with (0.5: mid-gray).
    pub fill: f32,
    pub target: Target,
}

impl Default for OcclusionOptions {
    fn default() -> Self {
        OcclusionOptions { size: 8, stride: 4, fill: 0.5, target: Target::Predicted }
    }
}

/// Occlusion maps of a set of images.
#[derive(Debug, Clone)]
pub struct Occlusion {
    /// [n, H*W]: per pixel, the mean probability drop of the patches covering it.
    pub maps: Vec<f32>,
    /// [n, P]: p_c(x) - p_c(x occluded at position pos), positions row-major over `grid`.
    pub drops: Vec<f32>,
    /// (NY, NX) patch positions.
    pub grid: (usize, usize),
    /// p_c(x) of each image.
    pub probability: Vec<f32>,
    pub classes: Vec<u32>,
    pub hw: (usize, usize),
}

impl Occlusion {
    pub fn len(&self) -> usize {
        self.classes.len()
    }
    pub fn is_empty(&self) -> bool {
        self.classes.is_empty()
    }
    /// The map [H*W] of image i.
    pub fn map(&self, i: usize) -> &[f32] {
        let s = self.hw.0 * self.hw.1;
        &self.maps[i * s..(i + 1) * s]
    }
}

/// Patch grid (NY, NX) for an `h x w` image; a patch of 0, larger than the image, or a
/// stride of 0 is an error.
pub fn grid(h: usize, w: usize, size: usize, stride: usize) -> Result<(usize, usize)> {
    ensure!(size >= 1 && size <= h.min(w), "occlusion patch size {size} must be between 1 and the image's smaller side ({h}x{w} image)");
    ensure!(stride >= 1, "occlusion stride must be at least 1 (got {stride})");
    Ok(((h - size).div_ceil(stride) + 1, (w - size).div_ceil(stride) + 1))
}

/// Top-left corner of patch position `pos`.
fn origin(pos: usize, nx: usize, h: usize, w: usize, size: usize, stride: usize) -> (usize, usize) {
    ((pos / nx * stride).min(h - size), (pos % nx * stride).min(w - size))
}

/// The map [h*w] of one image's drops [P]: each pixel averages the drops of the patches
/// covering it.
pub fn drops_to_map(drops: &[f32], h: usize, w: usize, size: usize, stride: usize) -> Result<Vec<f32>> {
    let (ny, nx) = grid(h, w, size, stride)?;
    ensure!(drops.len() == ny * nx, "{} drops for a {ny}x{nx} grid of patch positions", drops.len());
    let mut sum = vec![0.0f64; h * w];
    let mut count = vec![0u32; h * w];
    for (pos, &d) in drops.iter().enumerate() {
        let (y0, x0) = origin(pos, nx, h, w, size, stride);
        for y in y0..y0 + size {
            for x in x0..x0 + size {
                sum[y * w + x] += d as f64;
                count[y * w + x] += 1;
            }
        }
    }
    Ok(sum.iter().zip(&count).map(|(s, &c)| if c > 0 { (s / c as f64) as f32 } else { 0.0 }).collect())
}

/// Occlusion sensitivity of any number of images.
pub fn occlusion(gpu: &Gpu, model: &Model, images: &[f32], opts: &OcclusionOptions) -> Result<Occlusion> {
    crate::platform::block_on(occlusion_async(gpu, model, images, opts))
}

/// `occlusion`, awaitable (the browser's form; see `crate::platform`).
pub async fn occlusion_async(gpu: &Gpu, model: &Model, images: &[f32], opts: &OcclusionOptions) -> Result<Occlusion> {
    let n = image_count(model, images)?;
    let (h, w) = model.hw();
    let (ny, nx) = grid(h, w, opts.size, opts.stride)?;
    ensure!(opts.fill.is_finite(), "occlusion fill value {} must be finite", opts.fill);
    let positions = ny * nx;
    let (b, len, k) = (model.batch(), model.image_len(), model.classes());
    let probs = model.probabilities_async(gpu, images).await?;
    let classes = opts.target.resolve_from_logits(model, &probs)?;
    let probability: Vec<f32> = classes.iter().enumerate().map(|(i, &c)| probs[i * k + c as usize]).collect();

    // About 16 batches of copies per chunk of images.
    let chunk_images = (16 * b).div_ceil(positions).clamp(1, n);
    let op = Occluder::new(gpu, "occlusion", b, chunk_images, model.info.input_chw, opts.size, opts.stride, opts.fill)?;
    let x = gpu.tensor("occlusion images", &[chunk_images, len])?;
    let patch = op.patch(gpu, &x, model.net.input())?;
    let kernel = PatchCopies { op: &op, x: &x, patch: &patch };
    let p = batching::Driver::new(gpu, model, &kernel)?.scores_async(images, Output::Probabilities).await?;
    let drops: Vec<f32> = (0..n * positions)
        .map(|r| {
            let i = r / positions;
            probability[i] - p[r * k + classes[i] as usize]
        })
        .collect();
    let mut maps = Vec::with_capacity(n * h * w);
    for d in drops.chunks(positions) {
        maps.extend(drops_to_map(d, h, w, opts.size, opts.stride)?);
    }
    Ok(Occlusion { maps, drops, grid: (ny, nx), probability, classes, hw: (h, w) })
}

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    n: u32,
    c: u32,
    h: u32,
    w: u32,
    size: u32,
    stride: u32,
    nx: u32,
    positions: u32,
    first: u32,
    total: u32,
    fill: f32,
    _pad: u32,
}

const WG: u32 = 256;

/// occlusion_patch for one shape: a chunk of `images` images [C, H, W], every patch
/// position of each, made `rows` copies at a time, numbered as in `batching`.
/// `set_chunk` / `set_first` are 4-byte uniform writes (queued, ordered before the next
/// submit).
pub struct Occluder {
    pub name: String,
    pub rows: usize,
    pub images: usize,
    pub chw: [usize; 3],
    pub size: usize,
    pub stride: usize,
    /// (NY, NX).
    pub grid: (usize, usize),
    cursor: Cursor,
}

impl Occluder {
    #[allow(clippy::too_many_arguments)]
    pub fn new(gpu: &Gpu, name: &str, rows: usize, images: usize, chw: [usize; 3], size: usize, stride: usize, fill: f32) -> Result<Occluder> {
        let [c, h, w] = chw;
        ensure!(rows > 0 && images > 0 && c > 0, "{name}: rows {rows}, images {images} and channels {c} must be positive");
        let (ny, nx) = grid(h, w, size, stride)?;
        let total = u32_of(name, "copies in a chunk", images * ny * nx)?;
        let p = Params {
            n: u32_of(name, "batch elements", rows * c * h * w)?,
            c: c as u32,
            h: h as u32,
            w: w as u32,
            size: size as u32,
            stride: stride as u32,
            nx: nx as u32,
            positions: (ny * nx) as u32,
            first: 0,
            total,
            fill,
            _pad: 0,
        };
        u32_of(name, "chunk elements", images * c * h * w)?;
        let params = gpu.uniform(&format!("{name} params"), &p);
        let layout = Layout { rows, copies: ny * nx, chunk_images: images };
        let cursor = Cursor::new(name, params, layout, offset_of!(Params, first), offset_of!(Params, total), None);
        Ok(Occluder { name: name.to_string(), rows, images, chw, size, stride, grid: (ny, nx), cursor })
    }

    /// Batch rows, patch positions per image and images per chunk.
    pub fn layout(&self) -> Layout {
        self.cursor.layout()
    }

    /// The chunk holds `total` copies (m real images * P).
    pub fn set_chunk(&self, gpu: &Gpu, total: usize) -> Result<()> {
        self.cursor.set_chunk(gpu, total, 0)
    }

    /// The copy held by batch row 0 for the next submitted dispatches.
    pub fn set_first(&self, gpu: &Gpu, first: usize) -> Result<()> {
        self.cursor.set_first(gpu, first)
    }

    /// occlusion_patch: out [rows, C, H, W] = the copies of x [images, C, H, W].
    pub fn patch(&self, gpu: &Gpu, x: &Tensor, out: &Tensor) -> Result<Dispatch> {
        let len: usize = self.chw.iter().product();
        x.expect_len(&self.name, "images", self.images * len)?;
        out.expect_len(&self.name, "occluded batch", self.rows * len)?;
        let label = format!("{} occlusion_patch", self.name);
        let groups = gpu.groups_1d(&label, (self.rows * len) as u64, WG)?;
        let b = [(0, self.cursor.params().as_entire_binding()), (1, x.binding()), (2, out.binding())];
        Dispatch::new(gpu, &label, &OCCLUSION, "occlusion_patch", &[], &b, groups)
    }
}

/// The patch kernel bound to its chunk buffer, for the batching driver.
struct PatchCopies<'a> {
    op: &'a Occluder,
    x: &'a Tensor,
    patch: &'a Dispatch,
}

impl CopyKernel for PatchCopies<'_> {
    fn layout(&self) -> Layout {
        self.op.layout()
    }
    fn load(&self, gpu: &Gpu, chunk: &Chunk, images: &[f32]) -> Result<()> {
        batching::upload_chunk(gpu, self.x, images)?;
        self.op.set_chunk(gpu, chunk.total)
    }
    fn seek(&self, gpu: &Gpu, batch: &Batch) -> Result<()> {
        self.op.set_first(gpu, batch.first)
    }
    fn dispatch(&self) -> &Dispatch {
        self.patch
    }
}
