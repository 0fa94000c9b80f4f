use crate::common::{rand, read, up, zeros, ATOL, RTOL};
use crate::gpu;
use mien::gpu::Gpu;
use mien::nn::pool::{Pool2d, PoolConfig, PoolKind};
use mien::nn::Padding;
use mien::reference::pool::{self as r, PoolGeom};
use mien::reference::{assert_close, f64s};
use mien::rng::Rng;

type Case = ([usize; 4], (usize, usize), (usize, usize), Padding);

/// Batch 1 and 2-3, odd spatial sizes, 1 / 3 / 64+ channels, element counts that are not
/// multiples of the 256-wide workgroup; windows 2x2/2 (7 -> 3 Valid, 7 -> 4 Same), 3x3/2,
/// overlapping 3x3/1, non-square windows and strides, explicit padding, a window covering
/// the whole input (global average pooling).
const CASES: &[Case] = &[
    ([1, 1, 7, 7], (2, 2), (2, 2), Padding::Valid),
    ([1, 1, 7, 7], (2, 2), (2, 2), Padding::Same),
    ([1, 3, 7, 5], (3, 3), (2, 2), Padding::Same),
    ([1, 3, 7, 5], (3, 3), (2, 2), Padding::Valid),
    ([1, 3, 7, 5], (3, 3), (1, 1), Padding::Same),
    ([2, 3, 7, 5], (3, 3), (1, 1), Padding::Valid),
    ([2, 64, 5, 3], (2, 2), (2, 2), Padding::Same),
    ([1, 65, 3, 3], (3, 3), (1, 1), Padding::Same),
    ([1, 3, 9, 6], (3, 2), (2, 1), Padding::Same),
    ([1, 3, 6, 9], (2, 3), (1, 2), Padding::Explicit { top: 1, bottom: 0, left: 2, right: 1 }),
    ([3, 5, 13, 11], (2, 2), (2, 2), Padding::Valid),
    ([2, 64, 6, 6], (6, 6), (1, 1), Padding::Valid),
    // 2x2 stride 2 over even sizes: the max_pool2 kernels (batch 1 with one window; 'same'
    // equal to 'valid'; 65 channels and 650 windows, not a multiple of the workgroup).
    ([1, 1, 2, 2], (2, 2), (2, 2), Padding::Valid),
    ([2, 3, 6, 8], (2, 2), (2, 2), Padding::Same),
    ([1, 65, 4, 10], (2, 2), (2, 2), Padding::Valid),
];

fn cfg(kind: PoolKind, case: &Case) -> PoolConfig {
    PoolConfig { kind, window: case.1, stride: case.2, padding: case.3 }
}

/// Distinct values (a shuffled ramp, 1e-3 apart, exact in f32): every max is unambiguous.
fn distinct(rng: &mut Rng, n: usize) -> Vec<f32> {
    let mut v: Vec<f32> = (0..n).map(|i| (i as f32 - n as f32 / 2.0) * 1e-3).collect();
    rng.shuffle(&mut v);
    v
}

/// Runs forward and backward of one case on the GPU; dx starts as garbage to check that
/// the backward overwrites. Returns (y, argmax for Max, dx).
fn run(gpu: &Gpu, kind: PoolKind, case: &Case, x: &[f32], dy: &[f32]) -> (Vec<f32>, Option<Vec<u32>>, Vec<f32>) {
    let layer = Pool2d::new(gpu, "pool", cfg(kind, case), &case.0).unwrap();
    let out = layer.output_shape;
    let tx = up(gpu, "x", &case.0, x);
    let ty = zeros(gpu, "y", &out);
    let targ = zeros(gpu, "argmax", &out);
    let tdy = up(gpu, "dy", &out, dy);
    let tdx = up(gpu, "dx", &case.0, &vec![7.0f32; x.len()]);
    let a = (kind == PoolKind::Max).then_some(&targ);
    let steps = [layer.forward(gpu, &tx, &ty, a).unwrap(), layer.backward(gpu, &tdx, &tdy, a).unwrap()];
    gpu.run(&steps).unwrap();
    let arg = a.map(|t| gpu.read_u32(t).unwrap());
    (read(gpu, &ty), arg, read(gpu, &tdx))
}

#[test]
fn output_shapes_match_keras() {
    let gpu = gpu!();
    for (pad, want) in [(Padding::Valid, 3), (Padding::Same, 4)] {
        let c = PoolConfig { kind: PoolKind::Max, window: (2, 2), stride: (2, 2), padding: pad };
        assert_eq!(Pool2d::new(gpu, "p", c, &[1, 8, 7, 7]).unwrap().output_shape, [1, 8, want, want]);
    }
    let c = PoolConfig { kind: PoolKind::Avg, window: (48, 48), stride: (1, 1), padding: Padding::Valid };
    assert_eq!(Pool2d::new(gpu, "gap", c, &[4, 256, 48, 48]).unwrap().output_shape, [4, 256, 1, 1]);
}

#[test]
fn max_pool_matches_reference() {
    let gpu = gpu!();
    let mut rng = Rng::new(31);
    for case in CASES {
        let g = PoolGeom::new(case.0, case.1, case.2, case.3);
        let x = distinct(&mut rng, g.input_len());
        let (dy, dy64) = rand(&mut rng, g.output_len());
        let (want_y, want_arg) = r::max_pool_forward(&f64s(&x), &g);
        let want_dx = r::max_pool_backward(&dy64, &want_arg, &g);
        let (y, arg, dx) = run(gpu, PoolKind::Max, case, &x, &dy);
        assert_eq!(arg.unwrap(), want_arg, "max pool argmax {case:?}");
        assert_close(&format!("max pool forward {case:?}"), &y, &want_y, ATOL, RTOL);
        assert_close(&format!("max pool backward {case:?}"), &dx, &want_dx, ATOL, RTOL);
    }
}

