//! Shared by the cooperative-matrix kernel tests (conv2d_coop, dense_coop): the f16-operand
//! tolerance, f16 rounding on the CPU, the loud hardware check, and naga's check of the real
//! build where the adapter cannot run it.
//!
//! Tolerance. The kernels round every operand of A and B from f32 to f16 (relative error at
//! most 2^-11 rounding to nearest, 2^-10 if a driver truncates) and sum the exact products in
//! f32. So against the f64 reference of the unrounded f32 inputs, an output summing K terms
//! a_k b_k is off by at most about (2^-9 + K 2^-23) S, S = sum_k |a_k b_k| (the reference run
//! on |inputs|), plus K 2^-24 for operands in f16's subnormal range (test data lie in
//! [-1, 1]): `check_f16`. A kernel that reads a wrong element is usually far outside it; to
//! catch one wrong term among hundreds as well, `check_rounded` compares with the reference of
//! the f16-rounded inputs, where only f32 summation error is left: (2 K + 8) 2^-24 S + 1e-7.

#![allow(dead_code)]

use mien::gpu::coop::{CoopBuild, CoopTiles};
use mien::gpu::{Gpu, Shader};

/// `x` rounded to the nearest f16 (ties to even), as f32: what the kernels stage.
pub fn round_f16(x: f32) -> f32 {
    let a = (x as f64).abs();
    if a == 0.0 || !a.is_finite() {
        return x;
    }
    // Spacing of f16 values near |x|: 2^(e - 10) for normal values, 2^-24 below 2^-14.
    let e = a.log2().floor().max(-14.0);
    let ulp = (e - 10.0).exp2();
    let r = ((x as f64) / ulp).round_ties_even() * ulp;
    assert!(r.abs() <= 65504.0, "{x} overflows f16");
    r as f32
}

pub fn round_all(v: &[f32]) -> Vec<f32> {
    v.iter().map(|&x| round_f16(x)).collect()
}

pub fn abs_all(v: &[f64]) -> Vec<f64> {
    v.iter().map(|x| x.abs()).collect()
}

fn within(what: &str, got: &[f32], want: &[f64], tol: impl Fn(usize) -> f64) -> Result<f64, String> {
    assert_eq!(got.len(), want.len(), "{what}: length");
    let mut worst = (0usize, 0.0f64);
    let mut failed = 0;
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        let err = (g as f64 - w).abs();
        let ratio = err / tol(i);
        if ratio.is_nan() || ratio > 1.0 {
            failed += 1;
        }
        if ratio.is_nan() || ratio > worst.1 {
            worst = (i, if ratio.is_nan() { f64::INFINITY } else { ratio });
        }
    }
    if failed > 0 {
        let i = worst.0;
        return Err(format!("{what}: {failed} of {} values outside the tolerance; worst at [{i}]: got {} want {} (|err| {:e}, tolerance {:e})", got.len(), got[i], want[i], (got[i] as f64 - want[i]).abs(), tol(i)));
    }
    Ok(worst.1)
}

/// `got` against the f64 reference `want` of the unrounded inputs: |err| <= (2^-9 + K 2^-23)
/// S + K 2^-24 + 1e-6 (see the module doc; `sum_abs` = S per element, `depth` = K).
#[track_caller]
pub fn check_f16(what: &str, got: &[f32], want: &[f64], sum_abs: &[f64], depth: usize) -> f64 {
    let k = depth as f64;
    let rel = 2f64.powi(-9) + k * 2f64.powi(-23);
    let abs = k * 2f64.powi(-24) + 1e-6;
    within(what, got, want, |i| rel * sum_abs[i] + abs).unwrap_or_else(|e| panic!("{e}"))
}

/// `got` against the reference of the f16-rounded inputs: only f32 summation error,
/// (2 K + 8) 2^-24 S + 1e-7. Returns the worst |err| / tolerance.
pub fn rounded_ratio(what: &str, got: &[f32], want: &[f64], sum_abs: &[f64], depth: usize) -> Result<f64, String> {
    let rel = (2.0 * depth as f64 + 8.0) * 2f64.powi(-24);
    within(what, got, want, |i| rel * sum_abs[i] + 1e-7)
}

/// `rounded_ratio` as an assertion where the summation order and rounding are known
/// (the emulated build); on hardware it is printed only, since tensor cores may sum with
/// other rounding than f32 adds.
#[track_caller]
pub fn check_rounded(build: CoopBuild, what: &str, got: &[f32], want: &[f64], sum_abs: &[f64], depth: usize) {
    match (build, rounded_ratio(what, got, want, sum_abs, depth)) {
        (_, Ok(_)) => {}
        (CoopBuild::Emulated, Err(e)) => panic!("{e}"),
        (CoopBuild::Hardware, Err(e)) => eprintln!("(information, not a failure: the hardware sums differ from f32 adds of the f16-rounded inputs) {e}"),
    }
}

