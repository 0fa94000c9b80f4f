// SmoothGrad and Integrated Gradients on pixel batches: the perturbed copies of a chunk of
// images written straight into the network's input batch, and the batch's input gradients
// gathered into one sum per image.
//
// Shapes: L = C*H*W values per image; M images in the chunk, x [M, L]; S copies per image
// (SmoothGrad samples, IG steps). Copies are numbered over the chunk, r in 0..total
// (total = m*S for the chunk's m <= M real images): image i = r / S, step k = r % S.
// A batch is B rows; row j holds copy r = first + j, clamped to total - 1 (the last batch
// is padded by repeating the last copy). out, g: [B, L]; acc: [M, L]; b: [L]; sigma: [M].
//   saliency_noise:       out[j, p] = x[i, p] + sigma[i] * z
//                           key = pcg(pcg(seed) ^ ((image0 + i) * S + k))   (a global copy id)
//                           h1  = pcg(key ^ pcg(2p)),  h2 = pcg(key ^ pcg(2p + 1))
//                           u1  = ((h1 >> 8) + 1) * 2^-24 in (0, 1],  u2 = (h2 >> 8) * 2^-24
//                           z   = sqrt(-2 ln u1) * cos(2 pi u2)            (Box-Muller)
//                           (src/reference/saliency.rs implements the same hash bit for bit)
//   saliency_interpolate: out[j, p] = b[p] + a_k * (x[i, p] - b[p]),  a_k = (k + 0.5) / S
//                           (midpoint rule of the IG path integral)
//   saliency_accumulate:  acc[i, p] (+)= s[i, p] * sum_{rows j of image i in this batch} g[j, p]
//                           s = weight (SmoothGrad: 1/S), or weight * (x[i, p] - b[p]) (IG)
// noise / interpolate: one invocation per element of out (B*L), overwrite out.
// accumulate: one invocation per element of acc (M*L), gathering over the batch's rows
// (no atomics); images without a row in this batch return untouched. It OVERWRITES acc[i]
// in the batch that holds image i's first copy (r = i*S) and ADDS in later batches, so a
// chunk needs no zeroing however its copies fall across batches.
// 1-D index laid out over a 2-D grid when the count exceeds max_compute_workgroups_per_dimension *
// WG (see Gpu::groups_1d).

struct Params {
    len: u32,      // L
    copies: u32,   // S
    rows: u32,     // B
    images: u32,   // M
    first: u32,    // copy of batch row 0; rewritten by the host before each batch
    total: u32,    // copies in the chunk (m*S); rewritten per chunk
    image0: u32,   // index of the chunk's first image among all explained; rewritten per chunk
    seed: u32,
    weight: f32,   // accumulate: 1/S
    ig: u32,       // accumulate: 1 multiplies by (x - b)
    _pad0: u32,
    _pad1: u32,
}

const WG: u32 = 256u;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> sigma: array<f32>;
@group(0) @binding(3) var<storage, read> b: array<f32>;
@group(0) @binding(4) var<storage, read_write> out: array<f32>;
@group(0) @binding(5) var<storage, read> g: array<f32>;
@group(0) @binding(6) var<storage, read_write> acc: array<f32>;

// The copy of batch row j (padded rows repeat the chunk's last copy).
fn copy_of(j: u32) -> u32 {
    return min(p.first + j, p.total - 1u);
}

@compute @workgroup_size(WG)
fn saliency_noise(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let e = flat(gid, nwg);
    if (e >= p.rows * p.len) { return; }
    let j = e / p.len;
    let q = e - j * p.len;
    let r = copy_of(j);
    let i = r / p.copies;
    let k = r - i * p.copies;
    let key = pcg(pcg(p.seed) ^ ((p.image0 + i) * p.copies + k));
    let h1 = pcg(key ^ pcg(2u * q));
    let h2 = pcg(key ^ pcg(2u * q + 1u));
    let u1 = f32((h1 >> 8u) + 1u) * 5.9604644775390625e-8;  // 2^-24
    let u2 = f32(h2 >> 8u) * 5.9604644775390625e-8;
    let z = sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
    out[e] = x[i * p.len + q] + sigma[i] * z;
}

@compute @workgroup_size(WG)
fn saliency_interpolate(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let e = flat(gid, nwg);
    if (e >= p.rows * p.len) { return; }
    let j = e / p.len;
    let q = e - j * p.len;
    let r = copy_of(j);
    let i = r / p.copies;
    let k = r - i * p.copies;
    let a = (f32(k) + 0.5) / f32(p.copies);
    let base = b[q];
    out[e] = base + a * (x[i * p.len + q] - base);
}

@compute @workgroup_size(WG)
fn saliency_accumulate(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let e = flat(gid, nwg);
    if (e >= p.images * p.len) { return; }
    let i = e / p.len;
    let q = e - i * p.len;
    // Image i's copies [i*S, (i+1)*S) intersected with this batch's real copies
    // [first, min(first + B, total)).
    let lo = max(i * p.copies, p.first);
    let hi = min(min((i + 1u) * p.copies, p.first + p.rows), p.total);
    if (lo >= hi) { return; }
    var s = 0.0;
    for (var r = lo; r < hi; r++) {
        s += g[(r - p.first) * p.len + q];
    }
    var scale = p.weight;
    if (p.ig != 0u) {
        scale *= x[e] - b[q];
    }
    var prev = 0.0;
    if (i * p.copies < p.first) {
        prev = acc[e];
    }
    acc[e] = prev + scale * s;
}
