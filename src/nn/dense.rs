//! Dense (fully connected) layer: y[N, O] = x[N, I] W^T + b, W [O, I] (PyTorch order),
//! b [O]. Kernels: shaders/dense.wgsl. Reference: src/reference/dense.rs.
//!
//! The input may have any shape holding N*I values (`[N, C, H, W]` after a conv block):
//! flatten is a view, so only the element count is checked.

use super::{accumulate_constant, u32_of};
use crate::gpu::{shaders::DENSE, Dispatch, Gpu, Tensor};
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

/// Which kernels the `*_dispatches` methods record. `Auto`: the uniform-operand GEMMs
/// (batch rows in 64 KiB uniform windows, see shaders/dense.wgsl) where the shape allows
/// (in_features a multiple of 4, 64 KiB uniform bindings), else the register-blocked
/// single-dispatch kernels; `Blocked`: always the latter (tests, benchmarks).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DenseKernels {
    #[default]
    Auto,
    Blocked,
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
    if bytes > l.max_buffer_size || bytes > l.max_storage_buffer_binding_size as u64 || total > u32::MAX as usize {
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
}

impl Dense {
    /// `input_shape` is `[N, ...]` with the product of the dims after N equal to
    /// `in_features` (`[N, I]`, or `[N, C, H, W]` flattened by view).
    pub fn new(gpu: &Gpu, name: &str, in_features: usize, out_features: usize, bias: bool, input_shape: &[usize]) -> Result<Self> {
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
        let mut layer = Dense { name: name.to_string(), batch, in_features, out_features, bias, params, uplan: None };
        layer.uplan = layer.make_uplan(gpu);
        Ok(layer)
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

    /// Record only the register-blocked single-dispatch kernels (`DenseKernels::Blocked`)
    /// or pick per shape (`Auto`, the default); for tests and benchmarks.
    pub fn with_kernels(mut self, gpu: &Gpu, kernels: DenseKernels) -> Self {
        self.uplan = match kernels {
            DenseKernels::Auto => self.make_uplan(gpu),
            DenseKernels::Blocked => None,
        };
        self
    }

    /// Whether the `*_dispatches` methods use the uniform-operand GEMMs.
    pub fn uniform_path(&self) -> bool {
        self.uplan.is_some()
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

    /// y = x W^T + b as a dispatch list: the uniform-operand GEMM (a pack of x, then one
    /// dispatch per 64 KiB chunk) where the layer has that plan, else `forward`'s single
    /// dispatch. Same contract as `forward`.
    pub fn forward_dispatches(&self, gpu: &Gpu, x: &Tensor, w: &Tensor, b: Option<&Tensor>, y: &Tensor) -> Result<Vec<Dispatch>> {
        let single = self.forward(gpu, x, w, b, y)?;
        let Some(u) = &self.uplan else { return Ok(vec![single]) };
        let (params, bias): (Vec<&wgpu::Buffer>, _) = match b {
            Some(b) => (u.fwd_bias.iter().collect(), Some(b)),
            None => (u.fwd.chunks.iter().map(|c| &c.0).collect(), None),
        };
        let groups = self.out_features.div_ceil(WG as usize * 2);
        // Without a bias the shader reads none but the binding must exist: alias W there.
        self.u_dispatches(gpu, &u.fwd, &params, "dense_u_dot", x, w, y, Some(bias.unwrap_or(w)), groups, false)
    }

    /// dx = dy W as a dispatch list (see `forward_dispatches`). Same contract as
    /// `backward_input`.
    pub fn backward_input_dispatches(&self, gpu: &Gpu, dx: &Tensor, dy: &Tensor, w: &Tensor) -> Result<Vec<Dispatch>> {
        let single = self.backward_input(gpu, dx, dy, w)?;
        let Some(u) = &self.uplan else { return Ok(vec![single]) };
        let params: Vec<&wgpu::Buffer> = u.bin.chunks.iter().map(|c| &c.0).collect();
        let groups = (self.in_features / 4).div_ceil(WG as usize);
        self.u_dispatches(gpu, &u.bin, &params, "dense_u_axpy", dy, w, dx, None, groups, false)
    }

    /// dW = dy^T x as a dispatch list (see `forward_dispatches`). Same contract as
    /// `backward_weight`: overwrites dW, or adds to it when `accumulate`.
    pub fn backward_weight_dispatches(&self, gpu: &Gpu, dw: &Tensor, dy: &Tensor, x: &Tensor, accumulate: bool) -> Result<Vec<Dispatch>> {
        let single = self.backward_weight(gpu, dw, dy, x, accumulate)?;
        let Some(u) = &self.uplan else { return Ok(vec![single]) };
        let params: Vec<&wgpu::Buffer> = u.bw.chunks.iter().map(|c| &c.0).collect();
        let groups = (self.in_features / 4).div_ceil(WG as usize);
        self.u_dispatches(gpu, &u.bw, &params, "dense_u_axpy", dy, x, dw, None, groups, accumulate)
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
