//! 2-D convolution: any kernel, stride, zero padding (Valid / Same / Explicit), optional bias.
//! Kernels: shaders/conv2d.wgsl. Reference: src/reference/conv2d.rs.
//!
//! Layout: x [N, Cin, H, W], w [Cout, Cin, KH, KW], b [Cout], y [N, Cout, OH, OW].

use super::{accumulate_constant, nchw, resolve_padding, u32_of, Padding};
use crate::gpu::{shaders::CONV2D, Dispatch, Gpu, Tensor};
use crate::reference::conv2d::ConvGeom;
use crate::{bail, ensure, Result};
use std::sync::OnceLock;

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Conv2dConfig {
    pub in_channels: usize,
    pub out_channels: usize,
    /// (KH, KW).
    pub kernel: (usize, usize),
    /// (vertical, horizontal).
    pub stride: (usize, usize),
    pub padding: Padding,
    pub bias: bool,
}

impl Conv2dConfig {
    /// Stride 1, Keras "same" padding, with bias: the usual 3x3 block conv.
    pub fn same(in_channels: usize, out_channels: usize, kernel: (usize, usize)) -> Self {
        Conv2dConfig { in_channels, out_channels, kernel, stride: (1, 1), padding: Padding::Same, bias: true }
    }
}

/// Mirror of `Params` in shaders/conv2d.wgsl.
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
    cob: u32,
    cib: u32,
    owb: u32,
    iwb: u32,
    splits: u32,
    rps: u32,
    nw: u32,
    fwd_total: u32,
    bin_total: u32,
    bw_blocks: u32,
    bw_total: u32,
}

/// Workgroup size of the 1-D kernels (WG in the shader; conv2d_backward_bias uses one
/// workgroup of WG_BIAS per output channel).
const WG: u32 = 64;
/// Register blocks (CB and PB in the shader, hard-wired as vec4 accumulators): CB channels x
/// PB columns per forward / backward_input invocation, CB co x PB ci per weight-gradient
/// invocation.
const CB: usize = 8;
const PB: usize = 4;
/// Weight-gradient split heuristic: enough invocations to fill a GPU, but at least this many
/// output positions summed per invocation.
const BW_TARGET_INVOCATIONS: usize = 65536;
const BW_MIN_POSITIONS: usize = 256;

pub struct Conv2d {
    pub name: String,
    pub cfg: Conv2dConfig,
    /// [N, Cin, H, W].
    pub input_shape: [usize; 4],
    /// [N, Cout, OH, OW].
    pub output_shape: [usize; 4],
    pad_top: usize,
    pad_left: usize,
    /// Batch rows (n, oy) of the weight gradient are split into `splits` chunks of
    /// `rows_per_split`; > 1 uses the partial buffer `scratch` and a reduce pass.
    splits: usize,
    rows_per_split: usize,
    params: wgpu::Buffer,
    /// [splits, Cout*Cin*KH*KW] partial weight gradients, allocated on first use.
    scratch: OnceLock<Tensor>,
}

impl Conv2d {
    /// Validate `cfg` against `input_shape` = [N, Cin, H, W] and write the uniform.
    pub fn new(gpu: &Gpu, name: &str, cfg: Conv2dConfig, input_shape: &[usize]) -> Result<Self> {
        let [n, ci, h, w] = nchw(name, input_shape)?;
        ensure!(
            ci == cfg.in_channels,
            "layer {name}: input shape {input_shape:?} has {ci} channels, expected in_channels={}",
            cfg.in_channels
        );
        ensure!(cfg.out_channels > 0, "layer {name}: out_channels must be positive");
        ensure!(
            cfg.kernel.0 > 0 && cfg.kernel.1 > 0,
            "layer {name}: kernel {:?} must be positive in both dimensions",
            cfg.kernel
        );
        ensure!(
            cfg.stride.0 > 0 && cfg.stride.1 > 0,
            "layer {name}: stride {:?} must be positive in both dimensions",
            cfg.stride
        );
        let (pad_top, pad_left, oh, ow) = resolve_padding(name, cfg.padding, h, w, cfg.kernel, cfg.stride)?;
        let co = cfg.out_channels;
        let (kh, kw) = cfg.kernel;
        // Element counts of every tensor the kernels index must fit in u32.
        u32_of(name, "input elements", n * ci * h * w)?;
        u32_of(name, "output elements", n * co * oh * ow)?;
        u32_of(name, "weight elements", co * ci * kh * kw)?;
        let bw_blocks = co.div_ceil(CB) * ci.div_ceil(PB) * kh * kw;
        let (splits, rows_per_split) = default_splits(n * oh, ow, bw_blocks);
        let input_shape = [n, ci, h, w];
        let output_shape = [n, co, oh, ow];
        let p = params(name, &cfg, input_shape, output_shape, (pad_top, pad_left), (splits, rows_per_split))?;
        let params = gpu.uniform(&format!("{name} params"), &p);
        Ok(Conv2d { name: name.to_string(), cfg, input_shape, output_shape, pad_top, pad_left, splits, rows_per_split, params, scratch: OnceLock::new() })
    }

