//! Dense (fully connected) layer: y[N, O] = x[N, I] W^T + b, W [O, I] (PyTorch order),
//! b [O]. Kernels: shaders/dense.wgsl. Reference: src/reference/dense.rs.
//!
//! The input may have any shape holding N*I values (`[N, C, H, W]` after a conv block):
//! flatten is a view, so only the element count is checked.
//!
//! Variants of the three GEMM passes (`DenseVariant`): blocked, uniform-window, subgroup and
//! tiled here; `coop.rs` the cooperative-matrix GEMMs, `split.rs` the depth-split tiled GEMM.

pub mod coop;
pub mod split;

use super::layer::{Init, Io, LayerOp, Mode, ParamDecl};
use super::{accumulate_constant, u32_of};
use coop::CoopDense;
use split::SplitDense;
use crate::gpu::autotune::time_candidate;
use crate::gpu::shaders::{DENSE, DENSE_SUBGROUP};
use crate::nn::precision::Precision;
use crate::gpu::{Dispatch, Gpu, Tensor};
use crate::{bail, ensure, Result};

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    n: u32,
    inf: u32,
    outf: u32,
    has_bias: u32,
}

/// Invocations per workgroup (the shader's `WG` override).
const WG: u32 = 64;
/// Largest register block side (the shader's `MAXT`): blocks are up to 4 x 4 outputs.
const MAX_TILE: usize = 4;

/// A kernel family for one GEMM pass (forward, dx or dW) of the `*_dispatches` methods.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DenseVariant {
    /// Register-blocked single dispatch (`dense_forward`, `dense_backward_input`,
    /// `dense_backward_weight`): any shape, any adapter.
    Blocked,
    /// Uniform-window GEMMs (`dense_pack`, then `dense_u_dot` / `dense_u_axpy` per 64 KiB
    /// chunk): in_features % 4 == 0 and 64 KiB uniform bindings.
    Uniform,
    /// Subgroup-broadcast GEMM (shaders/dense_subgroup.wgsl), 8 rows x 4 columns per lane:
    /// subgroups of >= 8 lanes; any shape.
    Subgroup,
    /// The same with 8 rows x 8 columns per lane.
    SubgroupWide,
    /// The same with 16 rows x 4 columns per lane.
    SubgroupTall,
    /// Workgroup-memory tiled GEMM (`dense_tiled`, 64 x 64 tiles, 16 x 16 invocations).
    Tiled,
    /// The same with the reduction split over workgroups into partials and a reduce
    /// (nn::dense::split): few rows and long reductions (4608 -> 512 at batch 64).
    TiledSplit,
    /// Cooperative-matrix GEMMs (tensor cores; nn::dense::coop, shaders/dense_coop.wgsl), f16
    /// operands and f32 sums, depth split into partials: adapters with 16x16x16 f16 -> f32
    /// cooperative matrices (`Gpu::has_coop`).
    Coop,
}

impl DenseVariant {
    /// In the order the autotuner times them (fast ones first, so that clearly slower ones
    /// are cut after one run).
    pub const ALL: [DenseVariant; 8] = [
        DenseVariant::Coop,
        DenseVariant::SubgroupTall,
        DenseVariant::SubgroupWide,
        DenseVariant::Subgroup,
        DenseVariant::Uniform,
        DenseVariant::TiledSplit,
        DenseVariant::Tiled,
        DenseVariant::Blocked,
    ];

    pub fn name(self) -> &'static str {
        match self {
            DenseVariant::Blocked => "blocked",
            DenseVariant::Uniform => "uniform",
            DenseVariant::Subgroup => "subgroup",
            DenseVariant::SubgroupWide => "subgroup-wide",
            DenseVariant::SubgroupTall => "subgroup-tall",
            DenseVariant::Tiled => "tiled",
            DenseVariant::TiledSplit => "tiled-split",
            DenseVariant::Coop => "coop",
        }
    }

    pub fn from_name(name: &str) -> Option<DenseVariant> {
        Self::ALL.into_iter().find(|v| v.name() == name)
    }
}

/// The three GEMM passes of a dense layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DensePass {
    Forward,
    BackwardInput,
    BackwardWeight,
}

impl DensePass {
    pub const ALL: [DensePass; 3] = [DensePass::Forward, DensePass::BackwardInput, DensePass::BackwardWeight];

    pub fn name(self) -> &'static str {
        match self {
            DensePass::Forward => "forward",
            DensePass::BackwardInput => "backward_input",
            DensePass::BackwardWeight => "backward_weight",
        }
    }
}

/// How `Dense` picks the variant of each pass. `Auto` (the default): the autotuner
/// (`gpu.autotune()`, key "dense <pass> NxI->O", plus " mixed" in mixed precision) among the variants this adapter and shape
/// support, for layers of at least `TUNE_MIN_FLOP` per pass; otherwise, and with the
/// autotuner off, `Dense::default_variant`. `Blocked`: the register-blocked kernels.
/// `Only(v)`: `v` for every pass (an error when the adapter or shape does not support it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DenseKernels {
    #[default]
    Auto,
    Blocked,
    Only(DenseVariant),
}

/// Passes smaller than this (2 N I O multiply-adds) are not worth timing: they take the
/// default variant.
pub const TUNE_MIN_FLOP: usize = 1 << 24;

