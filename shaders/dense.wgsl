// Dense (fully connected): y = x W^T + b.
//
// Shapes: N batch, I in_features, O out_features.
// x, dx [N, I] (any input shape holding N*I values, read flat row-major: flatten is a view);
// W, dW [O, I] (PyTorch order); b, db [O]; y, dy [N, O].
//
// dense_forward          y  = x W^T + b                  overwrites y
// dense_backward_input   dx = dy W                       overwrites dx
// dense_backward_weight  dW = dy^T x   (sum over n)      overwrites, or adds with ACCUMULATE
// dense_backward_bias    db = sum_n dy                   overwrites, or adds with ACCUMULATE
//
// The three GEMMs are register-blocked: an invocation computes a TM x TN block of its
// output (TM rows x TN columns, each 1..=4) in registers, loading TM + TN values per
// reduction step for TM * TN multiply-adds. Grid: [column groups, row blocks, 1]. A
// workgroup owns rows r0 .. r0 + TM (r0 = workgroup_id.y * TM), so the row operand's
// addresses are uniform across the workgroup (one broadcast load on SIMD CPUs, scalar
// loads on GPUs); its WG invocations own columns interleaved as c0 + j * WG (j < TN), so
// neighbouring invocations read neighbouring addresses of the column operand. Edge blocks
// clamp load indices to the last row / column (in bounds, no branches in the inner loop)
// and skip out-of-range stores. The accumulators are 4 vec4 (row r, column j) and the
// `if (TM > r)` / `if (TN > j)` tests are constants once the pipeline resolves the
// overrides (loops over private arrays ran 2x slower on lavapipe). No workgroup memory
// here (the CPU Vulkan driver runs barriers slowly); dense_tiled (end of file) is the
// workgroup-memory variant, dense_subgroup.wgsl the subgroup-broadcast one.

struct Params {
    n: u32,         // N
    inf: u32,       // I
    outf: u32,      // O
    has_bias: u32,  // 0: no bias (the bias binding then aliases W and is not read)
}

// Register block: TM rows x TN columns per invocation, each in 1..=4.
override TM: u32 = 4u;
override TN: u32 = 4u;
override WG: u32 = 64u;
override ACCUMULATE: bool = false;
// Rows per invocation of the uniform-operand GEMMs: 4, 8 or 16.
override TMU: u32 = 16u;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> w: array<f32>;
@group(0) @binding(3) var<storage, read> b: array<f32>;
@group(0) @binding(4) var<storage, read_write> y: array<f32>;
@group(0) @binding(5) var<storage, read_write> dx: array<f32>;
@group(0) @binding(6) var<storage, read_write> dw: array<f32>;
@group(0) @binding(7) var<storage, read_write> db: array<f32>;
@group(0) @binding(8) var<storage, read> dy: array<f32>;

// Index of the TM rows of this workgroup's block (clamped to the last row), times `stride`.
fn rows(r0: u32, nrows: u32, stride: u32) -> vec4<u32> {
    let last = nrows - 1u;
    return vec4<u32>(min(r0, last), min(r0 + 1u, last), min(r0 + 2u, last), min(r0 + 3u, last)) * stride;
}

// Index of this invocation's TN columns (c0 + j * WG, clamped to the last column), times
// `stride`.
fn cols(c0: u32, ncols: u32, stride: u32) -> vec4<u32> {
    let last = ncols - 1u;
    return vec4<u32>(min(c0, last), min(c0 + WG, last), min(c0 + 2u * WG, last), min(c0 + 3u * WG, last)) * stride;
}

// The accumulators of a block are four vec4 locals: acc<r>[j] is output (r0 + r, c0 + j * WG).
// They become an array only after the reduction loop (for the stores): an array indexed
// inside the loop may be kept in memory.

