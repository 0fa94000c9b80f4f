//! Dynamic loss scaling for mixed-precision training (nn::precision): kernels in
//! shaders/loss_scale.wgsl, the rule's f64 reference in src/reference/loss_scale.rs.
//!
//! The state lives on the GPU (8 f32, layout in the shader's header) and is never read back
//! inside a step: the loss gradient is multiplied by the scale S, the backward pass runs, a
//! check flags any inf / NaN gradient, the update applies the rule (overflow: skip the step,
//! halve S; `interval` finite steps in a row: double S) and the optimizer's `*_scaled`
//! entries divide the gradients by S or leave everything as it is on a skipped step. The
//! host reads the state once an epoch (`read`) for history.csv's skipped-step count.
//!
//! A network built with `Precision::Mixed` for training owns one (`Network::loss_scale`)
//! and records `apply` after its loss and `check` + `update` after its backward pass; the
//! optimizer binds `state()` and saves it with its moments, so a resumed run continues
//! with the same scale and step count.

use super::u32_of;
use crate::gpu::{shaders::LOSS_SCALE, Dispatch, Gpu, Tensor};
use crate::{ensure, Result};

/// The scale the first step uses (PyTorch GradScaler's 2^16).
pub const INITIAL_SCALE: f32 = 65536.0;
/// Finite steps in a row before the scale doubles (PyTorch's 2000).
pub const GROWTH_INTERVAL: u32 = 2000;

/// Indices into the state (see shaders/loss_scale.wgsl).
const SCALE: usize = 0;
const APPLIED: usize = 3;
const SKIPPED: usize = 5;
const INTERVAL: usize = 6;
const STATE_LEN: usize = 8;

const WG: u32 = 256;

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    n: u32,
}

/// The host's view of the state (`LossScale::read`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ScaleState {
    /// The scale the next step multiplies the loss gradient by.
    pub scale: f32,
    /// Steps whose update was applied (Adam's t).
    pub applied: u64,
    /// Steps skipped because their gradients overflowed.
    pub skipped: u64,
}

pub struct LossScale {
    pub name: String,
    state: Tensor,
    /// One u32: set by `check`, cleared by `update`.
    flag: Tensor,
    apply: Dispatch,
    check: Dispatch,
    update: Dispatch,
}

impl LossScale {
    /// Loss scaling of the gradient `dlogits` (the loss's, before the backward pass) with the
    /// gradient arena `grads` checked after it; the state starts at `initial` with growth
    /// after `interval` finite steps.
    pub fn new(gpu: &Gpu, name: &str, dlogits: &Tensor, grads: &Tensor, initial: f32, interval: u32) -> Result<Self> {
        ensure!(initial.is_finite() && initial > 0.0, "{name}: the initial loss scale {initial} must be a positive number");
        ensure!((1..1 << 24).contains(&interval), "{name}: the growth interval {interval} must be in 1 .. 2^24 steps");
        ensure!(dlogits.buffer() != grads.buffer(), "{name}: the loss gradient and the gradient arena must be separate buffers");
        let state = gpu.tensor(&format!("{name} state"), &[STATE_LEN])?;
        let flag = gpu.tensor(&format!("{name} overflow flag"), &[1])?;
        // One invocation per element of `over` (bound at `at`), with its length in the uniform.
        let elementwise = |label: &str, entry: &str, over: (u32, &Tensor), other: (u32, &Tensor)| -> Result<Dispatch> {
            let label = format!("{name} {label}");
            let uniform = gpu.uniform(&format!("{label} params"), &Params { n: u32_of(name, label.as_str(), over.1.len())? });
            let b = [(0, uniform.as_entire_binding()), (over.0, over.1.binding()), (other.0, other.1.binding())];
            Dispatch::new(gpu, &label, &LOSS_SCALE, entry, &[], &b, gpu.groups_1d(&label, over.1.len() as u64, WG)?)
        };
        let apply = elementwise("apply", "loss_scale_apply", (3, dlogits), (1, &state))?;
        let check = elementwise("check", "loss_scale_check", (4, grads), (2, &flag))?;
        let update = Dispatch::new(gpu, &format!("{name} update"), &LOSS_SCALE, "loss_scale_update", &[], &[(1, state.binding()), (2, flag.binding())], [1, 1, 1])?;
        let ls = LossScale { name: name.to_string(), state, flag, apply, check, update };
        ls.reset(gpu, initial, interval)?;
        Ok(ls)
    }

    /// Start again: scale `initial`, no steps applied or skipped, the flag clear.
    pub fn reset(&self, gpu: &Gpu, initial: f32, interval: u32) -> Result<()> {
        let mut s = [0f32; STATE_LEN];
        s[SCALE] = initial;
        s[1] = 1.0 / initial;
        s[INTERVAL] = interval as f32;
        gpu.write(&self.state, &s)?;
        gpu.write(&self.flag, &[0u32])
    }

    /// Multiply the loss gradient by the scale: record after the loss, before the backward.
    pub fn apply(&self) -> &Dispatch {
        &self.apply
    }

    /// Flag a non-finite gradient, then apply the rule: record after the backward pass,
    /// before the optimizer's `*_scaled` step.
    pub fn check_and_update(&self) -> [&Dispatch; 2] {
        [&self.check, &self.update]
    }

    /// The state tensor the optimizer binds and checkpoints save.
    pub fn state(&self) -> &Tensor {
        &self.state
    }

    /// Read the state back (once an epoch; blocks until the GPU is done with it).
    pub fn read(&self, gpu: &Gpu) -> Result<ScaleState> {
        let s = gpu.read(&self.state)?;
        Ok(ScaleState { scale: s[SCALE], applied: s[APPLIED] as u64, skipped: s[SKIPPED] as u64 })
    }
}
