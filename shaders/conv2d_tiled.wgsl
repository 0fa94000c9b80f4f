// 2-D convolution as implicit GEMM with workgroup-memory tiles (no materialized im2col).
// Same semantics as conv2d.wgsl: zero padding (PT top, PL left), any kernel and stride.
// Shapes: N batch, CI / CO input / output channels, H x W input, OH x OW output,
// KH x KW kernel, SH / SW stride; x [N, CI, H, W], w [CO, CI, KH, KW], b [CO],
// y / dy [N, CO, OH, OW]; KK = KH * KW.
//
// Every pass is C[GM, GN] = A[GM, GK] * B[GK, GN]; a workgroup computes a BM x BN tile of C,
// stepping over GK in BK slices staged in workgroup memory (ta [BK][BM], tb [BK][BN]);
// invocation (tx, ty) of the (BN / 4) x (BM / 4) workgroup holds a 4 x 4 register block:
// rows 4 ty + i, columns 4 tx + j (one vec4 load from each tile per depth step; neighbouring
// lanes read neighbouring vec4s and write neighbouring outputs). Tiles are filled a vec4 at
// a time: 4 rows (A) or 4 columns (B) at one depth index per invocation and step.
//   conv2d_tiled_forward[_bias]:  y  = b + w * im2col(x)    GM = CO, GN = N*OH*OW, GK = CI*KK.
//                                  Overwrites y.
//   conv2d_tiled_backward_input:   dx = w^T * col(dy)       GM = CI, GN = N*H*W,   GK = CO*KK.
//                                  Gather: dx[n,ci,iy,ix] sums dy[n,co,oy,ox] w[co,ci,ky,kx]
//                                  over iy + PT - ky = oy * SH (likewise x). Overwrites dx.
//   conv2d_tiled_backward_weight:  dw = dy * im2col(x)^T    GM = CO, GN = CI*KK,   GK = N*OH*OW,
//                                  split-K: grid z = split s sums GK rows
//                                  [s * KCHUNK, (s + 1) * KCHUNK) into dwo[s * NW ..]; with one
//                                  split dwo is dw (overwrites, or adds when ACCUMULATE).
//   conv2d_tiled_reduce:           dw = sum over splits of the partials (overwrites, or adds
//                                  when ACCUMULATE).
// Grid of the GEMM kernels: [tiles of GN folded as x + z * nwg.x (forward, backward_input) or
// tiles of GN (backward_weight), ceil(GM / BM), 1 or splits].

// Tile sizes: BM and BN multiples of 4, BK >= 1. Defaults: 256 invocations, 8.5 KiB of
// workgroup memory.
override BM: u32 = 64u;
override BN: u32 = 64u;
override BK: u32 = 16u;
override ACCUMULATE: bool = false;
const WG: u32 = 64u;

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
    gm: u32,      // GEMM rows of this pass
    gn: u32,      // GEMM columns
    gk: u32,      // GEMM depth
    kchunk: u32,  // backward_weight: GK rows per split (a multiple of BK)
    splits: u32,  // backward_weight: splits (grid z)
    nw: u32,      // CO * CI * KK
    bias: u32,    // unused: the bias has a pass of its own (GemmUniform::bias = 0)
}

@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> w: array<f32>;
@group(0) @binding(3) var<storage, read> b: array<f32>;
@group(0) @binding(4) var<storage, read_write> y: array<f32>;
@group(0) @binding(5) var<storage, read> dy: array<f32>;
@group(0) @binding(6) var<storage, read_write> dx: array<f32>;
@group(0) @binding(7) var<storage, read_write> dwo: array<f32>;
@group(0) @binding(8) var<storage, read> part: array<f32>;
// Depth-index table (written once by the host; removes integer divisions from the tile
// loads): forward / backward_weight (k = (ci, ky, kx)): (ci * H * W + ky * W + kx, ky, kx, 0);
// backward_input (k = (co, ky, kx)): (co * CI * KK + ky * KW + kx, ky, kx, co * OH * OW).
@group(0) @binding(9) var<storage, read> tab: array<vec4<i32>>;

