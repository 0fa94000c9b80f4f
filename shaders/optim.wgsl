// Optimizers over the flat parameter arena: params, grads and each moment buffer are one
// tensor of n elements (every parameter of the model is a view inside it), so one dispatch
// updates the whole model.
//
// Shapes: w (params), g (grads), m, v are [n]. Per element, with wd the weight decay:
//   L2 (decoupled = 0):        g' = g + wd * w
//   decoupled (decoupled = 1): g' = g, and the update below also subtracts lr * wd * w
//                              (AdamW; the decay uses w before this step's update)
//   optim_sgd (momentum 0):    w -= lr * g'
//   optim_sgd_momentum:        m = mu * m + g'                       (PyTorch form)
//                              step = nesterov ? g' + mu * m : m;   w -= lr * step
//   optim_adam:                m = b1 * m + (1 - b1) * g'
//                              v = b2 * v + (1 - b2) * g'^2
//                              w -= lr * (m / bc1) / (sqrt(v / bc2) + eps)
//                              bc1 = 1 - b1^t, bc2 = 1 - b2^t computed by the host in f64
// The host rewrites the uniform (t, lr, bias corrections) every step; the dispatch is built
// once. One invocation per element, 1-D index laid out over a 2-D grid when n exceeds
// max_compute_workgroups_per_dimension * WG (see Gpu::groups_1d).
// Every kernel updates w, m, v in place and only reads g.
//
// Mixed-precision training (loss_scale.wgsl) uses the *_scaled entries: the same updates of
// g * ls[1] (the gradients divided by this step's loss scale), nothing at all when ls[2]
// flags an overflow, and Adam's bias corrections computed here from ls[3], the steps
// actually applied (the host's t also counts skipped ones), in f32.

struct Params {
    n: u32,            // arena elements
    t: u32,            // step number, 1 for the first step (low 32 bits; informational)
    nesterov: u32,     // 1: Nesterov momentum
    decoupled: u32,    // 1: decoupled weight decay, 0: L2 added to the gradient
    lr: f32,
    weight_decay: f32,
    momentum: f32,     // SGD mu
    beta1: f32,
    beta2: f32,
    eps: f32,
    bc1: f32,          // 1 - beta1^t
    bc2: f32,          // 1 - beta2^t
}

const WG: u32 = 256u;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> w: array<f32>;
@group(0) @binding(2) var<storage, read> g: array<f32>;
@group(0) @binding(3) var<storage, read_write> m: array<f32>;
@group(0) @binding(4) var<storage, read_write> v: array<f32>;
@group(0) @binding(5) var<storage, read> ls: array<f32>;   // loss-scale state (*_scaled only)

// The gradient `graw` with L2 decay folded in (unchanged when the decay is decoupled).
fn with_decay(graw: f32, wi: f32) -> f32 {
    return select(graw + p.weight_decay * wi, graw, p.decoupled != 0u);
}

// New weight from the optimizer's step direction, plus decoupled decay when enabled.
fn apply(wi: f32, step: f32) -> f32 {
    let decay = select(0.0, p.weight_decay * wi, p.decoupled != 0u);
    return wi - p.lr * (step + decay);
}

fn sgd(i: u32, graw: f32) {
    let wi = w[i];
    w[i] = apply(wi, with_decay(graw, wi));
}

fn sgd_momentum(i: u32, graw: f32) {
    let wi = w[i];
    let gi = with_decay(graw, wi);
    let mi = p.momentum * m[i] + gi;
    m[i] = mi;
    let step = select(mi, gi + p.momentum * mi, p.nesterov != 0u);
    w[i] = apply(wi, step);
}

fn adam(i: u32, graw: f32, bc1: f32, bc2: f32) {
    let wi = w[i];
    let gi = with_decay(graw, wi);
    let mi = p.beta1 * m[i] + (1.0 - p.beta1) * gi;
    let vi = p.beta2 * v[i] + (1.0 - p.beta2) * gi * gi;
    m[i] = mi;
    v[i] = vi;
    w[i] = apply(wi, (mi / bc1) / (sqrt(vi / bc2) + p.eps));
}

@compute @workgroup_size(WG)
fn optim_sgd(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat(gid, nwg);
    if (i >= p.n) { return; }
    sgd(i, g[i]);
}

@compute @workgroup_size(WG)
fn optim_sgd_momentum(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat(gid, nwg);
    if (i >= p.n) { return; }
    sgd_momentum(i, g[i]);
}

@compute @workgroup_size(WG)
fn optim_adam(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat(gid, nwg);
    if (i >= p.n) { return; }
    adam(i, g[i], p.bc1, p.bc2);
}

@compute @workgroup_size(WG)
fn optim_sgd_scaled(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat(gid, nwg);
    if (i >= p.n || ls[2] != 0.0) { return; }
    sgd(i, g[i] * ls[1]);
}

@compute @workgroup_size(WG)
fn optim_sgd_momentum_scaled(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat(gid, nwg);
    if (i >= p.n || ls[2] != 0.0) { return; }
    sgd_momentum(i, g[i] * ls[1]);
}

@compute @workgroup_size(WG)
fn optim_adam_scaled(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat(gid, nwg);
    if (i >= p.n || ls[2] != 0.0) { return; }
    let t = ls[3];
    adam(i, g[i] * ls[1], 1.0 - pow(p.beta1, t), 1.0 - pow(p.beta2, t));
}
