use crate::common::{rand, read, up, zeros, ATOL, RTOL};
use crate::gpu;
use mien::nn::augment::{Augment, AugmentConfig, Fill, DRAWS};
use mien::reference::{assert_close, augment as r, f64s};
use mien::rng::Rng;

/// Batch 1, C = 1 and 3, odd sizes (7x5), 48x48, element counts not multiples of 256.
const SHAPES: &[[usize; 4]] = &[[1, 1, 7, 5], [1, 3, 7, 5], [2, 3, 48, 48], [5, 1, 13, 11], [3, 2, 1, 9], [1, 1, 1, 1]];

fn strong(fill: Fill) -> AugmentConfig {
    AugmentConfig { rotation_deg: 180.0, width_shift: 0.3, height_shift: 0.25, zoom: 0.5, horizontal_flip: true, fill }
}

fn configs() -> Vec<AugmentConfig> {
    vec![
        AugmentConfig::reports(),
        AugmentConfig { fill: Fill::Constant, ..AugmentConfig::reports() },
        strong(Fill::Nearest),
        strong(Fill::Constant),
        AugmentConfig { horizontal_flip: true, ..AugmentConfig::none() },
        AugmentConfig { zoom: 0.2, ..AugmentConfig::none() },
    ]
}

fn gpu_draws(gpu: &mien::Gpu, op: &Augment) -> Vec<f32> {
    let t = zeros(gpu, "draws", &[op.shape[0], DRAWS]);
    gpu.run([&op.draws(gpu, &t).unwrap()]).unwrap();
    read(gpu, &t)
}

#[test]
fn gpu_draws_equal_reference_bit_for_bit() {
    let gpu = gpu!();
    for cfg in configs() {
        for (batch, seed) in [(1usize, 0u32), (7, 12345), (300, 0xDEAD_BEEF)] {
            let op = Augment::new(gpu, "aug", cfg, &[batch, 1, 3, 3]).unwrap();
            op.set_seed(gpu, seed);
            let got = gpu_draws(gpu, &op);
            for n in 0..batch {
                let want = r::draws(&cfg, seed, n as u32);
                let g = &got[n * DRAWS..(n + 1) * DRAWS];
                assert_eq!(
                    g.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
                    want.map(f32::to_bits),
                    "{cfg:?} seed {seed} sample {n}: {g:?} vs {want:?}"
                );
            }
        }
    }
}

#[test]
fn forward_matches_reference() {
    let gpu = gpu!();
    let mut rng = Rng::new(21);
    for shape in SHAPES {
        let n: usize = shape.iter().product();
        let (x, x64) = rand(&mut rng, n);
        let (tx, ty) = (up(gpu, "x", shape, &x), zeros(gpu, "y", shape));
        for cfg in configs() {
            let op = Augment::new(gpu, "aug", cfg, shape).unwrap();
            let fwd = op.forward(gpu, &tx, &ty).unwrap();
            for seed in [3u32, 0x8000_0001] {
                op.set_seed(gpu, seed);
                gpu.run([&fwd]).unwrap();
                // Bilinear weights and coordinates in f32 (and the device's sin / cos) vs
                // f64: the output is continuous in the coordinates, so a ~1e-5 pixel
                // coordinate error moves it by ~1e-5 with inputs in [-1, 1].
                assert_close(&format!("{shape:?} {cfg:?} seed {seed}"), &read(gpu, &ty), &r::forward(&cfg, seed, &x64, *shape), ATOL, RTOL);
            }
        }
    }
}

#[test]
fn identity_config_copies_exactly() {
    let gpu = gpu!();
    let mut rng = Rng::new(22);
    for shape in [[1usize, 1, 7, 5], [3, 3, 48, 48]] {
        let n: usize = shape.iter().product();
        let (x, _) = rand(&mut rng, n);
        let (tx, ty) = (up(gpu, "x", &shape, &x), zeros(gpu, "y", &shape));
        for fill in [Fill::Nearest, Fill::Constant] {
            let cfg = AugmentConfig { fill, ..AugmentConfig::none() };
            let op = Augment::new(gpu, "aug", cfg, &shape).unwrap();
            op.set_seed(gpu, 99);
            gpu.run([&op.forward(gpu, &tx, &ty).unwrap()]).unwrap();
            assert_eq!(read(gpu, &ty), x, "{shape:?} {fill:?}");
        }
    }
}

