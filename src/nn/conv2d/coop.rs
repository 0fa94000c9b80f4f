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
//! A `CoopConv` is planned once per layer (uniforms, depth tables, partial buffer) and
//! builds the dispatches of each pass; replay them every step.

use super::Conv2d;
use crate::gpu::coop::{depth_split, CoopBuild, CoopTiles};
use crate::gpu::shaders::{CONV2D_COOP, CONV2D_COOP_EMULATED};
use crate::gpu::{Dispatch, Gpu, Tensor};
use crate::nn::{accumulate_constant, u32_of};
use crate::{bail, ensure, Result};

/// Mirror of `P` in shaders/conv2d_coop.wgsl.
#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    n: u32,
    ci: u32,
    h: u32,
    w: u32,
    co: u32,
    kh: u32,
    kw: u32,
    sh: u32,
    sw: u32,
    pt: u32,
    pl: u32,
    oh: u32,
    ow: u32,
    gm: u32,
    gn: u32,
    gk: u32,
    kchunk: u32,
    splits: u32,
    nw: u32,
    bias: u32,
}

/// Workgroup size of conv2d_coop_reduce (WG in the shader).
const WG: u32 = 64;
/// Weight-gradient split: about this many workgroups in all (a big GPU twice over), at least
/// this much depth (output pixels) per split.
const BW_TARGET_WORKGROUPS: usize = 264;
const BW_MIN_CHUNK: usize = 512;

/// Tiles and depth split of a plan (None: the defaults, `CoopTiles::for_gemm` of each pass
/// and `depth_split`'s). For tests and tuning.
#[derive(Debug, Clone, Copy, Default)]
pub struct CoopConvOptions {
    pub forward: Option<CoopTiles>,
    pub backward_input: Option<CoopTiles>,
    pub backward_weight: Option<CoopTiles>,
    pub splits: Option<usize>,
}

/// One pass: its block shape, uniform, depth table and grid.
struct PassPlan {
    tiles: CoopTiles,
    uniform: wgpu::Buffer,
    tab: Tensor,
    groups: [u32; 3],
}

/// The cooperative-matrix plan of one layer.
pub struct CoopConv {
    name: String,
    build: CoopBuild,
    input_shape: [usize; 4],
    output_shape: [usize; 4],
    weight_shape: [usize; 4],
    bias: bool,
    fwd: PassPlan,
    bin: PassPlan,
    bw: PassPlan,
    splits: usize,
    /// [splits, CO*CI*KH*KW] weight-gradient partials; None with one split.
    scratch: Option<Tensor>,
}

/// Whether the cooperative-matrix kernels handle `conv`: every geometry `Conv2d` accepts.
/// Whether they run here is `CoopBuild::check`.
pub fn supports(conv: &Conv2d) -> bool {
    let _ = conv;
    true
}

