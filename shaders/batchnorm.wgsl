// Batch normalization, per channel over the batch and spatial positions.
//
// Shapes: x, y, dx, dy are [N, C, S] flattened (S = H*W for images, 1 after a dense layer);
// M = N*S values per channel. gamma, beta, running_mean, running_var, dgamma, dbeta are [C];
// saved is [2, C] = (batch mean, inv_std = 1 / sqrt(biased batch var + eps));
// sums is [2, C] = (sum dy, sum dy * xhat) of the current batch (scratch owned by the op).
//
// batchnorm_stats           one workgroup per channel: mean, var -> saved; running stats
//                           (Keras: running = momentum * running + (1 - momentum) * batch).
//                           Overwrites saved; updates running_mean / running_var in place.
// batchnorm_forward_train   y = gamma * (x - mean) * inv_std + beta. Overwrites y.
// batchnorm_forward_infer   y = gamma * (x - running_mean) / sqrt(running_var + eps) + beta.
//                           Overwrites y.
// batchnorm_backward_params one workgroup per channel, xhat = (x - mean) * inv_std:
//                           dbeta[c]  = sum dy
//                           dgamma[c] = sum dy * xhat
//                           Overwrites sums; overwrites dgamma / dbeta, or adds to them with
//                           ACCUMULATE = true (batch chunks). sums never accumulate: dx needs
//                           this batch's sums only.
// batchnorm_backward_input  dx = gamma * inv_std * (dy - sum_dy / M - xhat * sum_dy_xhat / M).
//                           Overwrites dx.
// batchnorm_backward_infer  inference mode (running statistics are constants):
//                           dx = dy * gamma / sqrt(running_var + eps). Overwrites dx. Used by
//                           explanations (input gradients of a trained model).
// Elementwise kernels: one invocation per element, 1-D index over a 2-D grid when the count
// exceeds max_compute_workgroups_per_dimension * WG (see Gpu::groups_1d).

struct Params {
    n: u32,         // N*C*S elements
    c: u32,         // channels
    s: u32,         // spatial size per channel
    m: u32,         // N*S values per channel
    eps: f32,
    momentum: f32,
}

const WG: u32 = 256u;
override ACCUMULATE: bool = false;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;
@group(0) @binding(3) var<storage, read> gamma: array<f32>;
@group(0) @binding(4) var<storage, read> beta: array<f32>;
@group(0) @binding(5) var<storage, read_write> running_mean: array<f32>;
@group(0) @binding(6) var<storage, read_write> running_var: array<f32>;
// saved: written by batchnorm_stats (saved_out), read by the others (saved).
@group(0) @binding(7) var<storage, read_write> saved_out: array<f32>;
@group(0) @binding(8) var<storage, read_write> dx: array<f32>;
@group(0) @binding(9) var<storage, read> dy: array<f32>;
@group(0) @binding(10) var<storage, read_write> dgamma: array<f32>;
@group(0) @binding(11) var<storage, read_write> dbeta: array<f32>;
@group(0) @binding(12) var<storage, read_write> sums: array<f32>;
// Inference reads the running statistics without writing them (so they may be bound
// read-only alongside other read-only views of the same buffer).
@group(0) @binding(13) var<storage, read> infer_mean: array<f32>;
@group(0) @binding(14) var<storage, read> infer_var: array<f32>;
@group(0) @binding(15) var<storage, read> saved: array<f32>;

// Flat index of the k-th value (k in [0, M)) of channel c.
fn at(k: u32, c: u32) -> u32 {
    return ((k / p.s) * p.c + c) * p.s + k % p.s;
}

// Tree reduction over the workgroup; every invocation gets the total. The trailing barrier
// lets the next call reuse `red` safely.
var<workgroup> red: array<vec2<f32>, WG>;

fn reduce2(v: vec2<f32>, lid: u32) -> vec2<f32> {
    red[lid] = v;
    workgroupBarrier();
    for (var stride = WG / 2u; stride > 0u; stride /= 2u) {
        if (lid < stride) {
            red[lid] += red[lid + stride];
        }
        workgroupBarrier();
    }
    let total = red[0];
    workgroupBarrier();
    return total;
}

// The batch statistics of channel c: saved = (mean, 1 / sqrt(var + eps)), and the running
// statistics' Keras update. A variance below 0 (rounding) counts as 0.
fn store_stats(c: u32, mean: f32, var_in: f32) {
    let variance = max(var_in, 0.0);
    saved_out[c] = mean;
    saved_out[p.c + c] = 1.0 / sqrt(variance + p.eps);
    running_mean[c] = p.momentum * running_mean[c] + (1.0 - p.momentum) * mean;
    running_var[c] = p.momentum * running_var[c] + (1.0 - p.momentum) * variance;
}

