// Random affine augmentation of a batch of images, as Keras' ImageDataGenerator(
// rotation_range, width_shift_range, height_shift_range, zoom_range, horizontal_flip,
// fill_mode) with interpolation order 1. Per-sample parameters come from a counter-based
// hash of (seed, sample, k): no parameter buffer, every pixel recomputes its sample's draws.
//
// Shapes: x, y [N, C, H, W]; draws [N, 6]. Per sample n (all C channels share it):
//   key    = pcg(pcg(seed) ^ n)
//   h_k    = pcg(key ^ pcg(k))                        k = 0..5 (src/reference/augment.rs
//                                                       implements the same bit for bit)
//   v_k    = (h_k >> 8) * 2^-23 - 1                    uniform in [-1, 1), exact in f32
//   draw 0: angle_deg = rotation     * v_0
//   draw 1: sx        = width_shift  * v_1             (fraction of W)
//   draw 2: sy        = height_shift * v_2             (fraction of H)
//   draw 3: dzx       = zoom * v_3                     (zoom factor 1 + dzx on columns)
//   draw 4: dzy       = zoom * v_4                     (zoom factor 1 + dzy on rows; the axes
//                                                       are drawn independently, as Keras)
//   draw 5: flip      = flip_on && v_5 < 0             (probability 0.5)
// Each draw is one correctly rounded f32 product, so GPU and reference draws agree exactly.
// Inverse map of output pixel (row, col) about the centre c = ((H-1)/2, (W-1)/2):
//   p   = (row - cy, flip ? cx - col : col - cx)
//   q   = (p.r * (1 + dzy) + sy * H,  p.c * (1 + dzx) + sx * W)
//   src = c + R q,  R = [[cos, -sin], [sin, cos]] on (row, col)   (Keras' matrix)
//   y   = bilinear(x, src); taps outside the image: fill 0 = nearest (clamp to the edge,
//         Keras' default), fill 1 = constant 0
// augment_forward: one invocation per element of y (1-D over N*C*H*W). Overwrites y.
// augment_draws:   one invocation per sample; writes its 6 draws (flip as 0 / 1) to
//                  draws[n, :] for tests. Overwrites draws.

struct Params {
    n: u32,             // N*C*H*W
    c: u32,
    h: u32,
    w: u32,
    seed: u32,          // rewritten by the host every step (Augment::set_seed)
    rotation: f32,      // degrees, in [0, 180]
    width_shift: f32,   // fraction of W, in [0, 1)
    height_shift: f32,  // fraction of H, in [0, 1)
    zoom: f32,          // in [0, 1): factors in [1 - zoom, 1 + zoom)
    flip: u32,          // 1: horizontal flip with probability 0.5
    fill: u32,          // 0 nearest, 1 constant 0
    batch: u32,         // N
}

const WG: u32 = 256u;
const DEG: f32 = 0.017453292519943295;  // pi / 180

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;
@group(0) @binding(3) var<storage, read_write> draws: array<f32>;

// Uniform in [-1, 1): 24 hash bits, k * 2^-23 - 1 is exact in f32.
fn sym(key: u32, k: u32) -> f32 {
    let h = pcg(key ^ pcg(k));
    return f32(h >> 8u) * 1.1920928955078125e-7 - 1.0;  // 2^-23
}

struct Draws {
    angle_deg: f32,
    sx: f32,
    sy: f32,
    dzx: f32,
    dzy: f32,
    flip: bool,
}

fn draw(sample: u32) -> Draws {
    let key = pcg(pcg(p.seed) ^ sample);
    var d: Draws;
    d.angle_deg = p.rotation * sym(key, 0u);
    d.sx = p.width_shift * sym(key, 1u);
    d.sy = p.height_shift * sym(key, 2u);
    d.dzx = p.zoom * sym(key, 3u);
    d.dzy = p.zoom * sym(key, 4u);
    d.flip = p.flip != 0u && sym(key, 5u) < 0.0;
    return d;
}

// x[base + r * W + c], or the fill for a tap outside the image.
fn tap(base: u32, r: i32, c: i32) -> f32 {
    let hi = vec2<i32>(i32(p.h) - 1, i32(p.w) - 1);
    if (p.fill == 0u) {
        let rc = clamp(vec2<i32>(r, c), vec2<i32>(0), hi);
        return x[base + u32(rc.x) * p.w + u32(rc.y)];
    }
    if (r < 0 || c < 0 || r > hi.x || c > hi.y) { return 0.0; }
    return x[base + u32(r) * p.w + u32(c)];
}

@compute @workgroup_size(WG)
fn augment_forward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat(gid, nwg);
    if (i >= p.n) { return; }
    let col = i % p.w;
    let t = i / p.w;
    let row = t % p.h;
    let plane = t / p.h;          // n * C + channel
    let sample = plane / p.c;
    let d = draw(sample);

    let hf = f32(p.h);
    let wf = f32(p.w);
    let cy = (hf - 1.0) * 0.5;
    let cx = (wf - 1.0) * 0.5;
    var pc = f32(col) - cx;
    if (d.flip) { pc = -pc; }
    let pr = f32(row) - cy;
    let qr = pr * (1.0 + d.dzy) + d.sy * hf;
    let qc = pc * (1.0 + d.dzx) + d.sx * wf;
    // Angle 0 gives exactly (1, 0), so an identity transform reproduces x bit for bit
    // whatever the device's cos / sin return.
    let a = d.angle_deg * DEG;
    var cs = vec2<f32>(1.0, 0.0);
    if (a != 0.0) { cs = vec2<f32>(cos(a), sin(a)); }
    let sr = cy + cs.x * qr - cs.y * qc;
    let sc = cx + cs.y * qr + cs.x * qc;

    let r0 = floor(sr);
    let c0 = floor(sc);
    let fr = sr - r0;
    let fc = sc - c0;
    let ir = i32(r0);
    let ic = i32(c0);
    let base = plane * p.h * p.w;
    let top = (1.0 - fc) * tap(base, ir, ic) + fc * tap(base, ir, ic + 1);
    let bot = (1.0 - fc) * tap(base, ir + 1, ic) + fc * tap(base, ir + 1, ic + 1);
    y[i] = (1.0 - fr) * top + fr * bot;
}

@compute @workgroup_size(WG)
fn augment_draws(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let n = flat(gid, nwg);
    if (n >= p.batch) { return; }
    let d = draw(n);
    let o = n * 6u;
    draws[o] = d.angle_deg;
    draws[o + 1u] = d.sx;
    draws[o + 2u] = d.sy;
    draws[o + 3u] = d.dzx;
    draws[o + 4u] = d.dzy;
    draws[o + 5u] = select(0.0, 1.0, d.flip);
}