// y[n, o] = b[o] + sum_i x[n, i] W[o, i]. Rows n (N), columns o (O), reduction over i.
// Both operands are contiguous along i: an invocation walks TN rows of W.
@compute @workgroup_size(WG)
fn dense_forward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let r0 = wid.y * TM;
    let c0 = wid.x * WG * TN + lid.x;
    let xr = rows(r0, p.n, p.inf);
    let wr = cols(c0, p.outf, p.inf);
    var acc0 = vec4<f32>();
    var acc1 = vec4<f32>();
    var acc2 = vec4<f32>();
    var acc3 = vec4<f32>();
    for (var i = 0u; i < p.inf; i++) {
        var a = vec4<f32>(x[xr.x + i], 0.0, 0.0, 0.0);
        if (TM > 1u) { a.y = x[xr.y + i]; }
        if (TM > 2u) { a.z = x[xr.z + i]; }
        if (TM > 3u) { a.w = x[xr.w + i]; }
        var bv = vec4<f32>(w[wr.x + i], 0.0, 0.0, 0.0);
        if (TN > 1u) { bv.y = w[wr.y + i]; }
        if (TN > 2u) { bv.z = w[wr.z + i]; }
        if (TN > 3u) { bv.w = w[wr.w + i]; }
        acc0 = fma(vec4<f32>(a.x), bv, acc0);
        if (TM > 1u) { acc1 = fma(vec4<f32>(a.y), bv, acc1); }
        if (TM > 2u) { acc2 = fma(vec4<f32>(a.z), bv, acc2); }
        if (TM > 3u) { acc3 = fma(vec4<f32>(a.w), bv, acc3); }
    }
    var acc = array<vec4<f32>, 4>(acc0, acc1, acc2, acc3);
    for (var j = 0u; j < TN; j++) {
        let o = c0 + j * WG;
        if (o >= p.outf) { break; }
        var bias = 0.0;
        if (p.has_bias != 0u) { bias = b[o]; }
        for (var r = 0u; r < TM; r++) {
            let n = r0 + r;
            if (n >= p.n) { break; }
            y[n * p.outf + o] = acc[r][j] + bias;
        }
    }
}

// dx[n, i] = sum_o dy[n, o] W[o, i]. Rows n (N), columns i (I), reduction over o.
@compute @workgroup_size(WG)
fn dense_backward_input(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let r0 = wid.y * TM;
    let c0 = wid.x * WG * TN + lid.x;
    let dyr = rows(r0, p.n, p.outf);
    let wc = cols(c0, p.inf, 1u);
    var acc0 = vec4<f32>();
    var acc1 = vec4<f32>();
    var acc2 = vec4<f32>();
    var acc3 = vec4<f32>();
    for (var o = 0u; o < p.outf; o++) {
        var a = vec4<f32>(dy[dyr.x + o], 0.0, 0.0, 0.0);
        if (TM > 1u) { a.y = dy[dyr.y + o]; }
        if (TM > 2u) { a.z = dy[dyr.z + o]; }
        if (TM > 3u) { a.w = dy[dyr.w + o]; }
        let wb = o * p.inf;
        var bv = vec4<f32>(w[wb + wc.x], 0.0, 0.0, 0.0);
        if (TN > 1u) { bv.y = w[wb + wc.y]; }
        if (TN > 2u) { bv.z = w[wb + wc.z]; }
        if (TN > 3u) { bv.w = w[wb + wc.w]; }
        acc0 = fma(vec4<f32>(a.x), bv, acc0);
        if (TM > 1u) { acc1 = fma(vec4<f32>(a.y), bv, acc1); }
        if (TM > 2u) { acc2 = fma(vec4<f32>(a.z), bv, acc2); }
        if (TM > 3u) { acc3 = fma(vec4<f32>(a.w), bv, acc3); }
    }
    var acc = array<vec4<f32>, 4>(acc0, acc1, acc2, acc3);
    for (var r = 0u; r < TM; r++) {
        let n = r0 + r;
        if (n >= p.n) { break; }
        for (var j = 0u; j < TN; j++) {
            let i = c0 + j * WG;
            if (i >= p.inf) { break; }
            dx[n * p.inf + i] = acc[r][j];
        }
    }
}

