use crate::common::{rand, read, up, zeros, ATOL, RTOL};
use crate::gpu;
use mien::gpu::Gpu;
use mien::nn::dense::{Dense, DenseKernels, DensePass, DenseVariant};
use mien::nn::dense::split::SplitDense;
use mien::reference::{assert_close, dense as r};
use mien::rng::Rng;

/// atol for an f32 sum of `len` products of values in [-1, 1): such a sum has magnitude
/// ~sqrt(len)/3 and its rounding error grows like sqrt(len) * eps * that, so atol is scaled
/// by sqrt(len / 64) past 64 terms (ATOL itself for shorter sums).
fn atol(len: usize) -> f64 {
    ATOL * (len as f64 / 64.0).sqrt().max(1.0)
}

/// The variants `layer` supports on `gpu`, coop aside (all but uniform need no particular
/// shape; on an adapter with subgroups of >= 8 lanes, as lavapipe, both subgroup variants
/// are in).
fn variants(gpu: &Gpu, layer: &Dense) -> Vec<DenseVariant> {
    // Coop has f16 operands: dense_coop.rs checks it with the tolerance for those.
    assert_eq!(layer.supports(gpu, DenseVariant::Coop), gpu.has_coop());
    let v: Vec<DenseVariant> = DenseVariant::ALL.into_iter().filter(|&v| v != DenseVariant::Coop && layer.supports(gpu, v)).collect();
    assert_eq!(v.contains(&DenseVariant::Uniform), layer.in_features.is_multiple_of(4));
    assert_eq!(v.contains(&DenseVariant::Subgroup), gpu.subgroup_min_size() >= Some(8));
    assert!(v.contains(&DenseVariant::Tiled) && v.contains(&DenseVariant::TiledSplit) && v.contains(&DenseVariant::Blocked));
    v
}

/// Run forward and every backward kernel of a layer on `input_shape` and compare with the
/// f64 reference.
fn check(gpu: &Gpu, rng: &mut Rng, input_shape: &[usize], outf: usize, bias: bool) {
    let n = input_shape[0];
    let inf: usize = input_shape[1..].iter().product();
    let what = format!("N={n} in={inf} out={outf} bias={bias} input {input_shape:?}");
    let layer = Dense::new_with(gpu, "fc", inf, outf, bias, input_shape, DenseKernels::Blocked).unwrap();
    assert_eq!(layer.weight_shape(), [outf, inf]);
    assert_eq!(layer.output_shape(), [n, outf]);
    let (x, x64) = rand(rng, n * inf);
    let (w, w64) = rand(rng, outf * inf);
    let (b, b64) = rand(rng, outf);
    let (dy, dy64) = rand(rng, n * outf);
    let tx = up(gpu, "x", input_shape, &x);
    let tw = up(gpu, "w", &[outf, inf], &w);
    let tb = up(gpu, "b", &[outf], &b);
    let tdy = up(gpu, "dy", &[n, outf], &dy);
    let ty = zeros(gpu, "y", &[n, outf]);
    let tdx = zeros(gpu, "dx", input_shape);
    // Garbage in the gradients: the non-accumulating kernels must overwrite it.
    let tdw = up(gpu, "dw", &[outf, inf], &vec![7.0; outf * inf]);
    let tdb = up(gpu, "db", &[outf], &vec![7.0; outf]);
    let mut steps = vec![
        layer.forward(gpu, &tx, &tw, bias.then_some(&tb), &ty).unwrap(),
        layer.backward_input(gpu, &tdx, &tdy, &tw).unwrap(),
        layer.backward_weight(gpu, &tdw, &tdy, &tx, false).unwrap(),
    ];
    if bias {
        steps.push(layer.backward_bias(gpu, &tdb, &tdy, false).unwrap());
    }
    gpu.run(&steps).unwrap();
    steps.clear();
    let want_y = r::forward(&x64, &w64, bias.then_some(&b64[..]), n, inf, outf);
    let want_dx = r::backward_input(&dy64, &w64, n, inf, outf);
    let want_dw = r::backward_weight(&dy64, &x64, n, inf, outf);
    // Every variant of the dispatch lists, forced, into garbage.
    for v in variants(gpu, &layer) {
        let what = format!("{what} variant {}", v.name());
        let lv = Dense::new_with(gpu, "fc", inf, outf, bias, input_shape, DenseKernels::Only(v)).unwrap();
        assert_eq!(lv.variants(), [v; 3]);
        let ty2 = up(gpu, "y2", &[n, outf], &vec![7.0; n * outf]);
        let tdx2 = up(gpu, "dx2", input_shape, &vec![7.0; n * inf]);
        let tdw2 = up(gpu, "dw2", &[outf, inf], &vec![7.0; outf * inf]);
        let mut steps = lv.forward_dispatches(gpu, &tx, &tw, bias.then_some(&tb), &ty2).unwrap();
        steps.extend(lv.backward_input_dispatches(gpu, &tdx2, &tdy, &tw).unwrap());
        steps.extend(lv.backward_weight_dispatches(gpu, &tdw2, &tdy, &tx, false).unwrap());
        gpu.run(&steps).unwrap();
        assert_close(&format!("dense forward (dispatch list) {what}"), &read(gpu, &ty2), &want_y, atol(inf), RTOL);
        assert_close(&format!("dense dx (dispatch list) {what}"), &read(gpu, &tdx2), &want_dx, atol(outf), RTOL);
        assert_close(&format!("dense dW (dispatch list) {what}"), &read(gpu, &tdw2), &want_dw, atol(n), RTOL);
    }
    assert_close(&format!("dense forward {what}"), &read(gpu, &ty), &want_y, atol(inf), RTOL);
    assert_close(&format!("dense dx {what}"), &read(gpu, &tdx), &want_dx, atol(outf), RTOL);
    assert_close(&format!("dense dW {what}"), &read(gpu, &tdw), &want_dw, atol(n), RTOL);
    if bias {
        assert_close(&format!("dense db {what}"), &read(gpu, &tdb), &r::backward_bias(&dy64, n, outf), atol(n), RTOL);
    }
}

