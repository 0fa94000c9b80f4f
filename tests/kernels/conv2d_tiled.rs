//! The workgroup-memory tiled convolution (shaders/conv2d_tiled.wgsl, nn::conv2d::tiled)
//! against the f64 reference, through plans built here: every pass, default and
//! non-default tiles, forced weight-gradient splits, ACCUMULATE, errors, a folded grid; plus an ignored timing next to
//! the current kernels at the seed-cnn shape.

use crate::common::{rand, read, up, zeros, ATOL, RTOL};
use crate::gpu;
use mien::nn::conv2d::tiled::{self, Tiles};
use mien::nn::conv2d::{Conv2d, Conv2dConfig, ConvPass};
use mien::nn::Padding;
use mien::reference::{assert_close, conv2d as r};
use mien::rng::Rng;

fn cfg(cin: usize, cout: usize, kernel: (usize, usize), stride: (usize, usize), padding: Padding, bias: bool) -> Conv2dConfig {
    Conv2dConfig { in_channels: cin, out_channels: cout, kernel, stride, padding, bias }
}

const fn explicit(top: usize, bottom: usize, left: usize, right: usize) -> Padding {
    Padding::Explicit { top, bottom, left, right }
}

/// The tiled plan of `pass` with `tiles` and `splits` (backward_weight).
fn plan(layer: &Conv2d, pass: ConvPass, tiles: Tiles, splits: Option<usize>) -> tiled::Plan {
    tiled::Plan::new(crate::common::gpu().unwrap(), layer, pass, tiles, splits).unwrap()
}

/// Run the tiled forward, backward_input and backward_weight (default split, one split,
/// `splits` forced) with `tiles` and compare with the reference.
fn check(x_shape: [usize; 4], cfg: Conv2dConfig, tiles: Tiles, splits: usize, seed: u64) {
    let gpu = gpu!();
    let mut rng = Rng::new(seed);
    let layer = Conv2d::new(gpu, "tiled", cfg, &x_shape).unwrap();
    assert!(tiled::supports(&layer));
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
    let bias = cfg.bias.then_some(&tb);
    let (pf, pb) = (plan(&layer, ConvPass::Forward, tiles, None), plan(&layer, ConvPass::BackwardInput, tiles, None));
    let mut steps = tiled::forward(gpu, &layer, &pf, &tx, &tw, bias, &ty).unwrap();
    steps.extend(tiled::backward_input(gpu, &layer, &pb, &tdx, &tdy, &tw).unwrap());
    let mut used = vec![];
    let mut plans = vec![];
    for (tdw, s) in tdws.iter().zip([None, Some(1), Some(splits)]) {
        let p = plan(&layer, ConvPass::BackwardWeight, tiles, s);
        assert_eq!(p.scratch().is_some(), p.splits() > 1);
        used.push(p.splits());
        steps.extend(tiled::backward_weight(gpu, &layer, &p, tdw, &tdy, &tx, false).unwrap());
        plans.push(p);
    }
    gpu.run(&steps).unwrap();
    let what = format!("{x_shape:?} {cfg:?} {tiles:?}");
    let want_y = r::forward(&g, &x64, &w64, cfg.bias.then_some(&b64[..]));
    let (want_dx, want_dw, _) = r::backward(&g, &dy64, &x64, &w64);
    assert_close(&format!("tiled forward {what}"), &read(gpu, &ty), &want_y, ATOL, RTOL);
    assert_close(&format!("tiled backward_input {what}"), &read(gpu, &tdx), &want_dx, ATOL, RTOL);
    for (tdw, s) in tdws.iter().zip(&used) {
        assert_close(&format!("tiled backward_weight ({s} splits) {what}"), &read(gpu, tdw), &want_dw, ATOL, RTOL);
    }
}

const T: Tiles = Tiles::DEFAULT;

#[test]
fn batch1_cin1_odd_3x3_same_bias() {
    check([1, 1, 7, 5], cfg(1, 4, (3, 3), (1, 1), Padding::Same, true), T, 3, 1);
}

#[test]
fn cin3_5x5_valid_and_same() {
    // K = 75: not a multiple of BK.
    check([2, 3, 13, 11], cfg(3, 5, (5, 5), (1, 1), Padding::Valid, false), T, 4, 2);
    check([1, 3, 7, 5], cfg(3, 2, (5, 5), (1, 1), Padding::Same, true), T, 2, 3);
}