// dW[o, i] = sum_n dy[n, o] x[n, i]. Rows o (O), columns i (I), reduction over n (usually
// short: the batch or a chunk of it, while O * I is large, so the grid is wide).
@compute @workgroup_size(WG)
fn dense_backward_weight(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let r0 = wid.y * TM;
    let c0 = wid.x * WG * TN + lid.x;
    let orow = rows(r0, p.outf, 1u);
    let xc = cols(c0, p.inf, 1u);
    var acc0 = vec4<f32>();
    var acc1 = vec4<f32>();
    var acc2 = vec4<f32>();
    var acc3 = vec4<f32>();
    for (var n = 0u; n < p.n; n++) {
        let db0 = n * p.outf;
        var a = vec4<f32>(dy[db0 + orow.x], 0.0, 0.0, 0.0);
        if (TM > 1u) { a.y = dy[db0 + orow.y]; }
        if (TM > 2u) { a.z = dy[db0 + orow.z]; }
        if (TM > 3u) { a.w = dy[db0 + orow.w]; }
        let xb = n * p.inf;
        var bv = vec4<f32>(x[xb + xc.x], 0.0, 0.0, 0.0);
        if (TN > 1u) { bv.y = x[xb + xc.y]; }
        if (TN > 2u) { bv.z = x[xb + xc.z]; }
        if (TN > 3u) { bv.w = x[xb + xc.w]; }
        acc0 = fma(vec4<f32>(a.x), bv, acc0);
        if (TM > 1u) { acc1 = fma(vec4<f32>(a.y), bv, acc1); }
        if (TM > 2u) { acc2 = fma(vec4<f32>(a.z), bv, acc2); }
        if (TM > 3u) { acc3 = fma(vec4<f32>(a.w), bv, acc3); }
    }
    var acc = array<vec4<f32>, 4>(acc0, acc1, acc2, acc3);
    for (var r = 0u; r < TM; r++) {
        let o = r0 + r;
        if (o >= p.outf) { break; }
        for (var j = 0u; j < TN; j++) {
            let i = c0 + j * WG;
            if (i >= p.inf) { break; }
            let k = o * p.inf + i;
            dw[k] = select(0.0, dw[k], ACCUMULATE) + acc[r][j];
        }
    }
}

// db[o] = sum_n dy[n, o]. One invocation per o (neighbours read neighbouring dy values).
@compute @workgroup_size(WG)
fn dense_backward_bias(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let o = flat(gid, nwg);
    if (o >= p.outf) { return; }
    var acc = 0.0;
    for (var n = 0u; n < p.n; n++) {
        acc += dy[n * p.outf + o];
    }
    db[o] = select(0.0, db[o], ACCUMULATE) + acc;
}

// ---- Uniform-operand GEMMs (the `*_dispatches` methods) ----
//
// On lavapipe a storage load is a per-lane loop while a uniform load at a workgroup-uniform
// offset is one load + broadcast. So the operand every lane of a workgroup shares (the
// batch rows: x in forward, dy in dx and dW) is copied into <= 64 KiB uniform windows and
// the lane-specific operand (W, or x in dW) is read from storage as vec4 feeding a block of
// TM rows.
//
// dense_pack (one dispatch per pass) overwrites upack: chunk c (window c, 16384 floats) of
// a source matrix viewed as U[k, r] = src[k * SK + r * SR] (k: reduction index, r: row of
// the output) holds U[KB * (c / NRB) + kk, RP * (c % NRB) + rr] at kk * RP + rr, zero
// outside [0, K) x [0, R) (so the GEMMs need no bounds tests on U).
// Then one dispatch per chunk, rows r0 .. r0 + RP, reduction k0 .. k0 + kn; grid
// [column groups, RP / TM, 1], a workgroup owns TM rows (uniform U offsets):
// dense_u_axpy  C[r, c..c+4] (+)= sum_kk U[kk, r] S4[(k0 + kk) * LD / 4 + c / 4]: one vec4
//               column block x TM rows per invocation.
//               dx: C = dx, U = dy^T (k = o), S = W [O, I].   dW: C = dW, U = dy (k = n), S = x.
// dense_u_dot   C[r, o] (+)= sum_kk U[kk, r] S[o * LD + k0 + kk] (+ b[o] when ch.bias):
//               TN = 2 columns o0 + j * WG x TM rows per invocation, S read as vec4 along k.
//               forward: C = y, U = x^T (k = i), S = W.
// Both overwrite C (ACCUMULATE false: the first reduction chunk of a pass) or add to it
// (later chunks, or a gradient accumulated over batch chunks).

struct Pack {
    rows: u32,   // R
    red: u32,    // K
    rp: u32,     // RP: rows per chunk (multiple of 16)
    kb: u32,     // KB: reduction indices per chunk
    nrb: u32,    // row chunks
    sk: u32,     // SK
    sr: u32,     // SR
    total: u32,  // chunks * 16384
}