/// Mirror of `Tiled` in shaders/dense.wgsl.
#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
pub(super) struct TiledParams {
    pub rows: u32,
    pub cols: u32,
    pub red: u32,
    sar: u32,
    sak: u32,
    sbk: u32,
    sbc: u32,
    has_bias: u32,
    /// Depth per split (`red` with one split) and the number of splits.
    pub kchunk: u32,
    pub splits: u32,
    _pad: [u32; 2],
}

impl TiledParams {
    /// The GEMM of each pass (DensePass order) over a batch of `n`, `i` inputs and `o`
    /// outputs, unsplit: C[r, c] = sum_k A(r, k) B(k, c) with A(r, k) = a[r sar + k sak],
    /// B(k, c) = b[k sbk + c sbc] (see shaders/dense.wgsl).
    pub(super) fn passes(n: u32, i: u32, o: u32, bias: bool) -> [TiledParams; 3] {
        let t = |rows, cols, red, sar, sak, sbk, sbc, has_bias: bool| TiledParams { rows, cols, red, sar, sak, sbk, sbc, has_bias: has_bias as u32, kchunk: red, splits: 1, _pad: [0; 2] };
        [t(n, o, i, i, 1, 1, i, bias), t(n, i, o, o, 1, i, 1, false), t(o, i, n, 1, o, i, 1, false)]
    }
}

/// Invocations per side of a `dense_tiled` workgroup (each computes 4 x 4 outputs).
pub(super) const TILE_T: u32 = 16;

/// Random operands of a layer's shape, for timing candidates.
struct Scratch {
    x: Tensor,
    w: Tensor,
    b: Tensor,
    y: Tensor,
    dy: Tensor,
    dx: Tensor,
    dw: Tensor,
}

impl Scratch {
    fn new(gpu: &Gpu, l: &Dense) -> Result<Scratch> {
        let (n, i, o) = (l.batch, l.in_features, l.out_features);
        let t = |label: &str, shape: &[usize]| -> Result<Tensor> {
            let len: usize = shape.iter().product();
            let v: Vec<f32> = (0..len).map(|k| ((k * 7919 % 1000) as f32) * 1e-3 - 0.5).collect();
            gpu.upload(&format!("{} autotune {label}", l.name), shape, &v)
        };
        Ok(Scratch { x: t("x", &[n, i])?, w: t("w", &[o, i])?, b: t("b", &[o])?, y: t("y", &[n, o])?, dy: t("dy", &[n, o])?, dx: t("dx", &[n, i])?, dw: t("dw", &[o, i])? })
    }
}

/// Mirror of `Pack` in shaders/dense.wgsl.
#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct PackParams {
    rows: u32,
    red: u32,
    rp: u32,
    kb: u32,
    nrb: u32,
    sk: u32,
    sr: u32,
    total: u32,
}

/// Mirror of `Chunk` in shaders/dense.wgsl.
#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct ChunkParams {
    rows: u32,
    cols: u32,
    k0: u32,
    kn: u32,
    r0: u32,
    rp: u32,
    ld: u32,
    bias: u32,
}

/// Floats per uniform window (the shader's CHUNK; 64 KiB).
const CHUNK: usize = 16384;

/// One pass of the uniform-operand GEMM: the packed operand (a STORAGE | UNIFORM buffer
/// made here, outside Gpu::tensor as tensors are storage-only, so not counted in
/// gpu.mem()), the pack kernel's uniform, and per chunk (Chunk uniform, first reduction
/// chunk's parameters) in window order.
struct UPass {
    pack: wgpu::Buffer,
    pack_params: wgpu::Buffer,
    total: usize,
    chunks: Vec<(wgpu::Buffer, ChunkParams)>,
    /// Row blocks of TMU per chunk (grid y).
    row_blocks: u32,
}

/// A pass computing C [rows, cols] = sum over k < red of U[k, r] * S(k, c), U[k, r] =
/// src[k * sk + r * sr]; `ld` the S stride. None when the adapter's uniform bindings are
/// smaller than 64 KiB or a buffer would exceed the storage binding limit.
#[allow(clippy::too_many_arguments)]
fn upass(gpu: &Gpu, name: &str, pass: &str, rows: usize, cols: usize, red: usize, sk: usize, sr: usize, ld: usize) -> Option<UPass> {
    let l = gpu.limits();
    if (l.max_uniform_buffer_binding_size as usize) < CHUNK * 4 {
        return None;
    }
    // Rows per chunk: all rows up to 64 (more workgroups per dispatch than longer
    // reductions would give), more when the reduction is short (dW: the batch), <= 1024.
    let rp = rows.div_ceil(16) * 16;
    let rp = rp.min((CHUNK / red / 16 * 16).max(64)).min(1024);
    // A multiple of 4 (dense_u_dot reads S as vec4 along k).
    let kb = (CHUNK / rp / 4 * 4).min(red);
    let nrb = rows.div_ceil(rp);
    let nkb = red.div_ceil(kb);
    let total = nrb * nkb * CHUNK;
    let bytes = (total * 4) as u64;
    if bytes > l.max_buffer_size || bytes > l.max_storage_buffer_binding_size || total > u32::MAX as usize {
        return None;
    }
    let pack = gpu.device.create_buffer(&wgpu::BufferDescriptor {
        label: Some(&format!("{name} {pass} packed operand")),
        size: bytes,
        usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::UNIFORM,
        mapped_at_creation: false,
    });
    let pp = PackParams { rows: rows as u32, red: red as u32, rp: rp as u32, kb: kb as u32, nrb: nrb as u32, sk: sk as u32, sr: sr as u32, total: total as u32 };
    let pack_params = gpu.uniform(&format!("{name} {pass} pack params"), &pp);
    let mut chunks = Vec::new();
    for kc in 0..nkb {
        for rc in 0..nrb {
            let k0 = kc * kb;
            let cp = ChunkParams {
                rows: rows as u32,
                cols: cols as u32,
                k0: k0 as u32,
                kn: kb.min(red - k0) as u32,
                r0: (rc * rp) as u32,
                rp: rp as u32,
                ld: ld as u32,
                bias: 0,
            };
            chunks.push((gpu.uniform(&format!("{name} {pass} chunk {kc}.{rc}"), &cp), cp));
        }
    }
    Some(UPass { pack, pack_params, total, chunks, row_blocks: (rp / TMU) as u32 })
}

