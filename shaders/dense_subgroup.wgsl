// Dense (fully connected) GEMMs with the lane-shared operand broadcast in the subgroup.
//
// Shapes: N batch, I in_features, O out_features. x, dx [N, I] (flat); W, dW [O, I];
// b [O]; y, dy [N, O]. Same semantics as dense.wgsl:
// dense_sg_forward          y  = x W^T + b                  overwrites y
// dense_sg_backward_input   dx = dy W                       overwrites dx
// dense_sg_backward_weight  dW = dy^T x   (sum over n)      overwrites, or adds with ACCUMULATE
//
// A workgroup owns TM (8 or 16) output rows (r0 = workgroup_id.y * TM), so the row operand (x in
// forward, dy in dx and dW) is the same for every lane. Instead of each lane loading it
// (on lavapipe a storage load is a per-lane loop), lanes 0..7 of each subgroup (lane =
// subgroup_invocation_id % 8; needs subgroups of >= 8 lanes, any size) each load a
// different vec4 of it and subgroupBroadcast(v, k), k constant, hands all 8 vec4s (32
// values) to every lane. Each lane owns TN (4 or 8) output columns and loads its own
// operand (W, or x in dW) as vec4s. Per 4 reduction steps: TM / 8 + TN loads, 4 TM TN FMAs.
// Accumulators: acc<r>_<g> = rows r (0..TM) x columns 4g..4g+4 of the lane's block
// (TN = 8 with TM = 16 is not used: 128 accumulators).
//
// VEC (override): true when the operands' rows are 16-byte aligned (forward: I % 4 == 0;
// dx, dW: I % 4 == 0 and O % 4 == 0): vec4 loads through the *4 bindings (bound to the
// same tensors). False: four clamped scalar loads per vec4 (any shape; the *4 bindings
// then hold a dummy). Reduction indices past the end read 0 from the row operand; row and
// column indices past the end are clamped (in bounds) and their outputs not stored.
// Grid: [column groups of WG lanes, ceil(rows / TM), 1].

struct Params {
    n: u32,         // N
    inf: u32,       // I
    outf: u32,      // O
    has_bias: u32,  // 0: no bias (the bias binding then aliases W and is not read)
}

override WG: u32 = 64u;
// Output columns per lane: 4 or 8.
override TN: u32 = 4u;
// Output rows per workgroup: 8, or 16 (two broadcast vec4s per reduction step: every
// lane-operand load then feeds twice the FMAs).
override TM: u32 = 8u;
override VEC: bool = true;
override ACCUMULATE: bool = false;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> w: array<f32>;
@group(0) @binding(3) var<storage, read> b: array<f32>;
@group(0) @binding(4) var<storage, read_write> y: array<f32>;
@group(0) @binding(5) var<storage, read_write> dx: array<f32>;
@group(0) @binding(6) var<storage, read_write> dw: array<f32>;
@group(0) @binding(8) var<storage, read> dy: array<f32>;
@group(0) @binding(16) var<storage, read> x4: array<vec4<f32>>;
@group(0) @binding(17) var<storage, read> w4: array<vec4<f32>>;
@group(0) @binding(18) var<storage, read> dy4: array<vec4<f32>>;

// x[row + k .. row + 4] (row = n * I), 0 past k = I.
fn ld_x_k(row: u32, k: u32) -> vec4<f32> {
    if (VEC) { return x4[(row + k) / 4u]; }
    let l = p.inf - 1u;
    return vec4<f32>(
        select(0.0, x[row + min(k, l)], k < p.inf),
        select(0.0, x[row + min(k + 1u, l)], k + 1u < p.inf),
        select(0.0, x[row + min(k + 2u, l)], k + 2u < p.inf),
        select(0.0, x[row + min(k + 3u, l)], k + 3u < p.inf));
}

// W[o, k .. k + 4] (row = o * I), clamped to the row.
fn ld_w_k(row: u32, k: u32) -> vec4<f32> {
    if (VEC) { return w4[(row + k) / 4u]; }
    let l = p.inf - 1u;
    return vec4<f32>(w[row + min(k, l)], w[row + min(k + 1u, l)], w[row + min(k + 2u, l)], w[row + min(k + 3u, l)]);
}

// dy[row + k .. row + 4] (row = n * O), 0 past k = O.
fn ld_dy_k(row: u32, k: u32) -> vec4<f32> {
    if (VEC) { return dy4[(row + k) / 4u]; }
    let l = p.outf - 1u;
    return vec4<f32>(
        select(0.0, dy[row + min(k, l)], k < p.outf),
        select(0.0, dy[row + min(k + 1u, l)], k + 1u < p.outf),
        select(0.0, dy[row + min(k + 2u, l)], k + 2u < p.outf),
        select(0.0, dy[row + min(k + 3u, l)], k + 3u < p.outf));
}

// W[o, c .. c + 4] (o clamped to O - 1 by the caller), columns clamped to I - 1.
fn ld_w_c(o: u32, c: u32) -> vec4<f32> {
    let row = o * p.inf;
    if (VEC) { return w4[(row + c) / 4u]; }
    let l = p.inf - 1u;
    return vec4<f32>(w[row + min(c, l)], w[row + min(c + 1u, l)], w[row + min(c + 2u, l)], w[row + min(c + 3u, l)]);
}

// x[n, c .. c + 4] (n clamped by the caller), columns clamped to I - 1.
fn ld_x_c(n: u32, c: u32) -> vec4<f32> {
    let row = n * p.inf;
    if (VEC) { return x4[(row + c) / 4u]; }
    let l = p.inf - 1u;
    return vec4<f32>(x[row + min(c, l)], x[row + min(c + 1u, l)], x[row + min(c + 2u, l)], x[row + min(c + 3u, l)]);
}

