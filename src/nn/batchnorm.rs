//! Batch normalization (Keras semantics) over `[N, C, H, W]` (per channel over N*H*W) or
//! `[N, F]` (per feature over N). Kernels: shaders/batchnorm.wgsl. Reference:
//! src/reference/batchnorm.rs.
//!
//! Parameters gamma, beta `[C]`; buffers running_mean, running_var `[C]`; `saved` `[2, C]` =
//! (batch mean, inv_std = 1 / sqrt(biased batch var + eps)) written by the training forward
//! and read by the backward.
//!
//! `Population` computes a layer's population statistics (precise BatchNorm): the exact
//! mean and variance of its input over K equal batches, replacing the running statistics.

use super::activation::Kind;
use super::dropout::Dropout;
use super::layer::{Init, Io, LayerOp, Mode, ParamDecl};
use super::{accumulate_constant, nc_s, u32_of};
use crate::gpu::{shaders::BATCHNORM, Dispatch, Gpu, Tensor};
use crate::{bail, ensure, Result};

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BatchNormConfig {
    /// Added to the variance before the square root (Keras default 1e-3).
    pub eps: f32,
    /// running = momentum * running + (1 - momentum) * batch statistic (Keras default 0.99).
    pub momentum: f32,
}

impl Default for BatchNormConfig {
    fn default() -> Self {
        BatchNormConfig { eps: 1e-3, momentum: 0.99 }
    }
}

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    n: u32,
    c: u32,
    s: u32,
    m: u32,
    eps: f32,
    momentum: f32,
}

const WG: u32 = 256;
/// Workgroup size of the S == 1 reductions (WG_ROWS in the shader).
const WG_ROWS: usize = 64;

pub struct BatchNorm {
    pub name: String,
    pub cfg: BatchNormConfig,
    /// Input (= output) shape, batch first.
    pub shape: Vec<usize>,
    c: usize,
    /// Spatial size per channel (1 after a dense layer).
    s: usize,
    params: wgpu::Buffer,
    /// [2, C]: (sum dy, sum dy * xhat) of the batch the last backward saw. dx needs the
    /// batch's own sums even when dgamma / dbeta accumulate over chunks.
    sums: Tensor,
    /// [C]: where the fused backward reductions write a slope gradient the activation does
    /// not have (ReLU, LeakyReLU, per-element PReLU; the kernels bind one regardless).
    slope_sink: Tensor,
}

/// The activation a training BatchNorm applies inside its own passes (`forward_train_act`,
/// `backward_act`; src/nn/fuse.rs decides where): its kind, PReLU's slopes (`[C]`, or
/// `[C, ...spatial]` per element) and, for the backward, their gradient.
#[derive(Debug, Clone, Copy)]
pub struct FusedAct<'a> {
    pub kind: Kind,
    pub alpha: Option<&'a Tensor>,
    pub dalpha: Option<&'a Tensor>,
}

/// A 2x2 stride-2 max pool, and the dropouts right before or after it, run inside a training
/// BatchNorm + activation's forward pass (`BatchNorm::forward_train_act_pool`; src/nn/fuse.rs
/// decides where). The backward passes stay the layers' own: the pool's reads only the
/// argmax, the dropouts' only their masks.
pub struct PoolTail<'a> {
    /// Width W of the pooled planes (H = S / W; both even).
    pub width: usize,
    /// [N, C, H / 2, W / 2] u32: each window's winner as `h * W + w` in its plane.
    pub argmax: &'a Tensor,
    /// A dropout between the activation and the pool (mask over [N, C, H, W]).
    pub pre: Option<&'a Dropout>,
    /// A dropout after the pool (mask over [N, C, H / 2, W / 2]).
    pub post: Option<&'a Dropout>,
}