/// Rows per invocation of the uniform-operand GEMMs (the shader's TMU).
const TMU: usize = 16;

/// The three uniform-operand passes of a layer.
struct UPlan {
    fwd: UPass,
    /// The forward's chunk uniforms with `bias` set on the first reduction chunk.
    fwd_bias: Vec<wgpu::Buffer>,
    bin: UPass,
    bw: UPass,
}

pub struct Dense {
    pub name: String,
    pub batch: usize,
    pub in_features: usize,
    pub out_features: usize,
    pub bias: bool,
    params: wgpu::Buffer,
    uplan: Option<UPlan>,
    /// The cooperative-matrix plan (all three passes) while a pass uses or times it.
    coop: Option<CoopDense>,
    /// The depth-split tiled plan (partials buffers) while a pass uses or times it.
    split: Option<SplitDense>,
    /// Variant of forward, dx, dW (DensePass order).
    variants: [DenseVariant; 3],
    /// `dense_tiled` parameters of forward, dx, dW.
    tiled: [wgpu::Buffer; 3],
    /// 16 bytes bound to the vec4 bindings of the subgroup kernels when they use scalar
    /// loads (unaligned shapes).
    dummy: wgpu::Buffer,
    /// f32: the autotuner never offers coop; mixed: coop (of `Precision::coop_build`) is the
    /// untuned default and a candidate.
    precision: Precision,
}

impl Dense {
    /// `input_shape` is `[N, ...]` with the product of the dims after N equal to
    /// `in_features` (`[N, I]`, or `[N, C, H, W]` flattened by view). `kernels` picks the
    /// variant of each pass of the `*_dispatches` methods (see `DenseKernels`).
    pub fn new_with(gpu: &Gpu, name: &str, in_features: usize, out_features: usize, bias: bool, input_shape: &[usize], kernels: DenseKernels) -> Result<Self> {
        Self::build(gpu, name, [in_features, out_features], bias, input_shape, kernels, Precision::F32)
    }

    /// `new` for a network of `precision` (see nn::precision).
    pub fn new_in(gpu: &Gpu, name: &str, in_features: usize, out_features: usize, bias: bool, input_shape: &[usize], precision: Precision) -> Result<Self> {
        Self::build(gpu, name, [in_features, out_features], bias, input_shape, DenseKernels::Auto, precision)
    }

    /// The precision the layer was built for.
    pub fn precision(&self) -> Precision {
        self.precision
    }