    /// Use `splits` chunks of the batch rows for the weight gradient (clamped to [1, N*OH]);
    /// for tests and tuning. Call before building any dispatch.
    pub fn with_weight_splits(mut self, gpu: &Gpu, splits: usize) -> Result<Self> {
        let rows = self.output_shape[0] * self.output_shape[2];
        let rps = rows.div_ceil(splits.clamp(1, rows));
        self.rows_per_split = rps;
        self.splits = rows.div_ceil(rps);
        self.scratch = OnceLock::new();
        let p = params(&self.name, &self.cfg, self.input_shape, self.output_shape, (self.pad_top, self.pad_left), (self.splits, rps))?;
        self.params = gpu.uniform(&format!("{} params", self.name), &p);
        Ok(self)
    }

    /// Number of batch-row chunks of the weight gradient (1: no reduce pass).
    pub fn weight_splits(&self) -> usize {
        self.splits
    }

    /// [Cout, Cin, KH, KW].
    pub fn weight_shape(&self) -> [usize; 4] {
        [self.cfg.out_channels, self.cfg.in_channels, self.cfg.kernel.0, self.cfg.kernel.1]
    }

    /// [Cout].
    pub fn bias_shape(&self) -> [usize; 1] {
        [self.cfg.out_channels]
    }

    /// Resolved (pad_top, pad_left).
    pub fn padding(&self) -> (usize, usize) {
        (self.pad_top, self.pad_left)
    }

    /// The geometry in the reference's terms (tests).
    pub fn geom(&self) -> ConvGeom {
        let [n, cin, h, w] = self.input_shape;
        let [_, cout, oh, ow] = self.output_shape;
        ConvGeom {
            n,
            cin,
            h,
            w,
            cout,
            kh: self.cfg.kernel.0,
            kw: self.cfg.kernel.1,
            stride_h: self.cfg.stride.0,
            stride_w: self.cfg.stride.1,
            pad_top: self.pad_top,
            pad_left: self.pad_left,
            oh,
            ow,
        }
    }

    fn len(shape: &[usize; 4]) -> usize {
        shape.iter().product()
    }

    fn dispatch(&self, gpu: &Gpu, entry: &str, constants: &[(&str, f64)], bindings: &[(u32, &Tensor)], groups: [u32; 3]) -> Result<Dispatch> {
        let label = format!("{} {entry}", self.name);
        let mut b: Vec<(u32, wgpu::BindingResource)> = vec![(0, self.params.as_entire_binding())];
        b.extend(bindings.iter().map(|(i, t)| (*i, t.binding())));
        Dispatch::new(gpu, &label, &CONV2D, entry, constants, &b, groups)
    }

    fn groups(&self, gpu: &Gpu, entry: &str, invocations: usize) -> Result<[u32; 3]> {
        gpu.groups_1d(&format!("layer {} {entry}", self.name), invocations as u64, WG)
    }

    /// Grid [X, ceil(channels / CB), Z] of the forward / backward_input kernels: `invocations`
    /// pixel blocks per channel block over x, spilling into z past the per-dimension limit.
    fn channel_grid(&self, gpu: &Gpu, entry: &str, invocations: usize, channels: usize) -> Result<[u32; 3]> {
        let [x, z, _] = self.groups(gpu, entry, invocations)?;
        Ok([x, u32_of(&self.name, "channel blocks", channels.div_ceil(CB))?, z])
    }