impl BatchNorm {
    /// `input_shape` is `[N, C, ...spatial]` or `[N, F]`.
    pub fn new(gpu: &Gpu, name: &str, cfg: BatchNormConfig, input_shape: &[usize]) -> Result<Self> {
        let (n, c, s) = nc_s(name, input_shape)?;
        ensure!(cfg.eps.is_finite() && cfg.eps > 0.0, "layer {name}: batch norm eps must be positive and finite, got {}", cfg.eps);
        ensure!(
            (0.0..=1.0).contains(&cfg.momentum),
            "layer {name}: batch norm momentum must be in [0, 1], got {}",
            cfg.momentum
        );
        let p = Params {
            n: u32_of(name, "elements", n * c * s)?,
            c: u32_of(name, "channels", c)?,
            s: u32_of(name, "spatial size", s)?,
            m: u32_of(name, "values per channel", n * s)?,
            eps: cfg.eps,
            momentum: cfg.momentum,
        };
        let params = gpu.uniform(&format!("{name} params"), &p);
        let sums = gpu.tensor(&format!("{name} batch sums"), &[2, c])?;
        let slope_sink = gpu.tensor(&format!("{name} fused slope gradient sink"), &[c])?;
        Ok(BatchNorm { name: name.to_string(), cfg, shape: input_shape.to_vec(), c, s, params, sums, slope_sink })
    }

    pub fn channels(&self) -> usize {
        self.c
    }

    fn len(&self) -> usize {
        self.shape.iter().product()
    }

    fn per_channel(&self, role: &str, t: &Tensor) -> Result<()> {
        t.expect_shape(&self.name, role, &[self.c])
    }

    /// The vec4 kernels apply when each channel's spatial run is a multiple of 4.
    fn vec4(&self) -> bool {
        self.s.is_multiple_of(4)
    }

    /// `entry`, or its vec4 twin (`entry` + "4") with x, y, dx, dy moved to their vec4
    /// bindings (batchnorm_stats4 also reads x as scalars for its shift).
    fn dispatch(&self, gpu: &Gpu, entry: &str, constants: &[(&str, f64)], bindings: &[(u32, &Tensor)], groups: [u32; 3]) -> Result<Dispatch> {
        let v4 = self.vec4();
        let entry = if v4 { format!("{entry}4") } else { entry.to_string() };
        let label = format!("{} {entry}", self.name);
        let mut b: Vec<(u32, wgpu::BindingResource)> = vec![(0, self.params.as_entire_binding())];
        for (i, t) in bindings {
            match (v4, *i) {
                (true, 1) if entry == "batchnorm_stats4" => b.extend([(1, t.binding()), (16, t.binding())]),
                (true, 1) => b.push((16, t.binding())),
                (true, 2) => b.push((17, t.binding())),
                (true, 8) => b.push((18, t.binding())),
                (true, 9) => b.push((19, t.binding())),
                (_, i) => b.push((i, t.binding())),
            }
        }
        Dispatch::new(gpu, &label, &BATCHNORM, &entry, constants, &b, groups)
    }

    fn elementwise_groups(&self, gpu: &Gpu, entry: &str) -> Result<[u32; 3]> {
        let n = if self.vec4() { self.len() / 4 } else { self.len() };
        gpu.groups_1d(&format!("{} {entry}", self.name), n as u64, WG)
    }

    fn channel_groups(&self) -> Result<[u32; 3]> {
        Ok([u32_of(&self.name, "channels", self.c)?, 1, 1])
    }

    /// A per-channel reduction kernel and its grid: one workgroup per channel, or with S == 1
    /// (after a dense layer) its `_rows` twin, one invocation per channel.
    fn reduction(&self, entry: &'static str) -> Result<(&'static str, [u32; 3])> {
        if self.s == 1 {
            let rows = match entry {
                "batchnorm_stats" => "batchnorm_stats_rows",
                "batchnorm_backward_params_act" => "batchnorm_backward_params_act_rows",
                _ => "batchnorm_backward_params_rows",
            };
            return Ok((rows, [u32_of(&self.name, "channel groups", self.c.div_ceil(WG_ROWS))?, 1, 1]));
        }
        Ok((entry, self.channel_groups()?))
    }

