use crate::common::{rand, read, up, zeros, ATOL, RTOL};
use crate::gpu;
use mien::nn::conv2d::{subgroup, Conv2d, Conv2dConfig, ConvKernels, ConvPass, ConvVariant};
use mien::nn::Padding;
use mien::reference::{assert_close, conv2d as r};
use mien::rng::Rng;

fn cfg(cin: usize, cout: usize, kernel: (usize, usize), stride: (usize, usize), padding: Padding, bias: bool) -> Conv2dConfig {
    Conv2dConfig { in_channels: cin, out_channels: cout, kernel, stride, padding, bias }
}

const fn explicit(top: usize, bottom: usize, left: usize, right: usize) -> Padding {
    Padding::Explicit { top, bottom, left, right }
}

/// The layers `check` runs: for each variant but coop, a layer with that variant on every
/// pass it applies to (general on the others), skipped where it applies to none; the tiled
/// one must apply everywhere.
fn variant_layers(gpu: &mien::Gpu, x_shape: [usize; 4], cfg: Conv2dConfig) -> Vec<Conv2d> {
    let base = Conv2d::new_with(gpu, "conv", cfg, &x_shape, ConvKernels::General).unwrap();
    let mut layers = vec![];
    for v in ConvVariant::ALL {
        if v == ConvVariant::Coop {
            // f16 operands: conv2d_coop.rs checks it with the tolerance for those.
            continue;
        }
        let per_pass = ConvPass::ALL.map(|p| if base.supports(gpu, p, v) { v } else { ConvVariant::General });
        if v == ConvVariant::Tiled {
            assert_eq!(per_pass, [v; 3], "{x_shape:?} {cfg:?}");
        }
        if v == ConvVariant::General || per_pass.contains(&v) {
            layers.push(Conv2d::new_with(gpu, &format!("conv {}", v.name()), cfg, &x_shape, ConvKernels::General).unwrap().with_variants(gpu, per_pass).unwrap());
        }
    }
    layers
}

/// Run forward, backward_input and backward_weight of every variant that applies to `cfg`
/// on `x_shape` (`variant_layers`), a weight gradient with `splits` forced, and the bias
/// gradient, and compare with the reference.
fn check(x_shape: [usize; 4], cfg: Conv2dConfig, splits: usize, seed: u64) {
    let gpu = gpu!();
    let mut rng = Rng::new(seed);
    let layers = variant_layers(gpu, x_shape, cfg);
    let split_layer = Conv2d::new(gpu, "conv split", cfg, &x_shape).unwrap().with_weight_splits(gpu, splits).unwrap();
    let g = layers[0].geom();
    let (x, x64) = rand(&mut rng, g.x_len());
    let (w, w64) = rand(&mut rng, g.w_len());
    let (b, b64) = rand(&mut rng, g.cout);
    let (dy, dy64) = rand(&mut rng, g.y_len());
    let tx = up(gpu, "x", &x_shape, &x);
    let tw = up(gpu, "w", &layers[0].weight_shape(), &w);
    let tb = up(gpu, "b", &[g.cout], &b);
    let tdy = up(gpu, "dy", &layers[0].output_shape, &dy);
    let bias = cfg.bias.then_some(&tb);
    let mut steps = vec![];
    let mut outs = vec![];
    for l in &layers {
        let (ty, tdx, tdw) = (zeros(gpu, "y", &l.output_shape), zeros(gpu, "dx", &x_shape), zeros(gpu, "dw", &l.weight_shape()));
        steps.extend(l.forward_dispatches(gpu, &tx, &tw, bias, &ty).unwrap());
        steps.extend(l.backward_input_dispatches(gpu, &tdx, &tdy, &tw).unwrap());
        steps.extend(l.backward_weight(gpu, &tdw, &tdy, &tx, false).unwrap());
        outs.push((format!("{x_shape:?} {cfg:?} ({}; {} weight splits)", l.describe_variants(), l.weight_splits()), ty, tdx, tdw));
    }
    let tdw_split = zeros(gpu, "dw split", &split_layer.weight_shape());
    steps.extend(split_layer.backward_weight(gpu, &tdw_split, &tdy, &tx, false).unwrap());
    let tdb = zeros(gpu, "db", &[g.cout]);
    if cfg.bias {
        steps.push(layers[0].backward_bias(gpu, &tdb, &tdy, false).unwrap());
    }
    gpu.run(&steps).unwrap();

    let want_y = r::forward(&g, &x64, &w64, cfg.bias.then_some(&b64[..]));
    let (want_dx, want_dw, want_db) = r::backward(&g, &dy64, &x64, &w64);
    for (what, ty, tdx, tdw) in &outs {
        assert_close(&format!("forward {what}"), &read(gpu, ty), &want_y, ATOL, RTOL);
        assert_close(&format!("backward_input {what}"), &read(gpu, tdx), &want_dx, ATOL, RTOL);
        assert_close(&format!("backward_weight {what}"), &read(gpu, tdw), &want_dw, ATOL, RTOL);
    }
    let what = format!("{x_shape:?} {cfg:?} ({}, {} splits)", split_layer.describe_variants(), split_layer.weight_splits());
    assert_close(&format!("backward_weight split {what}"), &read(gpu, &tdw_split), &want_dw, ATOL, RTOL);
    if cfg.bias {
        assert_close(&format!("backward_bias {x_shape:?} {cfg:?}"), &read(gpu, &tdb), &want_db, ATOL, RTOL);
    }
}

