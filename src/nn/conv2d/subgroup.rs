//! The subgroup-broadcast 3x3 kernels (shaders/conv2d_subgroup.wgsl) for 'same' stride-1
//! convolutions whose width is a multiple of 4: the fastest kernels on lavapipe (where a
//! per-lane load costs ~8 FMAs and a subgroup broadcast one) and a register-blocked
//! candidate on real GPUs. Used by `Conv2d` when `applicable` holds and the adapter has
//! subgroups of >= 8 lanes.
//!
//! Each pass records its own small uniform and, for forward / backward_input, a repack of
//! the weights into [ceil(CD / 8)][CS][18 vec4] (conv2d_pack_weights of conv2d.wgsl; 147 KB
//! for 64 -> 64) ahead of the main dispatch, so the packed copy always matches `w`.

use super::{Conv2d, PackParams, WG};
use crate::gpu::shaders::{CONV2D, CONV2D_SUBGROUP};
use crate::gpu::{Dispatch, Gpu, Tensor};
use crate::nn::{accumulate_constant, u32_of};
use crate::{ensure, Result};

/// Mirror of `Sg` in shaders/conv2d_subgroup.wgsl.
#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct SgParams {
    cs: u32,
    cd: u32,
    h: u32,
    w: u32,
    owb: u32,
    hp: u32,
    total: u32,
    cols: u32,
    cps: u32,
    splits: u32,
    nw: u32,
    slope: f32,
}

/// Weight-gradient workgroups wanted before splitting the columns further: enough for a
/// CPU driver (lavapipe runs one workgroup per thread at a time), and for a GPU with 100+
/// compute units (the autotuner then times this kernel against the tiled one).
const BW_WORKGROUPS_CPU: usize = 32;
const BW_WORKGROUPS_GPU: usize = 512;

/// Input channels per weight-gradient workgroup (grid y).
const CIB: usize = 8;

/// Subgroup lanes the kernels broadcast from (lanes 0..8).
pub const MIN_LANES: u32 = 8;

/// Why `conv` cannot use these kernels on `gpu`, or None when it can.
pub fn unsupported(gpu: &Gpu, conv: &Conv2d) -> Option<String> {
    let [_, _, h, w] = conv.input_shape;
    let [_, _, oh, ow] = conv.output_shape;
    match gpu.subgroup_min_size() {
        None => return Some("the adapter has no subgroup operations".into()),
        Some(m) if m < MIN_LANES => return Some(format!("the adapter's subgroups may have {m} lanes, fewer than {MIN_LANES}")),
        _ => {}
    }
    if conv.cfg.kernel != (3, 3) || conv.cfg.stride != (1, 1) {
        return Some(format!("kernel {:?} stride {:?} is not 3x3 stride 1", conv.cfg.kernel, conv.cfg.stride));
    }
    if conv.padding() != (1, 1) || (oh, ow) != (h, w) {
        return Some("padding is not 'same'".into());
    }
    if w % 4 != 0 {
        return Some(format!("width {w} is not a multiple of 4"));
    }
    None
}

pub fn applicable(gpu: &Gpu, conv: &Conv2d) -> bool {
    unsupported(gpu, conv).is_none()
}

/// The uniform of a pass from `cs` source to `cd` destination channels.
fn sg_params(conv: &Conv2d, cs: usize, cd: usize, splits: usize) -> Result<SgParams> {
    let name = &conv.name;
    let [n, _, h, w] = conv.input_shape;
    let owb = w / 4;
    let cols = n * owb;
    let splits = splits.clamp(1, cols);
    Ok(SgParams {
        cs: cs as u32,
        cd: cd as u32,
        h: h as u32,
        w: w as u32,
        owb: owb as u32,
        hp: h.div_ceil(2) as u32,
        total: u32_of(name, "subgroup conv invocations", n * h.div_ceil(2) * owb)?,
        cols: cols as u32,
        cps: cols.div_ceil(splits) as u32,
        splits: cols.div_ceil(cols.div_ceil(splits)) as u32,
        nw: u32_of(name, "weight elements", cs * cd * 9)?,
        slope: 0.0,
    })
}