// Shifted two-pass statistics, stable for inputs with a large mean: pass 1 sums x - K with
// K = the channel's first value (exact in f32 when x is near K), giving mean0; pass 2 sums
// d = x - mean0 and d^2, and corrects for the rounding of mean0:
// mean = mean0 + sum d / M, var = sum d^2 / M - (sum d / M)^2.
@compute @workgroup_size(WG)
fn batchnorm_stats(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let c = wid.x;
    let inv_m = 1.0 / f32(p.m);
    let shift = x[c * p.s];
    var a = 0.0;
    for (var k = lid.x; k < p.m; k += WG) {
        a += x[at(k, c)] - shift;
    }
    let mean0 = shift + reduce2(vec2<f32>(a, 0.0), lid.x).x * inv_m;
    var b = vec2<f32>(0.0);
    for (var k = lid.x; k < p.m; k += WG) {
        let d = x[at(k, c)] - mean0;
        b += vec2<f32>(d, d * d);
    }
    let t = reduce2(b, lid.x);
    if (lid.x == 0u) {
        let md = t.x * inv_m;
        store_stats(c, mean0 + md, t.y * inv_m - md * md);
    }
}

@compute @workgroup_size(WG)
fn batchnorm_forward_train(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat(gid, nwg);
    if (i >= p.n) { return; }
    let c = (i / p.s) % p.c;
    y[i] = gamma[c] * ((x[i] - saved[c]) * saved[p.c + c]) + beta[c];
}

@compute @workgroup_size(WG)
fn batchnorm_forward_infer(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat(gid, nwg);
    if (i >= p.n) { return; }
    let c = (i / p.s) % p.c;
    y[i] = gamma[c] * ((x[i] - infer_mean[c]) / sqrt(infer_var[c] + p.eps)) + beta[c];
}

@compute @workgroup_size(WG)
fn batchnorm_backward_params(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let c = wid.x;
    let mean = saved[c];
    let inv_std = saved[p.c + c];
    var a = vec2<f32>(0.0);
    for (var k = lid.x; k < p.m; k += WG) {
        let i = at(k, c);
        let g = dy[i];
        a += vec2<f32>(g, g * ((x[i] - mean) * inv_std));
    }
    let t = reduce2(a, lid.x);
    if (lid.x == 0u) {
        sums[c] = t.x;
        sums[p.c + c] = t.y;
        dbeta[c] = select(0.0, dbeta[c], ACCUMULATE) + t.x;
        dgamma[c] = select(0.0, dgamma[c], ACCUMULATE) + t.y;
    }
}

@compute @workgroup_size(WG)
fn batchnorm_backward_input(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat(gid, nwg);
    if (i >= p.n) { return; }
    let c = (i / p.s) % p.c;
    let inv_m = 1.0 / f32(p.m);
    let inv_std = saved[p.c + c];
    let xhat = (x[i] - saved[c]) * inv_std;
    dx[i] = gamma[c] * inv_std * (dy[i] - sums[c] * inv_m - xhat * (sums[p.c + c] * inv_m));
}

@compute @workgroup_size(WG)
fn batchnorm_backward_infer(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat(gid, nwg);
    if (i >= p.n) { return; }
    let c = (i / p.s) % p.c;
    dx[i] = dy[i] * gamma[c] / sqrt(infer_var[c] + p.eps);
}

// ---- vec4 variants (entry names end in 4), used when S % 4 == 0 ----
// One invocation per 4 consecutive elements of one channel (elementwise kernels), or vec4
// loads in the per-channel reductions: on lavapipe every storage access is a per-lane loop
// and every index division 8 scalar divisions, so a quarter of each is ~3x cheaper. Same
// results and overwrite / ACCUMULATE rules as the scalar kernels. S4 = S / 4.
@group(0) @binding(16) var<storage, read> x4: array<vec4<f32>>;
@group(0) @binding(17) var<storage, read_write> y4: array<vec4<f32>>;
@group(0) @binding(18) var<storage, read_write> dx4: array<vec4<f32>>;
@group(0) @binding(19) var<storage, read> dy4: array<vec4<f32>>;

// vec4 index of the k-th vec4 (k in [0, M / 4)) of channel c.
fn at4(k: u32, c: u32) -> u32 {
    let s4 = p.s / 4u;
    return ((k / s4) * p.c + c) * s4 + k % s4;
}

fn hsum(v: vec4<f32>) -> f32 {
    return (v.x + v.y) + (v.z + v.w);
}

