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
// overrides (loops over private arrays ran 2x slower on lavapipe). No workgroup memory:
// the CPU Vulkan driver runs barriers slowly; tiled variants can be added behind overrides.

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

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> w: array<f32>;
@group(0) @binding(3) var<storage, read> b: array<f32>;
@group(0) @binding(4) var<storage, read_write> y: array<f32>;
@group(0) @binding(5) var<storage, read_write> dx: array<f32>;
@group(0) @binding(6) var<storage, read_write> dw: array<f32>;
@group(0) @binding(7) var<storage, read_write> db: array<f32>;
@group(0) @binding(8) var<storage, read> dy: array<f32>;

fn flat(gid: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return gid.x + gid.y * nwg.x * WG;
}

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
