//! Fused softmax + cross-entropy over logits [N, K] with u32 labels [N]: per-sample loss,
//! correct flag and the logits gradient in one kernel; a one-workgroup reduction to
//! (mean loss, number correct) so the host reads 8 bytes; softmax probabilities for
//! prediction. Kernels: shaders/softmax_xent.wgsl. Reference: src/reference/softmax_xent.rs.
//!
//! Labels >= K are flagged by the kernel (loss NaN, correct 0, zero gradient row), never
//! read out of bounds; validating labels is the host's job.

use super::{nc_s, u32_of};
use crate::gpu::{shaders::SOFTMAX_XENT, Dispatch, Gpu, Tensor};
use crate::{ensure, Result};

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    n: u32,
    k: u32,
    scale: f32,
    nan_bits: u32,
}

/// Invocations per workgroup of the per-sample kernels (the shader's `WG`).
const WG: u32 = 64;

pub struct SoftmaxXent {
    pub name: String,
    pub batch: usize,
    pub classes: usize,
    params: wgpu::Buffer,
}

impl SoftmaxXent {
    /// `input_shape` is the logits' `[N, K]` (trailing 1s allowed: `[N, K, 1, 1]`).
    /// `total_batch` (>= N) is the size of the whole batch that this chunk of N samples
    /// belongs to: dlogits are scaled by 1 / total_batch so that chunk gradients summed
    /// with ACCUMULATE give the gradient of the mean loss over the whole batch.
    pub fn new(gpu: &Gpu, name: &str, input_shape: &[usize], total_batch: usize) -> Result<Self> {
        let (batch, classes, s) = nc_s(name, input_shape)?;
        ensure!(s == 1, "layer {name}: logits shape {input_shape:?} is not [N, K]");
        ensure!(
            total_batch >= batch,
            "layer {name}: total_batch={total_batch} is smaller than this chunk's batch {batch} (logits shape {input_shape:?})"
        );
        let p = Params {
            n: u32_of(name, "batch", batch)?,
            k: u32_of(name, "classes", classes)?,
            scale: (1.0 / total_batch as f64) as f32,
            nan_bits: f32::NAN.to_bits(),
        };
        u32_of(name, "batch * classes", batch * classes)?;
        let params = gpu.uniform(&format!("{name} params"), &p);
        Ok(SoftmaxXent { name: name.to_string(), batch, classes, params })
    }

    fn per_sample(&self, gpu: &Gpu, entry: &str, bindings: &[(u32, &Tensor)]) -> Result<Dispatch> {
        let label = format!("{} {entry}", self.name);
        let mut b: Vec<(u32, wgpu::BindingResource)> = vec![(0, self.params.as_entire_binding())];
        b.extend(bindings.iter().map(|(i, t)| (*i, t.binding())));
        let groups = gpu.groups_1d(&label, self.batch as u64, WG)?;
        Dispatch::new(gpu, &label, &SOFTMAX_XENT, entry, &[], &b, groups)
    }

    /// Overwrites dlogits [N, K] (= (softmax - onehot) / total_batch), losses [N] (f32) and
    /// correct [N] (u32: 1 when the first argmax is the label). labels are u32 [N].
    pub fn forward_backward(&self, gpu: &Gpu, dlogits: &Tensor, losses: &Tensor, correct: &Tensor, logits: &Tensor, labels: &Tensor) -> Result<Dispatch> {
        let (n, nk) = (self.batch, self.batch * self.classes);
        dlogits.expect_len(&self.name, "logits gradient", nk)?;
        losses.expect_len(&self.name, "losses", n)?;
        correct.expect_len(&self.name, "correct flags", n)?;
        logits.expect_len(&self.name, "logits", nk)?;
        labels.expect_len(&self.name, "labels", n)?;
        self.per_sample(gpu, "softmax_xent_forward_backward", &[(3, dlogits), (4, losses), (5, correct), (1, logits), (2, labels)])
    }

    /// stats [2] = (mean of losses over the N samples, number correct as f32), from the
    /// outputs of `forward_backward`. One workgroup; overwrites stats.
    pub fn reduce(&self, gpu: &Gpu, stats: &Tensor, losses: &Tensor, correct: &Tensor) -> Result<Dispatch> {
        stats.expect_len(&self.name, "stats", 2)?;
        losses.expect_len(&self.name, "losses", self.batch)?;
        correct.expect_len(&self.name, "correct flags", self.batch)?;
        let label = format!("{} softmax_xent_reduce", self.name);
        let b = [(0, self.params.as_entire_binding()), (6, stats.binding()), (8, losses.binding()), (9, correct.binding())];
        Dispatch::new(gpu, &label, &SOFTMAX_XENT, "softmax_xent_reduce", &[], &b, [1, 1, 1])
    }

    /// probs [N, K] = softmax(logits). Overwrites probs.
    pub fn probabilities(&self, gpu: &Gpu, probs: &Tensor, logits: &Tensor) -> Result<Dispatch> {
        let nk = self.batch * self.classes;
        probs.expect_len(&self.name, "probabilities", nk)?;
        logits.expect_len(&self.name, "logits", nk)?;
        self.per_sample(gpu, "softmax_xent_probabilities", &[(7, probs), (1, logits)])
    }
}
