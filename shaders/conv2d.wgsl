// conv2d: 2-D convolution, any kernel, stride, zero padding, optional bias.
//
// Shapes: x, dx [N, CI, H, W]; w, dw [CO, CI, KH, KW]; b, db [CO]; y, dy [N, CO, OH, OW].
// Padding is resolved on the host (nn::resolve_padding) to PT (top) and PL (left); bottom /
// right padding only shows in OH / OW. Tap (ky, kx) of output (oy, ox) reads input
// iy = oy*SH + ky - PT, ix = ox*SW + kx - PL, zero outside [0, H) x [0, W).
//
// y[n,co,oy,ox]   = b[co] + sum_{ci,ky,kx} w[co,ci,ky,kx] * x[n,ci,iy,ix]
// dx[n,ci,iy,ix]  = sum_{co,ky,kx: oy = (iy+PT-ky)/SH, ox = (ix+PL-kx)/SW integral, in range} w[co,ci,ky,kx] * dy[n,co,oy,ox]
// dw[co,ci,ky,kx] = sum_{n,oy,ox} dy[n,co,oy,ox] * x[n,ci,iy,ix]
// db[co]          = sum_{n,oy,ox} dy[n,co,oy,ox]
//
// Kernels (all gather; no atomics):
// conv2d_forward, conv2d_forward_bias: one invocation per 8 output channels x 4 adjacent ox
//   of one (n, oy); each x load feeds 8 channels, each w load 4 pixels. Grid [pixel blocks,
//   channel blocks, pixel blocks past the x limit]. Overwrite y.
// conv2d_backward_input: one invocation per 8 input channels x 4 adjacent ix of one (n, iy),
//   same grid layout. Overwrites dx.
// conv2d_backward_weight: one invocation per (split, 8 co x 4 ci block, ky, kx); sums the
//   (n, oy) rows [split*RPS, (split+1)*RPS) into 32 registers and writes dwo[split*NW + widx].
//   With SPLITS == 1 `dwo` is dw (overwrite, or add with ACCUMULATE); else it is a partial
//   buffer [SPLITS, NW] (ACCUMULATE false: overwrite) and
// conv2d_backward_weight_reduce sums the SPLITS partials of each weight: overwrites dw, or
//   adds with ACCUMULATE.
// conv2d_backward_bias: one workgroup per co, tree reduction in workgroup memory; overwrites
//   db, or adds with ACCUMULATE.
// Invocation indices past max_compute_workgroups_per_dimension * WG spill into grid y
// (weight kernels, see Gpu::groups_1d) or z (forward / backward_input, whose y is the channel
// block).

struct Params {
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
    cob: u32,        // ceil(CO / CB): output-channel blocks
    cib: u32,        // ceil(CI / PB): input-channel blocks of the weight gradient
    owb: u32,        // ceil(OW / PB): output-column blocks
    iwb: u32,        // ceil(W / PB): input-column blocks
    splits: u32,     // SPLITS: batch-row splits of the weight gradient
    rps: u32,        // RPS: (n, oy) rows per split
    nw: u32,         // NW = CO*CI*KH*KW
    fwd_total: u32,  // N*OH*OWB forward invocations per channel block
    bin_total: u32,  // N*H*IWB backward_input invocations per channel block
    bw_blocks: u32,  // COB*CIB*KH*KW weight blocks per split
    bw_total: u32,   // SPLITS * bw_blocks
}

const WG: u32 = 64u;
const CB: u32 = 8u;  // channel block: output channels (forward, weight grad), input channels (backward_input)
const PB: u32 = 4u;  // pixel block (forward, backward_input); input-channel block (weight grad)
const WG_BIAS: u32 = 256u;
override ACCUMULATE: bool = false;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> w: array<f32>;
@group(0) @binding(3) var<storage, read> b: array<f32>;
@group(0) @binding(4) var<storage, read_write> y: array<f32>;
@group(0) @binding(5) var<storage, read_write> dx: array<f32>;
@group(0) @binding(6) var<storage, read> dy: array<f32>;
@group(0) @binding(7) var<storage, read_write> dwo: array<f32>;      // dw, or partials [SPLITS, NW]
@group(0) @binding(8) var<storage, read> partial: array<f32>;       // [SPLITS, NW]
@group(0) @binding(9) var<storage, read_write> db: array<f32>;

// Grids [X, channel blocks, Z] of the forward / backward_input kernels: the pixel-block index
// runs over x and, past max_compute_workgroups_per_dimension workgroups, z.
fn flat_xz(gid: vec3<u32>, wid: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return gid.x + wid.z * nwg.x * WG;
}

// Accumulators of one forward / backward_input invocation: c[j] holds channel j's 4 pixels.
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

// Offsets `stride * min(c0 + j, last)` for j in 0..8 as two vec4s: channels past the end
// repeat the last one (their results are computed and discarded).
fn rows8(c0: u32, last: u32, stride: u32) -> array<vec4<u32>, 2> {
    let lo = min(vec4<u32>(c0) + vec4<u32>(0u, 1u, 2u, 3u), vec4<u32>(last)) * stride;
    let hi = min(vec4<u32>(c0) + vec4<u32>(4u, 5u, 6u, 7u), vec4<u32>(last)) * stride;
    return array<vec4<u32>, 2>(lo, hi);
}