// dy[n, o .. o + 4] over 4 output features o (rows of dW), 0 when n >= N; o clamped.
fn ld_dy_rows(n: u32, o: u32) -> vec4<f32> {
    let nn = min(n, p.n - 1u);
    var v: vec4<f32>;
    if (VEC) {
        v = dy4[(nn * p.outf + min(o, p.outf - 4u)) / 4u];
    } else {
        let row = nn * p.outf;
        let l = p.outf - 1u;
        v = vec4<f32>(dy[row + min(o, l)], dy[row + min(o + 1u, l)], dy[row + min(o + 2u, l)], dy[row + min(o + 3u, l)]);
    }
    return select(vec4<f32>(0.0), v, n < p.n);
}

// y[n, c0 + (4g + e) WG] = v[e] + b (e < 4), in range only.
fn st_y(n: u32, c0: u32, g: u32, v: vec4<f32>) {
    if (n >= p.n) { return; }
    let base = n * p.outf;
    let o = c0 + 4u * g * WG;
    if (o < p.outf) { y[base + o] = v.x + select(0.0, b[o], p.has_bias != 0u); }
    if (o + WG < p.outf) { y[base + o + WG] = v.y + select(0.0, b[o + WG], p.has_bias != 0u); }
    if (o + 2u * WG < p.outf) { y[base + o + 2u * WG] = v.z + select(0.0, b[o + 2u * WG], p.has_bias != 0u); }
    if (o + 3u * WG < p.outf) { y[base + o + 3u * WG] = v.w + select(0.0, b[o + 3u * WG], p.has_bias != 0u); }
}

// dx[n, 4 cv .. 4 cv + 4] = v, in range only.
fn st_dx(n: u32, cv: u32, v: vec4<f32>) {
    if (n >= p.n) { return; }
    let i = cv * 4u;
    let q = n * p.inf + i;
    if (i < p.inf) { dx[q] = v.x; }
    if (i + 1u < p.inf) { dx[q + 1u] = v.y; }
    if (i + 2u < p.inf) { dx[q + 2u] = v.z; }
    if (i + 3u < p.inf) { dx[q + 3u] = v.w; }
}

// dW[o, 4 cv .. 4 cv + 4] (+)= v, in range only.
fn st_dw(o: u32, cv: u32, v: vec4<f32>) {
    if (o >= p.outf) { return; }
    let i = cv * 4u;
    let q = o * p.inf + i;
    if (ACCUMULATE) {
        if (i < p.inf) { dw[q] += v.x; }
        if (i + 1u < p.inf) { dw[q + 1u] += v.y; }
        if (i + 2u < p.inf) { dw[q + 2u] += v.z; }
        if (i + 3u < p.inf) { dw[q + 3u] += v.w; }
    } else {
        if (i < p.inf) { dw[q] = v.x; }
        if (i + 1u < p.inf) { dw[q + 1u] = v.y; }
        if (i + 2u < p.inf) { dw[q + 2u] = v.z; }
        if (i + 3u < p.inf) { dw[q + 3u] = v.w; }
    }
}