#[test]
fn batch1_cin1_odd_3x3_same_bias() {
    check([1, 1, 7, 5], cfg(1, 4, (3, 3), (1, 1), Padding::Same, true), 3, 1);
}

#[test]
fn cin3_5x5_valid_no_bias() {
    check([2, 3, 7, 5], cfg(3, 5, (5, 5), (1, 1), Padding::Valid, false), 2, 2);
    check([1, 3, 9, 11], cfg(3, 2, (5, 5), (1, 1), Padding::Same, true), 4, 3);
}

#[test]
fn channels_64_3x3_same() {
    check([2, 64, 5, 5], cfg(64, 64, (3, 3), (1, 1), Padding::Same, true), 3, 4);
}

#[test]
fn pointwise_1x1_odd_channel_counts() {
    // 65 and 67 are not multiples of the 4-channel register blocks.
    check([1, 65, 4, 3], cfg(65, 67, (1, 1), (1, 1), Padding::Valid, true), 4, 5);
    // Stride larger than the kernel skips input pixels (their dx is 0).
    check([1, 2, 8, 7], cfg(2, 2, (1, 1), (3, 3), Padding::Valid, false), 2, 6);
}

#[test]
fn non_square_kernel_stride2_explicit_asymmetric_padding() {
    check([3, 3, 9, 8], cfg(3, 6, (3, 2), (2, 2), explicit(2, 0, 1, 3), true), 5, 7);
    check([2, 2, 6, 7], cfg(2, 2, (2, 3), (1, 2), explicit(0, 2, 2, 0), true), 3, 8);
}

#[test]
fn stride2_same_and_mixed_strides() {
    check([2, 5, 7, 5], cfg(5, 3, (3, 3), (2, 2), Padding::Same, false), 3, 9);
    check([1, 1, 11, 9], cfg(1, 3, (5, 5), (2, 1), Padding::Same, true), 2, 10);
    check([2, 4, 8, 8], cfg(4, 8, (3, 3), (2, 2), Padding::Valid, true), 3, 11);
}

/// Layer shapes of the reports' VGG-like net: 3x3 same convs 1->64 at 48x48, then 64->64,
/// 64->128, 128->128 (at smaller spatial sizes to stay fast on the CPU driver).
#[test]
fn vgg_like_layer_shapes() {
    check([2, 1, 48, 48], cfg(1, 64, (3, 3), (1, 1), Padding::Same, true), 7, 12);
    check([1, 64, 12, 12], cfg(64, 64, (3, 3), (1, 1), Padding::Same, true), 3, 13);
    check([2, 64, 6, 6], cfg(64, 128, (3, 3), (1, 1), Padding::Same, true), 3, 14);
    check([1, 128, 5, 5], cfg(128, 128, (3, 3), (1, 1), Padding::Same, true), 2, 15);
}

/// The 3x3 stride-1 fast kernels (widths multiples of 4): every left padding 0 / 1 / 2,
/// batch 1, 1 / 3 / 64+ channels, channel counts that are not multiples of the 8-channel
/// blocks, more source channels than one 64 KiB uniform chunk holds for 8-channel blocks
/// (17 -> 130: two forward chunks, three backward_input chunks); `check` runs the fast,
/// uniform-window and general kernels on each.
#[test]
fn fast_3x3_stride1_kernels() {
    let gpu = gpu!();
    let cases: &[([usize; 4], Conv2dConfig)] = &[
        ([1, 1, 5, 8], cfg(1, 4, (3, 3), (1, 1), Padding::Same, true)),
        ([2, 3, 7, 8], cfg(3, 5, (3, 3), (1, 1), Padding::Same, false)),
        ([2, 3, 6, 8], cfg(3, 9, (3, 3), (1, 1), explicit(0, 2, 0, 2), true)),
        ([1, 2, 5, 12], cfg(2, 3, (3, 3), (1, 1), explicit(2, 0, 2, 0), true)),
        ([2, 65, 3, 4], cfg(65, 67, (3, 3), (1, 1), Padding::Same, true)),
        ([1, 17, 4, 4], cfg(17, 130, (3, 3), (1, 1), Padding::Same, true)),
    ];
    for (i, (shape, c)) in cases.iter().enumerate() {
        let l = Conv2d::new(gpu, "fast", *c, shape).unwrap();
        for p in ConvPass::ALL {
            assert_eq!(l.unsupported(gpu, p, ConvVariant::Fast), None, "{shape:?} {c:?}");
        }
        check(*shape, *c, 3, 40 + i as u64);
    }
    // Valid padding: forward fast (output inside the input row); dx and dW general (dy
    // rows 6 wide: not vec4 rows).
    let c = cfg(4, 8, (3, 3), (1, 1), Padding::Valid, true);
    let l = Conv2d::new(gpu, "fast", c, &[2, 4, 6, 8]).unwrap().with_kernels(gpu, ConvKernels::Fast).unwrap();
    assert_eq!(l.variants(), [ConvVariant::Uniform, ConvVariant::General, ConvVariant::General]);
    assert!(l.supports(gpu, ConvPass::Forward, ConvVariant::Fast));
    let e = l.unsupported(gpu, ConvPass::BackwardInput, ConvVariant::Fast).unwrap();
    assert!(e.contains("source width 6 is not a multiple of 4"), "{e}");
    check([2, 4, 6, 8], c, 2, 50);
}

