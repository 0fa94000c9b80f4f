use crate::common::{rand, read, up, zeros, ATOL, RTOL};
use crate::gpu;
use mien::nn::dropout::Dropout;
use mien::reference::{assert_close, dropout as r};
use mien::rng::Rng;

/// Shapes: batch 1, odd spatial, 1 / 3 / 64+ channels, dense-style [N, F], element counts
/// that are not multiples of the 256-wide workgroup.
const SHAPES: &[&[usize]] = &[&[1, 1, 1, 1], &[1, 3, 7, 5], &[2, 64, 3, 3], &[3, 65, 5, 7], &[5, 17], &[4, 1, 13, 11]];

/// Inputs bounded away from 0, so y != 0 exactly where the mask keeps.
fn nonzero(rng: &mut Rng, n: usize) -> (Vec<f32>, Vec<f64>) {
    let (mut x, _) = rand(rng, n);
    for v in &mut x {
        *v += if *v >= 0.0 { 0.1 } else { -0.1 };
    }
    let x64 = mien::reference::f64s(&x);
    (x, x64)
}

/// The kept positions of a GPU output (nonzero where kept: inputs are nonzero).
fn kept(v: &[f32]) -> Vec<bool> {
    v.iter().map(|&a| a != 0.0).collect()
}

#[test]
fn forward_and_backward_match_reference_bit_exact_mask() {
    let gpu = gpu!();
    let mut rng = Rng::new(11);
    for shape in SHAPES {
        let n: usize = shape.iter().product();
        for (rate, seed) in [(0.0f32, 3u32), (0.3, 12345), (0.5, 0xDEAD_BEEF)] {
            let layer = Dropout::new(gpu, "drop", rate, shape).unwrap();
            layer.set_seed(gpu, seed);
            let (x, x64) = nonzero(&mut rng, n);
            let (dy, dy64) = nonzero(&mut rng, n);
            let (tx, tdy) = (up(gpu, "x", shape, &x), up(gpu, "dy", shape, &dy));
            let (ty, tdx) = (zeros(gpu, "y", shape), zeros(gpu, "dx", shape));
            let steps = [layer.forward(gpu, &tx, &ty, true).unwrap(), layer.backward(gpu, &tdx, &tdy).unwrap()];
            gpu.run(&steps).unwrap();
            let (y, dx) = (read(gpu, &ty), read(gpu, &tdx));
            let what = format!("{shape:?} rate {rate} seed {seed}");
            let mask = r::mask(seed, n, rate);
            assert_eq!(kept(&y), mask, "forward mask {what}");
            assert_eq!(kept(&dx), mask, "backward mask {what}");
            assert_close(&format!("forward {what}"), &y, &r::dropout_forward(&x64, seed, rate), ATOL, RTOL);
            assert_close(&format!("backward {what}"), &dx, &r::dropout_backward(&dy64, seed, rate), ATOL, RTOL);
        }
    }
}

#[test]
fn set_seed_changes_the_mask_of_the_same_dispatch() {
    let gpu = gpu!();
    // ~1e5 elements: [8, 64, 14, 14] = 100352.
    let shape = [8usize, 64, 14, 14];
    let n: usize = shape.iter().product();
    let tx = up(gpu, "ones", &shape, &vec![1.0f32; n]);
    let ty = zeros(gpu, "y", &shape);
    for rate in [0.1f32, 0.5, 0.8] {
        let layer = Dropout::new(gpu, "drop", rate, &shape).unwrap();
        let fwd = layer.forward(gpu, &tx, &ty, true).unwrap();
        let mut masks = vec![];
        for seed in [1u32, 2, 1] {
            layer.set_seed(gpu, seed);
            gpu.run([&fwd]).unwrap();
            let m = kept(&read(gpu, &ty));
            assert_eq!(m, r::mask(seed, n, rate), "rate {rate} seed {seed}");
            let frac = m.iter().filter(|&&k| k).count() as f64 / n as f64;
            let want = 1.0 - rate as f64;
            assert!((frac - want).abs() < 0.01 * want, "rate {rate} seed {seed}: kept {frac}, want {want} within 1%");
            masks.push(m);
        }
        // Different seeds: about 2 p (1 - p) of the elements differ. Same seed: same mask.
        let differ = masks[0].iter().zip(&masks[1]).filter(|(a, b)| a != b).count() as f64 / n as f64;
        let p = rate as f64;
        assert!((differ - 2.0 * p * (1.0 - p)).abs() < 0.01, "rate {rate}: seeds 1 and 2 differ on {differ}");
        assert_eq!(masks[0], masks[2], "rate {rate}: seed 1 twice");
    }
}

