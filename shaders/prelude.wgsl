// The prelude: helpers several shaders use, written once. Not a shader of its own: the
// registry (src/gpu/shaders.rs) appends it to every file in shaders/ when it builds the
// module, and tests/shaders.rs validates and translates each file as compiled (file, then
// this). Appended, not prepended: WGSL declarations may come in any order, so a file's
// `enable` directives stay first and the line numbers in naga / wgpu errors are the file's.
//
// Rules: plain WGSL only (no f16, no subgroups, nothing that needs a feature), no bindings
// and no entry points (it must not change a file's layout). Every file declares WG, its 1-D
// workgroup size (`const` or `override`), which `flat` reads.

// Linear index of an invocation of a 1-D dispatch laid out over a 2-D grid of workgroups of
// WG lanes, x first (Gpu::groups_1d goes 2-D when one dimension would exceed
// max_compute_workgroups_per_dimension); kernels return past their element count.
fn flat(gid: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return gid.x + gid.y * nwg.x * WG;
}

// PCG-RXS-M-XS 32-bit hash (Jarzynski & Olano, "Hash Functions for GPU Rendering", 2020):
// dropout masks, augmentation draws, SmoothGrad noise, filter-ascent starts.
// src/reference/dropout.rs `pcg` is the same function bit for bit (u32 wrapping).
fn pcg(v: u32) -> u32 {
    let state = v * 747796405u + 2891336453u;
    let word = ((state >> ((state >> 28u) + 4u)) ^ state) * 277803737u;
    return (word >> 22u) ^ word;
}

// Does inverted dropout keep element i under (seed, rate)? u = (h >> 8) * 2^-24 is uniform in
// [0, 1) and exact in f32; hashing the index and the seed separately before mixing keeps
// masks of different seeds unrelated. shaders/dropout.wgsl's mask, and the BatchNorm pass
// that applies a dropout's mask inside it (batchnorm_forward_train_act_pool): same bits.
fn dropout_keep(i: u32, seed: u32, rate: f32) -> bool {
    let h = pcg(pcg(i) ^ pcg(seed));
    let u = f32(h >> 8u) * 5.9604644775390625e-8;  // 2^-24
    return u >= rate;
}