/// ACCUMULATE of the fast weight-gradient kernel, direct (1 split) and through the reduce
/// (several splits): overwrite once, add once more, expect twice the gradient.
#[test]
fn fast_weight_gradient_accumulates() {
    let gpu = gpu!();
    let mut rng = Rng::new(60);
    let c = cfg(3, 5, (3, 3), (1, 1), Padding::Same, true);
    let shape = [3, 3, 7, 8];
    let direct = Conv2d::new(gpu, "direct", c, &shape).unwrap().with_weight_splits(gpu, 1).unwrap();
    let split = Conv2d::new(gpu, "split", c, &shape).unwrap().with_weight_splits(gpu, 4).unwrap();
    assert_eq!((direct.variants()[2], split.variants()[2], split.weight_splits()), (ConvVariant::Fast, ConvVariant::Fast, 4));
    let g = direct.geom();
    let (x, x64) = rand(&mut rng, g.x_len());
    let (_, w64) = rand(&mut rng, g.w_len());
    let (dy, dy64) = rand(&mut rng, g.y_len());
    let (tx, tdy) = (up(gpu, "x", &shape, &x), up(gpu, "dy", &direct.output_shape, &dy));
    let (dw1, dw2) = (zeros(gpu, "dw direct", &direct.weight_shape()), zeros(gpu, "dw split", &direct.weight_shape()));
    let mut steps = vec![];
    for acc in [false, true] {
        steps.extend(direct.backward_weight(gpu, &dw1, &tdy, &tx, acc).unwrap());
        steps.extend(split.backward_weight(gpu, &dw2, &tdy, &tx, acc).unwrap());
    }
    gpu.run(&steps).unwrap();
    let (_, want_dw, _) = r::backward(&g, &dy64, &x64, &w64);
    let twice: Vec<f64> = want_dw.iter().map(|v| 2.0 * v).collect();
    assert_close("fast dw accumulated (direct)", &read(gpu, &dw1), &twice, ATOL, RTOL);
    assert_close("fast dw accumulated (split)", &read(gpu, &dw2), &twice, ATOL, RTOL);
}

/// Batch of 3 as chunks [0, 1) and [1, 3): the second chunk adds (ACCUMULATE) to the first;
/// then both chunks once more with accumulate, giving twice the full-batch gradient. Covers
/// ACCUMULATE in the direct (1 split) and the reduce (several splits) paths.
#[test]
fn weight_and_bias_gradients_accumulate_over_batch_chunks() {
    let gpu = gpu!();
    let mut rng = Rng::new(20);
    let c = cfg(3, 5, (3, 3), (1, 1), Padding::Same, true);
    let full = Conv2d::new(gpu, "full", c, &[3, 3, 7, 5]).unwrap();
    let g = full.geom();
    let (x, x64) = rand(&mut rng, g.x_len());
    let (_, w64) = rand(&mut rng, g.w_len());
    let (dy, dy64) = rand(&mut rng, g.y_len());
    let (xs, ys) = (3 * 7 * 5, 5 * 7 * 5);
    let a = Conv2d::new(gpu, "chunk a", c, &[1, 3, 7, 5]).unwrap();
    let b = Conv2d::new(gpu, "chunk b", c, &[2, 3, 7, 5]).unwrap().with_weight_splits(gpu, 3).unwrap();
    let a2 = Conv2d::new(gpu, "chunk a split", c, &[1, 3, 7, 5]).unwrap().with_weight_splits(gpu, 2).unwrap();
    let b2 = Conv2d::new(gpu, "chunk b direct", c, &[2, 3, 7, 5]).unwrap();
    assert_eq!((a.weight_splits(), b.weight_splits(), a2.weight_splits(), b2.weight_splits()), (1, 3, 2, 1));
    let (xa, xb) = (up(gpu, "x a", &[1, 3, 7, 5], &x[..xs]), up(gpu, "x b", &[2, 3, 7, 5], &x[xs..]));
    let (dya, dyb) = (up(gpu, "dy a", &[1, 5, 7, 5], &dy[..ys]), up(gpu, "dy b", &[2, 5, 7, 5], &dy[ys..]));
    let dw = zeros(gpu, "dw", &full.weight_shape());
    let db = zeros(gpu, "db", &[5]);
    let mut steps = vec![];
    steps.extend(a.backward_weight(gpu, &dw, &dya, &xa, false).unwrap());
    steps.extend(b.backward_weight(gpu, &dw, &dyb, &xb, true).unwrap());
    steps.push(a.backward_bias(gpu, &db, &dya, false).unwrap());
    steps.push(b.backward_bias(gpu, &db, &dyb, true).unwrap());
    gpu.run(&steps).unwrap();
    let (_, want_dw, want_db) = r::backward(&g, &dy64, &x64, &w64);
    assert_close("chunked dw", &read(gpu, &dw), &want_dw, ATOL, RTOL);
    assert_close("chunked db", &read(gpu, &db), &want_db, ATOL, RTOL);

    let mut steps = vec![];
    steps.extend(a2.backward_weight(gpu, &dw, &dya, &xa, true).unwrap());
    steps.extend(b2.backward_weight(gpu, &dw, &dyb, &xb, true).unwrap());
    steps.push(a2.backward_bias(gpu, &db, &dya, true).unwrap());
    steps.push(b2.backward_bias(gpu, &db, &dyb, true).unwrap());
    gpu.run(&steps).unwrap();
    let twice = |v: &[f64]| v.iter().map(|x| 2.0 * x).collect::<Vec<_>>();
    assert_close("dw accumulated twice", &read(gpu, &dw), &twice(&want_dw), ATOL, RTOL);
    assert_close("db accumulated twice", &read(gpu, &db), &twice(&want_db), ATOL, RTOL);
}

