use crate::common::{rand, read, up, zeros, ATOL, RTOL};
use crate::gpu;
use mien::nn::conv2d::{subgroup, Conv2d, Conv2dConfig, ConvKernels};
use mien::nn::Padding;
use mien::reference::{assert_close, conv2d as r};
use mien::rng::Rng;

fn cfg(cin: usize, cout: usize, kernel: (usize, usize), stride: (usize, usize), padding: Padding, bias: bool) -> Conv2dConfig {
    Conv2dConfig { in_channels: cin, out_channels: cout, kernel, stride, padding, bias }
}

const fn explicit(top: usize, bottom: usize, left: usize, right: usize) -> Padding {
    Padding::Explicit { top, bottom, left, right }
}

/// Run forward and every backward kernel of `cfg` on `x_shape` once with the default
/// weight-gradient split and once with `splits` forced, and compare with the reference;
/// the dispatch-list passes with the uniform-window / fast kernels (`ConvKernels::Fast`) and,
/// where they apply, the subgroup kernels.
fn check(x_shape: [usize; 4], cfg: Conv2dConfig, splits: usize, seed: u64) {
    let gpu = gpu!();
    let mut rng = Rng::new(seed);
    let layer = Conv2d::new(gpu, "conv", cfg, &x_shape).unwrap().with_kernels(gpu, ConvKernels::Fast).unwrap();
    let split_layer = Conv2d::new(gpu, "conv split", cfg, &x_shape).unwrap().with_weight_splits(gpu, splits).unwrap();
    let g = layer.geom();
    let what = format!("{x_shape:?} {cfg:?} (splits {} / {}, fast {:?})", layer.weight_splits(), split_layer.weight_splits(), layer.fast_paths());
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
    // The dispatch-list passes (uniform-buffer weights where the layer has that plan).
    let ty2 = zeros(gpu, "y (dispatch list)", &layer.output_shape);
    let tdx2 = zeros(gpu, "dx (dispatch list)", &x_shape);
    let tdw = zeros(gpu, "dw", &layer.weight_shape());
    let tdw2 = zeros(gpu, "dw split", &layer.weight_shape());
    let tdb = zeros(gpu, "db", &[g.cout]);
    let bias = cfg.bias.then_some(&tb);
    let mut steps = vec![layer.forward(gpu, &tx, &tw, bias, &ty).unwrap(), layer.backward_input(gpu, &tdx, &tdy, &tw).unwrap()];
    steps.extend(layer.forward_dispatches(gpu, &tx, &tw, bias, &ty2).unwrap());
    steps.extend(layer.backward_input_dispatches(gpu, &tdx2, &tdy, &tw).unwrap());
    steps.extend(layer.backward_weight(gpu, &tdw, &tdy, &tx, false).unwrap());
    steps.extend(split_layer.backward_weight(gpu, &tdw2, &tdy, &tx, false).unwrap());
    if cfg.bias {
        steps.push(layer.backward_bias(gpu, &tdb, &tdy, false).unwrap());
    }
    let sg = Conv2d::new(gpu, "conv subgroup", cfg, &x_shape).unwrap();
    let sg = sg.uses_subgroups().then_some(sg);
    let (ty3, tdx3, tdw3) = (zeros(gpu, "y (subgroup)", &layer.output_shape), zeros(gpu, "dx (subgroup)", &x_shape), zeros(gpu, "dw (subgroup)", &layer.weight_shape()));
    if let Some(l) = &sg {
        steps.extend(l.forward_dispatches(gpu, &tx, &tw, bias, &ty3).unwrap());
        steps.extend(l.backward_input_dispatches(gpu, &tdx3, &tdy, &tw).unwrap());
        steps.extend(l.backward_weight(gpu, &tdw3, &tdy, &tx, false).unwrap());
    }
    // The tiled kernels through the layer's dispatch methods (their own tests cover tiles).
    let tl = Conv2d::new(gpu, "conv tiled", cfg, &x_shape).unwrap().with_kernels(gpu, ConvKernels::Tiled).unwrap();
    assert!(tl.uses_tiles());
    let (ty4, tdx4, tdw4) = (zeros(gpu, "y (tiled)", &layer.output_shape), zeros(gpu, "dx (tiled)", &x_shape), zeros(gpu, "dw (tiled)", &layer.weight_shape()));
    steps.extend(tl.forward_dispatches(gpu, &tx, &tw, bias, &ty4).unwrap());
    steps.extend(tl.backward_input_dispatches(gpu, &tdx4, &tdy, &tw).unwrap());
    steps.extend(tl.backward_weight(gpu, &tdw4, &tdy, &tx, false).unwrap());
    gpu.run(&steps).unwrap();

    let want_y = r::forward(&g, &x64, &w64, cfg.bias.then_some(&b64[..]));
    let (want_dx, want_dw, want_db) = r::backward(&g, &dy64, &x64, &w64);
    assert_close(&format!("forward {what}"), &read(gpu, &ty), &want_y, ATOL, RTOL);
    assert_close(&format!("backward_input {what}"), &read(gpu, &tdx), &want_dx, ATOL, RTOL);
    assert_close(&format!("forward (dispatch list) {what}"), &read(gpu, &ty2), &want_y, ATOL, RTOL);
    assert_close(&format!("backward_input (dispatch list) {what}"), &read(gpu, &tdx2), &want_dx, ATOL, RTOL);
    assert_close(&format!("backward_weight {what}"), &read(gpu, &tdw), &want_dw, ATOL, RTOL);
    assert_close(&format!("backward_weight split {what}"), &read(gpu, &tdw2), &want_dw, ATOL, RTOL);
    if cfg.bias {
        assert_close(&format!("backward_bias {what}"), &read(gpu, &tdb), &want_db, ATOL, RTOL);
    }
    assert_close(&format!("forward (tiled) {what}"), &read(gpu, &ty4), &want_y, ATOL, RTOL);
    assert_close(&format!("backward_input (tiled) {what}"), &read(gpu, &tdx4), &want_dx, ATOL, RTOL);
    assert_close(&format!("backward_weight (tiled) {what}"), &read(gpu, &tdw4), &want_dw, ATOL, RTOL);
    if sg.is_some() {
        assert_close(&format!("forward (subgroup) {what}"), &read(gpu, &ty3), &want_y, ATOL, RTOL);
        assert_close(&format!("backward_input (subgroup) {what}"), &read(gpu, &tdx3), &want_dx, ATOL, RTOL);
        assert_close(&format!("backward_weight (subgroup) {what}"), &read(gpu, &tdw3), &want_dw, ATOL, RTOL);
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
/// (17 -> 130: two forward chunks, three backward_input chunks), and the same shapes with the general kernels.
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
        assert_eq!(l.fast_paths(), (true, true, true), "{shape:?} {c:?}");
        check(*shape, *c, 3, 40 + i as u64);
    }
    // Valid padding: forward and weight gradient fast (output inside the input row), dx
    // general (dy rows narrower than dx).
    let c = cfg(4, 8, (3, 3), (1, 1), Padding::Valid, true);
    assert!(Conv2d::new(gpu, "fast", c, &[2, 4, 6, 8]).unwrap().fast_paths().0);
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
    assert_eq!((direct.fast_paths().2, split.fast_paths().2, split.weight_splits()), (true, true, 4));
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
    let e = layer.forward(gpu, &bad_x, &w, Some(&b), &y).err().unwrap().to_string();
    assert!(e.contains("block2.conv") && e.contains("[2, 3, 8, 8]"), "{e}");
    let bad_w = zeros(gpu, "w", &[4, 3, 3, 2]);
    let e = layer.forward(gpu, &x, &bad_w, Some(&b), &y).err().unwrap().to_string();
    assert!(e.contains("block2.conv") && e.contains("[4, 3, 3, 3]"), "{e}");
    let e = layer.forward(gpu, &x, &w, None, &y).err().unwrap().to_string();
    assert!(e.contains("block2.conv") && e.contains("bias"), "{e}");
    let bad_y = zeros(gpu, "y", &[2, 4, 8, 7]);
    let e = layer.forward(gpu, &x, &w, Some(&b), &bad_y).err().unwrap().to_string();
    assert!(e.contains("block2.conv") && e.contains("output"), "{e}");
    let e = layer.backward_input(gpu, &bad_x, &y, &w).err().unwrap().to_string();
    assert!(e.contains("block2.conv") && e.contains("input gradient"), "{e}");
    let e = layer.backward_weight(gpu, &bad_w, &y, &x, false).err().unwrap().to_string();
    assert!(e.contains("block2.conv") && e.contains("weight gradient"), "{e}");
    let e = layer.backward_bias(gpu, &zeros(gpu, "db", &[3]), &y, false).err().unwrap().to_string();
    assert!(e.contains("block2.conv") && e.contains("bias gradient"), "{e}");

    let no_bias = Conv2d::new(gpu, "block3.conv", Conv2dConfig { bias: false, ..ok }, &[2, 3, 8, 8]).unwrap();
    let e = no_bias.forward(gpu, &x, &w, Some(&b), &y).err().unwrap().to_string();
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
    let fwd = layer.forward(gpu, &tx, &tw, Some(&tb), &ty).unwrap();
    assert!(fwd.groups()[2] > 1, "expected the grid to spill into z, got {:?}", fwd.groups());
    gpu.run([&fwd]).unwrap();
    let want_y = r::forward(&g, &x64, &mien::reference::f64s(&w), Some(&[-0.25]));
    assert_close("huge forward", &read(gpu, &ty), &want_y, ATOL, RTOL);
}

/// The weight gradient with dy in uniform windows (3x3 stride 1, 8+ input channels):
/// left padding 0 / 1 / 2, input channels below one 64-lane workgroup and not a multiple
/// of 8, output channels not a multiple of 4, two channel groups (8 -> 128, 12 -> 201),
/// two row windows per sample (the check's split layer uses the storage-only kernels);
/// then ACCUMULATE
/// (overwrite once, add once: twice the gradient).
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
        let l = Conv2d::new(gpu, "fast", *c, shape).unwrap();
        assert!(l.uniform_weight_gradient(), "{shape:?} {c:?}");
        check(*shape, *c, 2, 70 + i as u64);
    }
    let mut rng = Rng::new(80);
    let (shape, c) = cases[2];
    let layer = Conv2d::new(gpu, "acc", c, &shape).unwrap();
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
            assert!(l.uses_subgroups(), "{shape:?} {c:?}: {:?}", subgroup::unsupported(gpu, &l));
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
}
