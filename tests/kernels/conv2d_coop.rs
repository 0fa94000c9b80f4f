//! The cooperative-matrix convolution (shaders/conv2d_coop.wgsl, nn::conv2d::coop) against the
//! f64 reference with the f16-operand tolerance of coop_common: the EMULATED build on every
//! adapter (awkward shapes, several block shapes, forced depth splits, ACCUMULATE, errors),
//! and the HARDWARE build where the adapter offers cooperative matrices (else a loud note and
//! naga's check of the real build).

use crate::coop_common::{abs_all, check_f16, check_rounded, hardware_available, require_f16, round_all, validate_real_build, TILE_SHAPES};
use crate::common::{rand, read, up, zeros};
use crate::gpu;
use mien::gpu::coop::{CoopBuild, CoopTiles};
use mien::gpu::shaders::CONV2D_COOP;
use mien::nn::conv2d::coop::{self, Plan};
use mien::nn::conv2d::{Conv2d, Conv2dConfig, ConvKernels, ConvPass, ConvVariant};
use mien::nn::Padding;
use mien::reference::{conv2d as r, f64s};
use mien::rng::Rng;

fn cfg(cin: usize, cout: usize, kernel: (usize, usize), stride: (usize, usize), padding: Padding, bias: bool) -> Conv2dConfig {
    Conv2dConfig { in_channels: cin, out_channels: cout, kernel, stride, padding, bias }
}

/// The plans of forward, backward_input and backward_weight with `tiles` (None: defaults)
/// and `splits` weight-gradient splits (None: default).
fn plans(gpu: &mien::Gpu, layer: &Conv2d, build: CoopBuild, tiles: Option<CoopTiles>, splits: Option<usize>) -> [Plan; 3] {
    ConvPass::ALL.map(|p| Plan::new(gpu, layer, p, build, tiles, splits).unwrap())
}

