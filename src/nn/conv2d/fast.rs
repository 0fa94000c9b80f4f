//! The 3x3 stride-1 kernels of shaders/conv2d.wgsl with storage operands: conv2d_3x3s1
//! (forward, and backward_input on the rotated weights: FLIP) reads rows as vec4s, 8 output
//! channels x 4 columns per invocation; conv2d_3x3s1_weight gives each lane one output
//! channel and 4 input channels, summing over a split of the batch rows (reduced like the
//! general weight gradient). Rows must be vec4-aligned: see `unsupported`.
//!
//! `FastParams` (the kernels' uniform) is shared with `uniform`, whose kernels read the
//! same fields.

use super::general::{split_rows, RowSplit};
use super::{ConvPass, Conv2d, PB};
use crate::gpu::{shaders::CONV2D, Dispatch, Gpu, Tensor};
use crate::nn::{accumulate_constant, u32_of};
use crate::Result;

/// Mirror of `Fast` in shaders/conv2d.wgsl.
#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable, Default)]
pub(super) struct FastParams {
    pub c_in: u32,
    pub h_in: u32,
    pub w_in: u32,
    pub c_out: u32,
    pub h_out: u32,
    pub w_out: u32,
    pub pt: u32,
    pub s_out: u32,
    pub s_in: u32,
    pub owb: u32,
    pub total: u32,
    pub rows: u32,
    pub rps: u32,
    pub nw: u32,
    pub block0: u32,
    pub _pad: u32,
}

/// Weight-gradient split: workgroups wanted in all, fewest rows per split.
const BW_WORKGROUPS: usize = 128;
const BW_MIN_ROWS: usize = 4;

/// Why these kernels cannot run `pass` of `conv`, or None: 3x3 stride 1, left padding <= 2,
/// and vec4 rows: the source width a multiple of 4 and every 4-column block of the
/// destination inside the source row.
pub fn unsupported(conv: &Conv2d, pass: ConvPass) -> Option<String> {
    let g = &conv.geom;
    if (g.kh, g.kw) != (3, 3) || (g.stride_h, g.stride_w) != (1, 1) {
        return Some(format!("kernel {:?} stride {:?} is not 3x3 stride 1", conv.cfg.kernel, conv.cfg.stride));
    }
    if g.pad_left > 2 {
        return Some(format!("left padding {} is over 2", g.pad_left));
    }
    let (src, dst) = match pass {
        ConvPass::Forward | ConvPass::BackwardWeight => (g.w, g.ow),
        ConvPass::BackwardInput => (g.ow, g.w),
    };
    if pass == ConvPass::BackwardInput && g.pad_top > 2 {
        return Some(format!("top padding {} is over 2", g.pad_top));
    }
    if src % 4 != 0 {
        return Some(format!("source width {src} is not a multiple of 4"));
    }
    if pass == ConvPass::BackwardWeight && dst % 4 != 0 {
        return Some(format!("output width {dst} is not a multiple of 4"));
    }
    if dst.div_ceil(4) * 4 > src {
        return Some(format!("destination width {dst} (in blocks of 4) is wider than the source width {src}"));
    }
    None
}

/// The uniform of `pass` (backward_weight: the forward's geometry; `split` its row split).
pub(super) fn params(conv: &Conv2d, pass: ConvPass, split: (usize, usize)) -> Result<FastParams> {
    let g = &conv.geom;
    let u = |what: &str, v: usize| u32_of(&conv.name, what, v);
    let fwd = FastParams {
        c_in: g.cin as u32,
        h_in: g.h as u32,
        w_in: g.w as u32,
        c_out: g.cout as u32,
        h_out: g.oh as u32,
        w_out: g.ow as u32,
        pt: g.pad_top as u32,
        s_out: u("weight stride", g.cin * 9)?,
        s_in: 9,
        owb: g.ow.div_ceil(4) as u32,
        total: u("forward invocations", g.n * g.oh * g.ow.div_ceil(4))?,
        rows: (g.n * g.oh) as u32,
        rps: split.1 as u32,
        nw: g.w_len() as u32,
        block0: 0,
        _pad: 0,
    };
    Ok(match pass {
        ConvPass::Forward | ConvPass::BackwardWeight => fwd,
        // dy -> dx: source and destination swap, the padding mirrors.
        ConvPass::BackwardInput => FastParams {
            c_in: g.cout as u32,
            h_in: g.oh as u32,
            w_in: g.ow as u32,
            c_out: g.cin as u32,
            h_out: g.h as u32,
            w_out: g.w as u32,
            pt: 2usize.saturating_sub(g.pad_top) as u32,
            s_out: 9,
            s_in: u("weight stride", g.cin * 9)?,
            owb: g.w.div_ceil(4) as u32,
            total: u("backward_input invocations", g.n * g.h * g.w.div_ceil(4))?,
            ..fwd
        },
    })
}

/// The PADL override of `pass`: the left padding (backward_input: 2 - it).
pub(super) fn padl(conv: &Conv2d, pass: ConvPass) -> u32 {
    match pass {
        ConvPass::BackwardInput => (2 - conv.geom.pad_left) as u32,
        _ => conv.geom.pad_left as u32,
    }
}

/// Lanes (output channels) per weight-gradient workgroup (the WGW override).
fn weight_lanes(co: usize) -> u32 {
    (if co >= 64 { 64 } else { co.div_ceil(8) * 8 }) as u32
}