// y[n, o] = b[o] + sum_i x[n, i] W[o, i]. Rows n, columns o = c0 + j * WG (j < TN),
// reduction over i in steps of 4. Lane l < 8 loads x row r0 + l; broadcast k gives row
// r0 + k. acc<r>_<g>[e] is column j = 4g + e.
@compute @workgroup_size(WG)
fn dense_sg_forward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>, @builtin(subgroup_invocation_id) sl: u32) {
    let lane = sl % 8u;
    let r0 = wid.y * TM;
    let c0 = wid.x * WG * TN + lid.x;
    let xrow = min(r0 + lane, p.n - 1u) * p.inf;
    let xrow2 = min(r0 + 8u + lane, p.n - 1u) * p.inf;
    let lo = p.outf - 1u;
    let wr0 = min(c0 + 0u * WG, lo) * p.inf;
    let wr1 = min(c0 + 1u * WG, lo) * p.inf;
    let wr2 = min(c0 + 2u * WG, lo) * p.inf;
    let wr3 = min(c0 + 3u * WG, lo) * p.inf;
    let wr4 = min(c0 + 4u * WG, lo) * p.inf;
    let wr5 = min(c0 + 5u * WG, lo) * p.inf;
    let wr6 = min(c0 + 6u * WG, lo) * p.inf;
    let wr7 = min(c0 + 7u * WG, lo) * p.inf;
    var acc0_0 = vec4<f32>();
    var acc0_1 = vec4<f32>();
    var acc1_0 = vec4<f32>();
    var acc1_1 = vec4<f32>();
    var acc2_0 = vec4<f32>();
    var acc2_1 = vec4<f32>();
    var acc3_0 = vec4<f32>();
    var acc3_1 = vec4<f32>();
    var acc4_0 = vec4<f32>();
    var acc4_1 = vec4<f32>();
    var acc5_0 = vec4<f32>();
    var acc5_1 = vec4<f32>();
    var acc6_0 = vec4<f32>();
    var acc6_1 = vec4<f32>();
    var acc7_0 = vec4<f32>();
    var acc7_1 = vec4<f32>();
    var acc8_0 = vec4<f32>();
    var acc9_0 = vec4<f32>();
    var acc10_0 = vec4<f32>();
    var acc11_0 = vec4<f32>();
    var acc12_0 = vec4<f32>();
    var acc13_0 = vec4<f32>();
    var acc14_0 = vec4<f32>();
    var acc15_0 = vec4<f32>();
    for (var k = 0u; k < p.inf; k += 4u) {
        let xv = ld_x_k(xrow, k);
        var xv2 = vec4<f32>();
        if (TM > 8u) { xv2 = ld_x_k(xrow2, k); }
        let b0 = ld_w_k(wr0, k);
        let b1 = ld_w_k(wr1, k);
        let b2 = ld_w_k(wr2, k);
        let b3 = ld_w_k(wr3, k);
        // t0<e>: element e of the 4 reduction steps for columns 0..4.
        let t00 = vec4<f32>(b0.x, b1.x, b2.x, b3.x);
        let t01 = vec4<f32>(b0.y, b1.y, b2.y, b3.y);
        let t02 = vec4<f32>(b0.z, b1.z, b2.z, b3.z);
        let t03 = vec4<f32>(b0.w, b1.w, b2.w, b3.w);
        var t10 = vec4<f32>();
        var t11 = vec4<f32>();
        var t12 = vec4<f32>();
        var t13 = vec4<f32>();
        if (TN > 4u) {
            let b4 = ld_w_k(wr4, k);
            let b5 = ld_w_k(wr5, k);
            let b6 = ld_w_k(wr6, k);
            let b7 = ld_w_k(wr7, k);
            t10 = vec4<f32>(b4.x, b5.x, b6.x, b7.x);
            t11 = vec4<f32>(b4.y, b5.y, b6.y, b7.y);
            t12 = vec4<f32>(b4.z, b5.z, b6.z, b7.z);
            t13 = vec4<f32>(b4.w, b5.w, b6.w, b7.w);
        }
        {
            let a = subgroupBroadcast(xv, 0u);
            acc0_0 = fma(vec4<f32>(a.x), t00, fma(vec4<f32>(a.y), t01, fma(vec4<f32>(a.z), t02, fma(vec4<f32>(a.w), t03, acc0_0))));
            if (TN > 4u) { acc0_1 = fma(vec4<f32>(a.x), t10, fma(vec4<f32>(a.y), t11, fma(vec4<f32>(a.z), t12, fma(vec4<f32>(a.w), t13, acc0_1)))); }
        }
        {
            let a = subgroupBroadcast(xv, 1u);
            acc1_0 = fma(vec4<f32>(a.x), t00, fma(vec4<f32>(a.y), t01, fma(vec4<f32>(a.z), t02, fma(vec4<f32>(a.w), t03, acc1_0))));
            if (TN > 4u) { acc1_1 = fma(vec4<f32>(a.x), t10, fma(vec4<f32>(a.y), t11, fma(vec4<f32>(a.z), t12, fma(vec4<f32>(a.w), t13, acc1_1)))); }
        }
        {
            let a = subgroupBroadcast(xv, 2u);
            acc2_0 = fma(vec4<f32>(a.x), t00, fma(vec4<f32>(a.y), t01, fma(vec4<f32>(a.z), t02, fma(vec4<f32>(a.w), t03, acc2_0))));
            if (TN > 4u) { acc2_1 = fma(vec4<f32>(a.x), t10, fma(vec4<f32>(a.y), t11, fma(vec4<f32>(a.z), t12, fma(vec4<f32>(a.w), t13, acc2_1)))); }
        }
        {
            let a = subgroupBroadcast(xv, 3u);
            acc3_0 = fma(vec4<f32>(a.x), t00, fma(vec4<f32>(a.y), t01, fma(vec4<f32>(a.z), t02, fma(vec4<f32>(a.w), t03, acc3_0))));
            if (TN > 4u) { acc3_1 = fma(vec4<f32>(a.x), t10, fma(vec4<f32>(a.y), t11, fma(vec4<f32>(a.z), t12, fma(vec4<f32>(a.w), t13, acc3_1)))); }
        }
        {
            let a = subgroupBroadcast(xv, 4u);
            acc4_0 = fma(vec4<f32>(a.x), t00, fma(vec4<f32>(a.y), t01, fma(vec4<f32>(a.z), t02, fma(vec4<f32>(a.w), t03, acc4_0))));
            if (TN > 4u) { acc4_1 = fma(vec4<f32>(a.x), t10, fma(vec4<f32>(a.y), t11, fma(vec4<f32>(a.z), t12, fma(vec4<f32>(a.w), t13, acc4_1)))); }
        }
        {
            let a = subgroupBroadcast(xv, 5u);
            acc5_0 = fma(vec4<f32>(a.x), t00, fma(vec4<f32>(a.y), t01, fma(vec4<f32>(a.z), t02, fma(vec4<f32>(a.w), t03, acc5_0))));
            if (TN > 4u) { acc5_1 = fma(vec4<f32>(a.x), t10, fma(vec4<f32>(a.y), t11, fma(vec4<f32>(a.z), t12, fma(vec4<f32>(a.w), t13, acc5_1)))); }
        }
        {
            let a = subgroupBroadcast(xv, 6u);
            acc6_0 = fma(vec4<f32>(a.x), t00, fma(vec4<f32>(a.y), t01, fma(vec4<f32>(a.z), t02, fma(vec4<f32>(a.w), t03, acc6_0))));
            if (TN > 4u) { acc6_1 = fma(vec4<f32>(a.x), t10, fma(vec4<f32>(a.y), t11, fma(vec4<f32>(a.z), t12, fma(vec4<f32>(a.w), t13, acc6_1)))); }
        }
        {
            let a = subgroupBroadcast(xv, 7u);
            acc7_0 = fma(vec4<f32>(a.x), t00, fma(vec4<f32>(a.y), t01, fma(vec4<f32>(a.z), t02, fma(vec4<f32>(a.w), t03, acc7_0))));
            if (TN > 4u) { acc7_1 = fma(vec4<f32>(a.x), t10, fma(vec4<f32>(a.y), t11, fma(vec4<f32>(a.z), t12, fma(vec4<f32>(a.w), t13, acc7_1)))); }
        }
        if (TM > 8u) {
            let a = subgroupBroadcast(xv2, 0u);
            acc8_0 = fma(vec4<f32>(a.x), t00, fma(vec4<f32>(a.y), t01, fma(vec4<f32>(a.z), t02, fma(vec4<f32>(a.w), t03, acc8_0))));
        }
        if (TM > 8u) {
            let a = subgroupBroadcast(xv2, 1u);
            acc9_0 = fma(vec4<f32>(a.x), t00, fma(vec4<f32>(a.y), t01, fma(vec4<f32>(a.z), t02, fma(vec4<f32>(a.w), t03, acc9_0))));
        }
        if (TM > 8u) {
            let a = subgroupBroadcast(xv2, 2u);
            acc10_0 = fma(vec4<f32>(a.x), t00, fma(vec4<f32>(a.y), t01, fma(vec4<f32>(a.z), t02, fma(vec4<f32>(a.w), t03, acc10_0))));
        }
        if (TM > 8u) {
            let a = subgroupBroadcast(xv2, 3u);
            acc11_0 = fma(vec4<f32>(a.x), t00, fma(vec4<f32>(a.y), t01, fma(vec4<f32>(a.z), t02, fma(vec4<f32>(a.w), t03, acc11_0))));
        }
        if (TM > 8u) {
            let a = subgroupBroadcast(xv2, 4u);
            acc12_0 = fma(vec4<f32>(a.x), t00, fma(vec4<f32>(a.y), t01, fma(vec4<f32>(a.z), t02, fma(vec4<f32>(a.w), t03, acc12_0))));
        }
        if (TM > 8u) {
            let a = subgroupBroadcast(xv2, 5u);
            acc13_0 = fma(vec4<f32>(a.x), t00, fma(vec4<f32>(a.y), t01, fma(vec4<f32>(a.z), t02, fma(vec4<f32>(a.w), t03, acc13_0))));
        }
        if (TM > 8u) {
            let a = subgroupBroadcast(xv2, 6u);
            acc14_0 = fma(vec4<f32>(a.x), t00, fma(vec4<f32>(a.y), t01, fma(vec4<f32>(a.z), t02, fma(vec4<f32>(a.w), t03, acc14_0))));
        }
        if (TM > 8u) {
            let a = subgroupBroadcast(xv2, 7u);
            acc15_0 = fma(vec4<f32>(a.x), t00, fma(vec4<f32>(a.y), t01, fma(vec4<f32>(a.z), t02, fma(vec4<f32>(a.w), t03, acc15_0))));
        }
    }
    // Stores unrolled with constant accumulator names (a private array indexed in a loop
    // is memory on lavapipe and made the epilogue dominate short reductions).
    st_y(r0 + 0u, c0, 0u, acc0_0);
    if (TN > 4u) { st_y(r0 + 0u, c0, 1u, acc0_1); }
    st_y(r0 + 1u, c0, 0u, acc1_0);
    if (TN > 4u) { st_y(r0 + 1u, c0, 1u, acc1_1); }
    st_y(r0 + 2u, c0, 0u, acc2_0);
    if (TN > 4u) { st_y(r0 + 2u, c0, 1u, acc2_1); }
    st_y(r0 + 3u, c0, 0u, acc3_0);
    if (TN > 4u) { st_y(r0 + 3u, c0, 1u, acc3_1); }
    st_y(r0 + 4u, c0, 0u, acc4_0);
    if (TN > 4u) { st_y(r0 + 4u, c0, 1u, acc4_1); }
    st_y(r0 + 5u, c0, 0u, acc5_0);
    if (TN > 4u) { st_y(r0 + 5u, c0, 1u, acc5_1); }
    st_y(r0 + 6u, c0, 0u, acc6_0);
    if (TN > 4u) { st_y(r0 + 6u, c0, 1u, acc6_1); }
    st_y(r0 + 7u, c0, 0u, acc7_0);
    if (TN > 4u) { st_y(r0 + 7u, c0, 1u, acc7_1); }
    if (TM > 8u) { st_y(r0 + 8u, c0, 0u, acc8_0); }
    if (TM > 8u) { st_y(r0 + 9u, c0, 0u, acc9_0); }
    if (TM > 8u) { st_y(r0 + 10u, c0, 0u, acc10_0); }
    if (TM > 8u) { st_y(r0 + 11u, c0, 0u, acc11_0); }
    if (TM > 8u) { st_y(r0 + 12u, c0, 0u, acc12_0); }
    if (TM > 8u) { st_y(r0 + 13u, c0, 0u, acc13_0); }
    if (TM > 8u) { st_y(r0 + 14u, c0, 0u, acc14_0); }
    if (TM > 8u) { st_y(r0 + 15u, c0, 0u, acc15_0); }
}

