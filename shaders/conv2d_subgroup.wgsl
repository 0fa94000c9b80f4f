// conv2d_subgroup: 3x3, stride 1, 'same' convolution (PT = PL = 1, output size = input size,
// W a multiple of 4) whose lane-shared operands travel by subgroup broadcast. Needs subgroup
// operations with >= 8 lanes (Gpu::subgroup_min_size); a module of its own so conv2d.wgsl
// still compiles on adapters without them.
//
// Shapes: src [N, CS, H, W] -> dst [N, CD, H, W]. Forward: src x, dst y, CS = CI, CD = CO.
// backward_input: src dy, dst dx, CS = CO, CD = CI, the kernel rotated 180 degrees.
// wpk [ceil(CD / 8) blocks][CS][18 vec4]: conv2d_pack_weights (conv2d.wgsl) lays out, per
// block of 8 destination channels and source channel, tap t = ky*3 + kx as vec4 2t
// (destination channels 0..4 of the block) and 2t + 1 (channels 4..8), already rotated and
// transposed for backward_input, so one kernel serves both passes.
//
// Why subgroups: on lavapipe (Mesa 22.3) a storage load is a per-lane loop and a uniform load
// at a non-constant offset a gather, both ~8x an FMA per lane. Each of 8 lanes loading one
// vec4 and subgroupBroadcast-ing it gives all lanes 8 shared vec4s for one per-lane load.
// Measured at 64->64 48x48: 15.8 GFLOP/s with the weights in uniform windows, 31 with
// broadcast weights, 51 with two output rows per invocation and shuffled row edges.
//
// conv2d_sg_3x3: one invocation per (n, pair of rows oy0 = 2k, 2k + 1,
//   4 columns) and 8 destination channels (block = workgroup_id.y): 64 accumulators. Per
//   source channel: 3 per-lane vec4 weight loads, broadcast to the 72 weights of the block;
//   4 source rows, each one vec4 per lane, the columns left and right of it shuffled from the
//   neighbouring lanes (checked to hold the neighbouring column block) or, at subgroup edges,
//   loaded; 576 FMAs. Grid [X, blocks, Z] over ceil(N * H / 2) * W / 4 invocations (past
//   max_compute_workgroups_per_dimension into z). No early return: the last invocations
//   repeat the last block and only their stores are skipped. Overwrites dst; the epilogue
//   adds bias[co] (override HAS_BIAS) and applies an activation (override ACT: 0 none,
//   1 ReLU, 2 LeakyReLU with S.SLOPE, 3 PReLU with one slope per channel, alpha [CD], 4 PReLU
//   with one slope per element of a sample, alpha4 [CD, H, W / 4] vec4s): inference runs a
//   conv, its folded BatchNorm and the activation in one pass. With override STATS (training,
//   ACT = 0) it also writes the BatchNorm statistics partials of its output (below).
//   Bindings 4, 9, 10, 11 are always bound (stand-ins where unused).
// conv2d_sg_weight: dw[co,ci,ky,kx] = sum_{n,oy,ox} dy[n,co,oy,ox] x[n,ci,oy+ky-1,ox+kx-1].
//   Lanes are output channels (workgroup_id.x: block of WG), 8 input channels per
//   workgroup_id.y, the (n, 4-column) blocks split over workgroup_id.z. An invocation walks
//   down each of its column blocks: per x row, lane l of each subgroup loads channel
//   ci0 + l's vec4 and its left and right edge columns, broadcast to every lane; the 3 dy
//   rows that meet the x row stay in registers (sliding window): 288 FMAs into 72
//   accumulators per row for 4 per-lane loads (4 channels / 36 accumulators: 44 GFLOP/s at
//   64 -> 64 48x48 b64; 8 / 72: 54).
//   SPLITS == 1: writes dw (adds with ACCUMULATE); else partials [SPLITS, NW] (overwrite) and
// conv2d_sg_weight_reduce sums them into dw (overwrite, or add with ACCUMULATE).

struct Sg {
    cs: u32,      // source channels
    cd: u32,      // destination channels
    h: u32,
    w: u32,       // a multiple of 4
    owb: u32,     // W / 4 column blocks
    hp: u32,      // ceil(H / 2) row pairs
    total: u32,   // N * HP * OWB invocations per channel block (conv2d_sg_3x3)
    cols: u32,    // N * OWB column blocks (weight gradient)
    cps: u32,     // column blocks per split
    splits: u32,  // SPLITS
    nw: u32,      // CD * CS * 9 (weight gradient: CD = CO, CS = CI)
    slope: f32,   // LeakyReLU slope of the ACT = 2 epilogue
}

