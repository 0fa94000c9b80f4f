// The GEMM core of the cooperative-matrix kernels (*_coop.wgsl): a build is
//   prelude (shaders/coop/real.wgsl or shaders/coop/emulated.wgsl) + this file + the body,
// concatenated by src/gpu/shaders.rs. The prelude spells the cooperative operations
// (coop_setup, coop_zero, coop_load_a / _b, coop_mma, coop_store on sa / sb / sc, types
// CoopA / CoopB / CoopC, tile side CT); nothing else differs between the builds.
//
// C[GM, GN] = A[GM, GK] * B[GK, GN], f16 operands (rounded from f32 when staged; values
// beyond f16's range become inf: to_f16), f32 sums.
// A workgroup computes a BM x BN block of C over the depth range [kb, ke): WM x WN subgroups
// of SG lanes, each a (TM x TN)-tile part of it (tiles CT x CT). Per depth slice of BK:
// the body's depth_info fills kinfo, then A [BM][BK] and B [BK][BN] are staged row-major in
// sa / sb as vec4<f16> (rows padded by 16 bytes), then each subgroup multiplies its tiles.
// At the end every tile goes through sc (coop_store) and the body's put_c writes it out.
//
// The body provides (op: its own constant per entry point; m, n, k: absolute indices;
// r, c, d: the info words it made for row m, column n, depth k):
//   row_info(op, m) -> vec4<u32>, col_info(op, n) -> vec4<u32>,
//   depth_info(op, k, ok) -> vec4<u32> (ok: k < ke),
//   a_elem(op, r, d) -> f32 = A[m, k]  (0 outside the matrix),
//   b_elem(op, d, c) -> f32 = B[k, n]  (0 outside),
//   put_c(op, m, n, r, c, v) (writes C[m, n] = v where m < GM and n < GN),
//   a_rows_fast(op), b_depth_fast(op), c_rows_fast(op) -> bool: which index of A, B
//   and C the lanes of a workgroup step along (the contiguous one in memory).
//
// Real build: SG is the adapter's largest subgroup size, so each group of SG invocations
// holds whole hardware subgroups (several when the driver picks smaller ones: they compute
// the same tiles and store the same values to sc; every element is still written out once).

// Lanes per subgroup the workgroup is built on (emulated build: 32).
override SG: u32 = 32u;
// Subgroups along M and N.
override WM: u32 = 2u;
override WN: u32 = 2u;
// Tiles per subgroup along M and N: 1 to 4.
override TM: u32 = 2u;
override TN: u32 = 2u;
// Depth slice: a multiple of CT.
override BK: u32 = 32u;
override BM: u32 = WM * TM * CT;
override BN: u32 = WN * TN * CT;
// Row strides of sa / sb in vec4s: the slice plus a 16-byte pad.
override SA4: u32 = BK / 4u + 2u;
override SB4: u32 = BN / 4u + 2u;
// Array lengths as named overrides (naga 30's process_overrides panics on the anonymous
// override an expression in an array type makes, when declared before a named one).
override SA_LEN: u32 = BM * SA4;
override SB_LEN: u32 = BK * SB4;
override SC_LEN: u32 = WM * WN * CT * CT;

var<workgroup> sa: array<vec4<f16>, SA_LEN>;
var<workgroup> sb: array<vec4<f16>, SB_LEN>;
// One CT x CT f32 tile per subgroup.
var<workgroup> sc: array<f32, SC_LEN>;
var<workgroup> rinfo: array<vec4<u32>, BM>;
var<workgroup> cinfo: array<vec4<u32>, BN>;
var<workgroup> kinfo: array<vec4<u32>, BK>;

fn threads() -> u32 {
    return WM * WN * SG;
}

// v rounded to f16, with every element beyond f16's range (|x| > 65504, inf, NaN) made
// +inf. WGSL leaves the result of an out-of-range conversion undefined (a driver may
// saturate), and mixed-precision training must see the overflow: nn::loss_scale flags
// non-finite gradients and skips the step. The range test is on the bits, which no
// fast-math assumption can fold away; the inf is 65504 * (li + 2) computed at run time (li:
// the invocation's index), an f16 overflow (a constant inf would be folded or refused).
fn to_f16(v: vec4<f32>, li: u32) -> vec4<f16> {
    let over = (bitcast<vec4<u32>>(v) & vec4<u32>(0x7fffffffu)) > vec4<u32>(0x477fe000u);
    let inf = vec4<f16>(65504.0) * f16(li + 2u);
    return select(vec4<f16>(v), inf, over);
}