/// Every pass of `build` with `tiles` for all three (None: defaults) and the weight gradient
/// with its default split, one split and `splits`, against the reference.
fn check(build: CoopBuild, x_shape: [usize; 4], cfg: Conv2dConfig, tiles: Option<CoopTiles>, splits: usize, seed: u64) {
    let gpu = gpu!();
    require_f16(gpu);
    let mut rng = Rng::new(seed);
    let layer = Conv2d::new_with(gpu, "coop", cfg, &x_shape, ConvKernels::General).unwrap();
    let g = layer.geom();
    let (x, x64) = rand(&mut rng, g.x_len());
    let (w, w64) = rand(&mut rng, g.w_len());
    let (b, b64) = rand(&mut rng, g.cout);
    let (dy, dy64) = rand(&mut rng, g.y_len());
    let tx = up(gpu, "x", &x_shape, &x);
    let tw = up(gpu, "w", &layer.weight_shape(), &w);
    let tb = up(gpu, "b", &[g.cout], &b);
    let tdy = up(gpu, "dy", &layer.output_shape, &dy);
    let ty = zeros(gpu, "y", &layer.output_shape);
    let tdx = zeros(gpu, "dx", &x_shape);
    let tdws: Vec<_> = (0..3).map(|i| zeros(gpu, &format!("dw {i}"), &layer.weight_shape())).collect();
    let [pf, pi, _] = plans(gpu, &layer, build, tiles, None);
    let pws: Vec<Plan> = [None, Some(1), Some(splits)].into_iter().map(|s| Plan::new(gpu, &layer, ConvPass::BackwardWeight, build, tiles, s).unwrap()).collect();
    let bias = cfg.bias.then_some(&tb);
    let mut steps = coop::forward(gpu, &layer, &pf, &tx, &tw, bias, &ty).unwrap();
    steps.extend(coop::backward_input(gpu, &layer, &pi, &tdx, &tdy, &tw).unwrap());
    for (plan, tdw) in pws.iter().zip(&tdws) {
        steps.extend(coop::backward_weight(gpu, &layer, plan, tdw, &tdy, &tx, false).unwrap());
    }
    gpu.run(&steps).unwrap();

    let what = format!("{} {x_shape:?} {cfg:?} {:?}", build.name(), [pf.tiles(), pi.tiles(), pws[0].tiles()]);
    let (kk, ohw) = (g.kh * g.kw, g.oh * g.ow);
    let bias64 = cfg.bias.then_some(&b64[..]);
    // f64 reference of the unrounded inputs, of their magnitudes (S), of the f16-rounded ones.
    let (ax, aw, ady) = (abs_all(&x64), abs_all(&w64), abs_all(&dy64));
    let (x16, w16, dy16) = (f64s(&round_all(&x)), f64s(&round_all(&w)), f64s(&round_all(&dy)));
    let y = read(gpu, &ty);
    let s = r::forward(&g, &ax, &aw, None);
    check_f16(&format!("coop forward {what}"), &y, &r::forward(&g, &x64, &w64, bias64), &s, g.cin * kk);
    check_rounded(build, &format!("coop forward (f16-rounded inputs) {what}"), &y, &r::forward(&g, &x16, &w16, bias64), &s, g.cin * kk);
    let (want_dx, want_dw, _) = r::backward(&g, &dy64, &x64, &w64);
    let (s_dx, s_dw, _) = r::backward(&g, &ady, &ax, &aw);
    let (want_dx16, want_dw16, _) = r::backward(&g, &dy16, &x16, &w16);
    let dx = read(gpu, &tdx);
    check_f16(&format!("coop backward_input {what}"), &dx, &want_dx, &s_dx, g.cout * kk);
    check_rounded(build, &format!("coop backward_input (f16-rounded inputs) {what}"), &dx, &want_dx16, &s_dx, g.cout * kk);
    for (plan, tdw) in pws.iter().zip(&tdws) {
        let what = format!("coop backward_weight ({} splits) {what}", plan.splits());
        let dw = read(gpu, tdw);
        check_f16(&what, &dw, &want_dw, &s_dw, g.n * ohw);
        check_rounded(build, &format!("{what} (f16-rounded inputs)"), &dw, &want_dw16, &s_dw, g.n * ohw);
    }
    assert_eq!(pws[1].splits(), 1);
}

const E: CoopBuild = CoopBuild::Emulated;

#[test]
fn emulated_batch1_cin1_odd_3x3_same_bias() {
    check(E, [1, 1, 7, 5], cfg(1, 3, (3, 3), (1, 1), Padding::Same, true), None, 3, 1);
}

#[test]
fn emulated_cin3_cout17_5x5_and_1x1() {
    // K = 75, GN = 17: neither a multiple of the tiles.
    check(E, [2, 3, 9, 7], cfg(3, 17, (5, 5), (1, 1), Padding::Same, false), None, 2, 2);
    check(E, [1, 17, 6, 5], cfg(17, 65, (1, 1), (1, 1), Padding::Valid, true), None, 4, 3);
}

#[test]
fn emulated_cin65_long_depth_split() {
    // K = 585 forward, 153 backward_input; the weight gradient's depth 20 in 1..3 splits.
    check(E, [1, 65, 5, 4], cfg(65, 17, (3, 3), (1, 1), Padding::Same, true), None, 3, 4);
}

#[test]
fn emulated_stride2_non_square_explicit_padding() {
    check(E, [2, 5, 9, 8], cfg(5, 6, (3, 3), (2, 2), Padding::Same, false), None, 3, 5);
    check(E, [3, 3, 9, 8], cfg(3, 6, (3, 2), (2, 2), Padding::Explicit { top: 2, bottom: 0, left: 1, right: 3 }, true), None, 5, 6);
}

/// Every TM / TN guard of the GEMM core, BK 16 / 48, one to eight subgroups.
#[test]
fn emulated_block_shapes() {
    for (i, t) in TILE_SHAPES.into_iter().enumerate() {
        check(E, [2, 7, 6, 5], cfg(7, 33, (3, 3), (1, 1), Padding::Same, true), Some(t), 3, 10 + i as u64);
    }
}

