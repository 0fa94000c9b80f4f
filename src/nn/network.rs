//! A `ModelSpec` built for one input shape and batch size: every op, activation and gradient
//! buffer, and the flat parameter arena, allocated once; the forward (training and
//! inference) and backward passes recorded once as `Dispatch` lists and replayed every step.
//!
//! # Activation memory (`BuildOptions::reuse`)
//!
//! The buffers planned here ("slots") are the layer outputs `acts[i]` (L layers: `acts[0]`
//! the input [N, C, H, W], `acts[i + 1]` layer i's output), their gradients `dacts[i]`
//! (same shapes), max-pool argmax indices (the pool's output shape, u32) and the dx sink of
//! a first-layer BatchNorm (its input shape). Flatten outputs are views of their input's
//! slot. Time is the recorded training sequence, one step per layer op:
//!
//! ```text
//! step i          forward of layer i       reads acts[i]          writes acts[i+1] (+ argmax)
//! step L          softmax cross-entropy    reads acts[L]          writes dacts[L]
//! step 2L - i     backward of layer i      reads dacts[i+1], and  writes dacts[i] (or the sink)
//!                                          acts[i] for conv, dense, BN and activations,
//!                                          argmax for max pooling (dropout recomputes
//!                                          its mask, pad and avg pool read nothing else)
//! ```
//!
//! A slot lives from the first to the last step that touches it, both inclusive, so a
//! kernel's inputs and outputs always overlap in time and never share memory. More: wgpu
//! tracks read-only vs read-write storage use per buffer, not per range, so a step's inputs
//! and outputs must lie in different buffers even at disjoint offsets (dropout checks this;
//! other kernels would fail validation). With `reuse`, slots share "activation arena"
//! buffers: sorted by size (largest first), each goes into the arena holding none of the
//! slots it conflicts with (read while it is written or vice versa) where it grows the
//! arena least, at the lowest 256-byte aligned offset that overlaps no placed slot alive at
//! the same time (greedy interval packing). Slots with disjoint lifetimes thus share
//! memory, and a forward chain alternates between at least two arenas. An arena holds at
//! most max_storage_buffer_binding_size bytes (`Gpu::tensor` refuses more; 128 MiB on
//! lavapipe, where one 64x48x48 activation at batch 128 is 72 MiB), so big nets get several. The input, the input gradient,
//! the logits and their gradient are pinned (own buffers): the host and explanations write
//! and read them outside the recorded passes.
//!
//! seed-cnn at batch 128 on 48x48x1 (a 64x48x48 activation is 72 MiB): 70 slots take
//! 1568 MiB in their own buffers, 667 MiB in 7 arenas with reuse. The liveness floor is
//! 658 MiB, reached when the third block's backward starts: every activation a backward
//! still reads (per block the two conv outputs, the two BN outputs, the first PReLU output,
//! the pool argmax and the dropout output the next conv reads; 5 x 72 + 2 x 18 MiB for the
//! first block) plus two gradients. Going lower needs kernels that read less (e.g. BN
//! backward from its output) or recomputation.
//!
//! The inference pass (forward_infer, then loss / probabilities) touches a subset of what
//! the training pass touches in the same order, so the same plan serves it. Consequence of
//! sharing: a shared activation or gradient holds its value only between the step writing
//! it and its last reader; afterwards another tensor may overwrite it. `activation(i)` of a
//! reuse network is therefore only meaningful inside that window (`try_activation` refuses
//! shared slots); explanation networks build with `reuse: false`.

use super::activation::{Activation, Kind};
use super::batchnorm::{BatchNorm, BatchNormConfig};
use super::conv2d::{subgroup::Epilogue, Conv2d, Conv2dConfig};
use super::dense::Dense;
use super::dropout::Dropout;
use super::pad::Pad2d;
use super::pool::{Pool2d, PoolConfig, PoolKind};
use super::softmax_xent::SoftmaxXent;
use super::spec::{LayerSpec, ModelSpec};
use crate::gpu::{Dispatch, Gpu, Tensor};
use crate::rng::Rng;
use crate::{ensure, Error, Result};

/// How a parameter is initialised (`Network::initial_params`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Init {
    /// He / Kaiming uniform: U(-sqrt(6 / fan_in), +sqrt(6 / fan_in)), for ReLU-family nets.
    HeUniform { fan_in: usize },
    Const(f32),
}

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

enum Op {
    Conv(Conv2d),
    /// `argmax` (max pooling only) is assigned by the memory plan after `plan_layer`.
    Pool { op: Pool2d, argmax: Option<Tensor> },
    Pad(Pad2d),
    BatchNorm { op: BatchNorm, running_mean: Tensor, running_var: Tensor, saved: Tensor },
    Act(Activation),
    Dropout(Dropout),
    Flatten,
    Dense(Dense),
}

/// One built layer.
pub struct Layer {
    pub name: String,
    pub spec: LayerSpec,
    /// Input and output shapes, batch first.
    pub in_shape: Vec<usize>,
    pub out_shape: Vec<usize>,
    /// Indices into `Network::params`.
    pub params: Vec<usize>,
    op: Op,
}

