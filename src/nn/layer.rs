//! The one interface every built layer records through (`LayerOp`), and what the network
//! hands a layer when it records: its input, output, their gradients, its parameters and the
//! extra buffers it asked the memory plan for.
//!
//! A layer op is made once per (layer, input shape, batch) by `LayerSpec::build` and owns
//! its uniforms and private state (BatchNorm running statistics, dropout seed). It declares
//! what the network must allocate for it (parameters, extra slots) and what its backward
//! reads; the network (src/nn/network.rs) allocates, then asks each layer for the dispatches
//! of each pass in a loop. Nothing here matches on layer kinds: kind questions are asked of
//! `LayerSpec` (src/nn/spec.rs).

use crate::gpu::{Dispatch, Gpu, Tensor};
use crate::Result;
use std::any::Any;

/// How a parameter is initialised (`Network::initial_params`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Init {
    /// He / Kaiming uniform: U(-sqrt(6 / fan_in), +sqrt(6 / fan_in)), for ReLU-family nets.
    HeUniform { fan_in: usize },
    Const(f32),
}

/// A parameter a layer owns, before the arena places it: `<layer>.<suffix>`.
#[derive(Debug, Clone, PartialEq)]
pub struct ParamDecl {
    pub suffix: &'static str,
    pub shape: Vec<usize>,
    pub init: Init,
}

impl ParamDecl {
    pub fn new(suffix: &'static str, shape: Vec<usize>, init: Init) -> ParamDecl {
        ParamDecl { suffix, shape, init }
    }
}

/// A parameter's value and gradient: views of the parameter and gradient arenas.
#[derive(Debug, Clone)]
pub struct ParamViews {
    pub value: Tensor,
    pub grad: Tensor,
}

/// Which forward a pass records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Batch statistics, dropout masks, running-statistic updates.
    Train,
    /// Running statistics, dropout as the identity.
    Infer,
}

/// The tensors one layer's dispatches bind. `x` [in_shape] and `y` [out_shape] always;
/// `dy` (the gradient at y) in backward passes; `dx` where something reads the gradient at x
/// (None: skip it, unless the layer's backward always writes one: then a sink is given);
/// `params` in `ParamDecl` order; `extra` one tensor per `LayerOp::extra_slots` entry.
pub struct Io<'a> {
    pub x: &'a Tensor,
    pub y: &'a Tensor,
    pub dx: Option<&'a Tensor>,
    pub dy: Option<&'a Tensor>,
    pub params: &'a [ParamViews],
    pub extra: &'a [Tensor],
}

impl Io<'_> {
    /// The output gradient (backward passes only; the network always provides it there).
    pub fn dy(&self) -> &Tensor {
        self.dy.expect("a backward pass gives the output gradient")
    }
    /// Parameter `k`'s value (the network passes every declared parameter).
    pub fn value(&self, k: usize) -> &Tensor {
        &self.params[k].value
    }
    /// Parameter `k`'s gradient.
    pub fn grad(&self, k: usize) -> &Tensor {
        &self.params[k].grad
    }
    /// Parameter `k`'s value where the layer has it (an optional bias, PReLU's slope).
    pub fn maybe_value(&self, k: usize) -> Option<&Tensor> {
        self.params.get(k).map(|p| &p.value)
    }
}

/// A built layer's recording interface.
pub trait LayerOp: Any + Send + Sync {
    /// Output shape, batch first.
    fn out_shape(&self) -> Vec<usize>;

    /// Trainable parameters, in the order `Io::params` passes them.
    fn params(&self) -> Vec<ParamDecl> {
        Vec::new()
    }

    /// Non-trainable state saved with the weights (`<layer>.<suffix>`, e.g. BatchNorm's
    /// running statistics), and its initial value.
    fn state(&self) -> Vec<(&'static str, Tensor, f32)> {
        Vec::new()
    }

    /// Use another build's state tensors (same order as `state`): networks of one model at
    /// two batch sizes share running statistics.
    fn share_state(&mut self, _state: &[Tensor]) {}

    /// Extra buffers the memory plan allocates for this layer (`<layer>.<suffix>`, shape),
    /// written by the training / inference forward and read by the backward (max pooling's
    /// argmax indices).
    fn extra_slots(&self) -> Vec<(&'static str, Vec<usize>)> {
        Vec::new()
    }

    /// Is the output a view of the input (Flatten), with no dispatch of its own?
    fn is_view(&self) -> bool {
        false
    }

    /// Does the training backward read the layer's input `x`? (Weight gradients, the
    /// normalised input, an activation's argument. Max pooling reads its argmax instead,
    /// dropout recomputes its mask.)
    fn backward_reads_input(&self) -> bool {
        false
    }

    /// Does the training backward write dx even when nothing reads it (BatchNorm's backward
    /// computes dx in the same kernel as its parameter gradients)? The network then gives
    /// it a sink.
    fn backward_always_writes_dx(&self) -> bool {
        false
    }

    /// The forward pass: writes `io.y` (and extra slots).
    fn forward(&self, gpu: &Gpu, io: &Io, mode: Mode) -> Result<Vec<Dispatch>>;

    /// The training backward: parameter gradients (overwritten) from `io.dy`, and `io.dx`
    /// where given.
    fn backward(&self, gpu: &Gpu, io: &Io) -> Result<Vec<Dispatch>>;

    /// The inference-mode input gradient alone (explanations): `io.dx` from `io.dy`, with
    /// running statistics and dropout as the identity; no parameter gradients.
    fn input_grad(&self, gpu: &Gpu, io: &Io) -> Result<Vec<Dispatch>>;

    /// A new random stream for the next step (dropout masks).
    fn set_seed(&self, _gpu: &Gpu, _seed: u32) {}

    /// For inference fusion (src/nn/fuse.rs), which looks at concrete layer types.
    fn as_any(&self) -> &dyn Any;
}

/// Flatten: `[N, ...]` -> `[N, prod(...)]`, a view of its input (no kernel).
pub struct Flatten {
    pub out_shape: Vec<usize>,
}

impl Flatten {
    pub fn new(in_shape: &[usize]) -> Flatten {
        Flatten { out_shape: vec![in_shape[0], in_shape[1..].iter().product()] }
    }
}

impl LayerOp for Flatten {
    fn out_shape(&self) -> Vec<usize> {
        self.out_shape.clone()
    }
    fn is_view(&self) -> bool {
        true
    }
    fn forward(&self, _: &Gpu, _: &Io, _: Mode) -> Result<Vec<Dispatch>> {
        Ok(vec![])
    }
    fn backward(&self, _: &Gpu, _: &Io) -> Result<Vec<Dispatch>> {
        Ok(vec![])
    }
    fn input_grad(&self, _: &Gpu, _: &Io) -> Result<Vec<Dispatch>> {
        Ok(vec![])
    }
    fn as_any(&self) -> &dyn Any {
        self
    }
}
