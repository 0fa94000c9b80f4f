//! Inverted dropout with a counter-based mask (hash of seed and element index): no mask
//! buffer; the backward recomputes the mask. Kernels: shaders/dropout.wgsl. Reference (the
//! same hash on the CPU, bit for bit): src/reference/dropout.rs.
//!
//! The seed lives in the op's uniform; call [`Dropout::set_seed`] before each training step
//! (a 4-byte `queue.write_buffer`, no new buffers or bind groups). Give every dropout layer
//! of a model its own seed per step (e.g. a host RNG draw per layer): two layers with equal
//! seeds and shapes draw identical masks.

use super::layer::{Io, LayerOp, Mode};
use super::u32_of;
use crate::gpu::{shaders::DROPOUT, Dispatch, Gpu, Tensor};
use crate::{ensure, Result};

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    n: u32,
    seed: u32,
    rate: f32,
    scale: f32,
}

/// Byte offset of `seed` in `Params` (what `set_seed` rewrites).
const SEED_OFFSET: u64 = 4;

const WG: u32 = 256;

pub struct Dropout {
    pub name: String,
    /// Probability of dropping an element, in [0, 1).
    pub rate: f32,
    /// Input (= output) shape, batch first.
    pub shape: Vec<usize>,
    params: wgpu::Buffer,
}

/// One buffer bound both read-only and read-write in a dispatch is a wgpu usage conflict
/// (even as disjoint views): refuse it with an error naming the layer.
fn distinct(layer: &str, out: &Tensor, inp: &Tensor) -> Result<()> {
    ensure!(
        out.buffer() != inp.buffer(),
        "layer {layer}: {} and {} share one buffer; dropout cannot run in place",
        out.label(),
        inp.label()
    );
    Ok(())
}

impl Dropout {
    /// `shape` is any activation shape (`[N, C, H, W]`, `[N, F]`). The seed starts at 0.
    pub fn new(gpu: &Gpu, name: &str, rate: f32, shape: &[usize]) -> Result<Self> {
        ensure!((0.0..1.0).contains(&rate), "layer {name}: dropout rate {rate} must be in [0, 1)");
        ensure!(
            !shape.is_empty() && shape.iter().all(|&d| d > 0),
            "layer {name}: input shape {shape:?} must have at least one dimension and no zero dimension"
        );
        let n = u32_of(name, "elements", shape.iter().product())?;
        let scale = (1.0 / (1.0 - rate as f64)) as f32;
        let p = Params { n, seed: 0, rate, scale };
        let params = gpu.uniform(&format!("{name} params"), &p);
        Ok(Dropout { name: name.to_string(), rate, shape: shape.to_vec(), params })
    }

    /// Seed of the mask for the next submitted forward / backward (queued; ordered before the
    /// next submit). Forward and backward of one step must see the same seed.
    pub fn set_seed(&self, gpu: &Gpu, seed: u32) {
        gpu.queue.write_buffer(&self.params, SEED_OFFSET, bytemuck::bytes_of(&seed));
    }

    fn len(&self) -> usize {
        self.shape.iter().product()
    }

    /// The uniform holding the mask's seed and rate (dropout.wgsl's `Params`), for kernels
    /// that apply this layer's mask inside their own pass (BatchNorm::forward_train_act_pool).
    pub fn uniform(&self) -> &wgpu::Buffer {
        &self.params
    }

    fn elementwise(&self, gpu: &Gpu, entry: &str, bindings: &[(u32, &Tensor)]) -> Result<Dispatch> {
        let label = format!("{} {entry}", self.name);
        let mut b: Vec<(u32, wgpu::BindingResource)> = vec![(0, self.params.as_entire_binding())];
        b.extend(bindings.iter().map(|(i, t)| (*i, t.binding())));
        let groups = gpu.groups_1d(&label, self.len() as u64, WG)?;
        Dispatch::new(gpu, &label, &DROPOUT, entry, &[], &b, groups)
    }

    /// Training (`train`): y = keep ? x / (1 - rate) : 0. Inference: y = x (a copy, so the
    /// model keeps one buffer layout). Overwrites y.
    pub fn forward(&self, gpu: &Gpu, x: &Tensor, y: &Tensor, train: bool) -> Result<Dispatch> {
        x.expect_shape(&self.name, "input", &self.shape)?;
        y.expect_len(&self.name, "output", self.len())?;
        distinct(&self.name, x, y)?;
        let entry = if train { "dropout_forward" } else { "dropout_copy" };
        self.elementwise(gpu, entry, &[(1, x), (2, y)])
    }

    /// dx = keep ? dy / (1 - rate) : 0, with the mask of the current seed. Overwrites dx.
    pub fn backward(&self, gpu: &Gpu, dx: &Tensor, dy: &Tensor) -> Result<Dispatch> {
        dx.expect_len(&self.name, "input gradient", self.len())?;
        dy.expect_len(&self.name, "output gradient", self.len())?;
        distinct(&self.name, dx, dy)?;
        self.elementwise(gpu, "dropout_backward", &[(3, dx), (4, dy)])
    }
}

/// The layer interface: a mask per step from `set_seed`; inference is a copy.
impl LayerOp for Dropout {
    fn out_shape(&self) -> Vec<usize> {
        self.shape.clone()
    }
    fn forward(&self, gpu: &Gpu, io: &Io, mode: Mode) -> Result<Vec<Dispatch>> {
        Ok(vec![Dropout::forward(self, gpu, io.x, io.y, mode == Mode::Train)?])
    }
    fn backward(&self, gpu: &Gpu, io: &Io) -> Result<Vec<Dispatch>> {
        Ok(match io.dx {
            Some(dx) => vec![Dropout::backward(self, gpu, dx, io.dy())?],
            None => vec![],
        })
    }
    /// Inference dropout is the identity: its gradient is a copy.
    fn input_grad(&self, gpu: &Gpu, io: &Io) -> Result<Vec<Dispatch>> {
        Ok(vec![Dropout::forward(self, gpu, io.dy(), io.dx.expect("input gradient"), false)?])
    }
    fn set_seed(&self, gpu: &Gpu, seed: u32) {
        Dropout::set_seed(self, gpu, seed)
    }
    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}