impl Layer {
    /// Is this a convolution (Grad-CAM, filter ascent and filter outputs pick these)?
    pub fn is_conv(&self) -> bool {
        matches!(self.op, Op::Conv(_))
    }
}

/// Options for `Network::build`.
#[derive(Debug, Clone, Copy)]
pub struct BuildOptions {
    /// Also compute the gradient with respect to the input images (saliency maps, filter
    /// ascent). Training does not need it.
    pub input_grad: bool,
    /// Share GPU memory between activations and gradients whose lifetimes in the recorded
    /// passes are disjoint (module docs). On by default (training, evaluation, prediction);
    /// off for explanations, which read intermediate activations and gradients afterwards.
    pub reuse: bool,
}

impl Default for BuildOptions {
    fn default() -> Self {
        BuildOptions { input_grad: false, reuse: true }
    }
}

impl BuildOptions {
    /// What explanations build: input gradients, and every activation and gradient in its
    /// own buffer (readable after any pass).
    pub const EXPLAIN: BuildOptions = BuildOptions { input_grad: true, reuse: false };
}

/// What the memory plan allocated for activations, gradients, argmax indices and sinks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ActivationMemory {
    /// Distinct tensors planned (Flatten views not counted).
    pub tensors: usize,
    /// Bytes they would take each in its own buffer (what `reuse: false` allocates).
    pub unshared_bytes: u64,
    /// Bytes allocated: pinned and unshared tensors plus the activation arenas.
    pub allocated_bytes: u64,
    /// Activation arena buffers (0 without reuse).
    pub arenas: usize,
    /// The most bytes alive at one step (pinned slots counted throughout): a lower bound
    /// for any sharing under this liveness; the packing's distance to it is its waste.
    pub live_peak_bytes: u64,
}

pub struct Network {
    pub spec: ModelSpec,
    pub batch: usize,
    /// Per-sample input shape [C, H, W].
    pub input_chw: [usize; 3],
    pub classes: usize,
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
    /// Per layer: where a BatchNorm with no input gradient to write puts its dx (the BN
    /// backward always produces one; nothing reads it).
    sinks: Vec<Option<Tensor>>,
    /// Inference: a conv + BatchNorm pair run as one conv on folded weights (reuse only):
    /// the conv with a bias, its folded weight and bias, kept alive with the dispatches.
    fused: Vec<(Conv2d, Tensor, Tensor)>,
    reuse: bool,
    /// Per acts / dacts index: does the tensor share memory with another (reuse)?
    act_shared: Vec<bool>,
    dact_shared: Vec<bool>,
    memory: ActivationMemory,
}

/// Point this build's BatchNorm layers at `other`'s running statistics (same names).
fn share_running_stats(planned: &mut [Planned], names: &[String], other: &Network) -> Result<()> {
    let find = |n: String| {
        other.buffers.iter().find(|(b, _)| *b == n).map(|(_, t)| t.clone()).ok_or_else(|| Error::new(format!("shared network has no {n}")))
    };
    for (pl, name) in planned.iter_mut().zip(names) {
        if let Op::BatchNorm { running_mean, running_var, .. } = &mut pl.op {
            *running_mean = find(format!("{name}.running_mean"))?;
            *running_var = find(format!("{name}.running_var"))?;
        }
    }
    Ok(())
}

/// What `build_layer` derives from a spec before any buffer exists.
struct Planned {
    op: Op,
    out_shape: Vec<usize>,
    params: Vec<(String, Vec<usize>, Init)>,
}

