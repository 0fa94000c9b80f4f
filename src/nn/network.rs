//! A `ModelSpec` built for one input shape and batch size: every op, activation and gradient
//! buffer, and the flat parameter arena, allocated once; the forward (training and
//! inference) and backward passes recorded once as `Dispatch` lists and replayed every step.
//!
//! Wiring only: each layer records through `LayerOp` (src/nn/layer.rs), the activation
//! memory is planned by src/nn/memory.rs, and inference fusion (conv + BatchNorm +
//! activation as one kernel) is src/nn/fuse.rs. Layer i reads `acts[i]` and writes
//! `acts[i + 1]` (`acts[0]` the input batch); `dacts[i]` is the gradient at `acts[i]`.
//! With `BuildOptions::reuse` activations and gradients share memory (see memory.rs):
//! `activation(i)` then holds a value only between the dispatch writing it and its last
//! reader, so explanation networks build with `reuse: false`.

use super::fuse::{self, Fused};
use super::loss_scale::{self, LossScale};
use super::precision::Precision;
use super::layer::{Io, LayerOp, Mode, ParamViews};
use super::params::{self, place_params};
pub use super::params::Param;
use super::memory::{self, ActivationMemory, LayerSlots};
use super::optim::{Optimizer, OptimizerConfig};
use super::softmax_xent::SoftmaxXent;
use super::spec::{LayerSpec, ModelSpec};
use crate::gpu::{Dispatch, Gpu, Tensor};
use crate::{ensure, Error, Result};

/// One built layer.
pub struct Layer {
    pub name: String,
    pub spec: LayerSpec,
    /// Input and output shapes, batch first.
    pub in_shape: Vec<usize>,
    pub out_shape: Vec<usize>,
    /// Indices into `Network::params`.
    pub params: Vec<usize>,
    pub op: Box<dyn LayerOp>,
    /// The extra slots it asked for (`LayerOp::extra_slots`), allocated by the memory plan.
    extra: Vec<Tensor>,
    /// Where its training backward writes a dx nobody reads (`backward_always_writes_dx`).
    sink: Option<Tensor>,
    /// Parameter and gradient views, in `LayerOp::params` order.
    views: Vec<ParamViews>,
}

impl Layer {
    /// Is this a convolution (Grad-CAM, filter ascent and filter outputs pick these)?
    pub fn is_conv(&self) -> bool {
        self.spec.is_conv()
    }
}

/// Options for `Network::build`.
#[derive(Debug, Clone, Copy)]
pub struct BuildOptions {
    /// Also compute the gradient with respect to the input images (saliency maps, filter
    /// ascent). Training does not need it.
    pub input_grad: bool,
    /// Share GPU memory between activations and gradients whose lifetimes in the recorded
    /// passes are disjoint (src/nn/memory.rs). On by default (training, evaluation,
    /// prediction); off for explanations, which read intermediate activations and gradients
    /// afterwards.
    pub reuse: bool,
    /// Fuse BatchNorm + activation in training (src/nn/fuse.rs; applies with `reuse` and
    /// without `input_grad`). Default on, off with the environment's `MIEN_FUSE=0`.
    pub fuse: bool,
    /// With `fuse`: a conv whose kernel can (subgroup) also writes the batch statistics of
    /// the BatchNorm of the training pair after it, which then never re-reads the conv's
    /// output for them (`fuse::stats_partials`). Default on, off with `MIEN_FUSE=0` or
    /// `MIEN_FUSE_STATS=0`.
    pub fuse_stats: bool,
    /// With `fuse`: a training pair followed by a 2x2 stride-2 max pool (and dropouts right
    /// before or after it) runs the pool and the dropouts in its forward pass, which writes
    /// the pool's (or the last dropout's) output and the argmax, and never the activation's
    /// (`fuse::pool_tails`). Default on, off with `MIEN_FUSE=0` or `MIEN_FUSE_POOL=0`.
    pub fuse_pool: bool,
    /// f32 or mixed-precision GEMMs (src/nn/precision.rs); mixed training also scales the
    /// loss (`loss_scale`). Default f32.
    pub precision: Precision,
}

