//! 2-D convolution: any kernel, stride, zero padding (Valid / Same / Explicit), optional bias.
//! Kernels: shaders/conv2d.wgsl. Reference: src/reference/conv2d.rs.
//!
//! Layout: x [N, Cin, H, W], w [Cout, Cin, KH, KW], b [Cout], y [N, Cout, OH, OW].

use super::layer::{Init, Io, LayerOp, Mode, ParamDecl};
use super::{accumulate_constant, nchw, resolve_padding, u32_of, Padding};
use crate::gpu::autotune::time_candidate;
use crate::gpu::{shaders::CONV2D, Dispatch, Gpu, Tensor};
use crate::reference::conv2d::ConvGeom;
use crate::{bail, ensure, Result};
use bytemuck::Zeroable;
use std::sync::{Mutex, OnceLock};

pub mod subgroup;
pub mod tiled;

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

/// Mirror of `Fast` in shaders/conv2d.wgsl (the 3x3 stride-1 kernels).
#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable, Default)]
struct FastParams {
    c_in: u32,
    h_in: u32,
    w_in: u32,
    c_out: u32,
    h_out: u32,
    w_out: u32,
    pt: u32,
    s_out: u32,
    s_in: u32,
    owb: u32,
    total: u32,
    rows: u32,
    rps: u32,
    nw: u32,
    block0: u32,
    _pad: u32,
}

/// Which kernels a layer records (`Conv2d::new` takes `MIEN_CONV_KERNELS`, default `Auto`;
/// `new_with` / `with_kernels` force one for tests and benchmarks).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ConvKernels {
    /// The autotuner's choice among subgroup (where it applies), fast and tiled; untuned
    /// (small layers, autotune off): subgroup where it applies, else fast.
    #[default]
    Auto,
    /// The general kernels only.
    General,
    /// The uniform-window / fast 3x3 kernels where they apply, else the general ones.
    Fast,
    /// The subgroup kernels (subgroup::applicable must hold, else `with_kernels` fails) for
    /// forward, backward_input and backward_weight.
    Subgroup,
    /// The workgroup-memory tiled implicit-GEMM kernels (`tiled`, any shape) for forward,
    /// backward_input and backward_weight: what real GPUs usually prefer.
    Tiled,
}

impl ConvKernels {
    /// `MIEN_CONV_KERNELS=auto|fast|general|tiled` (benchmarks, debugging; default auto: the
    /// autotuner's choice).
    pub fn from_env() -> Result<ConvKernels> {
        Ok(match std::env::var("MIEN_CONV_KERNELS").as_deref() {
            Err(_) | Ok("") | Ok("auto") => ConvKernels::Auto,
            Ok("fast") => ConvKernels::Fast,
            Ok("general") => ConvKernels::General,
            Ok("tiled") => ConvKernels::Tiled,
            Ok(other) => bail!("MIEN_CONV_KERNELS={other:?}: expected auto, fast, general or tiled"),
        })
    }
}

/// Uniform buffers and overrides of the fast kernels, per pass; None where the shape does
/// not allow the fast kernel.
struct FastPlan {
    fwd: Option<(wgpu::Buffer, u32)>,
    bin: Option<(wgpu::Buffer, u32)>,
    bw: Option<(wgpu::Buffer, u32)>,
    /// Lanes (output channels) per weight-gradient workgroup.
    wgw: u32,
    /// The uniform-buffer-weight variants of forward / backward_input.
    ubo_fwd: Option<UboPlan>,
    ubo_bin: Option<UboPlan>,
    /// The weight gradient with dy in uniform windows (conv2d_3x3s1_weight_u).
    ubo_bw: Option<BwPlan>,
}

/// dy repacked into 64 KiB windows (a STORAGE | UNIFORM buffer made here, not counted in
/// gpu.mem()), the pack kernel's uniform and one `Win` uniform per window.
struct BwPlan {
    pack: wgpu::Buffer,
    pack_params: wgpu::Buffer,
    total: usize,
    wins: Vec<wgpu::Buffer>,
    /// Lanes (input channels) per workgroup.
    wgw: u32,
    /// Output channels per window (grid y: CG / 4 blocks).
    cg: usize,
}

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

