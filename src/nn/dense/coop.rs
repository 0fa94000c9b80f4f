//! Cooperative-matrix (tensor-core) variant of the dense layer's GEMMs
//! (shaders/dense_coop.wgsl on the GEMM core shaders/coop/gemm.wgsl): f16 operands (the f32
//! tensors rounded when staged), f32 sums. Dense layers have few rows (the batch) and long
//! reductions (4608 inputs), so every pass may split its depth into partials
//! [splits, rows * columns] and reduce them (no float atomics); the reduce adds the bias and
//! honours ACCUMULATE.
//!
//! - forward:         y  [N, O] = x [N, I] W^T (+ b)  depth I.
//! - backward_input:  dx [N, I] = dy [N, O] W         depth O.
//! - backward_weight: dW [O, I] = dy^T x              depth N (overwrites or adds).
//!
//! `CoopBuild::Hardware` runs the real cooperative operations (`Gpu::has_coop`);
//! `CoopBuild::Emulated` their plain-WGSL stand-ins (any adapter with f16).

use super::{Dense, DensePass};
use crate::nn::{accumulate_constant, u32_of};
use crate::gpu::coop::{depth_split, CoopBuild, CoopTiles};
use crate::gpu::shaders::{DENSE_COOP, DENSE_COOP_EMULATED};
use crate::gpu::{Dispatch, Gpu, Tensor};
use crate::{bail, ensure, Result};

/// Mirror of `D` in shaders/dense_coop.wgsl.
#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    gm: u32,
    gn: u32,
    gk: u32,
    kchunk: u32,
    splits: u32,
    sam: u32,
    sak: u32,
    sbk: u32,
    sbn: u32,
    bias: u32,
    _pad: [u32; 2],
}

/// Workgroup size of dense_coop_reduce (WG in the shader).
const WG: u32 = 64;
/// Depth split: about this many workgroups in all, at least this much depth per split.
const TARGET_WORKGROUPS: usize = 264;
const MIN_CHUNK: usize = 128;

/// Tiles and depth splits of each pass (DensePass order; None: `CoopTiles::for_gemm` and
/// `depth_split`'s default). For tests and tuning.
#[derive(Debug, Clone, Copy, Default)]
pub struct CoopDenseOptions {
    pub tiles: [Option<CoopTiles>; 3],
    pub splits: [Option<usize>; 3],
}

struct PassPlan {
    tiles: CoopTiles,
    uniform: wgpu::Buffer,
    groups: [u32; 3],
    splits: usize,
    /// [splits, rows * columns] partials; None with one split.
    scratch: Option<Tensor>,
    rows_cols: usize,
}

/// The cooperative-matrix plan of one dense layer.
pub struct CoopDense {
    name: String,
    build: CoopBuild,
    batch: usize,
    in_features: usize,
    out_features: usize,
    bias: bool,
    passes: [PassPlan; 3],
}

impl CoopDense {
    pub fn new(gpu: &Gpu, layer: &Dense, build: CoopBuild) -> Result<CoopDense> {
        Self::with_options(gpu, layer, build, CoopDenseOptions::default())
    }

    pub fn with_options(gpu: &Gpu, layer: &Dense, build: CoopBuild, opts: CoopDenseOptions) -> Result<CoopDense> {
        let name = &layer.name;
        build.check(gpu, name)?;
        let (n, i, o) = (layer.batch, layer.in_features, layer.out_features);
        // (gm, gn, gk, sam, sak, sbk, sbn, bias) of each pass: A[m, k] = src_a[m sam + k sak],
        // B[k, n] = src_b[k sbk + n sbn].
        let shapes = [(n, o, i, i, 1, 1, i, layer.bias), (n, i, o, o, 1, i, 1, false), (o, i, n, 1, o, i, 1, false)];
        let max = gpu.limits().max_compute_workgroups_per_dimension as usize;
        let mut plans = Vec::with_capacity(3);
        for (k, (gm, gn, gk, sam, sak, sbk, sbn, bias)) in shapes.into_iter().enumerate() {
            let pass = DensePass::ALL[k].name();
            let tiles = opts.tiles[k].unwrap_or_else(|| CoopTiles::for_gemm(gm, gn));
            tiles.check(gpu, name, build)?;
            let blocks = gm.div_ceil(tiles.bm() as usize) * gn.div_ceil(tiles.bn() as usize);
            let (kchunk, splits) = depth_split(gk, tiles.bk as usize, blocks, TARGET_WORKGROUPS, MIN_CHUNK, opts.splits[k]);
            let groups = [gn.div_ceil(tiles.bn() as usize), gm.div_ceil(tiles.bm() as usize), splits];
            ensure!(groups.iter().all(|&g| g <= max), "layer {name}: dense_coop {pass} needs a grid of {groups:?} workgroups, over max_compute_workgroups_per_dimension={max}");
            let u = |what: &str, v: usize| u32_of(name, what, v);
            let p = Params {
                gm: u("GEMM rows", gm)?,
                gn: u("GEMM columns", gn)?,
                gk: u("GEMM depth", gk)?,
                kchunk: u("GEMM depth per split", kchunk)?,
                splits: u("splits", splits)?,
                sam: sam as u32,
                sak: sak as u32,
                sbk: sbk as u32,
                sbn: sbn as u32,
                bias: bias as u32,
                _pad: [0; 2],
            };
            let scratch = if splits > 1 {
                let t = gpu.scratch(&format!("{name} coop {pass} partials"), &[splits, gm * gn])?;
                u32_of(name, "partials", t.len())?;
                Some(t)
            } else {
                None
            };
            plans.push(PassPlan {
                tiles,
                uniform: gpu.uniform(&format!("{name} coop {pass} params"), &p),
                groups: groups.map(|g| g as u32),
                splits,
                scratch,
                rows_cols: gm * gn,
            });
        }
        let passes: [PassPlan; 3] = plans.try_into().map_err(|_| crate::Error::new("three dense passes".to_string()))?;
        Ok(CoopDense { name: name.clone(), build, batch: n, in_features: i, out_features: o, bias: layer.bias, passes })
    }