#[test]
fn inference_is_a_copy() {
    let gpu = gpu!();
    let mut rng = Rng::new(12);
    let shape = [3usize, 5, 7, 3];
    let n: usize = shape.iter().product();
    let (x, _) = rand(&mut rng, n);
    let (tx, ty) = (up(gpu, "x", &shape, &x), zeros(gpu, "y", &shape));
    let layer = Dropout::new(gpu, "drop", 0.5, &shape).unwrap();
    layer.set_seed(gpu, 77);
    gpu.run([&layer.forward(gpu, &tx, &ty, false).unwrap()]).unwrap();
    assert_eq!(read(gpu, &ty), x);
}

#[test]
fn bad_rates_and_shapes_are_errors_naming_the_layer() {
    let gpu = gpu!();
    for rate in [1.0f32, 1.5, -0.1, f32::NAN] {
        let e = Dropout::new(gpu, "head.drop", rate, &[2, 8]).err().unwrap().to_string();
        assert!(e.contains("head.drop") && e.contains("[0, 1)"), "{e}");
    }
    let e = Dropout::new(gpu, "head.drop", 0.5, &[2, 0]).err().unwrap().to_string();
    assert!(e.contains("head.drop"), "{e}");
    let layer = Dropout::new(gpu, "head.drop", 0.5, &[2, 8]).unwrap();
    let (x, y, bad) = (zeros(gpu, "x", &[2, 8]), zeros(gpu, "y", &[2, 8]), zeros(gpu, "bad", &[2, 9]));
    let e = layer.forward(gpu, &bad, &y, true).err().unwrap().to_string();
    assert!(e.contains("head.drop") && e.contains("[2, 8]"), "{e}");
    let e = layer.forward(gpu, &x, &bad, false).err().unwrap().to_string();
    assert!(e.contains("head.drop") && e.contains("output"), "{e}");
    let e = layer.backward(gpu, &x, &bad).err().unwrap().to_string();
    assert!(e.contains("head.drop") && e.contains("output gradient"), "{e}");
    let e = layer.forward(gpu, &x, &x, true).err().unwrap().to_string();
    assert!(e.contains("head.drop") && e.contains("in place"), "{e}");
}

/// More than 65535 * 256 elements: groups_1d lays the dispatch out in 2-D, and the mask
/// (a function of the flat index) must still match the reference everywhere. ~68 MB per
/// tensor; the one large test of the dropout / optim families.
#[test]
fn two_dimensional_grid_matches_reference_mask() {
    let gpu = gpu!();
    let n = 65535 * 256 + 1000;
    let shape = [1usize, n];
    let (rate, seed) = (0.25f32, 2024u32);
    let layer = Dropout::new(gpu, "big.drop", rate, &shape).unwrap();
    layer.set_seed(gpu, seed);
    let tx = up(gpu, "ones", &shape, &vec![1.0f32; n]);
    let ty = zeros(gpu, "y", &shape);
    let fwd = layer.forward(gpu, &tx, &ty, true).unwrap();
    if gpu.limits().max_compute_workgroups_per_dimension <= 65535 {
        assert!(fwd.groups()[1] > 1, "expected a 2-D grid, got {:?}", fwd.groups());
    }
    gpu.run([&fwd]).unwrap();
    let y = read(gpu, &ty);
    let scale = (1.0 / (1.0 - rate as f64)) as f32;
    let bad = (0..n).find(|&i| y[i] != if r::keep(seed, i as u32, rate) { scale } else { 0.0 });
    assert!(bad.is_none(), "element {} of {n}: got {}", bad.unwrap(), y[bad.unwrap()]);
}