#[test]
fn dense_matches_reference_on_awkward_shapes() {
    let gpu = gpu!();
    let mut rng = Rng::new(31);
    // (input shape, out, bias): all ones, batch 1, odd sizes that are not multiples of the
    // 4 x 4 block, exact multiples, 64+ features, a conv-style [N, C, H, W] input flattened
    // by view, thin outputs (1 feature, 1 input, 2 rows) that pick smaller blocks, and
    // more columns than one workgroup covers (64 invocations x 4 = 256) with a partial
    // last group.
    let cases: &[(&[usize], usize, bool)] = &[
        (&[1, 1], 1, true),
        (&[3, 37], 5, true),
        (&[1, 37], 5, false),
        (&[4, 8], 8, true),
        (&[5, 3, 7, 5], 65, true),
        (&[2, 130], 67, false),
        (&[1, 64, 3, 3], 7, true),
        (&[9, 65], 1, true),
        (&[7, 1], 66, true),
        (&[3, 300], 261, true),
        // Uniform-operand paths: more rows than one 64-row chunk and a reduction split
        // into chunks (forward 2 x 2 windows), a no-bias forward over several chunks.
        (&[67, 260], 90, true),
        (&[67, 260], 9, false),
        // 600-ish: odd in and out (scalar loads in the subgroup kernels), batch 1, the
        // seed-dnn's 600 -> 537 at batch 64 (dx, dW unaligned: O % 4 != 0).
        (&[9, 601], 599, true),
        (&[1, 600], 600, true),
        (&[64, 600], 537, true),
    ];
    for (shape, outf, bias) in cases {
        check(gpu, &mut rng, shape, *outf, *bias);
    }
}

/// The reports' nets have dense layers like 4608 -> 512: a long reduction in forward and
/// a wide dW with a small batch.
#[test]
fn dense_matches_reference_with_long_reductions() {
    let gpu = gpu!();
    let mut rng = Rng::new(32);
    check(gpu, &mut rng, &[8, 4608], 64, true);
    check(gpu, &mut rng, &[2, 2304], 150, true);
    // dW's reduction (the batch) over two 1024-sample chunks of its uniform windows.
    check(gpu, &mut rng, &[1100, 4], 16, true);
}