/// Repack `w` for `nd` destination / `ns` source channels (flip: backward_input) into a new
/// tensor, and the dispatch that does it.
fn pack(gpu: &Gpu, conv: &Conv2d, pass: &str, w: &Tensor, nd: usize, ns: usize, flip: bool) -> Result<(Tensor, Dispatch)> {
    let name = &conv.name;
    let stride = ns * 72;
    let total = nd.div_ceil(8) * stride;
    let packed = gpu.tensor(&format!("{name} {pass} packed weights"), &[total])?;
    let pp = PackParams { nd: nd as u32, ns: ns as u32, ci: conv.cfg.in_channels as u32, flip: flip as u32, stride: stride as u32, total: u32_of(name, "packed weights", total)?, _pad: [0; 2] };
    let uni = gpu.uniform(&format!("{name} {pass} pack params"), &pp);
    let label = format!("{name} conv2d_pack_weights ({pass}, subgroup)");
    let groups = gpu.groups_1d(&label, total as u64, WG)?;
    let d = Dispatch::new(gpu, &label, &CONV2D, "conv2d_pack_weights", &[], &[(16, uni.as_entire_binding()), (17, packed.binding()), (2, w.binding())], groups)?;
    Ok((packed, d))
}

/// The main 3x3 dispatch from `src` (cs channels) to `dst` (cd channels), with the bias and
/// activation epilogue (`act`: None, or the activation and its code / slope tensor).
#[allow(clippy::too_many_arguments)]
fn run3x3(gpu: &Gpu, conv: &Conv2d, pass: &str, src: &Tensor, packed: &Tensor, bias: Option<&Tensor>, dst: &Tensor, cs: usize, cd: usize, act: Option<Epilogue>) -> Result<Dispatch> {
    let [_, _, h, wd] = conv.output_shape;
    let mut p = sg_params(conv, cs, cd, 1)?;
    let (code, slopes) = match act {
        None => (0, None),
        Some(Epilogue::Relu) => (1, None),
        Some(Epilogue::LeakyRelu(a)) => {
            p.slope = a;
            (2, None)
        }
        Some(Epilogue::PRelu(a)) => {
            a.expect_shape(&conv.name, "activation slopes", &[cd])?;
            (3, Some(a))
        }
        Some(Epilogue::PReluPerElement(a)) => {
            a.expect_len(&conv.name, "activation slopes", cd * h * wd)?;
            (4, Some(a))
        }
    };
    let uni = gpu.uniform(&format!("{} {pass} subgroup params", conv.name), &p);
    let label = format!("{} conv2d_sg_3x3 ({pass})", conv.name);
    let [x, z, _] = gpu.groups_1d(&label, p.total as u64, WG)?;
    let groups = [x, u32_of(&conv.name, "channel blocks", cd.div_ceil(8))?, z];
    // Unused bias / slope bindings get stand-ins (the packed weights: >= 16 bytes, read-only).
    let (bias_t, a4, a1) = (bias.unwrap_or(packed), if code == 4 { slopes.unwrap_or(packed) } else { packed }, if code == 3 { slopes.unwrap_or(packed) } else { packed });
    let b = [
        (0, uni.as_entire_binding()),
        (1, src.binding()),
        (2, src.binding()),
        (3, packed.binding()),
        (5, dst.binding()),
        (4, bias_t.binding()),
        (9, a4.binding()),
        (10, a1.binding()),
    ];
    let constants = [("HAS_BIAS", bias.is_some() as u8 as f64), ("ACT", code as f64)];
    Dispatch::new(gpu, &label, &CONV2D_SUBGROUP, "conv2d_sg_3x3", &constants, &b, groups)
}

fn check(gpu: &Gpu, conv: &Conv2d) -> Result<()> {
    let why = unsupported(gpu, conv);
    ensure!(why.is_none(), "layer {}: the subgroup conv kernels do not apply: {}", conv.name, why.unwrap_or_default());
    Ok(())
}

/// y = conv(x, w) (+ b): a weight repack and one dispatch, and the packed weights they bind
/// (keep them alive with the dispatches). Overwrites y. Shapes are checked
/// by the caller (`Conv2d::forward_dispatches`).
pub fn forward(gpu: &Gpu, conv: &Conv2d, x: &Tensor, w: &Tensor, b: Option<&Tensor>, y: &Tensor) -> Result<(Vec<Dispatch>, Tensor)> {
    check(gpu, conv)?;
    let (ci, co) = (conv.cfg.in_channels, conv.cfg.out_channels);
    let (packed, pk) = pack(gpu, conv, "forward", w, co, ci, false)?;
    let main = run3x3(gpu, conv, "forward", x, &packed, b, y, ci, co, None)?;
    Ok((vec![pk, main], packed))
}

