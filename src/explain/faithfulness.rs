//! How faithful an attribution map is, measured rather than looked at:
//!
//! - deletion and insertion curves (Petsiuk et al. 2018, RISE): the class probability as
//!   the pixels are removed (replaced by `Fill`) in the map's order, most important first,
//!   or added to a filled image in that order; S + 1 points from 0 to all pixels. The area
//!   under the deletion curve is low and under the insertion curve high for a map that
//!   ranks the evidence first; a random order (seeded) is the baseline both are read
//!   against. The perturbed copies are made on the GPU by shaders/faithfulness.wgsl straight
//!   into the network's input batch and scored a batch at a time by the batching driver
//!   (src/explain/batching.rs), as occlusion and LIME are;
//! - the model-randomization check (Adebayo et al. 2018): mean |Spearman rho| between the
//!   maps of the trained model and of the same architecture with random weights (low: the
//!   map depends on what was learned);
//! - the pointing game (Zhang et al. 2016), where the evidence is known (the built-in faces'
//!   expression masks): how often a map's maximum falls inside the mask, against the mask's
//!   share of the image (chance).
//!
//! Reference: src/reference/faithfulness.rs.

use super::batching::{self, Batch, Chunk, CopyKernel, Cursor, Driver, Layout, Output};
use super::saliency::{image_count, spearman};
use super::Model;
use crate::gpu::{shaders::FAITHFULNESS, Dispatch, Gpu, Tensor};
use crate::nn::network::{BuildOptions, Network};
use crate::nn::u32_of;
use crate::rng::Rng;
use crate::{ensure, Result};
use serde::Serialize;
use std::mem::offset_of;

/// What a removed pixel shows.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub enum Fill {
    /// The image's mean per channel (a removed pixel carries no local structure).
    Mean,
    Value(f32),
}

/// Deletion / insertion settings.
#[derive(Debug, Clone, PartialEq)]
pub struct CurveOptions {
    /// Points after the first: S + 1 evaluations per image and curve.
    pub steps: usize,
    pub fill: Fill,
    /// Seed of the random order (`score`'s baseline).
    pub seed: u64,
}

impl Default for CurveOptions {
    fn default() -> Self {
        CurveOptions { steps: 32, fill: Fill::Mean, seed: 1 }
    }
}

/// Deletion and insertion curves of a set of images: [n, S + 1] class probabilities.
#[derive(Debug, Clone)]
pub struct Curves {
    pub steps: usize,
    pub deletion: Vec<f32>,
    pub insertion: Vec<f32>,
}

impl Curves {
    /// Mean area under the deletion and the insertion curve (x in [0, 1]).
    pub fn mean_auc(&self) -> (f64, f64) {
        let s = self.steps + 1;
        let mean = |v: &[f32]| {
            let n = v.len() / s;
            v.chunks(s).map(|c| auc(&c.iter().map(|&p| p as f64).collect::<Vec<_>>())).sum::<f64>() / n.max(1) as f64
        };
        (mean(&self.deletion), mean(&self.insertion))
    }
}

/// Area under a curve sampled at evenly spaced points of [0, 1] (trapezoids).
pub fn auc(curve: &[f64]) -> f64 {
    assert!(curve.len() >= 2, "a curve needs at least 2 points");
    curve.windows(2).map(|w| (w[0] + w[1]) / 2.0).sum::<f64>() / (curve.len() - 1) as f64
}

/// rank[p] = position of pixel p when `map` [H*W] is sorted most important first (largest
/// value; NaN last; ties by pixel index).
pub fn rank_of(map: &[f32]) -> Vec<u32> {
    let mut order: Vec<usize> = (0..map.len()).collect();
    let key = |v: f32| if v.is_nan() { f32::NEG_INFINITY } else { v };
    order.sort_by(|&a, &b| key(map[b]).total_cmp(&key(map[a])).then(a.cmp(&b)));
    let mut rank = vec![0u32; map.len()];
    for (t, &p) in order.iter().enumerate() {
        rank[p] = t as u32;
    }
    rank
}

/// Random ranks [n, hw]: the baseline order, seeded.
pub fn random_ranks(n: usize, hw: usize, seed: u64) -> Vec<u32> {
    let mut rng = Rng::new(seed);
    (0..n)
        .flat_map(|_| {
            let mut r: Vec<u32> = (0..hw as u32).collect();
            rng.shuffle(&mut r);
            r
        })
        .collect()
}