// dx[n, i] = sum_o dy[n, o] W[o, i]. Rows n, columns: TN / 4 vec4 blocks of 4 columns,
// block g at 4 * (cv0 + g * WG); reduction over o in steps of 4. Lane l < 8 loads
// dy[r0 + l, o .. o + 4].
@compute @workgroup_size(WG)
fn dense_sg_backward_input(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>, @builtin(subgroup_invocation_id) sl: u32) {
    let lane = sl % 8u;
    let r0 = wid.y * TM;
    let ncv = (p.inf + 3u) / 4u;
    let cv0 = wid.x * WG * (TN / 4u) + lid.x;
    let c0 = min(cv0, ncv - 1u) * 4u;
    let c1 = min(cv0 + WG, ncv - 1u) * 4u;
    let dyrow = min(r0 + lane, p.n - 1u) * p.outf;
    let dyrow2 = min(r0 + 8u + lane, p.n - 1u) * p.outf;
    let lo = p.outf - 1u;
    var acc0_0 = vec4<f32>();
    var acc0_1 = vec4<f32>();
    var acc1_0 = vec4<f32>();
    var acc1_1 = vec4<f32>();
    var acc2_0 = vec4<f32>();
    var acc2_1 = vec4<f32>();
    var acc3_0 = vec4<f32>();
    var acc3_1 = vec4<f32>();
    var acc4_0 = vec4<f32>();
    var acc4_1 = vec4<f32>();
    var acc5_0 = vec4<f32>();
    var acc5_1 = vec4<f32>();
    var acc6_0 = vec4<f32>();
    var acc6_1 = vec4<f32>();
    var acc7_0 = vec4<f32>();
    var acc7_1 = vec4<f32>();
    var acc8_0 = vec4<f32>();
    var acc9_0 = vec4<f32>();
    var acc10_0 = vec4<f32>();
    var acc11_0 = vec4<f32>();
    var acc12_0 = vec4<f32>();
    var acc13_0 = vec4<f32>();
    var acc14_0 = vec4<f32>();
    var acc15_0 = vec4<f32>();
    for (var k = 0u; k < p.outf; k += 4u) {
        let dv = ld_dy_k(dyrow, k);
        var dv2 = vec4<f32>();
        if (TM > 8u) { dv2 = ld_dy_k(dyrow2, k); }
        let o0 = min(k, lo);
        let o1 = min(k + 1u, lo);
        let o2 = min(k + 2u, lo);
        let o3 = min(k + 3u, lo);
        // t<g><e>: W row k + e, column block g.
        let t00 = ld_w_c(o0, c0);
        let t01 = ld_w_c(o1, c0);
        let t02 = ld_w_c(o2, c0);
        let t03 = ld_w_c(o3, c0);
        var t10 = vec4<f32>();
        var t11 = vec4<f32>();
        var t12 = vec4<f32>();
        var t13 = vec4<f32>();
        if (TN > 4u) {
            t10 = ld_w_c(o0, c1);
            t11 = ld_w_c(o1, c1);
            t12 = ld_w_c(o2, c1);
            t13 = ld_w_c(o3, c1);
        }
        {
            let a = subgroupBroadcast(dv, 0u);
            acc0_0 = fma(vec4<f32>(a.x), t00, fma(vec4<f32>(a.y), t01, fma(vec4<f32>(a.z), t02, fma(vec4<f32>(a.w), t03, acc0_0))));
            if (TN > 4u) { acc0_1 = fma(vec4<f32>(a.x), t10, fma(vec4<f32>(a.y), t11, fma(vec4<f32>(a.z), t12, fma(vec4<f32>(a.w), t13, acc0_1)))); }
        }
        {
            let a = subgroupBroadcast(dv, 1u);
            acc1_0 = fma(vec4<f32>(a.x), t00, fma(vec4<f32>(a.y), t01, fma(vec4<f32>(a.z), t02, fma(vec4<f32>(a.w), t03, acc1_0))));
            if (TN > 4u) { acc1_1 = fma(vec4<f32>(a.x), t10, fma(vec4<f32>(a.y), t11, fma(vec4<f32>(a.z), t12, fma(vec4<f32>(a.w), t13, acc1_1)))); }
        }
        {
            let a = subgroupBroadcast(dv, 2u);
            acc2_0 = fma(vec4<f32>(a.x), t00, fma(vec4<f32>(a.y), t01, fma(vec4<f32>(a.z), t02, fma(vec4<f32>(a.w), t03, acc2_0))));
            if (TN > 4u) { acc2_1 = fma(vec4<f32>(a.x), t10, fma(vec4<f32>(a.y), t11, fma(vec4<f32>(a.z), t12, fma(vec4<f32>(a.w), t13, acc2_1)))); }
        }
        {
            let a = subgroupBroadcast(dv, 3u);
            acc3_0 = fma(vec4<f32>(a.x), t00, fma(vec4<f32>(a.y), t01, fma(vec4<f32>(a.z), t02, fma(vec4<f32>(a.w), t03, acc3_0))));
            if (TN > 4u) { acc3_1 = fma(vec4<f32>(a.x), t10, fma(vec4<f32>(a.y), t11, fma(vec4<f32>(a.z), t12, fma(vec4<f32>(a.w), t13, acc3_1)))); }
        }
        {
            let a = subgroupBroadcast(dv, 4u);
            acc4_0 = fma(vec4<f32>(a.x), t00, fma(vec4<f32>(a.y), t01, fma(vec4<f32>(a.z), t02, fma(vec4<f32>(a.w), t03, acc4_0))));
            if (TN > 4u) { acc4_1 = fma(vec4<f32>(a.x), t10, fma(vec4<f32>(a.y), t11, fma(vec4<f32>(a.z), t12, fma(vec4<f32>(a.w), t13, acc4_1)))); }
        }
        {
            let a = subgroupBroadcast(dv, 5u);
            acc5_0 = fma(vec4<f32>(a.x), t00, fma(vec4<f32>(a.y), t01, fma(vec4<f32>(a.z), t02, fma(vec4<f32>(a.w), t03, acc5_0))));
            if (TN > 4u) { acc5_1 = fma(vec4<f32>(a.x), t10, fma(vec4<f32>(a.y), t11, fma(vec4<f32>(a.z), t12, fma(vec4<f32>(a.w), t13, acc5_1)))); }
        }
        {
            let a = subgroupBroadcast(dv, 6u);
            acc6_0 = fma(vec4<f32>(a.x), t00, fma(vec4<f32>(a.y), t01, fma(vec4<f32>(a.z), t02, fma(vec4<f32>(a.w), t03, acc6_0))));
            if (TN > 4u) { acc6_1 = fma(vec4<f32>(a.x), t10, fma(vec4<f32>(a.y), t11, fma(vec4<f32>(a.z), t12, fma(vec4<f32>(a.w), t13, acc6_1)))); }
        }
        {
            let a = subgroupBroadcast(dv, 7u);
            acc7_0 = fma(vec4<f32>(a.x), t00, fma(vec4<f32>(a.y), t01, fma(vec4<f32>(a.z), t02, fma(vec4<f32>(a.w), t03, acc7_0))));
            if (TN > 4u) { acc7_1 = fma(vec4<f32>(a.x), t10, fma(vec4<f32>(a.y), t11, fma(vec4<f32>(a.z), t12, fma(vec4<f32>(a.w), t13, acc7_1)))); }
        }
        if (TM > 8u) {
            let a = subgroupBroadcast(dv2, 0u);
            acc8_0 = fma(vec4<f32>(a.x), t00, fma(vec4<f32>(a.y), t01, fma(vec4<f32>(a.z), t02, fma(vec4<f32>(a.w), t03, acc8_0))));
        }
        if (TM > 8u) {
            let a = subgroupBroadcast(dv2, 1u);
            acc9_0 = fma(vec4<f32>(a.x), t00, fma(vec4<f32>(a.y), t01, fma(vec4<f32>(a.z), t02, fma(vec4<f32>(a.w), t03, acc9_0))));
        }
        if (TM > 8u) {
            let a = subgroupBroadcast(dv2, 2u);
            acc10_0 = fma(vec4<f32>(a.x), t00, fma(vec4<f32>(a.y), t01, fma(vec4<f32>(a.z), t02, fma(vec4<f32>(a.w), t03, acc10_0))));
        }
        if (TM > 8u) {
            let a = subgroupBroadcast(dv2, 3u);
            acc11_0 = fma(vec4<f32>(a.x), t00, fma(vec4<f32>(a.y), t01, fma(vec4<f32>(a.z), t02, fma(vec4<f32>(a.w), t03, acc11_0))));
        }
        if (TM > 8u) {
            let a = subgroupBroadcast(dv2, 4u);
            acc12_0 = fma(vec4<f32>(a.x), t00, fma(vec4<f32>(a.y), t01, fma(vec4<f32>(a.z), t02, fma(vec4<f32>(a.w), t03, acc12_0))));
        }
        if (TM > 8u) {
            let a = subgroupBroadcast(dv2, 5u);
            acc13_0 = fma(vec4<f32>(a.x), t00, fma(vec4<f32>(a.y), t01, fma(vec4<f32>(a.z), t02, fma(vec4<f32>(a.w), t03, acc13_0))));
        }
        if (TM > 8u) {
            let a = subgroupBroadcast(dv2, 6u);
            acc14_0 = fma(vec4<f32>(a.x), t00, fma(vec4<f32>(a.y), t01, fma(vec4<f32>(a.z), t02, fma(vec4<f32>(a.w), t03, acc14_0))));
        }
        if (TM > 8u) {
            let a = subgroupBroadcast(dv2, 7u);
            acc15_0 = fma(vec4<f32>(a.x), t00, fma(vec4<f32>(a.y), t01, fma(vec4<f32>(a.z), t02, fma(vec4<f32>(a.w), t03, acc15_0))));
        }
    }
    st_dx(r0 + 0u, cv0, acc0_0);
    if (TN > 4u) { st_dx(r0 + 0u, cv0 + WG, acc0_1); }
    st_dx(r0 + 1u, cv0, acc1_0);
    if (TN > 4u) { st_dx(r0 + 1u, cv0 + WG, acc1_1); }
    st_dx(r0 + 2u, cv0, acc2_0);
    if (TN > 4u) { st_dx(r0 + 2u, cv0 + WG, acc2_1); }
    st_dx(r0 + 3u, cv0, acc3_0);
    if (TN > 4u) { st_dx(r0 + 3u, cv0 + WG, acc3_1); }
    st_dx(r0 + 4u, cv0, acc4_0);
    if (TN > 4u) { st_dx(r0 + 4u, cv0 + WG, acc4_1); }
    st_dx(r0 + 5u, cv0, acc5_0);
    if (TN > 4u) { st_dx(r0 + 5u, cv0 + WG, acc5_1); }
    st_dx(r0 + 6u, cv0, acc6_0);
    if (TN > 4u) { st_dx(r0 + 6u, cv0 + WG, acc6_1); }
    st_dx(r0 + 7u, cv0, acc7_0);
    if (TN > 4u) { st_dx(r0 + 7u, cv0 + WG, acc7_1); }
    if (TM > 8u) { st_dx(r0 + 8u, cv0, acc8_0); }
    if (TM > 8u) { st_dx(r0 + 9u, cv0, acc9_0); }
    if (TM > 8u) { st_dx(r0 + 10u, cv0, acc10_0); }
    if (TM > 8u) { st_dx(r0 + 11u, cv0, acc11_0); }
    if (TM > 8u) { st_dx(r0 + 12u, cv0, acc12_0); }
    if (TM > 8u) { st_dx(r0 + 13u, cv0, acc13_0); }
    if (TM > 8u) { st_dx(r0 + 14u, cv0, acc14_0); }
    if (TM > 8u) { st_dx(r0 + 15u, cv0, acc15_0); }
}

