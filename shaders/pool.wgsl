// 2-D pooling: max (saves the argmax for backward) and average, any window / stride /
// padding.
//
// Shapes: x, dx [N, C, H, W]; y, dy, argmax [N, C, OH, OW]. argmax holds u32 h*W + w, the
// winner's index inside its (n, c) input plane. Window (KH, KW), stride (SH, SW), padding
// PT (top) / PL (left) before the input; bottom / right padding only shows in OH / OW.
// Window (oy, ox) covers padded rows [oy*SH, oy*SH + KH) and columns [ox*SW, ox*SW + KW);
// input row ih sits at padded row ih + PT. Padded positions never win a max and do not count
// in an average: the average divides by the window's in-bounds element count (Keras 'same').
// Every window holds at least one input element (Pool2d::new checks).
// Ties: the first element in row-major window scan order wins (strict >), as in the reference.
// dx (max) = sum over windows containing the element whose argmax is it, of dy.
// dx (avg) = sum over windows containing the element of dy / (window's in-bounds count).
// One invocation per output element (forward) or per dx element (backward: a gather over the
// windows that contain it, no atomics), 1-D index laid out over a 2-D grid when the count
// exceeds max_compute_workgroups_per_dimension * WG (see Gpu::groups_1d).
// Every kernel overwrites its output.

struct Params {
    n_out: u32,  // N*C*OH*OW
    n_in: u32,   // N*C*H*W
    h: u32,
    w: u32,
    oh: u32,
    ow: u32,
    kh: u32,
    kw: u32,
    sh: u32,
    sw: u32,
    pt: u32,     // padding before the first row
    pl: u32,     // padding before the first column
}

const WG: u32 = 256u;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;
@group(0) @binding(3) var<storage, read_write> argmax_out: array<u32>;
@group(0) @binding(4) var<storage, read_write> dx: array<f32>;
@group(0) @binding(5) var<storage, read> dy: array<f32>;
@group(0) @binding(6) var<storage, read> argmax_in: array<u32>;

// In-bounds input range [lo, hi) of the window starting at padded coordinate `start` with
// extent `k`, over an input of length `len` padded by `before`. Unsigned throughout.
fn span(start: u32, k: u32, before: u32, len: u32) -> vec2<u32> {
    let lo = max(start, before) - before;
    let hi = min(start + k, before + len) - before;
    return vec2<u32>(lo, hi);
}

// Outputs (along one axis) whose windows contain input coordinate `i`: inclusive [lo, hi];
// empty when lo > hi (a trailing row no Valid window reaches).
fn covering(i: u32, k: u32, s: u32, before: u32, nout: u32) -> vec2<u32> {
    let q = i + before;  // padded coordinate
    var lo = 0u;
    if (q + 1u > k) {
        lo = (q + 1u - k + s - 1u) / s;
    }
    let hi = min(q / s, nout - 1u);
    return vec2<u32>(lo, hi);
}

@compute @workgroup_size(WG)
fn max_pool_forward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat(gid, nwg);
    if (i >= p.n_out) { return; }
    let ohw = p.oh * p.ow;
    let plane = i / ohw;
    let o = i % ohw;
    let rows = span((o / p.ow) * p.sh, p.kh, p.pt, p.h);
    let cols = span((o % p.ow) * p.sw, p.kw, p.pl, p.w);
    let base = plane * p.h * p.w;
    var best_idx = rows.x * p.w + cols.x;
    var best = x[base + best_idx];
    for (var r = rows.x; r < rows.y; r++) {
        for (var c = cols.x; c < cols.y; c++) {
            let idx = r * p.w + c;
            let v = x[base + idx];
            if (v > best) {
                best = v;
                best_idx = idx;
            }
        }
    }
    y[i] = best;
    argmax_out[i] = best_idx;
}

@compute @workgroup_size(WG)
fn avg_pool_forward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat(gid, nwg);
    if (i >= p.n_out) { return; }
    let ohw = p.oh * p.ow;
    let plane = i / ohw;
    let o = i % ohw;
    let rows = span((o / p.ow) * p.sh, p.kh, p.pt, p.h);
    let cols = span((o % p.ow) * p.sw, p.kw, p.pl, p.w);
    let base = plane * p.h * p.w;
    var acc = 0.0;
    for (var r = rows.x; r < rows.y; r++) {
        for (var c = cols.x; c < cols.y; c++) {
            acc += x[base + r * p.w + c];
        }
    }
    y[i] = acc / f32((rows.y - rows.x) * (cols.y - cols.x));
}

