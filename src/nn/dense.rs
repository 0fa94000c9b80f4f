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

pub struct Dense {
    pub name: String,
    pub batch: usize,
    pub in_features: usize,
    pub out_features: usize,
    pub bias: bool,
    params: wgpu::Buffer,
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
        Ok(Dense { name: name.to_string(), batch, in_features, out_features, bias, params })
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
