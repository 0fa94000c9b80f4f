//! Workgroup-memory tiled variant of the convolution kernels (shaders/conv2d_tiled.wgsl):
//! every pass is an implicit GEMM (no materialized im2col) whose A and B tiles are staged in
//! `var<workgroup>` arrays, each invocation accumulating a 4 x 4 register block. What real
//! GPUs (NVIDIA / AMD / Apple) want; lavapipe runs it slower than the register-blocked
//! kernels of conv2d.wgsl (workgroup barriers are expensive on a CPU), so an autotuner picks
//! per adapter. Handles every geometry `Conv2d` accepts (any kernel, stride, padding).
//!
//! A `Plan` per pass (tile sizes, uniform, depth-index table, grid; backward_weight its depth
//! split and partial sums) is built when the layer is planned; `forward`,
//! `backward_input` and `backward_weight` record dispatches over it. Tests build plans with
//! other tiles and splits directly.
//!
//! GEMMs (rows x columns, depth):
//! - forward:         CO x N*OH*OW, CI*KH*KW.
//! - backward_input:  CI x N*H*W,   CO*KH*KW (gather over the taps that reach each input).
//! - backward_weight: CO x CI*KH*KW, N*OH*OW, split over the depth into a partial buffer
//!   [splits, CO*CI*KH*KW] and reduced (no float atomics).

use super::{geom::GemmUniform, ConvPass, Conv2d};
use crate::gpu::{shaders::CONV2D_TILED, Dispatch, Gpu, Tensor};
use crate::nn::{accumulate_constant, u32_of};
use crate::{ensure, Result};

/// Tile sizes of the GEMM kernels (the BM / BN / BK overrides): a workgroup computes a BM x
/// BN tile of the output in (BN / 4) x (BM / 4) invocations, stepping over the depth in
/// slices of BK staged in workgroup memory ((BM + 4 + BN + 4) * BK floats: each depth row
/// padded by a vec4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tiles {
    pub bm: u32,
    pub bn: u32,
    pub bk: u32,
}

impl Tiles {
    /// 64 x 64 x 16: 256 invocations, 8.5 KiB of workgroup memory.
    pub const DEFAULT: Tiles = Tiles { bm: 64, bn: 64, bk: 16 };

    /// Error (naming the layer) unless BM and BN are positive multiples of 4, BK is
    /// positive, and the workgroup fits the adapter (invocations, size per dimension,
    /// workgroup storage).
    pub fn check(&self, gpu: &Gpu, name: &str) -> Result<()> {
        let Tiles { bm, bn, bk } = *self;
        ensure!(bm >= 4 && bn >= 4 && bm % 4 == 0 && bn % 4 == 0 && bk >= 1, "layer {name}: tiles {self:?}: BM and BN must be positive multiples of 4 and BK positive");
        let l = gpu.limits();
        let inv = (bm / 4) * (bn / 4);
        ensure!(
            inv <= l.max_compute_invocations_per_workgroup && bn / 4 <= l.max_compute_workgroup_size_x && bm / 4 <= l.max_compute_workgroup_size_y,
            "layer {name}: tiles {self:?} need a {}x{} workgroup, over this adapter's limits (max_compute_invocations_per_workgroup={})",
            bn / 4,
            bm / 4,
            l.max_compute_invocations_per_workgroup
        );
        let bytes = (bm + 4 + bn + 4) * bk * 4;
        ensure!(
            bytes <= l.max_compute_workgroup_storage_size,
            "layer {name}: tiles {self:?} need {bytes} bytes of workgroup memory, over max_compute_workgroup_storage_size={}",
            l.max_compute_workgroup_storage_size
        );
        Ok(())
    }

