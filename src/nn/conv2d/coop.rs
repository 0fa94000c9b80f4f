//! Cooperative-matrix (tensor-core) variant of the convolution kernels
//! (shaders/conv2d_coop.wgsl on the GEMM core shaders/coop/gemm.wgsl): every pass an implicit
//! GEMM with f16 operands (the f32 tensors rounded when staged) and f32 sums.
//!
//! GEMMs (rows x columns, depth):
//! - forward:         N*OH*OW x CO, CI*KH*KW.
//! - backward_input:  N*H*W x CI, CO*KH*KW (a gather over the taps that reach each input: any
//!   stride and padding; stride > 1 is correct but wasteful, most taps miss).
//! - backward_weight: CO x CI*KH*KW, N*OH*OW, split over the depth into partials
//!   [splits, CO*CI*KH*KW] and reduced (no float atomics).
//!
//! `CoopBuild::Hardware` runs the real cooperative operations (`Gpu::has_coop`);
//! `CoopBuild::Emulated` the same kernels with plain-WGSL stand-ins (any adapter with f16),
//! which is how CI's lavapipe tests the tiling, staging and indexing.
//!
//! A `Plan` per pass (block shape, uniform, depth table, grid; backward_weight its depth
//! split and partial sums) is built when the layer is planned (`ConvVariant::Coop`: the
//! hardware build); `forward`, `backward_input` and `backward_weight` record dispatches over
//! it. Tests build plans of either build, other blocks and splits directly.

use super::{geom::GemmUniform, Conv2d, ConvPass};
use crate::gpu::coop::{depth_split, CoopBuild, CoopTiles};
use crate::gpu::shaders::{CONV2D_COOP, CONV2D_COOP_EMULATED};
use crate::gpu::{Dispatch, Gpu, Tensor};
use crate::nn::{accumulate_constant, u32_of};
use crate::{ensure, Result};

/// Workgroup size of conv2d_coop_reduce (WG in the shader).
const WG: u32 = 64;
/// Weight-gradient split: about this many workgroups in all (an H200's 132 SMs twice over),
/// at least this much depth (output pixels) per split.
const BW_TARGET_WORKGROUPS: usize = 264;
const BW_MIN_CHUNK: usize = 512;

/// Why the cooperative-matrix kernels cannot run `pass` of `conv` on `gpu` with `build`
/// and the default blocks, or None. Every geometry `Conv2d` accepts is handled.
pub fn unsupported(gpu: &Gpu, conv: &Conv2d, pass: ConvPass, build: CoopBuild) -> Option<String> {
    if let Some(why) = build.unavailable(gpu) {
        return Some(why);
    }
    let [gm, gn, _] = gemm(conv, pass);
    CoopTiles::for_gemm(gm, gn).check(gpu, &conv.name, build).err().map(|e| e.to_string())
}

/// (rows, columns, depth) of the GEMM of `pass`.
fn gemm(conv: &Conv2d, pass: ConvPass) -> [usize; 3] {
    let g = &conv.geom;
    let kk = g.kh * g.kw;
    match pass {
        ConvPass::Forward => [g.n * g.oh * g.ow, g.cout, g.cin * kk],
        ConvPass::BackwardInput => [g.n * g.h * g.w, g.cin, g.cout * kk],
        ConvPass::BackwardWeight => [g.cout, g.cin * kk, g.n * g.oh * g.ow],
    }
}

/// The uniform of one pass.
fn params(conv: &Conv2d, gemm: [usize; 3], kchunk: usize, splits: usize) -> Result<GemmUniform> {
    GemmUniform::new(&conv.name, &conv.geom, gemm, kchunk, splits, conv.cfg.bias)
}

/// The depth table `tab` of the shader over k = (c, ky, kx), `channels` x KH x KW:
/// (c * c_stride + ky * row + kx, ky, kx, c * w_stride), as a [rows, 4] i32 tensor.
fn table(gpu: &Gpu, conv: &Conv2d, pass: &str, channels: usize, c_stride: usize, row: usize, w_stride: usize) -> Result<Tensor> {
    let (kh, kw) = conv.cfg.kernel;
    let i = |v: usize| i32::try_from(v).map_err(|_| crate::Error::new(format!("layer {}: coop {pass} table index {v} does not fit in 31 bits", conv.name)));
    let mut rows = Vec::with_capacity(channels * kh * kw * 4);
    for c in 0..channels {
        for ky in 0..kh {
            for kx in 0..kw {
                rows.extend([i(c * c_stride + ky * row + kx)?, ky as i32, kx as i32, i(c * w_stride)?]);
            }
        }
    }
    gpu.upload(&format!("{} coop {pass} table", conv.name), &[channels * kh * kw, 4], &rows)
}