#[test]
fn bad_configs_and_shapes_are_errors_naming_the_layer() {
    let gpu = gpu!();
    let ok = cfg(3, 4, (3, 3), (1, 1), Padding::Same, true);
    let err = |r: mien::Result<Conv2d>| r.err().expect("expected an error").to_string();
    let e = err(Conv2d::new(gpu, "block1.conv", ok, &[2, 2, 8, 8]));
    assert!(e.contains("block1.conv") && e.contains("in_channels=3"), "{e}");
    let e = err(Conv2d::new(gpu, "block1.conv", Conv2dConfig { stride: (0, 1), ..ok }, &[2, 3, 8, 8]));
    assert!(e.contains("block1.conv") && e.contains("stride"), "{e}");
    let e = err(Conv2d::new(gpu, "block1.conv", Conv2dConfig { kernel: (3, 0), ..ok }, &[2, 3, 8, 8]));
    assert!(e.contains("block1.conv") && e.contains("kernel"), "{e}");
    let e = err(Conv2d::new(gpu, "block1.conv", Conv2dConfig { kernel: (5, 5), padding: Padding::Valid, ..ok }, &[2, 3, 4, 8]));
    assert!(e.contains("block1.conv") && e.contains("larger"), "{e}");
    let e = err(Conv2d::new(gpu, "block1.conv", ok, &[2, 3, 8]));
    assert!(e.contains("block1.conv"), "{e}");

    let layer = Conv2d::new(gpu, "block2.conv", ok, &[2, 3, 8, 8]).unwrap();
    assert_eq!(layer.output_shape, [2, 4, 8, 8]);
    let x = zeros(gpu, "x", &[2, 3, 8, 8]);
    let w = zeros(gpu, "w", &[4, 3, 3, 3]);
    let b = zeros(gpu, "b", &[4]);
    let y = zeros(gpu, "y", &[2, 4, 8, 8]);
    let bad_x = zeros(gpu, "x", &[2, 3, 8, 7]);
    let e = layer.forward_dispatches(gpu, &bad_x, &w, Some(&b), &y).err().unwrap().to_string();
    assert!(e.contains("block2.conv") && e.contains("[2, 3, 8, 8]"), "{e}");
    let bad_w = zeros(gpu, "w", &[4, 3, 3, 2]);
    let e = layer.forward_dispatches(gpu, &x, &bad_w, Some(&b), &y).err().unwrap().to_string();
    assert!(e.contains("block2.conv") && e.contains("[4, 3, 3, 3]"), "{e}");
    let e = layer.forward_dispatches(gpu, &x, &w, None, &y).err().unwrap().to_string();
    assert!(e.contains("block2.conv") && e.contains("bias"), "{e}");
    let bad_y = zeros(gpu, "y", &[2, 4, 8, 7]);
    let e = layer.forward_dispatches(gpu, &x, &w, Some(&b), &bad_y).err().unwrap().to_string();
    assert!(e.contains("block2.conv") && e.contains("output"), "{e}");
    let e = layer.backward_input_dispatches(gpu, &bad_x, &y, &w).err().unwrap().to_string();
    assert!(e.contains("block2.conv") && e.contains("input gradient"), "{e}");
    let e = layer.backward_weight(gpu, &bad_w, &y, &x, false).err().unwrap().to_string();
    assert!(e.contains("block2.conv") && e.contains("weight gradient"), "{e}");
    let e = layer.backward_bias(gpu, &zeros(gpu, "db", &[3]), &y, false).err().unwrap().to_string();
    assert!(e.contains("block2.conv") && e.contains("bias gradient"), "{e}");

    let no_bias = Conv2d::new(gpu, "block3.conv", Conv2dConfig { bias: false, ..ok }, &[2, 3, 8, 8]).unwrap();
    let e = no_bias.forward_dispatches(gpu, &x, &w, Some(&b), &y).err().unwrap().to_string();
    assert!(e.contains("block3.conv") && e.contains("without bias"), "{e}");
    let e = no_bias.backward_bias(gpu, &b, &y, false).err().unwrap().to_string();
    assert!(e.contains("block3.conv") && e.contains("without bias"), "{e}");
}

/// Over 65535 * 64 forward invocations per channel block: the pixel-block index spills from
/// grid x into z (y is the channel block), as groups_1d lays it out. Width 1 makes
/// that one invocation per element: 5 columns of 840000 rows (4.2M floats, 17 MB per
/// tensor), a 3x1 'same' stencil with bias. (backward_input shares the flat-index code; it
/// is left out to keep this test near 2 s on the CPU driver.)
#[test]
fn huge_plane_uses_a_2d_grid() {
    let gpu = gpu!();
    let mut rng = Rng::new(30);
    let shape = [5usize, 1, 840_000, 1];
    let layer = Conv2d::new(gpu, "big", cfg(1, 1, (3, 1), (1, 1), Padding::Same, true), &shape).unwrap();
    let g = layer.geom();
    let (x, x64) = rand(&mut rng, g.x_len());
    let w = [0.75f32, -0.5, 0.25];
    let tx = up(gpu, "x", &shape, &x);
    let tw = up(gpu, "w", &[1, 1, 3, 1], &w);
    let tb = up(gpu, "b", &[1], &[-0.25f32]);
    let ty = zeros(gpu, "y", &shape);
    assert_eq!(layer.variants()[0], ConvVariant::General);
    let fwd = layer.forward_dispatches(gpu, &tx, &tw, Some(&tb), &ty).unwrap();
    assert!(fwd[0].groups()[2] > 1, "expected the grid to spill into z, got {:?}", fwd[0].groups());
    gpu.run(&fwd).unwrap();
    let want_y = r::forward(&g, &x64, &mien::reference::f64s(&w), Some(&[-0.25]));
    assert_close("huge forward", &read(gpu, &ty), &want_y, ATOL, RTOL);
}

