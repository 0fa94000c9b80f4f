// 2-D convolution as implicit GEMM on cooperative matrices (tensor cores): f16 operands
// (rounded from the f32 tensors when staged in workgroup memory), f32 sums. Same semantics
// as conv2d.wgsl: zero padding (PT top, PL left), any kernel and stride.
// Shapes: N batch, CI / CO channels, H x W input, OH x OW output, KH x KW kernel, SH / SW
// stride; x [N, CI, H, W], w [CO, CI, KH, KW], b [CO], y / dy [N, CO, OH, OW]; KK = KH * KW.
//
// The GEMM core (tiles, staging, the cooperative multiply-adds) is shaders/coop/gemm.wgsl;
// this body says what A, B and C are for each op (C[GM, GN] = A[GM, GK] * B[GK, GN]):
//   conv2d_coop_forward:          GM = N*OH*OW pixels, GN = CO, GK = CI*KK.
//                                 A = im2col(x), B = w^T; y = C (+ b where p.bias). Overwrites y.
//   conv2d_coop_backward_input:   GM = N*H*W input pixels, GN = CI, GK = CO*KK.
//                                 A[(n,iy,ix), (co,ky,kx)] = dy[n, co, oy, ox] where
//                                 iy + PT - ky = oy * SH (likewise x; else 0), B = w as
//                                 [(co,ky,kx), ci]; dx = C. Overwrites dx.
//   conv2d_coop_backward_weight:  GM = CO, GN = CI*KK, GK = N*OH*OW, split over the depth:
//                                 grid z = split s sums [s * KCHUNK, (s + 1) * KCHUNK) into
//                                 dst[s * NW ..]; A = dy as [co, pixel], B = im2col(x)^T.
//                                 With one split dst is dw (overwrites, or adds when
//                                 ACCUMULATE); else the partials (ACCUMULATE false).
//   conv2d_coop_reduce:           dw = sum over splits of the partials (overwrites, or adds
//                                 when ACCUMULATE).
// Grids: forward / backward_input [row blocks folded as x + z * nwg.x, column blocks, z];
// backward_weight [column blocks, row blocks, splits]; reduce 1-D (WG, groups_1d).
// Bindings by role: src_a / src_b the A / B operand tensors, bias (an alias of src_b
// without bias), dst the output (or partials), tab the depth-index table.

override ACCUMULATE: bool = false;
const WG: u32 = 64u;

const PASS_FORWARD: u32 = 0u;
const PASS_BACKWARD_INPUT: u32 = 1u;
const PASS_BACKWARD_WEIGHT: u32 = 2u;

// Info words of rows / depths outside the matrix: window origins far off the image (so no
// tap lands inside), "no index".
const NOWHERE: i32 = -268435456;
const FAR: u32 = 1048576u;
const NONE: u32 = 0xffffffffu;

struct P {
    n: u32,
    ci: u32,
    h: u32,
    w: u32,
    co: u32,
    kh: u32,
    kw: u32,
    sh: u32,
    sw: u32,
    pt: u32,
    pl: u32,
    oh: u32,
    ow: u32,
    gm: u32,      // GEMM rows of this op
    gn: u32,      // GEMM columns
    gk: u32,      // GEMM depth
    kchunk: u32,  // backward_weight: depth per split (a multiple of BK)
    splits: u32,  // backward_weight: splits (grid z)
    nw: u32,      // CO * CI * KK
    bias: u32,    // forward: 1 adds b
}

@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> src_a: array<f32>;
@group(0) @binding(2) var<storage, read> src_b: array<f32>;
@group(0) @binding(3) var<storage, read> bias: array<f32>;
@group(0) @binding(4) var<storage, read_write> dst: array<f32>;
// Depth-index table (host-made): forward / backward_weight, k = (ci, ky, kx):
// (ci * H * W + ky * W + kx, ky, kx, 0); backward_input, k = (co, ky, kx):
// (co * CI * KK + ky * KW + kx, ky, kx, co * OH * OW).
@group(0) @binding(5) var<storage, read> tab: array<vec4<i32>>;
@group(0) @binding(6) var<storage, read> part: array<f32>;

// backward_weight: this workgroup's split.
var<private> zsplit: u32;

fn inside(iy: i32, ix: i32) -> bool {
    return iy >= 0 && ix >= 0 && iy < i32(p.h) && ix < i32(p.w);
}