#[test]
fn cout_past_one_tile_3x3_same() {
    // 70 output channels: two row tiles, the second nearly empty; K = 72.
    check([1, 8, 7, 5], cfg(8, 70, (3, 3), (1, 1), Padding::Same, true), T, 3, 4);
    check([2, 64, 5, 5], cfg(64, 64, (3, 3), (1, 1), Padding::Same, true), T, 3, 5);
}

#[test]
fn pointwise_1x1_odd_channels_and_stride() {
    check([1, 65, 4, 3], cfg(65, 67, (1, 1), (1, 1), Padding::Valid, true), T, 4, 6);
    // Stride larger than the kernel: skipped input pixels get dx = 0.
    check([1, 2, 8, 7], cfg(2, 2, (1, 1), (3, 3), Padding::Valid, false), T, 2, 7);
}

#[test]
fn stride2_non_square_explicit_padding() {
    check([2, 5, 7, 5], cfg(5, 3, (3, 3), (2, 2), Padding::Same, false), T, 3, 8);
    check([3, 3, 9, 8], cfg(3, 6, (3, 2), (2, 2), explicit(2, 0, 1, 3), true), T, 5, 9);
    check([1, 1, 11, 9], cfg(1, 3, (5, 5), (2, 1), Padding::Same, true), T, 2, 10);
}

/// Non-default tiles through the overrides: small and non-square tiles, BK not a power of
/// two and larger than some K.
#[test]
fn other_tile_sizes() {
    let c = cfg(8, 70, (3, 3), (1, 1), Padding::Same, true);
    for (i, t) in [Tiles { bm: 16, bn: 16, bk: 8 }, Tiles { bm: 32, bn: 64, bk: 5 }, Tiles { bm: 64, bn: 16, bk: 32 }, Tiles { bm: 128, bn: 32, bk: 8 }].into_iter().enumerate() {
        check([2, 8, 7, 5], c, t, 3, 20 + i as u64);
    }
    check([1, 3, 13, 11], cfg(3, 5, (5, 5), (2, 2), Padding::Same, false), Tiles { bm: 8, bn: 36, bk: 7 }, 2, 30);
    for (i, t) in tiled::CANDIDATES.into_iter().enumerate() {
        let gpu = gpu!();
        t.check(gpu, "candidate").unwrap();
        check([1, 8, 5, 7], cfg(8, 33, (3, 3), (1, 1), Padding::Same, true), t, 2, 31 + i as u64);
    }
}

/// ACCUMULATE of the weight gradient, direct (one split) and through the reduce (several):
/// overwrite once, add once more, expect twice the gradient.
#[test]
fn backward_weight_accumulates() {
    let gpu = gpu!();
    let x_shape = [2, 3, 7, 5];
    let c = cfg(3, 9, (3, 3), (1, 1), Padding::Same, true);
    let layer = Conv2d::new(gpu, "tiled acc", c, &x_shape).unwrap();
    let g = layer.geom();
    let mut rng = Rng::new(40);
    let (x, x64) = rand(&mut rng, g.x_len());
    let (w, w64) = rand(&mut rng, g.w_len());
    let (dy, dy64) = rand(&mut rng, g.y_len());
    let tx = up(gpu, "x", &x_shape, &x);
    let tdy = up(gpu, "dy", &layer.output_shape, &dy);
    let _ = w;
    let (_, want, _) = r::backward(&g, &dy64, &x64, &w64);
    let twice: Vec<f64> = want.iter().map(|v| 2.0 * v).collect();
    for splits in [1, 3] {
        let tdw = up(gpu, "dw", &layer.weight_shape(), &vec![7.0; g.w_len()]);
        let p = plan(&layer, ConvPass::BackwardWeight, T, Some(splits));
        let first = tiled::backward_weight(gpu, &layer, &p, &tdw, &tdy, &tx, false).unwrap();
        let again = tiled::backward_weight(gpu, &layer, &p, &tdw, &tdy, &tx, true).unwrap();
        assert_eq!(p.splits(), splits);
        gpu.run(&first).unwrap();
        assert_close(&format!("overwrite ({splits} splits)"), &read(gpu, &tdw), &want, ATOL, RTOL);
        gpu.run(&again).unwrap();
        assert_close(&format!("accumulate ({splits} splits)"), &read(gpu, &tdw), &twice, ATOL, RTOL);
    }
}