/// The uniform-window weight-gradient plan for output [n, co, oh, ow] and `ci` input
/// channels, or None when the adapter's uniform bindings are too small, one output row of
/// all channels exceeds a window, there are fewer than 8 input channels (lanes), or the
/// packed dy would exceed the storage binding limit.
fn bw_plan(gpu: &Gpu, name: &str, [n, co, oh, ow]: [usize; 4], ci: usize) -> Option<BwPlan> {
    let l = gpu.limits();
    let win = (UBO_BYTES / 4) as usize;
    let cpad = co.div_ceil(4) * 4;
    if l.max_uniform_buffer_binding_size < UBO_BYTES || ci < 8 || 4 * ow > win {
        return None;
    }
    // Channel groups: windows of at least min(OH, 16) rows, groups of equal size.
    let cg_max = (win / (oh.min(16) * ow) / 4 * 4).clamp(4, cpad);
    let ncg = cpad.div_ceil(cg_max);
    let cg = (cpad / 4).div_ceil(ncg) * 4;
    let nrb = oh.div_ceil((win / (cg * ow)).min(oh));
    let rh = oh.div_ceil(nrb);
    let total = n * ncg * nrb * win;
    let bytes = total as u64 * 4;
    if bytes > l.max_buffer_size || bytes > l.max_storage_buffer_binding_size || total > u32::MAX as usize {
        return None;
    }
    let pack = gpu.device.create_buffer(&wgpu::BufferDescriptor {
        label: Some(&format!("{name} backward_weight packed dy")),
        size: bytes,
        usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::UNIFORM,
        mapped_at_creation: false,
    });
    let pp = DyPackParams { co: co as u32, oh: oh as u32, ow: ow as u32, rh: rh as u32, nrb: nrb as u32, total: total as u32, cg: cg as u32, ncg: ncg as u32 };
    let pack_params = gpu.uniform(&format!("{name} dy pack params"), &pp);
    let mut wins = Vec::with_capacity(n * ncg * nrb);
    for s in 0..n {
        for g in 0..ncg {
            for rb in 0..nrb {
                let oy0 = rb * rh;
                let wp = WinParams {
                    n: s as u32,
                    oy0: oy0 as u32,
                    rows: rh.min(oh - oy0) as u32,
                    first: (s == 0 && rb == 0) as u32,
                    rh: rh as u32,
                    co0: (g * cg) as u32,
                    _pad: [0; 2],
                };
                wins.push(gpu.uniform(&format!("{name} dy window {s}.{g}.{rb}"), &wp));
            }
        }
    }
    let wgw = if ci >= 64 { 64 } else { ci.div_ceil(8) * 8 } as u32;
    Some(BwPlan { pack, pack_params, total, wins, wgw, cg })
}

/// Bytes of the `wu` uniform array of shaders/conv2d.wgsl (4096 vec4).
const UBO_BYTES: u64 = 65536;

/// Weights repacked for conv2d_3x3s1_u: a STORAGE | UNIFORM buffer (made here, outside
/// Gpu::tensor, as tensors are storage-only: not counted in gpu.mem()), the pack kernel's
/// uniform, and one `Fast` uniform per chunk of blocks bound as one <= 64 KiB window.
struct UboPlan {
    pack: wgpu::Buffer,
    pack_params: wgpu::Buffer,
    pack_total: usize,
    /// (Fast uniform with block0 set, first block, blocks).
    chunks: Vec<(wgpu::Buffer, u32, u32)>,
    /// vec4s per block of 8 destination channels.
    stride_v4: usize,
    padl: u32,
}

/// Mirror of `Pack` in shaders/conv2d.wgsl.
#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct PackParams {
    nd: u32,
    ns: u32,
    ci: u32,
    flip: u32,
    stride: u32,
    total: u32,
    _pad: [u32; 2],
}

/// The uniform-weight plan of one pass (`base` its Fast uniform; `nd` destination and `ns`
/// source channels), or None when the adapter's uniform bindings are too small or a block
/// of 8 channels' weights exceeds 64 KiB (ns > 227).
#[allow(clippy::too_many_arguments)]
fn ubo_plan(gpu: &Gpu, name: &str, pass: &str, base: FastParams, nd: usize, ns: usize, ci: usize, flip: bool, padl: u32) -> Option<UboPlan> {
    let l = gpu.limits();
    if l.max_uniform_buffer_binding_size < UBO_BYTES {
        return None;
    }
    let align_v4 = (l.min_uniform_buffer_offset_alignment as usize / 16).max(1);
    let stride_v4 = (ns * 18).div_ceil(align_v4) * align_v4;
    let per_chunk = (UBO_BYTES as usize / 16) / stride_v4;
    if per_chunk == 0 {
        return None;
    }
    let blocks = nd.div_ceil(8);
    let pack_total = blocks * stride_v4 * 4;
    let bytes = pack_total as u64 * 4 + UBO_BYTES;
    if bytes > l.max_buffer_size || bytes > l.max_storage_buffer_binding_size {
        return None;
    }
    let pack = gpu.device.create_buffer(&wgpu::BufferDescriptor {
        label: Some(&format!("{name} {pass} packed weights")),
        size: bytes,
        usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::UNIFORM,
        mapped_at_creation: false,
    });
    let pp = PackParams { nd: nd as u32, ns: ns as u32, ci: ci as u32, flip: flip as u32, stride: (stride_v4 * 4) as u32, total: pack_total as u32, _pad: [0; 2] };
    let pack_params = gpu.uniform(&format!("{name} {pass} pack params"), &pp);
    let chunks = (0..blocks)
        .step_by(per_chunk)
        .map(|b0| {
            let nb = per_chunk.min(blocks - b0);
            let fp = FastParams { s_out: stride_v4 as u32, block0: b0 as u32, ..base };
            (gpu.uniform(&format!("{name} {pass} chunk {b0} params"), &fp), b0 as u32, nb as u32)
        })
        .collect();
    Some(UboPlan { pack, pack_params, pack_total, chunks, stride_v4, padl })
}