const WG: u32 = 64u;
override ACCUMULATE: bool = false;

@group(0) @binding(0) var<uniform> s: Sg;
@group(0) @binding(1) var<storage, read> src: array<f32>;
@group(0) @binding(2) var<storage, read> src4: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read> wpk: array<vec4<f32>>;
@group(0) @binding(4) var<storage, read> bias: array<f32>;
@group(0) @binding(5) var<storage, read_write> dst4: array<vec4<f32>>;
@group(0) @binding(6) var<storage, read> dy4: array<vec4<f32>>;
@group(0) @binding(7) var<storage, read_write> dwo: array<f32>;      // dw, or partials [SPLITS, NW]
@group(0) @binding(8) var<storage, read> partial: array<f32>;       // [SPLITS, NW]

// 8 destination channels x 4 columns of one row: c[j] is channel j.
struct Acc {
    c0: vec4<f32>,
    c1: vec4<f32>,
    c2: vec4<f32>,
    c3: vec4<f32>,
    c4: vec4<f32>,
    c5: vec4<f32>,
    c6: vec4<f32>,
    c7: vec4<f32>,
}

fn zero_acc() -> Acc {
    let z = vec4<f32>(0.0);
    return Acc(z, z, z, z, z, z, z, z);
}

// a[j] += weight of channel j (lo: 0..4, hi: 4..8) * the 4 columns v.
fn fma8(a: ptr<function, Acc>, lo: vec4<f32>, hi: vec4<f32>, v: vec4<f32>) {
    (*a).c0 += lo.x * v;
    (*a).c1 += lo.y * v;
    (*a).c2 += lo.z * v;
    (*a).c3 += lo.w * v;
    (*a).c4 += hi.x * v;
    (*a).c5 += hi.y * v;
    (*a).c6 += hi.z * v;
    (*a).c7 += hi.w * v;
}

// One kernel row: taps k[kx] times the block's weights of that row (6 vec4: kx-major).
fn row3(a: ptr<function, Acc>, k: array<vec4<f32>, 3>, w0: vec4<f32>, w1: vec4<f32>, w2: vec4<f32>, w3: vec4<f32>, w4: vec4<f32>, w5: vec4<f32>) {
    fma8(a, w0, w1, k[0]);
    fma8(a, w2, w3, k[1]);
    fma8(a, w4, w5, k[2]);
}

// The 3 tap vectors of source row `iy` (columns ox0 - 1 + kx + 0..4; zero outside the
// image) of the channel starting at `sb`. q is this lane's invocation index: a neighbouring
// lane whose q is q -/+ 1 holds the neighbouring column block of the same row.
fn taps(sb: u32, iy: i32, ox0: u32, owb: u32, q: u32, sid: u32, sgs: u32) -> array<vec4<f32>, 3> {
    let rok = iy >= 0 && iy < i32(s.h);
    let row = sb + u32(clamp(iy, 0, i32(s.h) - 1)) * s.w;
    let v = select(vec4<f32>(0.0), src4[(row + ox0) >> 2u], rok);
    let lw = subgroupShuffleUp(v.w, 1u);
    let rx = subgroupShuffleDown(v.x, 1u);
    let lq = subgroupShuffleUp(q, 1u);
    let rq = subgroupShuffleDown(q, 1u);
    let has_l = owb > 0u;
    let has_r = owb + 1u < s.owb;
    let from_l = sid > 0u && lq + 1u == q;
    let from_r = sid + 1u < sgs && rq == q + 1u;
    var l1 = select(0.0, lw, has_l && from_l);
    var r1 = select(0.0, rx, has_r && from_r);
    if (has_l && !from_l) {
        l1 = select(0.0, src[row + ox0 - 1u], rok);
    }
    if (has_r && !from_r) {
        r1 = select(0.0, src[row + ox0 + 4u], rok);
    }
    return array<vec4<f32>, 3>(vec4<f32>(l1, v.xyz), v, vec4<f32>(v.yzw, r1));
}

