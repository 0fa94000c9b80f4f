//! The subgroup-broadcast 3x3 kernels (shaders/conv2d_subgroup.wgsl) for 'same' stride-1
//! convolutions whose width is a multiple of 4: the fastest kernels on lavapipe (where a
//! per-lane load costs ~8 FMAs and a subgroup broadcast one) and a register-blocked
//! candidate on real GPUs. Used by `Conv2d` when `applicable` holds and the adapter has
//! subgroups of >= 8 lanes.
//!
//! The plan of each pass holds its uniform and, for forward / backward_input, a tensor the
//! weights are repacked into as [ceil(CD / 8)][CS][18 vec4] (conv2d_pack_weights of
//! conv2d.wgsl; 147 KB for 64 -> 64) by a dispatch recorded ahead of the main one, so the
//! packed copy always matches `w`; for backward_weight, the column split and its partials.

use super::{pack_weights, ConvPass, Conv2d, PackParams, WG};
use crate::gpu::shaders::CONV2D_SUBGROUP;
use crate::gpu::{Dispatch, Gpu, Tensor};
use crate::nn::{accumulate_constant, u32_of};
use crate::{ensure, Result};
use std::sync::atomic::{AtomicU32, Ordering};

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

/// The activation applied by `Conv2d::forward_act_dispatches` before the store.
#[derive(Debug, Clone, Copy)]
pub enum Epilogue<'a> {
    Relu,
    LeakyRelu(f32),
    /// One slope per output channel: [CO].
    PRelu(&'a Tensor),
    /// One slope per element of a sample: [CO, H, W].
    PReluPerElement(&'a Tensor),
}

/// One pass: its uniform; forward / backward_input the packed weights; backward_weight
/// its partial sums when split.
pub struct Plan {
    uniform: wgpu::Buffer,
    /// Forward / backward_input: the packed weights, the pack kernel's uniform, and the
    /// floats it writes.
    pack: Option<(Tensor, wgpu::Buffer, usize)>,
    /// Backward_weight: column splits, and the [splits, CO*CI*9] partials when > 1.
    splits: u32,
    scratch: Option<Tensor>,
    /// The LeakyReLU slope the forward uniform holds (f32 bits; u32::MAX until a
    /// LeakyReLU epilogue is recorded): one per layer, as recordings share the uniform.
    slope: AtomicU32,
}

impl Plan {
    /// The plan of `pass` (`unsupported` must be None); backward_weight with `splits`
    /// column splits (None: enough workgroups for this adapter's kind).
    pub(super) fn new(gpu: &Gpu, conv: &Conv2d, pass: ConvPass, splits: Option<usize>) -> Result<Plan> {
        let name = &conv.name;
        let (ci, co) = (conv.cfg.in_channels, conv.cfg.out_channels);
        let p = pass.name();
        let (pack, p_uniform, splits, scratch) = match pass {
            ConvPass::Forward | ConvPass::BackwardInput => {
                let flip = pass == ConvPass::BackwardInput;
                let (nd, ns) = if flip { (ci, co) } else { (co, ci) };
                let stride = ns * 72;
                let total = nd.div_ceil(8) * stride;
                let packed = gpu.tensor(&format!("{name} {p} packed weights"), &[total])?;
                let pp = PackParams { nd: nd as u32, ns: ns as u32, ci: ci as u32, flip: flip as u32, stride: stride as u32, total: u32_of(name, "packed weights", total)?, _pad: [0; 2] };
                let uni = gpu.uniform(&format!("{name} {p} pack params"), &pp);
                (Some((packed, uni, total)), sg_params(conv, ns, nd, 1)?, 1, None)
            }
            ConvPass::BackwardWeight => {
                let blocks = co.div_ceil(WG as usize) * ci.div_ceil(CIB);
                let want = if gpu.info().device_type == wgpu::DeviceType::Cpu { BW_WORKGROUPS_CPU } else { BW_WORKGROUPS_GPU };
                let sp = sg_params(conv, ci, co, splits.unwrap_or(want.div_ceil(blocks)))?;
                let scratch = if sp.splits > 1 { Some(gpu.tensor(&format!("{name} weight-gradient partials (subgroup)"), &[sp.splits as usize, sp.nw as usize])?) } else { None };
                (None, sp, sp.splits, scratch)
            }
        };
        let uniform = gpu.uniform(&format!("{name} {p} subgroup params"), &p_uniform);
        Ok(Plan { uniform, pack, splits, scratch, slope: AtomicU32::new(u32::MAX) })
    }

    pub fn splits(&self) -> usize {
        self.splits as usize
    }

    /// The repack of `w` into the plan's packed weights, and the packed tensor.
    fn pack<'a>(&'a self, gpu: &Gpu, conv: &Conv2d, pass: &str, w: &Tensor) -> Result<(Dispatch, &'a Tensor)> {
        let Some((packed, uni, total)) = &self.pack else { crate::bail!("layer {}: the subgroup backward_weight plan cannot record {pass}", conv.name) };
        let d = pack_weights(gpu, &format!("{} conv2d_pack_weights ({pass}, subgroup)", conv.name), uni, packed, w, *total)?;
        Ok((d, packed))
    }
}

