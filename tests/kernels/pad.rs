use crate::common::{rand, read, up, zeros, ATOL, RTOL};
use crate::gpu;
use mien::nn::pad::Pad2d;
use mien::reference::{assert_close, pad as r};
use mien::rng::Rng;

type Pads = (usize, usize, usize, usize);

/// Batch 1 and 2-3, odd spatial sizes, 1 / 3 / 64+ channels, counts that are not multiples
/// of the 256-wide workgroup, asymmetric and zero padding.
const CASES: &[([usize; 4], Pads)] = &[
    ([1, 1, 1, 1], (1, 1, 1, 1)),
    ([1, 3, 7, 5], (1, 2, 0, 3)),
    ([2, 64, 3, 3], (1, 1, 1, 1)),
    ([3, 65, 5, 7], (2, 0, 1, 0)),
    ([1, 1, 13, 11], (0, 0, 0, 0)),
    ([1, 3, 48, 48], (3, 3, 3, 3)),
];

#[test]
fn pad_matches_reference() {
    let gpu = gpu!();
    let mut rng = Rng::new(41);
    for &(shape, pads) in CASES {
        let layer = Pad2d::new(gpu, "pad", pads, &shape).unwrap();
        let out = layer.output_shape;
        assert_eq!(out, [shape[0], shape[1], shape[2] + pads.0 + pads.1, shape[3] + pads.2 + pads.3]);
        let (n_in, n_out) = (shape.iter().product::<usize>(), out.iter().product::<usize>());
        let (x, x64) = rand(&mut rng, n_in);
        let (dy, dy64) = rand(&mut rng, n_out);
        // Outputs start as garbage: both kernels must overwrite (the border included).
        let ty = up(gpu, "y", &out, &vec![7.0; n_out]);
        let tdx = up(gpu, "dx", &shape, &vec![7.0; n_in]);
        let (tx, tdy) = (up(gpu, "x", &shape, &x), up(gpu, "dy", &out, &dy));
        gpu.run(&[layer.forward(gpu, &tx, &ty).unwrap(), layer.backward(gpu, &tdx, &tdy).unwrap()]).unwrap();
        assert_close(&format!("pad forward {shape:?} {pads:?}"), &read(gpu, &ty), &r::pad_forward(&x64, shape, pads), ATOL, RTOL);
        assert_close(&format!("pad backward {shape:?} {pads:?}"), &read(gpu, &tdx), &r::pad_backward(&dy64, shape, pads), ATOL, RTOL);
    }
}

/// 4100 x 4100 = 16.8M outputs and 4096 x 4096 = 2^24 inputs both need more than 65535
/// workgroups of 256, so groups_1d lays both kernels out in 2-D. x[i] = i is exact in f32
/// (i < 2^24), so every element's position is checked exactly; the backward reads the
/// forward's output as dy and must give x back.
#[test]
fn pad_over_two_dimensional_grid() {
    let gpu = gpu!();
    let (h, w, p) = (4096usize, 4096usize, 2usize);
    let (oh, ow) = (h + 2 * p, w + 2 * p);
    let layer = Pad2d::new(gpu, "big pad", (p, p, p, p), &[1, 1, h, w]).unwrap();
    let x: Vec<f32> = (0..h * w).map(|i| i as f32).collect();
    let tx = up(gpu, "x", &[1, 1, h, w], &x);
    let ty = zeros(gpu, "y", &[1, 1, oh, ow]);
    let tdx = zeros(gpu, "dx", &[1, 1, h, w]);
    let fwd = layer.forward(gpu, &tx, &ty).unwrap();
    let bwd = layer.backward(gpu, &tdx, &ty).unwrap();
    let max = gpu.limits().max_compute_workgroups_per_dimension as usize;
    for (d, n) in [(&fwd, oh * ow), (&bwd, h * w)] {
        if n.div_ceil(256) > max {
            assert!(d.groups()[1] > 1, "{}: {n} invocations should use a 2-D grid, got {:?}", d.label, d.groups());
        }
    }
    gpu.run(&[fwd, bwd]).unwrap();
    let y = read(gpu, &ty);
    for r in 0..oh {
        for c in 0..ow {
            let want = if (p..p + h).contains(&r) && (p..p + w).contains(&c) { ((r - p) * w + (c - p)) as f32 } else { 0.0 };
            assert_eq!(y[r * ow + c], want, "big pad forward at ({r}, {c})");
        }
    }
    drop(y);
    assert!(read(gpu, &tdx) == x, "big pad backward: dx is not the cropped dy");
}

#[test]
fn wrong_shapes_are_errors_naming_the_layer() {
    let gpu = gpu!();
    let e = Pad2d::new(gpu, "zp1", (1, 1, 1, 1), &[3, 7, 7]).err().unwrap().to_string();
    assert!(e.contains("zp1") && e.contains("[N, C, H, W]"), "{e}");
    let layer = Pad2d::new(gpu, "zp1", (1, 0, 2, 0), &[1, 3, 7, 5]).unwrap();
    assert_eq!(layer.output_shape, [1, 3, 8, 7]);
    let x = zeros(gpu, "x", &[1, 3, 7, 5]);
    let y = zeros(gpu, "y", &[1, 3, 8, 7]);
    let bad = zeros(gpu, "bad", &[1, 3, 9, 9]);
    let e = layer.forward(gpu, &bad, &y).err().unwrap().to_string();
    assert!(e.contains("zp1") && e.contains("[1, 3, 7, 5]"), "{e}");
    let e = layer.forward(gpu, &x, &bad).err().unwrap().to_string();
    assert!(e.contains("zp1") && e.contains("[1, 3, 8, 7]"), "{e}");
    let e = layer.backward(gpu, &bad, &y).err().unwrap().to_string();
    assert!(e.contains("zp1") && e.contains("input gradient"), "{e}");
    let e = layer.backward(gpu, &x, &bad).err().unwrap().to_string();
    assert!(e.contains("zp1") && e.contains("output gradient"), "{e}");
}