impl Default for BuildOptions {
    fn default() -> Self {
        BuildOptions { input_grad: false, reuse: true, fuse: fuse::enabled_by_env(), fuse_stats: fuse::stats_enabled_by_env(), fuse_pool: fuse::pool_enabled_by_env(), precision: Precision::F32 }
    }
}

impl BuildOptions {
    /// What explanations build: input gradients, and every activation and gradient in its
    /// own buffer (readable after any pass).
    pub const EXPLAIN: BuildOptions = BuildOptions { input_grad: true, reuse: false, fuse: false, fuse_stats: false, fuse_pool: false, precision: Precision::F32 };

    /// These options with `precision`.
    pub fn with_precision(self, precision: Precision) -> BuildOptions {
        BuildOptions { precision, ..self }
    }
}

pub struct Network {
    pub spec: ModelSpec,
    pub batch: usize,
    /// Per-sample input shape [C, H, W].
    pub input_chw: [usize; 3],
    pub classes: usize,
    /// What its convolutions and dense layers were built for.
    pub precision: Precision,
    pub layers: Vec<Layer>,
    pub params: Vec<Param>,
    /// Flat parameter and gradient arenas (same length, padded for alignment).
    pub arena: Tensor,
    pub grads: Tensor,
    /// Non-trainable state saved with the weights: BatchNorm running statistics.
    pub buffers: Vec<(String, Tensor)>,
    /// acts[0] is the input batch, acts[i + 1] the output of layer i.
    acts: Vec<Tensor>,
    /// dacts[i] is the gradient with respect to acts[i] (None where nothing needs it).
    dacts: Vec<Option<Tensor>>,
    labels: Tensor,
    losses: Tensor,
    correct: Tensor,
    stats: Tensor,
    probs: Tensor,
    forward_train: Vec<Dispatch>,
    forward_infer: Vec<Dispatch>,
    loss: Vec<Dispatch>,
    backward: Vec<Dispatch>,
    probabilities: Dispatch,
    /// Inference: the fused conv + BatchNorm (+ activation) layers, kept alive with the
    /// dispatches that bind their folded weights.
    fused: Vec<Fused>,
    /// Training: per layer, does this BatchNorm run the next layer's activation in its own
    /// passes (`fuse::train_pairs`)?
    train_pairs: Vec<bool>,
    /// Training: per layer, the statistics partials [C, G, 3] where this conv writes the
    /// batch statistics of the BatchNorm after it (`fuse::stats_partials`).
    stats_partials: Vec<Option<Tensor>>,
    /// Training: per layer, how many layers after a training pair's activation its forward
    /// pass also runs (a max pool and dropouts; `fuse::pool_tails`), else 0.
    pool_tails: Vec<usize>,
    reuse: bool,
    /// Per acts / dacts index: does the tensor share memory with another (reuse)?
    act_shared: Vec<bool>,
    dact_shared: Vec<bool>,
    memory: ActivationMemory,
    /// Mixed-precision training builds (not `build_like` twins, not explanations).
    loss_scale: Option<LossScale>,
}

impl Network {
    /// Build `spec` for inputs of per-sample shape `input_chw` and batch `batch`. Errors name
    /// the layer whose shape or limit is violated.
    pub fn build(gpu: &Gpu, spec: &ModelSpec, input_chw: [usize; 3], classes: usize, batch: usize, opts: BuildOptions) -> Result<Network> {
        Self::build_inner(gpu, spec, input_chw, classes, batch, opts, None)
    }

    /// The same model for another batch size (validation remainders, prediction), sharing
    /// this network's parameter and gradient arenas and BatchNorm running statistics: a
    /// training step of either is seen by both. Do not run both backward passes at once.
    /// The twin has this network's precision, whatever `opts` says.
    pub fn build_like(&self, gpu: &Gpu, batch: usize, opts: BuildOptions) -> Result<Network> {
        Self::build_inner(gpu, &self.spec, self.input_chw, self.classes, batch, opts.with_precision(self.precision), Some(self))
    }

