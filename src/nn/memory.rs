//! The activation memory plan of a network (`BuildOptions::reuse`): which buffer holds each
//! layer output, gradient and extra slot, and which of them share memory.
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
//! A training pair (BatchNorm i running activation i + 1 in its passes, src/nn/fuse.rs):
//! step i also writes acts[i+2]; step 2L - i reads dacts[i+2] and acts[i] and writes
//! dacts[i]; step 2L - i - 1 touches nothing; dacts[i+1] does not exist. acts[i+1] (the
//! BatchNorm output) keeps steps i and i + 1 only, for the inference pass where no conv
//! folds the BatchNorm away: in training nothing writes it, and it no longer lives until
//! the backward. With a pool tail of t layers (a max pool and the dropouts around it, run
//! in the pair's forward: `fuse::pool_tails`) step i writes acts[i+2+t] and the tail's
//! argmax instead of acts[i+2], but their lifetimes start at the tail layers' own steps
//! (kept for inference and the backward): nothing runs in training between, and what lives
//! only in between (acts[i+1..=i+1+t]) are inference tensors training never touches. They
//! still conflict with acts[i], which that pass reads.
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
//! seed-cnn at batch 128 on 48x48x1 (a 64x48x48 activation is 72 MiB), without training
//! fusion: 70 slots take 1568 MiB in their own buffers, 667 MiB in 7 arenas with reuse. The
//! liveness floor is 658 MiB, reached when the third block's backward starts: every
//! activation a backward still reads (per block the two conv outputs, the two BN outputs,
//! the first PReLU output, the pool argmax and the dropout output the next conv reads;
//! 5 x 72 + 2 x 18 MiB for the first block) plus two gradients. With training fusion (the
//! default) the BN outputs are not kept and their gradients not planned: 62 slots, 469 MiB
//! in 5 arenas, liveness floor 433 MiB. Going lower needs kernels that read less or
//! recomputation.
//!
//! The inference pass (forward_infer, then loss / probabilities) touches a subset of what
//! the training pass touches in the same order, so the same plan serves it. Consequence of
//! sharing: a shared activation or gradient holds its value only between the step writing
//! it and its last reader; afterwards another tensor may overwrite it. `activation(i)` of a
//! reuse network is therefore only meaningful inside that window (`try_activation` refuses
//! shared slots); explanation networks build with `reuse: false`.

use super::layer::LayerOp;
use crate::gpu::{Gpu, Tensor};
use crate::Result;

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

/// The slots of a build and which slot each acts / dacts index, extra slot and sink uses.
pub struct MemoryPlan {
    slots: Vec<Slot>,
    /// Shapes of acts[i] (and dacts[i]): a Flatten output views its input's slot.
    pub shapes: Vec<Vec<usize>>,
    pub act: Vec<usize>,
    pub dact: Vec<Option<usize>>,
    /// Per layer: its extra slots (max-pool argmax indices) and its dx sink (a BatchNorm
    /// whose dx nobody reads).
    pub extra: Vec<Vec<usize>>,
    pub sink: Vec<Option<usize>>,
}

/// What the planner needs to know of one layer (from its `LayerOp`).
pub struct LayerSlots<'a> {
    pub name: &'a str,
    pub out_shape: Vec<usize>,
    /// The output is a view of the input (Flatten): no slot of its own.
    pub view: bool,
    /// Extra slots (suffix, shape), written by the forward, read by the backward.
    pub extra: Vec<(&'static str, Vec<usize>)>,
    pub backward_reads_input: bool,
    pub backward_always_writes_dx: bool,
    /// A BatchNorm running the next layer's activation in its training passes
    /// (src/nn/fuse.rs): its forward writes the activation's output, its backward reads the
    /// activation's output gradient, and its own output gradient does not exist.
    pub fuse_next: bool,
    /// With `fuse_next`: how many layers after the activation (a max pool and dropouts) the
    /// BatchNorm's forward also runs (`fuse::pool_tails`): it then writes the last one's
    /// output and their extra slots (the argmax) instead of the activation's output.
    pub fuse_tail: usize,
}

