// Activations: ReLU, LeakyReLU(alpha), PReLU (learned slope per channel, or per element of
// a sample as Keras' PReLU does by default).
//
// Shapes: x, y, dx, dy are [N, C, S] flattened (S = H*W for images, 1 after dense layers);
// PReLU's alpha and dalpha are [C] (div = S) or [C, S] (div = 1): element i uses
// alpha[(i % (C*S)) / div].
// One invocation per element, 1-D index laid out over a 2-D grid when the element count
// exceeds max_compute_workgroups_per_dimension * WG (see Gpu::groups_1d).
// Every kernel overwrites its output, except prelu_backward_alpha with the override
// ACCUMULATE = true, which adds to dalpha (a batch split into chunks sums its gradients).

struct Params {
    n: u32,      // N*C*S elements
    c: u32,      // channels
    s: u32,      // spatial size per channel
    alpha: f32,  // LeakyReLU slope
    div: u32,    // S for one slope per channel, 1 for one slope per element of a sample
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

const WG: u32 = 256u;
override ACCUMULATE: bool = false;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;
@group(0) @binding(3) var<storage, read> alpha: array<f32>;
@group(0) @binding(4) var<storage, read_write> dx: array<f32>;
@group(0) @binding(5) var<storage, read> dy: array<f32>;
@group(0) @binding(6) var<storage, read_write> dalpha: array<f32>;

fn alpha_index(i: u32) -> u32 {
    return (i % (p.c * p.s)) / p.div;
}

@compute @workgroup_size(WG)
fn relu_forward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat(gid, nwg);
    if (i >= p.n) { return; }
    y[i] = max(x[i], 0.0);
}

// dx = dy where x > 0, else 0.
@compute @workgroup_size(WG)
fn relu_backward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat(gid, nwg);
    if (i >= p.n) { return; }
    dx[i] = select(0.0, dy[i], x[i] > 0.0);
}

@compute @workgroup_size(WG)
fn leaky_relu_forward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat(gid, nwg);
    if (i >= p.n) { return; }
    let v = x[i];
    y[i] = select(p.alpha * v, v, v > 0.0);
}

// dx = dy * (x > 0 ? 1 : alpha).
@compute @workgroup_size(WG)
fn leaky_relu_backward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat(gid, nwg);
    if (i >= p.n) { return; }
    dx[i] = select(p.alpha * dy[i], dy[i], x[i] > 0.0);
}

@compute @workgroup_size(WG)
fn prelu_forward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat(gid, nwg);
    if (i >= p.n) { return; }
    let a = alpha[alpha_index(i)];
    let v = x[i];
    y[i] = select(a * v, v, v > 0.0);
}

// dx = dy * (x > 0 ? 1 : alpha[c]).
@compute @workgroup_size(WG)
fn prelu_backward_input(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat(gid, nwg);
    if (i >= p.n) { return; }
    let a = alpha[alpha_index(i)];
    dx[i] = select(a * dy[i], dy[i], x[i] > 0.0);
}

// dalpha[c] = sum over n, s of dy * x where x <= 0.
// One workgroup per channel (gather, no atomics): each invocation strides over the
// channel's N*S elements, then a tree reduction in workgroup memory.
var<workgroup> partial: array<f32, WG>;

@compute @workgroup_size(WG)
fn prelu_backward_alpha(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let c = wid.x;
    let per_channel = p.n / p.c;  // N*S
    var acc = 0.0;
    for (var k = lid.x; k < per_channel; k += WG) {
        let nn = k / p.s;
        let i = (nn * p.c + c) * p.s + k % p.s;
        acc += select(dy[i] * x[i], 0.0, x[i] > 0.0);
    }
    partial[lid.x] = acc;
    workgroupBarrier();
    for (var stride = WG / 2u; stride > 0u; stride /= 2u) {
        if (lid.x < stride) {
            partial[lid.x] += partial[lid.x + stride];
        }
        workgroupBarrier();
    }
    if (lid.x == 0u) {
        dalpha[c] = select(0.0, dalpha[c], ACCUMULATE) + partial[0];
    }
}