// ta [BK][BM], tb [BK][BN] as vec4 (4 consecutive rows / columns), each depth row padded by
// one vec4 (BM / 4 + 1, BN / 4 + 1) so the depth-fastest stores spread over banks.
var<workgroup> ta: array<vec4<f32>, BK * (BM / 4u + 1u)>;
var<workgroup> tb: array<vec4<f32>, BK * (BN / 4u + 1u)>;
// acc[i][j]: row 4 ty + i, column 4 tx + j of the tile.
var<private> acc: array<vec4<f32>, 4>;

fn put_a(k: u32, q: u32, v: vec4<f32>) {
    ta[k * (BM / 4u + 1u) + q] = v;
}

fn put_b(k: u32, q: u32, v: vec4<f32>) {
    tb[k * (BN / 4u + 1u) + q] = v;
}

// One BK slice: acc += ta^T tb over the register block (two 16-byte loads per 16 FMAs).
fn mma(lid: vec3<u32>) {
    for (var k = 0u; k < BK; k++) {
        let a = ta[k * (BM / 4u + 1u) + lid.y];
        let bv = tb[k * (BN / 4u + 1u) + lid.x];
        acc[0] = fma(vec4<f32>(a.x), bv, acc[0]);
        acc[1] = fma(vec4<f32>(a.y), bv, acc[1]);
        acc[2] = fma(vec4<f32>(a.z), bv, acc[2]);
        acc[3] = fma(vec4<f32>(a.w), bv, acc[3]);
    }
}

fn flat_lid(lid: vec3<u32>) -> u32 {
    return lid.y * (BN / 4u) + lid.x;
}

fn threads() -> u32 {
    return (BM / 4u) * (BN / 4u);
}

fn tile_n0(wid: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return (wid.x + wid.z * nwg.x) * BN;
}

// Guarded loads: 0 where `ok` is false (nothing is read there).
fn ld_x(ok: bool, i: u32) -> f32 {
    if (ok) { return x[i]; }
    return 0.0;
}

fn ld_w(ok: bool, i: u32) -> f32 {
    if (ok) { return w[i]; }
    return 0.0;
}

fn ld_dy(ok: bool, i: u32) -> f32 {
    if (ok) { return dy[i]; }
    return 0.0;
}

fn ld_x4(ok: vec4<bool>, i: vec4<u32>) -> vec4<f32> {
    return vec4<f32>(ld_x(ok.x, i.x), ld_x(ok.y, i.y), ld_x(ok.z, i.z), ld_x(ok.w, i.w));
}

// Output pixels n (4 columns) as window origins (iy0, ix0) and x offsets xo of the origins
// (wrapping u32 arithmetic: "negative" in the padding, where nothing is read).
struct Win4 {
    ok: vec4<bool>,
    iy0: vec4<i32>,
    ix0: vec4<i32>,
    xo: vec4<u32>,
}

fn windows(n: vec4<u32>) -> Win4 {
    let ohw = p.oh * p.ow;
    let nc = min(n, vec4<u32>(p.gn - 1u));
    let pp = nc % ohw;
    let iy0 = vec4<i32>((pp / p.ow) * p.sh) - i32(p.pt);
    let ix0 = vec4<i32>((pp % p.ow) * p.sw) - i32(p.pl);
    let xo = (nc / ohw) * (p.ci * p.h * p.w) + bitcast<vec4<u32>>(iy0 * i32(p.w) + ix0);
    return Win4(n < vec4<u32>(p.gn), iy0, ix0, xo);
}

// im2col(x)[k, n] of depth k = (ci, ky, kx) for the 4 columns of `c`; 0 in the padding.
fn im2col4(k: u32, c: Win4) -> vec4<f32> {
    let t = tab[k];
    let iy = c.iy0 + t.y;
    let ix = c.ix0 + t.z;
    let ok = c.ok & (iy >= vec4<i32>(0)) & (ix >= vec4<i32>(0)) & (iy < vec4<i32>(i32(p.h))) & (ix < vec4<i32>(i32(p.w)));
    return ld_x4(ok, c.xo + u32(t.x));
}

