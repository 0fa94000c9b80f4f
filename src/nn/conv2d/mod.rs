//! 2-D convolution: any kernel, stride, zero padding (Valid / Same / Explicit), optional bias.
//! Kernels: shaders/conv2d.wgsl, conv2d_subgroup.wgsl, conv2d_tiled.wgsl. Reference:
//! src/reference/conv2d.rs.
//!
//! Layout: x [N, Cin, H, W], w [Cout, Cin, KH, KW], b [Cout], y [N, Cout, OH, OW].
//!
//! Each pass (forward, backward_input, backward_weight) runs one `ConvVariant`, chosen once
//! when the layer is planned from `ConvKernels` (the autotuner, or a forced family). A
//! variant is one file that owns its per-pass plan (uniforms, repacked operands, partial
//! sums: allocated at plan time, tensors counted in `gpu.mem()`) and builds its dispatches:
//! - `general`: register-blocked kernels for any geometry (conv2d.wgsl);
//! - `fast`: 3x3 stride-1 kernels with storage operands (conv2d.wgsl);
//! - `uniform`: 3x3 stride-1 kernels reading the repacked weights (forward, backward_input)
//!   or dy (backward_weight) through 64 KiB uniform windows (conv2d.wgsl);
//! - `subgroup`: 3x3 'same' kernels broadcasting within subgroups (conv2d_subgroup.wgsl);
//! - `tiled`: workgroup-memory implicit GEMMs for any geometry (conv2d_tiled.wgsl);
//! - `coop`: implicit GEMMs on cooperative matrices (tensor cores), f16 operands with f32
//!   sums, for any geometry where the adapter offers them (conv2d_coop.wgsl).
//!
//! This file keeps the config, the operand checks, the choice of variants (`ConvKernels`,
//! autotune) and one match per pass. Recording (`*_dispatches`, `backward_weight`)
//! allocates nothing: a layer may be recorded any number of times (training,
//! explanations), every recording binding the same plan buffers, so two recordings of one
//! layer must not run concurrently (they never do: dispatches run in order, within and
//! across submissions).

use super::layer::{Init, Io, LayerOp, Mode, ParamDecl};
use super::{nchw, u32_of, Padding};
use crate::gpu::autotune::time_candidate;
use crate::nn::precision::Precision;
use crate::gpu::{shaders::CONV2D, Dispatch, Gpu, Tensor};
use crate::{bail, ensure, Result};
use std::sync::OnceLock;

pub mod coop;
pub mod fast;
pub mod general;
mod geom;
pub mod subgroup;
pub mod tiled;
pub mod uniform;

pub use geom::ConvGeom;

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

/// The kernel family of one pass of a layer (`Conv2d::variants`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConvVariant {
    /// Register-blocked kernels (`general`): any geometry, any adapter.
    General,
    /// 3x3 stride-1 kernels with storage operands (`fast`): vec4 rows (see
    /// `fast::unsupported`).
    Fast,
    /// 3x3 stride-1 kernels with one operand in 64 KiB uniform windows (`uniform`): where
    /// `Fast` applies and the adapter binds 64 KiB uniforms.
    Uniform,
    /// Subgroup-broadcast 3x3 'same' kernels (`subgroup`): width a multiple of 4,
    /// subgroups of >= 8 lanes.
    Subgroup,
    /// Workgroup-memory tiled implicit GEMMs (`tiled`): any geometry.
    Tiled,
    /// Cooperative-matrix implicit GEMMs (`coop`), f16 operands and f32 sums: any geometry,
    /// adapters with 16x16x16 f16 -> f32 cooperative matrices (`Gpu::has_coop`).
    Coop,
}

impl ConvVariant {
    pub const ALL: [ConvVariant; 6] = [ConvVariant::General, ConvVariant::Fast, ConvVariant::Uniform, ConvVariant::Subgroup, ConvVariant::Tiled, ConvVariant::Coop];