    /// y = conv(x, w) (+ b). Overwrites y. `b` is required iff `cfg.bias`.
    pub fn forward(&self, gpu: &Gpu, x: &Tensor, w: &Tensor, b: Option<&Tensor>, y: &Tensor) -> Result<Dispatch> {
        x.expect_shape(&self.name, "input", &self.input_shape)?;
        w.expect_shape(&self.name, "weight", &self.weight_shape())?;
        y.expect_len(&self.name, "output", Self::len(&self.output_shape))?;
        let [n, co, oh, ow] = self.output_shape;
        let groups = self.channel_grid(gpu, "conv2d_forward", n * oh * ow.div_ceil(PB), co)?;
        match (self.cfg.bias, b) {
            (true, Some(b)) => {
                b.expect_shape(&self.name, "bias", &self.bias_shape())?;
                self.dispatch(gpu, "conv2d_forward_bias", &[], &[(1, x), (2, w), (3, b), (4, y)], groups)
            }
            (false, None) => self.dispatch(gpu, "conv2d_forward", &[], &[(1, x), (2, w), (4, y)], groups),
            (true, None) => bail!("layer {}: configured with bias, but no bias tensor [{co}] was given", self.name),
            (false, Some(_)) => bail!("layer {}: configured without bias, but a bias tensor was given", self.name),
        }
    }

    /// dx = conv_transpose(dy, w). Overwrites dx.
    pub fn backward_input(&self, gpu: &Gpu, dx: &Tensor, dy: &Tensor, w: &Tensor) -> Result<Dispatch> {
        dx.expect_len(&self.name, "input gradient", Self::len(&self.input_shape))?;
        dy.expect_len(&self.name, "output gradient", Self::len(&self.output_shape))?;
        w.expect_shape(&self.name, "weight", &self.weight_shape())?;
        let [n, ci, h, wd] = self.input_shape;
        let groups = self.channel_grid(gpu, "conv2d_backward_input", n * h * wd.div_ceil(PB), ci)?;
        self.dispatch(gpu, "conv2d_backward_input", &[], &[(5, dx), (6, dy), (2, w)], groups)
    }

    /// dw[co,ci,ky,kx] = sum over n, oy, ox of dy * x. Overwrites dw, or adds to it when
    /// `accumulate`. One dispatch, or two (partial sums over batch-row splits into a scratch
    /// buffer owned by this layer, then a reduce) when `weight_splits() > 1`: so two
    /// backward_weight dispatch lists of one layer must not run concurrently (they never do
    /// within one submission: dispatches are ordered).
    pub fn backward_weight(&self, gpu: &Gpu, dw: &Tensor, dy: &Tensor, x: &Tensor, accumulate: bool) -> Result<Vec<Dispatch>> {
        dw.expect_shape(&self.name, "weight gradient", &self.weight_shape())?;
        dy.expect_len(&self.name, "output gradient", Self::len(&self.output_shape))?;
        x.expect_len(&self.name, "saved input", Self::len(&self.input_shape))?;
        let nw = dw.len();
        let [_, ci, _, _] = self.input_shape;
        let co = self.cfg.out_channels;
        let (kh, kw) = self.cfg.kernel;
        let blocks = co.div_ceil(CB) * ci.div_ceil(PB) * kh * kw;
        let groups = self.groups(gpu, "conv2d_backward_weight", blocks * self.splits)?;
        if self.splits == 1 {
            let d = self.dispatch(gpu, "conv2d_backward_weight", &[accumulate_constant(accumulate)], &[(7, dw), (6, dy), (1, x)], groups)?;
            return Ok(vec![d]);
        }
        let scratch = match self.scratch.get() {
            Some(s) => s,
            None => {
                let t = gpu.tensor(&format!("{} weight-gradient partials", self.name), &[self.splits, nw])?;
                self.scratch.get_or_init(|| t)
            }
        };
        let partial = self.dispatch(gpu, "conv2d_backward_weight", &[accumulate_constant(false)], &[(7, scratch), (6, dy), (1, x)], groups)?;
        let groups = self.groups(gpu, "conv2d_backward_weight_reduce", nw)?;
        let reduce = self.dispatch(gpu, "conv2d_backward_weight_reduce", &[accumulate_constant(accumulate)], &[(7, dw), (8, scratch)], groups)?;
        Ok(vec![partial, reduce])
    }