// Rows oy0 and oy0 + 1 of destination block `blk` at columns ox0..ox0+4.
fn block2(q: u32, blk: u32, sid: u32, sgs: u32) -> array<Acc, 2> {
    let owb = q % s.owb;
    let t = q / s.owb;
    let oy0 = i32((t % s.hp) * 2u);
    let n = t / s.hp;
    let ox0 = owb * 4u;
    var a = zero_acc();
    var b = zero_acc();
    let hw = s.h * s.w;
    var sb = n * s.cs * hw;
    let lane = sid % 8u;
    var wb = blk * s.cs * 18u;
    for (var c = 0u; c < s.cs; c++) {
        // vec4 j of this source channel's 18: lane j % 8 of m[j / 8].
        let m0 = wpk[wb + lane];
        let m1 = wpk[wb + 8u + lane];
        let m2 = wpk[wb + 16u + min(lane, 1u)];
        // Source row oy0 - 1 + r meets output row oy0 at ky = r and oy0 + 1 at ky = r - 1.
        let k0 = taps(sb, oy0 - 1, ox0, owb, q, sid, sgs);
        row3(&a, k0, subgroupBroadcast(m0, 0u), subgroupBroadcast(m0, 1u), subgroupBroadcast(m0, 2u), subgroupBroadcast(m0, 3u), subgroupBroadcast(m0, 4u), subgroupBroadcast(m0, 5u));
        let k1 = taps(sb, oy0, ox0, owb, q, sid, sgs);
        row3(&a, k1, subgroupBroadcast(m0, 6u), subgroupBroadcast(m0, 7u), subgroupBroadcast(m1, 0u), subgroupBroadcast(m1, 1u), subgroupBroadcast(m1, 2u), subgroupBroadcast(m1, 3u));
        row3(&b, k1, subgroupBroadcast(m0, 0u), subgroupBroadcast(m0, 1u), subgroupBroadcast(m0, 2u), subgroupBroadcast(m0, 3u), subgroupBroadcast(m0, 4u), subgroupBroadcast(m0, 5u));
        let k2 = taps(sb, oy0 + 1, ox0, owb, q, sid, sgs);
        row3(&a, k2, subgroupBroadcast(m1, 4u), subgroupBroadcast(m1, 5u), subgroupBroadcast(m1, 6u), subgroupBroadcast(m1, 7u), subgroupBroadcast(m2, 0u), subgroupBroadcast(m2, 1u));
        row3(&b, k2, subgroupBroadcast(m0, 6u), subgroupBroadcast(m0, 7u), subgroupBroadcast(m1, 0u), subgroupBroadcast(m1, 1u), subgroupBroadcast(m1, 2u), subgroupBroadcast(m1, 3u));
        let k3 = taps(sb, oy0 + 2, ox0, owb, q, sid, sgs);
        row3(&b, k3, subgroupBroadcast(m1, 4u), subgroupBroadcast(m1, 5u), subgroupBroadcast(m1, 6u), subgroupBroadcast(m1, 7u), subgroupBroadcast(m2, 0u), subgroupBroadcast(m2, 1u));
        sb += hw;
        wb += 18u;
    }
    return array<Acc, 2>(a, b);
}

override HAS_BIAS: bool = false;
override ACT: u32 = 0u;
@group(0) @binding(9) var<storage, read> alpha4: array<vec4<f32>>;
@group(0) @binding(10) var<storage, read> alpha: array<f32>;

// The epilogue of 4 columns v of channel d, row oy, column block owb: + bias[d], then the
// activation ACT.
fn epilogue(v: vec4<f32>, d: u32, oy: u32, owb: u32) -> vec4<f32> {
    var r = v;
    if (HAS_BIAS) {
        r += bias[d];
    }
    if (ACT == 0u) {
        return r;
    }
    var a = vec4<f32>(0.0);
    if (ACT == 2u) {
        a = vec4<f32>(s.slope);
    } else if (ACT == 3u) {
        a = vec4<f32>(alpha[d]);
    } else if (ACT == 4u) {
        a = alpha4[(d * s.h + oy) * s.owb + owb];
    }
    return select(a * r, r, r > vec4<f32>(0.0));
}

// Store row oy (if inside the image) of block `blk` through the epilogue.
fn store_row(n: u32, oy: u32, owb: u32, blk: u32, a: Acc) {
    if (oy >= s.h) {
        return;
    }
    let c = array<vec4<f32>, 8>(a.c0, a.c1, a.c2, a.c3, a.c4, a.c5, a.c6, a.c7);
    let plane = s.h * s.owb;
    for (var j = 0u; j < 8u; j++) {
        let d = blk * 8u + j;
        if (d >= s.cd) {
            break;
        }
        dst4[(n * s.cd + d) * plane + oy * s.owb + owb] = epilogue(c[j], d, oy, owb);
    }
}