    pub fn name(self) -> &'static str {
        match self {
            ConvVariant::General => "general",
            ConvVariant::Fast => "fast",
            ConvVariant::Uniform => "uniform",
            ConvVariant::Subgroup => "subgroup",
            ConvVariant::Tiled => "tiled",
            ConvVariant::Coop => "coop",
        }
    }

    pub fn from_name(name: &str) -> Option<ConvVariant> {
        Self::ALL.into_iter().find(|v| v.name() == name)
    }
}

/// The three passes of a conv layer with a kernel variant each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConvPass {
    Forward,
    BackwardInput,
    BackwardWeight,
}

impl ConvPass {
    pub const ALL: [ConvPass; 3] = [ConvPass::Forward, ConvPass::BackwardInput, ConvPass::BackwardWeight];

    pub fn name(self) -> &'static str {
        match self {
            ConvPass::Forward => "forward",
            ConvPass::BackwardInput => "backward_input",
            ConvPass::BackwardWeight => "backward_weight",
        }
    }
}

/// Which kernels a layer records (`Conv2d::new` takes `MIEN_CONV_KERNELS`, default `Auto`;
/// `new_with` / `with_kernels` force one family for tests and benchmarks, `with_variants`
/// one variant per pass).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ConvKernels {
    /// The autotuner's choice among subgroup (where it applies), fast, tiled and coop (where
    /// the adapter has cooperative matrices) (see `Conv2d::tune`); untuned (small layers,
    /// autotune off): subgroup where it applies, else fast.
    #[default]
    Auto,
    /// The general kernels only.
    General,
    /// Per pass: the uniform-window kernels where they apply, else the fast 3x3 storage
    /// kernels where they apply, else the general ones.
    Fast,
    /// The subgroup kernels for every pass (`subgroup::applicable` must hold, else
    /// planning fails naming the reason).
    Subgroup,
    /// The tiled kernels for every pass: what real GPUs usually prefer.
    Tiled,
    /// The cooperative-matrix kernels for every pass (f16 operands; planning fails, naming
    /// the reason, where the adapter has no cooperative matrices).
    Coop,
}

impl ConvKernels {
    /// `MIEN_CONV_KERNELS=auto|fast|general|tiled|coop` (benchmarks, debugging; default
    /// auto: the autotuner's choice).
    pub fn from_env() -> Result<ConvKernels> {
        Ok(match std::env::var("MIEN_CONV_KERNELS").as_deref() {
            Err(_) | Ok("") | Ok("auto") => ConvKernels::Auto,
            Ok("fast") => ConvKernels::Fast,
            Ok("general") => ConvKernels::General,
            Ok("tiled") => ConvKernels::Tiled,
            Ok("coop") => ConvKernels::Coop,
            Ok(other) => bail!("MIEN_CONV_KERNELS={other:?}: expected auto, fast, general, tiled or coop"),
        })
    }
}

/// One pass's variant with its plan: the buffers its dispatches bind, built when the layer
/// is planned.
enum Plan {
    General(general::Plan),
    Fast(fast::Plan),
    Uniform(uniform::Plan),
    Subgroup(subgroup::Plan),
    Tiled(tiled::Plan),
    Coop(coop::Plan),
}

impl Plan {
    /// The plan of `variant` for `pass` of `conv`; `splits` forces the weight gradient's
    /// partial-sum splits where the variant has them (None: its default). An error naming
    /// the layer and the reason when the variant does not apply.
    fn new(gpu: &Gpu, conv: &Conv2d, pass: ConvPass, variant: ConvVariant, splits: Option<usize>) -> Result<Plan> {
        if let Some(why) = conv.unsupported(gpu, pass, variant) {
            bail!("layer {}: the {} conv kernels do not apply to {}: {why}", conv.name, variant.name(), pass.name());
        }
        Ok(match variant {
            ConvVariant::General => Plan::General(general::Plan::new(gpu, conv, pass, splits)?),
            ConvVariant::Fast => Plan::Fast(fast::Plan::new(gpu, conv, pass, splits)?),
            ConvVariant::Uniform => Plan::Uniform(uniform::Plan::new(gpu, conv, pass)?),
            ConvVariant::Subgroup => Plan::Subgroup(subgroup::Plan::new(gpu, conv, pass, splits)?),
            ConvVariant::Tiled => Plan::Tiled(tiled::Plan::new(gpu, conv, pass, tiled::Tiles::DEFAULT, splits)?),
            ConvVariant::Coop => Plan::Coop(coop::Plan::new(gpu, conv, pass, conv.precision.coop_build(gpu), None, splits)?),
        })
    }