// Forward block: output channels 8cb.. (cb = workgroup_id.y: weight offsets are uniform
// across the workgroup), columns 4owb.. of row oy of sample n, q = (n*OH + oy)*OWB + owb.
// Per tap and input channel: 4 x loads and 8 w loads feed 32 FMAs.
fn forward_block(q: u32, cb: u32) -> Acc {
    let owb = q % p.owb;
    let oy = (q / p.owb) % p.oh;
    let n = q / (p.owb * p.oh);
    let ox0 = owb * PB;
    let khw = p.kh * p.kw;
    let hw = p.h * p.w;
    let wr = rows8(cb * CB, p.co - 1u, p.ci * khw);
    let wl = wr[0];
    let wh = wr[1];
    var a = Acc(vec4<f32>(0.0), vec4<f32>(0.0), vec4<f32>(0.0), vec4<f32>(0.0), vec4<f32>(0.0), vec4<f32>(0.0), vec4<f32>(0.0), vec4<f32>(0.0));
    let xn = n * p.ci * hw;
    for (var ky = 0u; ky < p.kh; ky++) {
        let iy = i32(oy * p.sh + ky) - i32(p.pt);
        if (iy < 0 || iy >= i32(p.h)) { continue; }
        for (var kx = 0u; kx < p.kw; kx++) {
            let ix = vec4<i32>((vec4<u32>(ox0) + vec4<u32>(0u, 1u, 2u, 3u)) * p.sw + kx) - i32(p.pl);
            let ok = (ix >= vec4<i32>(0)) & (ix < vec4<i32>(i32(p.w)));
            if (!any(ok)) { continue; }
            let xc = vec4<u32>(clamp(ix, vec4<i32>(0), vec4<i32>(i32(p.w) - 1)));
            var xo = xn + u32(iy) * p.w;
            var wo = ky * p.kw + kx;
            for (var ci = 0u; ci < p.ci; ci++) {
                let xv = select(vec4<f32>(0.0), vec4<f32>(x[xo + xc.x], x[xo + xc.y], x[xo + xc.z], x[xo + xc.w]), ok);
                a.c0 += w[wl.x + wo] * xv;
                a.c1 += w[wl.y + wo] * xv;
                a.c2 += w[wl.z + wo] * xv;
                a.c3 += w[wl.w + wo] * xv;
                a.c4 += w[wh.x + wo] * xv;
                a.c5 += w[wh.y + wo] * xv;
                a.c6 += w[wh.z + wo] * xv;
                a.c7 += w[wh.w + wo] * xv;
                xo += hw;
                wo += khw;
            }
        }
    }
    return a;
}

fn store_y(q: u32, cb: u32, a: Acc, bias_lo: vec4<f32>, bias_hi: vec4<f32>) {
    let owb = q % p.owb;
    let oy = (q / p.owb) % p.oh;
    let n = q / (p.owb * p.oh);
    let ohw = p.oh * p.ow;
    let ox0 = owb * PB;
    var c = array<vec4<f32>, 8>(a.c0 + bias_lo.x, a.c1 + bias_lo.y, a.c2 + bias_lo.z, a.c3 + bias_lo.w,
                                a.c4 + bias_hi.x, a.c5 + bias_hi.y, a.c6 + bias_hi.z, a.c7 + bias_hi.w);
    for (var j = 0u; j < CB; j++) {
        let co = cb * CB + j;
        if (co >= p.co) { break; }
        let base = (n * p.co + co) * ohw + oy * p.ow + ox0;
        for (var k = 0u; k < PB; k++) {
            if (ox0 + k >= p.ow) { break; }
            y[base + k] = c[j][k];
        }
    }
}

@compute @workgroup_size(WG)
fn conv2d_forward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let q = flat_xz(gid, wid, nwg);
    if (q >= p.fwd_total) { return; }
    store_y(q, wid.y, forward_block(q, wid.y), vec4<f32>(0.0), vec4<f32>(0.0));
}

@compute @workgroup_size(WG)
fn conv2d_forward_bias(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let q = flat_xz(gid, wid, nwg);
    if (q >= p.fwd_total) { return; }
    let r = rows8(wid.y * CB, p.co - 1u, 1u);
    let lo = vec4<f32>(b[r[0].x], b[r[0].y], b[r[0].z], b[r[0].w]);
    let hi = vec4<f32>(b[r[1].x], b[r[1].y], b[r[1].z], b[r[1].w]);
    store_y(q, wid.y, forward_block(q, wid.y), lo, hi);
}