// Per-element PReLU: dalpha[j] = sum over n of dy * x where x <= 0, j in [0, C*S).
// One invocation per slope, looping over the batch (gather, no atomics).
@compute @workgroup_size(WG)
fn prelu_backward_alpha_elementwise(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let j = flat(gid, nwg);
    let per_sample = p.c * p.s;
    if (j >= per_sample) { return; }
    var acc = 0.0;
    for (var i = j; i < p.n; i += per_sample) {
        acc += select(dy[i] * x[i], 0.0, x[i] > 0.0);
    }
    dalpha[j] = select(0.0, dalpha[j], ACCUMULATE) + acc;
}

// ---- vec4 variants (entry names end in 4) ----
// One invocation per 4 consecutive elements, used when N*C*S % 4 == 0 and the 4 share their
// slope index pattern (per-channel slopes: S % 4 == 0; per-element slopes: C*S % 4 == 0).
// On lavapipe every storage access is a per-lane loop and an index division 8 scalar
// divisions per vector: one vec4 access and one division per 4 elements is ~3x cheaper.
// Same outputs and overwrite / ACCUMULATE rules as the scalar kernels. Per-channel PReLU
// reads `alpha`, per-element PReLU `alpha4`: bind the slope tensor to both.
@group(0) @binding(7) var<storage, read> x4: array<vec4<f32>>;
@group(0) @binding(8) var<storage, read_write> y4: array<vec4<f32>>;
@group(0) @binding(9) var<storage, read> alpha4: array<vec4<f32>>;
@group(0) @binding(10) var<storage, read_write> dx4: array<vec4<f32>>;
@group(0) @binding(11) var<storage, read> dy4: array<vec4<f32>>;

// Slopes of vec4 i (elements 4i .. 4i + 4).
fn slope4(i: u32) -> vec4<f32> {
    if (p.div == 1u) {
        return alpha4[i % (p.c * p.s / 4u)];
    }
    return vec4<f32>(alpha[((i * 4u) / p.s) % p.c]);
}

@compute @workgroup_size(WG)
fn relu_forward4(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat(gid, nwg);
    if (i >= p.n / 4u) { return; }
    y4[i] = max(x4[i], vec4<f32>(0.0));
}

@compute @workgroup_size(WG)
fn relu_backward4(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat(gid, nwg);
    if (i >= p.n / 4u) { return; }
    dx4[i] = select(vec4<f32>(0.0), dy4[i], x4[i] > vec4<f32>(0.0));
}

@compute @workgroup_size(WG)
fn leaky_relu_forward4(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat(gid, nwg);
    if (i >= p.n / 4u) { return; }
    let v = x4[i];
    y4[i] = select(p.alpha * v, v, v > vec4<f32>(0.0));
}

@compute @workgroup_size(WG)
fn leaky_relu_backward4(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat(gid, nwg);
    if (i >= p.n / 4u) { return; }
    let g = dy4[i];
    dx4[i] = select(p.alpha * g, g, x4[i] > vec4<f32>(0.0));
}

@compute @workgroup_size(WG)
fn prelu_forward4(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat(gid, nwg);
    if (i >= p.n / 4u) { return; }
    let v = x4[i];
    y4[i] = select(slope4(i) * v, v, v > vec4<f32>(0.0));
}

@compute @workgroup_size(WG)
fn prelu_backward_input4(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat(gid, nwg);
    if (i >= p.n / 4u) { return; }
    let g = dy4[i];
    dx4[i] = select(slope4(i) * g, g, x4[i] > vec4<f32>(0.0));
}

// Per-element PReLU, 4 slopes per invocation: dalpha4[j] = sum over n of dy * x where x <= 0.
@group(0) @binding(12) var<storage, read_write> dalpha4: array<vec4<f32>>;

@compute @workgroup_size(WG)
fn prelu_backward_alpha_elementwise4(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let j = flat(gid, nwg);
    let per_sample = p.c * p.s / 4u;
    if (j >= per_sample) { return; }
    var acc = vec4<f32>(0.0);
    for (var i = j; i < p.n / 4u; i += per_sample) {
        let v = x4[i];
        acc += select(dy4[i] * v, vec4<f32>(0.0), v > vec4<f32>(0.0));
    }
    dalpha4[j] = select(vec4<f32>(0.0), dalpha4[j], ACCUMULATE) + acc;
}