    fn variant(&self) -> ConvVariant {
        match self {
            Plan::General(_) => ConvVariant::General,
            Plan::Fast(_) => ConvVariant::Fast,
            Plan::Uniform(_) => ConvVariant::Uniform,
            Plan::Subgroup(_) => ConvVariant::Subgroup,
            Plan::Tiled(_) => ConvVariant::Tiled,
            Plan::Coop(_) => ConvVariant::Coop,
        }
    }

    /// Partial sums the weight gradient splits into (1: written directly, no reduce).
    fn weight_splits(&self) -> usize {
        match self {
            Plan::General(p) => p.splits(),
            Plan::Fast(p) => p.splits(),
            Plan::Uniform(_) => 1,
            Plan::Subgroup(p) => p.splits(),
            Plan::Tiled(p) => p.splits(),
            Plan::Coop(p) => p.splits(),
        }
    }
}

/// Workgroup size of the 1-D kernels (WG in the shaders; conv2d_backward_bias uses one
/// workgroup of WG_BIAS per output channel).
const WG: u32 = 64;
/// Layers below this many FLOPs per forward pass take the default kernels untimed.
const TUNE_MIN_FLOP: usize = 1 << 26;
/// Batch of the layer copy the autotuner times (cost scales with the batch).
const TUNE_BATCH: usize = 4;
/// Register blocks (CB and PB in conv2d.wgsl, hard-wired as vec4 accumulators): CB channels
/// x PB columns per general / fast forward and backward_input invocation, CB co x PB ci
/// per general weight-gradient invocation.
const CB: usize = 8;
const PB: usize = 4;

/// Mirror of `Pack` in shaders/conv2d.wgsl: conv2d_pack_weights, shared by the variants
/// that repack the weights into blocks of 8 destination channels (`uniform`, `subgroup`).
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

/// The conv2d_pack_weights dispatch writing `total` floats of `packed` (uniform `params`)
/// from `w`.
fn pack_weights(gpu: &Gpu, label: &str, params: &wgpu::Buffer, packed: &Tensor, w: &Tensor, total: usize) -> Result<Dispatch> {
    let groups = gpu.groups_1d(label, total as u64, WG)?;
    Dispatch::new(gpu, label, &CONV2D, "conv2d_pack_weights", &[], &[(16, params.as_entire_binding()), (17, packed.binding()), (2, w.binding())], groups)
}

pub struct Conv2d {
    pub name: String,
    pub cfg: Conv2dConfig,
    /// [N, Cin, H, W].
    pub input_shape: [usize; 4],
    /// [N, Cout, OH, OW].
    pub output_shape: [usize; 4],
    geom: ConvGeom,
    /// `Params` of conv2d.wgsl with the batch rows in one chunk: the general forward and
    /// backward_input kernels, the bias gradient, an unsplit general weight gradient.
    params: wgpu::Buffer,
    /// Forward, backward_input, backward_weight (ConvPass order).
    plans: [Plan; 3],
    /// f32: the autotuner never offers coop; mixed: coop (of `Precision::coop_build`) is the
    /// untuned default and a candidate.
    precision: Precision,
}

impl Conv2d {
    /// Validate `cfg` against `input_shape` = [N, Cin, H, W] and plan the kernels from
    /// `MIEN_CONV_KERNELS` (default `Auto`: see `tune`).
    pub fn new(gpu: &Gpu, name: &str, cfg: Conv2dConfig, input_shape: &[usize]) -> Result<Self> {
        Self::new_in(gpu, name, cfg, input_shape, Precision::F32)
    }

    /// `new` for a network of `precision` (see nn::precision).
    pub fn new_in(gpu: &Gpu, name: &str, cfg: Conv2dConfig, input_shape: &[usize], precision: Precision) -> Result<Self> {
        Self::build(gpu, name, cfg, input_shape, ConvKernels::from_env()?, precision)
    }