/// The default row split of the weight gradient: about BW_WORKGROUPS workgroups in all, at
/// least BW_MIN_ROWS rows per split.
pub(super) fn weight_split(conv: &Conv2d) -> (usize, usize) {
    let g = &conv.geom;
    let rows = g.n * g.oh;
    let blocks = g.cout.div_ceil(weight_lanes(g.cout) as usize) * g.cin.div_ceil(4);
    split_rows(rows, BW_WORKGROUPS.div_ceil(blocks.max(1)).min(rows / BW_MIN_ROWS))
}

/// One pass: its uniform and PADL; backward_weight also its row split (the uniform holds
/// the rows per split).
pub struct Plan {
    uniform: wgpu::Buffer,
    padl: u32,
    split: Option<RowSplit>,
}

impl Plan {
    /// The plan of `pass`; backward_weight splits its rows into `splits` chunks (None:
    /// `weight_split`).
    pub(super) fn new(gpu: &Gpu, conv: &Conv2d, pass: ConvPass, splits: Option<usize>) -> Result<Plan> {
        let rows = conv.geom.n * conv.geom.oh;
        let split = match (pass, splits) {
            (ConvPass::BackwardWeight, Some(s)) => split_rows(rows, s),
            (ConvPass::BackwardWeight, None) => weight_split(conv),
            _ => (1, rows),
        };
        let uniform = gpu.uniform(&format!("{} 3x3s1 {} params", conv.name, pass.name()), &params(conv, pass, split)?);
        let split_buffers = if pass == ConvPass::BackwardWeight { RowSplit::new(gpu, conv, split, "fast")? } else { None };
        Ok(Plan { uniform, padl: padl(conv, pass), split: split_buffers })
    }

    pub fn splits(&self) -> usize {
        self.split.as_ref().map_or(1, |s| s.splits)
    }
}

/// y = conv(x, w) (+ b): one dispatch. Operands checked by the caller.
pub(super) fn forward(gpu: &Gpu, conv: &Conv2d, plan: &Plan, x: &Tensor, w: &Tensor, b: Option<&Tensor>, y: &Tensor) -> Result<Vec<Dispatch>> {
    let [n, co, oh, ow] = conv.output_shape;
    let groups = conv.channel_grid(gpu, "conv2d_forward", n * oh * ow.div_ceil(PB), co)?;
    let c = [("PADL", plan.padl as f64), ("FLIP", 0.0)];
    let mut bind = vec![(10, plan.uniform.as_entire_binding()), (11, x.binding()), (12, x.binding()), (2, w.binding()), (13, y.binding())];
    let entry = match b {
        Some(b) => {
            bind.push((3, b.binding()));
            "conv2d_3x3s1_bias"
        }
        None => "conv2d_3x3s1",
    };
    Ok(vec![Dispatch::new(gpu, &format!("{} {entry}", conv.name), &CONV2D, entry, &c, &bind, groups)?])
}

/// dx = conv_transpose(dy, w): conv2d_3x3s1 from dy on the rotated weights.
pub(super) fn backward_input(gpu: &Gpu, conv: &Conv2d, plan: &Plan, dx: &Tensor, dy: &Tensor, w: &Tensor) -> Result<Vec<Dispatch>> {
    let [n, ci, h, wd] = conv.input_shape;
    let groups = conv.channel_grid(gpu, "conv2d_backward_input", n * h * wd.div_ceil(PB), ci)?;
    let c = [("PADL", plan.padl as f64), ("FLIP", 1.0)];
    let b = [(10, plan.uniform.as_entire_binding()), (11, dy.binding()), (12, dy.binding()), (2, w.binding()), (13, dx.binding())];
    Ok(vec![Dispatch::new(gpu, &format!("{} conv2d_3x3s1 (backward_input)", conv.name), &CONV2D, "conv2d_3x3s1", &c, &b, groups)?])
}

/// dw (= or +=) sum over n, oy, ox of dy * x: one dispatch, or the partials and a reduce.
#[allow(clippy::too_many_arguments)]
pub(super) fn backward_weight(gpu: &Gpu, conv: &Conv2d, plan: &Plan, dw: &Tensor, dy: &Tensor, x: &Tensor, accumulate: bool) -> Result<Vec<Dispatch>> {
    let (ci, co) = (conv.cfg.in_channels, conv.cfg.out_channels);
    let wgw = weight_lanes(co);
    let name = &conv.name;
    let groups = [u32_of(name, "channel groups", co.div_ceil(wgw as usize))?, u32_of(name, "channel blocks", ci.div_ceil(4))?, u32_of(name, "splits", plan.splits())?];
    let label = format!("{name} conv2d_3x3s1_weight");
    let run = |out: &Tensor, acc: bool| {
        let c = [("PADL", plan.padl as f64), ("WGW", wgw as f64), accumulate_constant(acc)];
        let b = [(10, plan.uniform.as_entire_binding()), (11, x.binding()), (12, x.binding()), (14, dy.binding()), (7, out.binding())];
        Dispatch::new(gpu, &label, &CONV2D, "conv2d_3x3s1_weight", &c, &b, groups)
    };
    let Some(s) = &plan.split else { return Ok(vec![run(dw, accumulate)?]) };
    Ok(vec![run(s.scratch(), false)?, s.reduce(gpu, conv, dw, accumulate)?])
}