/// ACCUMULATE, direct (one split) and through the reduce (several): overwrite once, add once
/// more, expect twice the gradient.
#[test]
fn emulated_backward_weight_accumulates() {
    let gpu = gpu!();
    require_f16(gpu);
    let x_shape = [2, 3, 7, 5];
    let c = cfg(3, 5, (3, 3), (1, 1), Padding::Same, false);
    let layer = Conv2d::new_with(gpu, "coop acc", c, &x_shape, ConvKernels::General).unwrap();
    let g = layer.geom();
    let mut rng = Rng::new(40);
    let (x, x64) = rand(&mut rng, g.x_len());
    let (dy, dy64) = rand(&mut rng, g.y_len());
    let (tx, tdy) = (up(gpu, "x", &x_shape, &x), up(gpu, "dy", &layer.output_shape, &dy));
    let w64 = vec![0.0; g.w_len()];
    let (_, want, _) = r::backward(&g, &dy64, &x64, &w64);
    let (_, s, _) = r::backward(&g, &abs_all(&dy64), &abs_all(&x64), &w64);
    let twice: Vec<f64> = want.iter().map(|v| 2.0 * v).collect();
    let s2: Vec<f64> = s.iter().map(|v| 2.0 * v).collect();
    for splits in [1, 3] {
        let plan = Plan::new(gpu, &layer, ConvPass::BackwardWeight, E, None, Some(splits)).unwrap();
        assert_eq!(plan.splits(), splits);
        let tdw = up(gpu, "dw", &layer.weight_shape(), &vec![7.0f32; g.w_len()]);
        gpu.run(&coop::backward_weight(gpu, &layer, &plan, &tdw, &tdy, &tx, false).unwrap()).unwrap();
        gpu.run(&coop::backward_weight(gpu, &layer, &plan, &tdw, &tdy, &tx, true).unwrap()).unwrap();
        check_f16(&format!("coop backward_weight accumulate ({splits} splits)"), &read(gpu, &tdw), &twice, &s2, g.n * g.oh * g.ow);
    }
}

/// Shapes and operands are checked against the layer, naming it.
#[test]
fn wrong_operands_are_errors_naming_the_layer() {
    let gpu = gpu!();
    require_f16(gpu);
    let x_shape = [1, 2, 5, 5];
    let layer = Conv2d::new_with(gpu, "conv_q", cfg(2, 3, (3, 3), (1, 1), Padding::Same, true), &x_shape, ConvKernels::General).unwrap();
    let [pf, pi, _] = plans(gpu, &layer, E, None, None);
    let x = zeros(gpu, "x", &x_shape);
    let w = zeros(gpu, "w", &layer.weight_shape());
    let y = zeros(gpu, "y", &layer.output_shape);
    let e = coop::forward(gpu, &layer, &pf, &x, &w, None, &y).err().unwrap().to_string();
    assert!(e.contains("conv_q") && e.contains("bias"), "{e}");
    let bad = zeros(gpu, "w", &[3, 2, 3, 2]);
    let e = coop::backward_input(gpu, &layer, &pi, &x, &y, &bad).err().unwrap().to_string();
    assert!(e.contains("conv_q") && e.contains("weight"), "{e}");
    let e = coop::backward_input(gpu, &layer, &pf, &x, &y, &w).err().unwrap().to_string();
    assert!(e.contains("conv_q") && e.contains("forward plan"), "{e}");
    let t = CoopTiles { wm: 1, wn: 1, tm: 5, tn: 1, bk: 16 };
    let e = Plan::new(gpu, &layer, ConvPass::Forward, E, Some(t), None).err().unwrap().to_string();
    assert!(e.contains("conv_q") && e.contains("TM"), "{e}");
    // The layer's coop variant (the hardware build) where offered; elsewhere a refusal naming
    // the layer and the reason.
    let forced = Conv2d::new_with(gpu, "conv_q", layer.cfg, &x_shape, ConvKernels::Coop);
    assert_eq!(forced.is_ok(), gpu.has_coop());
    assert_eq!(ConvPass::ALL.map(|p| layer.supports(gpu, p, ConvVariant::Coop)), [gpu.has_coop(); 3]);
    if !gpu.has_coop() {
        let e = forced.err().unwrap().to_string();
        assert!(e.contains("conv_q") && e.contains("cooperative matrices"), "{e}");
        let e = Plan::new(gpu, &layer, ConvPass::Forward, CoopBuild::Hardware, None, None).err().unwrap().to_string();
        assert!(e.contains("conv_q") && e.contains("cooperative matrices"), "{e}");
    }
}