    fn constants(&self) -> [(&'static str, f64); 3] {
        [("BM", self.bm as f64), ("BN", self.bn as f64), ("BK", self.bk as f64)]
    }
}

/// Tile sizes worth timing per adapter (an autotuner's candidate list): the default, a
/// half-height tile for layers with <= 32 output (or, in backward_input, input) channels, a
/// wide one, and a tall one with a short depth slice for wide layers. All 256 invocations or
/// fewer and <= 9 KiB of workgroup memory.
pub const CANDIDATES: [Tiles; 4] = [
    Tiles::DEFAULT,
    Tiles { bm: 32, bn: 64, bk: 16 },
    Tiles { bm: 32, bn: 128, bk: 8 },
    Tiles { bm: 128, bn: 32, bk: 8 },
];

impl Default for Tiles {
    fn default() -> Self {
        Tiles::DEFAULT
    }
}

/// Workgroup size of conv2d_tiled_reduce (WG in the shader).
const WG: u32 = 64;
/// Weight-gradient split heuristic: about this many workgroups in all (fills a big GPU
/// twice over), but at least this many depth rows (output pixels) per split.
const BW_TARGET_WORKGROUPS: usize = 256;
const BW_MIN_CHUNK: usize = 512;

/// Whether the tiled kernels handle `conv`: every geometry `Conv2d` accepts (any kernel,
/// stride and padding; stride > 1 in backward_input gathers over taps that mostly miss, so
/// it is correct but wasteful there). Grid limits are checked when a plan is built.
pub fn supports(conv: &Conv2d) -> bool {
    let _ = conv;
    true
}

/// The uniform of one pass: the layer geometry and the GEMM (gm, gn, gk) with its split.
fn params(conv: &Conv2d, gemm: [usize; 3], kchunk: usize, splits: usize) -> Result<GemmUniform> {
    GemmUniform::new(&conv.name, &conv.geom, gemm, kchunk, splits, false)
}

/// Grid of forward / backward_input: ceil(gn / BN) column tiles folded into x and z (x +
/// z * nwg.x; the kernel skips tiles past the end), ceil(gm / BM) row tiles on y.
fn fold_grid(gpu: &Gpu, conv: &Conv2d, tiles: Tiles, gm: usize, gn: usize, entry: &str) -> Result<[u32; 3]> {
    let max = gpu.limits().max_compute_workgroups_per_dimension as usize;
    let tn = gn.div_ceil(tiles.bn as usize);
    let gz = tn.div_ceil(max);
    let gy = gm.div_ceil(tiles.bm as usize);
    ensure!(
        gz <= max && gy <= max,
        "layer {}: {entry} needs {tn} x {gy} tiles, over this adapter's max_compute_workgroups_per_dimension={max} even folded; use a smaller batch",
        conv.name
    );
    Ok([tn.div_ceil(gz) as u32, gy as u32, gz as u32])
}

/// The depth-index table `tab` of the shader: for k = (c, ky, kx) over `channels` x KH x KW,
/// (c * c_stride + ky * row + kx, ky, kx, c * w_stride), as a tensor of i32 (16 bytes per
/// depth index).
fn table(gpu: &Gpu, conv: &Conv2d, pass: &str, channels: usize, c_stride: usize, row: usize, w_stride: usize) -> Result<Tensor> {
    let (kh, kw) = conv.cfg.kernel;
    let i = |v: usize| i32::try_from(v).map_err(|_| crate::Error::new(format!("layer {}: tiled {pass} index {v} does not fit in 31 bits", conv.name)));
    let mut rows = Vec::with_capacity(channels * kh * kw * 4);
    for c in 0..channels {
        for ky in 0..kh {
            for kx in 0..kw {
                rows.extend([i(c * c_stride + ky * row + kx)?, ky as i32, kx as i32, i(c * w_stride)?]);
            }
        }
    }
    gpu.upload(&format!("{} tiled {pass} table", conv.name), &[rows.len()], &rows)
}

/// The im2col table of forward / backward_weight: (ci * H * W + ky * W + kx, ky, kx, 0).
fn im2col_table(gpu: &Gpu, conv: &Conv2d, pass: &str) -> Result<Tensor> {
    let [_, ci, h, w] = conv.input_shape;
    table(gpu, conv, pass, ci, h * w, w, 0)
}

/// Default number of depth splits of the weight gradient for `tiles`: enough workgroups to
/// fill a big GPU (about BW_TARGET_WORKGROUPS), at least BW_MIN_CHUNK depth rows each.
pub fn weight_splits(conv: &Conv2d, tiles: Tiles) -> usize {
    let [n, ci, _, _] = conv.input_shape;
    let [_, co, oh, ow] = conv.output_shape;
    let (kh, kw) = conv.cfg.kernel;
    let wgs = co.div_ceil(tiles.bm as usize) * (ci * kh * kw).div_ceil(tiles.bn as usize);
    let gk = n * oh * ow;
    BW_TARGET_WORKGROUPS.div_ceil(wgs).clamp(1, gk.div_ceil(BW_MIN_CHUNK).max(1))
}

/// One pass: tiles, uniform, depth-index table, grid; backward_weight also its depth split
/// and (when split) the [splits, CO*CI*KH*KW] partial sums.
pub struct Plan {
    pass: ConvPass,
    tiles: Tiles,
    uniform: wgpu::Buffer,
    table: Tensor,
    groups: [u32; 3],
    splits: usize,
    scratch: Option<Tensor>,
}

impl Plan {
    /// The plan of `pass` with `tiles`; backward_weight with `splits` depth splits (None:
    /// `weight_splits`; clamped to [1, N*OH*OW / BK] and rounded so that every split is a
    /// whole number of BK slices). Errors name the layer: tiles over the adapter's limits,
    /// a grid over max_compute_workgroups_per_dimension.
    pub fn new(gpu: &Gpu, conv: &Conv2d, pass: ConvPass, tiles: Tiles, splits: Option<usize>) -> Result<Plan> {
        let name = &conv.name;
        tiles.check(gpu, name)?;
        let g = conv.geom;
        let p = pass.name();
        let (uniform, table, groups, splits, scratch) = match pass {
            ConvPass::Forward => {
                let (gm, gn, gk) = (g.cout, g.n * g.oh * g.ow, g.cin * g.kh * g.kw);
                let uniform = gpu.uniform(&format!("{name} tiled forward params"), &params(conv, [gm, gn, gk], gk, 1)?);
                let groups = fold_grid(gpu, conv, tiles, gm, gn, "conv2d_tiled_forward")?;
                (uniform, im2col_table(gpu, conv, p)?, groups, 1, None)
            }
            ConvPass::BackwardInput => {
                let (gm, gn, gk) = (g.cin, g.n * g.h * g.w, g.cout * g.kh * g.kw);
                let uniform = gpu.uniform(&format!("{name} tiled backward_input params"), &params(conv, [gm, gn, gk], gk, 1)?);
                let groups = fold_grid(gpu, conv, tiles, gm, gn, "conv2d_tiled_backward_input")?;
                // (co * CI * KK + ky * KW + kx, ky, kx, co * OH * OW).
                let tab = table(gpu, conv, p, g.cout, g.cin * g.kh * g.kw, g.kw, g.oh * g.ow)?;
                (uniform, tab, groups, 1, None)
            }
            ConvPass::BackwardWeight => {
                let (gm, gn, gk) = (g.cout, g.cin * g.kh * g.kw, g.n * g.oh * g.ow);
                let bk = tiles.bk as usize;
                let want = splits.unwrap_or_else(|| weight_splits(conv, tiles)).clamp(1, gk.div_ceil(bk));
                let kchunk = gk.div_ceil(want).div_ceil(bk) * bk;
                let splits = gk.div_ceil(kchunk);
                let max = gpu.limits().max_compute_workgroups_per_dimension as usize;
                let groups = [gn.div_ceil(tiles.bn as usize), gm.div_ceil(tiles.bm as usize), splits];
                ensure!(
                    groups.iter().all(|&g| g <= max),
                    "layer {name}: conv2d_tiled_backward_weight needs a grid of {groups:?} workgroups, over max_compute_workgroups_per_dimension={max}"
                );
                let uniform = gpu.uniform(&format!("{name} tiled backward_weight params"), &params(conv, [gm, gn, gk], kchunk, splits)?);
                let scratch = if splits > 1 {
                    u32_of(name, "weight-gradient partials", splits * g.w_len())?;
                    Some(gpu.tensor(&format!("{name} tiled weight-gradient partials"), &[splits, g.w_len()])?)
                } else {
                    None
                };
                (uniform, im2col_table(gpu, conv, p)?, groups.map(|g| g as u32), splits, scratch)
            }
        };
        Ok(Plan { pass, tiles, uniform, table, groups, splits, scratch })
    }