@compute @workgroup_size(WG)
fn batchnorm_stats4(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let c = wid.x;
    let m4 = p.m / 4u;
    let inv_m = 1.0 / f32(p.m);
    let shift = x[c * p.s];
    var a = vec4<f32>(0.0);
    for (var k = lid.x; k < m4; k += WG) {
        a += x4[at4(k, c)] - shift;
    }
    let mean0 = shift + reduce2(vec2<f32>(hsum(a), 0.0), lid.x).x * inv_m;
    var d1 = vec4<f32>(0.0);
    var d2 = vec4<f32>(0.0);
    for (var k = lid.x; k < m4; k += WG) {
        let d = x4[at4(k, c)] - mean0;
        d1 += d;
        d2 += d * d;
    }
    let t = reduce2(vec2<f32>(hsum(d1), hsum(d2)), lid.x);
    if (lid.x == 0u) {
        let md = t.x * inv_m;
        store_stats(c, mean0 + md, t.y * inv_m - md * md);
    }
}

@compute @workgroup_size(WG)
fn batchnorm_forward_train4(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat(gid, nwg);
    if (i >= p.n / 4u) { return; }
    let c = (i / (p.s / 4u)) % p.c;
    y4[i] = gamma[c] * ((x4[i] - saved[c]) * saved[p.c + c]) + beta[c];
}

@compute @workgroup_size(WG)
fn batchnorm_forward_infer4(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat(gid, nwg);
    if (i >= p.n / 4u) { return; }
    let c = (i / (p.s / 4u)) % p.c;
    y4[i] = gamma[c] * ((x4[i] - infer_mean[c]) / sqrt(infer_var[c] + p.eps)) + beta[c];
}

@compute @workgroup_size(WG)
fn batchnorm_backward_params4(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let c = wid.x;
    let mean = saved[c];
    let inv_std = saved[p.c + c];
    var g1 = vec4<f32>(0.0);
    var g2 = vec4<f32>(0.0);
    for (var k = lid.x; k < p.m / 4u; k += WG) {
        let i = at4(k, c);
        let g = dy4[i];
        g1 += g;
        g2 += g * ((x4[i] - mean) * inv_std);
    }
    let t = reduce2(vec2<f32>(hsum(g1), hsum(g2)), lid.x);
    if (lid.x == 0u) {
        sums[c] = t.x;
        sums[p.c + c] = t.y;
        dbeta[c] = select(0.0, dbeta[c], ACCUMULATE) + t.x;
        dgamma[c] = select(0.0, dgamma[c], ACCUMULATE) + t.y;
    }
}

@compute @workgroup_size(WG)
fn batchnorm_backward_input4(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat(gid, nwg);
    if (i >= p.n / 4u) { return; }
    let c = (i / (p.s / 4u)) % p.c;
    let inv_m = 1.0 / f32(p.m);
    let inv_std = saved[p.c + c];
    let xhat = (x4[i] - saved[c]) * inv_std;
    dx4[i] = gamma[c] * inv_std * (dy4[i] - sums[c] * inv_m - xhat * (sums[p.c + c] * inv_m));
}

@compute @workgroup_size(WG)
fn batchnorm_backward_infer4(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat(gid, nwg);
    if (i >= p.n / 4u) { return; }
    let c = (i / (p.s / 4u)) % p.c;
    dx4[i] = dy4[i] * (gamma[c] / sqrt(infer_var[c] + p.eps));
}

// ---- statistics from a conv's epilogue ----
// batchnorm_stats_partials: one workgroup per channel. The conv before this BatchNorm wrote,
//   per channel and conv workgroup g, the partial statistics of the values that workgroup
//   stored (conv2d_subgroup.wgsl, STATS): partials [C, G, 3] = (count, mean, M2 = sum of
//   squared deviations from that mean), G = arrayLength / (3 C). The partials are merged by
//   Chan, Golub and LeVeque's pairwise rule (each lane walks its strided share, then a tree
//   over the workgroup): no float atomics, and no pass over the conv's output. Then saved
//   and the running statistics as batchnorm_stats, var = M2 / M.
@group(0) @binding(24) var<storage, read> partials: array<f32>;

// Two partial statistics (count, mean, M2) as one; an empty side (count 0) leaves the other.
fn merge_stats(a: vec3<f32>, b: vec3<f32>) -> vec3<f32> {
    let n = a.x + b.x;
    let f = b.x / max(n, 1.0);
    let d = b.y - a.y;
    let m = vec3<f32>(n, a.y + d * f, a.z + b.z + d * d * a.x * f);
    return select(select(m, a, b.x == 0.0), b, a.x == 0.0);
}

