// Deletion and insertion curves (Petsiuk et al. 2018): copies of a chunk of images with the
// k/S most important pixels (by an attribution's order) removed, or only those kept,
// written straight into the network's input batch.
//
// Shapes: x, fill [M, C, H, W] (the chunk's images and what a removed pixel shows);
// rank [M, H*W] u32: rank[i, p] = position of pixel p in image i's order (0 = most
// important; all channels of a pixel go together); out [B, C, H, W] (the input batch).
// Copies are numbered over the chunk, r in 0..total (total = m*(S+1) for its m <= M real
// images): image i = r / (S+1), step k = r % (S+1), pixels affected n_k = k*H*W / S
// (integer division: n_0 = 0, n_S = H*W). Batch row j holds copy r = first + j, clamped
// to total - 1 (the last batch is padded by repeating the last copy).
//   faithfulness_perturb, INSERT = false (deletion):
//     out[j, c, p] = rank[i, p] < n_k ? fill[i, c, p] : x[i, c, p]
//   INSERT = true (insertion: start from fill, add pixels in order):
//     out[j, c, p] = rank[i, p] < n_k ? x[i, c, p] : fill[i, c, p]
// A selection, no arithmetic: bit-exact against the f64 reference. One invocation per
// element of out (n = B*C*H*W); overwrites out. 1-D index laid out over a 2-D grid when n
// exceeds max_compute_workgroups_per_dimension * WG (see Gpu::groups_1d).

struct Params {
    n: u32,        // B*C*H*W
    len: u32,      // C*H*W
    hw: u32,       // H*W
    steps: u32,    // S
    first: u32,    // copy of batch row 0; rewritten by the host before each batch
    total: u32,    // copies in the chunk (m*(S+1)); rewritten per chunk
    _pad0: u32,
    _pad1: u32,
}

const WG: u32 = 256u;
override INSERT: bool = false;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> fill: array<f32>;
@group(0) @binding(3) var<storage, read> rank: array<u32>;
@group(0) @binding(4) var<storage, read_write> out: array<f32>;

@compute @workgroup_size(WG)
fn faithfulness_perturb(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let e = flat(gid, nwg);
    if (e >= p.n) { return; }
    let j = e / p.len;
    let q = e - j * p.len;        // c*H*W + pixel
    let r = min(p.first + j, p.total - 1u);
    let i = r / (p.steps + 1u);
    let k = r - i * (p.steps + 1u);
    let affected = rank[i * p.hw + q % p.hw] < k * p.hw / p.steps;
    let src = i * p.len + q;
    out[e] = select(x[src], fill[src], affected != INSERT);
}