/// The weight gradient with dy in uniform windows (3x3 stride 1, 8+ input channels):
/// left padding 0 / 1 / 2, input channels below one 64-lane workgroup and not a multiple
/// of 8, output channels not a multiple of 4, two channel groups (8 -> 128, 12 -> 201),
/// two row windows per sample (the check's split layer uses the storage-only kernels); then
/// ACCUMULATE (overwrite once, add once: twice the gradient).
#[test]
fn uniform_window_weight_gradient() {
    let gpu = gpu!();
    let cases: &[([usize; 4], Conv2dConfig)] = &[
        ([2, 9, 7, 8], cfg(9, 70, (3, 3), (1, 1), explicit(0, 2, 0, 2), false)),
        ([1, 8, 10, 16], cfg(8, 128, (3, 3), (1, 1), Padding::Same, true)),
        ([2, 12, 9, 12], cfg(12, 201, (3, 3), (1, 1), explicit(2, 0, 2, 0), true)),
        ([1, 70, 4, 8], cfg(70, 9, (3, 3), (1, 1), Padding::Same, true)),
        // Two row windows of 10 rows per sample (16 channels x 64 columns).
        ([2, 8, 20, 64], cfg(8, 16, (3, 3), (1, 1), Padding::Same, true)),
    ];
    for (i, (shape, c)) in cases.iter().enumerate() {
        let l = Conv2d::new(gpu, "fast", *c, shape).unwrap().with_kernels(gpu, ConvKernels::Fast).unwrap();
        assert_eq!(l.variants()[2], ConvVariant::Uniform, "{shape:?} {c:?}");
        check(*shape, *c, 2, 70 + i as u64);
    }
    let mut rng = Rng::new(80);
    let (shape, c) = cases[2];
    let layer = Conv2d::new(gpu, "acc", c, &shape).unwrap().with_kernels(gpu, ConvKernels::Fast).unwrap();
    assert_eq!(layer.variants()[2], ConvVariant::Uniform);
    let g = layer.geom();
    let (x, x64) = rand(&mut rng, g.x_len());
    let (_, w64) = rand(&mut rng, g.w_len());
    let (dy, dy64) = rand(&mut rng, g.y_len());
    let (tx, tdy) = (up(gpu, "x", &shape, &x), up(gpu, "dy", &layer.output_shape, &dy));
    let dw = up(gpu, "dw", &layer.weight_shape(), &vec![3.0; g.w_len()]);
    let mut steps = layer.backward_weight(gpu, &dw, &tdy, &tx, false).unwrap();
    steps.extend(layer.backward_weight(gpu, &dw, &tdy, &tx, true).unwrap());
    gpu.run(&steps).unwrap();
    let (_, want_dw, _) = r::backward(&g, &dy64, &x64, &w64);
    let twice: Vec<f64> = want_dw.iter().map(|v| 2.0 * v).collect();
    assert_close("uniform-window dw accumulated", &read(gpu, &dw), &twice, ATOL, RTOL);
}

/// Whether the adapter runs the subgroup kernels; lavapipe (CI's adapter) must, so there a
/// missing subgroup feature fails instead of skipping the subgroup tests.
fn has_subgroups(gpu: &mien::Gpu) -> bool {
    let ok = gpu.subgroup_min_size() >= Some(subgroup::MIN_LANES);
    assert!(ok || !gpu.info().name.contains("llvmpipe"), "lavapipe offers 8-lane subgroups, but the device has {:?}", gpu.subgroup_min_size());
    if !ok {
        eprintln!("no subgroups of >= 8 lanes on {}: the subgroup kernels are not used here", gpu.info().name);
    }
    ok
}

/// The subgroup kernels (3x3 'same', width a multiple of 4): batch 1 to 3, a single row and
/// odd heights (a lone last row of a row pair), one column block (W = 4) and several
/// (subgroup lanes holding different rows, so edge columns come from loads and shuffles), 1
/// / 3 / 9 / 65 / 130 channels (partial 8-channel blocks, input channels not a multiple of
/// 4, two 64-lane output-channel groups in the weight gradient), bias on and off; the weight
/// gradient both with split partials + reduce (few channels) and direct (many).
#[test]
fn subgroup_3x3_kernels() {
    let gpu = gpu!();
    let sg = has_subgroups(gpu);
    let cases: &[([usize; 4], Conv2dConfig)] = &[
        ([1, 1, 7, 8], cfg(1, 4, (3, 3), (1, 1), Padding::Same, true)),
        ([2, 3, 1, 4], cfg(3, 5, (3, 3), (1, 1), Padding::Same, false)),
        ([3, 3, 13, 12], cfg(3, 9, (3, 3), (1, 1), Padding::Same, true)),
        ([1, 9, 6, 20], cfg(9, 3, (3, 3), (1, 1), Padding::Same, true)),
        ([2, 65, 3, 8], cfg(65, 130, (3, 3), (1, 1), Padding::Same, true)),
        ([1, 130, 5, 4], cfg(130, 65, (3, 3), (1, 1), Padding::Same, false)),
    ];
    for (i, (shape, c)) in cases.iter().enumerate() {
        let l = Conv2d::new(gpu, "subgroup", *c, shape).unwrap();
        if sg {
            assert_eq!(l.variants(), [ConvVariant::Subgroup; 3], "{shape:?} {c:?}: {:?}", subgroup::unsupported(gpu, &l));
        }
        check(*shape, *c, 2, 90 + i as u64);
    }
}