impl<'a> LayerSlots<'a> {
    pub fn of(name: &'a str, op: &dyn LayerOp, fuse_next: bool, fuse_tail: usize) -> LayerSlots<'a> {
        LayerSlots {
            fuse_next,
            fuse_tail,
            name,
            out_shape: op.out_shape(),
            view: op.is_view(),
            extra: op.extra_slots(),
            backward_reads_input: op.backward_reads_input(),
            backward_always_writes_dx: op.backward_always_writes_dx(),
        }
    }
}

/// Plan the slots of a build with `input_shape` [N, C, H, W] (module docs).
pub fn plan(layers: &[LayerSlots], input_shape: &[usize], input_grad: bool) -> MemoryPlan {
    fn add(slots: &mut Vec<Slot>, label: String, shape: &[usize]) -> usize {
        slots.push(Slot { label, shape: shape.to_vec(), first: usize::MAX, last: 0, pinned: false, conflicts: vec![] });
        slots.len() - 1
    }
    let l = layers.len();
    let mut slots = Vec::new();
    let mut shapes = vec![input_shape.to_vec()];
    let mut act = vec![add(&mut slots, "input".into(), input_shape)];
    let mut dact = vec![if input_grad { Some(add(&mut slots, "input.grad".into(), input_shape)) } else { None }];
    for layer in layers {
        if layer.view {
            act.push(*act.last().unwrap());
            dact.push(*dact.last().unwrap());
        } else {
            act.push(add(&mut slots, format!("{}.out", layer.name), &layer.out_shape));
            // A training pair's middle tensor (the BatchNorm output) has no gradient:
            // nothing writes or reads one.
            dact.push((!layer.fuse_next).then(|| add(&mut slots, format!("{}.out.grad", layer.name), &layer.out_shape)));
        }
        shapes.push(layer.out_shape.clone());
    }
    // A Flatten right after the input (a DNN) has no gradient buffer of its own: give its
    // output one when later layers need it.
    for i in 1..=l {
        if dact[i].is_none() && !layers[i - 1].fuse_next {
            dact[i] = Some(add(&mut slots, format!("{}.out.grad", layers[i - 1].name), &shapes[i]));
        }
    }
    let extra: Vec<Vec<usize>> =
        layers.iter().map(|layer| layer.extra.iter().map(|(suffix, shape)| add(&mut slots, format!("{}.{suffix}", layer.name), shape)).collect()).collect();
    let sink: Vec<Option<usize>> = (0..l)
        .map(|i| (layers[i].backward_always_writes_dx && dact[i].is_none()).then(|| add(&mut slots, format!("{}.in.grad", layers[i].name), &shapes[i])))
        .collect();

    // What each step of the training sequence reads and writes (module docs).
    let mut tail_conflicts = Vec::new();
    let mut steps: Vec<(Vec<usize>, Vec<usize>)> = vec![(vec![], vec![]); 2 * l + 1];
    for (i, layer) in layers.iter().enumerate() {
        if layer.view {
            continue;
        }
        let fwd = &mut steps[i];
        fwd.0.push(act[i]);
        fwd.1.push(act[i + 1]);
        fwd.1.extend(&extra[i]);
        // A training pair (src/nn/fuse.rs): the BatchNorm's forward also writes the
        // activation's output (or, with a pool tail, the tail's output and extra slots), its
        // backward does the activation's; the covered layers keep their own forward steps
        // (inference runs them where no conv folds the BatchNorm away).
        // With a pool tail the pass writes the tail's output and argmax at step i, but those
        // live from the tail layers' own steps on: in training nothing runs between, and the
        // slots living only in between are inference tensors the training pass never
        // touches (the BatchNorm's and the activation's outputs), so they may share memory.
        // Binding them beside step i's inputs still needs different buffers: conflicts only.
        if layer.fuse_next && layer.fuse_tail == 0 {
            fwd.1.push(act[i + 2]);
        }
        if layer.fuse_next && layer.fuse_tail > 0 {
            let last = i + 1 + layer.fuse_tail;
            let written = std::iter::once(act[last + 1]).chain(extra[i + 2..=last].iter().flatten().copied());
            tail_conflicts.extend(written.map(|w| (act[i], w)));
        }
        if i > 0 && layers[i - 1].fuse_next {
            continue;
        }
        let out_grad = if layer.fuse_next { dact[i + 2] } else { dact[i + 1] };
        let bwd = &mut steps[2 * l - i];
        bwd.0.extend([out_grad, layer.backward_reads_input.then_some(act[i])].into_iter().flatten());
        bwd.0.extend(&extra[i]);
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
    for (r, w) in tail_conflicts {
        slots[r].conflicts.push(w);
        slots[w].conflicts.push(r);
    }
    for k in [Some(act[0]), Some(act[l]), dact[0], dact[l]].into_iter().flatten() {
        slots[k].pinned = true;
    }
    for s in slots.iter_mut().filter(|s| s.first == usize::MAX) {
        s.pinned = true;
    }
    MemoryPlan { slots, shapes, act, dact, extra, sink }
}

/// Allocate the plan's slots: each in its own buffer, or (`reuse`) unpinned ones packed into
/// activation arenas by greedy interval packing (module docs). Returns one tensor per slot,
/// whether it shares memory with another slot, and the totals.
pub fn allocate(gpu: &Gpu, plan: &MemoryPlan, reuse: bool) -> Result<(Vec<Tensor>, Vec<bool>, ActivationMemory)> {
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
