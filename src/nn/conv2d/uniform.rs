//! The 3x3 stride-1 kernels of shaders/conv2d.wgsl with one operand read through 64 KiB
//! uniform windows, where `fast` applies and the adapter binds 64 KiB uniforms. A uniform
//! read at a workgroup-uniform offset is one scalar load and a broadcast on lavapipe, where
//! storage reads are per-lane loops.
//!
//! - forward / backward_input: conv2d_pack_weights repacks w per block of 8 destination
//!   channels ([source channel][tap][8 channels], 18 vec4 per source channel, rotated for
//!   backward_input), then one conv2d_3x3s1_u dispatch per chunk of whole blocks bound as
//!   one window.
//! - backward_weight: conv2d_pack_dy repacks dy into windows of (sample, channel group, row
//!   block), then one conv2d_3x3s1_weight_u dispatch per window, each adding its terms
//!   (the first of a channel group overwrites, unless accumulating).
//!
//! The packed operand is a counted STORAGE | UNIFORM tensor of the plan, repacked by every
//! recorded pass ahead of its use, so it always matches w / dy.

use super::fast::{self, FastParams};
use super::{pack_weights, ConvPass, Conv2d, PackParams, WG};
use crate::gpu::{shaders::CONV2D, Dispatch, Gpu, Tensor};
use crate::nn::{accumulate_constant, u32_of};
use crate::{bail, Result};

/// Bytes of the `wu` uniform array of shaders/conv2d.wgsl (4096 vec4): one window.
const UBO_BYTES: u64 = 65536;
/// Floats per window.
const WIN: usize = (UBO_BYTES / 4) as usize;

/// Mirror of `DyPack` in shaders/conv2d.wgsl.
#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct DyPackParams {
    co: u32,
    oh: u32,
    ow: u32,
    rh: u32,
    nrb: u32,
    total: u32,
    cg: u32,
    ncg: u32,
}

/// Mirror of `Win` in shaders/conv2d.wgsl.
#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct WinParams {
    n: u32,
    oy0: u32,
    rows: u32,
    first: u32,
    rh: u32,
    co0: u32,
    _pad: [u32; 2],
}

/// Sizes of the packed weights of forward / backward_input (`nd` destination, `ns` source
/// channels).
struct WeightLayout {
    nd: usize,
    ns: usize,
    /// vec4s per block of 8 destination channels (padded to the uniform offset alignment).
    stride_v4: usize,
    /// Blocks per window.
    per_chunk: usize,
    blocks: usize,
    /// Floats the pack kernel writes (the tensor has one window more, so that the last
    /// window binding stays inside it).
    total: usize,
}

/// Sizes of the packed dy of backward_weight.
struct DyLayout {
    /// Output channels per window (a multiple of 4), channel groups, row blocks per
    /// sample, rows per block.
    cg: usize,
    ncg: usize,
    nrb: usize,
    rh: usize,
    /// Floats of the packed dy (one window per sample, channel group and row block).
    total: usize,
}

/// The nd / ns channels of `pass` (forward: CO from CI; backward_input: CI from CO).
fn channels(conv: &Conv2d, pass: ConvPass) -> (usize, usize) {
    let (ci, co) = (conv.cfg.in_channels, conv.cfg.out_channels);
    if pass == ConvPass::BackwardInput {
        (ci, co)
    } else {
        (co, ci)
    }
}

fn weight_layout(gpu: &Gpu, conv: &Conv2d, pass: ConvPass) -> std::result::Result<WeightLayout, String> {
    let l = gpu.limits();
    let (nd, ns) = channels(conv, pass);
    let align_v4 = (l.min_uniform_buffer_offset_alignment as usize / 16).max(1);
    let stride_v4 = (ns * 18).div_ceil(align_v4) * align_v4;
    let per_chunk = (WIN / 4) / stride_v4;
    if per_chunk == 0 {
        return Err(format!("a block of 8 channels' weights ({ns} source channels) exceeds one 64 KiB window"));
    }
    let blocks = nd.div_ceil(8);
    let total = blocks * stride_v4 * 4;
    let bytes = total as u64 * 4 + UBO_BYTES;
    if bytes > l.max_buffer_size || bytes > l.max_storage_buffer_binding_size {
        return Err(format!("the packed weights ({bytes} bytes) exceed this adapter's buffer limits"));
    }
    Ok(WeightLayout { nd, ns, stride_v4, per_chunk, blocks, total })
}

