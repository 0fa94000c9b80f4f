// Filter ascent (activation maximization): the image updates of gradient ascent on a
// filter's mean activation, with the regularizers of Lucid / tf-keras-vis (L2 decay, jitter,
// periodic Gaussian blur, total variation, octaves, gradient normalization). Image b of a
// batch maximizes filter filters[b]; every kernel works on the whole batch at once.
//
// Shapes: N images (one per filter), C input channels, H x W the model's input size;
// x, y, g, t, dx, dy are image batches [N, C, H', W'] flattened (H' x W' = the image's own
// size: the model's, or an octave's smaller one); shift [N, 2] i32 (dy, dx pixels);
// inv_rms [N]; filters [N] u32; seed and act are the chosen layer's output [N, K, S]
// (K filters / units, S = its spatial size, 1 after a dense layer).
//
//   ascent_init:        y[b, e] = center + amp * (2u - 1), u = (pcg(pcg(e) ^ pcg(seed ^
//                       pcg(filters[b]))) >> 8) * 2^-24 (dropout's hash; e the index inside
//                       the image, so a filter's start does not depend on its batch)
//   ascent_seed:        seed[b, k, s] = k == filters[b] ? 1 / S : 0
//                       (d mean_s act[b, filters[b], s] / d act: the layer's output gradient)
//   ascent_roll:        y[b, c, i, j] = x[b, c, (i - sy) mod H, (j - sx) mod W], (sy, sx) =
//                       sign * shift[b] (numpy.roll by the shift; sign -1 rolls back)
//   ascent_resize:      y = bilinear resize of x from (src_h, src_w) to (h, w), pixel centres
//                       aligned (align_corners=False), source coordinate clamped to the image
//                       (as render::resize_bilinear)
//   ascent_resize_backward: dx = adjoint of ascent_resize applied to dy: each source pixel
//                       gathers the output pixels its two bilinear taps per axis feed
//   ascent_inv_rms:     inv_rms[b] = 1 / (sqrt(mean over image b of g^2) + eps)
//   ascent_tv_grad:     t = d TV / d x, TV = sum over planes of |x[i, j+1] - x[i, j]| +
//                       |x[i+1, j] - x[i, j]| (anisotropic, tf.image.total_variation), with
//                       sign(0) = 0
//   ascent_step:        x = clamp(x + lr * (g * r - decay * (x - center) - tv * t), lo, hi),
//                       r = inv_rms[b] when normalizing, else 1
//   ascent_blur_h/_v:   y = x convolved along W (h) or H (v) with exp(-k^2 / (2 sigma^2)),
//                       |k| <= radius, normalized to sum 1, edge pixels repeated
//   ascent_filter_mean: out[b] = mean over s of act[b, filters[b], s]
// Element kernels: one invocation per output element, 1-D index laid out over a 2-D grid
// when needed (see Gpu::groups_1d). ascent_inv_rms and ascent_filter_mean: one workgroup
// per image (2-D grid of workgroups folded the same way), a strided loop and a tree
// reduction in workgroup memory. Every kernel overwrites its output (ascent_step updates x
// in place: each invocation reads and writes only its own element).

