//! SGD (momentum, Nesterov) and Adam / AdamW over the flat parameter arena: params, grads and
//! each moment buffer are one tensor of the same length, so one dispatch updates every
//! parameter. Kernels: shaders/optim.wgsl. Reference: src/reference/optim.rs.
//!
//! Per training step: `let d = opt.step(gpu, lr);` rewrites the uniform (t, lr, Adam bias
//! corrections) with `queue.write_buffer` and returns the dispatch built once in `new`;
//! record it after the backward pass. The uniform write lands before the next submit, so
//! record at most one `step` per submit.

use super::u32_of;
use crate::gpu::{shaders::OPTIM, Dispatch, Gpu, Tensor};
use crate::{ensure, Result};

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum OptimizerKind {
    /// PyTorch form: v = momentum * v + g; step = nesterov ? g + momentum * v : v.
    /// momentum 0 is plain SGD (no state buffer).
    Sgd { momentum: f32, nesterov: bool },
    /// m = b1 m + (1 - b1) g; v = b2 v + (1 - b2) g^2; step = (m / bc1) / (sqrt(v / bc2) + eps).
    Adam { beta1: f32, beta2: f32, eps: f32 },
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct OptimizerConfig {
    pub kind: OptimizerKind,
    /// 0 disables weight decay.
    pub weight_decay: f32,
    /// false: L2, `g += weight_decay * p` before the optimizer sees g. true: decoupled
    /// (AdamW), `p -= lr * weight_decay * p` beside the optimizer's step.
    pub decoupled_weight_decay: bool,
}

impl OptimizerConfig {
    /// Adam with PyTorch's defaults (0.9, 0.999, 1e-8), no weight decay.
    pub fn adam() -> Self {
        OptimizerConfig {
            kind: OptimizerKind::Adam { beta1: 0.9, beta2: 0.999, eps: 1e-8 },
            weight_decay: 0.0,
            decoupled_weight_decay: false,
        }
    }
    /// SGD with `momentum` (0 for plain SGD), no Nesterov, no weight decay.
    pub fn sgd(momentum: f32) -> Self {
        OptimizerConfig { kind: OptimizerKind::Sgd { momentum, nesterov: false }, weight_decay: 0.0, decoupled_weight_decay: false }
    }
}

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    n: u32,
    t: u32,
    nesterov: u32,
    decoupled: u32,
    lr: f32,
    weight_decay: f32,
    momentum: f32,
    beta1: f32,
    beta2: f32,
    eps: f32,
    bc1: f32,
    bc2: f32,
}

const WG: u32 = 256;

pub struct Optimizer {
    pub name: String,
    pub cfg: OptimizerConfig,
    t: u64,
    uniform: Params,
    uniform_buf: wgpu::Buffer,
    state: Vec<(&'static str, Tensor)>,
    /// Mixed precision: the loss-scale state (nn::loss_scale) the `*_scaled` entry reads.
    loss_scale: Option<Tensor>,
    dispatch: Dispatch,
}

/// Error unless the hyperparameters make sense, naming the optimizer.
fn validate(name: &str, cfg: &OptimizerConfig) -> Result<()> {
    let wd = cfg.weight_decay;
    ensure!(wd.is_finite() && wd >= 0.0, "optimizer {name}: weight_decay {wd} must be finite and >= 0");
    match cfg.kind {
        OptimizerKind::Sgd { momentum, nesterov } => {
            ensure!((0.0..1.0).contains(&momentum), "optimizer {name}: SGD momentum {momentum} must be in [0, 1)");
            ensure!(!nesterov || momentum > 0.0, "optimizer {name}: Nesterov momentum needs momentum > 0");
        }
        OptimizerKind::Adam { beta1, beta2, eps } => {
            ensure!((0.0..1.0).contains(&beta1), "optimizer {name}: Adam beta1 {beta1} must be in [0, 1)");
            ensure!((0.0..1.0).contains(&beta2), "optimizer {name}: Adam beta2 {beta2} must be in [0, 1)");
            ensure!(eps.is_finite() && eps > 0.0, "optimizer {name}: Adam eps {eps} must be finite and > 0");
        }
    }
    Ok(())
}

impl Optimizer {
    /// An optimizer updating `params` from `grads` (the arena tensors; same length). Allocates
    /// its moment tensors, zeroed: Adam "m" and "v"; SGD with momentum "momentum"; plain SGD
    /// none. The step counter starts at 0.
    pub fn new(gpu: &Gpu, name: &str, cfg: OptimizerConfig, params: &Tensor, grads: &Tensor) -> Result<Self> {
        Self::build(gpu, name, cfg, params, grads, None)
    }

    /// `new` for gradients of a scaled loss (mixed precision): the update divides them by
    /// the scale in `loss_scale` (nn::loss_scale's state), and skips the step when it flags
    /// an overflow; Adam's bias corrections count the applied steps only.
    pub fn new_scaled(gpu: &Gpu, name: &str, cfg: OptimizerConfig, params: &Tensor, grads: &Tensor, loss_scale: &Tensor) -> Result<Self> {
        Self::build(gpu, name, cfg, params, grads, Some(loss_scale))
    }

