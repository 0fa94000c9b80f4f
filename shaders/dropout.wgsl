// Dropout (inverted), with the mask drawn from a counter-based hash: no mask buffer, and the
// backward recomputes the forward's mask from the same seed and element index.
//
// Shapes: x, y, dx, dy are any activation shape ([N, C, H, W] or [N, F]) flattened to n
// elements; i is the flat row-major index.
//   h    = pcg(pcg(i) ^ pcg(seed))                 (u32, wrapping; src/reference/dropout.rs
//                                                   implements the same hash bit for bit)
//   u    = (h >> 8) * 2^-24                        (uniform in [0, 1), exact in f32)
//   keep = u >= rate
//   dropout_forward:  y  = keep ? x  * scale : 0   (scale = 1 / (1 - rate), from the host)
//   dropout_backward: dx = keep ? dy * scale : 0
//   dropout_copy:     y  = x                       (inference: identity, same buffer layout)
// One invocation per element, 1-D index laid out over a 2-D grid when n exceeds
// max_compute_workgroups_per_dimension * WG (see Gpu::groups_1d).
// Every kernel overwrites its output.

struct Params {
    n: u32,       // elements
    seed: u32,    // rewritten by the host every training step (Dropout::set_seed)
    rate: f32,    // drop probability in [0, 1)
    scale: f32,   // 1 / (1 - rate)
}

const WG: u32 = 256u;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;
@group(0) @binding(3) var<storage, read_write> dx: array<f32>;
@group(0) @binding(4) var<storage, read> dy: array<f32>;

// The mask (shaders/prelude.wgsl).
fn keep(i: u32) -> bool {
    return dropout_keep(i, p.seed, p.rate);
}

@compute @workgroup_size(WG)
fn dropout_forward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat(gid, nwg);
    if (i >= p.n) { return; }
    y[i] = select(0.0, x[i] * p.scale, keep(i));
}

@compute @workgroup_size(WG)
fn dropout_backward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat(gid, nwg);
    if (i >= p.n) { return; }
    dx[i] = select(0.0, dy[i] * p.scale, keep(i));
}

@compute @workgroup_size(WG)
fn dropout_copy(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat(gid, nwg);
    if (i >= p.n) { return; }
    y[i] = x[i];
}