struct Chunk {
    rows: u32,  // rows of C
    cols: u32,  // columns of C (a multiple of 4 for dense_u_axpy)
    k0: u32,    // first reduction index (a multiple of 4)
    kn: u32,    // reduction length (a multiple of 4 for dense_u_dot)
    r0: u32,    // first row
    rp: u32,    // RP
    ld: u32,    // LD (a multiple of 4)
    bias: u32,  // 1: add b (dense_u_dot)
}

const CHUNK: u32 = 16384u;  // floats per uniform window (64 KiB)

@group(0) @binding(9) var<storage, read> psrc: array<f32>;
@group(0) @binding(10) var<storage, read_write> upack: array<f32>;
@group(0) @binding(11) var<uniform> pk: Pack;
@group(0) @binding(12) var<uniform> u: array<vec4<f32>, 4096>;
@group(0) @binding(13) var<uniform> ch: Chunk;
@group(0) @binding(14) var<storage, read> s4: array<vec4<f32>>;
@group(0) @binding(15) var<storage, read_write> cout: array<f32>;

@compute @workgroup_size(WG)
fn dense_pack(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat(gid, nwg);
    if (i >= pk.total) { return; }
    let c = i / CHUNK;
    let within = i % CHUNK;
    let kk = within / pk.rp;
    let rr = within % pk.rp;
    let r = (c % pk.nrb) * pk.rp + rr;
    let k = (c / pk.nrb) * pk.kb + kk;
    var v = 0.0;
    if (kk < pk.kb && r < pk.rows && k < pk.red) {
        v = psrc[k * pk.sk + r * pk.sr];
    }
    upack[i] = v;
}

// Row q of this invocation's block is rl + q (local to the chunk); column block cv.
fn store_axpy(rl: u32, cv: u32, q: u32, v: vec4<f32>) {
    let r = ch.r0 + rl + q;
    if (r >= ch.rows || rl + q >= ch.rp) { return; }
    let o = r * ch.cols + cv * 4u;
    if (ACCUMULATE) {
        cout[o] += v.x;
        cout[o + 1u] += v.y;
        cout[o + 2u] += v.z;
        cout[o + 3u] += v.w;
    } else {
        cout[o] = v.x;
        cout[o + 1u] = v.y;
        cout[o + 2u] = v.z;
        cout[o + 3u] = v.w;
    }
}

@compute @workgroup_size(WG)
fn dense_u_axpy(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let ncv = ch.cols / 4u;
    let cv_raw = wid.x * WG + lid.x;
    let cv = min(cv_raw, ncv - 1u);
    let rl = wid.y * TMU;
    let ld4 = ch.ld / 4u;
    let rpv = ch.rp / 4u;
    var so = ch.k0 * ld4 + cv;
    var uo = rl / 4u;
    var a0 = vec4<f32>();
    var a1 = vec4<f32>();
    var a2 = vec4<f32>();
    var a3 = vec4<f32>();
    var a4 = vec4<f32>();
    var a5 = vec4<f32>();
    var a6 = vec4<f32>();
    var a7 = vec4<f32>();
    var a8 = vec4<f32>();
    var a9 = vec4<f32>();
    var a10 = vec4<f32>();
    var a11 = vec4<f32>();
    var a12 = vec4<f32>();
    var a13 = vec4<f32>();
    var a14 = vec4<f32>();
    var a15 = vec4<f32>();
    for (var kk = 0u; kk < ch.kn; kk++) {
        let s = s4[so];
        let u0 = u[uo];
        a0 = fma(vec4<f32>(u0.x), s, a0);
        a1 = fma(vec4<f32>(u0.y), s, a1);
        a2 = fma(vec4<f32>(u0.z), s, a2);
        a3 = fma(vec4<f32>(u0.w), s, a3);
        if (TMU > 4u) {
            let u1 = u[uo + 1u];
            a4 = fma(vec4<f32>(u1.x), s, a4);
            a5 = fma(vec4<f32>(u1.y), s, a5);
            a6 = fma(vec4<f32>(u1.z), s, a6);
            a7 = fma(vec4<f32>(u1.w), s, a7);
        }
        if (TMU > 8u) {
            let u2 = u[uo + 2u];
            a8 = fma(vec4<f32>(u2.x), s, a8);
            a9 = fma(vec4<f32>(u2.y), s, a9);
            a10 = fma(vec4<f32>(u2.z), s, a10);
            a11 = fma(vec4<f32>(u2.w), s, a11);
            let u3 = u[uo + 3u];
            a12 = fma(vec4<f32>(u3.x), s, a12);
            a13 = fma(vec4<f32>(u3.y), s, a13);
            a14 = fma(vec4<f32>(u3.z), s, a14);
            a15 = fma(vec4<f32>(u3.w), s, a15);
        }
        so += ld4;
        uo += rpv;
    }
    if (cv_raw >= ncv) { return; }
    store_axpy(rl, cv, 0u, a0);
    store_axpy(rl, cv, 1u, a1);
    store_axpy(rl, cv, 2u, a2);
    store_axpy(rl, cv, 3u, a3);
    if (TMU > 4u) {
        store_axpy(rl, cv, 4u, a4);
        store_axpy(rl, cv, 5u, a5);
        store_axpy(rl, cv, 6u, a6);
        store_axpy(rl, cv, 7u, a7);
    }
    if (TMU > 8u) {
        store_axpy(rl, cv, 8u, a8);
        store_axpy(rl, cv, 9u, a9);
        store_axpy(rl, cv, 10u, a10);
        store_axpy(rl, cv, 11u, a11);
        store_axpy(rl, cv, 12u, a12);
        store_axpy(rl, cv, 13u, a13);
        store_axpy(rl, cv, 14u, a14);
        store_axpy(rl, cv, 15u, a15);
    }
}