/// Workgroup size of the 1-D kernels (WG in the shader; conv2d_backward_bias uses one
/// workgroup of WG_BIAS per output channel).
const WG: u32 = 64;
/// Layers below this many FLOPs per forward pass take the default kernels untimed.
const TUNE_MIN_FLOP: usize = 1 << 26;
/// Batch of the layer copy the autotuner times (cost scales with the batch).
const TUNE_BATCH: usize = 4;
/// Register blocks (CB and PB in the shader, hard-wired as vec4 accumulators): CB channels x
/// PB columns per forward / backward_input invocation, CB co x PB ci per weight-gradient
/// invocation.
const CB: usize = 8;
const PB: usize = 4;
/// Weight-gradient split heuristic: enough invocations to fill a GPU, but at least this many
/// output positions summed per invocation.
const BW_TARGET_INVOCATIONS: usize = 65536;
const BW_MIN_POSITIONS: usize = 256;
/// Fast weight-gradient split: workgroups wanted in all, fewest rows per split.
const FAST_BW_WORKGROUPS: usize = 128;
const FAST_BW_MIN_ROWS: usize = 4;

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
    fast: FastPlan,
    /// [splits, Cout*Cin*KH*KW] partial weight gradients, allocated on first use.
    scratch: OnceLock<Tensor>,
    /// Forward, backward_input and backward_weight through conv2d_subgroup.wgsl.
    sg: bool,
    /// Forward, backward_input and backward_weight through conv2d_tiled.wgsl.
    tiled: bool,
    /// Buffers the recorded dispatches bind (packed weights, partials), kept alive and
    /// counted in gpu.mem() for as long as the layer.
    keep: Mutex<Vec<Tensor>>,
}

impl Conv2d {
    /// Validate `cfg` against `input_shape` = [N, Cin, H, W] and write the uniform; the
    /// kernels from `MIEN_CONV_KERNELS` (default `Auto`: see `tune`).
    pub fn new(gpu: &Gpu, name: &str, cfg: Conv2dConfig, input_shape: &[usize]) -> Result<Self> {
        Self::new_with(gpu, name, cfg, input_shape, ConvKernels::from_env()?)
    }

    /// `new` with the kernels given.
    pub fn new_with(gpu: &Gpu, name: &str, cfg: Conv2dConfig, input_shape: &[usize], kernels: ConvKernels) -> Result<Self> {
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
        let input_shape = [n, ci, h, w];
        let output_shape = [n, co, oh, ow];
        let mut layer = Conv2d {
            name: name.to_string(),
            cfg,
            input_shape,
            output_shape,
            pad_top,
            pad_left,
            splits: 1,
            rows_per_split: n * oh,
            params: gpu.uniform(&format!("{name} params"), &Params::zeroed()),
            fast: FastPlan { fwd: None, bin: None, bw: None, wgw: 64, ubo_fwd: None, ubo_bin: None, ubo_bw: None },
            scratch: OnceLock::new(),
            sg: false,
            tiled: false,
            keep: Mutex::new(Vec::new()),
        };
        layer.plan(gpu, kernels, None)?;
        Ok(layer)
    }