struct Params {
    n: u32,        // output elements (element kernels) or images (per-image kernels)
    batch: u32,    // N
    c: u32,        // channels per image (C), or the layer's K for seed / filter_mean
    h: u32,        // output image height
    w: u32,        // output image width
    s: u32,        // per-channel size: h * w, or the layer's S for seed / filter_mean
    src_h: u32,    // ascent_resize source height
    src_w: u32,    // ascent_resize source width
    seed: u32,     // ascent_init
    sign: i32,     // ascent_roll: +1 rolls by the shift, -1 back
    radius: u32,   // blur half-width
    normalize: u32,// ascent_step: 1 scales g by inv_rms[b]
    lr: f32,
    decay: f32,    // L2 decay towards center
    tv: f32,       // total-variation weight
    center: f32,   // init mean and decay target
    amp: f32,      // init noise half-range
    lo: f32,       // clamp range of the step
    hi: f32,
    sigma: f32,    // blur
    eps: f32,      // inv_rms
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

const WG: u32 = 256u;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;
@group(0) @binding(3) var<storage, read> g: array<f32>;
@group(0) @binding(4) var<storage, read> shift: array<i32>;
@group(0) @binding(5) var<storage, read> filters: array<u32>;
@group(0) @binding(6) var<storage, read_write> stat: array<f32>;
@group(0) @binding(7) var<storage, read> inv_rms: array<f32>;
@group(0) @binding(8) var<storage, read> t: array<f32>;
@group(0) @binding(9) var<storage, read_write> img: array<f32>;

var<workgroup> partial: array<f32, WG>;

@compute @workgroup_size(WG)
fn ascent_init(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat(gid, nwg);
    if (i >= p.n) { return; }
    let u = f32(pcg(pcg(i % p.s) ^ pcg(p.seed ^ pcg(filters[i / p.s]))) >> 8u) * 5.9604644775390625e-8;
    y[i] = p.center + p.amp * (2.0 * u - 1.0);
}

@compute @workgroup_size(WG)
fn ascent_seed(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat(gid, nwg);
    if (i >= p.n) { return; }
    let b = i / (p.c * p.s);
    let k = (i / p.s) % p.c;
    y[i] = select(0.0, 1.0 / f32(p.s), k == filters[b]);
}

fn wrap(v: i32, len: u32) -> u32 {
    let m = v % i32(len);
    return u32(select(m, m + i32(len), m < 0));
}

@compute @workgroup_size(WG)
fn ascent_roll(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat(gid, nwg);
    if (i >= p.n) { return; }
    let plane = i / p.s;
    let b = plane / p.c;
    let r = (i % p.s) / p.w;
    let q = i % p.w;
    let sy = p.sign * shift[2u * b];
    let sx = p.sign * shift[2u * b + 1u];
    let src = plane * p.s + wrap(i32(r) - sy, p.h) * p.w + wrap(i32(q) - sx, p.w);
    y[i] = x[src];
}

// Source coordinate of output index o along an axis of source length len and output
// length out_len: (lower tap, upper tap, weight of the upper tap).
struct Taps {
    i0: u32,
    i1: u32,
    f: f32,
}

fn taps(o: u32, len: u32, out_len: u32) -> Taps {
    let v = clamp((f32(o) + 0.5) * f32(len) / f32(out_len) - 0.5, 0.0, f32(len - 1u));
    let i0 = u32(floor(v));
    return Taps(i0, min(i0 + 1u, len - 1u), v - f32(i0));
}

// Weight of source index i in output o's interpolation (both taps may be i at the edge).
fn tap_weight(tp: Taps, i: u32) -> f32 {
    return select(0.0, 1.0 - tp.f, tp.i0 == i) + select(0.0, tp.f, tp.i1 == i);
}

@compute @workgroup_size(WG)
fn ascent_resize(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat(gid, nwg);
    if (i >= p.n) { return; }
    let plane = i / p.s;
    let r = (i % p.s) / p.w;
    let q = i % p.w;
    let ty = taps(r, p.src_h, p.h);
    let tx = taps(q, p.src_w, p.w);
    let base = plane * p.src_h * p.src_w;
    let top = x[base + ty.i0 * p.src_w + tx.i0] * (1.0 - tx.f) + x[base + ty.i0 * p.src_w + tx.i1] * tx.f;
    let bot = x[base + ty.i1 * p.src_w + tx.i0] * (1.0 - tx.f) + x[base + ty.i1 * p.src_w + tx.i1] * tx.f;
    y[i] = top * (1.0 - ty.f) + bot * ty.f;
}

// Output rows (or columns) whose taps can reach source index i: the source coordinate lies
// in (i - 1, i + 1), i.e. o in ((i - 0.5) * out_len / len - 0.5, (i + 1.5) * out_len / len
// - 0.5); one extra on each side for rounding, clamped. Exact weights decide the rest.
fn reach(i: u32, len: u32, out_len: u32) -> vec2<u32> {
    let scale = f32(out_len) / f32(len);
    let lo = max(floor((f32(i) - 0.5) * scale - 1.5), 0.0);
    let hi = min(ceil((f32(i) + 1.5) * scale + 0.5), f32(out_len - 1u));
    return vec2<u32>(u32(lo), u32(hi));
}

// Here n counts the source (gradient output) elements; s = src_h * src_w.
@compute @workgroup_size(WG)
fn ascent_resize_backward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat(gid, nwg);
    if (i >= p.n) { return; }
    let plane = i / p.s;
    let r = (i % p.s) / p.src_w;
    let q = i % p.src_w;
    let ry = reach(r, p.src_h, p.h);
    let rx = reach(q, p.src_w, p.w);
    let base = plane * p.h * p.w;
    var acc = 0.0;
    for (var oy = ry.x; oy <= ry.y; oy++) {
        let wy = tap_weight(taps(oy, p.src_h, p.h), r);
        if (wy == 0.0) { continue; }
        var row = 0.0;
        for (var ox = rx.x; ox <= rx.y; ox++) {
            row += tap_weight(taps(ox, p.src_w, p.w), q) * g[base + oy * p.w + ox];
        }
        acc += wy * row;
    }
    y[i] = acc;
}