// Forward: acc = C[co, n] over the tile at (m0, n0). Callers return first (the whole
// workgroup) when the tile is past GN: the fold of the grid rounds up.
fn forward_tile(lid: vec3<u32>, m0: u32, n0: u32) {
    let t = flat_lid(lid);
    let nt = threads();
    // This invocation always fills column quad cq of tb: decode its 4 pixels once.
    let cq = t % (BN / 4u);
    let c = windows(vec4<u32>(n0 + 4u * cq) + vec4<u32>(0u, 1u, 2u, 3u));
    acc = array<vec4<f32>, 4>();
    for (var k0 = 0u; k0 < p.gk; k0 += BK) {
        // ta[k][4q ..] = w[m0 + 4q + i, k0 + k] (w is [CO, GK] row-major): k fastest.
        for (var e = t; e < BK * (BM / 4u); e += nt) {
            let k = k0 + e % BK;
            let m = m0 + 4u * (e / BK);
            let i = m * p.gk + k;
            let ok = k < p.gk;
            put_a(e % BK, e / BK, vec4<f32>(ld_w(ok && m < p.gm, i), ld_w(ok && m + 1u < p.gm, i + p.gk),
                                            ld_w(ok && m + 2u < p.gm, i + 2u * p.gk), ld_w(ok && m + 3u < p.gm, i + 3u * p.gk)));
        }
        for (var r = t / (BN / 4u); r < BK; r += nt / (BN / 4u)) {
            let k = k0 + r;
            var v = vec4<f32>(0.0);
            if (k < p.gk) {
                v = im2col4(k, c);
            }
            put_b(r, cq, v);
        }
        workgroupBarrier();
        mma(lid);
        workgroupBarrier();
    }
}

// bias[i]: the bias of row 4 lid.y + i (zeros without bias: a shared body that read
// b would put the binding in both entry points' layouts).
fn store_y(lid: vec3<u32>, m0: u32, n0: u32, bias: vec4<f32>) {
    let ohw = p.oh * p.ow;
    for (var i = 0u; i < 4u; i++) {
        let co = m0 + 4u * lid.y + i;
        if (co >= p.gm) { break; }
        for (var j = 0u; j < 4u; j++) {
            let n = n0 + 4u * lid.x + j;
            if (n >= p.gn) { break; }
            y[((n / ohw) * p.co + co) * ohw + n % ohw] = acc[i][j] + bias[i];
        }
    }
}

@compute @workgroup_size(BN / 4u, BM / 4u)
fn conv2d_tiled_forward(@builtin(local_invocation_id) lid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let n0 = tile_n0(wid, nwg);
    if (n0 >= p.gn) { return; }
    forward_tile(lid, wid.y * BM, n0);
    store_y(lid, wid.y * BM, n0, vec4<f32>(0.0));
}

@compute @workgroup_size(BN / 4u, BM / 4u)
fn conv2d_tiled_forward_bias(@builtin(local_invocation_id) lid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let n0 = tile_n0(wid, nwg);
    if (n0 >= p.gn) { return; }
    let m0 = wid.y * BM;
    forward_tile(lid, m0, n0);
    let r = min(vec4<u32>(m0 + 4u * lid.y) + vec4<u32>(0u, 1u, 2u, 3u), vec4<u32>(p.gm - 1u));
    store_y(lid, m0, n0, vec4<f32>(b[r.x], b[r.y], b[r.z], b[r.w]));
}