/// What the main 3x3 dispatch does after the sums: + bias, then an activation (`Act`), or
/// the BatchNorm statistics partials (`Stats`: [CD, G, 3], G = `stats_groups`).
enum Tail<'a> {
    Plain,
    Act(Epilogue<'a>),
    Stats(&'a Tensor),
}

/// The main 3x3 dispatch's grid [X, channel blocks, Z] for `cd` destination channels.
fn grid3x3(gpu: &Gpu, conv: &Conv2d, label: &str, cd: usize) -> Result<[u32; 3]> {
    let [n, _, h, wd] = conv.input_shape;
    // Invocations: row pairs x 4-column blocks (`total` of the uniform; output = input size).
    let total = n * h.div_ceil(2) * (wd / 4);
    let [x, z, _] = gpu.groups_1d(label, total as u64, WG)?;
    Ok([x, u32_of(&conv.name, "channel blocks", cd.div_ceil(8))?, z])
}

/// Statistics partials per channel the forward writes with `forward_stats` (G): one slot
/// per possible subgroup (SLOTS = WG / MIN_LANES in the shader) of each workgroup.
pub fn stats_groups(gpu: &Gpu, conv: &Conv2d) -> Result<usize> {
    let [x, _, z] = grid3x3(gpu, conv, &format!("{} conv2d_sg_3x3 (forward+statistics)", conv.name), conv.cfg.out_channels)?;
    Ok(x as usize * z as usize * (WG / MIN_LANES) as usize)
}

/// The main 3x3 dispatch from `src` (cs channels) to `dst` (cd channels), with `tail`.
#[allow(clippy::too_many_arguments)]
fn run3x3(gpu: &Gpu, conv: &Conv2d, plan: &Plan, pass: &str, src: &Tensor, packed: &Tensor, bias: Option<&Tensor>, dst: &Tensor, cd: usize, tail: Tail) -> Result<Dispatch> {
    let [_, _, h, wd] = conv.input_shape;
    let act = match tail {
        Tail::Act(e) => Some(e),
        _ => None,
    };
    let (code, slopes) = match act {
        None => (0, None),
        Some(Epilogue::Relu) => (1, None),
        Some(Epilogue::LeakyRelu(a)) => {
            set_slope(gpu, conv, plan, a)?;
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
    let label = format!("{} conv2d_sg_3x3 ({pass})", conv.name);
    let groups = grid3x3(gpu, conv, &label, cd)?;
    // Unused bias / slope bindings get stand-ins (the packed weights: >= 16 bytes, read-only).
    let (bias_t, a4, a1) = (bias.unwrap_or(packed), if code == 4 { slopes.unwrap_or(packed) } else { packed }, if code == 3 { slopes.unwrap_or(packed) } else { packed });
    let mut b = vec![
        (0, plan.uniform.as_entire_binding()),
        (1, src.binding()),
        (2, src.binding()),
        (3, packed.binding()),
        (5, dst.binding()),
        (4, bias_t.binding()),
        (9, a4.binding()),
        (10, a1.binding()),
    ];
    // Without the statistics epilogue, dst stands in for the partials (never written).
    let partials = match tail {
        Tail::Stats(p) => {
            let g = groups[0] as usize * groups[2] as usize * (WG / MIN_LANES) as usize;
            p.expect_shape(&conv.name, "BatchNorm statistics partials", &[cd, g, 3])?;
            p
        }
        _ => dst,
    };
    b.push((11, partials.binding()));
    let stats = matches!(tail, Tail::Stats(_));
    let constants = [("HAS_BIAS", bias.is_some() as u8 as f64), ("ACT", code as f64), ("STATS", stats as u8 as f64)];
    Dispatch::new(gpu, &label, &CONV2D_SUBGROUP, "conv2d_sg_3x3", &constants, &b, groups)
}

/// Write the LeakyReLU slope `a` into the forward uniform (read only by the ACT = 2
/// epilogue); an error when the layer already recorded another slope.
fn set_slope(gpu: &Gpu, conv: &Conv2d, plan: &Plan, a: f32) -> Result<()> {
    match plan.slope.compare_exchange(u32::MAX, a.to_bits(), Ordering::Relaxed, Ordering::Relaxed) {
        Ok(_) => {
            gpu.queue.write_buffer(&plan.uniform, std::mem::offset_of!(SgParams, slope) as u64, bytemuck::bytes_of(&a));
            Ok(())
        }
        Err(old) => {
            ensure!(old == a.to_bits(), "layer {}: LeakyReLU epilogue with slope {a} recorded after one with slope {}; one layer holds one slope", conv.name, f32::from_bits(old));
            Ok(())
        }
    }
}

/// y = conv(x, w) (+ b): the weight repack and one dispatch. Operands checked by the caller.
pub(super) fn forward(gpu: &Gpu, conv: &Conv2d, plan: &Plan, x: &Tensor, w: &Tensor, b: Option<&Tensor>, y: &Tensor) -> Result<Vec<Dispatch>> {
    let (pk, packed) = plan.pack(gpu, conv, "forward", w)?;
    let main = run3x3(gpu, conv, plan, "forward", x, packed, b, y, conv.cfg.out_channels, Tail::Plain)?;
    Ok(vec![pk, main])
}

/// y = conv(x, w) (+ b), and per channel and workgroup the partial statistics of y
/// (`partials` [CO, G, 3], G = `stats_groups`) for the BatchNorm after the conv
/// (BatchNorm::stats_from_partials). Operands checked by the caller.
#[allow(clippy::too_many_arguments)]
pub(super) fn forward_stats(gpu: &Gpu, conv: &Conv2d, plan: &Plan, x: &Tensor, w: &Tensor, b: Option<&Tensor>, y: &Tensor, partials: &Tensor) -> Result<Vec<Dispatch>> {
    let (pk, packed) = plan.pack(gpu, conv, "forward", w)?;
    let main = run3x3(gpu, conv, plan, "forward+statistics", x, packed, b, y, conv.cfg.out_channels, Tail::Stats(partials))?;
    Ok(vec![pk, main])
}

/// y = act(conv(x, w) + b) in one pass (inference: a conv with its BatchNorm folded in and
/// the activation after it). Operands checked by the caller.
#[allow(clippy::too_many_arguments)]
pub(super) fn forward_act(gpu: &Gpu, conv: &Conv2d, plan: &Plan, x: &Tensor, w: &Tensor, b: &Tensor, y: &Tensor, act: Epilogue) -> Result<Vec<Dispatch>> {
    let (pk, packed) = plan.pack(gpu, conv, "forward", w)?;
    let main = run3x3(gpu, conv, plan, "forward+activation", x, packed, Some(b), y, conv.cfg.out_channels, Tail::Act(act))?;
    Ok(vec![pk, main])
}

/// dx = conv_transpose(dy, w): the forward kernel on the rotated, transposed weights.
pub(super) fn backward_input(gpu: &Gpu, conv: &Conv2d, plan: &Plan, dx: &Tensor, dy: &Tensor, w: &Tensor) -> Result<Vec<Dispatch>> {
    let (pk, packed) = plan.pack(gpu, conv, "backward_input", w)?;
    let main = run3x3(gpu, conv, plan, "backward_input", dy, packed, None, dx, conv.cfg.in_channels, Tail::Plain)?;
    Ok(vec![pk, main])
}

/// dw (= or +=) sum over n, oy, ox of dy * x: one dispatch, or partial sums over column
/// splits into the plan's scratch and a reduce.
#[allow(clippy::too_many_arguments)]
pub(super) fn backward_weight(gpu: &Gpu, conv: &Conv2d, plan: &Plan, dw: &Tensor, dy: &Tensor, x: &Tensor, accumulate: bool) -> Result<Vec<Dispatch>> {
    let (ci, co) = (conv.cfg.in_channels, conv.cfg.out_channels);
    let name = &conv.name;
    let label = format!("{name} conv2d_sg_weight");
    let groups = [u32_of(name, "output channel groups", co.div_ceil(WG as usize))?, u32_of(name, "input channel blocks", ci.div_ceil(CIB))?, plan.splits];
    let run = |out: &Tensor, acc: bool| {
        let b = [(0, plan.uniform.as_entire_binding()), (1, x.binding()), (2, x.binding()), (6, dy.binding()), (7, out.binding())];
        Dispatch::new(gpu, &label, &CONV2D_SUBGROUP, "conv2d_sg_weight", &[accumulate_constant(acc)], &b, groups)
    };
    let Some(scratch) = &plan.scratch else { return Ok(vec![run(dw, accumulate)?]) };
    let partial = run(scratch, false)?;
    let label = format!("{name} conv2d_sg_weight_reduce");
    let rg = gpu.groups_1d(&label, dw.len() as u64, WG)?;
    let b = [(0, plan.uniform.as_entire_binding()), (7, dw.binding()), (8, scratch.binding())];
    let reduce = Dispatch::new(gpu, &label, &CONV2D_SUBGROUP, "conv2d_sg_weight_reduce", &[accumulate_constant(accumulate)], &b, rg)?;
    Ok(vec![partial, reduce])
}