/// Grid of forward / backward_input: ceil(gm / BM) row blocks folded into x and z (the
/// kernel skips blocks past the end), ceil(gn / BN) column blocks on y.
fn fold_grid(gpu: &Gpu, conv: &Conv2d, tiles: CoopTiles, gm: usize, gn: usize, entry: &str) -> Result<[u32; 3]> {
    let max = gpu.limits().max_compute_workgroups_per_dimension as usize;
    let mt = gm.div_ceil(tiles.bm() as usize);
    let gz = mt.div_ceil(max);
    let gy = gn.div_ceil(tiles.bn() as usize);
    ensure!(
        gz <= max && gy <= max,
        "layer {}: {entry} needs {mt} x {gy} blocks, over this adapter's max_compute_workgroups_per_dimension={max} even folded; use a smaller batch",
        conv.name
    );
    Ok([mt.div_ceil(gz) as u32, gy as u32, gz as u32])
}

/// One pass: build, block shape, uniform, depth table, grid; backward_weight also its depth
/// split and (when split) the [splits, CO*CI*KH*KW] partial sums.
pub struct Plan {
    pass: ConvPass,
    build: CoopBuild,
    tiles: CoopTiles,
    uniform: wgpu::Buffer,
    table: Tensor,
    groups: [u32; 3],
    splits: usize,
    scratch: Option<Tensor>,
}

impl Plan {
    /// The plan of `pass` with `build`, `tiles` (None: `CoopTiles::for_gemm` of the pass's
    /// GEMM) and, for backward_weight, `splits` depth splits (None: about
    /// BW_TARGET_WORKGROUPS workgroups, at least BW_MIN_CHUNK depth each; rounded so every
    /// split is whole BK slices). Errors name the layer: the build does not run here, the
    /// block does not fit the adapter, a grid is too large.
    pub fn new(gpu: &Gpu, conv: &Conv2d, pass: ConvPass, build: CoopBuild, tiles: Option<CoopTiles>, splits: Option<usize>) -> Result<Plan> {
        let name = &conv.name;
        build.check(gpu, name)?;
        let g = conv.geom;
        let [gm, gn, gk] = gemm(conv, pass);
        let tiles = tiles.unwrap_or_else(|| CoopTiles::for_gemm(gm, gn));
        tiles.check(gpu, name, build)?;
        let p = pass.name();
        let (table, groups, kchunk, splits) = match pass {
            ConvPass::Forward => (table(gpu, conv, p, g.cin, g.h * g.w, g.w, 0)?, fold_grid(gpu, conv, tiles, gm, gn, "conv2d_coop_forward")?, gk, 1),
            ConvPass::BackwardInput => {
                // (co * CI * KK + ky * KW + kx, ky, kx, co * OH * OW).
                let tab = table(gpu, conv, p, g.cout, g.cin * g.kh * g.kw, g.kw, g.oh * g.ow)?;
                (tab, fold_grid(gpu, conv, tiles, gm, gn, "conv2d_coop_backward_input")?, gk, 1)
            }
            ConvPass::BackwardWeight => {
                let blocks = gm.div_ceil(tiles.bm() as usize) * gn.div_ceil(tiles.bn() as usize);
                let (kchunk, splits) = depth_split(gk, tiles.bk as usize, blocks, BW_TARGET_WORKGROUPS, BW_MIN_CHUNK, splits);
                let max = gpu.limits().max_compute_workgroups_per_dimension as usize;
                let groups = [gn.div_ceil(tiles.bn() as usize), gm.div_ceil(tiles.bm() as usize), splits];
                ensure!(
                    groups.iter().all(|&g| g <= max),
                    "layer {name}: conv2d_coop_backward_weight needs a grid of {groups:?} workgroups, over max_compute_workgroups_per_dimension={max}"
                );
                (table(gpu, conv, p, g.cin, g.h * g.w, g.w, 0)?, groups.map(|g| g as u32), kchunk, splits)
            }
        };
        let uniform = gpu.uniform(&format!("{name} coop {p} params"), &params(conv, [gm, gn, gk], kchunk, splits)?);
        let scratch = if splits > 1 {
            u32_of(name, "weight-gradient partials", splits * g.w_len())?;
            Some(gpu.scratch(&format!("{name} coop weight-gradient partials"), &[splits, g.w_len()])?)
        } else {
            None
        };
        Ok(Plan { pass, build, tiles, uniform, table, groups, splits, scratch })
    }