// dx tile: rows ci, columns n = (nb, iy, ix), depth k = (co, ky, kx).
@compute @workgroup_size(BN / 4u, BM / 4u)
fn conv2d_tiled_backward_input(@builtin(local_invocation_id) lid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let n0 = tile_n0(wid, nwg);
    if (n0 >= p.gn) { return; }
    let m0 = wid.y * BM;
    let t = flat_lid(lid);
    let nt = threads();
    let kk = p.kh * p.kw;
    let hw = p.h * p.w;
    let ohw = p.oh * p.ow;
    // Column quad cq of tb: the 4 input pixels this invocation gathers dy for.
    let cq = t % (BN / 4u);
    let n = vec4<u32>(n0 + 4u * cq) + vec4<u32>(0u, 1u, 2u, 3u);
    let nok = n < vec4<u32>(p.gn);
    let nc = min(n, vec4<u32>(p.gn - 1u));
    let dyb = (nc / hw) * (p.co * ohw);
    let pp = nc % hw;
    let ty0 = vec4<i32>(pp / p.w) + i32(p.pt);  // iy + PT = oy * SH + ky
    let tx0 = vec4<i32>(pp % p.w) + i32(p.pl);
    let strided = p.sh != 1u || p.sw != 1u;
    acc = array<vec4<f32>, 4>();
    for (var k0 = 0u; k0 < p.gk; k0 += BK) {
        // ta[k][4q ..] = w[co, m0 + 4q + i, ky, kx] for k0 + k = (co, ky, kx).
        for (var e = t; e < BK * (BM / 4u); e += nt) {
            let k = k0 + e % BK;
            let m = m0 + 4u * (e / BK);
            let ok = k < p.gk;
            let i = u32(tab[min(k, p.gk - 1u)].x) + m * kk;
            put_a(e % BK, e / BK, vec4<f32>(ld_w(ok && m < p.gm, i), ld_w(ok && m + 1u < p.gm, i + kk),
                                            ld_w(ok && m + 2u < p.gm, i + 2u * kk), ld_w(ok && m + 3u < p.gm, i + 3u * kk)));
        }
        for (var r = t / (BN / 4u); r < BK; r += nt / (BN / 4u)) {
            let k = k0 + r;
            var v = vec4<f32>(0.0);
            if (k < p.gk) {
                let tk = tab[k];
                let sy = ty0 - tk.y;
                let sx = tx0 - tk.z;
                var ok = nok & (sy >= vec4<i32>(0)) & (sx >= vec4<i32>(0));
                var oy = bitcast<vec4<u32>>(sy);
                var ox = bitcast<vec4<u32>>(sx);
                if (strided) {
                    ok = ok & (oy % p.sh == vec4<u32>(0u)) & (ox % p.sw == vec4<u32>(0u));
                    oy /= p.sh;
                    ox /= p.sw;
                }
                ok = ok & (oy < vec4<u32>(p.oh)) & (ox < vec4<u32>(p.ow));
                let i = dyb + u32(tk.w) + oy * p.ow + ox;
                v = vec4<f32>(ld_dy(ok.x, i.x), ld_dy(ok.y, i.y), ld_dy(ok.z, i.z), ld_dy(ok.w, i.w));
            }
            put_b(r, cq, v);
        }
        workgroupBarrier();
        mma(lid);
        workgroupBarrier();
    }
    for (var i = 0u; i < 4u; i++) {
        let ci = m0 + 4u * lid.y + i;
        if (ci >= p.gm) { break; }
        for (var j = 0u; j < 4u; j++) {
            let nn = n0 + 4u * lid.x + j;
            if (nn >= p.gn) { break; }
            dx[((nn / hw) * p.ci + ci) * hw + nn % hw] = acc[i][j];
        }
    }
}