    fn build_inner(
        gpu: &Gpu,
        spec: &ModelSpec,
        input_chw: [usize; 3],
        classes: usize,
        batch: usize,
        opts: BuildOptions,
        shared: Option<&Network>,
    ) -> Result<Network> {
        ensure!(batch > 0, "model {}: batch size must be positive", spec.name);
        ensure!(!spec.layers.is_empty(), "model {}: has no layers", spec.name);
        let names = spec.layer_names();
        let input_shape = vec![batch, input_chw[0], input_chw[1], input_chw[2]];
        let mut shape = input_shape.clone();
        let mut ops: Vec<Box<dyn LayerOp>> = Vec::with_capacity(spec.layers.len());
        for (name, ls) in names.iter().zip(&spec.layers) {
            gpu.check_shape(&format!("model {}: layer {name}: input {shape:?}", spec.name), &shape)?;
            let op = ls.build(gpu, name, &shape, opts.precision).map_err(|e| e.context(format!("model {}", spec.name)))?;
            shape = op.out_shape();
            ops.push(op);
        }
        ensure!(
            shape == [batch, classes],
            "model {}: the last layer ({}) outputs {:?}, expected logits [{batch}, {classes}] for {classes} classes",
            spec.name,
            names.last().unwrap(),
            shape
        );

        let align = (gpu.limits().min_storage_buffer_offset_alignment as usize / 4).max(1);
        let (params, layer_params, total) = place_params(&names, &ops, align);
        let (arena, grads) = match shared {
            Some(other) => {
                ensure!(other.arena.len() == total, "model {}: shared arena has {} values, this build needs {total}", spec.name, other.arena.len());
                for (op, theirs) in ops.iter_mut().zip(&other.layers) {
                    op.share_state(&theirs.op.state().into_iter().map(|(_, t, _)| t).collect::<Vec<_>>());
                }
                (other.arena.clone(), other.grads.clone())
            }
            None => (gpu.tensor("params", &[total])?, gpu.tensor("grads", &[total])?),
        };

        // Activations, their gradients, extra slots and sinks: planned, then allocated
        // (shared where lifetimes are disjoint, with `reuse`).
        let train_pairs = fuse::train_pairs(&ops, BuildOptions { fuse: opts.fuse && fuse::fits(gpu), ..opts });
        let stats_partials = fuse::stats_partials(gpu, &names, &ops, &train_pairs, opts)?;
        let pool_tails = fuse::pool_tails(&ops, &train_pairs, opts);
        let needs: Vec<LayerSlots> = (0..ops.len()).map(|i| LayerSlots::of(&names[i], ops[i].as_ref(), train_pairs[i], pool_tails[i])).collect();
        let plan = memory::plan(&needs, &input_shape, opts.input_grad);
        let (tensors, shared_slot, memory) = memory::allocate(gpu, &plan, opts.reuse)?;
        let view = |k: usize, shape: &[usize]| tensors[k].reshape(shape);
        let acts: Vec<Tensor> = plan.act.iter().zip(&plan.shapes).map(|(&k, sh)| view(k, sh)).collect::<Result<_>>()?;
        let dacts: Vec<Option<Tensor>> =
            plan.dact.iter().zip(&plan.shapes).map(|(k, sh)| k.map(|k| view(k, sh)).transpose()).collect::<Result<_>>()?;
        let act_shared: Vec<bool> = plan.act.iter().map(|&k| shared_slot[k]).collect();
        let dact_shared: Vec<bool> = plan.dact.iter().map(|k| k.is_some_and(|k| shared_slot[k])).collect();

        let mut buffers = Vec::new();
        let mut layers = Vec::with_capacity(ops.len());
        for (i, ((name, op), idx)) in names.into_iter().zip(ops).zip(layer_params).enumerate() {
            buffers.extend(op.state().into_iter().map(|(suffix, t, _)| (format!("{name}.{suffix}"), t)));
            let views = idx
                .iter()
                .map(|&k| {
                    let p: &Param = &params[k];
                    Ok(ParamViews { value: arena.view(&p.name, p.offset, &p.shape)?, grad: grads.view(&format!("{}.grad", p.name), p.offset, &p.shape)? })
                })
                .collect::<Result<_>>()?;
            layers.push(Layer {
                spec: spec.layers[i].clone(),
                in_shape: acts[i].shape().to_vec(),
                out_shape: op.out_shape(),
                params: idx,
                extra: plan.extra[i].iter().map(|&k| tensors[k].clone()).collect(),
                sink: plan.sink[i].map(|k| tensors[k].clone()),
                views,
                name,
                op,
            });
        }

        let labels = gpu.tensor("labels", &[batch])?;
        let losses = gpu.tensor("losses", &[batch])?;
        let correct = gpu.tensor("correct", &[batch])?;
        let stats = gpu.tensor("loss stats", &[2])?;
        let probs = gpu.tensor("probabilities", &[batch, classes])?;
        let xent = SoftmaxXent::new(gpu, "softmax_xent", &[batch, classes], batch)?;
        let logits = acts.last().unwrap().clone();
        let dlogits = dacts.last().unwrap().clone().expect("logits gradient");
        let loss = vec![
            xent.forward_backward(gpu, &dlogits, &losses, &correct, &logits, &labels)?,
            xent.reduce(gpu, &stats, &losses, &correct)?,
        ];
        let probabilities = xent.probabilities(gpu, &probs, &logits)?;

        let mut net = Network {
            spec: spec.clone(),
            batch,
            input_chw,
            classes,
            precision: opts.precision,
            layers,
            params,
            arena,
            grads,
            buffers,
            acts,
            dacts,
            labels,
            losses,
            correct,
            stats,
            probs,
            forward_train: vec![],
            forward_infer: vec![],
            loss,
            backward: vec![],
            probabilities,
            fused: vec![],
            train_pairs,
            stats_partials,
            pool_tails,
            reuse: opts.reuse,
            act_shared,
            dact_shared,
            memory,
            loss_scale: None,
        };
        net.forward_train = net.record_forward(gpu, Mode::Train, 0..net.layers.len())?;
        (net.forward_infer, net.fused) = fuse::record_inference(&net, gpu)?;
        net.backward = net.record_backward(gpu)?;
        if opts.precision == Precision::Mixed && shared.is_none() && !opts.input_grad {
            net.loss_scale = Some(LossScale::new(gpu, "loss scale", &dlogits, &net.grads, loss_scale::INITIAL_SCALE, loss_scale::GROWTH_INTERVAL)?);
        }
        Ok(net)
    }