/// The scratch of a split weight gradient is a counted tensor made with the plan.
#[test]
fn split_scratch_is_counted() {
    let gpu = gpu!();
    let layer = Conv2d::new(gpu, "tiled mem", cfg(4, 4, (3, 3), (1, 1), Padding::Same, false), &[2, 4, 9, 9]).unwrap();
    let p = plan(&layer, ConvPass::BackwardWeight, T, Some(4));
    assert_eq!(p.splits(), 4);
    let scratch = p.scratch().unwrap();
    assert_eq!(scratch.shape(), &[4, 144]);
    assert!(gpu.mem().live() >= scratch.bytes());
}

#[test]
fn errors_name_the_layer() {
    let gpu = gpu!();
    let c = cfg(3, 4, (3, 3), (1, 1), Padding::Same, true);
    let layer = Conv2d::new(gpu, "convT7", c, &[1, 3, 5, 5]).unwrap();
    let x = zeros(gpu, "x", &[1, 3, 5, 5]);
    let bad_x = zeros(gpu, "x", &[1, 3, 5, 4]);
    let w = zeros(gpu, "w", &[4, 3, 3, 3]);
    let bad_w = zeros(gpu, "w", &[4, 3, 3, 2]);
    let b = zeros(gpu, "b", &[4]);
    let y = zeros(gpu, "y", &[1, 4, 5, 5]);
    let dw = zeros(gpu, "dw", &[4, 3, 3, 3]);
    let (pf, pb, pw) = (plan(&layer, ConvPass::Forward, T, None), plan(&layer, ConvPass::BackwardInput, T, None), plan(&layer, ConvPass::BackwardWeight, T, None));
    let errs = [
        tiled::forward(gpu, &layer, &pf, &bad_x, &w, Some(&b), &y).err(),
        tiled::forward(gpu, &layer, &pf, &x, &bad_w, Some(&b), &y).err(),
        tiled::forward(gpu, &layer, &pf, &x, &w, None, &y).err(),
        tiled::forward(gpu, &layer, &pb, &x, &w, Some(&b), &y).err(),
        tiled::Plan::new(gpu, &layer, ConvPass::Forward, Tiles { bm: 18, bn: 64, bk: 16 }, None).err(),
        tiled::Plan::new(gpu, &layer, ConvPass::Forward, Tiles { bm: 256, bn: 256, bk: 16 }, None).err(),
        tiled::backward_input(gpu, &layer, &pb, &bad_x, &y, &w).err(),
        tiled::backward_weight(gpu, &layer, &pw, &bad_w, &y, &x, false).err(),
        tiled::backward_weight(gpu, &layer, &pw, &dw, &y, &bad_x, false).err(),
    ];
    for (i, e) in errs.into_iter().enumerate() {
        let e = e.unwrap_or_else(|| panic!("case {i} should fail")).to_string();
        assert!(e.contains("convT7"), "case {i}: {e}");
    }
}

/// More column tiles than one grid dimension holds (BN = 16, 1031 x 1031 pixels: 66 438
/// tiles): the grid folds into z. Forward only (backward_input shares the fold; lavapipe
/// takes ~2 s per pass of 66k workgroups).
#[test]
fn folded_grid() {
    let gpu = gpu!();
    let shape = [1, 1, 1031, 1031];
    let c = cfg(1, 1, (1, 1), (1, 1), Padding::Valid, true);
    let layer = Conv2d::new(gpu, "tiled fold", c, &shape).unwrap();
    let g = layer.geom();
    let t = Tiles { bm: 16, bn: 16, bk: 16 };
    let mut rng = Rng::new(50);
    let (x, x64) = rand(&mut rng, g.x_len());
    let tx = up(gpu, "x", &shape, &x);
    let tw = up(gpu, "w", &[1, 1, 1, 1], &[0.75]);
    let tb = up(gpu, "b", &[1], &[-0.25]);
    let ty = zeros(gpu, "y", &shape);
    let steps = tiled::forward(gpu, &layer, &plan(&layer, ConvPass::Forward, t, None), &tx, &tw, Some(&tb), &ty).unwrap();
    assert!(steps[0].groups()[2] > 1, "{:?}", steps[0].groups());
    gpu.run(&steps).unwrap();
    let want_y: Vec<f64> = x64.iter().map(|v| 0.75 * v - 0.25).collect();
    assert_close("folded forward", &read(gpu, &ty), &want_y, ATOL, RTOL);
}