fn dy_layout(gpu: &Gpu, conv: &Conv2d) -> std::result::Result<DyLayout, String> {
    let l = gpu.limits();
    let [n, co, oh, ow] = conv.output_shape;
    if conv.cfg.in_channels < 8 {
        return Err(format!("{} input channels, fewer than the 8 lanes of a workgroup", conv.cfg.in_channels));
    }
    if 4 * ow > WIN {
        return Err(format!("one output row of 4 channels ({ow} wide) exceeds a 64 KiB window"));
    }
    // Channel groups: windows of at least min(OH, 16) rows, groups of equal size.
    let cpad = co.div_ceil(4) * 4;
    let cg_max = (WIN / (oh.min(16) * ow) / 4 * 4).clamp(4, cpad);
    let ncg = cpad.div_ceil(cg_max);
    let cg = (cpad / 4).div_ceil(ncg) * 4;
    let nrb = oh.div_ceil((WIN / (cg * ow)).min(oh));
    let rh = oh.div_ceil(nrb);
    let total = n * ncg * nrb * WIN;
    let bytes = total as u64 * 4;
    if bytes > l.max_buffer_size || bytes > l.max_storage_buffer_binding_size || total > u32::MAX as usize {
        return Err(format!("the packed dy ({bytes} bytes) exceeds this adapter's buffer limits"));
    }
    Ok(DyLayout { cg, ncg, nrb, rh, total })
}

/// Why these kernels cannot run `pass` of `conv` on `gpu`, or None.
pub fn unsupported(gpu: &Gpu, conv: &Conv2d, pass: ConvPass) -> Option<String> {
    if let Some(why) = fast::unsupported(conv, pass) {
        return Some(why);
    }
    let have = gpu.limits().max_uniform_buffer_binding_size;
    if have < UBO_BYTES {
        return Some(format!("the adapter binds uniform buffers of {have} bytes, fewer than {UBO_BYTES}"));
    }
    match pass {
        ConvPass::Forward | ConvPass::BackwardInput => weight_layout(gpu, conv, pass).err(),
        ConvPass::BackwardWeight => dy_layout(gpu, conv).err(),
    }
}

/// Forward / backward_input: the packed weights and, per chunk of blocks, its `Fast`
/// uniform (block0 set), first block and block count.
pub struct WeightWindows {
    pack: Tensor,
    pack_params: wgpu::Buffer,
    pack_total: usize,
    chunks: Vec<(wgpu::Buffer, u32, u32)>,
    stride_v4: usize,
    padl: u32,
}

/// Backward_weight: the packed dy, the pack kernel's uniform, the pass's `Fast` uniform and
/// one `Win` uniform per window.
pub struct DyWindows {
    pack: Tensor,
    pack_params: wgpu::Buffer,
    pack_total: usize,
    fast: wgpu::Buffer,
    wins: Vec<wgpu::Buffer>,
    padl: u32,
    /// Lanes (input channels) per workgroup.
    wgw: u32,
    /// Output channels per window (grid y: CG / 4 blocks).
    cg: usize,
}

pub enum Plan {
    Weights(WeightWindows),
    Dy(DyWindows),
}