// Input channels 8cb.. (cb = workgroup_id.y: weight offsets uniform), columns 4iwb.. of row
// iy of sample n, q = (n*H + iy)*IWB + iwb. Per contributing tap and output channel: 4 dy
// loads and 8 w loads feed 32 FMAs.
@compute @workgroup_size(WG)
fn conv2d_backward_input(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let q = flat_xz(gid, wid, nwg);
    if (q >= p.bin_total) { return; }
    let cb = wid.y;
    let iwb = q % p.iwb;
    let iy = (q / p.iwb) % p.h;
    let n = q / (p.iwb * p.h);
    let ix0 = iwb * PB;
    let khw = p.kh * p.kw;
    let ohw = p.oh * p.ow;
    let wco = p.ci * khw;  // weight stride between output channels
    let wr = rows8(cb * CB, p.ci - 1u, khw);
    let wl = wr[0];
    let wh = wr[1];
    var a = Acc(vec4<f32>(0.0), vec4<f32>(0.0), vec4<f32>(0.0), vec4<f32>(0.0), vec4<f32>(0.0), vec4<f32>(0.0), vec4<f32>(0.0), vec4<f32>(0.0));
    let sw = i32(p.sw);
    for (var ky = 0u; ky < p.kh; ky++) {
        // Output row oy with oy*SH + ky - PT == iy, if integral and in range.
        let ty = i32(iy + p.pt) - i32(ky);
        if (ty < 0 || ty % i32(p.sh) != 0) { continue; }
        let oy = u32(ty) / p.sh;
        if (oy >= p.oh) { continue; }
        for (var kx = 0u; kx < p.kw; kx++) {
            let tx = vec4<i32>(vec4<u32>(ix0) + vec4<u32>(0u, 1u, 2u, 3u) + p.pl) - i32(kx);
            let ox = tx / sw;
            let ok = (tx >= vec4<i32>(0)) & (tx % sw == vec4<i32>(0)) & (ox < vec4<i32>(i32(p.ow)));
            if (!any(ok)) { continue; }
            let oc = vec4<u32>(clamp(ox, vec4<i32>(0), vec4<i32>(i32(p.ow) - 1)));
            var dyo = n * p.co * ohw + oy * p.ow;
            var wo = ky * p.kw + kx;
            for (var co = 0u; co < p.co; co++) {
                let dv = select(vec4<f32>(0.0), vec4<f32>(dy[dyo + oc.x], dy[dyo + oc.y], dy[dyo + oc.z], dy[dyo + oc.w]), ok);
                a.c0 += w[wl.x + wo] * dv;
                a.c1 += w[wl.y + wo] * dv;
                a.c2 += w[wl.z + wo] * dv;
                a.c3 += w[wl.w + wo] * dv;
                a.c4 += w[wh.x + wo] * dv;
                a.c5 += w[wh.y + wo] * dv;
                a.c6 += w[wh.z + wo] * dv;
                a.c7 += w[wh.w + wo] * dv;
                dyo += ohw;
                wo += wco;
            }
        }
    }
    let hw = p.h * p.w;
    var c = array<vec4<f32>, 8>(a.c0, a.c1, a.c2, a.c3, a.c4, a.c5, a.c6, a.c7);
    for (var j = 0u; j < CB; j++) {
        let ci = cb * CB + j;
        if (ci >= p.ci) { break; }
        let base = (n * p.ci + ci) * hw + iy * p.w + ix0;
        for (var k = 0u; k < PB; k++) {
            if (ix0 + k >= p.w) { break; }
            dx[base + k] = c[j][k];
        }
    }
}

// Invocation i = split*BW_BLOCKS + ((cob*CIB + cib)*KH + ky)*KW + kx: output channels
// 8cob.., input channels 4cib.., one tap. Per position: 8 dy loads and 4 x loads feed 32 FMAs.
@compute @workgroup_size(WG)
fn conv2d_backward_weight(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat(gid, nwg);
    if (i >= p.bw_total) { return; }
    let blk = i % p.bw_blocks;
    let split = i / p.bw_blocks;
    let kx = blk % p.kw;
    var t = blk / p.kw;
    let ky = t % p.kh;
    t /= p.kh;
    let cib = t % p.cib;
    let cob = t / p.cib;
    let co0 = cob * CB;
    let ci0 = cib * PB;
    let hw = p.h * p.w;
    let ohw = p.oh * p.ow;
    // Channel offsets inside one sample; channels past the end repeat the last (discarded).
    let dr = rows8(co0, p.co - 1u, ohw);
    let xci = min(vec4<u32>(ci0) + vec4<u32>(0u, 1u, 2u, 3u), vec4<u32>(p.ci - 1u)) * hw;
    // Columns ox whose ix = ox*SW + kx - PL lies in [0, W): [ox_lo, ox_hi).
    let sw = i32(p.sw);
    let lo_num = i32(p.pl) - i32(kx);
    let ox_lo = select(0, (lo_num + sw - 1) / sw, lo_num > 0);
    let hi_num = i32(p.w) - 1 + i32(p.pl) - i32(kx);
    let ox_hi = select(0, min(i32(p.ow), hi_num / sw + 1), hi_num >= 0);
    // a.cj: output channel co0 + j, over input channels ci0..ci0+3.
    var a = Acc(vec4<f32>(0.0), vec4<f32>(0.0), vec4<f32>(0.0), vec4<f32>(0.0), vec4<f32>(0.0), vec4<f32>(0.0), vec4<f32>(0.0), vec4<f32>(0.0));
    if (ox_lo < ox_hi) {
        let r0 = split * p.rps;
        let r1 = min(r0 + p.rps, p.n * p.oh);
        let ix_lo = u32(ox_lo * sw + i32(kx) - i32(p.pl));
        for (var r = r0; r < r1; r++) {
            let n = r / p.oh;
            let oy = r % p.oh;
            let iy = i32(oy * p.sh + ky) - i32(p.pt);
            if (iy < 0 || iy >= i32(p.h)) { continue; }
            let dyr = n * p.co * ohw + oy * p.ow;
            let dl = dr[0] + dyr;
            let dh = dr[1] + dyr;
            let xs = xci + (n * p.ci * hw + u32(iy) * p.w);
            var ix = ix_lo;
            for (var ox = u32(ox_lo); ox < u32(ox_hi); ox++) {
                let xv = vec4<f32>(x[xs.x + ix], x[xs.y + ix], x[xs.z + ix], x[xs.w + ix]);
                a.c0 += dy[dl.x + ox] * xv;
                a.c1 += dy[dl.y + ox] * xv;
                a.c2 += dy[dl.z + ox] * xv;
                a.c3 += dy[dl.w + ox] * xv;
                a.c4 += dy[dh.x + ox] * xv;
                a.c5 += dy[dh.y + ox] * xv;
                a.c6 += dy[dh.z + ox] * xv;
                a.c7 += dy[dh.w + ox] * xv;
                ix += p.sw;
            }
        }
    }
    var c = array<vec4<f32>, 8>(a.c0, a.c1, a.c2, a.c3, a.c4, a.c5, a.c6, a.c7);
    let khw = p.kh * p.kw;
    let base = split * p.nw + ky * p.kw + kx;
    for (var j = 0u; j < CB; j++) {
        let co = co0 + j;
        if (co >= p.co) { break; }
        for (var k = 0u; k < PB; k++) {
            let ci = ci0 + k;
            if (ci >= p.ci) { break; }
            let o = base + (co * p.ci + ci) * khw;
            dwo[o] = select(0.0, dwo[o], ACCUMULATE) + c[j][k];
        }
    }
}