    /// Choose the kernels (fast 3x3 stride-1 ones where allowed and `kernels` is Auto), the
    /// weight-gradient split (`splits`, or the default for the chosen kernel) and write the
    /// uniforms.
    fn plan(&mut self, gpu: &Gpu, kernels: ConvKernels, splits: Option<usize>) -> Result<()> {
        let kernels = if kernels == ConvKernels::Auto && splits.is_none() { self.tune(gpu)? } else { kernels };
        let [n, ci, h, w] = self.input_shape;
        let [_, co, oh, ow] = self.output_shape;
        let (pt, pl) = (self.pad_top, self.pad_left);
        self.sg = match kernels {
            ConvKernels::Subgroup => {
                let why = subgroup::unsupported(gpu, self);
                ensure!(why.is_none(), "layer {}: the subgroup conv kernels do not apply: {}", self.name, why.unwrap_or_default());
                true
            }
            ConvKernels::Auto => splits.is_none() && subgroup::applicable(gpu, self),
            ConvKernels::General | ConvKernels::Fast | ConvKernels::Tiled => false,
        };
        self.tiled = kernels == ConvKernels::Tiled;
        let s3 = matches!(kernels, ConvKernels::Auto | ConvKernels::Fast | ConvKernels::Subgroup) && self.cfg.kernel == (3, 3) && self.cfg.stride == (1, 1) && pl <= 2;
        // vec4 rows: the source width a multiple of 4 and every 4-column block of the
        // destination inside the source row.
        let fwd_ok = s3 && w % 4 == 0 && ow.div_ceil(4) * 4 <= w;
        let bin_ok = s3 && pt <= 2 && ow % 4 == 0 && w.div_ceil(4) * 4 <= ow;
        let bw_ok = s3 && w % 4 == 0 && ow % 4 == 0 && ow <= w;
        let wgw = if co >= 64 { 64 } else { co.div_ceil(8) * 8 };
        let rows = n * oh;
        let forced_splits = splits.is_some();
        let (splits, rps) = match splits {
            Some(s) => {
                let rps = rows.div_ceil(s.clamp(1, rows));
                (rows.div_ceil(rps), rps)
            }
            None if bw_ok => fast_splits(rows, co.div_ceil(wgw) * ci.div_ceil(4)),
            None => default_splits(rows, ow, co.div_ceil(CB) * ci.div_ceil(PB) * self.cfg.kernel.0 * self.cfg.kernel.1),
        };
        self.splits = splits;
        self.rows_per_split = rps;
        let p = params(&self.name, &self.cfg, self.input_shape, self.output_shape, (pt, pl), (splits, rps))?;
        self.params = gpu.uniform(&format!("{} params", self.name), &p);
        let u = |what: &str, v: usize| u32_of(&self.name, what, v);
        let nw = co * ci * 9;
        let fwd = FastParams {
            c_in: ci as u32,
            h_in: h as u32,
            w_in: w as u32,
            c_out: co as u32,
            h_out: oh as u32,
            w_out: ow as u32,
            pt: pt as u32,
            s_out: u("weight stride", ci * 9)?,
            s_in: 9,
            owb: ow.div_ceil(4) as u32,
            total: u("forward invocations", n * oh * ow.div_ceil(4))?,
            rows: rows as u32,
            rps: rps as u32,
            nw: nw as u32,
            block0: 0,
            _pad: 0,
        };
        let label = |pass: &str| format!("{} 3x3s1 {pass} params", self.name);
        let ubo_fwd = if fwd_ok { ubo_plan(gpu, &self.name, "forward", fwd, co, ci, ci, false, pl as u32) } else { None };
        let bin_base = FastParams {
            c_in: co as u32,
            h_in: oh as u32,
            w_in: ow as u32,
            c_out: ci as u32,
            h_out: h as u32,
            w_out: w as u32,
            pt: (2usize.saturating_sub(pt)) as u32,
            s_out: 9,
            s_in: u("weight stride", ci * 9)?,
            owb: w.div_ceil(4) as u32,
            total: u("backward_input invocations", n * h * w.div_ceil(4))?,
            ..fwd
        };
        let ubo_bin = if bin_ok { ubo_plan(gpu, &self.name, "backward_input", bin_base, ci, co, ci, true, (2 - pl) as u32) } else { None };
        // Forced splits (tests, tuning) keep the storage-only weight-gradient kernels.
        let ubo_bw = if bw_ok && !forced_splits { bw_plan(gpu, &self.name, self.output_shape, ci) } else { None };
        self.fast = FastPlan {
            ubo_fwd,
            ubo_bin,
            ubo_bw,
            fwd: fwd_ok.then(|| (gpu.uniform(&label("forward"), &fwd), pl as u32)),
            bin: bin_ok.then(|| (gpu.uniform(&label("backward_input"), &bin_base), (2 - pl) as u32)),
            bw: bw_ok.then(|| (gpu.uniform(&label("backward_weight"), &fwd), pl as u32)),
            wgw: wgw as u32,
        };
        self.scratch = OnceLock::new();
        Ok(())
    }