    /// Training forward: batch statistics -> `saved` (overwritten), running stats updated in
    /// place (Keras momentum rule, biased batch variance), then y = gamma * xhat + beta
    /// (overwritten). Two dispatches: per-channel statistics, elementwise normalize.
    #[allow(clippy::too_many_arguments)]
    pub fn forward_train(
        &self,
        gpu: &Gpu,
        x: &Tensor,
        gamma: &Tensor,
        beta: &Tensor,
        running_mean: &Tensor,
        running_var: &Tensor,
        saved: &Tensor,
        y: &Tensor,
    ) -> Result<Vec<Dispatch>> {
        let stats = self.batch_stats(gpu, x, None, running_mean, running_var, saved)?;
        self.per_channel("gamma", gamma)?;
        self.per_channel("beta", beta)?;
        y.expect_len(&self.name, "output", self.len())?;
        let groups = self.elementwise_groups(gpu, "batchnorm_forward_train")?;
        let norm = self.dispatch(gpu, "batchnorm_forward_train", &[], &[(1, x), (2, y), (3, gamma), (4, beta), (15, saved)], groups)?;
        Ok(vec![stats, norm])
    }

    /// The batch statistics of x -> `saved` (overwritten), running statistics updated in
    /// place: from x itself (per-channel reduction), or with `partials` from the partial
    /// statistics the conv before wrote (`Conv2d::forward_stats_dispatches`: [C, G, 3] =
    /// (count, mean, M2) per channel and conv workgroup; x is then not read).
    pub fn batch_stats(&self, gpu: &Gpu, x: &Tensor, partials: Option<&Tensor>, running_mean: &Tensor, running_var: &Tensor, saved: &Tensor) -> Result<Dispatch> {
        x.expect_shape(&self.name, "input", &self.shape)?;
        self.per_channel("running mean", running_mean)?;
        self.per_channel("running variance", running_var)?;
        saved.expect_shape(&self.name, "saved statistics", &[2, self.c])?;
        let Some(p) = partials else {
            let (entry, groups) = self.reduction("batchnorm_stats")?;
            return self.dispatch(gpu, entry, &[], &[(1, x), (5, running_mean), (6, running_var), (7, saved)], groups);
        };
        let shape = p.shape();
        ensure!(
            shape.len() == 3 && shape[0] == self.c && shape[1] > 0 && shape[2] == 3,
            "layer {}: statistics partials {} have shape {shape:?}, expected [{}, G, 3] (count, mean, M2 per channel and conv workgroup)",
            self.name,
            p.label(),
            self.c
        );
        let label = format!("{} batchnorm_stats_partials", self.name);
        let b = [(0, self.params.as_entire_binding()), (24, p.binding()), (5, running_mean.binding()), (6, running_var.binding()), (7, saved.binding())];
        Dispatch::new(gpu, &label, &BATCHNORM, "batchnorm_stats_partials", &[], &b, self.channel_groups()?)
    }

    /// Inference forward: y = gamma * (x - running_mean) / sqrt(running_var + eps) + beta.
    /// Overwrites y; reads the running statistics only.
    #[allow(clippy::too_many_arguments)]
    pub fn forward_infer(
        &self,
        gpu: &Gpu,
        x: &Tensor,
        gamma: &Tensor,
        beta: &Tensor,
        running_mean: &Tensor,
        running_var: &Tensor,
        y: &Tensor,
    ) -> Result<Dispatch> {
        x.expect_shape(&self.name, "input", &self.shape)?;
        self.per_channel("gamma", gamma)?;
        self.per_channel("beta", beta)?;
        self.per_channel("running mean", running_mean)?;
        self.per_channel("running variance", running_var)?;
        y.expect_len(&self.name, "output", self.len())?;
        let groups = self.elementwise_groups(gpu, "batchnorm_forward_infer")?;
        self.dispatch(
            gpu,
            "batchnorm_forward_infer",
            &[],
            &[(1, x), (2, y), (3, gamma), (4, beta), (13, running_mean), (14, running_var)],
            groups,
        )
    }

