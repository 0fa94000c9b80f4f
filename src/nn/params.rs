//! The flat parameter arena: every trainable parameter is a view at an aligned offset of
//! one buffer (and of the gradient arena beside it), so one optimizer dispatch updates them
//! all. Placement and initial values here; the network (network.rs) owns the buffers.

use super::layer::{Init, LayerOp};
use crate::rng::Rng;

/// A trainable parameter: a view of the arena at an aligned offset.
#[derive(Debug, Clone)]
pub struct Param {
    /// `conv2d_1.weight`, `batch_norm_1.gamma`, ...: the checkpoint's tensor names.
    pub name: String,
    pub shape: Vec<usize>,
    /// Offset in the arena, in elements (a multiple of the device's binding alignment).
    pub offset: usize,
    pub init: Init,
}

impl Param {
    pub fn len(&self) -> usize {
        self.shape.iter().product()
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The parameters of every layer placed in one arena, each at an offset aligned for binding
/// as a view: (params, per-layer indices, arena length).
pub(super) fn place_params(names: &[String], ops: &[Box<dyn LayerOp>], align: usize) -> (Vec<Param>, Vec<Vec<usize>>, usize) {
    let mut params = Vec::new();
    let mut total = 0usize;
    let mut per_layer = Vec::new();
    for (name, op) in names.iter().zip(ops) {
        let mut idx = Vec::new();
        for d in op.params() {
            idx.push(params.len());
            let len: usize = d.shape.iter().product();
            params.push(Param { name: format!("{name}.{}", d.suffix), shape: d.shape, offset: total, init: d.init });
            total += len.div_ceil(align) * align;
        }
        per_layer.push(idx);
    }
    (params, per_layer, total.max(1))
}

/// Initial parameter values for the whole arena (He-uniform weights, zero biases, unit
/// BN scale, PReLU 0.25), deterministic in `seed`. Padding between parameters is 0.
pub fn initial_values(params: &[Param], len: usize, seed: u64) -> Vec<f32> {
    let mut rng = Rng::new(seed);
    let mut arena = vec![0.0f32; len];
    for p in params {
        let dst = &mut arena[p.offset..p.offset + p.len()];
        match p.init {
            Init::HeUniform { fan_in } => {
                let limit = (6.0 / fan_in.max(1) as f64).sqrt();
                dst.iter_mut().for_each(|v| *v = rng.range(-limit, limit) as f32);
            }
            Init::Const(c) => dst.fill(c),
        }
    }
    arena
}