/// The HARDWARE build where the adapter offers cooperative matrices: the same checks as the
/// emulated build, plus a seed-cnn layer at batch 2. Elsewhere: a loud note, and naga must
/// accept the real build (the SPIR-V wgpu would make of it).
#[test]
fn hardware_build_or_naga_check() {
    let gpu = gpu!();
    require_f16(gpu);
    if !hardware_available(gpu, "conv2d_coop") {
        validate_real_build(&CONV2D_COOP, &["conv2d_coop_forward", "conv2d_coop_backward_input", "conv2d_coop_backward_weight", "conv2d_coop_reduce"], &[("ACCUMULATE", 1.0)]);
        return;
    }
    let h = CoopBuild::Hardware;
    check(h, [1, 1, 7, 5], cfg(1, 3, (3, 3), (1, 1), Padding::Same, true), None, 3, 1);
    check(h, [2, 3, 9, 7], cfg(3, 17, (5, 5), (1, 1), Padding::Same, false), None, 2, 2);
    check(h, [1, 65, 5, 4], cfg(65, 17, (3, 3), (1, 1), Padding::Same, true), None, 3, 4);
    check(h, [3, 3, 9, 8], cfg(3, 6, (3, 2), (2, 2), Padding::Explicit { top: 2, bottom: 0, left: 1, right: 3 }, true), None, 5, 6);
    for (i, t) in TILE_SHAPES.into_iter().enumerate() {
        check(h, [2, 7, 6, 5], cfg(7, 33, (3, 3), (1, 1), Padding::Same, true), Some(t), 3, 10 + i as u64);
    }
    check(h, [2, 64, 24, 24], cfg(64, 128, (3, 3), (1, 1), Padding::Same, true), None, 4, 20);
    check(h, [2, 128, 12, 12], cfg(128, 256, (3, 3), (1, 1), Padding::Same, true), None, 4, 21);
}

/// Block shapes the timing compares with the defaults (CoopTiles::for_gemm).
const TIMING_TILES: [CoopTiles; 5] = [
    CoopTiles { wm: 2, wn: 2, tm: 4, tn: 4, bk: 64 },
    CoopTiles { wm: 4, wn: 2, tm: 2, tn: 4, bk: 32 },
    CoopTiles { wm: 2, wn: 4, tm: 4, tn: 2, bk: 32 },
    CoopTiles { wm: 4, wn: 1, tm: 2, tn: 4, bk: 32 },
    CoopTiles { wm: 2, wn: 2, tm: 2, tn: 2, bk: 32 },
];