    /// Views of parameter `i` in the arena and in the gradient arena.
    pub fn param(&self, i: usize) -> Result<(Tensor, Tensor)> {
        let p = &self.params[i];
        Ok((self.arena.view(&p.name, p.offset, &p.shape)?, self.grads.view(&format!("{}.grad", p.name), p.offset, &p.shape)?))
    }

    /// Parameter `k` of `layer` (in its `LayerOp::params` order): value and gradient views.
    pub fn layer_param(&self, layer: usize, k: usize) -> &ParamViews {
        &self.layers[layer].views[k]
    }

    /// What layer `i`'s dispatches bind: its input and output, their gradients (`dx` None
    /// where `need_dx` is false, unless the layer always writes one: then its buffer or
    /// sink), its parameters and extra slots.
    pub fn io(&self, i: usize, need_dx: bool) -> Io<'_> {
        let layer = &self.layers[i];
        let dx = if need_dx || layer.op.backward_always_writes_dx() { self.dacts[i].as_ref().or(layer.sink.as_ref()) } else { None };
        Io { x: &self.acts[i], y: &self.acts[i + 1], dx, dy: self.dacts[i + 1].as_ref(), params: &layer.views, extra: &layer.extra }
    }

    /// The inference forward of layers `0..upto` only: it writes the input of layer `upto`
    /// (BatchNorm population statistics read it). Needs a build without reuse, so that the
    /// activation survives and no BN is folded away.
    pub fn forward_infer_prefix(&self, gpu: &Gpu, upto: usize) -> Result<Vec<Dispatch>> {
        ensure!(!self.reuse && upto <= self.layers.len(), "model {}: forward_infer_prefix needs a build without reuse", self.spec.name);
        self.record_forward(gpu, Mode::Infer, 0..upto)
    }

    /// The forward dispatches of `layers` in `mode`.
    /// Training pairs (`fuse::train_pairs`), with their pool tails (`fuse::pool_tails`),
    /// record as one: they must lie wholly inside `layers`.
    pub(crate) fn record_forward(&self, gpu: &Gpu, mode: Mode, layers: std::ops::Range<usize>) -> Result<Vec<Dispatch>> {
        let mut out = Vec::new();
        let mut i = layers.start;
        while i < layers.end {
            if let (Mode::Train, Some(partials)) = (mode, &self.stats_partials[i]) {
                out.extend(fuse::conv_forward_stats(self, gpu, i, partials)?);
                i += 1;
                continue;
            }
            if mode == Mode::Train && self.train_pairs[i] {
                let tail = self.pool_tails[i];
                ensure!(i + 1 + tail < layers.end, "model {}: layers {layers:?} split the fused pair at layer {i}", self.spec.name);
                out.extend(if tail > 0 { fuse::train_forward_pool(self, gpu, i, tail)? } else { fuse::train_forward(self, gpu, i)? });
                i += 2 + tail;
                continue;
            }
            out.extend(self.layers[i].op.forward(gpu, &self.io(i, false), mode)?);
            i += 1;
        }
        Ok(out)
    }

    /// The statistics partials the conv at `i - 1` writes for the BatchNorm at `i` in
    /// training (`fuse::stats_partials`), if it does.
    pub(crate) fn stats_partials_for(&self, i: usize) -> Option<&Tensor> {
        i.checked_sub(1).and_then(|c| self.stats_partials[c].as_ref())
    }

    /// Does layer `i` run inside the BatchNorm before it in training (`fuse::train_pairs`)?
    pub fn fused_in_training(&self, i: usize) -> bool {
        i > 0 && self.train_pairs[i - 1]
    }

    fn record_backward(&self, gpu: &Gpu) -> Result<Vec<Dispatch>> {
        // Without input gradients, nothing below the first layer with parameters needs a
        // gradient (a DNN's first dense layer after Flatten skips its dx).
        let first_param = self.layers.iter().position(|l| !l.params.is_empty());
        let mut out = Vec::new();
        for i in (0..self.layers.len()).rev() {
            let need_dx = self.dacts[0].is_some() || first_param.is_some_and(|f| i > f);
            if self.fused_in_training(i) {
                continue;
            }
            if self.train_pairs[i] {
                out.extend(fuse::train_backward(self, gpu, i, need_dx)?);
                continue;
            }
            out.extend(self.layers[i].op.backward(gpu, &self.io(i, need_dx))?);
        }
        Ok(out)
    }

    /// Inference-mode backward for explanations: from the gradient at layer `from`'s output
    /// (`activation(from).1`, written by the caller, e.g. a one-hot on the logits) down to
    /// the gradient at layer `down_to`'s input (`down_to` = 0: the input images, which needs
    /// `BuildOptions::input_grad`). BatchNorm uses its running statistics, dropout is the
    /// identity, and no parameter gradient is computed. Pooling reads the argmax of the last
    /// forward pass, so record this after an inference forward. With `BuildOptions::reuse`
    /// the gradients and activations it touches share memory with others as in training:
    /// only the final input gradient is valid afterwards, and a seed on a layer other than
    /// the last must be written after the forward pass. Explanations build with `reuse: false`.
    pub fn explain_backward(&self, gpu: &Gpu, from: usize, down_to: usize) -> Result<Vec<Dispatch>> {
        ensure!(from < self.layers.len() && down_to <= from, "explain_backward: layers {down_to}..={from} of {}", self.layers.len());
        let mut out = Vec::new();
        for i in (down_to..=from).rev() {
            ensure!(
                self.dacts[i].is_some(),
                "model {}: no gradient is planned at layer {}'s input ({}); build with BuildOptions {{ input_grad: true }} (which also turns training fusion off)",
                self.spec.name,
                self.layers[i].name,
                if i > 0 && self.train_pairs[i - 1] { "its activation is fused into the BatchNorm before it" } else { "the network was built for training, which plans none there" }
            );
            out.extend(self.layers[i].op.input_grad(gpu, &self.io(i, true))?);
        }
        Ok(out)
    }

    /// Inference forward only (no loss, no probabilities): what explanations record first.
    pub fn forward_infer_dispatches(&self) -> impl Iterator<Item = &Dispatch> {
        self.forward_infer.iter()
    }

    /// Initial parameter values for the whole arena (see `params::initial_values`),
    /// deterministic in `seed`.
    pub fn initial_params(&self, seed: u64) -> Vec<f32> {
        params::initial_values(&self.params, self.arena.len(), seed)
    }

    /// Write `initial_params(seed)` to the GPU and reset every layer's state (BatchNorm
    /// running statistics) and the loss scale to its initial value.
    pub fn init(&self, gpu: &Gpu, seed: u64) -> Result<()> {
        gpu.write(&self.arena, &self.initial_params(seed))?;
        for layer in &self.layers {
            for (_, t, v) in layer.op.state() {
                gpu.write(&t, &vec![v; t.len()])?;
            }
        }
        if let Some(ls) = &self.loss_scale {
            ls.reset(gpu, loss_scale::INITIAL_SCALE, loss_scale::GROWTH_INTERVAL)?;
        }
        Ok(())
    }

    /// An optimizer over this network's arenas: `Optimizer::new`, or in mixed-precision
    /// training `Optimizer::new_scaled` bound to this network's loss scale.
    pub fn optimizer(&self, gpu: &Gpu, name: &str, cfg: OptimizerConfig) -> Result<Optimizer> {
        match &self.loss_scale {
            Some(ls) => Optimizer::new_scaled(gpu, name, cfg, &self.arena, &self.grads, ls.state()),
            None => Optimizer::new(gpu, name, cfg, &self.arena, &self.grads),
        }
    }

    /// Mixed-precision training networks: the loss scaling their training step records
    /// (`optimizer` binds its state).
    pub fn loss_scale(&self) -> Option<&LossScale> {
        self.loss_scale.as_ref()
    }

    /// Upload one batch: `images` is [batch, C, H, W] flattened, `labels` one class each.
    pub fn set_batch(&self, gpu: &Gpu, images: &[f32], labels: &[u32]) -> Result<()> {
        ensure!(
            images.len() == self.acts[0].len(),
            "model {}: batch of {} values, expected {} ({:?})",
            self.spec.name,
            images.len(),
            self.acts[0].len(),
            self.acts[0].shape()
        );
        self.set_labels(gpu, labels)?;
        gpu.write(&self.acts[0], images)
    }

    /// Upload labels only (the images are already on the GPU, e.g. from augmentation).
    pub fn set_labels(&self, gpu: &Gpu, labels: &[u32]) -> Result<()> {
        ensure!(labels.len() == self.batch, "model {}: {} labels for a batch of {}", self.spec.name, labels.len(), self.batch);
        if let Some((i, l)) = labels.iter().enumerate().find(|(_, &l)| l as usize >= self.classes) {
            return Err(Error::new(format!("label {l} at batch position {i} is outside the {} classes", self.classes)));
        }
        gpu.write(&self.labels, labels)
    }

    /// New dropout masks for the next step (no buffers or bind groups are created): layer i
    /// gets `seed * 0x9E3779B9 + i`.
    pub fn set_dropout_seed(&self, gpu: &Gpu, seed: u32) {
        for (i, l) in self.layers.iter().enumerate() {
            l.op.set_seed(gpu, seed.wrapping_mul(0x9E37_79B9).wrapping_add(i as u32));
        }
    }

    /// Forward (training mode), loss and gradient, backward: what one step records before
    /// the optimizer.
    /// Mixed precision: the loss gradient is scaled before the backward pass, and the
    /// gradients checked after it (nn::loss_scale).
    pub fn train_dispatches(&self) -> impl Iterator<Item = &Dispatch> {
        let ls = self.loss_scale.as_ref();
        self.forward_train
            .iter()
            .chain(&self.loss)
            .chain(ls.map(LossScale::apply))
            .chain(&self.backward)
            .chain(ls.into_iter().flat_map(LossScale::check_and_update))
    }

    /// Inference forward, then softmax probabilities.
    pub fn infer_dispatches(&self) -> impl Iterator<Item = &Dispatch> {
        self.forward_infer.iter().chain(std::iter::once(&self.probabilities))
    }

    /// Inference forward, loss and accuracy statistics, and probabilities (validation,
    /// prediction; with unlabelled data the loss is meaningless but harmless).
    pub fn eval_dispatches(&self) -> impl Iterator<Item = &Dispatch> {
        self.forward_infer.iter().chain(&self.loss).chain(std::iter::once(&self.probabilities))
    }

    /// The loss statistics tensor [2] = (mean loss, number correct) the loss pass writes.
    pub fn stats(&self) -> &Tensor {
        &self.stats
    }

    /// (mean loss, number correct) of the last recorded loss pass: reads 8 bytes.
    pub fn read_stats(&self, gpu: &Gpu) -> Result<(f32, f32)> {
        crate::platform::block_on(self.read_stats_async(gpu))
    }

    /// `read_stats`, awaitable (the browser's form; see `crate::platform`).
    pub async fn read_stats_async(&self, gpu: &Gpu) -> Result<(f32, f32)> {
        let s = gpu.read_async(&self.stats).await?;
        Ok((s[0], s[1]))
    }

    pub fn input(&self) -> &Tensor {
        &self.acts[0]
    }
    pub fn input_grad(&self) -> Option<&Tensor> {
        self.dacts[0].as_ref()
    }
    pub fn logits(&self) -> &Tensor {
        self.acts.last().unwrap()
    }
    pub fn probabilities(&self) -> &Tensor {
        &self.probs
    }
    pub fn labels(&self) -> &Tensor {
        &self.labels
    }
    /// Output of layer `i` and its gradient. With `BuildOptions::reuse` (the default) most
    /// of these share memory with other tensors: each holds its value only from the dispatch
    /// writing it to its last reader in the recorded passes, and reading it afterwards gives
    /// whatever reused the memory (the logits and their gradient never share). Explanations
    /// build with `reuse: false`; `try_activation` checks.
    pub fn activation(&self, i: usize) -> (&Tensor, Option<&Tensor>) {
        (&self.acts[i + 1], self.dacts[i + 1].as_ref())
    }

    /// `activation(i)`, or an error when either tensor shares memory (`BuildOptions::reuse`)
    /// and so may be overwritten before the caller reads it.
    pub fn try_activation(&self, i: usize) -> Result<(&Tensor, Option<&Tensor>)> {
        ensure!(i < self.layers.len(), "model {}: no layer {i} (it has {})", self.spec.name, self.layers.len());
        ensure!(
            !self.act_shared[i + 1] && !self.dact_shared[i + 1],
            "model {}: the output of layer {} ({}) or its gradient shares memory with other tensors; build with \
             BuildOptions {{ reuse: false, .. }} to read it after a pass",
            self.spec.name,
            i,
            self.layers[i].name
        );
        Ok(self.activation(i))
    }

    /// Was this network built with `BuildOptions::reuse`?
    pub fn reuses_memory(&self) -> bool {
        self.reuse
    }

    /// What the activation memory plan allocated (tensors, bytes with and without sharing).
    pub fn activation_memory(&self) -> ActivationMemory {
        self.memory
    }
    /// Per-sample losses and correct flags of the last loss pass.
    pub fn per_sample(&self) -> (&Tensor, &Tensor) {
        (&self.losses, &self.correct)
    }

    /// Trainable and non-trainable parameter counts (Keras counts BN running stats as
    /// non-trainable).
    pub fn param_counts(&self) -> (usize, usize) {
        (self.params.iter().map(Param::len).sum(), self.buffers.iter().map(|(_, t)| t.len()).sum())
    }

    /// A Keras `model.summary()`-style table.
    pub fn summary(&self) -> String {
        let mut s = format!("Model: \"{}\"\n", self.spec.name);
        let rule = "-".repeat(72);
        s += &format!("{rule}\n{:<28}{:<28}{:>16}\n{rule}\n", "Layer (type)", "Output Shape", "Param #");
        for l in &self.layers {
            let count: usize = l.params.iter().map(|&i| self.params[i].len()).sum::<usize>()
                + self.buffers.iter().filter(|(n, _)| n.starts_with(&format!("{}.", l.name))).map(|(_, t)| t.len()).sum::<usize>();
            let shape = format!("(None, {})", l.out_shape[1..].iter().map(|d| d.to_string()).collect::<Vec<_>>().join(", "));
            s += &format!("{:<28}{:<28}{:>16}\n", format!("{} ({})", l.name, l.spec.kind_name()), shape, count);
        }
        let (t, nt) = self.param_counts();
        s += &format!("{rule}\nTotal params: {}\nTrainable params: {t}\nNon-trainable params: {nt}\n{rule}\n", t + nt);
        s
    }
}