/// Values from a set of five, so windows hold ties: the GPU must pick the same (first in
/// scan order) winner as the reference. All-negative, so a padded zero would win if padding
/// took part.
#[test]
fn max_pool_ties_match_reference() {
    let gpu = gpu!();
    let mut rng = Rng::new(32);
    for case in CASES {
        let g = PoolGeom::new(case.0, case.1, case.2, case.3);
        let x: Vec<f32> = (0..g.input_len()).map(|_| -1.0 - rng.below(5) as f32 * 0.25).collect();
        let (dy, dy64) = rand(&mut rng, g.output_len());
        let (want_y, want_arg) = r::max_pool_forward(&f64s(&x), &g);
        let want_dx = r::max_pool_backward(&dy64, &want_arg, &g);
        let (y, arg, dx) = run(gpu, PoolKind::Max, case, &x, &dy);
        assert_eq!(arg.unwrap(), want_arg, "max pool argmax with ties {case:?}");
        assert_close(&format!("max pool forward with ties {case:?}"), &y, &want_y, ATOL, RTOL);
        assert_close(&format!("max pool backward with ties {case:?}"), &dx, &want_dx, ATOL, RTOL);
    }
}

#[test]
fn avg_pool_matches_reference() {
    let gpu = gpu!();
    let mut rng = Rng::new(33);
    for case in CASES {
        let g = PoolGeom::new(case.0, case.1, case.2, case.3);
        let (x, x64) = rand(&mut rng, g.input_len());
        let (dy, dy64) = rand(&mut rng, g.output_len());
        let (y, arg, dx) = run(gpu, PoolKind::Avg, case, &x, &dy);
        assert!(arg.is_none());
        assert_close(&format!("avg pool forward {case:?}"), &y, &r::avg_pool_forward(&x64, &g), ATOL, RTOL);
        assert_close(&format!("avg pool backward {case:?}"), &dx, &r::avg_pool_backward(&dy64, &g), ATOL, RTOL);
    }
}

#[test]
fn bad_configs_and_shapes_are_errors_naming_the_layer() {
    let gpu = gpu!();
    let max = |window, stride, padding| PoolConfig { kind: PoolKind::Max, window, stride, padding };
    let err = |c: PoolConfig, shape: &[usize]| Pool2d::new(gpu, "block2.pool", c, shape).err().expect("should fail").to_string();
    for (c, shape, what) in [
        (max((2, 2), (0, 2), Padding::Valid), &[1, 3, 7, 7][..], "stride"),
        (max((0, 2), (2, 2), Padding::Valid), &[1, 3, 7, 7][..], "window"),
        (max((9, 2), (1, 1), Padding::Valid), &[1, 3, 7, 7][..], "larger"),
        (max((2, 2), (2, 2), Padding::Explicit { top: 2, bottom: 0, left: 0, right: 0 }), &[1, 3, 7, 7][..], "no input element"),
        (max((3, 3), (1, 1), Padding::Explicit { top: 0, bottom: 0, left: 0, right: 3 }), &[1, 3, 7, 7][..], "no input element"),
        (max((2, 2), (2, 2), Padding::Valid), &[3, 7, 7][..], "[N, C, H, W]"),
    ] {
        let e = err(c, shape);
        assert!(e.contains("block2.pool") && e.contains(what), "{e}");
    }

    let layer = Pool2d::new(gpu, "block2.pool", max((2, 2), (2, 2), Padding::Same), &[1, 3, 7, 5]).unwrap();
    let x = zeros(gpu, "x", &[1, 3, 7, 5]);
    let y = zeros(gpu, "y", &[1, 3, 4, 3]);
    let arg = zeros(gpu, "argmax", &[1, 3, 4, 3]);
    let bad = zeros(gpu, "bad", &[1, 3, 5, 7]);
    let small = zeros(gpu, "small", &[1, 3, 3, 3]);
    let e = layer.forward(gpu, &bad, &y, Some(&arg)).err().unwrap().to_string();
    assert!(e.contains("block2.pool") && e.contains("[1, 3, 7, 5]"), "{e}");
    let e = layer.forward(gpu, &x, &small, Some(&arg)).err().unwrap().to_string();
    assert!(e.contains("block2.pool") && e.contains("output"), "{e}");
    let e = layer.forward(gpu, &x, &y, None).err().unwrap().to_string();
    assert!(e.contains("block2.pool") && e.contains("argmax"), "{e}");
    let e = layer.backward(gpu, &x, &y, Some(&small)).err().unwrap().to_string();
    assert!(e.contains("block2.pool") && e.contains("argmax"), "{e}");
    let e = layer.backward(gpu, &small, &y, Some(&arg)).err().unwrap().to_string();
    assert!(e.contains("block2.pool") && e.contains("input gradient"), "{e}");

    let avg = Pool2d::new(gpu, "gap", PoolConfig { kind: PoolKind::Avg, ..layer.cfg }, &[1, 3, 7, 5]).unwrap();
    let e = avg.forward(gpu, &x, &y, Some(&arg)).err().unwrap().to_string();
    assert!(e.contains("gap") && e.contains("argmax"), "{e}");
}