// dW[o, i] = sum_n dy[n, o] x[n, i]. Rows o, columns as in dense_sg_backward_input,
// reduction over n in steps of 4. Lane l < 8 loads dy[n + l % 4, r0 + 4 (l / 4) .. + 4]
// (4 rows); broadcast kk + 4h gives rows 4h .. 4h + 4 at reduction step n + kk.
@compute @workgroup_size(WG)
fn dense_sg_backward_weight(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>, @builtin(subgroup_invocation_id) sl: u32) {
    let lane = sl % 8u;
    let kl = lane % 4u;
    let r0 = wid.y * TM;
    let orow = r0 + 4u * (lane / 4u);
    let ncv = (p.inf + 3u) / 4u;
    let cv0 = wid.x * WG * (TN / 4u) + lid.x;
    let c0 = min(cv0, ncv - 1u) * 4u;
    let c1 = min(cv0 + WG, ncv - 1u) * 4u;
    let ln = p.n - 1u;
    var acc0_0 = vec4<f32>();
    var acc0_1 = vec4<f32>();
    var acc1_0 = vec4<f32>();
    var acc1_1 = vec4<f32>();
    var acc2_0 = vec4<f32>();
    var acc2_1 = vec4<f32>();
    var acc3_0 = vec4<f32>();
    var acc3_1 = vec4<f32>();
    var acc4_0 = vec4<f32>();
    var acc4_1 = vec4<f32>();
    var acc5_0 = vec4<f32>();
    var acc5_1 = vec4<f32>();
    var acc6_0 = vec4<f32>();
    var acc6_1 = vec4<f32>();
    var acc7_0 = vec4<f32>();
    var acc7_1 = vec4<f32>();
    var acc8_0 = vec4<f32>();
    var acc9_0 = vec4<f32>();
    var acc10_0 = vec4<f32>();
    var acc11_0 = vec4<f32>();
    var acc12_0 = vec4<f32>();
    var acc13_0 = vec4<f32>();
    var acc14_0 = vec4<f32>();
    var acc15_0 = vec4<f32>();
    for (var k = 0u; k < p.n; k += 4u) {
        let dv = ld_dy_rows(k + kl, orow);
        var dv2 = vec4<f32>();
        if (TM > 8u) { dv2 = ld_dy_rows(k + kl, orow + 8u); }
        let n0 = min(k, ln);
        let n1 = min(k + 1u, ln);
        let n2 = min(k + 2u, ln);
        let n3 = min(k + 3u, ln);
        // t<g><e>: x row k + e, column block g.
        let t00 = ld_x_c(n0, c0);
        let t01 = ld_x_c(n1, c0);
        let t02 = ld_x_c(n2, c0);
        let t03 = ld_x_c(n3, c0);
        var t10 = vec4<f32>();
        var t11 = vec4<f32>();
        var t12 = vec4<f32>();
        var t13 = vec4<f32>();
        if (TN > 4u) {
            t10 = ld_x_c(n0, c1);
            t11 = ld_x_c(n1, c1);
            t12 = ld_x_c(n2, c1);
            t13 = ld_x_c(n3, c1);
        }
        {
            let s0 = subgroupBroadcast(dv, 0u);
            let s1 = subgroupBroadcast(dv, 1u);
            let s2 = subgroupBroadcast(dv, 2u);
            let s3 = subgroupBroadcast(dv, 3u);
            acc0_0 = fma(vec4<f32>(s0.x), t00, fma(vec4<f32>(s1.x), t01, fma(vec4<f32>(s2.x), t02, fma(vec4<f32>(s3.x), t03, acc0_0))));
            if (TN > 4u) { acc0_1 = fma(vec4<f32>(s0.x), t10, fma(vec4<f32>(s1.x), t11, fma(vec4<f32>(s2.x), t12, fma(vec4<f32>(s3.x), t13, acc0_1)))); }
            acc1_0 = fma(vec4<f32>(s0.y), t00, fma(vec4<f32>(s1.y), t01, fma(vec4<f32>(s2.y), t02, fma(vec4<f32>(s3.y), t03, acc1_0))));
            if (TN > 4u) { acc1_1 = fma(vec4<f32>(s0.y), t10, fma(vec4<f32>(s1.y), t11, fma(vec4<f32>(s2.y), t12, fma(vec4<f32>(s3.y), t13, acc1_1)))); }
            acc2_0 = fma(vec4<f32>(s0.z), t00, fma(vec4<f32>(s1.z), t01, fma(vec4<f32>(s2.z), t02, fma(vec4<f32>(s3.z), t03, acc2_0))));
            if (TN > 4u) { acc2_1 = fma(vec4<f32>(s0.z), t10, fma(vec4<f32>(s1.z), t11, fma(vec4<f32>(s2.z), t12, fma(vec4<f32>(s3.z), t13, acc2_1)))); }
            acc3_0 = fma(vec4<f32>(s0.w), t00, fma(vec4<f32>(s1.w), t01, fma(vec4<f32>(s2.w), t02, fma(vec4<f32>(s3.w), t03, acc3_0))));
            if (TN > 4u) { acc3_1 = fma(vec4<f32>(s0.w), t10, fma(vec4<f32>(s1.w), t11, fma(vec4<f32>(s2.w), t12, fma(vec4<f32>(s3.w), t13, acc3_1)))); }
        }
        {
            let s0 = subgroupBroadcast(dv, 4u);
            let s1 = subgroupBroadcast(dv, 5u);
            let s2 = subgroupBroadcast(dv, 6u);
            let s3 = subgroupBroadcast(dv, 7u);
            acc4_0 = fma(vec4<f32>(s0.x), t00, fma(vec4<f32>(s1.x), t01, fma(vec4<f32>(s2.x), t02, fma(vec4<f32>(s3.x), t03, acc4_0))));
            if (TN > 4u) { acc4_1 = fma(vec4<f32>(s0.x), t10, fma(vec4<f32>(s1.x), t11, fma(vec4<f32>(s2.x), t12, fma(vec4<f32>(s3.x), t13, acc4_1)))); }
            acc5_0 = fma(vec4<f32>(s0.y), t00, fma(vec4<f32>(s1.y), t01, fma(vec4<f32>(s2.y), t02, fma(vec4<f32>(s3.y), t03, acc5_0))));
            if (TN > 4u) { acc5_1 = fma(vec4<f32>(s0.y), t10, fma(vec4<f32>(s1.y), t11, fma(vec4<f32>(s2.y), t12, fma(vec4<f32>(s3.y), t13, acc5_1)))); }
            acc6_0 = fma(vec4<f32>(s0.z), t00, fma(vec4<f32>(s1.z), t01, fma(vec4<f32>(s2.z), t02, fma(vec4<f32>(s3.z), t03, acc6_0))));
            if (TN > 4u) { acc6_1 = fma(vec4<f32>(s0.z), t10, fma(vec4<f32>(s1.z), t11, fma(vec4<f32>(s2.z), t12, fma(vec4<f32>(s3.z), t13, acc6_1)))); }
            acc7_0 = fma(vec4<f32>(s0.w), t00, fma(vec4<f32>(s1.w), t01, fma(vec4<f32>(s2.w), t02, fma(vec4<f32>(s3.w), t03, acc7_0))));
            if (TN > 4u) { acc7_1 = fma(vec4<f32>(s0.w), t10, fma(vec4<f32>(s1.w), t11, fma(vec4<f32>(s2.w), t12, fma(vec4<f32>(s3.w), t13, acc7_1)))); }
        }
        if (TM > 8u) {
            {
                let s0 = subgroupBroadcast(dv2, 0u);
                let s1 = subgroupBroadcast(dv2, 1u);
                let s2 = subgroupBroadcast(dv2, 2u);
                let s3 = subgroupBroadcast(dv2, 3u);
                acc8_0 = fma(vec4<f32>(s0.x), t00, fma(vec4<f32>(s1.x), t01, fma(vec4<f32>(s2.x), t02, fma(vec4<f32>(s3.x), t03, acc8_0))));
                acc9_0 = fma(vec4<f32>(s0.y), t00, fma(vec4<f32>(s1.y), t01, fma(vec4<f32>(s2.y), t02, fma(vec4<f32>(s3.y), t03, acc9_0))));
                acc10_0 = fma(vec4<f32>(s0.z), t00, fma(vec4<f32>(s1.z), t01, fma(vec4<f32>(s2.z), t02, fma(vec4<f32>(s3.z), t03, acc10_0))));
                acc11_0 = fma(vec4<f32>(s0.w), t00, fma(vec4<f32>(s1.w), t01, fma(vec4<f32>(s2.w), t02, fma(vec4<f32>(s3.w), t03, acc11_0))));
            }
            {
                let s0 = subgroupBroadcast(dv2, 4u);
                let s1 = subgroupBroadcast(dv2, 5u);
                let s2 = subgroupBroadcast(dv2, 6u);
                let s3 = subgroupBroadcast(dv2, 7u);
                acc12_0 = fma(vec4<f32>(s0.x), t00, fma(vec4<f32>(s1.x), t01, fma(vec4<f32>(s2.x), t02, fma(vec4<f32>(s3.x), t03, acc12_0))));
                acc13_0 = fma(vec4<f32>(s0.y), t00, fma(vec4<f32>(s1.y), t01, fma(vec4<f32>(s2.y), t02, fma(vec4<f32>(s3.y), t03, acc13_0))));
                acc14_0 = fma(vec4<f32>(s0.z), t00, fma(vec4<f32>(s1.z), t01, fma(vec4<f32>(s2.z), t02, fma(vec4<f32>(s3.z), t03, acc14_0))));
                acc15_0 = fma(vec4<f32>(s0.w), t00, fma(vec4<f32>(s1.w), t01, fma(vec4<f32>(s2.w), t02, fma(vec4<f32>(s3.w), t03, acc15_0))));
            }
        }
    }
    st_dw(r0 + 0u, cv0, acc0_0);
    if (TN > 4u) { st_dw(r0 + 0u, cv0 + WG, acc0_1); }
    st_dw(r0 + 1u, cv0, acc1_0);
    if (TN > 4u) { st_dw(r0 + 1u, cv0 + WG, acc1_1); }
    st_dw(r0 + 2u, cv0, acc2_0);
    if (TN > 4u) { st_dw(r0 + 2u, cv0 + WG, acc2_1); }
    st_dw(r0 + 3u, cv0, acc3_0);
    if (TN > 4u) { st_dw(r0 + 3u, cv0 + WG, acc3_1); }
    st_dw(r0 + 4u, cv0, acc4_0);
    if (TN > 4u) { st_dw(r0 + 4u, cv0 + WG, acc4_1); }
    st_dw(r0 + 5u, cv0, acc5_0);
    if (TN > 4u) { st_dw(r0 + 5u, cv0 + WG, acc5_1); }
    st_dw(r0 + 6u, cv0, acc6_0);
    if (TN > 4u) { st_dw(r0 + 6u, cv0 + WG, acc6_1); }
    st_dw(r0 + 7u, cv0, acc7_0);
    if (TN > 4u) { st_dw(r0 + 7u, cv0 + WG, acc7_1); }
    if (TM > 8u) { st_dw(r0 + 8u, cv0, acc8_0); }
    if (TM > 8u) { st_dw(r0 + 9u, cv0, acc9_0); }
    if (TM > 8u) { st_dw(r0 + 10u, cv0, acc10_0); }
    if (TM > 8u) { st_dw(r0 + 11u, cv0, acc11_0); }
    if (TM > 8u) { st_dw(r0 + 12u, cv0, acc12_0); }
    if (TM > 8u) { st_dw(r0 + 13u, cv0, acc13_0); }
    if (TM > 8u) { st_dw(r0 + 14u, cv0, acc14_0); }
    if (TM > 8u) { st_dw(r0 + 15u, cv0, acc15_0); }
}