// (red3: the workgroup array of reduce3, below.)
@compute @workgroup_size(WG)
fn batchnorm_stats_partials(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let c = wid.x;
    let groups = arrayLength(&partials) / (3u * p.c);
    var t = vec3<f32>(0.0);
    for (var g = lid.x; g < groups; g += WG) {
        let k = (c * groups + g) * 3u;
        t = merge_stats(t, vec3<f32>(partials[k], partials[k + 1u], partials[k + 2u]));
    }
    red3[lid.x] = t;
    workgroupBarrier();
    for (var stride = WG / 2u; stride > 0u; stride /= 2u) {
        if (lid.x < stride) {
            red3[lid.x] = merge_stats(red3[lid.x], red3[lid.x + stride]);
        }
        workgroupBarrier();
    }
    if (lid.x == 0u) {
        let r = red3[0];
        store_stats(c, r.y, r.z / f32(p.m));
    }
}

// ---- inference BatchNorm folded into the preceding convolution ----
// batchnorm_fold: with scale[co] = gamma[co] / sqrt(running_var[co] + eps),
//   wf[co, k] = w[co, k] * scale[co]                     (k over CI*KH*KW; P.S = CI*KH*KW)
//   bf[co]    = (b[co] - running_mean[co]) * scale[co] + beta[co]   (b = 0 when P.M == 0)
// so conv(x, wf) + bf = BN_infer(conv(x, w) + b): inference runs one conv pass instead of a
// conv and a BN pass over its output. P.N = CO*CI*KH*KW invocations (P.N >= P.C = CO).
// Overwrites wf and bf; runs before the conv in every inference replay (weights change).
@group(0) @binding(20) var<storage, read> fold_w: array<f32>;
@group(0) @binding(21) var<storage, read> fold_b: array<f32>;
@group(0) @binding(22) var<storage, read_write> folded_w: array<f32>;
@group(0) @binding(23) var<storage, read_write> folded_b: array<f32>;

@compute @workgroup_size(WG)
fn batchnorm_fold(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat(gid, nwg);
    if (i >= p.n) { return; }
    let co = i / p.s;
    folded_w[i] = fold_w[i] * (gamma[co] / sqrt(infer_var[co] + p.eps));
    if (i < p.c) {
        let b = select(0.0, fold_b[i], p.m != 0u);
        folded_b[i] = (b - infer_mean[i]) * (gamma[i] / sqrt(infer_var[i] + p.eps)) + beta[i];
    }
}

// ---- S == 1 (after a dense layer): one invocation per channel ----
// batchnorm_stats_rows / batchnorm_backward_params_rows compute what batchnorm_stats /
// batchnorm_backward_params do, each invocation looping over the N rows of its channel
// (x[k, c] at k * C + c: neighbouring lanes read neighbouring floats) instead of a
// 256-lane workgroup per channel with tree reductions: for M = N values there is little to
// share, and on lavapipe each workgroupBarrier switches every lane's coroutine (these two
// kernels took ~40% of a seed-dnn step). Same outputs and overwrite / ACCUMULATE rules.
const WG_ROWS: u32 = 64u;

@compute @workgroup_size(WG_ROWS)
fn batchnorm_stats_rows(@builtin(global_invocation_id) gid: vec3<u32>) {
    let c = gid.x;
    if (c >= p.c) { return; }
    let inv_m = 1.0 / f32(p.m);
    let shift = x[c];
    var a = 0.0;
    for (var k = 0u; k < p.m; k++) {
        a += x[k * p.c + c] - shift;
    }
    let mean0 = shift + a * inv_m;
    var b = vec2<f32>(0.0);
    for (var k = 0u; k < p.m; k++) {
        let d = x[k * p.c + c] - mean0;
        b += vec2<f32>(d, d * d);
    }
    let md = b.x * inv_m;
    store_stats(c, mean0 + md, b.y * inv_m - md * md);
}

@compute @workgroup_size(WG_ROWS)
fn batchnorm_backward_params_rows(@builtin(global_invocation_id) gid: vec3<u32>) {
    let c = gid.x;
    if (c >= p.c) { return; }
    let mean = saved[c];
    let inv_std = saved[p.c + c];
    var t = vec2<f32>(0.0);
    for (var k = 0u; k < p.m; k++) {
        let g = dy[k * p.c + c];
        t += vec2<f32>(g, g * ((x[k * p.c + c] - mean) * inv_std));
    }
    sums[c] = t.x;
    sums[p.c + c] = t.y;
    dbeta[c] = select(0.0, dbeta[c], ACCUMULATE) + t.x;
    dgamma[c] = select(0.0, dgamma[c], ACCUMULATE) + t.y;
}