#[test]
fn channels_of_a_sample_share_the_transform() {
    let gpu = gpu!();
    let mut rng = Rng::new(23);
    let shape = [4usize, 3, 11, 9];
    let (plane, _) = rand(&mut rng, 11 * 9);
    let x: Vec<f32> = (0..4 * 3).flat_map(|_| plane.clone()).collect();
    let (tx, ty) = (up(gpu, "x", &shape, &x), zeros(gpu, "y", &shape));
    let op = Augment::new(gpu, "aug", strong(Fill::Nearest), &shape).unwrap();
    op.set_seed(gpu, 5);
    gpu.run([&op.forward(gpu, &tx, &ty).unwrap()]).unwrap();
    let y = read(gpu, &ty);
    let planes: Vec<&[f32]> = y.chunks(99).collect();
    for s in 0..4 {
        assert_eq!(planes[3 * s], planes[3 * s + 1], "sample {s}");
        assert_eq!(planes[3 * s], planes[3 * s + 2], "sample {s}");
        if s > 0 {
            assert_ne!(planes[0], planes[3 * s], "samples 0 and {s} (the same image) got the same transform");
        }
    }
}

#[test]
fn set_seed_changes_the_output_and_the_same_seed_reproduces_it() {
    let gpu = gpu!();
    let mut rng = Rng::new(24);
    let shape = [3usize, 1, 16, 12];
    let (x, x64) = rand(&mut rng, shape.iter().product());
    let (tx, ty) = (up(gpu, "x", &shape, &x), zeros(gpu, "y", &shape));
    let cfg = AugmentConfig::reports();
    let op = Augment::new(gpu, "aug", cfg, &shape).unwrap();
    let fwd = op.forward(gpu, &tx, &ty).unwrap();
    let mut outs = vec![];
    for seed in [1u32, 2, 1] {
        op.set_seed(gpu, seed);
        gpu.run([&fwd]).unwrap();
        outs.push(read(gpu, &ty));
        assert_close(&format!("seed {seed}"), outs.last().unwrap(), &r::forward(&cfg, seed, &x64, shape), ATOL, RTOL);
    }
    assert_ne!(outs[0], outs[1]);
    assert_eq!(outs[0], outs[2]);
}

#[test]
fn bad_configs_and_shapes_are_errors_naming_the_op() {
    let gpu = gpu!();
    let ok = AugmentConfig::reports();
    for cfg in [
        AugmentConfig { rotation_deg: 181.0, ..ok },
        AugmentConfig { rotation_deg: -1.0, ..ok },
        AugmentConfig { width_shift: 1.0, ..ok },
        AugmentConfig { height_shift: -0.1, ..ok },
        AugmentConfig { zoom: 1.0, ..ok },
        AugmentConfig { zoom: f32::NAN, ..ok },
    ] {
        let e = Augment::new(gpu, "input.aug", cfg, &[2, 1, 8, 8]).err().unwrap().to_string();
        assert!(e.contains("input.aug") && e.contains("range"), "{e}");
    }
    for shape in [&[2usize, 8, 8][..], &[2, 1, 0, 8]] {
        let e = Augment::new(gpu, "input.aug", ok, shape).err().unwrap().to_string();
        assert!(e.contains("input.aug"), "{e}");
    }
    let op = Augment::new(gpu, "input.aug", ok, &[2, 1, 8, 8]).unwrap();
    let (x, y) = (zeros(gpu, "x", &[2, 1, 8, 8]), zeros(gpu, "y", &[2, 1, 8, 8]));
    let bad = zeros(gpu, "bad", &[2, 1, 8, 7]);
    let e = op.forward(gpu, &bad, &y).err().unwrap().to_string();
    assert!(e.contains("input.aug") && e.contains("input") && e.contains("[2, 1, 8, 8]"), "{e}");
    let e = op.forward(gpu, &x, &bad).err().unwrap().to_string();
    assert!(e.contains("input.aug") && e.contains("output"), "{e}");
    let e = op.forward(gpu, &x, &x).err().unwrap().to_string();
    assert!(e.contains("input.aug") && e.contains("in place"), "{e}");
    let e = op.draws(gpu, &zeros(gpu, "d", &[2, 5])).err().unwrap().to_string();
    assert!(e.contains("input.aug") && e.contains("draws"), "{e}");
}

