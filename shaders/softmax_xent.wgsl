// Fused softmax + cross-entropy.
//
// Shapes: N batch (this chunk), K classes. logits, dlogits, probs [N, K]; labels u32 [N];
// losses [N]; correct u32 [N]; stats [2].
//
// softmax_xent_forward_backward  (one invocation per sample; overwrites all three outputs)
//   losses[n]     = logsumexp(logits[n]) - logits[n, label]   (max subtracted first)
//   correct[n]    = argmax(logits[n]) == label (ties: lowest index)
//   dlogits[n, k] = (softmax(logits[n])[k] - [k == label]) * scale, scale = 1 / total batch
//                   (a batch split into chunks still averages over the whole batch)
// softmax_xent_reduce  (one workgroup, gather; overwrites stats)
//   stats = (mean of losses over the N samples, number correct as f32)
// softmax_xent_probabilities  (one invocation per sample; overwrites probs)
//   probs[n, k]   = softmax(logits[n])[k]
//
// Labels >= K are FLAGGED, not clamped: such a sample's loss is NaN (so the mean loss in
// stats is NaN and the host notices), correct is 0 and its dlogits row is 0. logits[n, label]
// is never read for it, so nothing is read out of bounds. The host validates labels.

struct Params {
    n: u32,         // N
    k: u32,         // K
    scale: f32,     // 1 / total batch
    nan_bits: u32,  // bits of a quiet NaN (WGSL has no NaN literal)
}

const WG: u32 = 64u;
const RWG: u32 = 256u;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> logits: array<f32>;
@group(0) @binding(2) var<storage, read> labels: array<u32>;
@group(0) @binding(3) var<storage, read_write> dlogits: array<f32>;
@group(0) @binding(4) var<storage, read_write> losses: array<f32>;
@group(0) @binding(5) var<storage, read_write> correct: array<u32>;
@group(0) @binding(6) var<storage, read_write> stats: array<f32>;
@group(0) @binding(7) var<storage, read_write> probs: array<f32>;
@group(0) @binding(8) var<storage, read> rlosses: array<f32>;
@group(0) @binding(9) var<storage, read> rcorrect: array<u32>;

struct RowMax {
    m: f32,
    arg: u32,
}

// Max of row `base .. base + K` and the index of its first occurrence (strict >: ties go
// to the lowest index).
fn row_max(base: u32) -> RowMax {
    var r = RowMax(logits[base], 0u);
    for (var k = 1u; k < p.k; k++) {
        let v = logits[base + k];
        if (v > r.m) { r = RowMax(v, k); }
    }
    return r;
}

// sum_k exp(logits[n, k] - max): in [1, K], no overflow for any finite logits.
fn row_sum_exp(base: u32, m: f32) -> f32 {
    var s = 0.0;
    for (var k = 0u; k < p.k; k++) {
        s += exp(logits[base + k] - m);
    }
    return s;
}

@compute @workgroup_size(WG)
fn softmax_xent_forward_backward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let n = flat(gid, nwg);
    if (n >= p.n) { return; }
    let base = n * p.k;
    let label = labels[n];
    if (label >= p.k) {
        losses[n] = bitcast<f32>(p.nan_bits);
        correct[n] = 0u;
        for (var k = 0u; k < p.k; k++) { dlogits[base + k] = 0.0; }
        return;
    }
    let mx = row_max(base);
    let m = mx.m;
    let s = row_sum_exp(base, m);
    // (max - logit[label]) first: exact-ish for huge logits, where m + log(s) would lose it.
    losses[n] = (m - logits[base + label]) + log(s);
    correct[n] = select(0u, 1u, mx.arg == label);
    let inv = p.scale / s;
    for (var k = 0u; k < p.k; k++) {
        let onehot = select(0.0, p.scale, k == label);
        dlogits[base + k] = exp(logits[base + k] - m) * inv - onehot;
    }
}

var<workgroup> part_loss: array<f32, RWG>;
var<workgroup> part_correct: array<u32, RWG>;

@compute @workgroup_size(RWG)
fn softmax_xent_reduce(@builtin(local_invocation_id) lid: vec3<u32>) {
    var l = 0.0;
    var c = 0u;
    for (var n = lid.x; n < p.n; n += RWG) {
        l += rlosses[n];
        c += rcorrect[n];
    }
    part_loss[lid.x] = l;
    part_correct[lid.x] = c;
    workgroupBarrier();
    for (var stride = RWG / 2u; stride > 0u; stride /= 2u) {
        if (lid.x < stride) {
            part_loss[lid.x] += part_loss[lid.x + stride];
            part_correct[lid.x] += part_correct[lid.x + stride];
        }
        workgroupBarrier();
    }
    if (lid.x == 0u) {
        stats[0] = part_loss[0] / f32(p.n);
        stats[1] = f32(part_correct[0]);
    }
}

@compute @workgroup_size(WG)
fn softmax_xent_probabilities(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let n = flat(gid, nwg);
    if (n >= p.n) { return; }
    let base = n * p.k;
    let m = row_max(base).m;
    let inv = 1.0 / row_sum_exp(base, m);
    for (var k = 0u; k < p.k; k++) {
        probs[base + k] = exp(logits[base + k] - m) * inv;
    }
}
