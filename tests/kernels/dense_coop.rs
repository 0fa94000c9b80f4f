//! The cooperative-matrix dense GEMMs (shaders/dense_coop.wgsl, nn::dense::coop) against the
//! f64 reference with the f16-operand tolerance of coop_common: the EMULATED build on every
//! adapter (batch 1, odd sizes, forced depth splits, several block shapes, ACCUMULATE), and
//! the HARDWARE build where the adapter offers cooperative matrices (else a loud note and
//! naga's check of the real build).

use crate::common::{rand, read, up, zeros};
use crate::coop_common::{abs_all, check_f16, check_rounded, hardware_available, require_f16, round_all, validate_real_build, TILE_SHAPES};
use crate::gpu;
use mien::gpu::coop::{CoopBuild, CoopTiles};
use mien::gpu::shaders::DENSE_COOP;
use mien::nn::dense::{Dense, DenseKernels};
use mien::nn::dense::coop::{CoopDense, CoopDenseOptions};
use mien::reference::{dense as r, f64s};
use mien::rng::Rng;

/// Forward, dx and dW of an `n x inf -> outf` layer with `tiles` (None: defaults) and `splits`
/// for every pass (None: defaults), into garbage, against the reference.
#[allow(clippy::too_many_arguments)]
fn check(build: CoopBuild, n: usize, inf: usize, outf: usize, bias: bool, tiles: Option<CoopTiles>, splits: Option<usize>, seed: u64) {
    let gpu = gpu!();
    require_f16(gpu);
    let mut rng = Rng::new(seed);
    let layer = Dense::new_with(gpu, "fc", inf, outf, bias, &[n, inf], DenseKernels::Blocked).unwrap();
    let plan = CoopDense::with_options(gpu, &layer, build, CoopDenseOptions { tiles: [tiles; 3], splits: [splits; 3] }).unwrap();
    let (x, x64) = rand(&mut rng, n * inf);
    let (w, w64) = rand(&mut rng, outf * inf);
    let (b, b64) = rand(&mut rng, outf);
    let (dy, dy64) = rand(&mut rng, n * outf);
    let tx = up(gpu, "x", &[n, inf], &x);
    let tw = up(gpu, "w", &[outf, inf], &w);
    let tb = up(gpu, "b", &[outf], &b);
    let tdy = up(gpu, "dy", &[n, outf], &dy);
    let ty = up(gpu, "y", &[n, outf], &vec![7.0; n * outf]);
    let tdx = up(gpu, "dx", &[n, inf], &vec![7.0; n * inf]);
    let tdw = up(gpu, "dw", &[outf, inf], &vec![7.0; outf * inf]);
    let mut steps = plan.forward(gpu, &tx, &tw, bias.then_some(&tb), &ty).unwrap();
    steps.extend(plan.backward_input(gpu, &tdx, &tdy, &tw).unwrap());
    steps.extend(plan.backward_weight(gpu, &tdw, &tdy, &tx, false).unwrap());
    gpu.run(&steps).unwrap();

    let what = format!("{} N={n} in={inf} out={outf} bias={bias} tiles {tiles:?} splits {:?}", build.name(), plan.splits());
    let bias64 = bias.then_some(&b64[..]);
    let (ax, aw, ady) = (abs_all(&x64), abs_all(&w64), abs_all(&dy64));
    let (x16, w16, dy16) = (f64s(&round_all(&x)), f64s(&round_all(&w)), f64s(&round_all(&dy)));
    let y = read(gpu, &ty);
    let s = r::forward(&ax, &aw, None, n, inf, outf);
    check_f16(&format!("coop dense forward {what}"), &y, &r::forward(&x64, &w64, bias64, n, inf, outf), &s, inf);
    check_rounded(build, &format!("coop dense forward (f16-rounded inputs) {what}"), &y, &r::forward(&x16, &w16, bias64, n, inf, outf), &s, inf);
    let dx = read(gpu, &tdx);
    let s = r::backward_input(&ady, &aw, n, inf, outf);
    check_f16(&format!("coop dense backward_input {what}"), &dx, &r::backward_input(&dy64, &w64, n, inf, outf), &s, outf);
    check_rounded(build, &format!("coop dense backward_input (f16-rounded inputs) {what}"), &dx, &r::backward_input(&dy16, &w16, n, inf, outf), &s, outf);
    let dw = read(gpu, &tdw);
    let s = r::backward_weight(&ady, &ax, n, inf, outf);
    check_f16(&format!("coop dense backward_weight {what}"), &dw, &r::backward_weight(&dy64, &x64, n, inf, outf), &s, n);
    check_rounded(build, &format!("coop dense backward_weight (f16-rounded inputs) {what}"), &dw, &r::backward_weight(&dy16, &x16, n, inf, outf), &s, n);
}

