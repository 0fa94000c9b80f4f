//! The general kernels of shaders/conv2d.wgsl: any kernel, stride and padding, register
//! blocked: CB output channels x PB columns per forward / backward_input invocation, CB co
//! x PB ci weights per weight-gradient invocation. The weight gradient sums over the batch
//! rows (n, oy), optionally split into chunks whose partial sums a reduce adds up; the
//! split is this variant's plan. Also the layer uniform `Params` these kernels, the bias
//! gradient and the row-split reduce (shared with `fast`) read.

use super::{geom::GeomUniform, ConvGeom, ConvPass, Conv2d, CB, PB};
use crate::gpu::{shaders::CONV2D, Dispatch, Gpu, Tensor};
use crate::nn::{accumulate_constant, u32_of};
use crate::Result;

/// Mirror of `Params` in shaders/conv2d.wgsl.
#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
pub(super) struct Params {
    geom: GeomUniform,
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

/// Weight-gradient split heuristic: enough invocations to fill a GPU, but at least this many
/// output positions summed per invocation.
const BW_TARGET_INVOCATIONS: usize = 65536;
const BW_MIN_POSITIONS: usize = 256;

/// The uniform of a layer: shapes, resolved padding, weight-gradient row split `(splits,
/// rows per split)`, invocation counts.
pub(super) fn params(name: &str, g: &ConvGeom, split: (usize, usize)) -> Result<Params> {
    let (splits, rps) = split;
    let u = |what: &str, v: usize| u32_of(name, what, v);
    let (cob, cib) = (g.cout.div_ceil(CB), g.cin.div_ceil(PB));
    let bw_blocks = cob * cib * g.kh * g.kw;
    Ok(Params {
        geom: g.uniform(name)?,
        cob: cob as u32,
        cib: cib as u32,
        owb: g.ow.div_ceil(PB) as u32,
        iwb: g.w.div_ceil(PB) as u32,
        splits: splits as u32,
        rps: rps as u32,
        nw: g.w_len() as u32,
        fwd_total: u("forward invocations", g.n * g.oh * g.ow.div_ceil(PB))?,
        bin_total: u("backward_input invocations", g.n * g.h * g.w.div_ceil(PB))?,
        bw_blocks: u("weight blocks", bw_blocks)?,
        bw_total: u("weight-gradient invocations", bw_blocks * splits)?,
    })
}

/// (splits, rows per split) of `rows` batch rows: `want` chunks clamped to [1, rows], and
/// rounded so that no chunk is empty.
pub(super) fn split_rows(rows: usize, want: usize) -> (usize, usize) {
    let rps = rows.div_ceil(want.clamp(1, rows.max(1))).max(1);
    (rows.div_ceil(rps).max(1), rps)
}

/// The default split of the general weight gradient for `rows` = N*OH batch rows of `ow`
/// columns and `blocks` invocations per split.
fn default_splits(rows: usize, ow: usize, blocks: usize) -> (usize, usize) {
    let by_parallelism = BW_TARGET_INVOCATIONS.div_ceil(blocks.max(1));
    let by_length = rows / BW_MIN_POSITIONS.div_ceil(ow.max(1));
    split_rows(rows, by_parallelism.min(by_length))
}

/// Invocations per split of the general weight gradient.
fn weight_blocks(g: &ConvGeom) -> usize {
    g.cout.div_ceil(CB) * g.cin.div_ceil(PB) * g.kh * g.kw
}

/// A weight gradient summed over chunks of the batch rows: the layer uniform with this
/// split (the partial kernel and the reduce read it) and the partial sums.
pub(super) struct RowSplit {
    pub splits: usize,
    params: wgpu::Buffer,
    /// [splits, Cout*Cin*KH*KW].
    scratch: Tensor,
}

impl RowSplit {
    /// The buffers of `split`, or None when it is a single chunk (no partials, no reduce).
    pub(super) fn new(gpu: &Gpu, conv: &Conv2d, split: (usize, usize), what: &str) -> Result<Option<RowSplit>> {
        let splits = split.0;
        if splits <= 1 {
            return Ok(None);
        }
        let params = gpu.uniform(&format!("{} params ({what}, {splits} splits)", conv.name), &params(&conv.name, &conv.geom, split)?);
        let scratch = gpu.tensor(&format!("{} weight-gradient partials ({what})", conv.name), &[splits, conv.geom.w_len()])?;
        Ok(Some(RowSplit { splits, params, scratch }))
    }

    pub(super) fn scratch(&self) -> &Tensor {
        &self.scratch
    }