    /// `Auto`: the autotuner's variant (`gpu.autotune()`, key "conv NxCIxHxW->CO k.. s.. p..")
    /// among subgroup (where it applies), fast and tiled, timed by the forward and weight-
    /// gradient passes of a copy of the layer at batch <= TUNE_BATCH (backward_input shares
    /// the forward's design);
    /// layers under TUNE_MIN_FLOP and an autotuner that is off take the default: subgroup
    /// where it applies, else fast.
    fn tune(&self, gpu: &Gpu) -> Result<ConvKernels> {
        let default = if subgroup::applicable(gpu, self) { ConvKernels::Subgroup } else { ConvKernels::Fast };
        let [n, ci, h, w] = self.input_shape;
        let [_, co, oh, ow] = self.output_shape;
        let (kh, kw) = self.cfg.kernel;
        let flop = 2 * n * oh * ow * co * ci * kh * kw;
        if flop < TUNE_MIN_FLOP || gpu.autotune().mode() == crate::gpu::autotune::Mode::Off {
            return Ok(default);
        }
        let mut cands = vec![];
        if default == ConvKernels::Subgroup {
            cands.push(("subgroup", ConvKernels::Subgroup));
        }
        cands.extend([("fast", ConvKernels::Fast), ("tiled", ConvKernels::Tiled)]);
        let names: Vec<&str> = cands.iter().map(|c| c.0).collect();
        let (pt, pl) = (self.pad_top, self.pad_left);
        let key = format!("conv {n}x{ci}x{h}x{w}->{co} k{kh}x{kw} s{}x{} p{pt}x{pl}", self.cfg.stride.0, self.cfg.stride.1);
        let shape = [n.min(TUNE_BATCH), ci, h, w];
        let scratch: OnceLock<(Tensor, Tensor, Tensor, Tensor, Tensor)> = OnceLock::new();
        let choice = gpu.autotune().choose(&key, &names, if default == ConvKernels::Subgroup { "subgroup" } else { "fast" }, |name, best| {
            let kernels = cands.iter().find(|c| c.0 == name).expect("a candidate").1;
            let twin = Conv2d::new_with(gpu, &format!("{} (autotune {name})", self.name), self.cfg, &shape, kernels)?;
            let (x, wt, b, y, dw) = match scratch.get() {
                Some(t) => t,
                None => {
                    let t = |label: &str, shape: &[usize]| -> Result<Tensor> {
                        let len: usize = shape.iter().product();
                        let v: Vec<f32> = (0..len).map(|k| ((k * 7919 % 1000) as f32) * 1e-3 - 0.5).collect();
                        gpu.upload(&format!("{} autotune {label}", self.name), shape, &v)
                    };
                    let made = (t("x", &shape)?, t("w", &self.weight_shape())?, t("b", &self.bias_shape())?, t("y", &twin.output_shape)?, gpu.tensor("autotune dw", &self.weight_shape())?);
                    scratch.get_or_init(|| made)
                }
            };
            // The two passes every conv of a training step runs (y doubles as dy).
            let mut ds = twin.forward_dispatches(gpu, x, wt, self.cfg.bias.then_some(b), y)?;
            ds.extend(twin.backward_weight(gpu, dw, y, x, false)?);
            time_candidate(gpu, &ds.iter().collect::<Vec<_>>(), best)
        });
        Ok(cands.iter().find(|c| c.0 == choice).map_or(default, |c| c.1))
    }

    /// Re-plan the layer with `kernels` (see `ConvKernels`); for tests and benchmarks. Call
    /// before building any dispatch.
    pub fn with_kernels(mut self, gpu: &Gpu, kernels: ConvKernels) -> Result<Self> {
        self.plan(gpu, kernels, None)?;
        Ok(self)
    }

    /// Whether backward_weight uses dy in uniform windows (conv2d_3x3s1_weight_u: a pack,
    /// then one dispatch per (sample, block of output rows)).
    pub fn uniform_weight_gradient(&self) -> bool {
        self.fast.ubo_bw.is_some()
    }

    /// Whether forward, backward_input and backward_weight use the subgroup kernels.
    pub fn uses_subgroups(&self) -> bool {
        self.sg
    }