// One invocation per weight element: dwo = dw.
@compute @workgroup_size(WG)
fn conv2d_backward_weight_reduce(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat(gid, nwg);
    if (i >= p.nw) { return; }
    var s = 0.0;
    for (var k = 0u; k < p.splits; k++) {
        s += partial[k * p.nw + i];
    }
    dwo[i] = select(0.0, dwo[i], ACCUMULATE) + s;
}

var<workgroup> red: array<f32, WG_BIAS>;

// Workgroup co: each invocation strides over the OH*OW plane of every sample, then a tree
// reduction.
@compute @workgroup_size(WG_BIAS)
fn conv2d_backward_bias(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let co = wid.x;
    let ohw = p.oh * p.ow;
    var acc = 0.0;
    for (var n = 0u; n < p.n; n++) {
        let base = (n * p.co + co) * ohw;
        for (var s = lid.x; s < ohw; s += WG_BIAS) {
            acc += dy[base + s];
        }
    }
    red[lid.x] = acc;
    workgroupBarrier();
    for (var stride = WG_BIAS / 2u; stride > 0u; stride /= 2u) {
        if (lid.x < stride) {
            red[lid.x] += red[lid.x + stride];
        }
        workgroupBarrier();
    }
    if (lid.x == 0u) {
        db[co] = select(0.0, db[co], ACCUMULATE) + red[0];
    }
}

// ---- Fast path: 3x3 kernel, stride 1, source width a multiple of 4 (vec4 rows) ----
//
// conv2d_3x3s1, conv2d_3x3s1_bias: one invocation per 8 destination channels x 4 adjacent
//   columns of one (n, row); the same kernel computes the forward pass (src x, dst y) and,
//   with FLIP (kernel rotated 180 degrees, channel roles swapped through the weight
//   strides S_OUT / S_IN, padding 2 - PT / 2 - PL), backward_input (src dy, dst dx). Per
//   source channel and kernel row: one vec4 + up to two scalar src loads give the 6-column
//   window of all 3 taps; 24 weight loads, uniform across the workgroup (channel block =
//   workgroup_id.y), feed 96 FMAs. No early return: indices past the end are clamped and
//   only stores are guarded, so loads stay in uniform control flow. Overwrite dst.
// conv2d_3x3s1_weight: one invocation per output channel (lanes: consecutive co), 4 input
//   channels (workgroup_id.y, uniform) and one split of the (n, oy) rows (workgroup_id.z);
//   per (row, 4 columns): one vec4 dy load per lane and the 4 x 3 x windows of uniform x
//   loads feed 144 FMAs into 36 accumulators. Writes dwo like conv2d_backward_weight (dw
//   with ACCUMULATE when SPLITS == 1, else partials reduced by
//   conv2d_backward_weight_reduce).

struct Fast {
    c_in: u32,    // source channels
    h_in: u32,
    w_in: u32,    // multiple of 4
    c_out: u32,   // destination channels
    h_out: u32,
    w_out: u32,
    pt: u32,      // top padding of this pass (left padding is the PADL override)
    s_out: u32,   // weight stride between destination channels
    s_in: u32,    // weight stride between source channels
    owb: u32,     // ceil(w_out / 4)
    total: u32,   // N * h_out * owb (conv2d_3x3s1)
    rows: u32,    // N * h_out (weight gradient: dy rows)
    rps: u32,     // rows per split (weight gradient)
    nw: u32,      // CO*CI*9 (weight gradient)
    block0: u32,  // first 8-channel block of this dispatch's weight chunk (conv2d_3x3s1_u)
    _pad1: u32,
}

override PADL: u32 = 1u;    // left padding of this pass: 0, 1 or 2
override FLIP: bool = false;
override WGW: u32 = 64u;    // lanes (output channels) per weight-gradient workgroup

@group(0) @binding(10) var<uniform> f: Fast;
@group(0) @binding(11) var<storage, read> src: array<f32>;
@group(0) @binding(12) var<storage, read> src4: array<vec4<f32>>;
@group(0) @binding(13) var<storage, read_write> dst: array<f32>;
@group(0) @binding(14) var<storage, read> dy4: array<vec4<f32>>;