/// The [C, H, W] image a removed pixel shows, per `fill`.
fn fill_image(image: &[f32], [c, h, w]: [usize; 3], fill: Fill) -> Vec<f32> {
    let hw = h * w;
    (0..c)
        .flat_map(|ch| {
            let v = match fill {
                Fill::Mean => (image[ch * hw..(ch + 1) * hw].iter().map(|&v| v as f64).sum::<f64>() / hw as f64) as f32,
                Fill::Value(v) => v,
            };
            std::iter::repeat_n(v, hw)
        })
        .collect()
}

/// Deletion and insertion curves of `images` explained by `ranks` [n, H*W] (from `rank_of`
/// or `random_ranks`), scoring the probability of `classes` [n].
pub fn curves(gpu: &Gpu, model: &Model, images: &[f32], ranks: &[u32], classes: &[u32], opts: &CurveOptions) -> Result<Curves> {
    let n = image_count(model, images)?;
    let (h, w) = model.hw();
    let (b, len, k, hw) = (model.batch(), model.image_len(), model.classes(), h * w);
    ensure!(opts.steps >= 1, "deletion / insertion curves need at least 1 step");
    ensure!(ranks.len() == n * hw, "{} ranks for {n} images of {hw} pixels", ranks.len());
    ensure!(classes.len() == n, "{} classes for {n} images", classes.len());
    for &c in classes {
        model.check_class(c as usize)?;
    }
    if let Fill::Value(v) = opts.fill {
        ensure!(v.is_finite(), "deletion fill value {v} must be finite");
    }
    let s = opts.steps + 1;
    // About 16 batches of copies per chunk of images.
    let chunk_images = (16 * b).div_ceil(s).clamp(1, n);
    let op = Perturber::new(gpu, "faithfulness", b, chunk_images, model.info.input_chw, opts.steps)?;
    let x = gpu.tensor("faithfulness images", &[chunk_images, len])?;
    let fill = gpu.tensor("faithfulness fill", &[chunk_images, len])?;
    let rank = gpu.tensor("faithfulness ranks", &[chunk_images, hw])?;
    let mut out = Curves { steps: opts.steps, deletion: Vec::with_capacity(n * s), insertion: Vec::with_capacity(n * s) };
    for (insert, curve) in [(false, &mut out.deletion), (true, &mut out.insertion)] {
        let copies = CurveCopies {
            op: &op,
            x: &x,
            fill: &fill,
            rank: &rank,
            ranks,
            fill_with: opts.fill,
            dispatch: op.perturb(gpu, &x, &fill, &rank, model.net.input(), insert)?,
        };
        let p = Driver::new(gpu, model, &copies)?.scores(images, Output::Probabilities)?;
        curve.extend((0..n * s).map(|r| p[r * k + classes[r / s] as usize]));
    }
    Ok(out)
}

/// The copies of one curve for the batching driver: per chunk the images, their fill images
/// and pixel ranks are uploaded; the perturbation writes each batch into the model's input.
struct CurveCopies<'a> {
    op: &'a Perturber,
    x: &'a Tensor,
    fill: &'a Tensor,
    rank: &'a Tensor,
    /// [n, H*W] for every image.
    ranks: &'a [u32],
    fill_with: Fill,
    dispatch: Dispatch,
}

impl CopyKernel for CurveCopies<'_> {
    fn layout(&self) -> Layout {
        self.op.cursor.layout()
    }
    fn load(&self, gpu: &Gpu, chunk: &Chunk, images: &[f32]) -> Result<()> {
        let (len, hw) = (self.op.chw.iter().product::<usize>(), self.op.chw[1] * self.op.chw[2]);
        let fills: Vec<f32> = images.chunks(len).flat_map(|img| fill_image(img, self.op.chw, self.fill_with)).collect();
        batching::upload_chunk(gpu, self.x, images)?;
        batching::upload_chunk(gpu, self.fill, &fills)?;
        let mut rs = self.ranks[chunk.image0 * hw..(chunk.image0 + chunk.images) * hw].to_vec();
        rs.resize(self.rank.len(), 0);
        gpu.write(self.rank, &rs)?;
        self.op.set_chunk(gpu, chunk.total)
    }
    fn seek(&self, gpu: &Gpu, batch: &Batch) -> Result<()> {
        self.op.set_first(gpu, batch.first)
    }
    fn dispatch(&self) -> &Dispatch {
        &self.dispatch
    }
}

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    n: u32,
    len: u32,
    hw: u32,
    steps: u32,
    first: u32,
    total: u32,
    _pad: [u32; 2],
}

