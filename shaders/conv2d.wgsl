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
// conv2d_forward, conv2d_forward_bias: one invocation per 4 output channels x 4 adjacent ox of
//   one (n, oy); each x load feeds 4 channels, each w load 4 pixels. Overwrite y.
// conv2d_backward_input: one invocation per 4 input channels x 4 adjacent ix of one (n, iy).
//   Overwrites dx.
// conv2d_backward_weight: one invocation per (split, 4 co x 4 ci block, ky, kx); sums the
//   (n, oy) rows [split*RPS, (split+1)*RPS) into 16 registers and writes dwo[split*NW + widx].
//   With SPLITS == 1 `dwo` is dw (overwrite, or add with ACCUMULATE); else it is a partial
//   buffer [SPLITS, NW] (ACCUMULATE false: overwrite) and
// conv2d_backward_weight_reduce sums the SPLITS partials of each weight: overwrites dw, or
//   adds with ACCUMULATE.
// conv2d_backward_bias: one workgroup per co, tree reduction in workgroup memory; overwrites
//   db, or adds with ACCUMULATE.
// 1-D invocation indices are laid out over a 2-D grid when they exceed
// max_compute_workgroups_per_dimension * WG (see Gpu::groups_1d).

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
    cob: u32,        // ceil(CO / 4): output-channel blocks
    cib: u32,        // ceil(CI / 4): input-channel blocks
    owb: u32,        // ceil(OW / 4): output-column blocks
    iwb: u32,        // ceil(W / 4): input-column blocks
    splits: u32,     // SPLITS: batch-row splits of the weight gradient
    rps: u32,        // RPS: (n, oy) rows per split
    nw: u32,         // NW = CO*CI*KH*KW
    fwd_total: u32,  // N*COB*OH*OWB forward invocations
    bin_total: u32,  // N*CIB*H*IWB backward_input invocations
    bw_blocks: u32,  // COB*CIB*KH*KW weight blocks per split
    bw_total: u32,   // SPLITS * bw_blocks
}

const WG: u32 = 64u;
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

fn flat(gid: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return gid.x + gid.y * nwg.x * WG;
}

// Accumulators of one forward / backward_input invocation: px[k] holds pixel k's 4 channels.
struct Block {
    px0: vec4<f32>,
    px1: vec4<f32>,
    px2: vec4<f32>,
    px3: vec4<f32>,
}

// Forward block i = ((n*COB + cb)*OH + oy)*OWB + owb: channels 4cb.., columns 4owb...
fn forward_block(i: u32) -> Block {
    let owb = i % p.owb;
    var t = i / p.owb;
    let oy = t % p.oh;
    t /= p.oh;
    let cb = t % p.cob;
    let n = t / p.cob;
    let co0 = cb * 4u;
    let ox0 = owb * 4u;
    let khw = p.kh * p.kw;
    let hw = p.h * p.w;
    // Weight rows of the 4 channels; channels past CO repeat the last one (result discarded).
    let wstride = p.ci * khw;
    let wr = vec4<u32>(min(co0, p.co - 1u), min(co0 + 1u, p.co - 1u), min(co0 + 2u, p.co - 1u), min(co0 + 3u, p.co - 1u)) * wstride;
    var a0 = vec4<f32>(0.0);
    var a1 = vec4<f32>(0.0);
    var a2 = vec4<f32>(0.0);
    var a3 = vec4<f32>(0.0);
    let xn = n * p.ci * hw;
    for (var ky = 0u; ky < p.kh; ky++) {
        let iy = i32(oy * p.sh + ky) - i32(p.pt);
        if (iy < 0 || iy >= i32(p.h)) { continue; }
        for (var kx = 0u; kx < p.kw; kx++) {
            let ix = vec4<i32>(vec4<u32>(ox0, ox0 + 1u, ox0 + 2u, ox0 + 3u) * p.sw + kx) - i32(p.pl);
            let ok = (ix >= vec4<i32>(0)) & (ix < vec4<i32>(i32(p.w)));
            if (!any(ok)) { continue; }
            let xc = vec4<u32>(clamp(ix, vec4<i32>(0), vec4<i32>(i32(p.w) - 1)));
            var xo = xn + u32(iy) * p.w;
            var wo = ky * p.kw + kx;
            for (var ci = 0u; ci < p.ci; ci++) {
                let xv = select(vec4<f32>(0.0), vec4<f32>(x[xo + xc.x], x[xo + xc.y], x[xo + xc.z], x[xo + xc.w]), ok);
                let wv = vec4<f32>(w[wr.x + wo], w[wr.y + wo], w[wr.z + wo], w[wr.w + wo]);
                a0 += xv.x * wv;
                a1 += xv.y * wv;
                a2 += xv.z * wv;
                a3 += xv.w * wv;
                xo += hw;
                wo += khw;
            }
        }
    }
    return Block(a0, a1, a2, a3);
}