// The 3 tap vectors of one source row: tap kx holds columns ox0 - PADL + kx + (0..4).
// `row` is the row's first element (a multiple of 4), rok whether the row is inside the
// image (else zeros); columns outside [0, W_IN) read as zero.
fn taps(row: u32, ox0: u32, rok: bool) -> array<vec4<f32>, 3> {
    let v = select(vec4<f32>(0.0), src4[(row + ox0) >> 2u], rok);
    var l2 = 0.0;
    var l1 = 0.0;
    var r1 = 0.0;
    var r2 = 0.0;
    let last = f.w_in - 1u;
    if (PADL >= 2u) { l2 = select(0.0, src[row + select(0u, ox0 - 2u, ox0 >= 2u)], rok && ox0 >= 2u); }
    if (PADL >= 1u) { l1 = select(0.0, src[row + select(0u, ox0 - 1u, ox0 >= 1u)], rok && ox0 >= 1u); }
    if (PADL <= 1u) { r1 = select(0.0, src[row + min(ox0 + 4u, last)], rok && ox0 + 4u <= last); }
    if (PADL == 0u) { r2 = select(0.0, src[row + min(ox0 + 5u, last)], rok && ox0 + 5u <= last); }
    if (PADL == 0u) {
        return array<vec4<f32>, 3>(v, vec4<f32>(v.yzw, r1), vec4<f32>(v.zw, r1, r2));
    }
    if (PADL == 1u) {
        return array<vec4<f32>, 3>(vec4<f32>(l1, v.xyz), v, vec4<f32>(v.yzw, r1));
    }
    return array<vec4<f32>, 3>(vec4<f32>(l2, l1, v.xy), vec4<f32>(l1, v.xyz), v);
}

// Weight offset of tap k = ky*3 + kx (rotated 180 degrees for backward_input).
fn tap(k: u32) -> u32 {
    return select(k, 8u - k, FLIP);
}

fn fast_block(q: u32, cb: u32) -> Acc {
    let owb = q % f.owb;
    let t = q / f.owb;
    let oy = t % f.h_out;
    let n = t / f.h_out;
    let ox0 = owb * 4u;
    let wr = rows8(cb * CB, f.c_out - 1u, f.s_out);
    let wl = wr[0];
    let wh = wr[1];
    var a = Acc(vec4<f32>(0.0), vec4<f32>(0.0), vec4<f32>(0.0), vec4<f32>(0.0), vec4<f32>(0.0), vec4<f32>(0.0), vec4<f32>(0.0), vec4<f32>(0.0));
    let hw = f.h_in * f.w_in;
    var sb = n * f.c_in * hw;
    var wo = 0u;
    for (var c = 0u; c < f.c_in; c++) {
        for (var ky = 0u; ky < 3u; ky++) {
            let iy = i32(oy + ky) - i32(f.pt);
            let rok = iy >= 0 && iy < i32(f.h_in);
            let k = taps(sb + u32(clamp(iy, 0, i32(f.h_in) - 1)) * f.w_in, ox0, rok);
            let t0 = wo + tap(ky * 3u);
            let t1 = wo + tap(ky * 3u + 1u);
            let t2 = wo + tap(ky * 3u + 2u);
            a.c0 += w[wl.x + t0] * k[0] + w[wl.x + t1] * k[1] + w[wl.x + t2] * k[2];
            a.c1 += w[wl.y + t0] * k[0] + w[wl.y + t1] * k[1] + w[wl.y + t2] * k[2];
            a.c2 += w[wl.z + t0] * k[0] + w[wl.z + t1] * k[1] + w[wl.z + t2] * k[2];
            a.c3 += w[wl.w + t0] * k[0] + w[wl.w + t1] * k[1] + w[wl.w + t2] * k[2];
            a.c4 += w[wh.x + t0] * k[0] + w[wh.x + t1] * k[1] + w[wh.x + t2] * k[2];
            a.c5 += w[wh.y + t0] * k[0] + w[wh.y + t1] * k[1] + w[wh.y + t2] * k[2];
            a.c6 += w[wh.z + t0] * k[0] + w[wh.z + t1] * k[1] + w[wh.z + t2] * k[2];
            a.c7 += w[wh.w + t0] * k[0] + w[wh.w + t1] * k[1] + w[wh.w + t2] * k[2];
        }
        sb += hw;
        wo += f.s_in;
    }
    return a;
}

fn fast_store(q: u32, cb: u32, a: Acc, bias_lo: vec4<f32>, bias_hi: vec4<f32>) {
    let owb = q % f.owb;
    let t = q / f.owb;
    let oy = t % f.h_out;
    let n = t / f.h_out;
    let ox0 = owb * 4u;
    let ohw = f.h_out * f.w_out;
    var c = array<vec4<f32>, 8>(a.c0 + bias_lo.x, a.c1 + bias_lo.y, a.c2 + bias_lo.z, a.c3 + bias_lo.w,
                                a.c4 + bias_hi.x, a.c5 + bias_hi.y, a.c6 + bias_hi.z, a.c7 + bias_hi.w);
    for (var j = 0u; j < CB; j++) {
        let co = cb * CB + j;
        if (co >= f.c_out) { break; }
        let base = (n * f.c_out + co) * ohw + oy * f.w_out + ox0;
        for (var k = 0u; k < 4u; k++) {
            if (ox0 + k >= f.w_out) { break; }
            dst[base + k] = c[j][k];
        }
    }
}

@compute @workgroup_size(WG)
fn conv2d_3x3s1(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let q0 = flat_xz(gid, wid, nwg);
    let q = min(q0, f.total - 1u);
    let a = fast_block(q, wid.y);
    if (q0 < f.total) {
        fast_store(q, wid.y, a, vec4<f32>(0.0), vec4<f32>(0.0));
    }
}

@compute @workgroup_size(WG)
fn conv2d_3x3s1_bias(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let q0 = flat_xz(gid, wid, nwg);
    let q = min(q0, f.total - 1u);
    let a = fast_block(q, wid.y);
    let r = rows8(wid.y * CB, f.c_out - 1u, 1u);
    let lo = vec4<f32>(b[r[0].x], b[r[0].y], b[r[0].z], b[r[0].w]);
    let hi = vec4<f32>(b[r[1].x], b[r[1].y], b[r[1].z], b[r[1].w]);
    if (q0 < f.total) {
        fast_store(q, wid.y, a, lo, hi);
    }
}