const WG: u32 = 256;

/// faithfulness_perturb for one shape: a chunk of `images` images [C, H, W], S + 1 copies
/// of each, made `rows` copies at a time; its cursor moves it through the chunks and batches
/// of the batching driver.
pub struct Perturber {
    pub name: String,
    pub rows: usize,
    pub images: usize,
    pub chw: [usize; 3],
    pub steps: usize,
    cursor: Cursor,
}

impl Perturber {
    pub fn new(gpu: &Gpu, name: &str, rows: usize, images: usize, chw: [usize; 3], steps: usize) -> Result<Perturber> {
        let [c, h, w] = chw;
        ensure!(rows > 0 && images > 0 && c * h * w > 0, "{name}: rows {rows}, images {images} and image size {chw:?} must be positive");
        ensure!(steps >= 1, "{name}: at least 1 step");
        let p = Params {
            n: u32_of(name, "batch elements", rows * c * h * w)?,
            len: (c * h * w) as u32,
            hw: (h * w) as u32,
            steps: steps as u32,
            first: 0,
            total: u32_of(name, "copies in a chunk", images * (steps + 1))?,
            _pad: [0; 2],
        };
        u32_of(name, "chunk elements", images * c * h * w)?;
        // k * H*W must fit: k <= steps.
        u32_of(name, "steps x pixels", steps * h * w)?;
        let params = gpu.uniform(&format!("{name} params"), &p);
        let layout = Layout { rows, copies: steps + 1, chunk_images: images };
        let cursor = Cursor::new(name, params, layout, offset_of!(Params, first), offset_of!(Params, total), None);
        Ok(Perturber { name: name.to_string(), rows, images, chw, steps, cursor })
    }

    /// The chunk holds `total` copies (m real images * (S + 1)).
    pub fn set_chunk(&self, gpu: &Gpu, total: usize) -> Result<()> {
        self.cursor.set_chunk(gpu, total, 0)
    }

    /// The copy held by batch row 0 for the next submitted dispatches.
    pub fn set_first(&self, gpu: &Gpu, first: usize) -> Result<()> {
        self.cursor.set_first(gpu, first)
    }

    /// faithfulness_perturb (deletion, or insertion when `insert`): out [rows, C, H, W] =
    /// the copies of x [images, C, H, W] with fill [images, C, H, W] and rank [images, H*W].
    pub fn perturb(&self, gpu: &Gpu, x: &Tensor, fill: &Tensor, rank: &Tensor, out: &Tensor, insert: bool) -> Result<Dispatch> {
        let len: usize = self.chw.iter().product();
        x.expect_len(&self.name, "images", self.images * len)?;
        fill.expect_len(&self.name, "fill images", self.images * len)?;
        rank.expect_len(&self.name, "pixel ranks", self.images * self.chw[1] * self.chw[2])?;
        out.expect_len(&self.name, "perturbed batch", self.rows * len)?;
        let label = format!("{} faithfulness_perturb insert={insert}", self.name);
        let groups = gpu.groups_1d(&label, (self.rows * len) as u64, WG)?;
        let b = [(0, self.cursor.params().as_entire_binding()), (1, x.binding()), (2, fill.binding()), (3, rank.binding()), (4, out.binding())];
        Dispatch::new(gpu, &label, &FAITHFULNESS, "faithfulness_perturb", &[("INSERT", insert as u8 as f64)], &b, groups)
    }
}

/// Mean |Spearman rho| between two sets of maps [n, hw] (the trained and the randomized
/// model's), over the images whose maps are not constant; NaN when none is.
pub fn rank_correlation(a: &[f32], b: &[f32], hw: usize) -> f64 {
    assert_eq!(a.len(), b.len(), "rank_correlation: different numbers of maps");
    let rhos: Vec<f64> = a.chunks(hw).zip(b.chunks(hw)).map(|(x, y)| spearman(x, y)).filter(|r| !r.is_nan()).map(f64::abs).collect();
    if rhos.is_empty() {
        return f64::NAN;
    }
    rhos.iter().sum::<f64>() / rhos.len() as f64
}