    pub fn tiles(&self) -> Tiles {
        self.tiles
    }

    /// Depth splits of the weight gradient (1 for the other passes).
    pub fn splits(&self) -> usize {
        self.splits
    }

    /// The partial sums of a split weight gradient (a counted tensor).
    pub fn scratch(&self) -> Option<&Tensor> {
        self.scratch.as_ref()
    }

    /// Error unless this plan is for `pass`.
    fn expect(&self, conv: &Conv2d, pass: ConvPass) -> Result<()> {
        ensure!(self.pass == pass, "layer {}: a tiled {} plan cannot record {}", conv.name, self.pass.name(), pass.name());
        Ok(())
    }

    /// A dispatch of `entry` with the plan's uniform at binding 0 and `bindings` (the
    /// GEMMs bind the table at 9).
    fn dispatch(&self, gpu: &Gpu, conv: &Conv2d, entry: &str, constants: &[(&str, f64)], bindings: &[(u32, &Tensor)], groups: [u32; 3]) -> Result<Dispatch> {
        let label = format!("{} {entry}", conv.name);
        let mut b: Vec<(u32, wgpu::BindingResource)> = vec![(0, self.uniform.as_entire_binding())];
        b.extend(bindings.iter().map(|(i, t)| (*i, t.binding())));
        Dispatch::new(gpu, &label, &CONV2D_TILED, entry, constants, &b, groups)
    }
}

/// y = conv(x, w) (+ b; required iff `cfg.bias`): one dispatch. Overwrites y.
pub fn forward(gpu: &Gpu, conv: &Conv2d, plan: &Plan, x: &Tensor, w: &Tensor, b: Option<&Tensor>, y: &Tensor) -> Result<Vec<Dispatch>> {
    plan.expect(conv, ConvPass::Forward)?;
    conv.check_forward(x, w, b, y)?;
    let c = plan.tiles.constants();
    let d = match b {
        Some(b) => plan.dispatch(gpu, conv, "conv2d_tiled_forward_bias", &c, &[(9, &plan.table), (1, x), (2, w), (3, b), (4, y)], plan.groups)?,
        None => plan.dispatch(gpu, conv, "conv2d_tiled_forward", &c, &[(9, &plan.table), (1, x), (2, w), (4, y)], plan.groups)?,
    };
    Ok(vec![d])
}

/// dx = conv_transpose(dy, w): one dispatch. Overwrites dx.
pub fn backward_input(gpu: &Gpu, conv: &Conv2d, plan: &Plan, dx: &Tensor, dy: &Tensor, w: &Tensor) -> Result<Vec<Dispatch>> {
    plan.expect(conv, ConvPass::BackwardInput)?;
    conv.check_backward_input(dx, dy, w)?;
    Ok(vec![plan.dispatch(gpu, conv, "conv2d_tiled_backward_input", &plan.tiles.constants(), &[(9, &plan.table), (6, dx), (5, dy), (2, w)], plan.groups)?])
}

/// dw[co,ci,ky,kx] = sum over n, oy, ox of dy * x: the GEMM, then (when split) the reduce.
/// Overwrites dw, or adds to it when `accumulate`.
#[allow(clippy::too_many_arguments)]
pub fn backward_weight(gpu: &Gpu, conv: &Conv2d, plan: &Plan, dw: &Tensor, dy: &Tensor, x: &Tensor, accumulate: bool) -> Result<Vec<Dispatch>> {
    plan.expect(conv, ConvPass::BackwardWeight)?;
    conv.check_backward_weight(dw, dy, x)?;
    let entry = "conv2d_tiled_backward_weight";
    let [c0, c1, c2] = plan.tiles.constants();
    let Some(scratch) = &plan.scratch else {
        return Ok(vec![plan.dispatch(gpu, conv, entry, &[c0, c1, c2, accumulate_constant(accumulate)], &[(9, &plan.table), (7, dw), (5, dy), (1, x)], plan.groups)?]);
    };
    let partial = plan.dispatch(gpu, conv, entry, &[c0, c1, c2, accumulate_constant(false)], &[(9, &plan.table), (7, scratch), (5, dy), (1, x)], plan.groups)?;
    let rg = gpu.groups_1d(&format!("layer {} conv2d_tiled_reduce", conv.name), dw.len() as u64, WG)?;
    let reduce = plan.dispatch(gpu, conv, "conv2d_tiled_reduce", &[accumulate_constant(accumulate)], &[(7, dw), (8, scratch)], rg)?;
    Ok(vec![partial, reduce])
}