impl Plan {
    /// The plan of `pass` (`unsupported` must be None).
    pub(super) fn new(gpu: &Gpu, conv: &Conv2d, pass: ConvPass) -> Result<Plan> {
        let usage = wgpu::BufferUsages::UNIFORM;
        let name = &conv.name;
        if pass == ConvPass::BackwardWeight {
            let d = dy_layout(gpu, conv).map_err(|why| crate::Error::new(format!("layer {name}: {why}")))?;
            let [n, co, oh, ow] = conv.output_shape;
            let pack = gpu.tensor_with_usage(&format!("{name} backward_weight packed dy"), &[d.total], usage)?;
            let pp = DyPackParams { co: co as u32, oh: oh as u32, ow: ow as u32, rh: d.rh as u32, nrb: d.nrb as u32, total: d.total as u32, cg: d.cg as u32, ncg: d.ncg as u32 };
            let pack_params = gpu.uniform(&format!("{name} dy pack params"), &pp);
            let mut wins = Vec::with_capacity(n * d.ncg * d.nrb);
            for s in 0..n {
                for g in 0..d.ncg {
                    for rb in 0..d.nrb {
                        let oy0 = rb * d.rh;
                        let wp = WinParams { n: s as u32, oy0: oy0 as u32, rows: d.rh.min(oh - oy0) as u32, first: (s == 0 && rb == 0) as u32, rh: d.rh as u32, co0: (g * d.cg) as u32, _pad: [0; 2] };
                        wins.push(gpu.uniform(&format!("{name} dy window {s}.{g}.{rb}"), &wp));
                    }
                }
            }
            let ci = conv.cfg.in_channels;
            let wgw = if ci >= 64 { 64 } else { ci.div_ceil(8) * 8 } as u32;
            let fp = fast::params(conv, pass, (1, n * oh))?;
            let fast = gpu.uniform(&format!("{name} 3x3s1 backward_weight params"), &fp);
            return Ok(Plan::Dy(DyWindows { pack, pack_params, pack_total: d.total, fast, wins, padl: fast::padl(conv, pass), wgw, cg: d.cg }));
        }
        let lay = weight_layout(gpu, conv, pass).map_err(|why| crate::Error::new(format!("layer {name}: {why}")))?;
        let p = pass.name();
        let pack = gpu.tensor_with_usage(&format!("{name} {p} packed weights"), &[lay.total + WIN], usage)?;
        let flip = pass == ConvPass::BackwardInput;
        let pp = PackParams { nd: lay.nd as u32, ns: lay.ns as u32, ci: conv.cfg.in_channels as u32, flip: flip as u32, stride: (lay.stride_v4 * 4) as u32, total: lay.total as u32, _pad: [0; 2] };
        let pack_params = gpu.uniform(&format!("{name} {p} pack params"), &pp);
        let base = fast::params(conv, pass, (1, conv.geom.n * conv.geom.oh))?;
        let chunks = (0..lay.blocks)
            .step_by(lay.per_chunk)
            .map(|b0| {
                let nb = lay.per_chunk.min(lay.blocks - b0);
                let fp = FastParams { s_out: lay.stride_v4 as u32, block0: b0 as u32, ..base };
                (gpu.uniform(&format!("{name} {p} chunk {b0} params"), &fp), b0 as u32, nb as u32)
            })
            .collect();
        Ok(Plan::Weights(WeightWindows { pack, pack_params, pack_total: lay.total, chunks, stride_v4: lay.stride_v4, padl: fast::padl(conv, pass) }))
    }
}

/// A binding of `UBO_BYTES` of `t` from byte `offset`.
fn window(t: &Tensor, offset: u64) -> wgpu::BindingResource<'_> {
    wgpu::BindingResource::Buffer(wgpu::BufferBinding { buffer: t.buffer(), offset: t.offset() + offset, size: std::num::NonZeroU64::new(UBO_BYTES) })
}

/// The plan's weight windows, or an error when `plan` is another pass's (a bug).
fn weights<'a>(conv: &Conv2d, plan: &'a Plan, pass: ConvPass) -> Result<&'a WeightWindows> {
    match plan {
        Plan::Weights(u) => Ok(u),
        Plan::Dy(_) => bail!("layer {}: the uniform backward_weight plan cannot record {}", conv.name, pass.name()),
    }
}