// forward: output pixel m -> (x offset of its window origin (wrapping), iy0, ix0, y offset
// of (n, 0, oy, ox)); backward_input: input pixel m -> (dy offset of sample n, iy + PT,
// ix + PL, dx offset of (n, 0, iy, ix)); backward_weight: co -> (co * OH * OW, co < CO).
fn row_info(op: u32, m: u32) -> vec4<u32> {
    if (op == PASS_BACKWARD_WEIGHT) {
        return vec4<u32>(m * p.oh * p.ow, u32(m < p.gm), 0u, 0u);
    }
    if (m >= p.gm) {
        return vec4<u32>(0u, bitcast<u32>(NOWHERE), bitcast<u32>(NOWHERE), 0u);
    }
    let ohw = p.oh * p.ow;
    if (op == PASS_FORWARD) {
        let img = m / ohw;
        let pp = m % ohw;
        let iy0 = i32((pp / p.ow) * p.sh) - i32(p.pt);
        let ix0 = i32((pp % p.ow) * p.sw) - i32(p.pl);
        let xo = img * p.ci * p.h * p.w + bitcast<u32>(iy0 * i32(p.w) + ix0);
        return vec4<u32>(xo, bitcast<u32>(iy0), bitcast<u32>(ix0), img * p.co * ohw + pp);
    }
    let hw = p.h * p.w;
    let img = m / hw;
    let pp = m % hw;
    return vec4<u32>(img * p.co * ohw, pp / p.w + p.pt, pp % p.w + p.pl, img * p.ci * hw + pp);
}

// forward: co -> (w row offset, co < CO, y channel offset); backward_input: ci -> (ci * KK,
// ci < CI, dx channel offset); backward_weight: (ci, ky, kx) -> its table row (ky far off
// the image past the end).
fn col_info(op: u32, n: u32) -> vec4<u32> {
    let ok = n < p.gn;
    if (op == PASS_FORWARD) {
        return vec4<u32>(n * p.gk, u32(ok), n * p.oh * p.ow, 0u);
    }
    if (op == PASS_BACKWARD_INPUT) {
        return vec4<u32>(n * p.kh * p.kw, u32(ok), n * p.h * p.w, 0u);
    }
    if (!ok) {
        return vec4<u32>(0u, FAR, 0u, 0u);
    }
    return bitcast<vec4<u32>>(tab[n]);
}

// forward: (table offset, ky, kx, k) (ky far off and k NONE past the end); backward_input:
// the table row (ky FAR past the end); backward_weight: output pixel k -> (dy offset of
// (n, 0, oy, ox), x offset of its window origin, iy0, ix0) (NONE / NOWHERE past the end).
fn depth_info(op: u32, k: u32, ok: bool) -> vec4<u32> {
    if (op == PASS_BACKWARD_WEIGHT) {
        if (!ok) {
            return vec4<u32>(NONE, 0u, bitcast<u32>(NOWHERE), bitcast<u32>(NOWHERE));
        }
        let ohw = p.oh * p.ow;
        let img = k / ohw;
        let pp = k % ohw;
        let iy0 = i32((pp / p.ow) * p.sh) - i32(p.pt);
        let ix0 = i32((pp % p.ow) * p.sw) - i32(p.pl);
        let xo = img * p.ci * p.h * p.w + bitcast<u32>(iy0 * i32(p.w) + ix0);
        return vec4<u32>(img * p.co * ohw + pp, xo, bitcast<u32>(iy0), bitcast<u32>(ix0));
    }
    if (!ok) {
        return vec4<u32>(0u, FAR, 0u, NONE);
    }
    let t = bitcast<vec4<u32>>(tab[k]);
    if (op == PASS_FORWARD) {
        return vec4<u32>(t.x, t.y, t.z, k);
    }
    return t;
}