fn plan_layer(gpu: &Gpu, name: &str, spec: &LayerSpec, in_shape: &[usize]) -> Result<Planned> {
    let n = in_shape[0];
    let p = |suffix: &str, shape: Vec<usize>, init| (format!("{name}.{suffix}"), shape, init);
    Ok(match spec {
        LayerSpec::Conv2d { filters, kernel, stride, padding, bias } => {
            let cfg = Conv2dConfig {
                in_channels: *in_shape.get(1).unwrap_or(&0),
                out_channels: *filters,
                kernel: kernel.hw(),
                stride: stride.hw(),
                padding: padding.resolve(),
                bias: *bias,
            };
            let conv = Conv2d::new(gpu, name, cfg, in_shape)?;
            let ws = conv.weight_shape();
            let fan_in = ws[1] * ws[2] * ws[3];
            let mut params = vec![p("weight", ws.to_vec(), Init::HeUniform { fan_in })];
            if *bias {
                params.push(p("bias", vec![*filters], Init::Const(0.0)));
            }
            Planned { out_shape: conv.output_shape.to_vec(), op: Op::Conv(conv), params }
        }
        LayerSpec::MaxPool { size, stride, padding } | LayerSpec::AvgPool { size, stride, padding } => {
            let kind = if matches!(spec, LayerSpec::MaxPool { .. }) { PoolKind::Max } else { PoolKind::Avg };
            let cfg = PoolConfig { kind, window: size.hw(), stride: stride.unwrap_or(*size).hw(), padding: padding.resolve() };
            let op = Pool2d::new(gpu, name, cfg, in_shape)?;
            Planned { out_shape: op.output_shape.to_vec(), op: Op::Pool { op, argmax: None }, params: vec![] }
        }
        LayerSpec::ZeroPad { pad } => {
            let op = Pad2d::new(gpu, name, (pad[0], pad[1], pad[2], pad[3]), in_shape)?;
            Planned { out_shape: op.output_shape.to_vec(), op: Op::Pad(op), params: vec![] }
        }
        LayerSpec::BatchNorm { eps, momentum } => {
            let op = BatchNorm::new(gpu, name, BatchNormConfig { eps: *eps, momentum: *momentum }, in_shape)?;
            let c = op.channels();
            let running_mean = gpu.tensor(&format!("{name}.running_mean"), &[c])?;
            let running_var = gpu.upload(&format!("{name}.running_var"), &[c], &vec![1.0f32; c])?;
            let saved = gpu.tensor(&format!("{name}.saved"), &[2, c])?;
            let params = vec![p("gamma", vec![c], Init::Const(1.0)), p("beta", vec![c], Init::Const(0.0))];
            Planned { out_shape: in_shape.to_vec(), op: Op::BatchNorm { op, running_mean, running_var, saved }, params }
        }
        LayerSpec::Relu | LayerSpec::LeakyRelu { .. } | LayerSpec::Prelu { .. } => {
            let kind = match spec {
                LayerSpec::Relu => Kind::Relu,
                LayerSpec::LeakyRelu { alpha } => Kind::LeakyRelu(*alpha),
                LayerSpec::Prelu { per_channel: true } => Kind::PRelu,
                _ => Kind::PReluPerElement,
            };
            let op = Activation::new(gpu, name, kind, in_shape)?;
            let params = op.param_shape().map(|s| vec![p("alpha", s, Init::Const(0.25))]).unwrap_or_default();
            Planned { out_shape: in_shape.to_vec(), op: Op::Act(op), params }
        }
        LayerSpec::Dropout { rate } => {
            let op = Dropout::new(gpu, name, *rate, in_shape)?;
            Planned { out_shape: in_shape.to_vec(), op: Op::Dropout(op), params: vec![] }
        }
        LayerSpec::Flatten => Planned { out_shape: vec![n, in_shape[1..].iter().product()], op: Op::Flatten, params: vec![] },
        LayerSpec::Dense { units, bias } => {
            let features: usize = in_shape[1..].iter().product();
            let op = Dense::new(gpu, name, features, *units, *bias, in_shape)?;
            let mut params = vec![p("weight", op.weight_shape().to_vec(), Init::HeUniform { fan_in: features })];
            if *bias {
                params.push(p("bias", vec![*units], Init::Const(0.0)));
            }
            Planned { out_shape: op.output_shape().to_vec(), op: Op::Dense(op), params }
        }
    })
}

/// One buffer of the memory plan and the steps (module docs) it is alive, both inclusive.
struct Slot {
    label: String,
    shape: Vec<usize>,
    first: usize,
    last: usize,
    /// Its own buffer even with reuse (read or written outside the recorded passes).
    pinned: bool,
    /// Slots one of its steps writes while reading this one, or reads while writing it:
    /// they must live in other buffers, even at disjoint offsets (wgpu tracks a buffer's
    /// read-only / read-write storage use per dispatch for the whole buffer).
    conflicts: Vec<usize>,
}

impl Slot {
    fn len(&self) -> usize {
        self.shape.iter().product()
    }
}

/// The slots of a build and which slot each acts / dacts index, argmax and sink uses.
struct MemoryPlan {
    slots: Vec<Slot>,
    /// Shapes of acts[i] (and dacts[i]): a Flatten output views its input's slot.
    shapes: Vec<Vec<usize>>,
    act: Vec<usize>,
    dact: Vec<Option<usize>>,
    /// Per layer: max-pool argmax indices, BatchNorm dx sink.
    argmax: Vec<Option<usize>>,
    sink: Vec<Option<usize>>,
}

/// Does layer `op`'s training backward read its forward input `acts[i]`?
fn backward_reads_input(op: &Op) -> bool {
    match op {
        // Weight gradients (conv, dense), normalised input (BN), the slope's argument.
        Op::Conv(_) | Op::Dense(_) | Op::BatchNorm { .. } | Op::Act(_) => true,
        // Max pooling reads its argmax, dropout recomputes its mask, pad and avg pool are
        // linear in dy alone.
        Op::Pool { .. } | Op::Pad(_) | Op::Dropout(_) | Op::Flatten => false,
    }
}