/// The uniform of one pass.
fn params(conv: &Conv2d, gemm: [usize; 3], kchunk: usize, splits: usize) -> Result<Params> {
    let [n, ci, h, w] = conv.input_shape;
    let [_, co, oh, ow] = conv.output_shape;
    let (kh, kw) = conv.cfg.kernel;
    let (sh, sw) = conv.cfg.stride;
    let (pt, pl) = conv.padding();
    let u = |what: &str, v: usize| u32_of(&conv.name, what, v);
    Ok(Params {
        n: u("batch", n)?,
        ci: u("in_channels", ci)?,
        h: u("height", h)?,
        w: u("width", w)?,
        co: u("out_channels", co)?,
        kh: u("kernel height", kh)?,
        kw: u("kernel width", kw)?,
        sh: u("stride", sh)?,
        sw: u("stride", sw)?,
        pt: u("padding", pt)?,
        pl: u("padding", pl)?,
        oh: u("output height", oh)?,
        ow: u("output width", ow)?,
        gm: u("GEMM rows", gemm[0])?,
        gn: u("GEMM columns", gemm[1])?,
        gk: u("GEMM depth", gemm[2])?,
        kchunk: u("GEMM depth per split", kchunk)?,
        splits: u("weight-gradient splits", splits)?,
        nw: u("weight elements", co * ci * kh * kw)?,
        bias: conv.cfg.bias as u32,
    })
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

impl CoopConv {
    /// The plan of `conv` with the default tiles and split.
    pub fn new(gpu: &Gpu, conv: &Conv2d, build: CoopBuild) -> Result<CoopConv> {
        Self::with_options(gpu, conv, build, CoopConvOptions::default())
    }

    /// The plan with explicit tiles / split (`CoopConvOptions`). Errors name the layer: the
    /// build does not run here, a tile shape does not fit the adapter, a grid is too large.
    pub fn with_options(gpu: &Gpu, conv: &Conv2d, build: CoopBuild, opts: CoopConvOptions) -> Result<CoopConv> {
        let name = &conv.name;
        build.check(gpu, name)?;
        let [n, ci, h, w] = conv.input_shape;
        let [_, co, oh, ow] = conv.output_shape;
        let (kh, kw) = conv.cfg.kernel;
        let kk = kh * kw;

        let (gm, gn, gk) = (n * oh * ow, co, ci * kk);
        let tiles = opts.forward.unwrap_or_else(|| CoopTiles::for_gemm(gm, gn));
        tiles.check(gpu, name, build)?;
        let fwd = PassPlan {
            tiles,
            uniform: gpu.uniform(&format!("{name} coop forward params"), &params(conv, [gm, gn, gk], gk, 1)?),
            tab: table(gpu, conv, "forward", ci, h * w, w, 0)?,
            groups: fold_grid(gpu, conv, tiles, gm, gn, "conv2d_coop_forward")?,
        };

        let (gm, gn, gk) = (n * h * w, ci, co * kk);
        let tiles = opts.backward_input.unwrap_or_else(|| CoopTiles::for_gemm(gm, gn));
        tiles.check(gpu, name, build)?;
        let bin = PassPlan {
            tiles,
            uniform: gpu.uniform(&format!("{name} coop backward_input params"), &params(conv, [gm, gn, gk], gk, 1)?),
            tab: table(gpu, conv, "backward_input", co, ci * kk, kw, oh * ow)?,
            groups: fold_grid(gpu, conv, tiles, gm, gn, "conv2d_coop_backward_input")?,
        };

        let (gm, gn, gk) = (co, ci * kk, n * oh * ow);
        let tiles = opts.backward_weight.unwrap_or_else(|| CoopTiles::for_gemm(gm, gn));
        tiles.check(gpu, name, build)?;
        let blocks = gm.div_ceil(tiles.bm() as usize) * gn.div_ceil(tiles.bn() as usize);
        let (kchunk, splits) = depth_split(gk, tiles.bk as usize, blocks, BW_TARGET_WORKGROUPS, BW_MIN_CHUNK, opts.splits);
        let max = gpu.limits().max_compute_workgroups_per_dimension as usize;
        let groups = [gn.div_ceil(tiles.bn() as usize), gm.div_ceil(tiles.bm() as usize), splits];
        ensure!(
            groups.iter().all(|&g| g <= max),
            "layer {name}: conv2d_coop_backward_weight needs a grid of {groups:?} workgroups, over max_compute_workgroups_per_dimension={max}"
        );
        let bw = PassPlan {
            tiles,
            uniform: gpu.uniform(&format!("{name} coop backward_weight params"), &params(conv, [gm, gn, gk], kchunk, splits)?),
            tab: fwd.tab.clone(),
            groups: groups.map(|g| g as u32),
        };
        let nw = co * ci * kk;
        let scratch = if splits > 1 {
            let t = gpu.tensor(&format!("{name} coop weight-gradient partials"), &[splits, nw])?;
            u32_of(name, "weight-gradient partials", t.len())?;
            Some(t)
        } else {
            None
        };
        Ok(CoopConv {
            name: name.clone(),
            build,
            input_shape: conv.input_shape,
            output_shape: conv.output_shape,
            weight_shape: conv.weight_shape(),
            bias: conv.cfg.bias,
            fwd,
            bin,
            bw,
            splits,
            scratch,
        })
    }

    pub fn build(&self) -> CoopBuild {
        self.build
    }

    /// Depth splits of the weight gradient (1: no reduce pass).
    pub fn weight_splits(&self) -> usize {
        self.splits
    }

    /// Block shapes of forward, backward_input, backward_weight.
    pub fn tiles(&self) -> [CoopTiles; 3] {
        [self.fwd.tiles, self.bin.tiles, self.bw.tiles]
    }

    #[allow(clippy::too_many_arguments)]
    fn dispatch(&self, gpu: &Gpu, entry: &str, pass: &PassPlan, constants: Vec<(&str, f64)>, bindings: &[(u32, &Tensor)], uniform: &wgpu::Buffer, groups: [u32; 3]) -> Result<Dispatch> {
        let label = format!("{} {entry} ({})", self.name, self.build.name());
        let mut b: Vec<(u32, wgpu::BindingResource)> = vec![(0, uniform.as_entire_binding())];
        if entry != "conv2d_coop_reduce" {
            b.push((5, pass.tab.binding()));
        }
        b.extend(bindings.iter().map(|(i, t)| (*i, t.binding())));
        let shader = self.build.shader(CONV2D_COOP, CONV2D_COOP_EMULATED);
        Dispatch::new(gpu, &label, &shader, entry, &constants, &b, groups)
    }

    /// y = conv(x, w) (+ b). Overwrites y. `b` is required iff the layer has a bias. One
    /// dispatch.
    pub fn forward(&self, gpu: &Gpu, x: &Tensor, w: &Tensor, b: Option<&Tensor>, y: &Tensor) -> Result<Vec<Dispatch>> {
        let name = &self.name;
        x.expect_shape(name, "input", &self.input_shape)?;
        w.expect_shape(name, "weight", &self.weight_shape)?;
        y.expect_len(name, "output", self.output_shape.iter().product())?;
        let co = self.output_shape[1];
        let bias = match (self.bias, b) {
            (true, Some(b)) => {
                b.expect_shape(name, "bias", &[co])?;
                b
            }
            // Unread without bias (p.bias is 0), but bound: alias the weights.
            (false, None) => w,
            (true, None) => bail!("layer {name}: configured with bias, but no bias tensor [{co}] was given"),
            (false, Some(_)) => bail!("layer {name}: configured without bias, but a bias tensor was given"),
        };
        let c = self.fwd.tiles.constants(gpu, self.build);
        let d = self.dispatch(gpu, "conv2d_coop_forward", &self.fwd, c, &[(1, x), (2, w), (3, bias), (4, y)], &self.fwd.uniform, self.fwd.groups)?;
        Ok(vec![d])
    }

    /// dx = conv_transpose(dy, w). Overwrites dx. One dispatch.
    pub fn backward_input(&self, gpu: &Gpu, dx: &Tensor, dy: &Tensor, w: &Tensor) -> Result<Vec<Dispatch>> {
        let name = &self.name;
        dx.expect_len(name, "input gradient", self.input_shape.iter().product())?;
        dy.expect_len(name, "output gradient", self.output_shape.iter().product())?;
        w.expect_shape(name, "weight", &self.weight_shape)?;
        let c = self.bin.tiles.constants(gpu, self.build);
        let d = self.dispatch(gpu, "conv2d_coop_backward_input", &self.bin, c, &[(1, dy), (2, w), (3, w), (4, dx)], &self.bin.uniform, self.bin.groups)?;
        Ok(vec![d])
    }

    /// dw[co,ci,ky,kx] = sum over n, oy, ox of dy * x. Overwrites dw, or adds to it when
    /// `accumulate`. One dispatch, or two (partials into this plan's buffer, then the reduce)
    /// with several splits: two such lists of one plan must not run concurrently (they never
    /// do within one submission).
    pub fn backward_weight(&self, gpu: &Gpu, dw: &Tensor, dy: &Tensor, x: &Tensor, accumulate: bool) -> Result<Vec<Dispatch>> {
        let name = &self.name;
        dw.expect_shape(name, "weight gradient", &self.weight_shape)?;
        dy.expect_len(name, "output gradient", self.output_shape.iter().product())?;
        x.expect_len(name, "saved input", self.input_shape.iter().product())?;
        let entry = "conv2d_coop_backward_weight";
        let mut c = self.bw.tiles.constants(gpu, self.build);
        let Some(scratch) = &self.scratch else {
            c.push(accumulate_constant(accumulate));
            return Ok(vec![self.dispatch(gpu, entry, &self.bw, c, &[(1, dy), (2, x), (3, x), (4, dw)], &self.bw.uniform, self.bw.groups)?]);
        };
        c.push(accumulate_constant(false));
        let partial = self.dispatch(gpu, entry, &self.bw, c, &[(1, dy), (2, x), (3, x), (4, scratch)], &self.bw.uniform, self.bw.groups)?;
        let rg = gpu.groups_1d(&format!("layer {name} conv2d_coop_reduce"), dw.len() as u64, WG)?;
        let reduce = self.dispatch(gpu, "conv2d_coop_reduce", &self.bw, vec![accumulate_constant(accumulate)], &[(4, dw), (6, scratch)], &self.bw.uniform, rg)?;
        Ok(vec![partial, reduce])
    }
}