    /// dw = (dw if `accumulate`) + the sum of the partials.
    pub(super) fn reduce(&self, gpu: &Gpu, conv: &Conv2d, dw: &Tensor, accumulate: bool) -> Result<Dispatch> {
        let entry = "conv2d_backward_weight_reduce";
        let groups = conv.groups(gpu, entry, dw.len())?;
        dispatch(gpu, conv, &self.params, entry, &[accumulate_constant(accumulate)], &[(7, dw), (8, &self.scratch)], groups)
    }
}

/// One pass of the general kernels: nothing beyond the layer uniform, except a split
/// weight gradient.
#[derive(Default)]
pub struct Plan {
    split: Option<RowSplit>,
}

impl Plan {
    /// The plan of `pass`; backward_weight splits its rows into `splits` chunks (None: the
    /// default for this layer).
    pub(super) fn new(gpu: &Gpu, conv: &Conv2d, pass: ConvPass, splits: Option<usize>) -> Result<Plan> {
        if pass != ConvPass::BackwardWeight {
            return Ok(Plan::default());
        }
        let g = &conv.geom;
        let rows = g.n * g.oh;
        let split = match splits {
            Some(s) => split_rows(rows, s),
            None => default_splits(rows, g.ow, weight_blocks(g)),
        };
        Ok(Plan { split: RowSplit::new(gpu, conv, split, "general")? })
    }

    pub fn splits(&self) -> usize {
        self.split.as_ref().map_or(1, |s| s.splits)
    }
}

/// A dispatch of conv2d.wgsl's `entry` with the uniform `params` at binding 0.
fn dispatch(gpu: &Gpu, conv: &Conv2d, params: &wgpu::Buffer, entry: &str, constants: &[(&str, f64)], bindings: &[(u32, &Tensor)], groups: [u32; 3]) -> Result<Dispatch> {
    let label = format!("{} {entry}", conv.name);
    let mut b: Vec<(u32, wgpu::BindingResource)> = vec![(0, params.as_entire_binding())];
    b.extend(bindings.iter().map(|(i, t)| (*i, t.binding())));
    Dispatch::new(gpu, &label, &CONV2D, entry, constants, &b, groups)
}

/// y = conv(x, w) (+ b): one dispatch. Operands checked by the caller.
pub(super) fn forward(gpu: &Gpu, conv: &Conv2d, x: &Tensor, w: &Tensor, b: Option<&Tensor>, y: &Tensor) -> Result<Vec<Dispatch>> {
    let [n, co, oh, ow] = conv.output_shape;
    let groups = conv.channel_grid(gpu, "conv2d_forward", n * oh * ow.div_ceil(PB), co)?;
    let d = match b {
        Some(b) => dispatch(gpu, conv, &conv.params, "conv2d_forward_bias", &[], &[(1, x), (2, w), (3, b), (4, y)], groups)?,
        None => dispatch(gpu, conv, &conv.params, "conv2d_forward", &[], &[(1, x), (2, w), (4, y)], groups)?,
    };
    Ok(vec![d])
}

/// dx = conv_transpose(dy, w): one dispatch.
pub(super) fn backward_input(gpu: &Gpu, conv: &Conv2d, dx: &Tensor, dy: &Tensor, w: &Tensor) -> Result<Vec<Dispatch>> {
    let [n, ci, h, wd] = conv.input_shape;
    let groups = conv.channel_grid(gpu, "conv2d_backward_input", n * h * wd.div_ceil(PB), ci)?;
    Ok(vec![dispatch(gpu, conv, &conv.params, "conv2d_backward_input", &[], &[(5, dx), (6, dy), (2, w)], groups)?])
}

/// dw (= or +=) sum over n, oy, ox of dy * x: one dispatch, or the partials and a reduce.
#[allow(clippy::too_many_arguments)]
pub(super) fn backward_weight(gpu: &Gpu, conv: &Conv2d, plan: &Plan, dw: &Tensor, dy: &Tensor, x: &Tensor, accumulate: bool) -> Result<Vec<Dispatch>> {
    let entry = "conv2d_backward_weight";
    let groups = conv.groups(gpu, entry, weight_blocks(&conv.geom) * plan.splits())?;
    let Some(s) = &plan.split else {
        return Ok(vec![dispatch(gpu, conv, &conv.params, entry, &[accumulate_constant(accumulate)], &[(7, dw), (6, dy), (1, x)], groups)?]);
    };
    let partial = dispatch(gpu, conv, &s.params, entry, &[accumulate_constant(false)], &[(7, &s.scratch), (6, dy), (1, x)], groups)?;
    Ok(vec![partial, s.reduce(gpu, conv, dw, accumulate)?])
}

/// db (= or +=) sum over n, oy, ox of dy: one workgroup per output channel.
pub(super) fn backward_bias(gpu: &Gpu, conv: &Conv2d, db: &Tensor, dy: &Tensor, accumulate: bool) -> Result<Dispatch> {
    let groups = [u32_of(&conv.name, "out_channels", conv.cfg.out_channels)?, 1, 1];
    dispatch(gpu, conv, &conv.params, "conv2d_backward_bias", &[accumulate_constant(accumulate)], &[(9, db), (6, dy)], groups)
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