// One depth slice at k0 into sa / sb (kinfo holds its depth info).
fn stage(op: u32, li: u32) {
    let nt = threads();
    let qa = BK / 4u;
    let mfast = a_rows_fast(op);
    for (var e = li; e < BM * qa; e += nt) {
        let m = select(e / qa, e % BM, mfast);
        let q = select(e % qa, e / BM, mfast);
        let r = rinfo[m];
        let v = vec4<f32>(a_elem(op, r, kinfo[4u * q]), a_elem(op, r, kinfo[4u * q + 1u]),
                          a_elem(op, r, kinfo[4u * q + 2u]), a_elem(op, r, kinfo[4u * q + 3u]));
        sa[m * SA4 + q] = to_f16(v, li);
    }
    let qb = BN / 4u;
    let kfast = b_depth_fast(op);
    for (var e = li; e < BK * qb; e += nt) {
        let k = select(e / qb, e % BK, kfast);
        let q = select(e % qb, e / BK, kfast);
        let d = kinfo[k];
        let v = vec4<f32>(b_elem(op, d, cinfo[4u * q]), b_elem(op, d, cinfo[4u * q + 1u]),
                          b_elem(op, d, cinfo[4u * q + 2u]), b_elem(op, d, cinfo[4u * q + 3u]));
        sb[k * SB4 + q] = to_f16(v, li);
    }
}

// Tile c of subgroup s, at block row tr / column tc, out through sc: every subgroup stores
// its tile, then the SG invocations of group s write its CT * CT elements (each once).
fn flush(op: u32, c: CoopC, li: u32, s: u32, m0: u32, n0: u32, tr: u32, tc: u32) {
    coop_store(c, s * CT * CT, CT);
    workgroupBarrier();
    let rfast = c_rows_fast(op);
    for (var e = li % SG; e < CT * CT; e += SG) {
        let r = select(e / CT, e % CT, rfast);
        let cc = select(e % CT, e / CT, rfast);
        let m = tr + r;
        let n = tc + cc;
        put_c(op, m0 + m, n0 + n, rinfo[m], cinfo[n], sc[s * CT * CT + r * CT + cc]);
    }
    workgroupBarrier();
}