// ---- BatchNorm statistics epilogue (override STATS; ACT = 0) ----
// The training forward of a conv whose output a BatchNorm normalizes also writes, per
// destination channel d of the block and subgroup, the partial statistics of the values
// that subgroup stored (bias included): stats_out[(d * G + slot) * 3 + 0, 1, 2] = (count,
// mean, M2 = sum of squared deviations from that mean), slot = (wid.x + wid.z * nwg.x) *
// SLOTS + subgroup_id, G = nwg.x * nwg.z * SLOTS. Two passes over the values still in
// registers (subgroupAdd of the sums -> the subgroup's mean, then of the squared
// deviations); invocations past the end and rows past the image count 0. Subgroup sums, not
// a workgroup tree: on lavapipe every workgroupBarrier switches each lane's coroutine, which
// made a tree epilogue cost more than the BatchNorm pass it saves. SLOTS = WG / 8 covers
// the smallest subgroups the kernel accepts; with larger ones the subgroup-0 leader zeroes
// the slots no subgroup owns. batchnorm_stats_partials (batchnorm.wgsl) merges a channel's
// G partials, so the BatchNorm never re-reads the conv's output for its statistics.
override STATS: bool = false;
const SLOTS: u32 = WG / 8u;
@group(0) @binding(11) var<storage, read_write> stats_out: array<f32>;

// The bias of channels d0 .. d0 + 4 (0 without one or past CD).
fn bias4(d0: u32) -> vec4<f32> {
    if (!HAS_BIAS) {
        return vec4<f32>(0.0);
    }
    let last = s.cd - 1u;
    let b = vec4<f32>(bias[min(d0, last)], bias[min(d0 + 1u, last)], bias[min(d0 + 2u, last)], bias[min(d0 + 3u, last)]);
    return select(vec4<f32>(0.0), b, d0 + vec4<u32>(0u, 1u, 2u, 3u) < vec4<u32>(s.cd));
}

// Per channel of c0..c3 (4 columns each), offset by o: the sum of the values, or with
// `sq` the sum of their squares.
fn sums4(c0: vec4<f32>, c1: vec4<f32>, c2: vec4<f32>, c3: vec4<f32>, o: vec4<f32>, sq: bool) -> vec4<f32> {
    let e0 = c0 + o.x;
    let e1 = c1 + o.y;
    let e2 = c2 + o.z;
    let e3 = c3 + o.w;
    if (sq) {
        return vec4<f32>(dot(e0, e0), dot(e1, e1), dot(e2, e2), dot(e3, e3));
    }
    let one = vec4<f32>(1.0);
    return vec4<f32>(dot(e0, one), dot(e1, one), dot(e2, one), dot(e3, one));
}

// Channels 0..4 (lo) or 4..8 of rows r[0] (counted when v0) and r[1] (when v1), offset by o.
fn rows_lo(r: array<Acc, 2>, v0: bool, v1: bool, o: vec4<f32>, sq: bool) -> vec4<f32> {
    let z = vec4<f32>(0.0);
    return select(z, sums4(r[0].c0, r[0].c1, r[0].c2, r[0].c3, o, sq), v0) + select(z, sums4(r[1].c0, r[1].c1, r[1].c2, r[1].c3, o, sq), v1);
}

fn rows_hi(r: array<Acc, 2>, v0: bool, v1: bool, o: vec4<f32>, sq: bool) -> vec4<f32> {
    let z = vec4<f32>(0.0);
    return select(z, sums4(r[0].c4, r[0].c5, r[0].c6, r[0].c7, o, sq), v0) + select(z, sums4(r[1].c4, r[1].c5, r[1].c6, r[1].c7, o, sq), v1);
}

// Count, mean and M2 of channels d0 .. d0 + 4 into `slot` (channels past CD skipped).
fn store_partial(d0: u32, slot: u32, groups: u32, n: f32, mean: vec4<f32>, m2: vec4<f32>) {
    for (var j = 0u; j < 4u; j++) {
        if (d0 + j < s.cd) {
            let k = ((d0 + j) * groups + slot) * 3u;
            stats_out[k] = n;
            stats_out[k + 1u] = mean[j];
            stats_out[k + 2u] = m2[j];
        }
    }
}