fn store_y(i: u32, blk: Block, bias: vec4<f32>) {
    let owb = i % p.owb;
    var t = i / p.owb;
    let oy = t % p.oh;
    t /= p.oh;
    let cb = t % p.cob;
    let n = t / p.cob;
    let ohw = p.oh * p.ow;
    let ox0 = owb * 4u;
    var px = array<vec4<f32>, 4>(blk.px0 + bias, blk.px1 + bias, blk.px2 + bias, blk.px3 + bias);
    for (var j = 0u; j < 4u; j++) {
        let co = cb * 4u + j;
        if (co >= p.co) { break; }
        let base = (n * p.co + co) * ohw + oy * p.ow;
        for (var k = 0u; k < 4u; k++) {
            if (ox0 + k >= p.ow) { break; }
            y[base + ox0 + k] = px[k][j];
        }
    }
}

@compute @workgroup_size(WG)
fn conv2d_forward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat(gid, nwg);
    if (i >= p.fwd_total) { return; }
    store_y(i, forward_block(i), vec4<f32>(0.0));
}

@compute @workgroup_size(WG)
fn conv2d_forward_bias(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat(gid, nwg);
    if (i >= p.fwd_total) { return; }
    let co0 = ((i / (p.owb * p.oh)) % p.cob) * 4u;
    let last = p.co - 1u;
    let bias = vec4<f32>(b[min(co0, last)], b[min(co0 + 1u, last)], b[min(co0 + 2u, last)], b[min(co0 + 3u, last)]);
    store_y(i, forward_block(i), bias);
}

// Block i = ((n*CIB + cb)*H + iy)*IWB + iwb: input channels 4cb.., columns 4iwb...
@compute @workgroup_size(WG)
fn conv2d_backward_input(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat(gid, nwg);
    if (i >= p.bin_total) { return; }
    let iwb = i % p.iwb;
    var t = i / p.iwb;
    let iy = t % p.h;
    t /= p.h;
    let cb = t % p.cib;
    let n = t / p.cib;
    let ci0 = cb * 4u;
    let ix0 = iwb * 4u;
    let khw = p.kh * p.kw;
    let ohw = p.oh * p.ow;
    let wco = p.ci * khw;  // weight stride between output channels
    let last = p.ci - 1u;
    let wc = vec4<u32>(min(ci0, last), min(ci0 + 1u, last), min(ci0 + 2u, last), min(ci0 + 3u, last)) * khw;
    var a0 = vec4<f32>(0.0);
    var a1 = vec4<f32>(0.0);
    var a2 = vec4<f32>(0.0);
    var a3 = vec4<f32>(0.0);
    let sw = i32(p.sw);
    for (var ky = 0u; ky < p.kh; ky++) {
        // Output row oy with oy*SH + ky - PT == iy, if integral and in range.
        let ty = i32(iy + p.pt) - i32(ky);
        if (ty < 0 || ty % i32(p.sh) != 0) { continue; }
        let oy = u32(ty) / p.sh;
        if (oy >= p.oh) { continue; }
        for (var kx = 0u; kx < p.kw; kx++) {
            let tx = vec4<i32>(vec4<u32>(ix0, ix0 + 1u, ix0 + 2u, ix0 + 3u) + p.pl) - i32(kx);
            let ox = tx / sw;
            let ok = (tx >= vec4<i32>(0)) & (tx % sw == vec4<i32>(0)) & (ox < vec4<i32>(i32(p.ow)));
            if (!any(ok)) { continue; }
            let oc = vec4<u32>(clamp(ox, vec4<i32>(0), vec4<i32>(i32(p.ow) - 1)));
            var dyo = n * p.co * ohw + oy * p.ow;
            var wo = ky * p.kw + kx;
            for (var co = 0u; co < p.co; co++) {
                let dv = select(vec4<f32>(0.0), vec4<f32>(dy[dyo + oc.x], dy[dyo + oc.y], dy[dyo + oc.z], dy[dyo + oc.w]), ok);
                let wv = vec4<f32>(w[wo + wc.x], w[wo + wc.y], w[wo + wc.z], w[wo + wc.w]);
                a0 += dv.x * wv;
                a1 += dv.y * wv;
                a2 += dv.z * wv;
                a3 += dv.w * wv;
                dyo += ohw;
                wo += wco;
            }
        }
    }
    let hw = p.h * p.w;
    var px = array<vec4<f32>, 4>(a0, a1, a2, a3);
    for (var j = 0u; j < 4u; j++) {
        let ci = ci0 + j;
        if (ci >= p.ci) { break; }
        let base = (n * p.ci + ci) * hw + iy * p.w;
        for (var k = 0u; k < 4u; k++) {
            if (ix0 + k >= p.w) { break; }
            dx[base + ix0 + k] = px[k][j];
        }
    }
}

