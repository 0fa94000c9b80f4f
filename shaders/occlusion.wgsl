// Occlusion sensitivity: copies of a chunk of images with one square patch each set to a
// fill value, written straight into the network's input batch.
//
// Shapes: x [M, C, H, W] (the chunk's images), out [B, C, H, W] (the input batch).
// Patch positions: P = NY * NX per image, position pos = py * NX + px, top-left corner
//   y0 = min(py * stride, H - size),  x0 = min(px * stride, W - size)
// (the last row / column of positions is clamped inside the image, so the patches cover it).
// Copies are numbered over the chunk, r in 0..total (total = m*P for its m <= M real
// images): image i = r / P, position pos = r % P. Batch row j holds copy r = first + j,
// clamped to total - 1 (the last batch is padded by repeating the last copy).
//   occlusion_patch: out[j, c, y, x] = fill                 if y0 <= y < y0 + size and
//                                                              x0 <= x < x0 + size
//                                      x[i, c, y, x]        otherwise
// One invocation per element of out (n = B*C*H*W); overwrites out. 1-D index laid out over
// a 2-D grid when n exceeds max_compute_workgroups_per_dimension * WG (see Gpu::groups_1d).

struct Params {
    n: u32,        // B*C*H*W
    c: u32,
    h: u32,
    w: u32,
    size: u32,     // patch side
    stride: u32,
    nx: u32,       // positions per row
    positions: u32,// P = NY * NX
    first: u32,    // copy of batch row 0; rewritten by the host before each batch
    total: u32,    // copies in the chunk (m*P); rewritten per chunk
    fill: f32,
    _pad: u32,
}

const WG: u32 = 256u;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;

@compute @workgroup_size(WG)
fn occlusion_patch(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let e = flat(gid, nwg);
    if (e >= p.n) { return; }
    let len = p.c * p.h * p.w;
    let j = e / len;
    let q = e - j * len;          // c*H*W + y*W + x
    let yx = q % (p.h * p.w);
    let y = yx / p.w;
    let xx = yx - y * p.w;
    let r = min(p.first + j, p.total - 1u);
    let i = r / p.positions;
    let pos = r - i * p.positions;
    let py = pos / p.nx;
    let px = pos - py * p.nx;
    let y0 = min(py * p.stride, p.h - p.size);
    let x0 = min(px * p.stride, p.w - p.size);
    let inside = y >= y0 && y < y0 + p.size && xx >= x0 && xx < x0 + p.size;
    out[e] = select(x[i * len + q], p.fill, inside);
}