    /// Fold this layer's inference transform into the convolution before it: wf = w * scale,
    /// bf = (b - running_mean) * scale + beta, scale = gamma / sqrt(running_var + eps), for
    /// a conv weight `w` [C, ...] (and bias `b` [C], or none). Overwrites wf and bf.
    #[allow(clippy::too_many_arguments)]
    pub fn fold_into(
        &self,
        gpu: &Gpu,
        w: &Tensor,
        b: Option<&Tensor>,
        gamma: &Tensor,
        beta: &Tensor,
        running_mean: &Tensor,
        running_var: &Tensor,
        wf: &Tensor,
        bf: &Tensor,
    ) -> Result<Dispatch> {
        for (role, t) in [("gamma", gamma), ("beta", beta), ("running mean", running_mean), ("running variance", running_var), ("folded bias", bf)] {
            self.per_channel(role, t)?;
        }
        ensure!(
            w.shape().first() == Some(&self.c) && w.len().is_multiple_of(self.c),
            "layer {}: folding needs a conv weight with {} output channels, got {:?}",
            self.name,
            self.c,
            w.shape()
        );
        wf.expect_len(&self.name, "folded weight", w.len())?;
        if let Some(b) = b {
            self.per_channel("conv bias", b)?;
        }
        let p = Params {
            n: u32_of(&self.name, "folded weight elements", w.len())?,
            c: self.c as u32,
            s: (w.len() / self.c) as u32,
            m: b.is_some() as u32,
            eps: self.cfg.eps,
            momentum: 0.0,
        };
        let params = gpu.uniform(&format!("{} fold params", self.name), &p);
        let label = format!("{} batchnorm_fold", self.name);
        let groups = gpu.groups_1d(&label, w.len() as u64, WG)?;
        let bias = b.unwrap_or(gamma);
        let bindings = [
            (0, params.as_entire_binding()),
            (20, w.binding()),
            (21, bias.binding()),
            (3, gamma.binding()),
            (4, beta.binding()),
            (13, running_mean.binding()),
            (14, running_var.binding()),
            (22, wf.binding()),
            (23, bf.binding()),
        ];
        Dispatch::new(gpu, &label, &BATCHNORM, "batchnorm_fold", &[], &bindings, groups)
    }

    /// Inference-mode input gradient (running statistics held constant):
    /// dx = dy * gamma / sqrt(running_var + eps). Overwrites dx.
    pub fn backward_infer(&self, gpu: &Gpu, dx: &Tensor, dy: &Tensor, gamma: &Tensor, running_var: &Tensor) -> Result<Dispatch> {
        self.per_channel("gamma", gamma)?;
        self.per_channel("running variance", running_var)?;
        dx.expect_len(&self.name, "input gradient", self.len())?;
        dy.expect_len(&self.name, "output gradient", self.len())?;
        let groups = self.elementwise_groups(gpu, "batchnorm_backward_infer")?;
        self.dispatch(gpu, "batchnorm_backward_infer", &[], &[(8, dx), (9, dy), (3, gamma), (14, running_var)], groups)
    }

    /// The operands every training backward (plain or fused) takes, checked against the
    /// layer's shape: dx, dy, x [N, C, ...]; dgamma, dbeta, gamma [C]; saved [2, C].
    #[allow(clippy::too_many_arguments)]
    fn check_backward(&self, dx: &Tensor, dgamma: &Tensor, dbeta: &Tensor, dy: &Tensor, x: &Tensor, gamma: &Tensor, saved: &Tensor) -> Result<()> {
        dx.expect_len(&self.name, "input gradient", self.len())?;
        self.per_channel("gamma gradient", dgamma)?;
        self.per_channel("beta gradient", dbeta)?;
        dy.expect_len(&self.name, "output gradient", self.len())?;
        x.expect_len(&self.name, "saved input", self.len())?;
        self.per_channel("gamma", gamma)?;
        saved.expect_shape(&self.name, "saved statistics", &[2, self.c])
    }

    /// Training-mode backward, with `saved` from this batch's `forward_train`:
    /// dbeta = sum dy, dgamma = sum dy * xhat (overwritten, or added to when `accumulate`),
    /// dx = gamma * inv_std / M * (M * dy - sum dy - xhat * sum dy * xhat) (overwritten; uses
    /// this batch's sums only). Two dispatches: per-channel sums, elementwise dx.
    #[allow(clippy::too_many_arguments)]
    pub fn backward(
        &self,
        gpu: &Gpu,
        dx: &Tensor,
        dgamma: &Tensor,
        dbeta: &Tensor,
        dy: &Tensor,
        x: &Tensor,
        gamma: &Tensor,
        saved: &Tensor,
        accumulate: bool,
    ) -> Result<Vec<Dispatch>> {
        self.check_backward(dx, dgamma, dbeta, dy, x, gamma, saved)?;
        let (entry, groups) = self.reduction("batchnorm_backward_params")?;
        let params = self.dispatch(
            gpu,
            entry,
            &[accumulate_constant(accumulate)],
            &[(10, dgamma), (11, dbeta), (12, &self.sums), (9, dy), (1, x), (15, saved)],
            groups,
        )?;
        let groups = self.elementwise_groups(gpu, "batchnorm_backward_input")?;
        let input = self.dispatch(
            gpu,
            "batchnorm_backward_input",
            &[],
            &[(8, dx), (9, dy), (1, x), (3, gamma), (15, saved), (12, &self.sums)],
            groups,
        )?;
        Ok(vec![params, input])
    }
}