/// The pointing game over maps [n, hw] and masks [n, hw] (nonzero = evidence): (share of
/// maps whose maximum lies inside the mask, mean mask share of the image = chance).
pub fn pointing_game(maps: &[f32], masks: &[u8], hw: usize) -> (f64, f64) {
    let n = maps.len() / hw;
    assert!(n > 0 && masks.len() >= n * hw, "pointing_game: {} maps, {} mask values", n, masks.len());
    let hits = (0..n).filter(|&i| masks[i * hw + super::saliency::argmax(&maps[i * hw..(i + 1) * hw])] != 0).count();
    let chance = (0..n).map(|i| masks[i * hw..(i + 1) * hw].iter().filter(|&&v| v != 0).count() as f64 / hw as f64).sum::<f64>() / n as f64;
    (hits as f64 / n as f64, chance)
}

/// The same architecture as `model` with freshly initialised weights (seeded): the
/// randomization check's control.
pub fn randomized(gpu: &Gpu, model: &Model, seed: u64) -> Result<Model> {
    let info = model.info.clone();
    let net = Network::build(gpu, &info.model, info.input_chw, info.class_names.len(), model.batch(), BuildOptions::EXPLAIN.with_precision(model.net.precision))?;
    net.init(gpu, seed)?;
    Model::wrap(gpu, net, info, std::path::PathBuf::from(format!("random weights (seed {seed})")))
}

/// One method's scores.
#[derive(Debug, Clone, Serialize)]
pub struct MethodScores {
    pub method: String,
    /// Mean area under the deletion curve (lower: the map ranks the evidence first).
    pub deletion_auc: f64,
    /// Mean area under the insertion curve (higher is better).
    pub insertion_auc: f64,
    /// Mean |Spearman rho| with the randomized model's maps (lower is better).
    pub randomization_rho: f64,
    /// Pointing-game hit rate, where the data has masks.
    pub pointing_game: Option<f64>,
}

/// The faithfulness table: per method, and the baselines.
#[derive(Debug, Clone, Serialize)]
pub struct Scores {
    pub images: usize,
    pub steps: usize,
    pub fill: Fill,
    /// The random order's mean deletion and insertion AUC.
    pub random_deletion_auc: f64,
    pub random_insertion_auc: f64,
    /// The pointing game's chance (mean mask share), where the data has masks.
    pub pointing_chance: Option<f64>,
    pub methods: Vec<MethodScores>,
}

/// Maps [n, hw] of one method for the trained and for the randomized model.
pub struct MethodMaps<'a> {
    pub name: &'a str,
    pub trained: &'a [f32],
    pub randomized: &'a [f32],
}

/// Score every method: deletion / insertion AUCs of its maps and of a random order (seed
/// `opts.seed`), randomization rank correlation, and the pointing game where `masks`
/// [n, hw] are given. `classes` [n] are the explained classes (the maps' targets).
pub fn score(gpu: &Gpu, model: &Model, images: &[f32], classes: &[u32], methods: &[MethodMaps], masks: Option<&[u8]>, opts: &CurveOptions) -> Result<Scores> {
    let n = image_count(model, images)?;
    let (h, w) = model.hw();
    let hw = h * w;
    let random = curves(gpu, model, images, &random_ranks(n, hw, opts.seed), classes, opts)?.mean_auc();
    let mut out = Vec::new();
    for m in methods {
        ensure!(m.trained.len() == n * hw && m.randomized.len() == n * hw, "{}: maps for {n} images of {hw} pixels expected", m.name);
        let ranks: Vec<u32> = m.trained.chunks(hw).flat_map(rank_of).collect();
        let (del, ins) = curves(gpu, model, images, &ranks, classes, opts)?.mean_auc();
        out.push(MethodScores {
            method: m.name.to_string(),
            deletion_auc: del,
            insertion_auc: ins,
            randomization_rho: rank_correlation(m.trained, m.randomized, hw),
            pointing_game: masks.map(|k| pointing_game(m.trained, k, hw).0),
        });
    }
    Ok(Scores {
        images: n,
        steps: opts.steps,
        fill: opts.fill,
        random_deletion_auc: random.0,
        random_insertion_auc: random.1,
        pointing_chance: masks.map(|k| pointing_game(&vec![0.0; n * hw], k, hw).1),
        methods: out,
    })
}