// The subgroup's partial statistics of block `blk` from rows r[0] (valid when v0) and r[1]
// (when v1), into slot `wg * SLOTS + subgroup`, written by the subgroup's lane 0.
fn stats_epilogue(r: array<Acc, 2>, v0: bool, v1: bool, blk: u32, wg: u32, groups: u32, subgroup: u32, subgroups: u32, lane: u32) {
    let d0 = blk * 8u;
    let b_lo = bias4(d0);
    let b_hi = bias4(d0 + 4u);
    let n = subgroupAdd(4.0 * (f32(v0) + f32(v1)));
    let inv = 1.0 / max(n, 1.0);
    let m_lo = subgroupAdd(rows_lo(r, v0, v1, b_lo, false)) * inv;
    let m_hi = subgroupAdd(rows_hi(r, v0, v1, b_hi, false)) * inv;
    let q_lo = subgroupAdd(rows_lo(r, v0, v1, b_lo - m_lo, true));
    let q_hi = subgroupAdd(rows_hi(r, v0, v1, b_hi - m_hi, true));
    if (lane == 0u) {
        let slot = wg * SLOTS + subgroup;
        if (subgroup < SLOTS) {
            store_partial(d0, slot, groups, n, m_lo, q_lo);
            store_partial(d0 + 4u, slot, groups, n, m_hi, q_hi);
        }
        if (subgroup == 0u) {
            let z = vec4<f32>(0.0);
            for (var k = subgroups; k < SLOTS; k++) {
                store_partial(d0, wg * SLOTS + k, groups, 0.0, z, z);
                store_partial(d0 + 4u, wg * SLOTS + k, groups, 0.0, z, z);
            }
        }
    }
}

@compute @workgroup_size(WG)
fn conv2d_sg_3x3(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(subgroup_invocation_id) sid: u32, @builtin(subgroup_size) sgs: u32, @builtin(subgroup_id) sg_id: u32, @builtin(num_subgroups) sg_n: u32) {
    let q0 = gid.x + wid.z * nwg.x * WG;
    let q = min(q0, s.total - 1u);
    let r = block2(q, wid.y, sid, sgs);
    let owb = q % s.owb;
    let t = q / s.owb;
    let oy0 = (t % s.hp) * 2u;
    let n = t / s.hp;
    if (q0 < s.total) {
        store_row(n, oy0, owb, wid.y, r[0]);
        store_row(n, oy0 + 1u, owb, wid.y, r[1]);
    }
    if (STATS) {
        let live = q0 < s.total;
        stats_epilogue(r, live, live && oy0 + 1u < s.h, wid.y, wid.x + wid.z * nwg.x, nwg.x * nwg.z * SLOTS, sg_id, sg_n, sid);
    }
}

// ---- weight gradient ----

// One input channel's 9 weight-gradient sums: a[ky][kx]. The x row (left edge l, 4 columns v,
// right edge r) meets dy row ky = 0, 1, 2 as d0, d1, d2.
fn dw_row(a: ptr<function, array<vec3<f32>, 3>>, v: vec4<f32>, l: f32, r: f32, d0: vec4<f32>, d1: vec4<f32>, d2: vec4<f32>) {
    let k0 = vec4<f32>(l, v.xyz);
    let k2 = vec4<f32>(v.yzw, r);
    (*a)[0] += vec3<f32>(dot(d0, k0), dot(d0, v), dot(d0, k2));
    (*a)[1] += vec3<f32>(dot(d1, k0), dot(d1, v), dot(d1, k2));
    (*a)[2] += vec3<f32>(dot(d2, k0), dot(d2, v), dot(d2, k2));
}

fn write_dw(co: u32, ci: u32, split: u32, a: array<vec3<f32>, 3>) {
    if (ci >= s.cs) {
        return;
    }
    let base = (co * s.cs + ci) * 9u;
    for (var ky = 0u; ky < 3u; ky++) {
        for (var kx = 0u; kx < 3u; kx++) {
            let i = base + ky * 3u + kx;
            if (s.splits == 1u) {
                dwo[i] = select(0.0, dwo[i], ACCUMULATE) + a[ky][kx];
            } else {
                dwo[split * s.nw + i] = a[ky][kx];
            }
        }
    }
}