    fn build(gpu: &Gpu, name: &str, cfg: OptimizerConfig, params: &Tensor, grads: &Tensor, loss_scale: Option<&Tensor>) -> Result<Self> {
        validate(name, &cfg)?;
        let n = params.len();
        ensure!(
            grads.len() == n,
            "optimizer {name}: gradients ({}) have {} values, parameters ({}) {n}; both must be the whole arena",
            grads.label(),
            grads.len(),
            params.label()
        );
        // One buffer bound both read-only and read-write in a dispatch is a wgpu usage conflict.
        ensure!(
            params.buffer() != grads.buffer(),
            "optimizer {name}: parameters ({}) and gradients ({}) must be separate buffers",
            params.label(),
            grads.label()
        );
        let mut uniform = Params {
            n: u32_of(name, "parameters", n)?,
            t: 0,
            nesterov: 0,
            decoupled: cfg.decoupled_weight_decay as u32,
            lr: 0.0,
            weight_decay: cfg.weight_decay,
            momentum: 0.0,
            beta1: 0.0,
            beta2: 0.0,
            eps: 0.0,
            bc1: 1.0,
            bc2: 1.0,
        };
        let moment = |what: &str| gpu.tensor(&format!("{name} {what}"), params.shape());
        let (entry, state) = match cfg.kind {
            OptimizerKind::Sgd { momentum, nesterov } => {
                uniform.momentum = momentum;
                uniform.nesterov = nesterov as u32;
                if momentum == 0.0 {
                    ("optim_sgd", vec![])
                } else {
                    ("optim_sgd_momentum", vec![("momentum", moment("momentum")?)])
                }
            }
            OptimizerKind::Adam { beta1, beta2, eps } => {
                (uniform.beta1, uniform.beta2, uniform.eps) = (beta1, beta2, eps);
                ("optim_adam", vec![("m", moment("m")?), ("v", moment("v")?)])
            }
        };
        let buffer = gpu.uniform(&format!("{name} params"), &uniform);
        let entry = if loss_scale.is_some() { format!("{entry}_scaled") } else { entry.to_string() };
        let label = format!("{name} {entry}");
        let mut b: Vec<(u32, wgpu::BindingResource)> = vec![(0, buffer.as_entire_binding()), (1, params.binding()), (2, grads.binding())];
        b.extend(state.iter().enumerate().map(|(k, (_, t))| (3 + k as u32, t.binding())));
        if let Some(ls) = loss_scale {
            b.push((5, ls.binding()));
        }
        let groups = gpu.groups_1d(&label, n as u64, WG)?;
        let dispatch = Dispatch::new(gpu, &label, &OPTIM, &entry, &[], &b, groups)?;
        Ok(Optimizer { name: name.to_string(), cfg, t: 0, uniform, uniform_buf: buffer, state, loss_scale: loss_scale.cloned(), dispatch })
    }

    /// Advance the step counter, write this step's uniform (learning rate `lr`, bias
    /// corrections 1 - beta^t computed in f64) and return the prebuilt dispatch to record.
    pub fn step(&mut self, gpu: &Gpu, lr: f32) -> &Dispatch {
        self.t += 1;
        let u = &mut self.uniform;
        u.t = self.t as u32;
        u.lr = lr;
        if let OptimizerKind::Adam { beta1, beta2, .. } = self.cfg.kind {
            let (bc1, bc2) = bias_corrections(beta1, beta2, self.t);
            u.bc1 = bc1 as f32;
            u.bc2 = bc2 as f32;
        }
        gpu.queue.write_buffer(&self.uniform_buf, 0, bytemuck::bytes_of(&self.uniform));
        &self.dispatch
    }

    /// Steps taken so far (the t of the last `step`).
    pub fn steps_taken(&self) -> u64 {
        self.t
    }

    /// Resume from a checkpoint: the next `step` is step `t + 1`. Restore the moment
    /// tensors of [`Optimizer::state`] with `Gpu::write` alongside.
    pub fn set_steps_taken(&mut self, t: u64) {
        self.t = t;
    }

    /// The optimizer's state tensors, named, each the arena's length: `[("m", ..), ("v", ..)]`
    /// for Adam, `[("momentum", ..)]` for SGD with momentum, `[]` for plain SGD.
    pub fn state(&self) -> Vec<(&'static str, &Tensor)> {
        self.state.iter().map(|(k, t)| (*k, t)).collect()
    }

    /// The loss-scale state of a `new_scaled` optimizer (saved and restored with the
    /// moments), else None.
    pub fn loss_scale(&self) -> Option<&Tensor> {
        self.loss_scale.as_ref()
    }
}

/// Adam's bias corrections (1 - beta1^t, 1 - beta2^t) in f64 from the f32 betas.
pub fn bias_corrections(beta1: f32, beta2: f32, t: u64) -> (f64, f64) {
    let t = t.min(i32::MAX as u64) as i32;
    (1.0 - (beta1 as f64).powi(t), 1.0 - (beta2 as f64).powi(t))
}