    pub fn build(&self) -> CoopBuild {
        self.build
    }

    pub fn tiles(&self) -> CoopTiles {
        self.tiles
    }

    /// Depth splits of the weight gradient (1 for the other passes).
    pub fn splits(&self) -> usize {
        self.splits
    }

    /// Error unless this plan is for `pass`.
    fn expect(&self, conv: &Conv2d, pass: ConvPass) -> Result<()> {
        ensure!(self.pass == pass, "layer {}: a coop {} plan cannot record {}", conv.name, self.pass.name(), pass.name());
        Ok(())
    }

    /// A dispatch of `entry` with the plan's uniform at binding 0 (and the GEMMs' table at 5).
    fn dispatch(&self, gpu: &Gpu, conv: &Conv2d, entry: &str, constants: &[(&str, f64)], bindings: &[(u32, &Tensor)], groups: [u32; 3]) -> Result<Dispatch> {
        let label = format!("{} {entry} ({})", conv.name, self.build.name());
        let mut b: Vec<(u32, wgpu::BindingResource)> = vec![(0, self.uniform.as_entire_binding())];
        if entry != "conv2d_coop_reduce" {
            b.push((5, self.table.binding()));
        }
        b.extend(bindings.iter().map(|(i, t)| (*i, t.binding())));
        let shader = self.build.shader(CONV2D_COOP, CONV2D_COOP_EMULATED);
        Dispatch::new(gpu, &label, &shader, entry, constants, &b, groups)
    }
}

/// y = conv(x, w) (+ b; required iff `cfg.bias`): one dispatch. Overwrites y.
pub fn forward(gpu: &Gpu, conv: &Conv2d, plan: &Plan, x: &Tensor, w: &Tensor, b: Option<&Tensor>, y: &Tensor) -> Result<Vec<Dispatch>> {
    plan.expect(conv, ConvPass::Forward)?;
    conv.check_forward(x, w, b, y)?;
    // Unread without bias (p.bias is 0), but bound: alias the weights.
    let bias = b.unwrap_or(w);
    let c = plan.tiles.constants(gpu, plan.build);
    Ok(vec![plan.dispatch(gpu, conv, "conv2d_coop_forward", &c, &[(1, x), (2, w), (3, bias), (4, y)], plan.groups)?])
}

/// dx = conv_transpose(dy, w): one dispatch. Overwrites dx.
pub fn backward_input(gpu: &Gpu, conv: &Conv2d, plan: &Plan, dx: &Tensor, dy: &Tensor, w: &Tensor) -> Result<Vec<Dispatch>> {
    plan.expect(conv, ConvPass::BackwardInput)?;
    conv.check_backward_input(dx, dy, w)?;
    let c = plan.tiles.constants(gpu, plan.build);
    Ok(vec![plan.dispatch(gpu, conv, "conv2d_coop_backward_input", &c, &[(1, dy), (2, w), (3, w), (4, dx)], plan.groups)?])
}

/// dw[co,ci,ky,kx] = sum over n, oy, ox of dy * x: the GEMM, then (when split) the reduce.
/// Overwrites dw, or adds to it when `accumulate`.
#[allow(clippy::too_many_arguments)]
pub fn backward_weight(gpu: &Gpu, conv: &Conv2d, plan: &Plan, dw: &Tensor, dy: &Tensor, x: &Tensor, accumulate: bool) -> Result<Vec<Dispatch>> {
    plan.expect(conv, ConvPass::BackwardWeight)?;
    conv.check_backward_weight(dw, dy, x)?;
    let entry = "conv2d_coop_backward_weight";
    let mut c = plan.tiles.constants(gpu, plan.build);
    let Some(scratch) = &plan.scratch else {
        c.push(accumulate_constant(accumulate));
        return Ok(vec![plan.dispatch(gpu, conv, entry, &c, &[(1, dy), (2, x), (3, x), (4, dw)], plan.groups)?]);
    };
    c.push(accumulate_constant(false));
    let partial = plan.dispatch(gpu, conv, entry, &c, &[(1, dy), (2, x), (3, x), (4, scratch)], plan.groups)?;
    let rg = gpu.groups_1d(&format!("layer {} conv2d_coop_reduce", conv.name), dw.len() as u64, WG)?;
    let reduce = plan.dispatch(gpu, conv, "conv2d_coop_reduce", &[accumulate_constant(accumulate)], &[(4, dw), (6, scratch)], rg)?;
    Ok(vec![partial, reduce])
}