// n = images; s = C * H * W values per image.
@compute @workgroup_size(WG)
fn ascent_inv_rms(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let b = wid.x + wid.y * nwg.x;
    if (b >= p.n) { return; }
    var acc = 0.0;
    for (var k = lid.x; k < p.s; k += WG) {
        let v = g[b * p.s + k];
        acc += v * v;
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
        stat[b] = 1.0 / (sqrt(partial[0] / f32(p.s)) + p.eps);
    }
}

@compute @workgroup_size(WG)
fn ascent_tv_grad(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat(gid, nwg);
    if (i >= p.n) { return; }
    let r = (i % p.s) / p.w;
    let q = i % p.w;
    let v = x[i];
    var d = 0.0;
    if (q + 1u < p.w) { d -= sign(x[i + 1u] - v); }
    if (q > 0u) { d += sign(v - x[i - 1u]); }
    if (r + 1u < p.h) { d -= sign(x[i + p.w] - v); }
    if (r > 0u) { d += sign(v - x[i - p.w]); }
    y[i] = d;
}

// img is updated in place; s = C * H * W values per image.
@compute @workgroup_size(WG)
fn ascent_step(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat(gid, nwg);
    if (i >= p.n) { return; }
    let v = img[i];
    var scale = 1.0;
    if (p.normalize != 0u) { scale = inv_rms[i / p.s]; }
    let d = g[i] * scale - p.decay * (v - p.center) - p.tv * t[i];
    img[i] = clamp(v + p.lr * d, p.lo, p.hi);
}

fn gauss(k: i32) -> f32 {
    let fk = f32(k);
    return exp(-fk * fk / (2.0 * p.sigma * p.sigma));
}

@compute @workgroup_size(WG)
fn ascent_blur_h(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat(gid, nwg);
    if (i >= p.n) { return; }
    let row = i - i % p.w;
    let q = i32(i % p.w);
    let rad = i32(p.radius);
    var acc = 0.0;
    var norm = 0.0;
    for (var k = -rad; k <= rad; k++) {
        let wk = gauss(k);
        acc += wk * x[row + u32(clamp(q + k, 0, i32(p.w) - 1))];
        norm += wk;
    }
    y[i] = acc / norm;
}

@compute @workgroup_size(WG)
fn ascent_blur_v(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat(gid, nwg);
    if (i >= p.n) { return; }
    let base = (i / p.s) * p.s + i % p.w;
    let r = i32((i % p.s) / p.w);
    let rad = i32(p.radius);
    var acc = 0.0;
    var norm = 0.0;
    for (var k = -rad; k <= rad; k++) {
        let wk = gauss(k);
        acc += wk * x[base + u32(clamp(r + k, 0, i32(p.h) - 1)) * p.w];
        norm += wk;
    }
    y[i] = acc / norm;
}

// n = images; c = K, s = S of the layer.
@compute @workgroup_size(WG)
fn ascent_filter_mean(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let b = wid.x + wid.y * nwg.x;
    if (b >= p.n) { return; }
    let base = (b * p.c + filters[b]) * p.s;
    var acc = 0.0;
    for (var k = lid.x; k < p.s; k += WG) {
        acc += x[base + k];
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
        stat[b] = partial[0] / f32(p.s);
    }
}