/// The depth-split tiled GEMM: the rule splits few-row long reductions (and not a wide
/// short one), and forced split counts (one, a last split shorter than the others, more
/// splits than the rule picks, one split per 16-deep slab) all equal the f64 reference, for
/// every pass, with ACCUMULATE on the reduce.
#[test]
fn dense_tiled_split_sums_its_partials() {
    let gpu = gpu!();
    let mut rng = Rng::new(34);
    let rule = Dense::new_with(gpu, "fc", 4608, 64, true, &[8, 4608], DenseKernels::Only(DenseVariant::TiledSplit)).unwrap();
    let s = rule.splits().expect("a tiled-split plan");
    assert!(s[0] > 1, "4608-deep forward over one 64 x 64 tile is split: {s:?}");
    assert_eq!(s[2], 1, "dW's depth is the batch (8): one split: {s:?}");
    // (N, in, out, bias, splits asked per pass (None: the rule), splits made): a request is
    // capped at one split per 16-deep slab and rounded to whole slabs (37 in 3: 16 16 5;
    // 67 in 5: 16 16 16 16 3; 70 in 4 -> 32 32 6: 3), the rule gives 601 ten 64-deep splits.
    type Case = (usize, usize, usize, bool, [Option<usize>; 3], [usize; 3]);
    let cases: &[Case] = &[
        (3, 37, 5, true, [Some(3), Some(1), Some(2)], [3, 1, 1]),
        (2, 130, 67, false, [Some(5), Some(5), Some(1)], [5, 5, 1]),
        (9, 601, 70, true, [None, Some(4), Some(7)], [10, 3, 1]),
        (67, 33, 9, true, [Some(1), None, Some(5)], [1, 1, 5]),
    ];
    for &(n, inf, outf, bias, want, made) in cases {
        let what = format!("N={n} in={inf} out={outf} bias={bias} splits {made:?}");
        let (x, x64) = rand(&mut rng, n * inf);
        let (w, w64) = rand(&mut rng, outf * inf);
        let (b, b64) = rand(&mut rng, outf);
        let (dy, dy64) = rand(&mut rng, n * outf);
        let (tx, tw, tb, tdy) = (up(gpu, "x", &[n, inf], &x), up(gpu, "w", &[outf, inf], &w), up(gpu, "b", &[outf], &b), up(gpu, "dy", &[n, outf], &dy));
        let ty = up(gpu, "y", &[n, outf], &vec![7.0; n * outf]);
        let tdx = up(gpu, "dx", &[n, inf], &vec![7.0; n * inf]);
        let tdw = up(gpu, "dw", &[outf, inf], &vec![7.0; outf * inf]);
        let plan = SplitDense::new(gpu, "fc", n, inf, outf, bias, want).unwrap();
        assert_eq!(plan.splits(), made, "{what}");
        let bias_t = if bias { &tb } else { &tw };
        let mut steps = plan.gemm(gpu, DensePass::Forward, &tx, &tw, bias_t, &ty, false).unwrap();
        steps.extend(plan.gemm(gpu, DensePass::BackwardInput, &tdy, &tw, &tw, &tdx, false).unwrap());
        // dW overwritten, then added once more: twice the gradient.
        steps.extend(plan.gemm(gpu, DensePass::BackwardWeight, &tdy, &tx, &tx, &tdw, false).unwrap());
        steps.extend(plan.gemm(gpu, DensePass::BackwardWeight, &tdy, &tx, &tx, &tdw, true).unwrap());
        gpu.run(&steps).unwrap();
        let want_y = r::forward(&x64, &w64, bias.then_some(&b64[..]), n, inf, outf);
        let want_dw: Vec<f64> = r::backward_weight(&dy64, &x64, n, inf, outf).iter().map(|v| 2.0 * v).collect();
        assert_close(&format!("split forward {what}"), &read(gpu, &ty), &want_y, atol(inf), RTOL);
        assert_close(&format!("split dx {what}"), &read(gpu, &tdx), &r::backward_input(&dy64, &w64, n, inf, outf), atol(outf), RTOL);
        assert_close(&format!("split dW x2 {what}"), &read(gpu, &tdw), &want_dw, 2.0 * atol(n), RTOL);
    }
}