// dot(d, tap) of the 3 taps of 4 channels' windows: increments of acc[kx] (vec4 over ci).
fn dw_row(rows: vec4<u32>, ox0: u32, rok: bool, d: vec4<f32>) -> array<vec4<f32>, 3> {
    let a = taps(rows.x, ox0, rok);
    let b = taps(rows.y, ox0, rok);
    let c = taps(rows.z, ox0, rok);
    let e = taps(rows.w, ox0, rok);
    return array<vec4<f32>, 3>(
        vec4<f32>(dot(d, a[0]), dot(d, b[0]), dot(d, c[0]), dot(d, e[0])),
        vec4<f32>(dot(d, a[1]), dot(d, b[1]), dot(d, c[1]), dot(d, e[1])),
        vec4<f32>(dot(d, a[2]), dot(d, b[2]), dot(d, c[2]), dot(d, e[2])));
}

// Source = x [N, C_IN, H_IN, W_IN]; dy4 = dy [N, C_OUT, H_OUT, W_OUT] (W_OUT a multiple of 4).
@compute @workgroup_size(WGW)
fn conv2d_3x3s1_weight(@builtin(local_invocation_id) lid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
    let co_raw = wid.x * WGW + lid.x;
    let co = min(co_raw, f.c_out - 1u);
    let ci0 = wid.y * 4u;
    let split = wid.z;
    let hw = f.h_in * f.w_in;
    let ohw = f.h_out * f.w_out;
    let cil = min(vec4<u32>(ci0) + vec4<u32>(0u, 1u, 2u, 3u), vec4<u32>(f.c_in - 1u)) * hw;
    var a0 = vec4<f32>(0.0);
    var a1 = vec4<f32>(0.0);
    var a2 = vec4<f32>(0.0);
    var a3 = vec4<f32>(0.0);
    var a4 = vec4<f32>(0.0);
    var a5 = vec4<f32>(0.0);
    var a6 = vec4<f32>(0.0);
    var a7 = vec4<f32>(0.0);
    var a8 = vec4<f32>(0.0);
    let r0 = split * f.rps;
    let r1 = min(r0 + f.rps, f.rows);
    let hmax = i32(f.h_in) - 1;
    for (var r = r0; r < r1; r++) {
        let n = r / f.h_out;
        let oy = r % f.h_out;
        let dyrow = ((n * f.c_out + co) * f.h_out + oy) * f.w_out;
        let xn = vec4<u32>(n * f.c_in * hw) + cil;
        let iy0 = i32(oy) - i32(f.pt);
        let y0 = vec4<u32>(u32(clamp(iy0, 0, hmax)) * f.w_in) + xn;
        let y1 = vec4<u32>(u32(clamp(iy0 + 1, 0, hmax)) * f.w_in) + xn;
        let y2 = vec4<u32>(u32(clamp(iy0 + 2, 0, hmax)) * f.w_in) + xn;
        let ok0 = iy0 >= 0 && iy0 <= hmax;
        let ok1 = iy0 + 1 >= 0 && iy0 + 1 <= hmax;
        let ok2 = iy0 + 2 >= 0 && iy0 + 2 <= hmax;
        for (var ob = 0u; ob < f.owb; ob++) {
            let ox0 = ob * 4u;
            let d = dy4[(dyrow + ox0) >> 2u];
            let i0 = dw_row(y0, ox0, ok0, d);
            a0 += i0[0];
            a1 += i0[1];
            a2 += i0[2];
            let i1 = dw_row(y1, ox0, ok1, d);
            a3 += i1[0];
            a4 += i1[1];
            a5 += i1[2];
            let i2 = dw_row(y2, ox0, ok2, d);
            a6 += i2[0];
            a7 += i2[1];
            a8 += i2[2];
        }
    }
    if (co_raw < f.c_out) {
        var acc = array<vec4<f32>, 9>(a0, a1, a2, a3, a4, a5, a6, a7, a8);
        let base = split * f.nw + co * f.c_in * 9u;
        for (var k = 0u; k < 4u; k++) {
            let ci = ci0 + k;
            if (ci >= f.c_in) { break; }
            for (var t = 0u; t < 9u; t++) {
                let o = base + ci * 9u + t;
                dwo[o] = select(0.0, dwo[o], ACCUMULATE) + acc[t][k];
            }
        }
    }
}

// ---- conv2d_3x3s1_u: the same pass with weights in a uniform buffer ----
//
// conv2d_pack_weights repacks w (overwrites wpack) per block of 8 destination channels as
// [source channel][tap 0..9][8 channels] (18 vec4 per source channel; taps rotated and
// channel roles swapped for backward_input), blocks PK.STRIDE floats apart. Each
// conv2d_3x3s1_u[_bias] dispatch binds one chunk of whole blocks (<= 64 KiB) as `wu` and
// covers its blocks on grid y (global block F.BLOCK0 + workgroup_id.y). Uniform-buffer
// reads at workgroup-uniform offsets are one scalar load + broadcast on lavapipe, where
// storage reads are per-lane loops; the weights are the operand every lane shares.

struct Pack {
    nd: u32,      // destination channels (CO forward, CI backward_input)
    ns: u32,      // source channels
    ci: u32,      // CI of w
    flip: u32,    // 1: backward_input (w[s, d] rotated 180 degrees)
    stride: u32,  // floats per block of 8 destination channels
    total: u32,   // blocks * stride
}

@group(0) @binding(15) var<uniform> wu: array<vec4<f32>, 4096>;
@group(0) @binding(16) var<uniform> pk: Pack;
@group(0) @binding(17) var<storage, read_write> wpack: array<f32>;