    /// `new` with the kernels given (f32).
    pub fn new_with(gpu: &Gpu, name: &str, cfg: Conv2dConfig, input_shape: &[usize], kernels: ConvKernels) -> Result<Self> {
        Self::build(gpu, name, cfg, input_shape, kernels, Precision::F32)
    }

    /// The precision the layer was built for.
    pub fn precision(&self) -> Precision {
        self.precision
    }

    fn build(gpu: &Gpu, name: &str, cfg: Conv2dConfig, input_shape: &[usize], kernels: ConvKernels, precision: Precision) -> Result<Self> {
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
        let geom = ConvGeom::for_layer(name, [n, ci, h, w], cfg.out_channels, cfg.kernel, cfg.stride, cfg.padding)?;
        // The output must fit a binding (counted in u64 before any usize product wraps).
        gpu.check_shape(&format!("layer {name}: output [{n}, {}, {}, {}]", cfg.out_channels, geom.oh, geom.ow), &[n, cfg.out_channels, geom.oh, geom.ow])?;
        // Element counts of every tensor the kernels index must fit in u32.
        u32_of(name, "input elements", geom.x_len())?;
        u32_of(name, "output elements", geom.y_len())?;
        u32_of(name, "weight elements", geom.w_len())?;
        let p = general::params(name, &geom, (1, n * geom.oh))?;
        let mut layer = Conv2d {
            name: name.to_string(),
            cfg,
            input_shape: geom.input_shape(),
            output_shape: geom.output_shape(),
            geom,
            params: gpu.uniform(&format!("{name} params"), &p),
            // Unsplit general kernels need no buffers of their own; `plan` replaces them.
            plans: [(); 3].map(|_| Plan::General(general::Plan::default())),
            precision,
        };
        let variants = layer.choose(gpu, kernels)?;
        layer.plan(gpu, variants, None)?;
        Ok(layer)
    }

    /// The variants of `kernels` for this layer (see `ConvKernels`).
    fn choose(&self, gpu: &Gpu, kernels: ConvKernels) -> Result<[ConvVariant; 3]> {
        use ConvVariant::*;
        Ok(match kernels {
            ConvKernels::Auto => return self.choose(gpu, self.tune(gpu)?),
            ConvKernels::General => [General; 3],
            ConvKernels::Subgroup => [Subgroup; 3],
            ConvKernels::Tiled => [Tiled; 3],
            ConvKernels::Coop => [Coop; 3],
            ConvKernels::Fast => ConvPass::ALL.map(|p| self.first_supported(gpu, p, &[Uniform, Fast, General])),
        })
    }

    /// The first of `variants` that applies to `pass` (General applies to all).
    fn first_supported(&self, gpu: &Gpu, pass: ConvPass, variants: &[ConvVariant]) -> ConvVariant {
        variants.iter().copied().find(|&v| self.supports(gpu, pass, v)).unwrap_or(ConvVariant::General)
    }

    /// Build the plan of every pass (`splits`: see `Plan::new`).
    fn plan(&mut self, gpu: &Gpu, variants: [ConvVariant; 3], splits: Option<usize>) -> Result<()> {
        let [f, bi, bw] = [0, 1, 2].map(|k| Plan::new(gpu, self, ConvPass::ALL[k], variants[k], splits));
        self.plans = [f?, bi?, bw?];
        Ok(())
    }

    /// Why `variant` cannot run `pass` of this layer on `gpu`, or None when it can.
    pub fn unsupported(&self, gpu: &Gpu, pass: ConvPass, variant: ConvVariant) -> Option<String> {
        match variant {
            ConvVariant::General | ConvVariant::Tiled => None,
            ConvVariant::Fast => fast::unsupported(self, pass),
            ConvVariant::Uniform => uniform::unsupported(gpu, self, pass),
            ConvVariant::Subgroup => subgroup::unsupported(gpu, self),
            ConvVariant::Coop => coop::unsupported(gpu, self, pass, self.precision.coop_build(gpu)),
        }
    }