/// ACCUMULATE of the subgroup weight gradient, direct (one split) and through the reduce:
/// overwrite once, add once more, expect twice the gradient. Other shapes are refused by
/// `with_kernels(Subgroup)` with the layer's name and the reason.
#[test]
fn subgroup_weight_gradient_accumulates_and_refuses_other_shapes() {
    let gpu = gpu!();
    if !has_subgroups(gpu) {
        return;
    }
    let mut rng = Rng::new(95);
    for (shape, c) in [([2, 3, 5, 8], cfg(3, 5, (3, 3), (1, 1), Padding::Same, true)), ([1, 70, 3, 4], cfg(70, 64, (3, 3), (1, 1), Padding::Same, true))] {
        let layer = Conv2d::new(gpu, "acc", c, &shape).unwrap().with_kernels(gpu, ConvKernels::Subgroup).unwrap();
        let g = layer.geom();
        let (x, x64) = rand(&mut rng, g.x_len());
        let (_, w64) = rand(&mut rng, g.w_len());
        let (dy, dy64) = rand(&mut rng, g.y_len());
        let (tx, tdy) = (up(gpu, "x", &shape, &x), up(gpu, "dy", &layer.output_shape, &dy));
        let dw = up(gpu, "dw", &layer.weight_shape(), &vec![3.0; g.w_len()]);
        let mut steps = layer.backward_weight(gpu, &dw, &tdy, &tx, false).unwrap();
        steps.extend(layer.backward_weight(gpu, &dw, &tdy, &tx, true).unwrap());
        gpu.run(&steps).unwrap();
        let (_, want_dw, _) = r::backward(&g, &dy64, &x64, &w64);
        let twice: Vec<f64> = want_dw.iter().map(|v| 2.0 * v).collect();
        assert_close(&format!("subgroup dw accumulated {shape:?}"), &read(gpu, &dw), &twice, ATOL, RTOL);
    }
    for (shape, c, why) in [
        ([1, 3, 6, 6], cfg(3, 4, (3, 3), (1, 1), Padding::Same, true), "width 6 is not a multiple of 4"),
        ([1, 3, 6, 8], cfg(3, 4, (3, 3), (1, 1), Padding::Valid, true), "padding is not 'same'"),
        ([1, 3, 6, 8], cfg(3, 4, (5, 5), (1, 1), Padding::Same, true), "is not 3x3 stride 1"),
    ] {
        let e = Conv2d::new(gpu, "conv9", c, &shape).unwrap().with_kernels(gpu, ConvKernels::Subgroup).err().expect("refused");
        let msg = e.to_string();
        assert!(msg.contains("conv9") && msg.contains(why), "{msg}");
    }
}

/// The subgroup conv's activation epilogue (inference: conv + folded BN + activation in one
/// pass) against the reference conv followed by the reference activation: ReLU, LeakyReLU,
/// PReLU per channel and per element; odd height, 65 output channels (a partial block).
#[test]
fn subgroup_conv_activation_epilogue() {
    use mien::nn::conv2d::subgroup::Epilogue;
    use mien::reference::activation as ra;
    let gpu = gpu!();
    if !has_subgroups(gpu) {
        return;
    }
    let mut rng = Rng::new(97);
    let (shape, c) = ([2, 3, 5, 8], cfg(3, 65, (3, 3), (1, 1), Padding::Same, true));
    let layer = Conv2d::new(gpu, "conv+act", c, &shape).unwrap().with_kernels(gpu, ConvKernels::Subgroup).unwrap();
    let g = layer.geom();
    let plane = g.oh * g.ow;
    let (x, x64) = rand(&mut rng, g.x_len());
    let (w, w64) = rand(&mut rng, g.w_len());
    let (b, b64) = rand(&mut rng, g.cout);
    let (a1, a164) = rand(&mut rng, g.cout);
    let (ae, ae64) = rand(&mut rng, g.cout * plane);
    let (tx, tw, tb) = (up(gpu, "x", &shape, &x), up(gpu, "w", &layer.weight_shape(), &w), up(gpu, "b", &[g.cout], &b));
    let (ta1, tae) = (up(gpu, "alpha", &[g.cout], &a1), up(gpu, "alpha per element", &[g.cout, g.oh, g.ow], &ae));
    let conv = r::forward(&g, &x64, &w64, Some(&b64));
    let cases: [(Epilogue, Vec<f64>); 4] = [
        (Epilogue::Relu, ra::relu_forward(&conv)),
        (Epilogue::LeakyRelu(0.2), ra::leaky_relu_forward(&conv, 0.2f32 as f64)),
        (Epilogue::PRelu(&ta1), ra::prelu_forward(&conv, &a164, plane)),
        (Epilogue::PReluPerElement(&tae), ra::prelu_forward(&conv, &ae64, 1)),
    ];
    for (act, want) in cases {
        let ty = zeros(gpu, "y", &layer.output_shape);
        let d = layer.forward_act_dispatches(gpu, &tx, &tw, &tb, &ty, act).unwrap().expect("subgroup layer");
        gpu.run(&d).unwrap();
        assert_close(&format!("conv + {act:?}"), &read(gpu, &ty), &want, ATOL, RTOL);
    }
    // The slope lives in the layer's forward uniform: another one is refused, the same one
    // recorded again is fine.
    let ty = zeros(gpu, "y", &layer.output_shape);
    assert!(layer.forward_act_dispatches(gpu, &tx, &tw, &tb, &ty, Epilogue::LeakyRelu(0.2)).is_ok());
    let e = layer.forward_act_dispatches(gpu, &tx, &tw, &tb, &ty, Epilogue::LeakyRelu(0.3)).err().expect("refused").to_string();
    assert!(e.contains("conv+act") && e.contains("slope"), "{e}");
}