    /// db[co] = sum over n, oy, ox of dy. Overwrites db, or adds to it when `accumulate`.
    pub fn backward_bias(&self, gpu: &Gpu, db: &Tensor, dy: &Tensor, accumulate: bool) -> Result<Dispatch> {
        ensure!(self.cfg.bias, "layer {}: configured without bias, so it has no bias gradient", self.name);
        db.expect_shape(&self.name, "bias gradient", &self.bias_shape())?;
        dy.expect_len(&self.name, "output gradient", Self::len(&self.output_shape))?;
        let groups = [u32_of(&self.name, "out_channels", self.cfg.out_channels)?, 1, 1];
        self.dispatch(gpu, "conv2d_backward_bias", &[accumulate_constant(accumulate)], &[(9, db), (6, dy)], groups)
    }
}

/// The uniform of a layer: shapes, resolved padding, weight-gradient split, invocation counts.
fn params(name: &str, cfg: &Conv2dConfig, input: [usize; 4], output: [usize; 4], pads: (usize, usize), split: (usize, usize)) -> Result<Params> {
    let [n, ci, h, w] = input;
    let [_, co, oh, ow] = output;
    let (kh, kw) = cfg.kernel;
    let (splits, rps) = split;
    let u = |what: &str, v: usize| u32_of(name, what, v);
    let (cob, cib) = (co.div_ceil(CB), ci.div_ceil(PB));
    let bw_blocks = cob * cib * kh * kw;
    Ok(Params {
        n: u("batch", n)?,
        ci: u("in_channels", ci)?,
        h: u("height", h)?,
        w: u("width", w)?,
        co: u("out_channels", co)?,
        kh: u("kernel height", kh)?,
        kw: u("kernel width", kw)?,
        sh: u("stride", cfg.stride.0)?,
        sw: u("stride", cfg.stride.1)?,
        pt: u("padding", pads.0)?,
        pl: u("padding", pads.1)?,
        oh: oh as u32,
        ow: ow as u32,
        cob: cob as u32,
        cib: cib as u32,
        owb: ow.div_ceil(PB) as u32,
        iwb: w.div_ceil(PB) as u32,
        splits: splits as u32,
        rps: rps as u32,
        nw: (co * ci * kh * kw) as u32,
        fwd_total: u("forward invocations", n * oh * ow.div_ceil(PB))?,
        bin_total: u("backward_input invocations", n * h * w.div_ceil(PB))?,
        bw_blocks: u("weight blocks", bw_blocks)?,
        bw_total: u("weight-gradient invocations", bw_blocks * splits)?,
    })
}

/// (splits, rows per split) for `rows` = N*OH batch rows of `ow` columns and `blocks`
/// weight-gradient invocations per split.
fn default_splits(rows: usize, ow: usize, blocks: usize) -> (usize, usize) {
    let by_parallelism = BW_TARGET_INVOCATIONS.div_ceil(blocks.max(1));
    let by_length = rows / BW_MIN_POSITIONS.div_ceil(ow.max(1));
    let splits = by_parallelism.min(by_length).clamp(1, rows.max(1));
    let rps = rows.div_ceil(splits).max(1);
    (rows.div_ceil(rps).max(1), rps)
}

#[cfg(test)]
mod tests {
    use super::default_splits;

    #[test]
    fn weight_splits_cover_every_row_once() {
        for (rows, ow, blocks) in [(1, 1, 1), (14, 5, 9), (512 * 48, 48, 144), (512 * 48, 48, 9216), (7, 300, 1), (1000, 1, 3)] {
            let (s, rps) = default_splits(rows, ow, blocks);
            assert!(s >= 1 && rps >= 1, "{rows} {ow} {blocks}");
            assert!(s * rps >= rows && (s - 1) * rps < rows, "{rows} {ow} {blocks}: {s} x {rps}");
        }
        // VGG first layer, batch 512: many splits; 128->128: a few.
        assert!(default_splits(512 * 48, 48, 144).0 > 100);
        assert!(default_splits(512 * 48, 48, 9216).0 >= 4);
    }
}