/// Training BatchNorm fused with the activation after it (shaders/batchnorm.wgsl, "fused"
/// section): the pre-activation z = gamma * xhat + beta is never stored.
impl BatchNorm {
    /// The ACT / LEAKY overrides for `act`, after checking its slope tensors (`backward`:
    /// also the slope gradient).
    fn act_constants(&self, act: &FusedAct, backward: bool) -> Result<Vec<(&'static str, f64)>> {
        let slopes = match act.kind {
            Kind::PRelu => Some(vec![self.c]),
            Kind::PReluPerElement => Some(self.shape[1..].to_vec()),
            _ => None,
        };
        if let Some(shape) = &slopes {
            let Some(alpha) = act.alpha else { bail!("layer {}: fused PReLU needs its slopes {shape:?}", self.name) };
            alpha.expect_len(&self.name, "fused PReLU slopes", shape.iter().product())?;
            if backward {
                let Some(dalpha) = act.dalpha else { bail!("layer {}: fused PReLU backward needs the slope gradient {shape:?}", self.name) };
                dalpha.expect_len(&self.name, "fused PReLU slope gradient", shape.iter().product())?;
            }
        }
        let (code, leaky) = match act.kind {
            Kind::Relu => (1.0, 0.0),
            Kind::LeakyRelu(a) => (2.0, a as f64),
            Kind::PRelu => (3.0, 0.0),
            Kind::PReluPerElement => (4.0, 0.0),
        };
        Ok(vec![("ACT", code), ("LEAKY", leaky)])
    }