// Rows rl + 4q .. rl + 4q + 4 of column o: v.
fn store_dot(rl: u32, q: u32, o: u32, v: vec4<f32>) {
    if (o >= ch.cols) { return; }
    var bias = 0.0;
    if (ch.bias != 0u) { bias = b[o]; }
    for (var e = 0u; e < 4u; e++) {
        let rloc = rl + 4u * q + e;
        let r = ch.r0 + rloc;
        if (r >= ch.rows || rloc >= ch.rp) { return; }
        let k = r * ch.cols + o;
        cout[k] = select(0.0, cout[k], ACCUMULATE) + v[e] + bias;
    }
}

@compute @workgroup_size(WG)
fn dense_u_dot(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let o0 = wid.x * WG * 2u + lid.x;
    let o1 = o0 + WG;
    let last = ch.cols - 1u;
    let ld4 = ch.ld / 4u;
    var sa = min(o0, last) * ld4 + ch.k0 / 4u;
    var sb = min(o1, last) * ld4 + ch.k0 / 4u;
    let rl = wid.y * TMU;
    let rpv = ch.rp / 4u;
    var uo = rl / 4u;
    // a<j><q>: column j, rows rl + 4q ..
    var a00 = vec4<f32>();
    var a01 = vec4<f32>();
    var a02 = vec4<f32>();
    var a03 = vec4<f32>();
    var a10 = vec4<f32>();
    var a11 = vec4<f32>();
    var a12 = vec4<f32>();
    var a13 = vec4<f32>();
    for (var kq = 0u; kq < ch.kn; kq += 4u) {
        let wa = s4[sa];
        let wb = s4[sb];
        // The 4 reduction indices of the vec4s, unrolled.
        {
            let u0 = u[uo];
            a00 = fma(u0, vec4<f32>(wa.x), a00);
            a10 = fma(u0, vec4<f32>(wb.x), a10);
            if (TMU > 4u) {
                let u1 = u[uo + 1u];
                a01 = fma(u1, vec4<f32>(wa.x), a01);
                a11 = fma(u1, vec4<f32>(wb.x), a11);
            }
            if (TMU > 8u) {
                let u2 = u[uo + 2u];
                a02 = fma(u2, vec4<f32>(wa.x), a02);
                a12 = fma(u2, vec4<f32>(wb.x), a12);
                let u3 = u[uo + 3u];
                a03 = fma(u3, vec4<f32>(wa.x), a03);
                a13 = fma(u3, vec4<f32>(wb.x), a13);
            }
            uo += rpv;
        }
        {
            let u0 = u[uo];
            a00 = fma(u0, vec4<f32>(wa.y), a00);
            a10 = fma(u0, vec4<f32>(wb.y), a10);
            if (TMU > 4u) {
                let u1 = u[uo + 1u];
                a01 = fma(u1, vec4<f32>(wa.y), a01);
                a11 = fma(u1, vec4<f32>(wb.y), a11);
            }
            if (TMU > 8u) {
                let u2 = u[uo + 2u];
                a02 = fma(u2, vec4<f32>(wa.y), a02);
                a12 = fma(u2, vec4<f32>(wb.y), a12);
                let u3 = u[uo + 3u];
                a03 = fma(u3, vec4<f32>(wa.y), a03);
                a13 = fma(u3, vec4<f32>(wb.y), a13);
            }
            uo += rpv;
        }
        {
            let u0 = u[uo];
            a00 = fma(u0, vec4<f32>(wa.z), a00);
            a10 = fma(u0, vec4<f32>(wb.z), a10);
            if (TMU > 4u) {
                let u1 = u[uo + 1u];
                a01 = fma(u1, vec4<f32>(wa.z), a01);
                a11 = fma(u1, vec4<f32>(wb.z), a11);
            }
            if (TMU > 8u) {
                let u2 = u[uo + 2u];
                a02 = fma(u2, vec4<f32>(wa.z), a02);
                a12 = fma(u2, vec4<f32>(wb.z), a12);
                let u3 = u[uo + 3u];
                a03 = fma(u3, vec4<f32>(wa.z), a03);
                a13 = fma(u3, vec4<f32>(wb.z), a13);
            }
            uo += rpv;
        }
        {
            let u0 = u[uo];
            a00 = fma(u0, vec4<f32>(wa.w), a00);
            a10 = fma(u0, vec4<f32>(wb.w), a10);
            if (TMU > 4u) {
                let u1 = u[uo + 1u];
                a01 = fma(u1, vec4<f32>(wa.w), a01);
                a11 = fma(u1, vec4<f32>(wb.w), a11);
            }
            if (TMU > 8u) {
                let u2 = u[uo + 2u];
                a02 = fma(u2, vec4<f32>(wa.w), a02);
                a12 = fma(u2, vec4<f32>(wb.w), a12);
                let u3 = u[uo + 3u];
                a03 = fma(u3, vec4<f32>(wa.w), a03);
                a13 = fma(u3, vec4<f32>(wb.w), a13);
            }
            uo += rpv;
        }
        sa += 1u;
        sb += 1u;
    }
    store_dot(rl, 0u, o0, a00);
    store_dot(rl, 0u, o1, a10);
    if (TMU > 4u) {
        store_dot(rl, 1u, o0, a01);
        store_dot(rl, 1u, o1, a11);
    }
    if (TMU > 8u) {
        store_dot(rl, 2u, o0, a02);
        store_dot(rl, 2u, o1, a12);
        store_dot(rl, 3u, o0, a03);
        store_dot(rl, 3u, o1, a13);
    }
}