    /// The kernel variant of the layer's passes: "subgroup", "tiled", "fast" (some pass on
    /// the uniform-window / fast 3x3 kernels) or "general".
    pub fn variant_name(&self) -> &'static str {
        if self.sg {
            "subgroup"
        } else if self.tiled {
            "tiled"
        } else if self.fast.fwd.is_some() || self.fast.bin.is_some() || self.fast.bw.is_some() {
            "fast"
        } else {
            "general"
        }
    }

    /// Whether forward, backward_input and backward_weight use the tiled kernels.
    pub fn uses_tiles(&self) -> bool {
        self.tiled
    }

    /// Keep `t` alive (and counted) as long as the layer: dispatches bind it.
    fn keep(&self, t: Tensor) {
        self.keep.lock().unwrap().push(t);
    }

    /// Which passes use the fast 3x3 stride-1 kernels: (forward, backward_input,
    /// backward_weight).
    pub fn fast_paths(&self) -> (bool, bool, bool) {
        (self.fast.fwd.is_some(), self.fast.bin.is_some(), self.fast.bw.is_some())
    }

    /// Use `splits` chunks of the batch rows for the weight gradient (clamped to [1, N*OH]);
    /// for tests and tuning. Call before building any dispatch.
    pub fn with_weight_splits(mut self, gpu: &Gpu, splits: usize) -> Result<Self> {
        let kernels = if self.fast.fwd.is_some() || self.fast.bin.is_some() || self.fast.bw.is_some() { ConvKernels::Fast } else { ConvKernels::General };
        self.plan(gpu, kernels, Some(splits))?;
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

    /// The forward pass's operands against the layer: shapes, and a bias exactly when
    /// `cfg.bias`.
    fn check_forward(&self, x: &Tensor, w: &Tensor, b: Option<&Tensor>, y: &Tensor) -> Result<()> {
        x.expect_shape(&self.name, "input", &self.input_shape)?;
        w.expect_shape(&self.name, "weight", &self.weight_shape())?;
        y.expect_len(&self.name, "output", Self::len(&self.output_shape))?;
        match (self.cfg.bias, b) {
            (true, Some(b)) => b.expect_shape(&self.name, "bias", &self.bias_shape()),
            (false, None) => Ok(()),
            (true, None) => bail!("layer {}: configured with bias, but no bias tensor [{}] was given", self.name, self.cfg.out_channels),
            (false, Some(_)) => bail!("layer {}: configured without bias, but a bias tensor was given", self.name),
        }
    }

    /// backward_input's operands against the layer.
    fn check_backward_input(&self, dx: &Tensor, dy: &Tensor, w: &Tensor) -> Result<()> {
        dx.expect_len(&self.name, "input gradient", Self::len(&self.input_shape))?;
        dy.expect_len(&self.name, "output gradient", Self::len(&self.output_shape))?;
        w.expect_shape(&self.name, "weight", &self.weight_shape())
    }

    /// y = conv(x, w) (+ b) in one dispatch of the fast 3x3 or the general kernel. Overwrites
    /// y. `b` is required iff `cfg.bias`.
    pub fn forward(&self, gpu: &Gpu, x: &Tensor, w: &Tensor, b: Option<&Tensor>, y: &Tensor) -> Result<Dispatch> {
        self.check_forward(x, w, b, y)?;
        let [n, co, oh, ow] = self.output_shape;
        let groups = self.channel_grid(gpu, "conv2d_forward", n * oh * ow.div_ceil(PB), co)?;
        if let Some((fp, padl)) = &self.fast.fwd {
            let c = [("PADL", *padl as f64), ("FLIP", 0.0)];
            let mut bind = vec![(10, fp.as_entire_binding()), (11, x.binding()), (12, x.binding()), (2, w.binding()), (13, y.binding())];
            let entry = match b {
                Some(b) => {
                    bind.push((3, b.binding()));
                    "conv2d_3x3s1_bias"
                }
                None => "conv2d_3x3s1",
            };
            return Dispatch::new(gpu, &format!("{} {entry}", self.name), &CONV2D, entry, &c, &bind, groups);
        }
        match b {
            Some(b) => self.dispatch(gpu, "conv2d_forward_bias", &[], &[(1, x), (2, w), (3, b), (4, y)], groups),
            None => self.dispatch(gpu, "conv2d_forward", &[], &[(1, x), (2, w), (4, y)], groups),
        }
    }

    /// The dispatches of the forward pass: with uniform-buffer weights (a repack of `w`,
    /// then one dispatch per <= 64 KiB chunk of output channels) where the layer has that
    /// plan, else `forward`'s single dispatch. Same contract as `forward`.
    pub fn forward_dispatches(&self, gpu: &Gpu, x: &Tensor, w: &Tensor, b: Option<&Tensor>, y: &Tensor) -> Result<Vec<Dispatch>> {
        self.check_forward(x, w, b, y)?;
        if self.tiled {
            return tiled::forward(gpu, self, x, w, b, y);
        }
        if self.sg {
            let (d, packed) = subgroup::forward(gpu, self, x, w, b, y)?;
            self.keep(packed);
            return Ok(d);
        }
        let Some(u) = &self.fast.ubo_fwd else { return Ok(vec![self.forward(gpu, x, w, b, y)?]) };
        let [n, _, oh, ow] = self.output_shape;
        self.ubo_dispatches(gpu, u, "forward", x, w, b, y, n * oh * ow.div_ceil(4))
    }

    /// y = act(conv(x, w) + b) in one pass where the layer uses the subgroup kernels (their
    /// epilogue applies the activation), else None: run `forward_dispatches` and the
    /// activation separately. Overwrites y.
    pub fn forward_act_dispatches(&self, gpu: &Gpu, x: &Tensor, w: &Tensor, b: &Tensor, y: &Tensor, act: subgroup::Epilogue) -> Result<Option<Vec<Dispatch>>> {
        if !self.sg {
            return Ok(None);
        }
        x.expect_shape(&self.name, "input", &self.input_shape)?;
        w.expect_shape(&self.name, "weight", &self.weight_shape())?;
        y.expect_len(&self.name, "output", Self::len(&self.output_shape))?;
        b.expect_shape(&self.name, "bias", &self.bias_shape())?;
        let (d, packed) = subgroup::forward_act(gpu, self, x, w, b, y, act)?;
        self.keep(packed);
        Ok(Some(d))
    }

    /// The dispatches of backward_input (see `forward_dispatches`). Same contract as
    /// `backward_input`.
    pub fn backward_input_dispatches(&self, gpu: &Gpu, dx: &Tensor, dy: &Tensor, w: &Tensor) -> Result<Vec<Dispatch>> {
        self.check_backward_input(dx, dy, w)?;
        if self.tiled {
            return tiled::backward_input(gpu, self, dx, dy, w);
        }
        if self.sg {
            let (d, packed) = subgroup::backward_input(gpu, self, dx, dy, w)?;
            self.keep(packed);
            return Ok(d);
        }
        let Some(u) = &self.fast.ubo_bin else { return Ok(vec![self.backward_input(gpu, dx, dy, w)?]) };
        let [n, _, h, wd] = self.input_shape;
        self.ubo_dispatches(gpu, u, "backward_input", dy, w, None, dx, n * h * wd.div_ceil(4))
    }

    #[allow(clippy::too_many_arguments)]
    fn ubo_dispatches(&self, gpu: &Gpu, u: &UboPlan, pass: &str, src: &Tensor, w: &Tensor, b: Option<&Tensor>, dst: &Tensor, invocations: usize) -> Result<Vec<Dispatch>> {
        let label = format!("{} conv2d_pack_weights ({pass})", self.name);
        let groups = gpu.groups_1d(&label, u.pack_total as u64, WG)?;
        let pack_binding = wgpu::BindingResource::Buffer(wgpu::BufferBinding { buffer: &u.pack, offset: 0, size: None });
        let mut out = vec![Dispatch::new(gpu, &label, &CONV2D, "conv2d_pack_weights", &[], &[(16, u.pack_params.as_entire_binding()), (17, pack_binding), (2, w.binding())], groups)?];
        let [x, _, z] = self.groups(gpu, pass, invocations)?;
        let entry = if b.is_some() { "conv2d_3x3s1_u_bias" } else { "conv2d_3x3s1_u" };
        let c = [("PADL", u.padl as f64)];
        for (fp, b0, nb) in &u.chunks {
            let window = wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                buffer: &u.pack,
                offset: *b0 as u64 * u.stride_v4 as u64 * 16,
                size: std::num::NonZeroU64::new(UBO_BYTES),
            });
            let mut bind = vec![(10, fp.as_entire_binding()), (11, src.binding()), (12, src.binding()), (15, window), (13, dst.binding())];
            if let Some(b) = b {
                bind.push((3, b.binding()));
            }
            out.push(Dispatch::new(gpu, &format!("{} {entry} ({pass}, blocks {b0}+{nb})", self.name), &CONV2D, entry, &c, &bind, [x, *nb, z])?);
        }
        Ok(out)
    }

    /// dx = conv_transpose(dy, w). Overwrites dx.
    pub fn backward_input(&self, gpu: &Gpu, dx: &Tensor, dy: &Tensor, w: &Tensor) -> Result<Dispatch> {
        self.check_backward_input(dx, dy, w)?;
        let [n, ci, h, wd] = self.input_shape;
        let groups = self.channel_grid(gpu, "conv2d_backward_input", n * h * wd.div_ceil(PB), ci)?;
        if let Some((fp, padl)) = &self.fast.bin {
            let c = [("PADL", *padl as f64), ("FLIP", 1.0)];
            let b = [(10, fp.as_entire_binding()), (11, dy.binding()), (12, dy.binding()), (2, w.binding()), (13, dx.binding())];
            return Dispatch::new(gpu, &format!("{} conv2d_3x3s1 (backward_input)", self.name), &CONV2D, "conv2d_3x3s1", &c, &b, groups);
        }
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
        if self.tiled {
            let g = tiled::backward_weight(gpu, self, dw, dy, x, accumulate)?;
            if let Some(t) = g.scratch {
                self.keep(t);
            }
            return Ok(g.dispatches);
        }
        if self.sg {
            let (d, scratch) = subgroup::backward_weight(gpu, self, dw, dy, x, accumulate)?;
            if let Some(t) = scratch {
                self.keep(t);
            }
            return Ok(d);
        }
        if let (Some(u), Some((fp, padl))) = (&self.fast.ubo_bw, &self.fast.bw) {
            let label = format!("{} conv2d_pack_dy", self.name);
            let groups = gpu.groups_1d(&label, u.total as u64, WG)?;
            let whole = wgpu::BindingResource::Buffer(wgpu::BufferBinding { buffer: &u.pack, offset: 0, size: None });
            let mut out = vec![Dispatch::new(gpu, &label, &CONV2D, "conv2d_pack_dy", &[], &[(19, u.pack_params.as_entire_binding()), (17, whole), (6, dy.binding())], groups)?];
            let groups = [u32_of(&self.name, "channel groups", ci.div_ceil(u.wgw as usize))?, (u.cg / 4) as u32, 1];
            let c = [("PADL", *padl as f64), ("WGW", u.wgw as f64), accumulate_constant(accumulate)];
            for (i, wp) in u.wins.iter().enumerate() {
                let window = wgpu::BindingResource::Buffer(wgpu::BufferBinding { buffer: &u.pack, offset: i as u64 * UBO_BYTES, size: std::num::NonZeroU64::new(UBO_BYTES) });
                let b = [(10, fp.as_entire_binding()), (11, x.binding()), (12, x.binding()), (15, window), (18, wp.as_entire_binding()), (7, dw.binding())];
                out.push(Dispatch::new(gpu, &format!("{} conv2d_3x3s1_weight_u (window {i})", self.name), &CONV2D, "conv2d_3x3s1_weight_u", &c, &b, groups)?);
            }
            return Ok(out);
        }
        if let Some((fp, padl)) = &self.fast.bw {
            let wgw = self.fast.wgw;
            let groups = [u32_of(&self.name, "channel groups", co.div_ceil(wgw as usize))?, u32_of(&self.name, "channel blocks", ci.div_ceil(4))?, u32_of(&self.name, "splits", self.splits)?];
            let label = format!("{} conv2d_3x3s1_weight", self.name);
            let run = |out: &Tensor, acc: bool| {
                let c = [("PADL", *padl as f64), ("WGW", wgw as f64), accumulate_constant(acc)];
                let b = [(10, fp.as_entire_binding()), (11, x.binding()), (12, x.binding()), (14, dy.binding()), (7, out.binding())];
                Dispatch::new(gpu, &label, &CONV2D, "conv2d_3x3s1_weight", &c, &b, groups)
            };
            if self.splits == 1 {
                return Ok(vec![run(dw, accumulate)?]);
            }
            let scratch = self.scratch(gpu, nw)?;
            let partial = run(scratch, false)?;
            let groups = self.groups(gpu, "conv2d_backward_weight_reduce", nw)?;
            let reduce = self.dispatch(gpu, "conv2d_backward_weight_reduce", &[accumulate_constant(accumulate)], &[(7, dw), (8, scratch)], groups)?;
            return Ok(vec![partial, reduce]);
        }
        if self.splits == 1 {
            let d = self.dispatch(gpu, "conv2d_backward_weight", &[accumulate_constant(accumulate)], &[(7, dw), (6, dy), (1, x)], groups)?;
            return Ok(vec![d]);
        }
        let scratch = self.scratch(gpu, nw)?;
        let partial = self.dispatch(gpu, "conv2d_backward_weight", &[accumulate_constant(false)], &[(7, scratch), (6, dy), (1, x)], groups)?;
        let groups = self.groups(gpu, "conv2d_backward_weight_reduce", nw)?;
        let reduce = self.dispatch(gpu, "conv2d_backward_weight_reduce", &[accumulate_constant(accumulate)], &[(7, dw), (8, scratch)], groups)?;
        Ok(vec![partial, reduce])
    }

    /// The [splits, nw] partial buffer of the weight gradient, allocated on first use.
    fn scratch(&self, gpu: &Gpu, nw: usize) -> Result<&Tensor> {
        Ok(match self.scratch.get() {
            Some(s) => s,
            None => {
                let t = gpu.tensor(&format!("{} weight-gradient partials", self.name), &[self.splits, nw])?;
                self.scratch.get_or_init(|| t)
            }
        })
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

/// Weight-gradient split of the fast kernel: about FAST_BW_WORKGROUPS workgroups in all
/// (`blocks` per split), at least FAST_BW_MIN_ROWS rows per split.
fn fast_splits(rows: usize, blocks: usize) -> (usize, usize) {
    let splits = FAST_BW_WORKGROUPS.div_ceil(blocks.max(1)).min(rows / FAST_BW_MIN_ROWS).clamp(1, rows.max(1));
    let rps = rows.div_ceil(splits).max(1);
    (rows.div_ceil(rps).max(1), rps)
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

/// The layer interface: weight [Cout, Cin, KH, KW] (He-uniform), then bias [Cout] (zeros).
impl LayerOp for Conv2d {
    fn out_shape(&self) -> Vec<usize> {
        self.output_shape.to_vec()
    }
    fn params(&self) -> Vec<ParamDecl> {
        let ws = self.weight_shape();
        let mut p = vec![ParamDecl::new("weight", ws.to_vec(), Init::HeUniform { fan_in: ws[1] * ws[2] * ws[3] })];
        if self.cfg.bias {
            p.push(ParamDecl::new("bias", self.bias_shape().to_vec(), Init::Const(0.0)));
        }
        p
    }
    fn backward_reads_input(&self) -> bool {
        true
    }
    fn forward(&self, gpu: &Gpu, io: &Io, _: Mode) -> Result<Vec<Dispatch>> {
        self.forward_dispatches(gpu, io.x, io.value(0), io.maybe_value(1), io.y)
    }
    fn backward(&self, gpu: &Gpu, io: &Io) -> Result<Vec<Dispatch>> {
        let mut out = self.backward_weight(gpu, io.grad(0), io.dy(), io.x, false)?;
        if self.cfg.bias {
            out.push(self.backward_bias(gpu, io.grad(1), io.dy(), false)?);
        }
        if let Some(dx) = io.dx {
            out.extend(self.backward_input_dispatches(gpu, dx, io.dy(), io.value(0))?);
        }
        Ok(out)
    }
    fn input_grad(&self, gpu: &Gpu, io: &Io) -> Result<Vec<Dispatch>> {
        self.backward_input_dispatches(gpu, io.dx.expect("input gradient"), io.dy(), io.value(0))
    }
    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}