/// The activation applied by `forward_act` before the store.
#[derive(Debug, Clone, Copy)]
pub enum Epilogue<'a> {
    Relu,
    LeakyRelu(f32),
    /// One slope per output channel: [CO].
    PRelu(&'a Tensor),
    /// One slope per element of a sample: [CO, H, W].
    PReluPerElement(&'a Tensor),
}

/// y = act(conv(x, w) + b) in one pass (inference: a conv with its BatchNorm folded in and
/// the activation after it). Overwrites y; returns the dispatches and the packed weights.
pub fn forward_act(gpu: &Gpu, conv: &Conv2d, x: &Tensor, w: &Tensor, b: &Tensor, y: &Tensor, act: Epilogue) -> Result<(Vec<Dispatch>, Tensor)> {
    check(gpu, conv)?;
    let (ci, co) = (conv.cfg.in_channels, conv.cfg.out_channels);
    b.expect_shape(&conv.name, "bias", &[co])?;
    let (packed, pk) = pack(gpu, conv, "forward", w, co, ci, false)?;
    let main = run3x3(gpu, conv, "forward+activation", x, &packed, Some(b), y, ci, co, Some(act))?;
    Ok((vec![pk, main], packed))
}

/// dx = conv_transpose(dy, w): the forward kernel on the rotated, transposed weights.
/// Overwrites dx.
pub fn backward_input(gpu: &Gpu, conv: &Conv2d, dx: &Tensor, dy: &Tensor, w: &Tensor) -> Result<(Vec<Dispatch>, Tensor)> {
    check(gpu, conv)?;
    let (ci, co) = (conv.cfg.in_channels, conv.cfg.out_channels);
    let (packed, pk) = pack(gpu, conv, "backward_input", w, ci, co, true)?;
    let main = run3x3(gpu, conv, "backward_input", dy, &packed, None, dx, co, ci, None)?;
    Ok((vec![pk, main], packed))
}

/// dw = sum over n, oy, ox of dy * x (overwrite, or add with `accumulate`): one dispatch,
/// or partial sums over column splits into `scratch` (allocated here) and a reduce.
pub fn backward_weight(gpu: &Gpu, conv: &Conv2d, dw: &Tensor, dy: &Tensor, x: &Tensor, accumulate: bool) -> Result<(Vec<Dispatch>, Option<Tensor>)> {
    check(gpu, conv)?;
    let (ci, co) = (conv.cfg.in_channels, conv.cfg.out_channels);
    let blocks = co.div_ceil(WG as usize) * ci.div_ceil(CIB);
    let want = if gpu.info().device_type == wgpu::DeviceType::Cpu { BW_WORKGROUPS_CPU } else { BW_WORKGROUPS_GPU };
    let p = sg_params(conv, ci, co, want.div_ceil(blocks))?;
    let name = &conv.name;
    let uni = gpu.uniform(&format!("{name} backward_weight subgroup params"), &p);
    let label = format!("{name} conv2d_sg_weight");
    let groups = [u32_of(name, "output channel groups", co.div_ceil(WG as usize))?, u32_of(name, "input channel blocks", ci.div_ceil(CIB))?, p.splits];
    let run = |out: &Tensor, acc: bool| {
        let b = [(0, uni.as_entire_binding()), (1, x.binding()), (2, x.binding()), (6, dy.binding()), (7, out.binding())];
        Dispatch::new(gpu, &label, &CONV2D_SUBGROUP, "conv2d_sg_weight", &[accumulate_constant(acc)], &b, groups)
    };
    if p.splits == 1 {
        return Ok((vec![run(dw, accumulate)?], None));
    }
    let scratch = gpu.tensor(&format!("{name} weight-gradient partials (subgroup)"), &[p.splits as usize, p.nw as usize])?;
    let partial = run(&scratch, false)?;
    let label = format!("{name} conv2d_sg_weight_reduce");
    let rg = gpu.groups_1d(&label, p.nw as u64, WG)?;
    let b = [(0, uni.as_entire_binding()), (7, dw.binding()), (8, scratch.binding())];
    let reduce = Dispatch::new(gpu, &label, &CONV2D_SUBGROUP, "conv2d_sg_weight_reduce", &[accumulate_constant(accumulate)], &b, rg)?;
    Ok((vec![partial, reduce], Some(scratch)))
}