// ---- Workgroup-memory tiled GEMM (for GPUs with fast shared memory; slow on lavapipe) ----
//
// dense_tiled  C[r, c] (+)= sum_k A(r, k) B(k, c) (+ b[c] when has_bias), with
//              A(r, k) = ta_src[r * SAR + k * SAK], B(k, c) = tb_src[k * SBK + c * SBC]:
//   forward: C = y [N, O],  A = x (SAR = I, SAK = 1),  B(i, o) = W (SBK = 1, SBC = I), bias.
//   dx:      C = dx [N, I], A = dy (SAR = O, SAK = 1), B(o, i) = W (SBK = I, SBC = 1).
//   dW:      C = dW [O, I], A(o, n) = dy (SAR = 1, SAK = O), B(n, i) = x (SBK = I, SBC = 1).
// A workgroup of TX x TY invocations (overrides, each <= 16) computes a (4 TY) x (4 TX)
// tile of C: each K slab of TK = 16 reduction steps of A and B is staged in workgroup
// memory (zero outside the matrices), then every invocation accumulates a 4 x 4 block,
// rows ly + a TY and columns lx + j TX (a, j < 4). Overwrites C, or adds with ACCUMULATE.
// Grid: [ceil(cols / (4 TX)), ceil(rows / (4 TY)), splits].
//
// Depth split (nn::dense::split: few rows, long reductions fill too few tiles): workgroup z
// sums k in [z KCHUNK, (z + 1) KCHUNK) into the partials tc[z rows cols ..] (no bias, no
// ACCUMULATE), and dense_split_reduce adds them in split order into C (+ b, ACCUMULATE).
// With one split (KCHUNK = red) dense_tiled writes C itself.

struct Tiled {
    rows: u32,
    cols: u32,
    red: u32,
    sar: u32,
    sak: u32,
    sbk: u32,
    sbc: u32,
    has_bias: u32,
    kchunk: u32,  // depth per split (a multiple of TK; red with one split)
    splits: u32,
    _pad0: u32,
    _pad1: u32,
}

