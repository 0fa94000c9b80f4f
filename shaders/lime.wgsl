// LIME perturbations: copies of one image with some superpixels switched off, written
// straight into the network's input batch.
//
// Shapes: out [B, C, H, W]; image, fill [C, H, W] (fill: what a switched-off superpixel
// shows, prepared by the caller: the segment's mean, the image mean, a blurred copy or a
// constant); segments [H, W] u32 superpixel ids in 0..K; masks [B, K] u32 (nonzero = on).
// out[b, c, y, x] = masks[b, segments[y, x]] != 0 ? image[c, y, x] : fill[c, y, x]
// (a selection, no arithmetic: bit-exact against the f64 reference).
// One invocation per output element, 1-D index over a 2-D grid when B*C*H*W exceeds
// max_compute_workgroups_per_dimension * WG (Gpu::groups_1d). Overwrites out.

struct Params {
    n: u32,    // B*C*H*W output elements
    chw: u32,  // C*H*W per image
    hw: u32,   // H*W per channel
    k: u32,    // superpixels
}

const WG: u32 = 256u;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> image: array<f32>;
@group(0) @binding(2) var<storage, read> fill: array<f32>;
@group(0) @binding(3) var<storage, read> segments: array<u32>;
@group(0) @binding(4) var<storage, read> masks: array<u32>;
@group(0) @binding(5) var<storage, read_write> out: array<f32>;

@compute @workgroup_size(WG)
fn lime_perturb(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat(gid, nwg);
    if (i >= p.n) { return; }
    let b = i / p.chw;
    let r = i - b * p.chw;
    let seg = segments[r % p.hw];
    let on = masks[b * p.k + seg] != 0u;
    out[i] = select(fill[r], image[r], on);
}