@compute @workgroup_size(WG)
fn conv2d_sg_weight(@builtin(local_invocation_id) lid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>, @builtin(subgroup_invocation_id) sid: u32) {
    let co0 = wid.x * WG + lid.x;
    let co = min(co0, s.cd - 1u);
    let ci0 = wid.y * 8u;
    let lane = sid % 8u;
    // Lane l loads channel ci0 + l's 4 columns and its left and right edge columns.
    // Channels past CS repeat the last (discarded).
    let cv = min(ci0 + lane, s.cs - 1u);
    let hw = s.h * s.w;
    let z = vec3<f32>(0.0);
    var a0 = array<vec3<f32>, 3>(z, z, z);
    var a1 = a0;
    var a2 = a0;
    var a3 = a0;
    var a4 = a0;
    var a5 = a0;
    var a6 = a0;
    var a7 = a0;
    let c_end = min((wid.z + 1u) * s.cps, s.cols);
    for (var col = wid.z * s.cps; col < c_end; col++) {
        let n = col / s.owb;
        let owb = col % s.owb;
        let ox0 = owb * 4u;
        let xv = n * s.cs * hw + cv * hw + ox0;
        let lok = ox0 >= 1u;
        let rok = ox0 + 4u < s.w;
        let xl = xv - select(0u, 1u, lok);
        let xr = n * s.cs * hw + cv * hw + min(ox0 + 4u, s.w - 1u);
        let d_base = (n * s.cd + co) * s.h * s.owb + owb;
        var d_prev = vec4<f32>(0.0);
        var d_cur = dy4[d_base];
        for (var iy = 0u; iy < s.h; iy++) {
            let d_next = select(vec4<f32>(0.0), dy4[d_base + min(iy + 1u, s.h - 1u) * s.owb], iy + 1u < s.h);
            let v = src4[(xv + iy * s.w) >> 2u];
            let el = select(0.0, src[xl + iy * s.w], lok);
            let er = select(0.0, src[xr + iy * s.w], rok);
            // x row iy meets dy row iy + 1 at ky = 0, iy at ky = 1, iy - 1 at ky = 2.
            dw_row(&a0, subgroupBroadcast(v, 0u), subgroupBroadcast(el, 0u), subgroupBroadcast(er, 0u), d_next, d_cur, d_prev);
            dw_row(&a1, subgroupBroadcast(v, 1u), subgroupBroadcast(el, 1u), subgroupBroadcast(er, 1u), d_next, d_cur, d_prev);
            dw_row(&a2, subgroupBroadcast(v, 2u), subgroupBroadcast(el, 2u), subgroupBroadcast(er, 2u), d_next, d_cur, d_prev);
            dw_row(&a3, subgroupBroadcast(v, 3u), subgroupBroadcast(el, 3u), subgroupBroadcast(er, 3u), d_next, d_cur, d_prev);
            dw_row(&a4, subgroupBroadcast(v, 4u), subgroupBroadcast(el, 4u), subgroupBroadcast(er, 4u), d_next, d_cur, d_prev);
            dw_row(&a5, subgroupBroadcast(v, 5u), subgroupBroadcast(el, 5u), subgroupBroadcast(er, 5u), d_next, d_cur, d_prev);
            dw_row(&a6, subgroupBroadcast(v, 6u), subgroupBroadcast(el, 6u), subgroupBroadcast(er, 6u), d_next, d_cur, d_prev);
            dw_row(&a7, subgroupBroadcast(v, 7u), subgroupBroadcast(el, 7u), subgroupBroadcast(er, 7u), d_next, d_cur, d_prev);
            d_prev = d_cur;
            d_cur = d_next;
        }
    }
    if (co0 < s.cd) {
        write_dw(co, ci0, wid.z, a0);
        write_dw(co, ci0 + 1u, wid.z, a1);
        write_dw(co, ci0 + 2u, wid.z, a2);
        write_dw(co, ci0 + 3u, wid.z, a3);
        write_dw(co, ci0 + 4u, wid.z, a4);
        write_dw(co, ci0 + 5u, wid.z, a5);
        write_dw(co, ci0 + 6u, wid.z, a6);
        write_dw(co, ci0 + 7u, wid.z, a7);
    }
}

@compute @workgroup_size(WG)
fn conv2d_sg_weight_reduce(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat(gid, nwg);
    if (i >= s.nw) {
        return;
    }
    var acc = 0.0;
    for (var k = 0u; k < s.splits; k++) {
        acc += partial[k * s.nw + i];
    }
    dwo[i] = select(0.0, dwo[i], ACCUMULATE) + acc;
}