@compute @workgroup_size(WG)
fn conv2d_pack_weights(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat(gid, nwg);
    if (i >= pk.total) { return; }
    let blk = i / pk.stride;
    let r = i % pk.stride;
    let c = r / 72u;
    let t = (r % 72u) / 8u;
    let d = blk * 8u + r % 8u;
    var v = 0.0;
    if (c < pk.ns && d < pk.nd) {
        if (pk.flip != 0u) {
            v = w[(c * pk.ci + d) * 9u + 8u - t];
        } else {
            v = w[(d * pk.ci + c) * 9u + t];
        }
    }
    wpack[i] = v;
}

fn fast_block_u(q: u32, lb: u32) -> Acc {
    let owb = q % f.owb;
    let t = q / f.owb;
    let oy = t % f.h_out;
    let n = t / f.h_out;
    let ox0 = owb * 4u;
    var a = Acc(vec4<f32>(0.0), vec4<f32>(0.0), vec4<f32>(0.0), vec4<f32>(0.0), vec4<f32>(0.0), vec4<f32>(0.0), vec4<f32>(0.0), vec4<f32>(0.0));
    let hw = f.h_in * f.w_in;
    var sb = n * f.c_in * hw;
    var wb = lb * f.s_out;  // S_OUT: vec4s per block
    for (var c = 0u; c < f.c_in; c++) {
        for (var ky = 0u; ky < 3u; ky++) {
            let iy = i32(oy + ky) - i32(f.pt);
            let rok = iy >= 0 && iy < i32(f.h_in);
            let k = taps(sb + u32(clamp(iy, 0, i32(f.h_in) - 1)) * f.w_in, ox0, rok);
            let o = wb + ky * 6u;
            for (var kx = 0u; kx < 3u; kx++) {
                let lo = wu[o + kx * 2u];
                let hi = wu[o + kx * 2u + 1u];
                let v = k[kx];
                a.c0 += lo.x * v;
                a.c1 += lo.y * v;
                a.c2 += lo.z * v;
                a.c3 += lo.w * v;
                a.c4 += hi.x * v;
                a.c5 += hi.y * v;
                a.c6 += hi.z * v;
                a.c7 += hi.w * v;
            }
        }
        sb += hw;
        wb += 18u;
    }
    return a;
}

@compute @workgroup_size(WG)
fn conv2d_3x3s1_u(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let q0 = flat_xz(gid, wid, nwg);
    let q = min(q0, f.total - 1u);
    let a = fast_block_u(q, wid.y);
    if (q0 < f.total) {
        fast_store(q, f.block0 + wid.y, a, vec4<f32>(0.0), vec4<f32>(0.0));
    }
}

@compute @workgroup_size(WG)
fn conv2d_3x3s1_u_bias(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let q0 = flat_xz(gid, wid, nwg);
    let q = min(q0, f.total - 1u);
    let a = fast_block_u(q, wid.y);
    let cb = f.block0 + wid.y;
    let r = rows8(cb * CB, f.c_out - 1u, 1u);
    let lo = vec4<f32>(b[r[0].x], b[r[0].y], b[r[0].z], b[r[0].w]);
    let hi = vec4<f32>(b[r[1].x], b[r[1].y], b[r[1].z], b[r[1].w]);
    if (q0 < f.total) {
        fast_store(q, cb, a, lo, hi);
    }
}

// ---- conv2d_3x3s1_weight_u: the weight gradient with dy in uniform windows ----
//
// conv2d_pack_dy (overwrites wpack) copies dy into windows of 16384 floats (64 KiB), one
// per (sample n, group cg of CG output channels, block rb of RH output rows): window
// (n * NCG + cg) * NRB + rb holds dy[n, cg * CG + c, rb * RH + r, ox] at (c * RH + r) * OW
// + ox, zero for channels past CO or rows past OH. (Channel groups trade dispatches for
// taller windows: an x row is read for the RH + 2 rows around a window, so short windows
// waste work.)
// One conv2d_3x3s1_weight_u dispatch per window (its Win uniform), grid [ceil(CI / WGW),
// CG / 4, 1]: lanes are input channels (their x rows are per-lane vec4 windows, as
// in conv2d_3x3s1), the workgroup's 4 output channels read dy from the uniform window at
// workgroup-uniform offsets (one load + broadcast on lavapipe). Each x row (1 vec4 + up to
// 2 scalars per 4 columns) feeds the 3 dy rows it meets (ky), 4 output channels and 3 taps:
// 144 FMAs per 6 per-lane loads and 12 uniform vec4 loads. Writes dw: the first window
// overwrites (unless ACCUMULATE), the others add.

struct DyPack {
    co: u32,
    oh: u32,
    ow: u32,
    rh: u32,     // RH: output rows per window
    nrb: u32,    // NRB = ceil(OH / RH)
    total: u32,  // N * NCG * NRB * 16384
    cg: u32,     // CG: output channels per window (a multiple of 4)
    ncg: u32,    // NCG = ceil(CO / CG)
}

struct Win {
    n: u32,
    oy0: u32,    // first output row of the window (rb * RH)
    rows: u32,   // valid rows: min(RH, OH - oy0)
    first: u32,  // 1: the first window of its channel group (overwrite dw unless ACCUMULATE)
    rh: u32,
    co0: u32,    // first output channel of the window (cg * CG)
    _p1: u32,
    _p2: u32,
}

@group(0) @binding(18) var<uniform> wn: Win;
@group(0) @binding(19) var<uniform> dp: DyPack;