    /// The slope bindings of a fused entry: `act_alpha` (26; gamma stands in without slopes)
    /// and, in vec4 entries, `act_alpha4` (27; per-element slopes, else x stands in: [C]
    /// may be under 16 bytes).
    fn slope_bindings<'a>(&self, act: &FusedAct<'a>, gamma: &'a Tensor, x: &'a Tensor) -> Vec<(u32, &'a Tensor)> {
        let alpha = act.alpha.unwrap_or(gamma);
        let mut b = vec![(26, alpha)];
        if self.vec4() {
            b.push((27, if act.kind == Kind::PReluPerElement { alpha } else { x }));
        }
        b
    }

    /// Training forward fused with `act`: the statistics as `batch_stats` (from x, or from
    /// the conv's `partials`; saved and the running statistics), then
    /// y = act(gamma * xhat + beta) in one elementwise pass.
    #[allow(clippy::too_many_arguments)]
    pub fn forward_train_act(
        &self,
        gpu: &Gpu,
        x: &Tensor,
        partials: Option<&Tensor>,
        gamma: &Tensor,
        beta: &Tensor,
        running_mean: &Tensor,
        running_var: &Tensor,
        saved: &Tensor,
        act: &FusedAct,
        y: &Tensor,
    ) -> Result<Vec<Dispatch>> {
        let constants = self.act_constants(act, false)?;
        let stats = self.batch_stats(gpu, x, partials, running_mean, running_var, saved)?;
        self.per_channel("gamma", gamma)?;
        self.per_channel("beta", beta)?;
        y.expect_len(&self.name, "output", self.len())?;
        let mut b = vec![(1, x), (2, y), (3, gamma), (4, beta), (15, saved)];
        b.extend(self.slope_bindings(act, gamma, x));
        let groups = self.elementwise_groups(gpu, "batchnorm_forward_train_act")?;
        Ok(vec![stats, self.dispatch(gpu, "batchnorm_forward_train_act", &constants, &b, groups)?])
    }

    /// Training forward fused with `act` and the pool (and dropouts) after it: the statistics
    /// as `batch_stats`, then in one pass per pooled element the window's four
    /// act(gamma * xhat + beta), the pre-pool dropout, max and argmax (first maximum in
    /// row-major order, as max_pool2_forward) and the post-pool dropout: y [N, C, H/2, W/2]
    /// and `pool.argmax` are what the separate layers would write, bit for bit. Overwrites
    /// y and the argmax.
    #[allow(clippy::too_many_arguments)]
    pub fn forward_train_act_pool<'a>(
        &'a self,
        gpu: &Gpu,
        x: &Tensor,
        partials: Option<&Tensor>,
        gamma: &Tensor,
        beta: &Tensor,
        running_mean: &Tensor,
        running_var: &Tensor,
        saved: &Tensor,
        act: &FusedAct,
        pool: &PoolTail<'a>,
        y: &Tensor,
    ) -> Result<Vec<Dispatch>> {
        let w = pool.width;
        ensure!(
            w > 0 && w.is_multiple_of(2) && self.s.is_multiple_of(w) && (self.s / w).is_multiple_of(2),
            "layer {}: a fused 2x2 max pool needs even planes, got {} values per channel at width {w}",
            self.name,
            self.s
        );
        let pooled = self.len() / 4;
        let constants = self.act_constants(act, false)?;
        let stats = self.batch_stats(gpu, x, partials, running_mean, running_var, saved)?;
        self.per_channel("gamma", gamma)?;
        self.per_channel("beta", beta)?;
        y.expect_len(&self.name, "pooled output", pooled)?;
        pool.argmax.expect_len(&self.name, "pool argmax", pooled)?;
        for (d, len, role) in [(pool.pre, self.len(), "pre-pool"), (pool.post, pooled, "post-pool")] {
            if let Some(d) = d {
                ensure!(d.shape.iter().product::<usize>() == len, "layer {}: the {role} dropout {} has shape {:?}, expected {len} values", self.name, d.name, d.shape);
            }
        }
        let mut constants = constants;
        constants.extend([("DROP_PRE", pool.pre.is_some() as u8 as f64), ("DROP_POST", pool.post.is_some() as u8 as f64), ("POOL_W", w as f64)]);
        // Without a dropout, the BatchNorm's own uniform stands in for its uniform.
        let drop = |d: Option<&'a Dropout>| d.map_or(&self.params, Dropout::uniform).as_entire_binding();
        let b = [
            (0, self.params.as_entire_binding()),
            (33, x.binding()),
            (2, y.binding()),
            (3, gamma.binding()),
            (4, beta.binding()),
            (15, saved.binding()),
            (26, act.alpha.unwrap_or(gamma).binding()),
            (30, drop(pool.pre)),
            (31, drop(pool.post)),
            (32, pool.argmax.binding()),
        ];
        let label = format!("{} batchnorm_forward_train_act_pool", self.name);
        let groups = gpu.groups_1d(&label, pooled as u64, WG)?;
        Ok(vec![stats, Dispatch::new(gpu, &label, &BATCHNORM, "batchnorm_forward_train_act_pool", &constants, &b, groups)?])
    }

    /// Training backward fused with `act`, from the activation's output gradient `dy`: the
    /// parameter reductions of `backward` over dz = dy * act'(z) (z recomputed from x and
    /// saved) with PReLU's slope gradient (per-element slopes: each invocation of the
    /// channel's workgroup owns some slopes and loops over the batch), then dx. dgamma, dbeta
    /// and the slope gradient are overwritten, or added to with `accumulate`; dx is
    /// overwritten.
    #[allow(clippy::too_many_arguments)]
    pub fn backward_act(
        &self,
        gpu: &Gpu,
        dx: &Tensor,
        dgamma: &Tensor,
        dbeta: &Tensor,
        dy: &Tensor,
        x: &Tensor,
        gamma: &Tensor,
        beta: &Tensor,
        saved: &Tensor,
        act: &FusedAct,
        accumulate: bool,
    ) -> Result<Vec<Dispatch>> {
        self.check_backward(dx, dgamma, dbeta, dy, x, gamma, saved)?;
        self.per_channel("beta", beta)?;
        let mut constants = self.act_constants(act, true)?;
        constants.push(accumulate_constant(accumulate));
        let common = [(10, dgamma), (11, dbeta), (9, dy), (1, x), (3, gamma), (4, beta), (15, saved), (12, &self.sums)];
        let slopes = self.slope_bindings(act, gamma, x);

        let params = if act.kind == Kind::PReluPerElement && self.s > 1 {
            // Per-element slopes: each invocation sums its own slopes over the batch.
            let (alpha, dalpha) = (act.alpha.expect("checked"), act.dalpha.expect("checked"));
            let mut b = common.to_vec();
            b.extend(if self.vec4() { [(27, alpha), (29, dalpha)] } else { [(26, alpha), (28, dalpha)] });
            self.dispatch(gpu, "batchnorm_backward_params_act_cols", &constants, &b, self.channel_groups()?)?
        } else {
            let (entry, groups) = self.reduction("batchnorm_backward_params_act")?;
            // The slope gradient is the reduction's for one slope per channel (or S == 1).
            let one_slope = act.kind == Kind::PRelu || (act.kind == Kind::PReluPerElement && self.s == 1);
            let dalpha = if one_slope { act.dalpha.expect("checked") } else { &self.slope_sink };
            let mut b = common.to_vec();
            b.push((28, dalpha));
            b.extend(&slopes);
            self.dispatch(gpu, entry, &constants, &b, groups)?
        };
        let mut b = vec![(8, dx)];
        b.extend(&common[2..]);
        b.extend(&slopes);
        let groups = self.elementwise_groups(gpu, "batchnorm_backward_input_act")?;
        let input = self.dispatch(gpu, "batchnorm_backward_input_act", &constants[..2], &b, groups)?;
        Ok(vec![params, input])
    }
}

