// Dense layer GEMMs on cooperative matrices (tensor cores): f16 operands (rounded from the
// f32 tensors when staged in workgroup memory), f32 sums. x [N, I], W [O, I], b [O],
// y / dy [N, O]. The GEMM core is shaders/coop/gemm.wgsl; here every op is the strided
// GEMM C[GM, GN] = A[GM, GK] * B[GK, GN] with A[m, k] = src_a[m * SAM + k * SAK],
// B[k, n] = src_b[k * SBK + n * SBN] and C row-major [GM, GN]:
//   forward:          y  = x W^T (+ b)  GM = N, GN = O, GK = I  (A = x, B = W^T).
//   backward_input:   dx = dy W         GM = N, GN = I, GK = O  (A = dy, B = W).
//   backward_weight:  dW = dy^T x       GM = O, GN = I, GK = N  (A = dy^T, B = x).
// Split over the depth (few rows, long reductions): grid z = split s sums
// [s * KCHUNK, (s + 1) * KCHUNK). With one split dense_coop_gemm writes C itself: + b where
// p.bias, adding to it when ACCUMULATE; else it writes the partials part[s * GM * GN ..]
// and dense_coop_reduce sums them into C (+ b, ACCUMULATE).
// Grid of dense_coop_gemm: [column blocks, row blocks, splits]; reduce: 1-D (groups_1d, WG).
// Bindings by role: src_a / src_b the operands, bias (an alias of src_b without bias), dst
// the output (or the partials), part the partials (reduce).

override ACCUMULATE: bool = false;
const WG: u32 = 64u;

// One op per pipeline: the lanes' stepping order differs (see a_rows_fast ...).
override PASS: u32 = 0u;
const PASS_FORWARD: u32 = 0u;
const PASS_BACKWARD_INPUT: u32 = 1u;
const PASS_BACKWARD_WEIGHT: u32 = 2u;

struct D {
    gm: u32,
    gn: u32,
    gk: u32,
    kchunk: u32,  // depth per split (a multiple of BK)
    splits: u32,
    sam: u32,
    sak: u32,
    sbk: u32,
    sbn: u32,
    bias: u32,    // 1 adds b[n]
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<uniform> p: D;
@group(0) @binding(1) var<storage, read> src_a: array<f32>;
@group(0) @binding(2) var<storage, read> src_b: array<f32>;
@group(0) @binding(3) var<storage, read> bias: array<f32>;
@group(0) @binding(4) var<storage, read_write> dst: array<f32>;
@group(0) @binding(6) var<storage, read> part: array<f32>;

var<private> zsplit: u32;

// (offset of row m in A, m < GM)
fn row_info(op: u32, m: u32) -> vec4<u32> {
    return vec4<u32>(m * p.sam, u32(m < p.gm), 0u, 0u);
}

// (offset of column n in B, n < GN)
fn col_info(op: u32, n: u32) -> vec4<u32> {
    return vec4<u32>(n * p.sbn, u32(n < p.gn), 0u, 0u);
}

// (offset of depth k in A, in B, k inside this split)
fn depth_info(op: u32, k: u32, ok: bool) -> vec4<u32> {
    return vec4<u32>(k * p.sak, k * p.sbk, u32(ok), 0u);
}

fn a_elem(op: u32, r: vec4<u32>, d: vec4<u32>) -> f32 {
    if (r.y != 0u && d.z != 0u) {
        return src_a[r.x + d.x];
    }
    return 0.0;
}

fn b_elem(op: u32, d: vec4<u32>, c: vec4<u32>) -> f32 {
    if (c.y != 0u && d.z != 0u) {
        return src_b[d.y + c.x];
    }
    return 0.0;
}

fn put_c(op: u32, m: u32, n: u32, r: vec4<u32>, c: vec4<u32>, v: f32) {
    if (m >= p.gm || n >= p.gn) {
        return;
    }
    let o = m * p.gn + n;
    if (p.splits > 1u) {
        dst[zsplit * p.gm * p.gn + o] = v;
        return;
    }
    var b = 0.0;
    if (p.bias != 0u) {
        b = bias[n];
    }
    dst[o] = select(0.0, dst[o], ACCUMULATE) + v + b;
}

// Lanes step along the index that is contiguous in memory: A's depth (x, dy rows) except in
// backward_weight (dy^T: its rows); B's depth in forward (W^T), else its columns; C's columns.
fn a_rows_fast(op: u32) -> bool {
    return op == PASS_BACKWARD_WEIGHT;
}

fn b_depth_fast(op: u32) -> bool {
    return op == PASS_FORWARD;
}

fn c_rows_fast(op: u32) -> bool {
    return false;
}

@compute @workgroup_size(WM * WN * SG)
fn dense_coop_gemm(@builtin(local_invocation_index) li: u32, @builtin(workgroup_id) wid: vec3<u32>) {
    zsplit = wid.z;
    let kb = wid.z * p.kchunk;
    gemm(PASS, li, wid.y * BM, wid.x * BN, kb, min(kb + p.kchunk, p.gk));
}

// dst[i] = sum over splits s of part[s * GM * GN + i] (+ b, + dst where ACCUMULATE).
@compute @workgroup_size(WG)
fn dense_coop_reduce(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let nc = p.gm * p.gn;
    let i = flat(gid, nwg);
    if (i >= nc) { return; }
    var s = 0.0;
    for (var z = 0u; z < p.splits; z++) {
        s += part[z * nc + i];
    }
    if (p.bias != 0u) {
        s += bias[i % p.gn];
    }
    dst[i] = select(0.0, dst[i], ACCUMULATE) + s;
}