fn plan_memory(names: &[String], planned: &[Planned], input_shape: &[usize], input_grad: bool) -> MemoryPlan {
    fn add(slots: &mut Vec<Slot>, label: String, shape: &[usize]) -> usize {
        slots.push(Slot { label, shape: shape.to_vec(), first: usize::MAX, last: 0, pinned: false, conflicts: vec![] });
        slots.len() - 1
    }
    let l = planned.len();
    let mut slots = Vec::new();
    let mut shapes = vec![input_shape.to_vec()];
    let mut act = vec![add(&mut slots, "input".into(), input_shape)];
    let mut dact = vec![if input_grad { Some(add(&mut slots, "input.grad".into(), input_shape)) } else { None }];
    for (name, pl) in names.iter().zip(planned) {
        if matches!(pl.op, Op::Flatten) {
            act.push(*act.last().unwrap());
            dact.push(*dact.last().unwrap());
        } else {
            act.push(add(&mut slots, format!("{name}.out"), &pl.out_shape));
            dact.push(Some(add(&mut slots, format!("{name}.out.grad"), &pl.out_shape)));
        }
        shapes.push(pl.out_shape.clone());
    }
    // A Flatten right after the input (a DNN) has no gradient buffer of its own: give its
    // output one when later layers need it.
    for i in 1..=l {
        if dact[i].is_none() {
            dact[i] = Some(add(&mut slots, format!("{}.out.grad", names[i - 1]), &shapes[i]));
        }
    }
    let argmax: Vec<Option<usize>> = names
        .iter()
        .zip(planned)
        .map(|(name, pl)| match &pl.op {
            Op::Pool { op, .. } if op.cfg.kind == PoolKind::Max => Some(add(&mut slots, format!("{name}.argmax"), &pl.out_shape)),
            _ => None,
        })
        .collect();
    let sink: Vec<Option<usize>> = (0..l)
        .map(|i| {
            (matches!(planned[i].op, Op::BatchNorm { .. }) && dact[i].is_none())
                .then(|| add(&mut slots, format!("{}.in.grad", names[i]), &shapes[i]))
        })
        .collect();

    // What each step of the training sequence reads and writes (module docs).
    let mut steps: Vec<(Vec<usize>, Vec<usize>)> = vec![(vec![], vec![]); 2 * l + 1];
    for (i, pl) in planned.iter().enumerate() {
        if matches!(pl.op, Op::Flatten) {
            continue;
        }
        let fwd = &mut steps[i];
        fwd.0.push(act[i]);
        fwd.1.extend([Some(act[i + 1]), argmax[i]].into_iter().flatten());
        let bwd = &mut steps[2 * l - i];
        bwd.0.extend([dact[i + 1], backward_reads_input(&pl.op).then_some(act[i]), argmax[i]].into_iter().flatten());
        bwd.1.extend([dact[i], sink[i]].into_iter().flatten());
    }
    steps[l] = (vec![act[l]], vec![dact[l].expect("logits gradient")]);
    for (t, (reads, writes)) in steps.iter().enumerate() {
        for &k in reads.iter().chain(writes) {
            slots[k].first = slots[k].first.min(t);
            slots[k].last = slots[k].last.max(t);
        }
        for &r in reads {
            for &w in writes {
                slots[r].conflicts.push(w);
                slots[w].conflicts.push(r);
            }
        }
    }
    for k in [Some(act[0]), Some(act[l]), dact[0], dact[l]].into_iter().flatten() {
        slots[k].pinned = true;
    }
    for s in slots.iter_mut().filter(|s| s.first == usize::MAX) {
        s.pinned = true;
    }
    MemoryPlan { slots, shapes, act, dact, argmax, sink }
}