/// A BatchNorm layer of a network: the op with its running statistics (state saved in
/// checkpoints, shared between builds of one model) and the batch statistics its training
/// forward saves for the backward.
pub struct BatchNormLayer {
    pub op: BatchNorm,
    pub running_mean: Tensor,
    pub running_var: Tensor,
    /// [2, C]: (batch mean, inv_std) of the last training forward.
    pub saved: Tensor,
}

impl BatchNormLayer {
    pub fn new(gpu: &Gpu, name: &str, cfg: BatchNormConfig, input_shape: &[usize]) -> Result<Self> {
        let op = BatchNorm::new(gpu, name, cfg, input_shape)?;
        let c = op.channels();
        let running_mean = gpu.tensor(&format!("{name}.running_mean"), &[c])?;
        let running_var = gpu.upload(&format!("{name}.running_var"), &[c], &vec![1.0f32; c])?;
        let saved = gpu.tensor(&format!("{name}.saved"), &[2, c])?;
        Ok(BatchNormLayer { op, running_mean, running_var, saved })
    }
}

/// The layer interface: gamma (ones) and beta (zeros); running mean (zeros) and variance
/// (ones) as state. The training backward always writes dx (same kernels as dgamma, dbeta).
impl LayerOp for BatchNormLayer {
    fn out_shape(&self) -> Vec<usize> {
        self.op.shape.clone()
    }
    fn params(&self) -> Vec<ParamDecl> {
        let c = self.op.channels();
        vec![ParamDecl::new("gamma", vec![c], Init::Const(1.0)), ParamDecl::new("beta", vec![c], Init::Const(0.0))]
    }
    fn state(&self) -> Vec<(&'static str, Tensor, f32)> {
        vec![("running_mean", self.running_mean.clone(), 0.0), ("running_var", self.running_var.clone(), 1.0)]
    }
    fn share_state(&mut self, state: &[Tensor]) {
        self.running_mean = state[0].clone();
        self.running_var = state[1].clone();
    }
    fn backward_reads_input(&self) -> bool {
        true
    }
    fn backward_always_writes_dx(&self) -> bool {
        true
    }
    fn forward(&self, gpu: &Gpu, io: &Io, mode: Mode) -> Result<Vec<Dispatch>> {
        let (gamma, beta) = (io.value(0), io.value(1));
        match mode {
            Mode::Train => self.op.forward_train(gpu, io.x, gamma, beta, &self.running_mean, &self.running_var, &self.saved, io.y),
            Mode::Infer => Ok(vec![self.op.forward_infer(gpu, io.x, gamma, beta, &self.running_mean, &self.running_var, io.y)?]),
        }
    }
    fn backward(&self, gpu: &Gpu, io: &Io) -> Result<Vec<Dispatch>> {
        let dx = io.dx.expect("a BatchNorm dx or sink");
        self.op.backward(gpu, dx, io.grad(0), io.grad(1), io.dy(), io.x, io.value(0), &self.saved, false)
    }
    fn input_grad(&self, gpu: &Gpu, io: &Io) -> Result<Vec<Dispatch>> {
        Ok(vec![self.op.backward_infer(gpu, io.dx.expect("input gradient"), io.dy(), io.value(0), &self.running_var)?])
    }
    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct PopulationParams {
    k: u32,
    batches: u32,
    _pad: [u32; 2],
}

/// Population statistics of one BatchNorm layer over K equal batches of its input
/// `[N, C, ...]` / `[N, F]`: `accumulate` once per batch (after `set_batch`), then `finish`
/// writes running_mean = the mean over all K*M values per channel and running_var = their
/// biased variance (batch variances and the spread of the batch means, combined exactly).
pub struct Population {
    pub name: String,
    pub shape: Vec<usize>,
    c: usize,
    params: wgpu::Buffer,
    pop: wgpu::Buffer,
    /// [3, C]: (mean of batch means, sum of their squared deviations, mean of batch variances).
    acc: Tensor,
}

impl Population {
    /// For a layer whose input is `input_shape` `[N, C, ...]` / `[N, F]`, over `batches` batches.
    pub fn new(gpu: &Gpu, name: &str, input_shape: &[usize], batches: usize) -> Result<Self> {
        let (n, c, s) = nc_s(name, input_shape)?;
        ensure!(batches >= 1, "layer {name}: population statistics need at least one batch");
        let p = Params {
            n: u32_of(name, "elements", n * c * s)?,
            c: u32_of(name, "channels", c)?,
            s: u32_of(name, "spatial size", s)?,
            m: u32_of(name, "values per channel", n * s)?,
            eps: 1.0,
            momentum: 0.0,
        };
        let params = gpu.uniform(&format!("{name} population params"), &p);
        let pop = gpu.uniform(&format!("{name} population batch"), &PopulationParams { k: 0, batches: u32_of(name, "batches", batches)?, _pad: [0; 2] });
        let acc = gpu.tensor(&format!("{name} population sums"), &[3, c])?;
        Ok(Population { name: name.to_string(), shape: input_shape.to_vec(), c, params, pop, acc })
    }

