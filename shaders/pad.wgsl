// Zero padding as a layer (Keras ZeroPadding2D).
//
// Shapes: x, dx [N, C, H, W]; y, dy [N, C, OH, OW] with OH = PT + H + PB, OW = PL + W + PR.
// y[n, c, oy, ox] = x[n, c, oy - PT, ox - PL] inside, 0 in the border.
// dx[n, c, ih, iw] = dy[n, c, ih + PT, iw + PL] (a crop).
// One invocation per output element (forward) or dx element (backward), 1-D index laid out
// over a 2-D grid when the count exceeds max_compute_workgroups_per_dimension * WG (see
// Gpu::groups_1d). Both kernels overwrite their output.

struct Params {
    n_out: u32,  // N*C*OH*OW
    n_in: u32,   // N*C*H*W
    h: u32,
    w: u32,
    oh: u32,
    ow: u32,
    pt: u32,     // rows added on top
    pl: u32,     // columns added on the left
}

const WG: u32 = 256u;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;
@group(0) @binding(3) var<storage, read_write> dx: array<f32>;
@group(0) @binding(4) var<storage, read> dy: array<f32>;

@compute @workgroup_size(WG)
fn pad_forward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat(gid, nwg);
    if (i >= p.n_out) { return; }
    let ohw = p.oh * p.ow;
    let plane = i / ohw;
    let o = i % ohw;
    // Unsigned: oy < PT wraps to a huge value and fails the < H test, as intended.
    let ih = o / p.ow - p.pt;
    let iw = o % p.ow - p.pl;
    var v = 0.0;
    if (ih < p.h && iw < p.w) {
        v = x[(plane * p.h + ih) * p.w + iw];
    }
    y[i] = v;
}

@compute @workgroup_size(WG)
fn pad_backward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat(gid, nwg);
    if (i >= p.n_in) { return; }
    let hw = p.h * p.w;
    let plane = i / hw;
    let idx = i % hw;
    dx[i] = dy[(plane * p.oh + idx / p.w + p.pt) * p.ow + idx % p.w + p.pl];
}