    pub fn build(&self) -> CoopBuild {
        self.build
    }

    /// Depth splits of forward, backward_input, backward_weight (1: no reduce).
    pub fn splits(&self) -> [usize; 3] {
        [self.passes[0].splits, self.passes[1].splits, self.passes[2].splits]
    }

    /// The GEMM of pass `k` (DensePass order) into `out` (+ the reduce when split).
    #[allow(clippy::too_many_arguments)]
    fn gemm(&self, gpu: &Gpu, k: usize, a: &Tensor, b: &Tensor, bias: &Tensor, out: &Tensor, accumulate: bool) -> Result<Vec<Dispatch>> {
        let plan = &self.passes[k];
        let shader = self.build.shader(DENSE_COOP, DENSE_COOP_EMULATED);
        let label = |entry: &str| format!("{} {entry} ({}, {})", self.name, DensePass::ALL[k].name(), self.build.name());
        let mut c = plan.tiles.constants(gpu, self.build);
        c.push(("PASS", k as f64));
        let Some(scratch) = &plan.scratch else {
            c.push(accumulate_constant(accumulate));
            let b = [(0, plan.uniform.as_entire_binding()), (1, a.binding()), (2, b.binding()), (3, bias.binding()), (4, out.binding())];
            return Ok(vec![Dispatch::new(gpu, &label("dense_coop_gemm"), &shader, "dense_coop_gemm", &c, &b, plan.groups)?]);
        };
        c.push(accumulate_constant(false));
        let bind = [(0, plan.uniform.as_entire_binding()), (1, a.binding()), (2, b.binding()), (3, bias.binding()), (4, scratch.binding())];
        let partial = Dispatch::new(gpu, &label("dense_coop_gemm"), &shader, "dense_coop_gemm", &c, &bind, plan.groups)?;
        let rg = gpu.groups_1d(&label("dense_coop_reduce"), plan.rows_cols as u64, WG)?;
        let bind = [(0, plan.uniform.as_entire_binding()), (3, bias.binding()), (4, out.binding()), (6, scratch.binding())];
        let reduce = Dispatch::new(gpu, &label("dense_coop_reduce"), &shader, "dense_coop_reduce", &[accumulate_constant(accumulate)], &bind, rg)?;
        Ok(vec![partial, reduce])
    }

    /// y = x W^T + b. Overwrites y. `b` is required exactly when the layer has a bias.
    pub fn forward(&self, gpu: &Gpu, x: &Tensor, w: &Tensor, b: Option<&Tensor>, y: &Tensor) -> Result<Vec<Dispatch>> {
        let name = &self.name;
        x.expect_len(name, "input", self.batch * self.in_features)?;
        w.expect_shape(name, "weight", &[self.out_features, self.in_features])?;
        y.expect_len(name, "output", self.batch * self.out_features)?;
        let bias = match (self.bias, b) {
            (true, Some(b)) => {
                b.expect_shape(name, "bias", &[self.out_features])?;
                b
            }
            (true, None) => bail!("layer {name}: has a bias but forward got none (expected shape [{}])", self.out_features),
            (false, Some(_)) => bail!("layer {name}: was built without a bias but forward got one"),
            // Unread (p.bias is 0), but bound: alias W.
            (false, None) => w,
        };
        self.gemm(gpu, 0, x, w, bias, y, false)
    }

    /// dx = dy W. Overwrites dx.
    pub fn backward_input(&self, gpu: &Gpu, dx: &Tensor, dy: &Tensor, w: &Tensor) -> Result<Vec<Dispatch>> {
        let name = &self.name;
        dx.expect_len(name, "input gradient", self.batch * self.in_features)?;
        dy.expect_len(name, "output gradient", self.batch * self.out_features)?;
        w.expect_shape(name, "weight", &[self.out_features, self.in_features])?;
        self.gemm(gpu, 1, dy, w, w, dx, false)
    }

    /// dW = dy^T x. Overwrites dW, or adds to it when `accumulate`.
    pub fn backward_weight(&self, gpu: &Gpu, dw: &Tensor, dy: &Tensor, x: &Tensor, accumulate: bool) -> Result<Vec<Dispatch>> {
        let name = &self.name;
        dw.expect_shape(name, "weight gradient", &[self.out_features, self.in_features])?;
        dy.expect_len(name, "output gradient", self.batch * self.out_features)?;
        x.expect_len(name, "saved input", self.batch * self.in_features)?;
        self.gemm(gpu, 2, dy, x, x, dw, accumulate)
    }
}