/// Timing (not a check): GFLOP/s of the tiled kernels next to the current ones at the
/// seed-cnn shape (64 -> 64, 3x3 same, 48 x 48, batch 16). Run with
/// `cargo test --release --test kernels conv2d_tiled::timing -- --ignored --nocapture`
/// (MIEN_TIMING_REPS: repetitions, default 3).
#[test]
#[ignore]
fn timing_seed_cnn_shape() {
    let gpu = gpu!();
    let shape = [16, 64, 48, 48];
    let c = cfg(64, 64, (3, 3), (1, 1), Padding::Same, true);
    let layer = Conv2d::new(gpu, "seed", c, &shape).unwrap();
    let g = layer.geom();
    let mut rng = Rng::new(60);
    let tx = up(gpu, "x", &shape, &rng.vec_f32(g.x_len(), -1.0, 1.0));
    let tw = up(gpu, "w", &layer.weight_shape(), &rng.vec_f32(g.w_len(), -0.1, 0.1));
    let tb = up(gpu, "b", &[64], &rng.vec_f32(64, -1.0, 1.0));
    let tdy = up(gpu, "dy", &layer.output_shape, &rng.vec_f32(g.y_len(), -1.0, 1.0));
    let ty = zeros(gpu, "y", &layer.output_shape);
    let tdx = zeros(gpu, "dx", &shape);
    let tdw = zeros(gpu, "dw", &layer.weight_shape());
    let flop = 2.0 * (g.n * g.cout * g.oh * g.ow * g.cin * g.kh * g.kw) as f64;
    let reps = std::env::var("MIEN_TIMING_REPS").ok().and_then(|s| s.parse().ok()).unwrap_or(3);
    let time = |what: &str, d: &[mien::Dispatch]| {
        let refs: Vec<&mien::Dispatch> = d.iter().collect();
        let t = mien::gpu::timing::time_dispatches(gpu, &refs, reps, 0.5).unwrap();
        println!("{what:<34} {:>9.2} ms {:>8.2} GFLOP/s ({} dispatches)", t.seconds * 1e3, flop / t.seconds / 1e9, d.len());
    };
    println!("{}", gpu.describe());
    time("current forward_dispatches", &layer.forward_dispatches(gpu, &tx, &tw, Some(&tb), &ty).unwrap());
    let (pf, pb, pw) = (plan(&layer, ConvPass::Forward, T, None), plan(&layer, ConvPass::BackwardInput, T, None), plan(&layer, ConvPass::BackwardWeight, T, None));
    time("tiled forward", &tiled::forward(gpu, &layer, &pf, &tx, &tw, Some(&tb), &ty).unwrap());
    time("current backward_input_dispatches", &layer.backward_input_dispatches(gpu, &tdx, &tdy, &tw).unwrap());
    time("tiled backward_input", &tiled::backward_input(gpu, &layer, &pb, &tdx, &tdy, &tw).unwrap());
    time("current backward_weight", &layer.backward_weight(gpu, &tdw, &tdy, &tx, false).unwrap());
    time(&format!("tiled backward_weight ({} splits)", pw.splits()), &tiled::backward_weight(gpu, &layer, &pw, &tdw, &tdy, &tx, false).unwrap());
    // MIEN_TIMING_CANDIDATES=1: the forward of every candidate tile size too.
    if std::env::var("MIEN_TIMING_CANDIDATES").as_deref() == Ok("1") {
        for t in tiled::CANDIDATES {
            time(&format!("tiled forward {}x{}x{}", t.bm, t.bn, t.bk), &tiled::forward(gpu, &layer, &plan(&layer, ConvPass::Forward, t, None), &tx, &tw, Some(&tb), &ty).unwrap());
        }
    }
}
