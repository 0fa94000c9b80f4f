// Cooperative-matrix operations, EMULATED in plain WGSL (for adapters without cooperative
// matrices, e.g. lavapipe in CI): the same tiles, the same memory reads and writes, the same
// f16 operands with f32 sums, so that a kernel's tiling, staging and indexing are tested
// everywhere. The other prelude is shaders/coop/real.wgsl; see shaders/coop/gemm.wgsl.
//
// Emulation: a "load" keeps the tile's first index and row stride (the kernels never write a
// tile's memory between its load and its multiply-adds); a multiply-add reads A and B from
// sa / sb row-major with those strides; each of the subgroup's SG = 32 lanes owns the
// accumulator elements e = lane + o * 32 (row e / CT, column e % CT) as scalars. The host
// builds the emulated kernels with SG = 32. A tile's 16-term sums are formed as four vec4
// dot products (real cooperative matrices leave the order to the hardware too).
enable f16;

const CT: u32 = 16u;
// Accumulator elements per lane (CT * CT / 32).
const EMU_OWN: u32 = 8u;
alias CoopA = vec2<u32>;
alias CoopB = vec2<u32>;
alias CoopC = array<f32, EMU_OWN>;

var<private> coop_lane: u32;
// 1, but not to the compiler (`opaque` is a runtime value >= 1): the emulation's loops stay
// loops, which a CPU driver compiles in seconds rather than minutes.
var<private> coop_one: u32;

fn coop_setup(li: u32, opaque: u32) {
    coop_lane = li % 32u;
    coop_one = min(opaque, 1u);
}

fn coop_zero() -> CoopC {
    return CoopC();
}

fn coop_load_a(i: u32, stride: u32) -> CoopA {
    return CoopA(i, stride);
}

fn coop_load_b(i: u32, stride: u32) -> CoopB {
    return CoopB(i, stride);
}

// Lane l owns elements e = l + 32 o: row l / CT + 2 o, column l % CT for every o. Its 16
// B values (that column over the depth) are read once as four vec4; each owned row of A is
// four vec4 reads, summed by dot products.
fn coop_b_column(b: CoopB, k: u32, col: u32) -> vec4<f32> {
    let at = b.x + k * b.y + col / 4u;
    let lane = col % 4u;
    return vec4<f32>(f32(sb[at][lane]), f32(sb[at + b.y][lane]), f32(sb[at + 2u * b.y][lane]), f32(sb[at + 3u * b.y][lane]));
}

fn coop_mma(a: CoopA, b: CoopB, c: CoopC) -> CoopC {
    var r = c;
    let col = coop_lane % CT;
    let b0 = coop_b_column(b, 0u, col);
    let b1 = coop_b_column(b, 4u, col);
    let b2 = coop_b_column(b, 8u, col);
    let b3 = coop_b_column(b, 12u, col);
    for (var o = 0u; o < EMU_OWN * coop_one; o++) {
        let at = a.x + (coop_lane / CT + 2u * o) * a.y;
        r[o] = r[o] + dot(vec4<f32>(sa[at]), b0) + dot(vec4<f32>(sa[at + 1u]), b1) + dot(vec4<f32>(sa[at + 2u]), b2) + dot(vec4<f32>(sa[at + 3u]), b3);
    }
    return r;
}

fn coop_store(c: CoopC, i: u32, stride: u32) {
    for (var o = 0u; o < EMU_OWN * coop_one; o++) {
        let e = coop_lane + o * 32u;
        sc[i + (e / CT) * stride + e % CT] = c[o];
    }
}