    /// `features`: [in, out].
    fn build(gpu: &Gpu, name: &str, features: [usize; 2], bias: bool, input_shape: &[usize], kernels: DenseKernels, precision: Precision) -> Result<Self> {
        let [in_features, out_features] = features;
        ensure!(in_features > 0 && out_features > 0, "layer {name}: in_features={in_features} and out_features={out_features} must be positive");
        ensure!(input_shape.len() >= 2, "layer {name}: input shape {input_shape:?} needs at least [N, features]");
        ensure!(input_shape.iter().all(|&d| d > 0), "layer {name}: input shape {input_shape:?} has a zero dimension");
        let batch = input_shape[0];
        let per_sample: usize = input_shape[1..].iter().product();
        ensure!(
            per_sample == in_features,
            "layer {name}: input shape {input_shape:?} holds {per_sample} features per sample, expected in_features={in_features}"
        );
        // Every flat index the kernels form must fit in u32.
        u32_of(name, "batch * in_features", batch * in_features)?;
        u32_of(name, "batch * out_features", batch * out_features)?;
        u32_of(name, "out_features * in_features", out_features * in_features)?;
        let p = Params { n: batch as u32, inf: in_features as u32, outf: out_features as u32, has_bias: bias as u32 };
        let params = gpu.uniform(&format!("{name} params"), &p);
        let (n, i, o) = (batch as u32, in_features as u32, out_features as u32);
        let tiled = TiledParams::passes(n, i, o, bias).map(|t| gpu.uniform(&format!("{name} tiled params"), &t));
        let dummy = gpu.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some(&format!("{name} unused vec4 binding")),
            size: 16,
            usage: wgpu::BufferUsages::STORAGE,
            mapped_at_creation: false,
        });
        let layer = Dense {
            name: name.to_string(),
            batch,
            in_features,
            out_features,
            bias,
            params,
            uplan: None,
            coop: None,
            split: None,
            variants: [DenseVariant::Blocked; 3],
            tiled,
            dummy,
            precision,
        };
        layer.with_kernels(gpu, kernels)
    }

    /// `new` with the variants picked by the autotuner (`DenseKernels::Auto`).
    pub fn new(gpu: &Gpu, name: &str, in_features: usize, out_features: usize, bias: bool, input_shape: &[usize]) -> Result<Self> {
        Self::new_with(gpu, name, in_features, out_features, bias, input_shape, DenseKernels::Auto)
    }

    /// Whether `variant` can run `pass` of this layer on `gpu`.
    pub fn supports(&self, gpu: &Gpu, variant: DenseVariant) -> bool {
        let l = gpu.limits();
        match variant {
            DenseVariant::Blocked => true,
            DenseVariant::Uniform => self.in_features.is_multiple_of(4) && l.max_uniform_buffer_binding_size as usize >= CHUNK * 4,
            DenseVariant::Subgroup | DenseVariant::SubgroupWide | DenseVariant::SubgroupTall => gpu.subgroup_min_size() >= Some(8),
            DenseVariant::Tiled | DenseVariant::TiledSplit => l.max_compute_invocations_per_workgroup >= TILE_T * TILE_T && l.max_compute_workgroup_storage_size >= 8192,
            DenseVariant::Coop => self.precision.coop_build(gpu).unavailable(gpu).is_none(),
        }
    }

    /// The variant used without timing: coop in mixed precision where it runs, else subgroup where the adapter has subgroups of >= 8
    /// lanes (16 rows per workgroup from batch 16 on, the fastest on lavapipe at the
    /// seed-dnn shapes; else 8), else the uniform-window GEMM where the shape allows, else
    /// the blocked kernels.
    pub fn default_variant(&self, gpu: &Gpu) -> DenseVariant {
        if self.precision.offers_coop() && self.supports(gpu, DenseVariant::Coop) {
            DenseVariant::Coop
        } else if self.supports(gpu, DenseVariant::Subgroup) {
            if self.batch >= 16 {
                DenseVariant::SubgroupTall
            } else {
                DenseVariant::Subgroup
            }
        } else if self.supports(gpu, DenseVariant::Uniform) {
            DenseVariant::Uniform
        } else {
            DenseVariant::Blocked
        }
    }

    /// The variants of forward, dx and dW (DensePass order).
    pub fn variants(&self) -> [DenseVariant; 3] {
        self.variants
    }

    /// "forward subgroup, backward_input subgroup-wide, backward_weight uniform".
    pub fn describe_variants(&self) -> String {
        DensePass::ALL.iter().zip(self.variants).map(|(p, v)| format!("{} {}", p.name(), v.name())).collect::<Vec<_>>().join(", ")
    }

    /// Pick the variants again (`Auto`: autotuner; see `DenseKernels`).
    pub fn with_kernels(mut self, gpu: &Gpu, kernels: DenseKernels) -> Result<Self> {
        let default = self.default_variant(gpu);
        self.variants = match kernels {
            DenseKernels::Blocked => [DenseVariant::Blocked; 3],
            DenseKernels::Only(v) => {
                ensure!(
                    self.supports(gpu, v),
                    "layer {}: dense variant {} is not available here (uniform needs in_features % 4 == 0, subgroup needs subgroups of >= 8 lanes, coop cooperative matrices)",
                    self.name,
                    v.name()
                );
                [v; 3]
            }
            DenseKernels::Auto => {
                let flop = 2 * self.batch * self.in_features * self.out_features;
                if flop < TUNE_MIN_FLOP || gpu.autotune().mode() == crate::gpu::autotune::Mode::Off {
                    [default; 3]
                } else {
                    let offered = |v: DenseVariant| v != DenseVariant::Coop || self.precision.offers_coop();
                    let cands: Vec<DenseVariant> = DenseVariant::ALL.into_iter().filter(|&v| offered(v) && self.supports(gpu, v)).collect();
                    // The uniform candidate needs its plan while it is timed.
                    if cands.contains(&DenseVariant::Uniform) {
                        self.uplan = self.make_uplan(gpu);
                    }
                    if cands.contains(&DenseVariant::Coop) {
                        self.coop = CoopDense::new(gpu, &self, self.precision.coop_build(gpu)).ok();
                    }
                    if cands.contains(&DenseVariant::TiledSplit) {
                        self.split = self.make_split(gpu).ok();
                    }
                    let mut scratch = None;
                    let mut v = [default; 3];
                    for (k, pass) in DensePass::ALL.into_iter().enumerate() {
                        v[k] = self.tune(gpu, pass, &cands, default, &mut scratch);
                    }
                    v
                }
            }
        };
        self.uplan = if self.variants.contains(&DenseVariant::Uniform) { self.make_uplan(gpu) } else { None };
        self.coop = if self.variants.contains(&DenseVariant::Coop) { Some(CoopDense::new(gpu, &self, self.precision.coop_build(gpu))?) } else { None };
        self.split = if self.variants.contains(&DenseVariant::TiledSplit) { Some(self.make_split(gpu)?) } else { None };
        if self.uplan.is_none() {
            // No plan (a buffer over the binding limit): the blocked kernels instead.
            for v in &mut self.variants {
                if *v == DenseVariant::Uniform {
                    ensure!(kernels != DenseKernels::Only(DenseVariant::Uniform), "layer {}: the uniform-window GEMM does not fit this adapter's limits", self.name);
                    *v = DenseVariant::Blocked;
                }
            }
        }
        log::info!("layer {}: {}", self.name, self.describe_variants());
        Ok(self)
    }

    /// The autotuner's choice for `pass` among `cands`.
    fn tune(&self, gpu: &Gpu, pass: DensePass, cands: &[DenseVariant], default: DenseVariant, scratch: &mut Option<Scratch>) -> DenseVariant {
        let key = format!("dense {} {}x{}->{}{}", pass.name(), self.batch, self.in_features, self.out_features, self.precision.key_suffix());
        let names: Vec<&str> = cands.iter().map(|v| v.name()).collect();
        let choice = gpu.autotune().choose(&key, &names, default.name(), |name, best| {
            let v = DenseVariant::from_name(name).expect("a candidate name");
            if scratch.is_none() {
                *scratch = Some(Scratch::new(gpu, self)?);
            }
            let s = scratch.as_ref().unwrap();
            let ds = match pass {
                DensePass::Forward => self.forward_variant(gpu, v, &s.x, &s.w, self.bias.then_some(&s.b), &s.y)?,
                DensePass::BackwardInput => self.backward_input_variant(gpu, v, &s.dx, &s.dy, &s.w)?,
                DensePass::BackwardWeight => self.backward_weight_variant(gpu, v, &s.dw, &s.dy, &s.x, false)?,
            };
            let refs: Vec<&Dispatch> = ds.iter().collect();
            time_candidate(gpu, &refs, best)
        });
        DenseVariant::from_name(&choice).unwrap_or(default)
    }

    fn make_uplan(&self, gpu: &Gpu) -> Option<UPlan> {
        let (n, i, o) = (self.batch, self.in_features, self.out_features);
        if i % 4 != 0 {
            return None;
        }
        let name = &self.name;
        // forward: C = y [N, O], U = x^T (k = i: sk 1, sr I), S = W (ld I).
        let fwd = upass(gpu, name, "forward", n, o, i, 1, i, i)?;
        let fwd_bias = fwd
            .chunks
            .iter()
            .map(|(_, cp)| gpu.uniform(&format!("{name} forward chunk k0={} r0={} (bias)", cp.k0, cp.r0), &ChunkParams { bias: (cp.k0 == 0) as u32, ..*cp }))
            .collect();
        // backward_input: C = dx [N, I], U = dy^T (k = o: sk 1, sr O), S = W (ld I).
        let bin = upass(gpu, name, "backward_input", n, i, o, 1, o, i)?;
        // backward_weight: C = dW [O, I], U = dy (k = n: sk O, sr 1), S = x (ld I).
        let bw = upass(gpu, name, "backward_weight", o, i, n, o, 1, i)?;
        Some(UPlan { fwd, fwd_bias, bin, bw })
    }

    /// Whether any pass uses the uniform-window GEMMs.
    pub fn uniform_path(&self) -> bool {
        self.variants.contains(&DenseVariant::Uniform)
    }

    /// The pack dispatch and one GEMM dispatch per chunk of a uniform-operand pass.
    #[allow(clippy::too_many_arguments)]
    fn u_dispatches(
        &self,
        gpu: &Gpu,
        up: &UPass,
        chunk_params: &[&wgpu::Buffer],
        entry: &str,
        src: &Tensor,
        s: &Tensor,
        c: &Tensor,
        bias: Option<&Tensor>,
        col_groups: usize,
        accumulate: bool,
    ) -> Result<Vec<Dispatch>> {
        let label = format!("{} dense_pack ({entry})", self.name);
        let groups = gpu.groups_1d(&label, up.total as u64, WG)?;
        let whole = wgpu::BindingResource::Buffer(wgpu::BufferBinding { buffer: &up.pack, offset: 0, size: None });
        let mut out = vec![Dispatch::new(gpu, &label, &DENSE, "dense_pack", &[("WG", WG as f64)], &[(11, up.pack_params.as_entire_binding()), (10, whole), (9, src.binding())], groups)?];
        let gx = u32_of(&self.name, "column groups", col_groups)?;
        for (ci, ((_, chunk), cp)) in up.chunks.iter().zip(chunk_params).enumerate() {
            let window = wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                buffer: &up.pack,
                offset: (ci * CHUNK * 4) as u64,
                size: std::num::NonZeroU64::new((CHUNK * 4) as u64),
            });
            let acc = accumulate || chunk.k0 > 0;
            let constants = [("WG", WG as f64), ("TMU", TMU as f64), accumulate_constant(acc)];
            let mut b = vec![(13, cp.as_entire_binding()), (12, window), (14, s.binding()), (15, c.binding())];
            if let Some(bias) = bias {
                b.push((3, bias.binding()));
            }
            out.push(Dispatch::new(gpu, &format!("{} {entry} (chunk {ci})", self.name), &DENSE, entry, &constants, &b, [gx, up.row_blocks, 1])?);
        }
        Ok(out)
    }

    /// y = x W^T + b as a dispatch list, with the layer's forward variant (`variants`).
    /// Same contract as `forward`.
    pub fn forward_dispatches(&self, gpu: &Gpu, x: &Tensor, w: &Tensor, b: Option<&Tensor>, y: &Tensor) -> Result<Vec<Dispatch>> {
        self.forward_variant(gpu, self.variants[0], x, w, b, y)
    }

    /// dx = dy W as a dispatch list, with the layer's dx variant. Same contract as
    /// `backward_input`.
    pub fn backward_input_dispatches(&self, gpu: &Gpu, dx: &Tensor, dy: &Tensor, w: &Tensor) -> Result<Vec<Dispatch>> {
        self.backward_input_variant(gpu, self.variants[1], dx, dy, w)
    }

    /// dW = dy^T x as a dispatch list, with the layer's dW variant. Same contract as
    /// `backward_weight`: overwrites dW, or adds to it when `accumulate`.
    pub fn backward_weight_dispatches(&self, gpu: &Gpu, dw: &Tensor, dy: &Tensor, x: &Tensor, accumulate: bool) -> Result<Vec<Dispatch>> {
        self.backward_weight_variant(gpu, self.variants[2], dw, dy, x, accumulate)
    }

    fn coop_plan(&self) -> Result<&CoopDense> {
        self.coop.as_ref().ok_or_else(|| crate::Error::new(format!("layer {}: dense variant coop has no plan (cooperative matrices unavailable, or not planned)", self.name)))
    }

    fn make_split(&self, gpu: &Gpu) -> Result<SplitDense> {
        SplitDense::new(gpu, &self.name, self.batch, self.in_features, self.out_features, self.bias, [None; 3])
    }

    fn split_plan(&self) -> Result<&SplitDense> {
        self.split.as_ref().ok_or_else(|| crate::Error::new(format!("layer {}: dense variant tiled-split has no plan (not planned)", self.name)))
    }

    /// The depth splits of forward, dx and dW when a pass uses the tiled-split variant.
    pub fn splits(&self) -> Option<[usize; 3]> {
        self.split.as_ref().map(SplitDense::splits)
    }

    fn uplan(&self, variant: DenseVariant) -> Result<&UPlan> {
        self.uplan.as_ref().ok_or_else(|| crate::Error::new(format!("layer {}: dense variant {} has no plan for this shape", self.name, variant.name())))
    }

    /// `forward_dispatches` with an explicit variant (benchmarks, autotuning).
    pub fn forward_variant(&self, gpu: &Gpu, variant: DenseVariant, x: &Tensor, w: &Tensor, b: Option<&Tensor>, y: &Tensor) -> Result<Vec<Dispatch>> {
        // Validates every shape (and builds the blocked kernel's dispatch).
        let single = self.forward(gpu, x, w, b, y)?;
        // Without a bias the shaders read none but the binding must exist: alias W there.
        let bias = b.unwrap_or(w);
        match variant {
            DenseVariant::Blocked => Ok(vec![single]),
            DenseVariant::Uniform => {
                let u = self.uplan(variant)?;
                let params: Vec<&wgpu::Buffer> = match b {
                    Some(_) => u.fwd_bias.iter().collect(),
                    None => u.fwd.chunks.iter().map(|c| &c.0).collect(),
                };
                let groups = self.out_features.div_ceil(WG as usize * 2);
                self.u_dispatches(gpu, &u.fwd, &params, "dense_u_dot", x, w, y, Some(bias), groups, false)
            }
            DenseVariant::Subgroup | DenseVariant::SubgroupWide | DenseVariant::SubgroupTall => {
                let vec = self.in_features.is_multiple_of(4);
                let b = [(0, self.params.as_entire_binding()), (1, x.binding()), (2, w.binding()), (3, bias.binding()), (4, y.binding()), (16, self.vec4(vec, x)), (17, self.vec4(vec, w))];
                Ok(vec![self.sg(gpu, variant, "dense_sg_forward", self.out_features, self.batch, vec, false, &b)?])
            }
            DenseVariant::Tiled => {
                let b = [(19, self.tiled[0].as_entire_binding()), (20, x.binding()), (21, w.binding()), (22, y.binding()), (3, bias.binding())];
                Ok(vec![self.tiled_gemm(gpu, self.batch, self.out_features, false, &b)?])
            }
            DenseVariant::TiledSplit => self.split_plan()?.gemm(gpu, DensePass::Forward, x, w, bias, y, false),
            DenseVariant::Coop => self.coop_plan()?.forward(gpu, x, w, b, y),
        }
    }

    /// `backward_input_dispatches` with an explicit variant.
    pub fn backward_input_variant(&self, gpu: &Gpu, variant: DenseVariant, dx: &Tensor, dy: &Tensor, w: &Tensor) -> Result<Vec<Dispatch>> {
        let single = self.backward_input(gpu, dx, dy, w)?;
        match variant {
            DenseVariant::Blocked => Ok(vec![single]),
            DenseVariant::Uniform => {
                let u = self.uplan(variant)?;
                let params: Vec<&wgpu::Buffer> = u.bin.chunks.iter().map(|c| &c.0).collect();
                let groups = (self.in_features / 4).div_ceil(WG as usize);
                self.u_dispatches(gpu, &u.bin, &params, "dense_u_axpy", dy, w, dx, None, groups, false)
            }
            DenseVariant::Subgroup | DenseVariant::SubgroupWide | DenseVariant::SubgroupTall => {
                let vec = self.in_features.is_multiple_of(4) && self.out_features.is_multiple_of(4);
                let b = [(0, self.params.as_entire_binding()), (2, w.binding()), (5, dx.binding()), (8, dy.binding()), (17, self.vec4(vec, w)), (18, self.vec4(vec, dy))];
                Ok(vec![self.sg(gpu, variant, "dense_sg_backward_input", self.in_features.div_ceil(4) * 4, self.batch, vec, false, &b)?])
            }
            DenseVariant::Tiled => {
                let b = [(19, self.tiled[1].as_entire_binding()), (20, dy.binding()), (21, w.binding()), (22, dx.binding()), (3, w.binding())];
                Ok(vec![self.tiled_gemm(gpu, self.batch, self.in_features, false, &b)?])
            }
            DenseVariant::TiledSplit => self.split_plan()?.gemm(gpu, DensePass::BackwardInput, dy, w, w, dx, false),
            DenseVariant::Coop => self.coop_plan()?.backward_input(gpu, dx, dy, w),
        }
    }

    /// `backward_weight_dispatches` with an explicit variant.
    pub fn backward_weight_variant(&self, gpu: &Gpu, variant: DenseVariant, dw: &Tensor, dy: &Tensor, x: &Tensor, accumulate: bool) -> Result<Vec<Dispatch>> {
        let single = self.backward_weight(gpu, dw, dy, x, accumulate)?;
        match variant {
            DenseVariant::Blocked => Ok(vec![single]),
            DenseVariant::Uniform => {
                let u = self.uplan(variant)?;
                let params: Vec<&wgpu::Buffer> = u.bw.chunks.iter().map(|c| &c.0).collect();
                let groups = (self.in_features / 4).div_ceil(WG as usize);
                self.u_dispatches(gpu, &u.bw, &params, "dense_u_axpy", dy, x, dw, None, groups, accumulate)
            }
            DenseVariant::Subgroup | DenseVariant::SubgroupWide | DenseVariant::SubgroupTall => {
                let vec = self.in_features.is_multiple_of(4) && self.out_features.is_multiple_of(4);
                let b = [(0, self.params.as_entire_binding()), (1, x.binding()), (6, dw.binding()), (8, dy.binding()), (16, self.vec4(vec, x)), (18, self.vec4(vec, dy))];
                Ok(vec![self.sg(gpu, variant, "dense_sg_backward_weight", self.in_features.div_ceil(4) * 4, self.out_features, vec, accumulate, &b)?])
            }
            DenseVariant::Tiled => {
                let b = [(19, self.tiled[2].as_entire_binding()), (20, dy.binding()), (21, x.binding()), (22, dw.binding()), (3, x.binding())];
                Ok(vec![self.tiled_gemm(gpu, self.out_features, self.in_features, accumulate, &b)?])
            }
            DenseVariant::TiledSplit => self.split_plan()?.gemm(gpu, DensePass::BackwardWeight, dy, x, x, dw, accumulate),
            DenseVariant::Coop => self.coop_plan()?.backward_weight(gpu, dw, dy, x, accumulate),
        }
    }

    /// The tensor itself for a vec4 binding when `vec`, else the 16-byte dummy.
    fn vec4<'a>(&'a self, vec: bool, t: &'a Tensor) -> wgpu::BindingResource<'a> {
        if vec {
            t.binding()
        } else {
            self.dummy.as_entire_binding()
        }
    }

    /// A subgroup GEMM over `cols` output columns (forward: O; dx, dW: I rounded up to 4)
    /// and `rows` rows (8 or 16 per workgroup). Lanes per workgroup: 64, or 32 when that wastes
    /// fewer lanes on the last column group. Grid: [column groups, ceil(rows / TM), 1].
    #[allow(clippy::too_many_arguments)]
    fn sg(&self, gpu: &Gpu, variant: DenseVariant, entry: &str, cols: usize, rows: usize, vec: bool, accumulate: bool, bindings: &[(u32, wgpu::BindingResource<'_>)]) -> Result<Dispatch> {
        let tn = if variant == DenseVariant::SubgroupWide { 8 } else { 4 };
        let tm = if variant == DenseVariant::SubgroupTall { 16 } else { 8 };
        let wg = [64usize, 32].into_iter().min_by_key(|wg| cols.div_ceil(wg * tn) * wg * tn).unwrap();
        let gx = u32_of(&self.name, "column groups", cols.div_ceil(wg * tn))?;
        let gy = u32_of(&self.name, "row blocks", rows.div_ceil(tm))?;
        let constants = [("WG", wg as f64), ("TN", tn as f64), ("TM", tm as f64), ("VEC", vec as u32 as f64), accumulate_constant(accumulate)];
        let label = format!("{} {entry} ({})", self.name, variant.name());
        Dispatch::new(gpu, &label, &DENSE_SUBGROUP, entry, &constants, bindings, [gx, gy, 1])
    }

    /// `dense_tiled` over a `rows x cols` output. Grid: [ceil(cols / 64), ceil(rows / 64), 1].
    fn tiled_gemm(&self, gpu: &Gpu, rows: usize, cols: usize, accumulate: bool, bindings: &[(u32, wgpu::BindingResource<'_>)]) -> Result<Dispatch> {
        let side = 4 * TILE_T as usize;
        let gx = u32_of(&self.name, "column tiles", cols.div_ceil(side))?;
        let gy = u32_of(&self.name, "row tiles", rows.div_ceil(side))?;
        let constants = [("TX", TILE_T as f64), ("TY", TILE_T as f64), accumulate_constant(accumulate)];
        Dispatch::new(gpu, &format!("{} dense_tiled", self.name), &DENSE, "dense_tiled", &constants, bindings, [gx, gy, 1])
    }

    /// `[out_features, in_features]`.
    pub fn weight_shape(&self) -> [usize; 2] {
        [self.out_features, self.in_features]
    }

    /// `[batch, out_features]`.
    pub fn output_shape(&self) -> [usize; 2] {
        [self.batch, self.out_features]
    }

    /// A register-blocked GEMM over a `rows x cols` output: blocks of up to 4 x 4 (smaller
    /// when the output is thinner, so batch 1 does not compute 3 wasted rows). Grid:
    /// [column groups of WG * TN, row blocks of TM, 1].
    fn gemm(&self, gpu: &Gpu, entry: &str, rows: usize, cols: usize, accumulate: Option<bool>, bindings: &[(u32, wgpu::BindingResource<'_>)]) -> Result<Dispatch> {
        let label = format!("{} {entry}", self.name);
        let (tm, tn) = (rows.min(MAX_TILE), cols.min(MAX_TILE));
        let gx = u32_of(&self.name, "column groups", cols.div_ceil(WG as usize * tn))?;
        let gy = u32_of(&self.name, "row blocks", rows.div_ceil(tm))?;
        let mut constants = vec![("TM", tm as f64), ("TN", tn as f64), ("WG", WG as f64)];
        constants.extend(accumulate.map(accumulate_constant));
        // Dispatch::new refuses (naming the layer) a grid over the per-dimension limit: it
        // takes over 65535 * 4 samples or output features.
        Dispatch::new(gpu, &label, &DENSE, entry, &constants, bindings, [gx, gy, 1])
    }

    fn check_weight(&self, w: &Tensor) -> Result<()> {
        w.expect_shape(&self.name, "weight", &self.weight_shape())
    }

    /// y = x W^T + b. Overwrites y. `b` is required exactly when the layer has a bias.
    pub fn forward(&self, gpu: &Gpu, x: &Tensor, w: &Tensor, b: Option<&Tensor>, y: &Tensor) -> Result<Dispatch> {
        x.expect_len(&self.name, "input", self.batch * self.in_features)?;
        self.check_weight(w)?;
        y.expect_len(&self.name, "output", self.batch * self.out_features)?;
        // Without a bias the shader reads no bias, but the binding must exist: alias W there
        // (read-only twice is allowed).
        let bias = match (self.bias, b) {
            (true, Some(b)) => {
                b.expect_shape(&self.name, "bias", &[self.out_features])?;
                b
            }
            (true, None) => bail!("layer {}: has a bias but forward got none (expected shape [{}])", self.name, self.out_features),
            (false, Some(_)) => bail!("layer {}: was built without a bias but forward got one", self.name),
            (false, None) => w,
        };
        let bindings = [(0, self.params.as_entire_binding()), (1, x.binding()), (2, w.binding()), (3, bias.binding()), (4, y.binding())];
        self.gemm(gpu, "dense_forward", self.batch, self.out_features, None, &bindings)
    }

    /// dx = dy W. Overwrites dx (any shape holding N*I values, like the input).
    pub fn backward_input(&self, gpu: &Gpu, dx: &Tensor, dy: &Tensor, w: &Tensor) -> Result<Dispatch> {
        dx.expect_len(&self.name, "input gradient", self.batch * self.in_features)?;
        dy.expect_len(&self.name, "output gradient", self.batch * self.out_features)?;
        self.check_weight(w)?;
        let bindings = [(0, self.params.as_entire_binding()), (5, dx.binding()), (8, dy.binding()), (2, w.binding())];
        self.gemm(gpu, "dense_backward_input", self.batch, self.in_features, None, &bindings)
    }

    /// dW = dy^T x (summed over the batch). Overwrites dW, or adds to it when `accumulate`
    /// (a batch processed as chunks).
    pub fn backward_weight(&self, gpu: &Gpu, dw: &Tensor, dy: &Tensor, x: &Tensor, accumulate: bool) -> Result<Dispatch> {
        dw.expect_shape(&self.name, "weight gradient", &self.weight_shape())?;
        dy.expect_len(&self.name, "output gradient", self.batch * self.out_features)?;
        x.expect_len(&self.name, "saved input", self.batch * self.in_features)?;
        let bindings = [(0, self.params.as_entire_binding()), (6, dw.binding()), (8, dy.binding()), (1, x.binding())];
        self.gemm(gpu, "dense_backward_weight", self.out_features, self.in_features, Some(accumulate), &bindings)
    }

    /// db = sum over the batch of dy. Overwrites db, or adds to it when `accumulate`.
    pub fn backward_bias(&self, gpu: &Gpu, db: &Tensor, dy: &Tensor, accumulate: bool) -> Result<Dispatch> {
        ensure!(self.bias, "layer {}: was built without a bias; there is no bias gradient", self.name);
        db.expect_shape(&self.name, "bias gradient", &[self.out_features])?;
        dy.expect_len(&self.name, "output gradient", self.batch * self.out_features)?;
        let label = format!("{} dense_backward_bias", self.name);
        let bindings = [(0, self.params.as_entire_binding()), (7, db.binding()), (8, dy.binding())];
        let groups = gpu.groups_1d(&label, self.out_features as u64, WG)?;
        let constants = [("WG", WG as f64), accumulate_constant(accumulate)];
        Dispatch::new(gpu, &label, &DENSE, "dense_backward_bias", &constants, &bindings, groups)
    }
}

/// The layer interface: weight [O, I] (He-uniform), then bias [O] (zeros).
impl LayerOp for Dense {
    fn out_shape(&self) -> Vec<usize> {
        self.output_shape().to_vec()
    }
    fn params(&self) -> Vec<ParamDecl> {
        let mut p = vec![ParamDecl::new("weight", self.weight_shape().to_vec(), Init::HeUniform { fan_in: self.in_features })];
        if self.bias {
            p.push(ParamDecl::new("bias", vec![self.out_features], Init::Const(0.0)));
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
        let mut out = self.backward_weight_dispatches(gpu, io.grad(0), io.dy(), io.x, false)?;
        if self.bias {
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