@compute @workgroup_size(WG)
fn conv2d_pack_dy(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat(gid, nwg);
    if (i >= dp.total) { return; }
    let win = i / 16384u;
    let within = i % 16384u;
    let rb = win % dp.nrb;
    let cg = (win / dp.nrb) % dp.ncg;
    let n = win / (dp.nrb * dp.ncg);
    let plane = dp.rh * dp.ow;
    let cl = within / plane;
    let c = cg * dp.cg + cl;
    let r = (within % plane) / dp.ow;
    let ox = within % dp.ow;
    let oy = rb * dp.rh + r;
    var v = 0.0;
    if (cl < dp.cg && c < dp.co && oy < dp.oh) {
        v = dy[((n * dp.co + c) * dp.oh + oy) * dp.ow + ox];
    }
    wpack[i] = v;
}

// dot(d<c>, k) for the 4 output channels' dy vectors.
fn dots(d0: vec4<f32>, d1: vec4<f32>, d2: vec4<f32>, d3: vec4<f32>, k: vec4<f32>) -> vec4<f32> {
    return vec4<f32>(dot(d0, k), dot(d1, k), dot(d2, k), dot(d3, k));
}

@compute @workgroup_size(WGW)
fn conv2d_3x3s1_weight_u(@builtin(local_invocation_id) lid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
    let ci_raw = wid.x * WGW + lid.x;
    let ci = min(ci_raw, f.c_in - 1u);
    let cb = wid.y;
    let hw = f.h_in * f.w_in;
    let xs = (wn.n * f.c_in + ci) * hw;
    let owv = f.w_out / 4u;
    let cs = wn.rh * owv;          // vec4s between output channels in the window
    let cbase = cb * 4u * cs;
    let rows = i32(wn.rows);
    // a<ky><kx>: tap (ky, kx) of output channels 4cb .. 4cb + 4.
    var a00 = vec4<f32>();
    var a01 = vec4<f32>();
    var a02 = vec4<f32>();
    var a10 = vec4<f32>();
    var a11 = vec4<f32>();
    var a12 = vec4<f32>();
    var a20 = vec4<f32>();
    var a21 = vec4<f32>();
    var a22 = vec4<f32>();
    // x rows iy = oy0 - PT + j meet window rows lr = j - ky (kept where 0 <= lr < rows).
    let iy0 = i32(wn.oy0) - i32(f.pt);
    for (var j = 0; j < rows + 2; j++) {
        let iy = iy0 + j;
        if (iy < 0 || iy >= i32(f.h_in)) { continue; }
        let row = xs + u32(iy) * f.w_in;
        // Masks (0 or 1) and clamped window row offsets of the three dy rows.
        let m0 = select(0.0, 1.0, j < rows);
        let m1 = select(0.0, 1.0, j >= 1 && j - 1 < rows);
        let m2 = select(0.0, 1.0, j >= 2 && j - 2 < rows);
        let r0 = cbase + u32(clamp(j, 0, rows - 1)) * owv;
        let r1 = cbase + u32(clamp(j - 1, 0, rows - 1)) * owv;
        let r2 = cbase + u32(clamp(j - 2, 0, rows - 1)) * owv;
        for (var ob = 0u; ob < owv; ob++) {
            let k = taps(row, ob * 4u, true);
            {
                let d0 = wu[r0 + ob];
                let d1 = wu[r0 + ob + cs];
                let d2 = wu[r0 + ob + 2u * cs];
                let d3 = wu[r0 + ob + 3u * cs];
                a00 = fma(dots(d0, d1, d2, d3, k[0]), vec4<f32>(m0), a00);
                a01 = fma(dots(d0, d1, d2, d3, k[1]), vec4<f32>(m0), a01);
                a02 = fma(dots(d0, d1, d2, d3, k[2]), vec4<f32>(m0), a02);
            }
            {
                let d0 = wu[r1 + ob];
                let d1 = wu[r1 + ob + cs];
                let d2 = wu[r1 + ob + 2u * cs];
                let d3 = wu[r1 + ob + 3u * cs];
                a10 = fma(dots(d0, d1, d2, d3, k[0]), vec4<f32>(m1), a10);
                a11 = fma(dots(d0, d1, d2, d3, k[1]), vec4<f32>(m1), a11);
                a12 = fma(dots(d0, d1, d2, d3, k[2]), vec4<f32>(m1), a12);
            }
            {
                let d0 = wu[r2 + ob];
                let d1 = wu[r2 + ob + cs];
                let d2 = wu[r2 + ob + 2u * cs];
                let d3 = wu[r2 + ob + 3u * cs];
                a20 = fma(dots(d0, d1, d2, d3, k[0]), vec4<f32>(m2), a20);
                a21 = fma(dots(d0, d1, d2, d3, k[1]), vec4<f32>(m2), a21);
                a22 = fma(dots(d0, d1, d2, d3, k[2]), vec4<f32>(m2), a22);
            }
        }
    }
    if (ci_raw >= f.c_in) { return; }
    // x row iy meets dy row oy = iy + PT - ky: window row j - ky is tap row ky.
    var acc = array<vec4<f32>, 9>(a00, a01, a02, a10, a11, a12, a20, a21, a22);
    let add = ACCUMULATE || wn.first == 0u;
    for (var c = 0u; c < 4u; c++) {
        let co = wn.co0 + cb * 4u + c;
        if (co >= f.c_out) { break; }
        let base = (co * f.c_in + ci) * 9u;
        for (var t = 0u; t < 9u; t++) {
            let o = base + t;
            dwo[o] = select(0.0, dwo[o], add) + acc[t][c];
        }
    }
}