    /// The index of the batch the next `accumulate` dispatch sees (0 starts over).
    pub fn set_batch(&self, gpu: &Gpu, k: usize) {
        gpu.queue.write_buffer(&self.pop, 0, bytemuck::bytes_of(&(k as u32)));
    }

    /// batchnorm_population_accumulate: merge this batch of `x` into the sums (batch 0
    /// overwrites them).
    pub fn accumulate(&self, gpu: &Gpu, x: &Tensor) -> Result<Dispatch> {
        x.expect_shape(&self.name, "input", &self.shape)?;
        let b = [(0, self.params.as_entire_binding()), (1, x.binding()), (24, self.pop.as_entire_binding()), (25, self.acc.binding())];
        let groups = [u32_of(&self.name, "channels", self.c)?, 1, 1];
        Dispatch::new(gpu, &format!("{} batchnorm_population_accumulate", self.name), &BATCHNORM, "batchnorm_population_accumulate", &[], &b, groups)
    }

    /// batchnorm_population_finish: overwrite the running statistics with the population's.
    pub fn finish(&self, gpu: &Gpu, running_mean: &Tensor, running_var: &Tensor) -> Result<Dispatch> {
        running_mean.expect_shape(&self.name, "running mean", &[self.c])?;
        running_var.expect_shape(&self.name, "running variance", &[self.c])?;
        let b = [
            (0, self.params.as_entire_binding()),
            (5, running_mean.binding()),
            (6, running_var.binding()),
            (24, self.pop.as_entire_binding()),
            (25, self.acc.binding()),
        ];
        let groups = [u32_of(&self.name, "channel groups", self.c.div_ceil(WG_ROWS))?, 1, 1];
        Dispatch::new(gpu, &format!("{} batchnorm_population_finish", self.name), &BATCHNORM, "batchnorm_population_finish", &[], &b, groups)
    }
}