/// The HARDWARE build at the seed-cnn conv shapes (3x3 same: 1->64 and 64->64 at 48x48,
/// 64->128 and 128->128 at 24x24, 128->256 and 256->256 at 12x12), batch MIEN_TIMING_BATCH
/// (default 256): every pass with the default blocks and TIMING_TILES, TFLOP/s of the
/// 2 N OH OW CO CI KH KW multiply-adds, next to the tiled variant. Wall clock, median of
/// MIEN_TIMING_REPS (3). Fails where the adapter has no cooperative matrices.
/// `cargo test --release --test kernels coop_timing -- --ignored --nocapture --test-threads 1`
#[test]
#[ignore]
fn coop_timing_seed_cnn_conv() {
    let gpu = gpu!();
    assert!(hardware_available(gpu, "coop_timing"), "coop_timing needs cooperative matrices");
    let batch = std::env::var("MIEN_TIMING_BATCH").ok().and_then(|s| s.parse().ok()).unwrap_or(256);
    let reps = std::env::var("MIEN_TIMING_REPS").ok().and_then(|s| s.parse().ok()).unwrap_or(3);
    println!("{}", gpu.describe());
    for (cin, cout, side) in [(1, 64, 48), (64, 64, 48), (64, 128, 24), (128, 128, 24), (128, 256, 12), (256, 256, 12)] {
        let shape = [batch, cin, side, side];
        let layer = Conv2d::new_with(gpu, "seed", cfg(cin, cout, (3, 3), (1, 1), Padding::Same, true), &shape, ConvKernels::Tiled).unwrap();
        let g = layer.geom();
        let mut rng = Rng::new(60);
        let tx = up(gpu, "x", &shape, &rng.vec_f32(g.x_len(), -1.0, 1.0));
        let tw = up(gpu, "w", &layer.weight_shape(), &rng.vec_f32(g.w_len(), -0.1, 0.1));
        let tb = up(gpu, "b", &[cout], &rng.vec_f32(cout, -1.0, 1.0));
        let tdy = up(gpu, "dy", &layer.output_shape, &rng.vec_f32(g.y_len(), -1.0, 1.0));
        let (ty, tdx, tdw) = (zeros(gpu, "y", &layer.output_shape), zeros(gpu, "dx", &shape), zeros(gpu, "dw", &layer.weight_shape()));
        let flop = 2.0 * (g.n * g.cout * g.oh * g.ow * g.cin * g.kh * g.kw) as f64;
        let time = |what: String, d: Vec<mien::Dispatch>| {
            let refs: Vec<&mien::Dispatch> = d.iter().collect();
            let t = mien::gpu::timing::time_dispatches(gpu, &refs, reps, 0.2).unwrap();
            println!("  {what:<64} {:>9.3} ms {:>8.2} TFLOP/s", t.seconds * 1e3, flop / t.seconds / 1e12);
        };
        println!("conv {cin}->{cout} at {side}x{side}, batch {batch} ({:.1} GFLOP a pass)", flop / 1e9);
        time("tiled forward".into(), layer.forward_dispatches(gpu, &tx, &tw, Some(&tb), &ty).unwrap());
        time("tiled backward_weight".into(), layer.backward_weight(gpu, &tdw, &tdy, &tx, false).unwrap());
        let mut tiles = vec![("default".to_string(), None)];
        tiles.extend(TIMING_TILES.map(|t| (format!("{}x{} {}x{} sg bk{}", t.bm(), t.bn(), t.wm, t.wn, t.bk), Some(t))));
        let h = CoopBuild::Hardware;
        for (name, t) in tiles {
            let ps: Vec<_> = ConvPass::ALL.iter().map(|&p| Plan::new(gpu, &layer, p, h, t, None)).collect();
            let [Ok(f), Ok(i), Ok(w)] = <[_; 3]>::try_from(ps).ok().unwrap() else {
                println!("  {name}: does not fit this adapter");
                continue;
            };
            let blk = |p: &Plan| format!("{}x{}", p.tiles().bm(), p.tiles().bn());
            time(format!("coop forward {name} ({})", blk(&f)), coop::forward(gpu, &layer, &f, &tx, &tw, Some(&tb), &ty).unwrap());
            if cin > 1 {
                time(format!("coop backward_input {name} ({})", blk(&i)), coop::backward_input(gpu, &layer, &i, &tdx, &tdy, &tw).unwrap());
            }
            time(format!("coop backward_weight {name} ({}, {} splits)", blk(&w), w.splits()), coop::backward_weight(gpu, &layer, &w, &tdw, &tdy, &tx, false).unwrap());
        }
    }
}