// Invocation i = split*BW_BLOCKS + ((cob*CIB + cib)*KH + ky)*KW + kx.
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
    let co0 = cob * 4u;
    let ci0 = cib * 4u;
    let hw = p.h * p.w;
    let ohw = p.oh * p.ow;
    // Channel offsets inside one sample; channels past the end repeat the last (discarded).
    let dco = vec4<u32>(min(co0, p.co - 1u), min(co0 + 1u, p.co - 1u), min(co0 + 2u, p.co - 1u), min(co0 + 3u, p.co - 1u)) * ohw;
    let xci = vec4<u32>(min(ci0, p.ci - 1u), min(ci0 + 1u, p.ci - 1u), min(ci0 + 2u, p.ci - 1u), min(ci0 + 3u, p.ci - 1u)) * hw;
    // Columns ox whose ix = ox*SW + kx - PL lies in [0, W): [ox_lo, ox_hi).
    let sw = i32(p.sw);
    let lo_num = i32(p.pl) - i32(kx);
    let ox_lo = select(0, (lo_num + sw - 1) / sw, lo_num > 0);
    let hi_num = i32(p.w) - 1 + i32(p.pl) - i32(kx);
    let ox_hi = select(0, min(i32(p.ow), hi_num / sw + 1), hi_num >= 0);
    var a0 = vec4<f32>(0.0);  // co0 + 0, over ci0..ci0+3
    var a1 = vec4<f32>(0.0);
    var a2 = vec4<f32>(0.0);
    var a3 = vec4<f32>(0.0);
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
            let xr = n * p.ci * hw + u32(iy) * p.w;
            let d = dco + dyr;
            let xs = xci + xr;
            var ix = ix_lo;
            for (var ox = u32(ox_lo); ox < u32(ox_hi); ox++) {
                let xv = vec4<f32>(x[xs.x + ix], x[xs.y + ix], x[xs.z + ix], x[xs.w + ix]);
                a0 += dy[d.x + ox] * xv;
                a1 += dy[d.y + ox] * xv;
                a2 += dy[d.z + ox] * xv;
                a3 += dy[d.w + ox] * xv;
                ix += p.sw;
            }
        }
    }
    var acc = array<vec4<f32>, 4>(a0, a1, a2, a3);
    let khw = p.kh * p.kw;
    let base = split * p.nw + ky * p.kw + kx;
    for (var j = 0u; j < 4u; j++) {
        let co = co0 + j;
        if (co >= p.co) { break; }
        for (var k = 0u; k < 4u; k++) {
            let ci = ci0 + k;
            if (ci >= p.ci) { break; }
            let o = base + (co * p.ci + ci) * khw;
            dwo[o] = select(0.0, dwo[o], ACCUMULATE) + acc[j][k];
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