override TX: u32 = 16u;
override TY: u32 = 16u;
const TK: u32 = 16u;
const TMAX: u32 = 64u;  // 4 * 16: the largest tile side

@group(0) @binding(19) var<uniform> tp: Tiled;
@group(0) @binding(20) var<storage, read> ta_src: array<f32>;
@group(0) @binding(21) var<storage, read> tb_src: array<f32>;
@group(0) @binding(22) var<storage, read_write> tc: array<f32>;
@group(0) @binding(23) var<storage, read> tpart: array<f32>;  // dense_split_reduce's partials

var<workgroup> tile_a: array<f32, 1024>;  // [TK][TMAX]: tile_a[kk * TMAX + rr]
var<workgroup> tile_b: array<f32, 1024>;  // [TK][TMAX]: tile_b[kk * TMAX + cc]

@compute @workgroup_size(TX, TY)
fn dense_tiled(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let bm = 4u * TY;
    let bn = 4u * TX;
    let rb = wid.y * bm;
    let cb = wid.x * bn;
    let nthreads = TX * TY;
    var acc0 = vec4<f32>();
    var acc1 = vec4<f32>();
    var acc2 = vec4<f32>();
    var acc3 = vec4<f32>();
    let kbeg = wid.z * tp.kchunk;
    let kend = min(kbeg + tp.kchunk, tp.red);
    for (var k0 = kbeg; k0 < kend; k0 += TK) {
        for (var e = li; e < bm * TK; e += nthreads) {
            let kk = e / bm;
            let rr = e % bm;
            let r = rb + rr;
            let k = k0 + kk;
            var v = 0.0;
            if (r < tp.rows && k < kend) { v = ta_src[r * tp.sar + k * tp.sak]; }
            tile_a[kk * TMAX + rr] = v;
        }
        for (var e = li; e < bn * TK; e += nthreads) {
            let kk = e / bn;
            let cc = e % bn;
            let c = cb + cc;
            let k = k0 + kk;
            var v = 0.0;
            if (c < tp.cols && k < kend) { v = tb_src[k * tp.sbk + c * tp.sbc]; }
            tile_b[kk * TMAX + cc] = v;
        }
        workgroupBarrier();
        for (var kk = 0u; kk < TK; kk++) {
            let ab = kk * TMAX + lid.y;
            let bb = kk * TMAX + lid.x;
            let bv = vec4<f32>(tile_b[bb], tile_b[bb + TX], tile_b[bb + 2u * TX], tile_b[bb + 3u * TX]);
            acc0 = fma(vec4<f32>(tile_a[ab]), bv, acc0);
            acc1 = fma(vec4<f32>(tile_a[ab + TY]), bv, acc1);
            acc2 = fma(vec4<f32>(tile_a[ab + 2u * TY]), bv, acc2);
            acc3 = fma(vec4<f32>(tile_a[ab + 3u * TY]), bv, acc3);
        }
        workgroupBarrier();
    }
    let acc = array<vec4<f32>, 4>(acc0, acc1, acc2, acc3);
    for (var a = 0u; a < 4u; a++) {
        let r = rb + lid.y + a * TY;
        if (r >= tp.rows) { break; }
        for (var j = 0u; j < 4u; j++) {
            let c = cb + lid.x + j * TX;
            if (c >= tp.cols) { break; }
            var v = acc[a][j];
            if (tp.splits == 1u && tp.has_bias != 0u) { v += b[c]; }
            let q = wid.z * tp.rows * tp.cols + r * tp.cols + c;
            tc[q] = select(0.0, tc[q], ACCUMULATE) + v;
        }
    }
}

// C[q] (+)= sum over splits z of tpart[z rows cols + q] (+ b[q % cols] where has_bias).
// 1-D grid over rows * cols (groups_1d, WG).
@compute @workgroup_size(WG)
fn dense_split_reduce(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let nc = tp.rows * tp.cols;
    let q = flat(gid, nwg);
    if (q >= nc) { return; }
    var v = 0.0;
    for (var z = 0u; z < tp.splits; z++) {
        v += tpart[z * nc + q];
    }
    if (tp.has_bias != 0u) { v += b[q % tp.cols]; }
    tc[q] = select(0.0, tc[q], ACCUMULATE) + v;
}