const E: CoopBuild = CoopBuild::Emulated;

#[test]
fn emulated_batch1_tiny() {
    check(E, 1, 3, 5, true, None, None, 1);
    check(E, 1, 1, 1, false, None, None, 2);
}

#[test]
fn emulated_odd_sizes_default_and_forced_splits() {
    check(E, 7, 65, 17, false, None, None, 3);
    check(E, 7, 65, 17, true, None, Some(3), 4);
    // Depth 300 (forward), 33 (dx), 37 (dW): default splits of the long one.
    check(E, 37, 300, 33, true, None, None, 5);
}

#[test]
fn emulated_block_shapes() {
    for (i, t) in TILE_SHAPES.into_iter().enumerate() {
        check(E, 9, 70, 33, true, Some(t), Some(2), 10 + i as u64);
    }
}

/// ACCUMULATE of dW, direct (one split) and through the reduce: overwrite, add, expect twice.
#[test]
fn emulated_backward_weight_accumulates() {
    let gpu = gpu!();
    require_f16(gpu);
    let (n, inf, outf) = (70, 9, 5);
    let layer = Dense::new_with(gpu, "fc acc", inf, outf, false, &[n, inf], DenseKernels::Blocked).unwrap();
    let mut rng = Rng::new(40);
    let (x, x64) = rand(&mut rng, n * inf);
    let (dy, dy64) = rand(&mut rng, n * outf);
    let (tx, tdy) = (up(gpu, "x", &[n, inf], &x), up(gpu, "dy", &[n, outf], &dy));
    let twice: Vec<f64> = r::backward_weight(&dy64, &x64, n, inf, outf).iter().map(|v| 2.0 * v).collect();
    let s2: Vec<f64> = r::backward_weight(&abs_all(&dy64), &abs_all(&x64), n, inf, outf).iter().map(|v| 2.0 * v).collect();
    for splits in [1, 3] {
        let plan = CoopDense::with_options(gpu, &layer, E, CoopDenseOptions { splits: [None, None, Some(splits)], ..Default::default() }).unwrap();
        assert_eq!(plan.splits()[2], splits);
        let tdw = zeros(gpu, "dw", &[outf, inf]);
        gpu.run(&plan.backward_weight(gpu, &tdw, &tdy, &tx, false).unwrap()).unwrap();
        gpu.run(&plan.backward_weight(gpu, &tdw, &tdy, &tx, true).unwrap()).unwrap();
        check_f16(&format!("coop dense backward_weight accumulate ({splits} splits)"), &read(gpu, &tdw), &twice, &s2, n);
    }
}

/// An operand beyond f16's range (65504; a loss scale too large for the output gradients)
/// makes inf or NaN in exactly the outputs it reaches, whatever the driver does with an
/// out-of-range f32 -> f16 conversion, so the loss scaling sees the overflow; 65504 itself
/// and everything else stays finite and exact.
#[test]
fn emulated_operands_beyond_f16_range_are_not_finite() {
    let gpu = gpu!();
    require_f16(gpu);
    let (n, inf, outf) = (3, 5, 4);
    let layer = Dense::new_with(gpu, "fc big", inf, outf, false, &[n, inf], DenseKernels::Blocked).unwrap();
    let plan = CoopDense::new(gpu, &layer, E).unwrap();
    // 65510 would round to 65504 in IEEE f16 (lavapipe's conversion gives inf only from 65520
    // on): the guard counts it as out of range, which tells the guard is there.
    for (big, want_nan) in [(65504.0f32, false), (65510.0, true), (65536.0, true), (1e30, true), (f32::INFINITY, true)] {
        // Row 1 of x holds `big`; everything else 0.5, weights 0.25.
        let mut x = vec![0.5f32; n * inf];
        x[inf + 2] = big;
        let (tx, tw) = (up(gpu, "x", &[n, inf], &x), up(gpu, "w", &[outf, inf], &vec![0.25; outf * inf]));
        let ty = zeros(gpu, "y", &[n, outf]);
        gpu.run(&plan.forward(gpu, &tx, &tw, None, &ty).unwrap()).unwrap();
        let y = read(gpu, &ty);
        for (i, v) in y.iter().enumerate() {
            let row = i / outf;
            if row == 1 && want_nan {
                assert!(!v.is_finite(), "x = {big}: output {i} is {v}, expected inf or NaN (row 1 has the out-of-range operand)");
            } else {
                let want = if row == 1 { 0.125 * 4.0 + 0.25 * big as f64 } else { 0.625 };
                assert_eq!(*v as f64, want, "x = {big}: output {i}");
            }
        }
    }
}

