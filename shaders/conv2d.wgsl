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

fn flat(gid: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return gid.x + gid.y * nwg.x * WG;
}

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