/// Both builds need f16 shaders: fail loudly where the adapter has none (lavapipe has).
pub fn require_f16(gpu: &Gpu) {
    assert!(gpu.has_f16(), "adapter {:?} offers no SHADER_F16: the cooperative-matrix kernels (both builds) cannot run on it", gpu.info().name);
}

/// Whether the hardware build runs here; where it does not, says so loudly on stderr
/// (written to the stream itself, so the test harness's capture does not hide it).
pub fn hardware_available(gpu: &Gpu, what: &str) -> bool {
    use std::io::Write;
    let offered: Vec<String> = gpu.coop_configs().iter().map(|c| c.to_string()).collect();
    let msg = if gpu.has_coop() {
        format!("{what}: cooperative matrices offered by {:?} ({offered:?}): testing the HARDWARE build", gpu.info().name)
    } else {
        format!("!!! {what}: cooperative matrices not offered by {:?} (offered: {offered:?}): hardware path NOT tested; checking that the real build validates with naga instead", gpu.info().name)
    };
    let _ = writeln!(std::io::stderr(), "{msg}");
    gpu.has_coop()
}

/// Block shapes every kernel should handle: every TM / TN guard, BK 16 / 32 / 48, one to
/// eight subgroups.
pub const TILE_SHAPES: [CoopTiles; 5] = [
    CoopTiles { wm: 1, wn: 1, tm: 1, tn: 1, bk: 16 },
    CoopTiles { wm: 1, wn: 2, tm: 1, tn: 3, bk: 16 },
    CoopTiles { wm: 2, wn: 1, tm: 3, tn: 2, bk: 48 },
    CoopTiles { wm: 2, wn: 2, tm: 4, tn: 4, bk: 32 },
    CoopTiles { wm: 4, wn: 2, tm: 2, tn: 4, bk: 32 },
];

/// The real build of `shader` through naga as wgpu's Vulkan backend would compile it on a
/// Vulkan 1.3 device with cooperative matrices and f16 (capabilities, SPIR-V 1.6, bounds
/// checks, loop bounding), for the default block shapes and TILE_SHAPES with subgroups of 32
/// and 64: parse, validate, resolve the overrides, emit SPIR-V for `entries`.
pub fn validate_real_build(shader: &Shader, entries: &[&str], extra: &[(&str, f64)]) {
    use naga::back::spv;
    use naga::valid::{Capabilities, ValidationFlags, Validator};
    assert!(shader.needs_coop(), "{} is not a real cooperative-matrix build", shader.name);
    let module = naga::front::wgsl::parse_str(shader.source).unwrap_or_else(|e| panic!("{}: {}", shader.name, e.emit_to_string(shader.source)));
    let info = Validator::new(ValidationFlags::all(), Capabilities::COOPERATIVE_MATRIX | Capabilities::SHADER_FLOAT16)
        .validate(&module)
        .unwrap_or_else(|e| panic!("{}: {}", shader.name, e.emit_to_string(shader.source)));
    let caps = [spv::Capability::Shader, spv::Capability::Float16, spv::Capability::CooperativeMatrixKHR, spv::Capability::VulkanMemoryModel];
    let options = spv::Options {
        lang_version: (1, 6),
        capabilities: Some(caps.into_iter().collect()),
        bounds_check_policies: naga::proc::BoundsCheckPolicies {
            index: naga::proc::BoundsCheckPolicy::Restrict,
            buffer: naga::proc::BoundsCheckPolicy::Restrict,
            image_load: naga::proc::BoundsCheckPolicy::Restrict,
            binding_array: naga::proc::BoundsCheckPolicy::Unchecked,
        },
        force_loop_bounding: true,
        use_storage_input_output_16: true,
        ..Default::default()
    };
    let shapes = [CoopTiles::square(64, 32), CoopTiles::square(64, 64), CoopTiles::square(128, 64), CoopTiles::square(128, 128)];
    for tiles in shapes.iter().chain(&TILE_SHAPES) {
        for sg in [32.0, 64.0] {
            let mut constants = naga::back::PipelineConstants::default();
            for (k, v) in [("SG", sg), ("WM", tiles.wm as f64), ("WN", tiles.wn as f64), ("TM", tiles.tm as f64), ("TN", tiles.tn as f64), ("BK", tiles.bk as f64)].into_iter().chain(extra.iter().copied()) {
                constants.insert(k.to_string(), v);
            }
            for entry in entries {
                let what = format!("{}::{entry} {tiles:?} SG {sg}", shader.name);
                let (m, i) = naga::back::pipeline_constants::process_overrides(&module, &info, Some((naga::ShaderStage::Compute, entry)), &constants).unwrap_or_else(|e| panic!("{what}: overrides: {e}"));
                let pipeline = spv::PipelineOptions { shader_stage: naga::ShaderStage::Compute, entry_point: entry.to_string() };
                spv::write_vec(&m, &i, &options, Some(&pipeline)).unwrap_or_else(|e| panic!("{what} -> SPIR-V: {e}"));
            }
        }
    }
}