#[test]
fn wrong_operands_are_errors_naming_the_layer() {
    let gpu = gpu!();
    require_f16(gpu);
    let layer = Dense::new_with(gpu, "fc_q", 6, 4, true, &[2, 6], DenseKernels::Blocked).unwrap();
    let plan = CoopDense::new(gpu, &layer, E).unwrap();
    let (x, w, y) = (zeros(gpu, "x", &[2, 6]), zeros(gpu, "w", &[4, 6]), zeros(gpu, "y", &[2, 4]));
    let e = plan.forward(gpu, &x, &w, None, &y).err().unwrap().to_string();
    assert!(e.contains("fc_q") && e.contains("bias"), "{e}");
    let e = plan.backward_weight(gpu, &zeros(gpu, "dw", &[6, 4]), &y, &x, false).err().unwrap().to_string();
    assert!(e.contains("fc_q") && e.contains("weight gradient"), "{e}");
    if !gpu.has_coop() {
        let e = CoopDense::new(gpu, &layer, CoopBuild::Hardware).err().unwrap().to_string();
        assert!(e.contains("fc_q") && e.contains("cooperative matrices"), "{e}");
    }
}

/// The HARDWARE build where offered (the emulated checks plus the seed-cnn classifier at
/// batch 64: 4608 -> 512 -> 7); elsewhere a loud note and naga's check of the real build.
#[test]
fn hardware_build_or_naga_check() {
    let gpu = gpu!();
    require_f16(gpu);
    if !hardware_available(gpu, "dense_coop") {
        validate_real_build(&DENSE_COOP, &["dense_coop_gemm", "dense_coop_reduce"], &[("ACCUMULATE", 1.0), ("PASS", 2.0)]);
        return;
    }
    let h = CoopBuild::Hardware;
    check(h, 1, 3, 5, true, None, None, 1);
    check(h, 7, 65, 17, true, None, Some(3), 4);
    check(h, 37, 300, 33, true, None, None, 5);
    for (i, t) in TILE_SHAPES.into_iter().enumerate() {
        check(h, 9, 70, 33, true, Some(t), Some(2), 10 + i as u64);
    }
    check(h, 64, 4608, 512, true, None, None, 20);
    check(h, 64, 512, 7, true, None, None, 21);
}

/// The HARDWARE build at the seed-cnn classifier shapes (4608 -> 512, 512 -> 7) at batch 64
/// and 256: every pass with the default blocks and splits, TFLOP/s of the 2 N I O
/// multiply-adds. Fails where the adapter has no cooperative matrices.
/// `cargo test --release --test kernels coop_timing -- --ignored --nocapture --test-threads 1`
#[test]
#[ignore]
fn coop_timing_seed_cnn_dense() {
    let gpu = gpu!();
    assert!(hardware_available(gpu, "coop_timing"), "coop_timing needs cooperative matrices");
    let reps = std::env::var("MIEN_TIMING_REPS").ok().and_then(|s| s.parse().ok()).unwrap_or(3);
    for (n, inf, outf) in [(64, 4608, 512), (256, 4608, 512), (256, 512, 7)] {
        let layer = Dense::new_with(gpu, "fc", inf, outf, true, &[n, inf], DenseKernels::Blocked).unwrap();
        let plan = CoopDense::new(gpu, &layer, CoopBuild::Hardware).unwrap();
        let mut rng = Rng::new(61);
        let tx = up(gpu, "x", &[n, inf], &rng.vec_f32(n * inf, -1.0, 1.0));
        let tw = up(gpu, "w", &[outf, inf], &rng.vec_f32(outf * inf, -0.1, 0.1));
        let tb = up(gpu, "b", &[outf], &rng.vec_f32(outf, -1.0, 1.0));
        let tdy = up(gpu, "dy", &[n, outf], &rng.vec_f32(n * outf, -1.0, 1.0));
        let (ty, tdx, tdw) = (zeros(gpu, "y", &[n, outf]), zeros(gpu, "dx", &[n, inf]), zeros(gpu, "dw", &[outf, inf]));
        let flop = 2.0 * (n * inf * outf) as f64;
        println!("dense {inf}->{outf}, batch {n} (splits {:?})", plan.splits());
        for (what, d) in [
            ("forward", plan.forward(gpu, &tx, &tw, Some(&tb), &ty).unwrap()),
            ("backward_input", plan.backward_input(gpu, &tdx, &tdy, &tw).unwrap()),
            ("backward_weight", plan.backward_weight(gpu, &tdw, &tdy, &tx, false).unwrap()),
        ] {
            let refs: Vec<&mien::Dispatch> = d.iter().collect();
            let t = mien::gpu::timing::time_dispatches(gpu, &refs, reps, 0.2).unwrap();
            println!("  coop {what:<20} {:>9.3} ms {:>8.2} TFLOP/s", t.seconds * 1e3, flop / t.seconds / 1e12);
        }
    }
}