/// More than 65535 * 256 elements: groups_1d lays the dispatch out in 2-D. 7300 48x48
/// images (16.8M floats, ~67 MB per tensor); the reference checks the first and the last
/// samples (the last ones lie in grid rows gid.y > 0).
#[test]
fn two_dimensional_grid_matches_reference() {
    let gpu = gpu!();
    let shape = [7300usize, 1, 48, 48];
    let s = 48 * 48;
    let n: usize = shape.iter().product();
    assert!(n > 65535 * 256);
    let mut rng = Rng::new(25);
    let x = rng.vec_f32(n, 0.0, 1.0);
    let cfg = AugmentConfig::reports();
    let op = Augment::new(gpu, "big.aug", cfg, &shape).unwrap();
    op.set_seed(gpu, 2024);
    let (tx, ty) = (up(gpu, "x", &shape, &x), zeros(gpu, "y", &shape));
    let fwd = op.forward(gpu, &tx, &ty).unwrap();
    if gpu.limits().max_compute_workgroups_per_dimension <= 65535 {
        assert!(fwd.groups()[1] > 1, "expected a 2-D grid, got {:?}", fwd.groups());
    }
    gpu.run([&fwd]).unwrap();
    let y = read(gpu, &ty);
    for i in [0usize, 1, shape[0] - 2, shape[0] - 1] {
        let want = r::transform(r::params(&cfg, 2024, i as u32, 48, 48), cfg.fill, &f64s(&x[i * s..(i + 1) * s]), [1, 48, 48]);
        assert_close(&format!("sample {i}"), &y[i * s..(i + 1) * s], &want, ATOL, RTOL);
    }
}

/// Throwaway visual check (writes a PNG, asserts nothing): 16 synthetic 48x48 faces, the
/// originals in the top row block and three augmentations (seeds 1, 2, 3) of each below,
/// with `AugmentConfig::reports()`. `MIEN_AUGMENT_PNG=/path.png cargo test --release --test
/// kernels augment_png -- --ignored`.
#[test]
#[ignore]
fn augment_png() {
    let gpu = gpu!();
    let (n, side) = (16usize, 48usize);
    let data = mien::data::synthetic(n, 7, (side, side));
    let shape = [n, 1, side, side];
    let (tx, ty) = (up(gpu, "faces", &shape, &data.images), zeros(gpu, "aug", &shape));
    let op = Augment::new(gpu, "aug", AugmentConfig::reports(), &shape).unwrap();
    let fwd = op.forward(gpu, &tx, &ty).unwrap();
    let mut rows = vec![data.images.clone()];
    for seed in 1..=3u32 {
        op.set_seed(gpu, seed);
        gpu.run([&fwd]).unwrap();
        rows.push(read(gpu, &ty));
    }
    let (gap, scale) = (2usize, 3usize);
    let (cols, nrows) = (n, rows.len());
    let (wpx, hpx) = (cols * (side + gap) * scale, nrows * (side + gap) * scale);
    let mut img = image::GrayImage::from_pixel(wpx as u32, hpx as u32, image::Luma([128]));
    for (ri, row) in rows.iter().enumerate() {
        for i in 0..n {
            for yy in 0..side * scale {
                for xx in 0..side * scale {
                    let v = row[i * side * side + (yy / scale) * side + xx / scale];
                    let (px, py) = (i * (side + gap) * scale + xx, ri * (side + gap) * scale + yy);
                    img.put_pixel(px as u32, py as u32, image::Luma([(v.clamp(0.0, 1.0) * 255.0).round() as u8]));
                }
            }
        }
    }
    let path = std::env::var("MIEN_AUGMENT_PNG").unwrap_or_else(|_| std::env::temp_dir().join("mien_augment.png").display().to_string());
    img.save(&path).unwrap();
    eprintln!("wrote {path}");
}