fn a_elem(op: u32, r: vec4<u32>, d: vec4<u32>) -> f32 {
    if (op == PASS_FORWARD) {
        // im2col(x)[pixel, (ci, ky, kx)]
        if (inside(bitcast<i32>(r.y) + bitcast<i32>(d.y), bitcast<i32>(r.z) + bitcast<i32>(d.z))) {
            return src_a[r.x + d.x];
        }
        return 0.0;
    }
    if (op == PASS_BACKWARD_INPUT) {
        // dy[n, co, oy, ox] with oy * SH = iy + PT - ky, ox * SW = ix + PL - kx.
        let sy = bitcast<i32>(r.y) - bitcast<i32>(d.y);
        let sx = bitcast<i32>(r.z) - bitcast<i32>(d.z);
        if (sy < 0 || sx < 0) {
            return 0.0;
        }
        var oy = u32(sy);
        var ox = u32(sx);
        if (p.sh != 1u || p.sw != 1u) {
            if (oy % p.sh != 0u || ox % p.sw != 0u) {
                return 0.0;
            }
            oy /= p.sh;
            ox /= p.sw;
        }
        if (oy >= p.oh || ox >= p.ow) {
            return 0.0;
        }
        return src_a[r.x + d.w + oy * p.ow + ox];
    }
    // dy[n, co, oy, ox] as [co, pixel]
    if (r.y != 0u && d.x != NONE) {
        return src_a[r.x + d.x];
    }
    return 0.0;
}

fn b_elem(op: u32, d: vec4<u32>, c: vec4<u32>) -> f32 {
    if (op == PASS_FORWARD) {
        // w[co, k]
        if (c.y != 0u && d.w != NONE) {
            return src_b[c.x + d.w];
        }
        return 0.0;
    }
    if (op == PASS_BACKWARD_INPUT) {
        // w[co, ci, ky, kx]
        if (c.y != 0u && d.y < p.kh) {
            return src_b[d.x + c.x];
        }
        return 0.0;
    }
    // im2col(x)[pixel, (ci, ky, kx)]
    if (inside(bitcast<i32>(d.z) + bitcast<i32>(c.y), bitcast<i32>(d.w) + bitcast<i32>(c.z))) {
        return src_b[d.y + c.x];
    }
    return 0.0;
}

fn put_c(op: u32, m: u32, n: u32, r: vec4<u32>, c: vec4<u32>, v: f32) {
    if (m >= p.gm || n >= p.gn) {
        return;
    }
    if (op == PASS_FORWARD) {
        var b = 0.0;
        if (p.bias != 0u) {
            b = bias[n];
        }
        dst[r.w + c.z] = v + b;
    } else if (op == PASS_BACKWARD_INPUT) {
        dst[r.w + c.z] = v;
    } else {
        let o = zsplit * p.nw + m * p.gn + n;
        dst[o] = select(0.0, dst[o], ACCUMULATE) + v;
    }
}

// Lanes step along pixels (contiguous in x, dy, y, dx) except for backward_weight's A
// (dy: pixels are its depth) and C (dw: contiguous along (ci, ky, kx)).
fn a_rows_fast(op: u32) -> bool {
    return op != PASS_BACKWARD_WEIGHT;
}

fn b_depth_fast(op: u32) -> bool {
    return true;
}

fn c_rows_fast(op: u32) -> bool {
    return op != PASS_BACKWARD_WEIGHT;
}

@compute @workgroup_size(WM * WN * SG)
fn conv2d_coop_forward(@builtin(local_invocation_index) li: u32, @builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let m0 = (wid.x + wid.z * nwg.x) * BM;
    if (m0 >= p.gm) { return; }
    gemm(PASS_FORWARD, li, m0, wid.y * BN, 0u, p.gk);
}

@compute @workgroup_size(WM * WN * SG)
fn conv2d_coop_backward_input(@builtin(local_invocation_index) li: u32, @builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let m0 = (wid.x + wid.z * nwg.x) * BM;
    if (m0 >= p.gm) { return; }
    gemm(PASS_BACKWARD_INPUT, li, m0, wid.y * BN, 0u, p.gk);
}

@compute @workgroup_size(WM * WN * SG)
fn conv2d_coop_backward_weight(@builtin(local_invocation_index) li: u32, @builtin(workgroup_id) wid: vec3<u32>) {
    zsplit = wid.z;
    let kb = wid.z * p.kchunk;
    gemm(PASS_BACKWARD_WEIGHT, li, wid.y * BM, wid.x * BN, kb, min(kb + p.kchunk, p.gk));
}

// dst[i] (= dw) = sum over splits s of part[s * NW + i]; 1-D grid (groups_1d, WG).
@compute @workgroup_size(WG)
fn conv2d_coop_reduce(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat(gid, nwg);
    if (i >= p.nw) { return; }
    var s = 0.0;
    for (var z = 0u; z < p.splits; z++) {
        s += part[z * p.nw + i];
    }
    dst[i] = select(0.0, dst[i], ACCUMULATE) + s;
}