/// Allocate the plan's slots: each in its own buffer, or (`reuse`) unpinned ones packed into
/// activation arenas by greedy interval packing (module docs). Returns one tensor per slot,
/// whether it shares memory with another slot, and the totals.
fn allocate(gpu: &Gpu, plan: &MemoryPlan, reuse: bool) -> Result<(Vec<Tensor>, Vec<bool>, ActivationMemory)> {
    let slots = &plan.slots;
    // 256 bytes: the largest min_storage_buffer_offset_alignment WebGPU allows.
    let align = (gpu.limits().min_storage_buffer_offset_alignment as usize).max(256) / 4;
    let limits = gpu.limits();
    let cap = limits.max_storage_buffer_binding_size.min(limits.max_buffer_size) as usize / 4 / align * align;
    let padded = |k: usize| slots[k].len().div_ceil(align) * align;
    // Slots over an arena's capacity keep their own buffer: Gpu::tensor then names them
    // and the limit.
    let own = |k: usize| !reuse || slots[k].pinned || padded(k) > cap;

    let mut tensors: Vec<Option<Tensor>> = vec![None; slots.len()];
    let mut allocated = 0u64;
    for (k, s) in slots.iter().enumerate() {
        if own(k) {
            tensors[k] = Some(gpu.tensor(&s.label, &s.shape)?);
            allocated += s.len() as u64 * 4;
        }
    }

    struct Placed {
        slot: usize,
        start: usize,
        end: usize,
    }
    let mut order: Vec<usize> = (0..slots.len()).filter(|&k| !own(k)).collect();
    order.sort_by_key(|&k| (std::cmp::Reverse(padded(k)), slots[k].first, k));
    let mut arenas: Vec<(usize, Vec<Placed>)> = Vec::new();
    let mut arena_of: Vec<Option<usize>> = vec![None; slots.len()];
    for &k in &order {
        let (size, s) = (padded(k), &slots[k]);
        let mut best: Option<(usize, usize, usize)> = None;
        for (a, (extent, placed)) in arenas.iter().enumerate() {
            if s.conflicts.iter().any(|&c| arena_of[c] == Some(a)) {
                continue;
            }
            // Lowest offset clear of every placed slot alive at the same time.
            let mut busy: Vec<(usize, usize)> = placed
                .iter()
                .filter(|p| slots[p.slot].first <= s.last && s.first <= slots[p.slot].last)
                .map(|p| (p.start, p.end))
                .collect();
            busy.sort_unstable();
            let mut off = 0;
            for (start, end) in busy {
                if off + size <= start {
                    break;
                }
                off = off.max(end);
            }
            let growth = (off + size).saturating_sub(*extent);
            if off + size <= cap && best.is_none_or(|b| growth < b.0) {
                best = Some((growth, a, off));
            }
        }
        let (a, off) = match best {
            Some((_, a, off)) => (a, off),
            None => {
                arenas.push((0, Vec::new()));
                (arenas.len() - 1, 0)
            }
        };
        arena_of[k] = Some(a);
        arenas[a].0 = arenas[a].0.max(off + size);
        arenas[a].1.push(Placed { slot: k, start: off, end: off + size });
    }

    let mut shared = vec![false; slots.len()];
    for (a, (extent, placed)) in arenas.iter().enumerate() {
        let arena = gpu.tensor(&format!("activations {a}"), &[*extent])?;
        allocated += *extent as u64 * 4;
        for p in placed {
            let s = &slots[p.slot];
            tensors[p.slot] = Some(arena.view(&s.label, p.start, &s.shape)?);
            shared[p.slot] = placed.iter().any(|q| q.slot != p.slot && q.start < p.end && p.start < q.end);
        }
    }
    let steps = slots.iter().filter(|s| !s.pinned).map(|s| s.last + 1).max().unwrap_or(0);
    let pinned: u64 = slots.iter().filter(|s| s.pinned).map(|s| s.len() as u64 * 4).sum();
    let live_peak_bytes = pinned
        + (0..steps)
            .map(|t| slots.iter().filter(|s| !s.pinned && s.first <= t && t <= s.last).map(|s| s.len() as u64 * 4).sum::<u64>())
            .max()
            .unwrap_or(0);
    let memory = ActivationMemory {
        live_peak_bytes,
        tensors: slots.len(),
        unshared_bytes: slots.iter().map(|s| s.len() as u64 * 4).sum(),
        allocated_bytes: allocated,
        arenas: arenas.len(),
    };
    Ok((tensors.into_iter().map(|t| t.expect("every slot allocated")).collect(), shared, memory))
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
    pub fn build_like(&self, gpu: &Gpu, batch: usize, opts: BuildOptions) -> Result<Network> {
        Self::build_inner(gpu, &self.spec, self.input_chw, self.classes, batch, opts, Some(self))
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
        let mut shape = vec![batch, input_chw[0], input_chw[1], input_chw[2]];
        let mut planned = Vec::with_capacity(spec.layers.len());
        for (name, ls) in names.iter().zip(&spec.layers) {
            let pl = plan_layer(gpu, name, ls, &shape).map_err(|e| e.context(format!("model {}", spec.name)))?;
            shape = pl.out_shape.clone();
            planned.push(pl);
        }
        ensure!(
            shape == [batch, classes],
            "model {}: the last layer ({}) outputs {:?}, expected logits [{batch}, {classes}] for {classes} classes",
            spec.name,
            names.last().unwrap(),
            shape
        );

        // The arena: every parameter at an offset aligned for binding as a view.
        let align = (gpu.limits().min_storage_buffer_offset_alignment as usize / 4).max(1);
        let mut params = Vec::new();
        let mut total = 0usize;
        let mut layer_params = Vec::new();
        for pl in &planned {
            let mut idx = Vec::new();
            for (name, shape, init) in &pl.params {
                idx.push(params.len());
                params.push(Param { name: name.clone(), shape: shape.clone(), offset: total, init: *init });
                total += shape.iter().product::<usize>().div_ceil(align) * align;
            }
            layer_params.push(idx);
        }
        let total = total.max(1);
        let (arena, grads) = match shared {
            Some(other) => {
                ensure!(other.arena.len() == total, "model {}: shared arena has {} values, this build needs {total}", spec.name, other.arena.len());
                (other.arena.clone(), other.grads.clone())
            }
            None => (gpu.tensor("params", &[total])?, gpu.tensor("grads", &[total])?),
        };
        if let Some(other) = shared {
            share_running_stats(&mut planned, &names, other)?;
        }

        // Activations, their gradients, argmax indices and sinks: planned, then allocated
        // (shared where lifetimes are disjoint, with `reuse`; module docs).
        let input_shape = [batch, input_chw[0], input_chw[1], input_chw[2]];
        let plan = plan_memory(&names, &planned, &input_shape, opts.input_grad);
        let (tensors, shared, memory) = allocate(gpu, &plan, opts.reuse)?;
        let view = |k: usize, shape: &[usize]| tensors[k].reshape(shape);
        let acts: Vec<Tensor> = plan.act.iter().zip(&plan.shapes).map(|(&k, sh)| view(k, sh)).collect::<Result<_>>()?;
        let dacts: Vec<Option<Tensor>> =
            plan.dact.iter().zip(&plan.shapes).map(|(k, sh)| k.map(|k| view(k, sh)).transpose()).collect::<Result<_>>()?;
        let sinks: Vec<Option<Tensor>> = plan.sink.iter().map(|k| k.map(|k| tensors[k].clone())).collect();
        for (pl, k) in planned.iter_mut().zip(&plan.argmax) {
            if let Op::Pool { argmax, .. } = &mut pl.op {
                *argmax = k.map(|k| tensors[k].clone());
            }
        }
        let act_shared: Vec<bool> = plan.act.iter().map(|&k| shared[k]).collect();
        let dact_shared: Vec<bool> = plan.dact.iter().map(|k| k.is_some_and(|k| shared[k])).collect();

        let layers: Vec<Layer> = names
            .into_iter()
            .zip(spec.layers.iter().cloned())
            .zip(planned)
            .zip(layer_params)
            .enumerate()
            .map(|(i, (((name, spec), pl), params))| Layer {
                name,
                spec,
                in_shape: acts[i].shape().to_vec(),
                out_shape: pl.out_shape,
                params,
                op: pl.op,
            })
            .collect();

        let labels = gpu.tensor("labels", &[batch])?;
        let losses = gpu.tensor("losses", &[batch])?;
        let correct = gpu.tensor("correct", &[batch])?;
        let stats = gpu.tensor("loss stats", &[2])?;
        let probs = gpu.tensor("probabilities", &[batch, classes])?;
        let buffers = layers
            .iter()
            .filter_map(|l| match &l.op {
                Op::BatchNorm { running_mean, running_var, .. } => Some([
                    (format!("{}.running_mean", l.name), running_mean.clone()),
                    (format!("{}.running_var", l.name), running_var.clone()),
                ]),
                _ => None,
            })
            .flatten()
            .collect();

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
            sinks,
            fused: vec![],
            reuse: opts.reuse,
            act_shared,
            dact_shared,
            memory,
        };
        net.forward_train = net.record_forward(gpu, true)?.0;
        (net.forward_infer, net.fused) = net.record_forward(gpu, false)?;
        net.backward = net.record_backward(gpu)?;
        Ok(net)
    }

    /// Views of parameter `i` in the arena and in the gradient arena.
    pub fn param(&self, i: usize) -> Result<(Tensor, Tensor)> {
        let p = &self.params[i];
        Ok((self.arena.view(&p.name, p.offset, &p.shape)?, self.grads.view(&format!("{}.grad", p.name), p.offset, &p.shape)?))
    }

    fn layer_param(&self, layer: &Layer, k: usize) -> Result<(Tensor, Tensor)> {
        self.param(layer.params[k])
    }

    /// Inference with memory reuse (nothing reads intermediate activations afterwards) runs
    /// a conv followed by BatchNorm as one conv with the BN folded into its weights (a small
    /// batchnorm_fold dispatch first), writing the BN's output directly, and with an
    /// activation after the BN (ReLU, LeakyReLU, PReLU) applied in the conv's epilogue where
    /// the conv uses the subgroup kernels. Returns the fused conv and its folded tensors, and
    /// how many layers after `i` it covered (1 or 2); None where nothing fuses, or where the
    /// conv input and the fused output share a buffer (a kernel cannot bind one buffer for
    /// both).
    fn fold_conv_bn(&self, gpu: &Gpu, i: usize, out: &mut Vec<Dispatch>) -> Result<Option<((Conv2d, Tensor, Tensor), usize)>> {
        let (Some(layer), Some(next)) = (self.layers.get(i), self.layers.get(i + 1)) else { return Ok(None) };
        let (Op::Conv(conv), Op::BatchNorm { op: bn, running_mean, running_var, .. }) = (&layer.op, &next.op) else { return Ok(None) };
        let x = &self.acts[i];
        if !self.reuse || x.same_buffer(&self.acts[i + 2]) {
            return Ok(None);
        }
        let w = self.layer_param(layer, 0)?.0;
        let b = if conv.cfg.bias { Some(self.layer_param(layer, 1)?.0) } else { None };
        let (gamma, beta) = (self.layer_param(next, 0)?.0, self.layer_param(next, 1)?.0);
        let wf = gpu.tensor(&format!("{} folded weight", conv.name), &conv.weight_shape())?;
        let bf = gpu.tensor(&format!("{} folded bias", conv.name), &conv.bias_shape())?;
        out.push(bn.fold_into(gpu, &w, b.as_ref(), &gamma, &beta, running_mean, running_var, &wf, &bf)?);
        let cfg = Conv2dConfig { bias: true, ..conv.cfg };
        let fused = Conv2d::new(gpu, &format!("{}+{}", conv.name, bn.name), cfg, &conv.input_shape)?;
        // The activation after the BN, in the conv's epilogue.
        if let Some(act_layer) = self.layers.get(i + 2) {
            if let (Op::Act(act), false) = (&act_layer.op, x.same_buffer(&self.acts[i + 3])) {
                let alpha = if act_layer.params.is_empty() { None } else { Some(self.layer_param(act_layer, 0)?.0) };
                let epilogue = match (act.kind, alpha.as_ref()) {
                    (Kind::Relu, _) => Some(Epilogue::Relu),
                    (Kind::LeakyRelu(a), _) => Some(Epilogue::LeakyRelu(a)),
                    (Kind::PRelu, Some(a)) => Some(Epilogue::PRelu(a)),
                    (Kind::PReluPerElement, Some(a)) => Some(Epilogue::PReluPerElement(a)),
                    _ => None,
                };
                if let Some(e) = epilogue {
                    if let Some(d) = fused.forward_act_dispatches(gpu, x, &wf, &bf, &self.acts[i + 3], e)? {
                        out.extend(d);
                        return Ok(Some(((fused, wf, bf), 2)));
                    }
                }
            }
        }
        out.extend(fused.forward_dispatches(gpu, x, &wf, Some(&bf), &self.acts[i + 2])?);
        Ok(Some(((fused, wf, bf), 1)))
    }

    /// The forward pass (training or inference) and, for inference, the fused conv + BN
    /// layers it records (see `fold_conv_bn`).
    fn record_forward(&self, gpu: &Gpu, train: bool) -> Result<(Vec<Dispatch>, Vec<(Conv2d, Tensor, Tensor)>)> {
        self.record_forward_upto(gpu, train, self.layers.len())
    }

    /// The inference forward of layers `0..upto` only: it writes the input of layer `upto`
    /// (BatchNorm population statistics read it). Without `BuildOptions::reuse`, so that the
    /// activation survives and no BN is folded away.
    pub fn forward_infer_prefix(&self, gpu: &Gpu, upto: usize) -> Result<Vec<Dispatch>> {
        ensure!(!self.reuse && upto <= self.layers.len(), "model {}: forward_infer_prefix needs a build without reuse", self.spec.name);
        Ok(self.record_forward_upto(gpu, false, upto)?.0)
    }

    #[allow(clippy::type_complexity)]
    fn record_forward_upto(&self, gpu: &Gpu, train: bool, upto: usize) -> Result<(Vec<Dispatch>, Vec<(Conv2d, Tensor, Tensor)>)> {
        let mut out = Vec::new();
        let mut fused = Vec::new();
        let mut skip = 0;
        for (i, layer) in self.layers.iter().enumerate().take(upto) {
            if skip > 0 {
                skip -= 1;
                continue;
            }
            if !train {
                if let Some((f, covered)) = self.fold_conv_bn(gpu, i, &mut out)? {
                    fused.push(f);
                    skip = covered;
                    continue;
                }
            }
            let (x, y) = (&self.acts[i], &self.acts[i + 1]);
            match &layer.op {
                Op::Conv(op) => {
                    let w = self.layer_param(layer, 0)?.0;
                    let b = if op.cfg.bias { Some(self.layer_param(layer, 1)?.0) } else { None };
                    out.extend(op.forward_dispatches(gpu, x, &w, b.as_ref(), y)?);
                }
                Op::Pool { op, argmax } => out.push(op.forward(gpu, x, y, argmax.as_ref())?),
                Op::Pad(op) => out.push(op.forward(gpu, x, y)?),
                Op::BatchNorm { op, running_mean, running_var, saved } => {
                    let (gamma, beta) = (self.layer_param(layer, 0)?.0, self.layer_param(layer, 1)?.0);
                    if train {
                        out.extend(op.forward_train(gpu, x, &gamma, &beta, running_mean, running_var, saved, y)?);
                    } else {
                        out.push(op.forward_infer(gpu, x, &gamma, &beta, running_mean, running_var, y)?);
                    }
                }
                Op::Act(op) => {
                    let alpha = if layer.params.is_empty() { None } else { Some(self.layer_param(layer, 0)?.0) };
                    out.push(op.forward(gpu, x, alpha.as_ref(), y)?);
                }
                Op::Dropout(op) => out.push(op.forward(gpu, x, y, train)?),
                Op::Flatten => {}
                Op::Dense(op) => {
                    let w = self.layer_param(layer, 0)?.0;
                    let b = if op.bias { Some(self.layer_param(layer, 1)?.0) } else { None };
                    out.extend(op.forward_dispatches(gpu, x, &w, b.as_ref(), y)?);
                }
            }
        }
        Ok((out, fused))
    }

    fn record_backward(&self, gpu: &Gpu) -> Result<Vec<Dispatch>> {
        let mut out = Vec::new();
        // Without input gradients, nothing below the first layer with parameters needs a
        // gradient (a DNN's first dense layer after Flatten skips its dx).
        let first_param = self.layers.iter().position(|l| !l.params.is_empty());
        for (i, layer) in self.layers.iter().enumerate().rev() {
            let x = &self.acts[i];
            let dy = self.dacts[i + 1].as_ref().expect("output gradient");
            // (BatchNorm's backward writes dx regardless: it keeps its buffer or sink.)
            let unneeded = self.dacts[0].is_none() && first_param.is_none_or(|f| i <= f) && !matches!(layer.op, Op::BatchNorm { .. });
            let dx = if unneeded { None } else { self.dacts[i].as_ref() };
            match &layer.op {
                Op::Conv(op) => {
                    let (w, dw) = self.layer_param(layer, 0)?;
                    out.extend(op.backward_weight(gpu, &dw, dy, x, false)?);
                    if op.cfg.bias {
                        out.push(op.backward_bias(gpu, &self.layer_param(layer, 1)?.1, dy, false)?);
                    }
                    if let Some(dx) = dx {
                        out.extend(op.backward_input_dispatches(gpu, dx, dy, &w)?);
                    }
                }
                Op::Pool { op, argmax } => {
                    if let Some(dx) = dx {
                        out.push(op.backward(gpu, dx, dy, argmax.as_ref())?);
                    }
                }
                Op::Pad(op) => {
                    if let Some(dx) = dx {
                        out.push(op.backward(gpu, dx, dy)?);
                    }
                }
                Op::BatchNorm { op, saved, .. } => {
                    let ((gamma, dgamma), (_, dbeta)) = (self.layer_param(layer, 0)?, self.layer_param(layer, 1)?);
                    // The BN backward always produces dx; without a consumer it goes to a sink.
                    let dx = dx.or(self.sinks[i].as_ref()).expect("a BatchNorm dx or sink");
                    out.extend(op.backward(gpu, dx, &dgamma, &dbeta, dy, x, &gamma, saved, false)?);
                }
                Op::Act(op) => {
                    let alpha = if layer.params.is_empty() { None } else { Some(self.layer_param(layer, 0)?) };
                    if let Some((_, dalpha)) = &alpha {
                        out.push(op.backward_alpha(gpu, dalpha, dy, x, false)?);
                    }
                    if let Some(dx) = dx {
                        out.push(op.backward_input(gpu, dx, dy, x, alpha.as_ref().map(|a| &a.0))?);
                    }
                }
                Op::Dropout(op) => {
                    if let Some(dx) = dx {
                        out.push(op.backward(gpu, dx, dy)?);
                    }
                }
                Op::Flatten => {}
                Op::Dense(op) => {
                    let (w, dw) = self.layer_param(layer, 0)?;
                    out.extend(op.backward_weight_dispatches(gpu, &dw, dy, x, false)?);
                    if op.bias {
                        out.push(op.backward_bias(gpu, &self.layer_param(layer, 1)?.1, dy, false)?);
                    }
                    if let Some(dx) = dx {
                        out.extend(op.backward_input_dispatches(gpu, dx, dy, &w)?);
                    }
                }
            }
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
            let layer = &self.layers[i];
            let x = &self.acts[i];
            let dy = self.dacts[i + 1].as_ref().expect("output gradient");
            let dx = self.dacts[i].as_ref().ok_or_else(|| {
                Error::new(format!("model {}: input gradients need BuildOptions {{ input_grad: true }}", self.spec.name))
            })?;
            match &layer.op {
                Op::Conv(op) => out.extend(op.backward_input_dispatches(gpu, dx, dy, &self.layer_param(layer, 0)?.0)?),
                Op::Pool { op, argmax } => out.push(op.backward(gpu, dx, dy, argmax.as_ref())?),
                Op::Pad(op) => out.push(op.backward(gpu, dx, dy)?),
                Op::BatchNorm { op, running_var, .. } => out.push(op.backward_infer(gpu, dx, dy, &self.layer_param(layer, 0)?.0, running_var)?),
                Op::Act(op) => {
                    let alpha = if layer.params.is_empty() { None } else { Some(self.layer_param(layer, 0)?.0) };
                    out.push(op.backward_input(gpu, dx, dy, x, alpha.as_ref())?);
                }
                // Inference dropout is the identity: its gradient is a copy.
                Op::Dropout(op) => out.push(op.forward(gpu, dy, dx, false)?),
                Op::Flatten => {}
                Op::Dense(op) => out.extend(op.backward_input_dispatches(gpu, dx, dy, &self.layer_param(layer, 0)?.0)?),
            }
        }
        Ok(out)
    }

    /// Inference forward only (no loss, no probabilities): what explanations record first.
    pub fn forward_infer_dispatches(&self) -> impl Iterator<Item = &Dispatch> {
        self.forward_infer.iter()
    }

    /// Initial parameter values for the whole arena (He-uniform weights, zero biases, unit
    /// BN scale, PReLU 0.25), deterministic in `seed`. Padding between parameters is 0.
    pub fn initial_params(&self, seed: u64) -> Vec<f32> {
        let mut rng = Rng::new(seed);
        let mut arena = vec![0.0f32; self.arena.len()];
        for p in &self.params {
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

    /// Write `initial_params(seed)` to the GPU and reset BN running statistics.
    pub fn init(&self, gpu: &Gpu, seed: u64) -> Result<()> {
        gpu.write(&self.arena, &self.initial_params(seed))?;
        for (name, t) in &self.buffers {
            let v: f32 = if name.ends_with("running_var") { 1.0 } else { 0.0 };
            gpu.write(t, &vec![v; t.len()])?;
        }
        Ok(())
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

    /// New dropout masks for the next step (no buffers or bind groups are created).
    pub fn set_dropout_seed(&self, gpu: &Gpu, seed: u32) {
        for (i, l) in self.layers.iter().enumerate() {
            if let Op::Dropout(d) = &l.op {
                d.set_seed(gpu, seed.wrapping_mul(0x9E37_79B9).wrapping_add(i as u32));
            }
        }
    }

    /// Forward (training mode), loss and gradient, backward: what one step records before
    /// the optimizer.
    pub fn train_dispatches(&self) -> impl Iterator<Item = &Dispatch> {
        self.forward_train.iter().chain(&self.loss).chain(&self.backward)
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
        let s = gpu.read(&self.stats)?;
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