// dx[n, c, ih, iw] = sum of dy[n, c, oy, ox] over windows containing (ih, iw) with
// argmax[n, c, oy, ox] == ih*W + iw. Overwrites dx.
@compute @workgroup_size(WG)
fn max_pool_backward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat(gid, nwg);
    if (i >= p.n_in) { return; }
    let hw = p.h * p.w;
    let plane = i / hw;
    let idx = i % hw;
    let oys = covering(idx / p.w, p.kh, p.sh, p.pt, p.oh);
    let oxs = covering(idx % p.w, p.kw, p.sw, p.pl, p.ow);
    let base = plane * p.oh * p.ow;
    var acc = 0.0;
    for (var oy = oys.x; oy <= oys.y; oy++) {
        for (var ox = oxs.x; ox <= oxs.y; ox++) {
            let o = base + oy * p.ow + ox;
            if (argmax_in[o] == idx) {
                acc += dy[o];
            }
        }
    }
    dx[i] = acc;
}

// dx[n, c, ih, iw] = sum of dy[n, c, oy, ox] / count(oy, ox) over windows containing
// (ih, iw), count = the window's in-bounds element count. Overwrites dx.
@compute @workgroup_size(WG)
fn avg_pool_backward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat(gid, nwg);
    if (i >= p.n_in) { return; }
    let hw = p.h * p.w;
    let plane = i / hw;
    let idx = i % hw;
    let oys = covering(idx / p.w, p.kh, p.sh, p.pt, p.oh);
    let oxs = covering(idx % p.w, p.kw, p.sw, p.pl, p.ow);
    let base = plane * p.oh * p.ow;
    var acc = 0.0;
    for (var oy = oys.x; oy <= oys.y; oy++) {
        let rows = span(oy * p.sh, p.kh, p.pt, p.h);
        for (var ox = oxs.x; ox <= oxs.y; ox++) {
            let cols = span(ox * p.sw, p.kw, p.pl, p.w);
            acc += dy[base + oy * p.ow + ox] / f32((rows.y - rows.x) * (cols.y - cols.x));
        }
    }
    dx[i] = acc;
}

// ---- 2x2 stride-2 max pooling without padding, H and W even ----
// Every input element lies in exactly one window, so backward is a scatter of one window per
// invocation with no overlap (no atomics, no gather loops). One invocation per output element;
// each window row is one vec2 load / store (x2, dx2 index = element index / 2; W even keeps
// the pairs aligned). Same argmax and tie rule as max_pool_forward. Overwrite y / dx.
@group(0) @binding(7) var<storage, read> x2: array<vec2<f32>>;
@group(0) @binding(8) var<storage, read_write> dx2: array<vec2<f32>>;

@compute @workgroup_size(WG)
fn max_pool2_forward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat(gid, nwg);
    if (i >= p.n_out) { return; }
    let ohw = p.oh * p.ow;
    let plane = i / ohw;
    let o = i % ohw;
    let oy = o / p.ow;
    let ox = o % p.ow;
    let top = (2u * oy) * p.w + 2u * ox;  // index of the window's first element in its plane
    let base = plane * p.h * p.w;
    let a = x2[(base + top) / 2u];
    let b = x2[(base + top + p.w) / 2u];
    var best = a.x;
    var best_idx = top;
    if (a.y > best) { best = a.y; best_idx = top + 1u; }
    if (b.x > best) { best = b.x; best_idx = top + p.w; }
    if (b.y > best) { best = b.y; best_idx = top + p.w + 1u; }
    y[i] = best;
    argmax_out[i] = best_idx;
}

@compute @workgroup_size(WG)
fn max_pool2_backward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat(gid, nwg);
    if (i >= p.n_out) { return; }
    let ohw = p.oh * p.ow;
    let plane = i / ohw;
    let o = i % ohw;
    let top = (2u * (o / p.ow)) * p.w + 2u * (o % p.ow);
    let base = plane * p.h * p.w;
    let g = dy[i];
    let k = argmax_in[i];
    dx2[(base + top) / 2u] = vec2<f32>(select(0.0, g, k == top), select(0.0, g, k == top + 1u));
    dx2[(base + top + p.w) / 2u] = vec2<f32>(select(0.0, g, k == top + p.w), select(0.0, g, k == top + p.w + 1u));
}
