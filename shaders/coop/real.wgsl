// Cooperative-matrix operations, REAL spelling (wgpu_cooperative_matrix: tensor cores on
// NVIDIA, simdgroup matrices on Apple). One of the two preludes of the *_coop kernels (see
// shaders/coop/gemm.wgsl for the contract); shaders/coop/emulated.wgsl is the other. Only
// the bodies of these functions differ between the two builds.
enable f16;
enable wgpu_cooperative_matrix;

// Tile side: 16x16x16, f16 operands, f32 accumulation (the configuration
// `Gpu::coop_configs` must offer).
const CT: u32 = 16u;
alias CoopA = coop_mat16x16<f16, A>;
alias CoopB = coop_mat16x16<f16, B>;
alias CoopC = coop_mat16x16<f32, C>;

// Called once per invocation before any other operation (the emulation keeps its lane).
fn coop_setup(li: u32, opaque: u32) {}

fn coop_zero() -> CoopC {
    return CoopC();
}

// The CT x CT tile of A at sa[i] (vec4 units), rows `stride` vec4s apart, row-major.
fn coop_load_a(i: u32, stride: u32) -> CoopA {
    return coopLoadT<CoopA>(&sa[i], stride);
}

// The CT x CT tile of B at sb[i], rows `stride` vec4s apart, row-major.
fn coop_load_b(i: u32, stride: u32) -> CoopB {
    return coopLoadT<CoopB>(&sb[i], stride);
}

// a * b + c.
fn coop_mma(a: CoopA, b: CoopB, c: CoopC) -> CoopC {
    return coopMultiplyAdd(a, b, c);
}

// c into sc[i ..], rows `stride` floats apart, row-major.
fn coop_store(c: CoopC, i: u32, stride: u32) {
    coopStoreT(c, &sc[i], stride);
}
