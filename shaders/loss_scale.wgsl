// Dynamic loss scaling for mixed-precision training (nn::loss_scale): the loss gradient is
// multiplied by a scale S before the backward pass, so that gradients too small for f16
// (below 6e-8) survive the f16 rounding of the mixed-precision GEMM operands; the
// optimizer divides them by S again (optim.wgsl's *_scaled entries). When a step's
// gradients hold an inf or NaN (S pushed a value past f16's 65504), the step is skipped and
// S halved; after `interval` finite steps in a row S doubles (PyTorch's GradScaler rule).
//
// State s: 8 f32 on the GPU, never read back in a step (the host reads it per epoch):
//   s[0] scale     S for the next backward pass
//   s[1] unscale   1 / the S this step's gradients carry (the optimizer multiplies by it)
//   s[2] skip      1: this step's gradients overflowed; the optimizer changes nothing
//   s[3] applied   steps applied (Adam's t), exact in f32 up to 2^24
//   s[4] good      finite steps since S last changed
//   s[5] skipped   steps skipped in all
//   s[6] interval  finite steps before S doubles
//   s[7] unused
// flag: one u32, set by the check (integer atomics only), cleared by the update.
//
// Per training step, in order:
//   loss_scale_apply   dlogits[i] *= s[0]             (one invocation per element, in place)
//   (the backward pass)
//   loss_scale_check   flag |= any grad not finite    (one invocation per arena element)
//   loss_scale_update  the rule above                  (one invocation)
//   (the optimizer's *_scaled entry)

struct Params {
    n: u32,   // elements of the tensor the entry runs over (dlogits or the gradient arena)
}

const WG: u32 = 256u;
const MIN_SCALE: f32 = 5.9604645e-8;  // 2^-24: below it S could not recover in time
const MAX_SCALE: f32 = 16777216.0;    // 2^24

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> s: array<f32>;
@group(0) @binding(2) var<storage, read_write> flag: array<atomic<u32>>;
@group(0) @binding(3) var<storage, read_write> dlogits: array<f32>;
@group(0) @binding(4) var<storage, read> grads: array<f32>;

// Not inf and not NaN: the exponent bits are not all ones (WGSL has no isinf / isnan).
fn finite(x: f32) -> bool {
    return (bitcast<u32>(x) & 0x7f800000u) != 0x7f800000u;
}

@compute @workgroup_size(WG)
fn loss_scale_apply(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat(gid, nwg);
    if (i >= p.n) { return; }
    dlogits[i] = dlogits[i] * s[0];
}

@compute @workgroup_size(WG)
fn loss_scale_check(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat(gid, nwg);
    if (i >= p.n) { return; }
    if (!finite(grads[i])) {
        atomicOr(&flag[0], 1u);
    }
}

@compute @workgroup_size(1)
fn loss_scale_update() {
    let overflow = atomicLoad(&flag[0]) != 0u;
    atomicStore(&flag[0], 0u);
    s[1] = 1.0 / s[0];
    if (overflow) {
        s[2] = 1.0;
        s[0] = max(s[0] * 0.5, MIN_SCALE);
        s[4] = 0.0;
        s[5] = s[5] + 1.0;
        return;
    }
    s[2] = 0.0;
    s[3] = s[3] + 1.0;
    s[4] = s[4] + 1.0;
    if (s[4] >= s[6]) {
        s[0] = min(s[0] * 2.0, MAX_SCALE);
        s[4] = 0.0;
    }
}