#[test]
fn dense_weight_and_bias_gradients_accumulate() {
    let gpu = gpu!();
    let mut rng = Rng::new(33);
    let (n, inf, outf) = (3usize, 64usize, 64usize);
    let (x, x64) = rand(&mut rng, n * inf);
    let (dy, dy64) = rand(&mut rng, n * outf);
    let tx = up(gpu, "x", &[n, inf], &x);
    let tdy = up(gpu, "dy", &[n, outf], &dy);
    let want_w = r::backward_weight(&dy64, &x64, n, inf, outf);
    let want_b = r::backward_bias(&dy64, n, outf);

    // Once overwriting, then once accumulating: twice the gradient.
    let layer = Dense::new(gpu, "fc", inf, outf, true, &[n, inf]).unwrap();
    let tdw = up(gpu, "dw", &[outf, inf], &vec![5.0; outf * inf]);
    let tdb = up(gpu, "db", &[outf], &vec![5.0; outf]);
    let steps = [
        layer.backward_weight(gpu, &tdw, &tdy, &tx, false).unwrap(),
        layer.backward_bias(gpu, &tdb, &tdy, false).unwrap(),
        layer.backward_weight(gpu, &tdw, &tdy, &tx, true).unwrap(),
        layer.backward_bias(gpu, &tdb, &tdy, true).unwrap(),
    ];
    gpu.run(&steps).unwrap();
    let twice = |v: &[f64]| v.iter().map(|a| 2.0 * a).collect::<Vec<_>>();
    assert_close("dW overwrite + accumulate", &read(gpu, &tdw), &twice(&want_w), ATOL, RTOL);
    // The same with the dispatch lists of every variant.
    for v in variants(gpu, &layer) {
        let lv = Dense::new_with(gpu, "fc", inf, outf, true, &[n, inf], DenseKernels::Only(v)).unwrap();
        let tdw_u = up(gpu, "dw", &[outf, inf], &vec![5.0; outf * inf]);
        let mut steps = lv.backward_weight_dispatches(gpu, &tdw_u, &tdy, &tx, false).unwrap();
        steps.extend(lv.backward_weight_dispatches(gpu, &tdw_u, &tdy, &tx, true).unwrap());
        gpu.run(&steps).unwrap();
        assert_close(&format!("dW overwrite + accumulate ({})", v.name()), &read(gpu, &tdw_u), &twice(&want_w), ATOL, RTOL);
    }
    assert_close("db overwrite + accumulate", &read(gpu, &tdb), &twice(&want_b), ATOL, RTOL);

    // The batch as two chunks (every variant), samples [0, 1) and [1, 3), as views of the same buffers
    // (64 floats = 256 bytes per sample keeps the views aligned).
    for v in variants(gpu, &layer) {
        let tdw = zeros(gpu, "dw", &[outf, inf]);
        let tdb = zeros(gpu, "db", &[outf]);
        let mut steps = vec![];
        for (start, len, acc) in [(0usize, 1usize, false), (1, 2, true)] {
            let chunk = Dense::new_with(gpu, "fc chunk", inf, outf, true, &[len, inf], DenseKernels::Only(v)).unwrap();
            let xv = tx.view("x chunk", start * inf, &[len, inf]).unwrap();
            let dyv = tdy.view("dy chunk", start * outf, &[len, outf]).unwrap();
            steps.extend(chunk.backward_weight_dispatches(gpu, &tdw, &dyv, &xv, acc).unwrap());
            steps.push(chunk.backward_bias(gpu, &tdb, &dyv, acc).unwrap());
        }
        gpu.run(&steps).unwrap();
        assert_close(&format!("dW over two chunks ({})", v.name()), &read(gpu, &tdw), &want_w, ATOL, RTOL);
        assert_close("db over two chunks", &read(gpu, &tdb), &want_b, ATOL, RTOL);
    }
}

#[test]
fn dense_wrong_shapes_are_errors_naming_the_layer() {
    let gpu = gpu!();
    let e = err(Dense::new(gpu, "head.fc1", 100, 10, true, &[4, 3, 5, 5]));
    assert!(e.contains("head.fc1") && e.contains("75") && e.contains("100"), "{e}");
    let e = err(Dense::new(gpu, "head.fc1", 0, 10, true, &[4, 0]));
    assert!(e.contains("head.fc1"), "{e}");

    let layer = Dense::new(gpu, "head.fc2", 12, 5, true, &[2, 3, 2, 2]).unwrap();
    let x = zeros(gpu, "x", &[2, 12]); // a flattened view of the same 24 values is fine
    let w = zeros(gpu, "w", &[5, 12]);
    let b = zeros(gpu, "b", &[5]);
    let y = zeros(gpu, "y", &[2, 5]);
    layer.forward(gpu, &x, &w, Some(&b), &y).unwrap();
    let bad_x = zeros(gpu, "x", &[2, 13]);
    let e = err(layer.forward(gpu, &bad_x, &w, Some(&b), &y));
    assert!(e.contains("head.fc2") && e.contains("input") && e.contains("24"), "{e}");
    let wt = zeros(gpu, "w", &[12, 5]); // transposed
    let e = err(layer.forward(gpu, &x, &wt, Some(&b), &y));
    assert!(e.contains("head.fc2") && e.contains("[5, 12]"), "{e}");
    let e = err(layer.forward(gpu, &x, &w, None, &y));
    assert!(e.contains("head.fc2") && e.contains("bias"), "{e}");
    let e = err(layer.backward_weight(gpu, &wt, &y, &x, false));
    assert!(e.contains("head.fc2") && e.contains("weight gradient"), "{e}");
    let e = err(layer.backward_bias(gpu, &zeros(gpu, "db", &[4]), &y, false));
    assert!(e.contains("head.fc2") && e.contains("bias gradient"), "{e}");
    let e = err(layer.backward_input(gpu, &x, &zeros(gpu, "dy", &[2, 4]), &w));
    assert!(e.contains("head.fc2") && e.contains("output gradient"), "{e}");

    let nobias = Dense::new(gpu, "head.fc3", 12, 5, false, &[2, 12]).unwrap();
    let e = err(nobias.forward(gpu, &x, &w, Some(&b), &y));
    assert!(e.contains("head.fc3") && e.contains("without a bias"), "{e}");
    let e = err(nobias.backward_bias(gpu, &b, &y, false));
    assert!(e.contains("head.fc3") && e.contains("without a bias"), "{e}");
}

/// The error message of a call that must fail.
fn err<T>(r: mien::Result<T>) -> String {
    match r {
        Ok(_) => panic!("expected an error"),
        Err(e) => e.to_string(),
    }
}