/// y = conv(x, w) (+ b): the weight repack, then one dispatch per window.
pub(super) fn forward(gpu: &Gpu, conv: &Conv2d, plan: &Plan, x: &Tensor, w: &Tensor, b: Option<&Tensor>, y: &Tensor) -> Result<Vec<Dispatch>> {
    let [n, _, oh, ow] = conv.output_shape;
    windows(gpu, conv, weights(conv, plan, ConvPass::Forward)?, ConvPass::Forward, x, w, b, y, n * oh * ow.div_ceil(4))
}

/// dx = conv_transpose(dy, w): the rotated weight repack, then one dispatch per window.
pub(super) fn backward_input(gpu: &Gpu, conv: &Conv2d, plan: &Plan, dx: &Tensor, dy: &Tensor, w: &Tensor) -> Result<Vec<Dispatch>> {
    let [n, _, h, wd] = conv.input_shape;
    windows(gpu, conv, weights(conv, plan, ConvPass::BackwardInput)?, ConvPass::BackwardInput, dy, w, None, dx, n * h * wd.div_ceil(4))
}

#[allow(clippy::too_many_arguments)]
fn windows(gpu: &Gpu, conv: &Conv2d, u: &WeightWindows, pass: ConvPass, src: &Tensor, w: &Tensor, b: Option<&Tensor>, dst: &Tensor, invocations: usize) -> Result<Vec<Dispatch>> {
    let pass = pass.name();
    let mut out = vec![pack_weights(gpu, &format!("{} conv2d_pack_weights ({pass})", conv.name), &u.pack_params, &u.pack, w, u.pack_total)?];
    let [x, _, z] = conv.groups(gpu, pass, invocations)?;
    let entry = if b.is_some() { "conv2d_3x3s1_u_bias" } else { "conv2d_3x3s1_u" };
    let c = [("PADL", u.padl as f64)];
    for (fp, b0, nb) in &u.chunks {
        let win = window(&u.pack, *b0 as u64 * u.stride_v4 as u64 * 16);
        let mut bind = vec![(10, fp.as_entire_binding()), (11, src.binding()), (12, src.binding()), (15, win), (13, dst.binding())];
        if let Some(b) = b {
            bind.push((3, b.binding()));
        }
        out.push(Dispatch::new(gpu, &format!("{} {entry} ({pass}, blocks {b0}+{nb})", conv.name), &CONV2D, entry, &c, &bind, [x, *nb, z])?);
    }
    Ok(out)
}

/// dw (= or +=) sum over n, oy, ox of dy * x: the dy repack, then one dispatch per window.
#[allow(clippy::too_many_arguments)]
pub(super) fn backward_weight(gpu: &Gpu, conv: &Conv2d, plan: &Plan, dw: &Tensor, dy: &Tensor, x: &Tensor, accumulate: bool) -> Result<Vec<Dispatch>> {
    let Plan::Dy(u) = plan else { bail!("layer {}: a uniform weight-window plan cannot record backward_weight", conv.name) };
    let name = &conv.name;
    let label = format!("{name} conv2d_pack_dy");
    let groups = gpu.groups_1d(&label, u.pack_total as u64, WG)?;
    let mut out = vec![Dispatch::new(gpu, &label, &CONV2D, "conv2d_pack_dy", &[], &[(19, u.pack_params.as_entire_binding()), (17, u.pack.binding()), (6, dy.binding())], groups)?];
    let groups = [u32_of(name, "channel groups", conv.cfg.in_channels.div_ceil(u.wgw as usize))?, (u.cg / 4) as u32, 1];
    let c = [("PADL", u.padl as f64), ("WGW", u.wgw as f64), accumulate_constant(accumulate)];
    for (i, wp) in u.wins.iter().enumerate() {
        let b = [(10, u.fast.as_entire_binding()), (11, x.binding()), (12, x.binding()), (15, window(&u.pack, i as u64 * UBO_BYTES)), (18, wp.as_entire_binding()), (7, dw.binding())];
        out.push(Dispatch::new(gpu, &format!("{name} conv2d_3x3s1_weight_u (window {i})"), &CONV2D, "conv2d_3x3s1_weight_u", &c, &b, groups)?);
    }
    Ok(out)
}
