// Cooperative-matrix operations, EMULATED in plain WGSL (for adapters without cooperative
// matrices, e.g. lavapipe in CI): the same tiles, the same memory reads and writes, the same
// f16 operands with f32 sums, so that a kernel's tiling, staging and indexing are tested
// everywhere. The other prelude is shaders/coop/real.wgsl; see shaders/coop/gemm.wgsl.
//
// Emulation: a "load" keeps the tile's first index and row stride (the kernels never write a
// tile's memory between its load and its multiply-adds); a multiply-add reads A and B from
// sa / sb row-major with those strides; each of the subgroup's SG = 32 lanes owns the
// accumulator elements e = lane + o * 32 (row e / CT, column e % CT) as scalars. The host
// builds the emulated kernels with SG = 32.
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

fn coop_mma(a: CoopA, b: CoopB, c: CoopC) -> CoopC {
    var r = c;
    for (var o = 0u; o < EMU_OWN * coop_one; o++) {
        let e = coop_lane + o * 32u;
        let row = e / CT;
        let col = e % CT;
        var s = r[o];
        for (var x = 0u; x < CT * coop_one; x++) {
            s += f32(sa[a.x + row * a.y + x / 4u][x % 4u]) * f32(sb[b.x + x * b.y + col / 4u][col % 4u]);
        }
        r[o] = s;
    }
    return r;
}

fn coop_store(c: CoopC, i: u32, stride: u32) {
    for (var o = 0u; o < EMU_OWN * coop_one; o++) {
        let e = coop_lane + o * 32u;
        sc[i + (e / CT) * stride + e % CT] = c[o];
    }
}