// dw tile: rows co, columns n = (ci, ky, kx), depth k = (nb, oy, ox) over this split.
@compute @workgroup_size(BN / 4u, BM / 4u)
fn conv2d_tiled_backward_weight(@builtin(local_invocation_id) lid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
    let m0 = wid.y * BM;
    let n0 = wid.x * BN;
    let t = flat_lid(lid);
    let nt = threads();
    let ohw = p.oh * p.ow;
    let kb = wid.z * p.kchunk;
    let ke = min(kb + p.kchunk, p.gk);
    acc = array<vec4<f32>, 4>();
    for (var k0 = kb; k0 < ke; k0 += BK) {
        // ta[k][4q ..] = dy[nb, m0 + 4q + i, oy, ox] for k0 + k = (nb, oy, ox): k fastest
        // (contiguous dy). An invocation's k repeats when BK divides the workgroup: decode
        // it once.
        var lk = 0xffffffffu;
        var dyo = 0u;
        for (var e = t; e < BK * (BM / 4u); e += nt) {
            let k = k0 + e % BK;
            let m = m0 + 4u * (e / BK);
            var v = vec4<f32>(0.0);
            if (k < ke) {
                if (k != lk) {
                    lk = k;
                    dyo = (k / ohw) * p.co * ohw + k % ohw;
                }
                let i = dyo + m * ohw;
                v = vec4<f32>(ld_dy(m < p.gm, i), ld_dy(m + 1u < p.gm, i + ohw), ld_dy(m + 2u < p.gm, i + 2u * ohw), ld_dy(m + 3u < p.gm, i + 3u * ohw));
            }
            put_a(e % BK, e / BK, v);
        }
        // tb[k][4q ..] = im2col(x)[n0 + 4q + j, k]: k (output pixel) fastest so lanes read
        // along x rows; the pixel decoded once per k as above.
        lk = 0xffffffffu;
        var xo = 0u;
        var iy0 = 0;
        var ix0 = 0;
        for (var e = t; e < BK * (BN / 4u); e += nt) {
            let k = k0 + e % BK;
            let n = n0 + 4u * (e / BK);
            var v = vec4<f32>(0.0);
            if (k < ke) {
                if (k != lk) {
                    lk = k;
                    let pp = k % ohw;
                    iy0 = i32((pp / p.ow) * p.sh) - i32(p.pt);
                    ix0 = i32((pp % p.ow) * p.sw) - i32(p.pl);
                    xo = (k / ohw) * (p.ci * p.h * p.w) + bitcast<u32>(iy0 * i32(p.w) + ix0);
                }
                let nn = vec4<u32>(n) + vec4<u32>(0u, 1u, 2u, 3u);
                let tn = array<vec4<i32>, 4>(tab[min(n, p.gn - 1u)], tab[min(n + 1u, p.gn - 1u)], tab[min(n + 2u, p.gn - 1u)], tab[min(n + 3u, p.gn - 1u)]);
                let iy = vec4<i32>(tn[0].y, tn[1].y, tn[2].y, tn[3].y) + iy0;
                let ix = vec4<i32>(tn[0].z, tn[1].z, tn[2].z, tn[3].z) + ix0;
                let ok = (nn < vec4<u32>(p.gn)) & (iy >= vec4<i32>(0)) & (ix >= vec4<i32>(0)) & (iy < vec4<i32>(i32(p.h))) & (ix < vec4<i32>(i32(p.w)));
                v = ld_x4(ok, vec4<u32>(xo) + bitcast<vec4<u32>>(vec4<i32>(tn[0].x, tn[1].x, tn[2].x, tn[3].x)));
            }
            put_b(e % BK, e / BK, v);
        }
        workgroupBarrier();
        mma(lid);
        workgroupBarrier();
    }
    let base = wid.z * p.nw;
    for (var i = 0u; i < 4u; i++) {
        let co = m0 + 4u * lid.y + i;
        if (co >= p.gm) { break; }
        for (var j = 0u; j < 4u; j++) {
            let n = n0 + 4u * lid.x + j;
            if (n >= p.gn) { break; }
            let o = base + co * p.gn + n;
            dwo[o] = select(0.0, dwo[o], ACCUMULATE) + acc[i][j];
        }
    }
}

// dwo[i] (= dw) = sum over splits s of part[s * NW + i]; 1-D grid (groups_1d, WG).
@compute @workgroup_size(WG)
fn conv2d_tiled_reduce(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat(gid, nwg);
    if (i >= p.nw) { return; }
    var s = 0.0;
    for (var z = 0u; z < p.splits; z++) {
        s += part[z * p.nw + i];
    }
    dwo[i] = select(0.0, dwo[i], ACCUMULATE) + s;
}