/// The subgroup conv's BatchNorm statistics epilogue (training: the conv writes per-workgroup
/// (count, mean, M2) partials, the BatchNorm merges them instead of reading y twice): y is
/// the plain forward's, bit for bit, and the merged statistics (saved mean and inv_std, the
/// running statistics) match the f64 reference's of the reference conv output. Shapes: batch
/// 1, a lone last row (odd heights), one workgroup partly live (63 and 40 invocations of
/// 64), several workgroups with a partial last one (210 invocations), output channels 3 /
/// 4 / 9 / 17 (partial 8-channel blocks), bias on and off, and a bias of ~300 so that the
/// channel means sit far from 0 (the partials' two passes keep the variance exact there).
/// A partials tensor of the wrong shape is refused, naming the layer.
#[test]
fn subgroup_conv_statistics_epilogue() {
    use mien::nn::batchnorm::{BatchNorm, BatchNormConfig};
    use mien::reference::batchnorm as rb;
    let gpu = gpu!();
    if !has_subgroups(gpu) {
        return;
    }
    let mut rng = Rng::new(98);
    let cases: &[([usize; 4], Conv2dConfig, f32)] = &[
        ([1, 1, 7, 8], cfg(1, 4, (3, 3), (1, 1), Padding::Same, true), 0.0),
        ([3, 3, 13, 12], cfg(3, 9, (3, 3), (1, 1), Padding::Same, true), 0.0),
        ([2, 5, 9, 16], cfg(5, 3, (3, 3), (1, 1), Padding::Same, false), 0.0),
        ([5, 2, 11, 28], cfg(2, 17, (3, 3), (1, 1), Padding::Same, true), 300.0),
    ];
    for (shape, c, shift) in cases {
        let layer = Conv2d::new(gpu, "conv+stats", *c, shape).unwrap().with_kernels(gpu, ConvKernels::Subgroup).unwrap();
        let g = layer.geom();
        let groups = layer.stats_groups(gpu).unwrap().expect("a subgroup forward writes statistics");
        let (x, x64) = rand(&mut rng, g.x_len());
        let (w, w64) = rand(&mut rng, g.w_len());
        let (b, _) = rand(&mut rng, g.cout);
        let b: Vec<f32> = b.iter().map(|v| v + shift).collect();
        let b64: Vec<f64> = b.iter().map(|&v| v as f64).collect();
        let (tx, tw, tb) = (up(gpu, "x", shape, &x), up(gpu, "w", &layer.weight_shape(), &w), up(gpu, "b", &[g.cout], &b));
        let bias = c.bias.then_some(&tb);
        let (ty, ty_plain) = (zeros(gpu, "y", &layer.output_shape), zeros(gpu, "y plain", &layer.output_shape));
        let partials = zeros(gpu, "partials", &[g.cout, groups, 3]);
        let bn = BatchNorm::new(gpu, "bn", BatchNormConfig { eps: 1e-3, momentum: 0.9 }, &layer.output_shape).unwrap();
        let (rm0, rv0) = (vec![0.5f32; g.cout], vec![2.0f32; g.cout]);
        let (rm, rv, saved) = (up(gpu, "running mean", &[g.cout], &rm0), up(gpu, "running var", &[g.cout], &rv0), zeros(gpu, "saved", &[2, g.cout]));
        let mut steps = layer.forward_stats_dispatches(gpu, &tx, &tw, bias, &ty, &partials).unwrap().expect("subgroup layer");
        steps.extend(layer.forward_dispatches(gpu, &tx, &tw, bias, &ty_plain).unwrap());
        steps.push(bn.batch_stats(gpu, &ty, Some(&partials), &rm, &rv, &saved).unwrap());
        gpu.run(&steps).unwrap();
        let what = format!("{shape:?} {c:?} shift {shift}, {groups} workgroups");
        let y = read(gpu, &ty);
        assert!(y.iter().zip(read(gpu, &ty_plain)).all(|(a, b)| a.to_bits() == b.to_bits()), "{what}: y differs from the plain forward");
        let y64 = r::forward(&g, &x64, &w64, c.bias.then_some(&b64[..]));
        let ones = vec![1.0; g.cout];
        let f64s = |v: &[f32]| v.iter().map(|&v| v as f64).collect::<Vec<f64>>();
        let want = rb::forward_train(&y64, &ones, &vec![0.0; g.cout], &f64s(&rm0), &f64s(&rv0), g.oh * g.ow, 1e-3f32 as f64, 0.9f32 as f64);
        let sv = read(gpu, &saved);
        assert_close(&format!("{what}: mean"), &sv[..g.cout], &want.mean, ATOL, RTOL);
        assert_close(&format!("{what}: inv_std"), &sv[g.cout..], &want.inv_std, ATOL, RTOL);
        assert_close(&format!("{what}: running mean"), &read(gpu, &rm), &want.running_mean, ATOL, RTOL);
        assert_close(&format!("{what}: running var"), &read(gpu, &rv), &want.running_var, ATOL, RTOL);
        let counts: Vec<f32> = read(gpu, &partials).chunks(3).map(|p| p[0]).collect();
        let per_channel: f32 = counts[..groups].iter().sum();
        assert_eq!(per_channel as usize, shape[0] * g.oh * g.ow, "{what}: counts {counts:?}");
    }
    let (shape, c) = ([1, 1, 4, 8], cfg(1, 4, (3, 3), (1, 1), Padding::Same, true));
    let layer = Conv2d::new(gpu, "conv7", c, &shape).unwrap().with_kernels(gpu, ConvKernels::Subgroup).unwrap();
    let (x, w, b, y) = (zeros(gpu, "x", &shape), zeros(gpu, "w", &layer.weight_shape()), zeros(gpu, "b", &[4]), zeros(gpu, "y", &layer.output_shape));
    let e = layer.forward_stats_dispatches(gpu, &x, &w, Some(&b), &y, &zeros(gpu, "partials", &[4, 2, 2])).err().expect("refused").to_string();
    assert!(e.contains("conv7") && e.contains("partials"), "{e}");
    let bn = BatchNorm::new(gpu, "bn7", BatchNormConfig { eps: 1e-3, momentum: 0.9 }, &layer.output_shape).unwrap();
    let (rm, rv, saved) = (zeros(gpu, "rm", &[4]), zeros(gpu, "rv", &[4]), zeros(gpu, "saved", &[2, 4]));
    let e = bn.batch_stats(gpu, &y, Some(&zeros(gpu, "partials", &[3, 1, 3])), &rm, &rv, &saved).err().expect("refused").to_string();
    assert!(e.contains("bn7") && e.contains("[4, G, 3]"), "{e}");
}