    pub fn supports(&self, gpu: &Gpu, pass: ConvPass, variant: ConvVariant) -> bool {
        self.unsupported(gpu, pass, variant).is_none()
    }

    /// `Auto`: the autotuner's family (`gpu.autotune()`, key "conv NxCIxHxW->CO k.. s..
    /// p..", plus " mixed" for mixed precision) among subgroup (where it applies), fast,
    /// tiled and, in mixed precision, coop, timed by the forward and
    /// weight-gradient passes of a copy of the layer at batch <= TUNE_BATCH (backward_input
    /// shares the forward's design); layers under TUNE_MIN_FLOP and an autotuner that is
    /// off take the default: coop in mixed precision, else subgroup where it applies, else
    /// fast.
    fn tune(&self, gpu: &Gpu) -> Result<ConvKernels> {
        let coop = self.precision.offers_coop() && ConvPass::ALL.iter().all(|&p| self.supports(gpu, p, ConvVariant::Coop));
        let default = if coop {
            ConvKernels::Coop
        } else if subgroup::applicable(gpu, self) {
            ConvKernels::Subgroup
        } else {
            ConvKernels::Fast
        };
        let [n, ci, h, w] = self.input_shape;
        let [_, co, oh, ow] = self.output_shape;
        let (kh, kw) = self.cfg.kernel;
        let flop = 2 * n * oh * ow * co * ci * kh * kw;
        if flop < TUNE_MIN_FLOP || gpu.autotune().mode() == crate::gpu::autotune::Mode::Off {
            return Ok(default);
        }
        let mut cands = vec![];
        if subgroup::applicable(gpu, self) {
            cands.push(("subgroup", ConvKernels::Subgroup));
        }
        cands.extend([("fast", ConvKernels::Fast), ("tiled", ConvKernels::Tiled)]);
        if coop {
            cands.push(("coop", ConvKernels::Coop));
        }
        let names: Vec<&str> = cands.iter().map(|c| c.0).collect();
        let default_name = cands.iter().find(|c| c.1 == default).expect("the default is a candidate").0;
        let (pt, pl) = self.padding();
        let key = format!("conv {n}x{ci}x{h}x{w}->{co} k{kh}x{kw} s{}x{} p{pt}x{pl}{}", self.cfg.stride.0, self.cfg.stride.1, self.precision.key_suffix());
        let shape = [n.min(TUNE_BATCH), ci, h, w];
        let scratch: OnceLock<(Tensor, Tensor, Tensor, Tensor, Tensor)> = OnceLock::new();
        let choice = gpu.autotune().choose(&key, &names, default_name, |name, best| {
            let kernels = cands.iter().find(|c| c.0 == name).expect("a candidate").1;
            let twin = Conv2d::build(gpu, &format!("{} (autotune {name})", self.name), self.cfg, &shape, kernels, self.precision)?;
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

    /// Re-plan the layer with `kernels` (see `ConvKernels`); for tests and benchmarks.
    /// Dispatches recorded before keep binding the old plan's buffers (alive through their
    /// bind groups, no longer counted in gpu.mem()): re-plan before recording.
    pub fn with_kernels(mut self, gpu: &Gpu, kernels: ConvKernels) -> Result<Self> {
        let variants = self.choose(gpu, kernels)?;
        self.plan(gpu, variants, None)?;
        Ok(self)
    }

    /// Re-plan the layer with one variant per pass (ConvPass order); an error naming the
    /// layer, pass and reason where one does not apply. For tests and benchmarks.
    pub fn with_variants(mut self, gpu: &Gpu, variants: [ConvVariant; 3]) -> Result<Self> {
        self.plan(gpu, variants, None)?;
        Ok(self)
    }

    /// Re-plan as `ConvKernels::Fast`, but with the weight gradient on the storage-operand
    /// kernels (fast where they apply, else general) summing `splits` chunks of the batch
    /// rows (clamped to [1, N*OH]); for tests.
    pub fn with_weight_splits(mut self, gpu: &Gpu, splits: usize) -> Result<Self> {
        let [f, bi, _] = self.choose(gpu, ConvKernels::Fast)?;
        let bw = self.first_supported(gpu, ConvPass::BackwardWeight, &[ConvVariant::Fast]);
        self.plan(gpu, [f, bi, bw], Some(splits))?;
        Ok(self)
    }

    /// The variants of forward, backward_input and backward_weight (ConvPass order).
    pub fn variants(&self) -> [ConvVariant; 3] {
        [0, 1, 2].map(|k| self.plans[k].variant())
    }

    /// "forward uniform, backward_input uniform, backward_weight fast".
    pub fn describe_variants(&self) -> String {
        ConvPass::ALL.iter().zip(self.variants()).map(|(p, v)| format!("{} {}", p.name(), v.name())).collect::<Vec<_>>().join(", ")
    }

    /// Partial sums of the weight gradient (1: written directly, no reduce pass).
    pub fn weight_splits(&self) -> usize {
        self.plans[2].weight_splits()
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
        (self.geom.pad_top, self.geom.pad_left)
    }

    /// The resolved geometry (the reference's terms).
    pub fn geom(&self) -> ConvGeom {
        self.geom
    }

    fn len(shape: &[usize; 4]) -> usize {
        shape.iter().product()
    }

    /// Workgroups of `invocations` threads of WG, 2-D past the per-dimension limit.
    fn groups(&self, gpu: &Gpu, entry: &str, invocations: usize) -> Result<[u32; 3]> {
        gpu.groups_1d(&format!("layer {} {entry}", self.name), invocations as u64, WG)
    }

    /// Grid [X, ceil(channels / CB), Z] of the general / fast forward and backward_input
    /// kernels: `invocations` pixel blocks per channel block over x, spilling into z past
    /// the per-dimension limit.
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

    /// backward_weight's operands against the layer.
    fn check_backward_weight(&self, dw: &Tensor, dy: &Tensor, x: &Tensor) -> Result<()> {
        dw.expect_shape(&self.name, "weight gradient", &self.weight_shape())?;
        dy.expect_len(&self.name, "output gradient", Self::len(&self.output_shape))?;
        x.expect_len(&self.name, "saved input", Self::len(&self.input_shape))
    }

    /// y = conv(x, w) (+ b) with the forward variant. Overwrites y. `b` is required iff
    /// `cfg.bias`.
    pub fn forward_dispatches(&self, gpu: &Gpu, x: &Tensor, w: &Tensor, b: Option<&Tensor>, y: &Tensor) -> Result<Vec<Dispatch>> {
        self.check_forward(x, w, b, y)?;
        match &self.plans[0] {
            Plan::General(_) => general::forward(gpu, self, x, w, b, y),
            Plan::Fast(p) => fast::forward(gpu, self, p, x, w, b, y),
            Plan::Uniform(p) => uniform::forward(gpu, self, p, x, w, b, y),
            Plan::Subgroup(p) => subgroup::forward(gpu, self, p, x, w, b, y),
            Plan::Tiled(p) => tiled::forward(gpu, self, p, x, w, b, y),
            Plan::Coop(p) => coop::forward(gpu, self, p, x, w, b, y),
        }
    }

    /// y = act(conv(x, w) + b) in one pass where the forward variant is subgroup (its
    /// epilogue applies the activation), else None: run `forward_dispatches` and the
    /// activation separately. Overwrites y.
    pub fn forward_act_dispatches(&self, gpu: &Gpu, x: &Tensor, w: &Tensor, b: &Tensor, y: &Tensor, act: subgroup::Epilogue) -> Result<Option<Vec<Dispatch>>> {
        let Plan::Subgroup(p) = &self.plans[0] else { return Ok(None) };
        x.expect_shape(&self.name, "input", &self.input_shape)?;
        w.expect_shape(&self.name, "weight", &self.weight_shape())?;
        y.expect_len(&self.name, "output", Self::len(&self.output_shape))?;
        b.expect_shape(&self.name, "bias", &self.bias_shape())?;
        subgroup::forward_act(gpu, self, p, x, w, b, y, act).map(Some)
    }

    /// Where the forward variant has the BatchNorm statistics epilogue (subgroup): how many
    /// partials per channel it writes (G of `forward_stats_dispatches`); else None.
    pub fn stats_groups(&self, gpu: &Gpu) -> Result<Option<usize>> {
        match &self.plans[0] {
            Plan::Subgroup(_) => subgroup::stats_groups(gpu, self).map(Some),
            _ => Ok(None),
        }
    }

    /// y = conv(x, w) (+ b) and the partial statistics of y for the BatchNorm after it
    /// (`partials` [CO, G, 3] = (count, mean, M2) per channel and workgroup, G =
    /// `stats_groups`; BatchNorm::stats_from_partials merges them) where the forward variant
    /// is subgroup, else None: run `forward_dispatches` and the BatchNorm's own statistics.
    /// Overwrites y and partials.
    pub fn forward_stats_dispatches(&self, gpu: &Gpu, x: &Tensor, w: &Tensor, b: Option<&Tensor>, y: &Tensor, partials: &Tensor) -> Result<Option<Vec<Dispatch>>> {
        let Plan::Subgroup(p) = &self.plans[0] else { return Ok(None) };
        self.check_forward(x, w, b, y)?;
        subgroup::forward_stats(gpu, self, p, x, w, b, y, partials).map(Some)
    }

    /// dx = conv_transpose(dy, w) with the backward_input variant. Overwrites dx.
    pub fn backward_input_dispatches(&self, gpu: &Gpu, dx: &Tensor, dy: &Tensor, w: &Tensor) -> Result<Vec<Dispatch>> {
        self.check_backward_input(dx, dy, w)?;
        match &self.plans[1] {
            Plan::General(_) => general::backward_input(gpu, self, dx, dy, w),
            Plan::Fast(p) => fast::backward_input(gpu, self, p, dx, dy, w),
            Plan::Uniform(p) => uniform::backward_input(gpu, self, p, dx, dy, w),
            Plan::Subgroup(p) => subgroup::backward_input(gpu, self, p, dx, dy, w),
            Plan::Tiled(p) => tiled::backward_input(gpu, self, p, dx, dy, w),
            Plan::Coop(p) => coop::backward_input(gpu, self, p, dx, dy, w),
        }
    }

    /// dw[co,ci,ky,kx] = sum over n, oy, ox of dy * x with the backward_weight variant.
    /// Overwrites dw, or adds to it when `accumulate`. With `weight_splits() > 1`, partial
    /// sums into the plan's scratch buffer, then a reduce.
    pub fn backward_weight(&self, gpu: &Gpu, dw: &Tensor, dy: &Tensor, x: &Tensor, accumulate: bool) -> Result<Vec<Dispatch>> {
        self.check_backward_weight(dw, dy, x)?;
        match &self.plans[2] {
            Plan::General(p) => general::backward_weight(gpu, self, p, dw, dy, x, accumulate),
            Plan::Fast(p) => fast::backward_weight(gpu, self, p, dw, dy, x, accumulate),
            Plan::Uniform(p) => uniform::backward_weight(gpu, self, p, dw, dy, x, accumulate),
            Plan::Subgroup(p) => subgroup::backward_weight(gpu, self, p, dw, dy, x, accumulate),
            Plan::Tiled(p) => tiled::backward_weight(gpu, self, p, dw, dy, x, accumulate),
            Plan::Coop(p) => coop::backward_weight(gpu, self, p, dw, dy, x, accumulate),
        }
    }

    /// db[co] = sum over n, oy, ox of dy. Overwrites db, or adds to it when `accumulate`.
    pub fn backward_bias(&self, gpu: &Gpu, db: &Tensor, dy: &Tensor, accumulate: bool) -> Result<Dispatch> {
        ensure!(self.cfg.bias, "layer {}: configured without bias, so it has no bias gradient", self.name);
        db.expect_shape(&self.name, "bias gradient", &self.bias_shape())?;
        dy.expect_len(&self.name, "output gradient", Self::len(&self.output_shape))?;
        general::backward_bias(gpu, self, db, dy, accumulate)
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