// ---- population statistics (precise BatchNorm): exact mean and variance of each channel
// over K equal batches of the BN's input, replacing the running statistics ----
// batchnorm_population_accumulate  one workgroup per channel: this batch's mean mu_b and
//     biased variance var_b (shifted two-pass, as batchnorm_stats), merged into
//     acc [3, C] = (mean of the mu_b so far, sum of their squared deviations (Welford),
//     mean of the var_b so far) with batch index pop.k (0 overwrites acc).
// batchnorm_population_finish  one invocation per channel: with K = pop.batches,
//     running_mean = acc[0], running_var = acc[2] + acc[1] / K (law of total variance for
//     equal batches: the variance over all K*M values). Overwrites the running statistics.
struct Population {
    k: u32,        // index of this batch (rewritten by the host before each batch)
    batches: u32,  // K
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(24) var<uniform> pop: Population;
@group(0) @binding(25) var<storage, read_write> acc: array<f32>;

@compute @workgroup_size(WG)
fn batchnorm_population_accumulate(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let c = wid.x;
    let inv_m = 1.0 / f32(p.m);
    let shift = x[at(0u, c)];
    var a = 0.0;
    for (var k = lid.x; k < p.m; k += WG) {
        a += x[at(k, c)] - shift;
    }
    let mean0 = shift + reduce2(vec2<f32>(a, 0.0), lid.x).x * inv_m;
    var b = vec2<f32>(0.0);
    for (var k = lid.x; k < p.m; k += WG) {
        let d = x[at(k, c)] - mean0;
        b += vec2<f32>(d, d * d);
    }
    let t = reduce2(b, lid.x);
    if (lid.x == 0u) {
        let md = t.x * inv_m;
        let mean = mean0 + md;
        let variance = max(t.y * inv_m - md * md, 0.0);
        if (pop.k == 0u) {
            acc[c] = mean;
            acc[p.c + c] = 0.0;
            acc[2u * p.c + c] = variance;
        } else {
            let w = 1.0 / f32(pop.k + 1u);
            let delta = mean - acc[c];
            let m_new = acc[c] + delta * w;
            acc[p.c + c] += delta * (mean - m_new);
            acc[c] = m_new;
            acc[2u * p.c + c] += (variance - acc[2u * p.c + c]) * w;
        }
    }
}

@compute @workgroup_size(WG_ROWS)
fn batchnorm_population_finish(@builtin(global_invocation_id) gid: vec3<u32>) {
    let c = gid.x;
    if (c >= p.c) { return; }
    running_mean[c] = acc[c];
    running_var[c] = acc[2u * p.c + c] + acc[p.c + c] / f32(pop.batches);
}

// ---- training BatchNorm fused with the activation after it (the pairing: src/nn/fuse.rs) ----
// z = gamma * xhat + beta is the BatchNorm output; it is never stored: the forward writes
// act(z), the backward recomputes z from x and saved (the same f32 operations as
// batchnorm_forward_train, so the same bits) and takes dz = dy * act'(z) in place of the
// BatchNorm's dy. ACT: 1 ReLU, 2 LeakyReLU (slope LEAKY), 3 PReLU with one slope per
// channel (act_alpha [C]), 4 PReLU with one slope per element of a sample (act_alpha
// [C, S]). Each op is the one shaders/activation.wgsl applies.
// batchnorm_forward_train_act    y = act(z). Overwrites y.
// batchnorm_forward_train_act_pool  y = maxpool2x2(act(z)), with the dropouts around the
//                                pool (DROP_PRE before it, DROP_POST after); one invocation
//                                per pooled element; writes pool_argmax as max_pool2_forward.
// batchnorm_backward_params_act  as batchnorm_backward_params (same order: same bits) with
//                                dz for dy; ACT 3 also dalpha[c] = sum dy * z over z <= 0
//                                (another order than prelu_backward_alpha in the vec4 and
//                                _rows kernels); _rows with ACT 4 (S == 1) dalpha[c] too.
//                                Overwrites sums; dgamma, dbeta, dalpha as ACCUMULATE.
// batchnorm_backward_params_act_cols  ACT 4 with S > 1: one workgroup per channel, each
//                                invocation owning positions r, r + WG, ... of the channel
//                                and looping over the batch, so it sums dalpha[c * S + r]
//                                = sum over n of dy * z where z <= 0 on its own (the order
//                                of prelu_backward_alpha_elementwise: same bits); the
//                                channel's sums as above but in another order.
// batchnorm_backward_input_act   dx as batchnorm_backward_input with dz for dy.
// Entries statically bind act_alpha (and act_alpha4 in vec4 entries) and, in the
// reductions, dalpha: ReLU / LeakyReLU get stand-ins (src/nn/batchnorm.rs).
override ACT: u32 = 1u;
override LEAKY: f32 = 0.0;

@group(0) @binding(26) var<storage, read> act_alpha: array<f32>;
@group(0) @binding(27) var<storage, read> act_alpha4: array<vec4<f32>>;
@group(0) @binding(28) var<storage, read_write> dalpha: array<f32>;
@group(0) @binding(29) var<storage, read_write> dalpha4: array<vec4<f32>>;

// Slope of channel c's element at position r (r < S) for ACT 2-4.
fn slope(c: u32, r: u32) -> f32 {
    if (ACT == 2u) { return LEAKY; }
    if (ACT == 3u) { return act_alpha[c]; }
    if (ACT == 4u) { return act_alpha[c * p.s + r]; }
    return 0.0;
}

// Slopes of channel c's vec4 at position r4 (r4 < S / 4), S % 4 == 0.
fn slope4(c: u32, r4: u32) -> vec4<f32> {
    if (ACT == 4u) { return act_alpha4[c * (p.s / 4u) + r4]; }
    return vec4<f32>(slope(c, 0u));
}

fn act_forward(z: f32, a: f32) -> f32 {
    if (ACT == 1u) { return max(z, 0.0); }
    return select(a * z, z, z > 0.0);
}

fn act_forward4(z: vec4<f32>, a: vec4<f32>) -> vec4<f32> {
    if (ACT == 1u) { return max(z, vec4<f32>(0.0)); }
    return select(a * z, z, z > vec4<f32>(0.0));
}

// dz from the activation's output gradient g.
fn act_backward(g: f32, z: f32, a: f32) -> f32 {
    if (ACT == 1u) { return select(0.0, g, z > 0.0); }
    return select(a * g, g, z > 0.0);
}

fn act_backward4(g: vec4<f32>, z: vec4<f32>, a: vec4<f32>) -> vec4<f32> {
    if (ACT == 1u) { return select(vec4<f32>(0.0), g, z > vec4<f32>(0.0)); }
    return select(a * g, g, z > vec4<f32>(0.0));
}

var<workgroup> red3: array<vec3<f32>, WG>;

fn reduce3(v: vec3<f32>, lid: u32) -> vec3<f32> {
    red3[lid] = v;
    workgroupBarrier();
    for (var stride = WG / 2u; stride > 0u; stride /= 2u) {
        if (lid < stride) {
            red3[lid] += red3[lid + stride];
        }
        workgroupBarrier();
    }
    let total = red3[0];
    workgroupBarrier();
    return total;
}

// (sum dz, sum dz * xhat) of channel c -> sums, dbeta, dgamma.
fn write_bn_sums(c: u32, t: vec2<f32>) {
    sums[c] = t.x;
    sums[p.c + c] = t.y;
    dbeta[c] = select(0.0, dbeta[c], ACCUMULATE) + t.x;
    dgamma[c] = select(0.0, dgamma[c], ACCUMULATE) + t.y;
}

// The BatchNorm sums, and t.z to dalpha[c] where the slope is the channel's (`one_slope`).
fn write_param_sums(c: u32, t: vec3<f32>, one_slope: bool) {
    write_bn_sums(c, t.xy);
    if (one_slope) {
        dalpha[c] = select(0.0, dalpha[c], ACCUMULATE) + t.z;
    }
}

@compute @workgroup_size(WG)
fn batchnorm_forward_train_act(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat(gid, nwg);
    if (i >= p.n) { return; }
    // i = (sample * C + c) * S + r.
    let q = i / p.s;
    let c = q % p.c;
    let z = gamma[c] * ((x[i] - saved[c]) * saved[p.c + c]) + beta[c];
    y[i] = act_forward(z, slope(c, i - q * p.s));
}

@compute @workgroup_size(WG)
fn batchnorm_forward_train_act4(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat(gid, nwg);
    if (i >= p.n / 4u) { return; }
    let s4 = p.s / 4u;
    let q = i / s4;
    let c = q % p.c;
    let z = gamma[c] * ((x4[i] - saved[c]) * saved[p.c + c]) + beta[c];
    y4[i] = act_forward4(z, slope4(c, i - q * s4));
}

// The strided reductions walk channel c's values as (sample, position r) so the slope costs
// no division; per-channel values are loaded once (the compiler cannot hoist loads past
// other storage accesses on its own).
@compute @workgroup_size(WG)
fn batchnorm_backward_params_act(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let c = wid.x;
    let mean = saved[c];
    let inv_std = saved[p.c + c];
    let gm = gamma[c];
    let bt = beta[c];
    var a = vec3<f32>(0.0);
    for (var k = lid.x; k < p.m; k += WG) {
        let nn = k / p.s;
        let r = k - nn * p.s;
        let i = (nn * p.c + c) * p.s + r;
        let xhat = (x[i] - mean) * inv_std;
        let z = gm * xhat + bt;
        let d = dy[i];
        let g = act_backward(d, z, slope(c, r));
        a += vec3<f32>(g, g * xhat, select(d * z, 0.0, z > 0.0));
    }
    let t = reduce3(a, lid.x);
    if (lid.x == 0u) {
        write_param_sums(c, t, ACT == 3u);
    }
}

@compute @workgroup_size(WG)
fn batchnorm_backward_params_act4(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let c = wid.x;
    let s4 = p.s / 4u;
    let mean = saved[c];
    let inv_std = saved[p.c + c];
    let gm = gamma[c];
    let bt = beta[c];
    var g1 = vec4<f32>(0.0);
    var g2 = vec4<f32>(0.0);
    var g3 = vec4<f32>(0.0);
    for (var k = lid.x; k < p.m / 4u; k += WG) {
        let nn = k / s4;
        let r = k - nn * s4;
        let i = (nn * p.c + c) * s4 + r;
        let xhat = (x4[i] - mean) * inv_std;
        let z = gm * xhat + bt;
        let d = dy4[i];
        let g = act_backward4(d, z, slope4(c, r));
        g1 += g;
        g2 += g * xhat;
        g3 += select(d * z, vec4<f32>(0.0), z > vec4<f32>(0.0));
    }
    let t = reduce3(vec3<f32>(hsum(g1), hsum(g2), hsum(g3)), lid.x);
    if (lid.x == 0u) {
        write_param_sums(c, t, ACT == 3u);
    }
}

@compute @workgroup_size(WG_ROWS)
fn batchnorm_backward_params_act_rows(@builtin(global_invocation_id) gid: vec3<u32>) {
    let c = gid.x;
    if (c >= p.c) { return; }
    let mean = saved[c];
    let inv_std = saved[p.c + c];
    let gm = gamma[c];
    let bt = beta[c];
    let sl = slope(c, 0u);
    var t = vec3<f32>(0.0);
    for (var k = 0u; k < p.m; k++) {
        let i = k * p.c + c;
        let xhat = (x[i] - mean) * inv_std;
        let z = gm * xhat + bt;
        let d = dy[i];
        let g = act_backward(d, z, sl);
        t += vec3<f32>(g, g * xhat, select(d * z, 0.0, z > 0.0));
    }
    write_param_sums(c, t, ACT >= 3u);
}

@compute @workgroup_size(WG)
fn batchnorm_backward_params_act_cols(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let c = wid.x;
    let cs = p.c * p.s;
    let mean = saved[c];
    let inv_std = saved[p.c + c];
    let gm = gamma[c];
    let bt = beta[c];
    var a = vec2<f32>(0.0);
    for (var r = lid.x; r < p.s; r += WG) {
        let j = c * p.s + r;
        let sl = act_alpha[j];
        var acc = 0.0;
        for (var i = j; i < p.n; i += cs) {
            let xhat = (x[i] - mean) * inv_std;
            let z = gm * xhat + bt;
            let d = dy[i];
            let g = select(sl * d, d, z > 0.0);
            a += vec2<f32>(g, g * xhat);
            acc += select(d * z, 0.0, z > 0.0);
        }
        dalpha[j] = select(0.0, dalpha[j], ACCUMULATE) + acc;
    }
    let t = reduce2(a, lid.x);
    if (lid.x == 0u) {
        write_bn_sums(c, t);
    }
}

@compute @workgroup_size(WG)
fn batchnorm_backward_params_act_cols4(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let c = wid.x;
    let s4 = p.s / 4u;
    let cs4 = p.c * s4;
    let n4 = p.n / 4u;
    let mean = saved[c];
    let inv_std = saved[p.c + c];
    let gm = gamma[c];
    let bt = beta[c];
    var g1 = vec4<f32>(0.0);
    var g2 = vec4<f32>(0.0);
    for (var r = lid.x; r < s4; r += WG) {
        let j = c * s4 + r;
        let sl = act_alpha4[j];
        var acc = vec4<f32>(0.0);
        for (var i = j; i < n4; i += cs4) {
            let xhat = (x4[i] - mean) * inv_std;
            let z = gm * xhat + bt;
            let d = dy4[i];
            let g = select(sl * d, d, z > vec4<f32>(0.0));
            g1 += g;
            g2 += g * xhat;
            acc += select(d * z, vec4<f32>(0.0), z > vec4<f32>(0.0));
        }
        dalpha4[j] = select(vec4<f32>(0.0), dalpha4[j], ACCUMULATE) + acc;
    }
    let t = reduce2(vec2<f32>(hsum(g1), hsum(g2)), lid.x);
    if (lid.x == 0u) {
        write_bn_sums(c, t);
    }
}

@compute @workgroup_size(WG)
fn batchnorm_backward_input_act(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat(gid, nwg);
    if (i >= p.n) { return; }
    let q = i / p.s;
    let c = q % p.c;
    let inv_m = 1.0 / f32(p.m);
    let inv_std = saved[p.c + c];
    let xhat = (x[i] - saved[c]) * inv_std;
    let g = act_backward(dy[i], gamma[c] * xhat + beta[c], slope(c, i - q * p.s));
    dx[i] = gamma[c] * inv_std * (g - sums[c] * inv_m - xhat * (sums[p.c + c] * inv_m));
}

@compute @workgroup_size(WG)
fn batchnorm_backward_input_act4(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat(gid, nwg);
    if (i >= p.n / 4u) { return; }
    let s4 = p.s / 4u;
    let q = i / s4;
    let c = q % p.c;
    let inv_m = 1.0 / f32(p.m);
    let inv_std = saved[p.c + c];
    let xhat = (x4[i] - saved[c]) * inv_std;
    let g = act_backward4(dy4[i], gamma[c] * xhat + beta[c], slope4(c, i - q * s4));
    dx4[i] = gamma[c] * inv_std * (g - sums[c] * inv_m - xhat * (sums[p.c + c] * inv_m));
}

// ---- the 2x2 max pool (and its dropouts) inside the fused training forward ----
// batchnorm_forward_train_act_pool: x [N, C, H, W] with W = POOL_W and H even, y and
// pool_argmax [N, C, H/2, W/2]. Per pooled element o (plane = o / (S/4), c = plane % C):
// each of its window's four values goes z -> act(z) -> (DROP_PRE) keep ? v * scale : 0 at
// its flat index in x; the max in the order top-left, top-right, bottom-left, bottom-right
// with a strict > (the first maximum wins, as max_pool2_forward); (DROP_POST) its dropout at
// o. Every step is the separate layer's f32 operation: y and pool_argmax are what the
// BatchNorm, activation, dropout and pool kernels write, bit for bit. The activation output
// and the pre-pool dropout's are never stored (their backward passes read none of them: the
// pool's reads the argmax, dropout's recomputes its mask, the pair's recomputes z).
// Overwrites y and pool_argmax. The dropouts' uniforms are the layers' own (rewritten every
// step by Dropout::set_seed); without one, the BatchNorm's uniform stands in.
struct Drop {
    n: u32,
    seed: u32,
    rate: f32,
    scale: f32,
}

override DROP_PRE: bool = false;
override DROP_POST: bool = false;
override POOL_W: u32 = 2u;

@group(0) @binding(30) var<uniform> drop_pre: Drop;
@group(0) @binding(31) var<uniform> drop_post: Drop;
@group(0) @binding(32) var<storage, read_write> pool_argmax: array<u32>;
@group(0) @binding(33) var<storage, read> x2: array<vec2<f32>>;

// One window value v of channel c at position r of the plane starting at flat index base.
fn pool_in(v: f32, c: u32, base: u32, r: u32) -> f32 {
    let a = act_forward(gamma[c] * ((v - saved[c]) * saved[p.c + c]) + beta[c], slope(c, r));
    if (DROP_PRE) {
        return select(0.0, a * drop_pre.scale, dropout_keep(base + r, drop_pre.seed, drop_pre.rate));
    }
    return a;
}

@compute @workgroup_size(WG)
fn batchnorm_forward_train_act_pool(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let o = flat(gid, nwg);
    let per_plane = p.s / 4u;
    if (o >= p.n / 4u) { return; }
    let plane = o / per_plane;
    let c = plane % p.c;
    let q = o - plane * per_plane;
    let ow = POOL_W / 2u;
    let top = 2u * (q / ow) * POOL_W + 2u * (q % ow);  // the window's first element in its plane
    let base = plane * p.s;
    let upper = x2[(base + top) / 2u];
    let lower = x2[(base + top + POOL_W) / 2u];
    var best = pool_in(upper.x, c, base, top);
    var best_idx = top;
    let v1 = pool_in(upper.y, c, base, top + 1u);
    if (v1 > best) { best = v1; best_idx = top + 1u; }
    let v2 = pool_in(lower.x, c, base, top + POOL_W);
    if (v2 > best) { best = v2; best_idx = top + POOL_W; }
    let v3 = pool_in(lower.y, c, base, top + POOL_W + 1u);
    if (v3 > best) { best = v3; best_idx = top + POOL_W + 1u; }
    if (DROP_POST) {
        best = select(0.0, best * drop_post.scale, dropout_keep(o, drop_post.seed, drop_post.rate));
    }
    y[o] = best;
    pool_argmax[o] = best_idx;
}