/// A GPU of this test's own, so that other tests' buffers do not move its counters.
fn private_gpu() -> Option<mien::Gpu> {
    crate::common::gpu()?;
    Some(mien::Gpu::new().unwrap())
}

/// Every buffer a variant binds is made when the layer is planned: recording the passes of
/// every variant (and a split weight gradient, and the subgroup epilogue) again and again
/// creates no tensor or uniform and leaves the counted memory as it is.
#[test]
fn recording_allocates_nothing() {
    use mien::nn::conv2d::subgroup::Epilogue;
    let Some(gpu) = private_gpu() else { return };
    let gpu = &gpu;
    for (shape, c) in [([2, 16, 8, 8], cfg(16, 24, (3, 3), (1, 1), Padding::Same, true)), ([2, 3, 9, 8], cfg(3, 6, (3, 2), (2, 2), explicit(2, 0, 1, 3), true)), ([2, 3, 7, 8], cfg(3, 5, (3, 3), (1, 1), Padding::Same, false))] {
        let mut layers = variant_layers(gpu, shape, c);
        layers.push(Conv2d::new(gpu, "split", c, &shape).unwrap().with_weight_splits(gpu, 3).unwrap());
        let l0 = &layers[0];
        let (x, w, b, y) = (zeros(gpu, "x", &shape), zeros(gpu, "w", &l0.weight_shape()), zeros(gpu, "b", &[c.out_channels]), zeros(gpu, "y", &l0.output_shape));
        let (dx, dw, db) = (zeros(gpu, "dx", &shape), zeros(gpu, "dw", &l0.weight_shape()), zeros(gpu, "db", &[c.out_channels]));
        let bias = c.bias.then_some(&b);
        let before = (gpu.mem().buffers_created(), gpu.mem().live());
        for l in &layers {
            for _ in 0..3 {
                let mut d = l.forward_dispatches(gpu, &x, &w, bias, &y).unwrap();
                d.extend(l.backward_input_dispatches(gpu, &dx, &y, &w).unwrap());
                d.extend(l.backward_weight(gpu, &dw, &y, &x, true).unwrap());
                d.extend(l.forward_act_dispatches(gpu, &x, &w, &b, &y, Epilogue::LeakyRelu(0.1)).unwrap().unwrap_or_default());
                if c.bias {
                    d.push(l.backward_bias(gpu, &db, &y, false).unwrap());
                }
                assert!(!d.is_empty());
            }
            assert_eq!((gpu.mem().buffers_created(), gpu.mem().live()), before, "{shape:?} {}", l.describe_variants());
        }
    }
}

/// The repacked operands of the uniform-window kernels (STORAGE | UNIFORM buffers, at least
/// one 64 KiB window each) are counted in gpu.mem(), and freed with the layer.
#[test]
fn uniform_window_buffers_are_counted() {
    let Some(gpu) = private_gpu() else { return };
    let c = cfg(16, 24, (3, 3), (1, 1), Padding::Same, true);
    let live = gpu.mem().live();
    let l = Conv2d::new_with(&gpu, "counted", c, &[2, 16, 8, 8], ConvKernels::Fast).unwrap();
    assert_eq!(l.variants(), [ConvVariant::Uniform; 3]);
    assert!(gpu.mem().live() >= live + 3 * 65536, "{} -> {}", live, gpu.mem().live());
    drop(l);
    assert_eq!(gpu.mem().live(), live);
}