// The block at (m0, n0) over depths [kb, ke), written out with put_c. Every invocation of
// the workgroup calls it (uniform control flow).
fn gemm(op: u32, li: u32, m0: u32, n0: u32, kb: u32, ke: u32) {
    coop_setup(li, ke);
    let nt = threads();
    let s = (li / SG) % (WM * WN);
    // The subgroup's first row and column in the block.
    let wr = (s / WN) * TM * CT;
    let wc = (s % WN) * TN * CT;
    for (var i = li; i < BM; i += nt) {
        rinfo[i] = row_info(op, m0 + i);
    }
    for (var i = li; i < BN; i += nt) {
        cinfo[i] = col_info(op, n0 + i);
    }
    var c00 = coop_zero(); var c01 = coop_zero(); var c02 = coop_zero(); var c03 = coop_zero();
    var c10 = coop_zero(); var c11 = coop_zero(); var c12 = coop_zero(); var c13 = coop_zero();
    var c20 = coop_zero(); var c21 = coop_zero(); var c22 = coop_zero(); var c23 = coop_zero();
    var c30 = coop_zero(); var c31 = coop_zero(); var c32 = coop_zero(); var c33 = coop_zero();
    for (var k0 = kb; k0 < ke; k0 += BK) {
        for (var i = li; i < BK; i += nt) {
            kinfo[i] = depth_info(op, k0 + i, k0 + i < ke);
        }
        workgroupBarrier();
        stage(op, li);
        workgroupBarrier();
        for (var kk = 0u; kk < BK; kk += CT) {
            // Tiles past TM / TN reload the last one (never used: the multiply-adds below
            // are guarded by override constants).
            let ia = wr * SA4 + kk / 4u;
            let a0 = coop_load_a(ia, SA4);
            let a1 = coop_load_a(ia + min(1u, TM - 1u) * CT * SA4, SA4);
            let a2 = coop_load_a(ia + min(2u, TM - 1u) * CT * SA4, SA4);
            let a3 = coop_load_a(ia + min(3u, TM - 1u) * CT * SA4, SA4);
            let ib = kk * SB4 + wc / 4u;
            let b0 = coop_load_b(ib, SB4);
            let b1 = coop_load_b(ib + min(1u, TN - 1u) * CT / 4u, SB4);
            let b2 = coop_load_b(ib + min(2u, TN - 1u) * CT / 4u, SB4);
            let b3 = coop_load_b(ib + min(3u, TN - 1u) * CT / 4u, SB4);
            c00 = coop_mma(a0, b0, c00);
            if (TN > 1u) { c01 = coop_mma(a0, b1, c01); }
            if (TN > 2u) { c02 = coop_mma(a0, b2, c02); }
            if (TN > 3u) { c03 = coop_mma(a0, b3, c03); }
            if (TM > 1u) {
                c10 = coop_mma(a1, b0, c10);
                if (TN > 1u) { c11 = coop_mma(a1, b1, c11); }
                if (TN > 2u) { c12 = coop_mma(a1, b2, c12); }
                if (TN > 3u) { c13 = coop_mma(a1, b3, c13); }
            }
            if (TM > 2u) {
                c20 = coop_mma(a2, b0, c20);
                if (TN > 1u) { c21 = coop_mma(a2, b1, c21); }
                if (TN > 2u) { c22 = coop_mma(a2, b2, c22); }
                if (TN > 3u) { c23 = coop_mma(a2, b3, c23); }
            }
            if (TM > 3u) {
                c30 = coop_mma(a3, b0, c30);
                if (TN > 1u) { c31 = coop_mma(a3, b1, c31); }
                if (TN > 2u) { c32 = coop_mma(a3, b2, c32); }
                if (TN > 3u) { c33 = coop_mma(a3, b3, c33); }
            }
        }
        workgroupBarrier();
    }
    flush(op, c00, li, s, m0, n0, wr, wc);
    if (TN > 1u) { flush(op, c01, li, s, m0, n0, wr, wc + CT); }
    if (TN > 2u) { flush(op, c02, li, s, m0, n0, wr, wc + 2u * CT); }
    if (TN > 3u) { flush(op, c03, li, s, m0, n0, wr, wc + 3u * CT); }
    if (TM > 1u) {
        flush(op, c10, li, s, m0, n0, wr + CT, wc);
        if (TN > 1u) { flush(op, c11, li, s, m0, n0, wr + CT, wc + CT); }
        if (TN > 2u) { flush(op, c12, li, s, m0, n0, wr + CT, wc + 2u * CT); }
        if (TN > 3u) { flush(op, c13, li, s, m0, n0, wr + CT, wc + 3u * CT); }
    }
    if (TM > 2u) {
        flush(op, c20, li, s, m0, n0, wr + 2u * CT, wc);
        if (TN > 1u) { flush(op, c21, li, s, m0, n0, wr + 2u * CT, wc + CT); }
        if (TN > 2u) { flush(op, c22, li, s, m0, n0, wr + 2u * CT, wc + 2u * CT); }
        if (TN > 3u) { flush(op, c23, li, s, m0, n0, wr + 2u * CT, wc + 3u * CT); }
    }
    if (TM > 3u) {
        flush(op, c30, li, s, m0, n0, wr + 3u * CT, wc);
        if (TN > 1u) { flush(op, c31, li, s, m0, n0, wr + 3u * CT, wc + CT); }
        if (TN > 2u) { flush(op, c32, li, s, m0, n0, wr + 3u * CT, wc + 2u * CT); }
        if (TN > 3u) { flush(op, c33, li, s, m0, n0, wr + 3u * CT, wc + 3u * CT); }
    }
}
