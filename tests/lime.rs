//! LIME: SLIC superpixels, the GPU perturbation kernel against its f64 reference, the
//! weighted ridge solver, and end to end on a hand-built model whose class-0 logit is the
//! mean of the top-left quadrant.

#[path = "kernels/common.rs"]
mod common;

use mien::explain::lime::{self, Classes, Fill, LimeOptions, Perturbation};
use mien::explain::superpixels::{slic, Segmentation, SlicOptions};
use mien::explain::Model;
use mien::nn::checkpoint::CheckpointInfo;
use mien::nn::network::{BuildOptions, Network};
use mien::nn::spec::{LayerSpec, ModelSpec};
use mien::reference::{self, f64s};
use mien::rng::Rng;
use std::time::Instant;

const SIDE: usize = 48;

fn faces(n: usize, seed: u64) -> mien::data::Dataset {
    mien::data::synthetic(n, seed, (SIDE, SIDE))
}

/// Every id 0..count used, each segment one 4-connected piece, sizes within a factor of
/// the grid cell S^2.
fn check_segmentation(s: &Segmentation, want: usize, even: bool, what: &str) {
    assert_eq!(s.labels.len(), s.h * s.w, "{what}");
    let again = Segmentation::from_labels(s.labels.clone(), s.h, s.w).unwrap();
    assert_eq!(again.count, s.count, "{what}: ids are not 0..count");
    for id in 0..s.count as u32 {
        assert_eq!(s.pieces(id), 1, "{what}: segment {id} is not connected");
    }
    let cell = (s.h * s.w) as f64 / want as f64;
    let sizes = s.sizes();
    let (min, max) = (*sizes.iter().min().unwrap() as f64, *sizes.iter().max().unwrap() as f64);
    assert!(
        s.count as f64 >= 0.6 * want as f64 && s.count as f64 <= 1.4 * want as f64,
        "{what}: {} segments for {want} asked",
        s.count
    );
    assert!(min >= (0.25 * cell).round(), "{what}: smallest segment {min} pixels, a cell is {cell:.1}");
    assert!(!even || max <= 3.0 * cell, "{what}: sizes {min}..{max} for a cell of {cell:.1}: {sizes:?}");
}

#[test]
fn slic_segments_are_connected_even_and_cover_every_pixel() {
    let data = faces(6, 11);
    for i in 0..data.n {
        for (segments, compactness) in [(30, 0.1), (40, 0.1), (60, 0.1), (40, 0.03), (40, 1.0)] {
            let opts = SlicOptions { segments, compactness, ..Default::default() };
            let s = slic(data.image(i), SIDE, SIDE, &opts).unwrap();
            // Low compactness follows edges and clutter: segment sizes vary more.
            check_segmentation(&s, segments, compactness >= 0.1, &format!("face {i}, {segments} segments, compactness {compactness}"));
        }
    }
    // Odd sizes, a few segments, pixel noise (compact: noise has no edges worth following).
    let img = Rng::new(3).vec_f32(13 * 29, 0.0, 1.0);
    let s = slic(&img, 13, 29, &SlicOptions { segments: 7, compactness: 1.0, ..Default::default() }).unwrap();
    check_segmentation(&s, 7, true, "13x29 noise");
}

#[test]
fn slic_follows_a_strong_edge() {
    // Left half dark, right half bright, 16 segments: no segment crosses the edge.
    let img: Vec<f32> = (0..SIDE * SIDE).map(|p| if p % SIDE < 21 { 0.1 } else { 0.9 }).collect();
    let s = slic(&img, SIDE, SIDE, &SlicOptions { segments: 16, ..Default::default() }).unwrap();
    for id in 0..s.count as u32 {
        let sides: std::collections::HashSet<bool> = (0..SIDE * SIDE).filter(|&p| s.labels[p] == id).map(|p| p % SIDE < 21).collect();
        assert_eq!(sides.len(), 1, "segment {id} crosses the edge");
    }
}

#[test]
fn perturbation_kernel_matches_the_reference_bit_exactly() {
    let gpu = gpu!();
    let mut rng = Rng::new(5);
    // (batch, channels, h, w, segments): batch 1, odd sizes, 3 channels, counts that are not
    // multiples of the workgroup size.
    for (b, c, h, w, k) in [(1, 1, 7, 5, 4), (5, 3, 13, 11, 9), (9, 1, SIDE, SIDE, 40)] {
        let image = rng.vec_f32(c * h * w, 0.0, 1.0);
        let seg = slic(&image[..h * w], h, w, &SlicOptions { segments: k, ..Default::default() }).unwrap();
        for fill in [Fill::SegmentMean, Fill::ImageMean, Fill::Constant(0.25), Fill::Blur { sigma: 1.5 }] {
            let filled = lime::fill_image(&image, [c, h, w], &seg, fill).unwrap();
            let out = gpu.tensor("out", &[b, c, h, w]).unwrap();
            let p = Perturbation::new(gpu, &image, &filled, &seg, &out).unwrap();
            let masks: Vec<u32> = (0..b * seg.count).map(|_| rng.next_u32() & 1).collect();
            p.set_masks(gpu, &masks).unwrap();
            gpu.run([p.dispatch()]).unwrap();
            let got = gpu.read(&out).unwrap();
            let want = reference::lime::perturb(&f64s(&image), &f64s(&filled), &seg.labels, &masks, seg.count);
            assert_eq!(got.len(), want.len());
            for (i, (g, w)) in got.iter().zip(&want).enumerate() {
                assert_eq!(g.to_bits(), (*w as f32).to_bits(), "b{b} c{c} {h}x{w} {fill:?}: element {i}");
            }
        }
    }
    // Wrong mask length, wrong segmentation size.
    let seg = slic(&[0.5; 25], 5, 5, &SlicOptions { segments: 4, ..Default::default() }).unwrap();
    let out = gpu.tensor("out", &[2, 1, 5, 5]).unwrap();
    let p = Perturbation::new(gpu, &[0.5; 25], &[0.0; 25], &seg, &out).unwrap();
    assert!(p.set_masks(gpu, &[1; 3]).unwrap_err().0.contains("mask values"));
    let out = gpu.tensor("out", &[2, 1, 6, 5]).unwrap();
    let e = Perturbation::new(gpu, &[0.5; 30], &[0.0; 30], &seg, &out).err().unwrap().0;
    assert!(e.contains("segments are 5x5"), "{e}");
}

#[test]
fn perturbation_kernel_uses_a_2d_grid_for_huge_batches() {
    let gpu = gpu!();
    let max = gpu.limits().max_compute_workgroups_per_dimension as usize;
    // More than max * 256 outputs: groups_1d lays them out in 2-D (~68 MB, once).
    let (h, w) = (SIDE, SIDE);
    let b = max * 256 / (h * w) + 1;
    let image = Rng::new(9).vec_f32(h * w, 0.0, 1.0);
    let seg = slic(&image, h, w, &SlicOptions { segments: 12, ..Default::default() }).unwrap();
    let filled = lime::fill_image(&image, [1, h, w], &seg, Fill::Constant(-1.0)).unwrap();
    let out = gpu.tensor("out", &[b, 1, h, w]).unwrap();
    let p = Perturbation::new(gpu, &image, &filled, &seg, &out).unwrap();
    assert!(p.dispatch().groups()[1] > 1, "{:?}", p.dispatch().groups());
    let mut rng = Rng::new(1);
    let masks: Vec<u32> = (0..b * seg.count).map(|_| rng.next_u32() & 1).collect();
    p.set_masks(gpu, &masks).unwrap();
    gpu.run([p.dispatch()]).unwrap();
    let got = gpu.read(&out).unwrap();
    let want = reference::lime::perturb(&f64s(&image), &f64s(&filled), &seg.labels, &masks, seg.count);
    let bad = got.iter().zip(&want).position(|(g, w)| g.to_bits() != (*w as f32).to_bits());
    assert_eq!(bad, None, "first mismatch");
}

#[test]
fn ridge_recovers_known_coefficients() {
    let mut rng = Rng::new(17);
    let (n, k) = (500, 9);
    let beta: Vec<f64> = (0..k).map(|_| rng.range(-2.0, 2.0)).collect();
    let x: Vec<f64> = (0..n * k).map(|_| (rng.next_u32() & 1) as f64).collect();
    let weights: Vec<f64> = (0..n).map(|_| rng.range(0.05, 1.0)).collect();
    let y: Vec<f64> = (0..n).map(|s| 0.7 + (0..k).map(|j| x[s * k + j] * beta[j]).sum::<f64>()).collect();
    // Exact data, tiny penalty: the coefficients come back.
    let fit = lime::weighted_ridge(&x, &y, &weights, k, 1e-9).unwrap();
    for (j, (got, want)) in fit.coefficients.iter().zip(&beta).enumerate() {
        assert!((got - want).abs() < 1e-8, "coef {j}: {got} vs {want}");
    }
    assert!((fit.intercept - 0.7).abs() < 1e-8, "intercept {}", fit.intercept);
    assert!((fit.score - 1.0).abs() < 1e-12, "R^2 {}", fit.score);

    // alpha = 1 with noise: the stationarity condition of
    // sum w (y - b0 - x b)^2 + alpha |b|^2 holds, the coefficients shrink a little, R^2 < 1.
    let noisy: Vec<f64> = y.iter().map(|v| v + 0.3 * rng.normal()).collect();
    let fit = lime::weighted_ridge(&x, &noisy, &weights, k, 1.0).unwrap();
    let resid: Vec<f64> = (0..n).map(|s| noisy[s] - fit.intercept - (0..k).map(|j| x[s * k + j] * fit.coefficients[j]).sum::<f64>()).collect();
    let d0: f64 = (0..n).map(|s| weights[s] * resid[s]).sum();
    assert!(d0.abs() < 1e-9, "d/d intercept {d0}");
    for j in 0..k {
        let dj: f64 = (0..n).map(|s| weights[s] * resid[s] * x[s * k + j]).sum::<f64>() - fit.coefficients[j];
        assert!(dj.abs() < 1e-9, "d/d coef {j}: {dj}");
        assert!((fit.coefficients[j] - beta[j]).abs() < 0.15, "coef {j}: {} vs {}", fit.coefficients[j], beta[j]);
    }
    assert!(fit.score > 0.8 && fit.score < 1.0, "R^2 {}", fit.score);
}

/// Flatten + dense: logit 0 = mean of the top-left quadrant of the 48x48 image, the other
/// logits 0. Probability 0 rises with the quadrant's brightness, the others fall.
fn quadrant_model(gpu: &mien::Gpu, batch: usize) -> Model {
    let spec = ModelSpec { name: "quadrant".into(), layers: vec![LayerSpec::Flatten, LayerSpec::Dense { units: 7, bias: true }] };
    let net = Network::build(gpu, &spec, [1, SIDE, SIDE], 7, batch, BuildOptions::EXPLAIN).unwrap();
    let mut arena = vec![0.0f32; net.arena.len()];
    let weight = &net.params[net.layers[1].params[0]];
    assert_eq!(weight.shape, vec![7, SIDE * SIDE]);
    let half = SIDE / 2;
    for y in 0..half {
        for x in 0..half {
            arena[weight.offset + y * SIDE + x] = 1.0 / (half * half) as f32;
        }
    }
    gpu.write(&net.arena, &arena).unwrap();
    let info = CheckpointInfo { model: spec, input_chw: [1, SIDE, SIDE], class_names: mien::data::fer2013_class_names(), epoch: 0, optimizer_steps: 0 };
    Model::wrap(gpu, net, info, "hand-built".into()).unwrap()
}

/// Fraction of segment `id`'s pixels in the top-left quadrant.
fn in_quadrant(s: &Segmentation, id: u32) -> f64 {
    let px: Vec<usize> = (0..s.h * s.w).filter(|&p| s.labels[p] == id).collect();
    px.iter().filter(|&&p| p / s.w < s.h / 2 && p % s.w < s.w / 2).count() as f64 / px.len() as f64
}

#[test]
fn lime_finds_the_quadrant_a_hand_built_model_reads() {
    let gpu = gpu!();
    let model = quadrant_model(gpu, 64);
    let data = faces(2, 21);
    // A constant (black) fill: with lime's default segment-mean fill, switching off a
    // superpixel inside the quadrant would leave its mean, and so this linear model,
    // unchanged.
    let opts = LimeOptions { samples: 500, fill: Fill::Constant(0.0), ..Default::default() };
    for i in 0..data.n {
        let image = data.image(i);
        let t = Instant::now();
        let e = lime::explain(gpu, &model, image, &Classes::List(vec![0, 3]), &opts).unwrap();
        eprintln!("image {i}: {} superpixels, {} samples in {:.2?}", e.segments.count, e.samples(), t.elapsed());
        assert_eq!(e.probabilities.len(), 500 * 7);
        assert!(e.masks[..e.segments.count].iter().all(|&m| m == 1));
        let c0 = e.class(0).unwrap();
        let top = c0.top_positive(3, 0.0);
        eprintln!("class 0: R^2 {:.4}, top {:?} (in quadrant {:?})", c0.score, top, top.iter().map(|&t| in_quadrant(&e.segments, t)).collect::<Vec<_>>());
        assert_eq!(top.len(), 3);
        for &t in &top {
            assert!(in_quadrant(&e.segments, t) >= 0.5, "image {i}: top superpixel {t} is mostly outside the quadrant");
        }
        // Superpixels entirely outside the quadrant do not matter: small coefficients.
        let biggest = c0.coefficients.iter().cloned().fold(0.0, f64::max);
        for id in 0..e.segments.count as u32 {
            if in_quadrant(&e.segments, id) == 0.0 {
                assert!(c0.coefficients[id as usize].abs() < 0.1 * biggest, "outside superpixel {id}: {}", c0.coefficients[id as usize]);
            }
        }
        assert!(c0.score > 0.95, "R^2 {}", c0.score);
        // The unperturbed probability matches a plain forward pass, and the local model
        // predicts it.
        let p = model.probabilities(gpu, image).unwrap();
        assert_eq!(c0.probability, p[0]);
        assert!((c0.local_prediction - p[0] as f64).abs() < 0.02, "{} vs {}", c0.local_prediction, p[0]);
        // Class 3 loses what class 0 gains: the quadrant opposes it.
        let c3 = e.class(3).unwrap();
        for &t in &c3.top_negative(3, 0.0) {
            assert!(in_quadrant(&e.segments, t) >= 0.5, "class 3: top negative {t} outside the quadrant");
        }
        // Same seed, same explanation.
        if i == 0 {
            let again = lime::explain(gpu, &model, image, &Classes::List(vec![0, 3]), &opts).unwrap();
            assert_eq!(again.classes, e.classes);
            // Pictures: one panel per class.
            let row = e.class_row(3, 3).unwrap();
            let pic = e.render(0, 3, 0.0, 3).unwrap();
            assert_eq!(pic.dimensions(), (3 * SIDE as u32, 3 * SIDE as u32));
            assert_eq!(row.width(), 7 * (3 * SIDE as u32 + 8) + 8);
            if let Ok(dir) = std::env::var("MIEN_LIME_PICTURES") {
                mien::render::save_png(&row, &std::path::Path::new(&dir).join("lime_quadrant_row.png")).unwrap();
            }
        }
    }
}

#[test]
fn lime_picks_predicted_top_and_all_classes() {
    let gpu = gpu!();
    let model = quadrant_model(gpu, 32);
    let image = faces(1, 4).image(0).to_vec();
    let opts = LimeOptions { samples: 40, ..Default::default() };
    // Class 0 has the only nonzero logit (a bright quadrant): predicted.
    let e = lime::explain(gpu, &model, &image, &Classes::Predicted, &opts).unwrap();
    assert_eq!((e.predicted, e.classes.len(), e.classes[0].class), (0, 1, 0));
    let e = lime::explain(gpu, &model, &image, &Classes::Top(2), &opts).unwrap();
    assert_eq!(e.classes.iter().map(|c| c.class).collect::<Vec<_>>(), vec![0, 1]);
    let (row, e) = lime::class_row(gpu, &model, &image, &opts, 2, 2).unwrap();
    assert_eq!(e.classes.len(), 7);
    assert_eq!(row.width(), 7 * (2 * SIDE as u32 + 8) + 8);
    // Refitting a class from the stored samples gives the same explanation.
    assert_eq!(e.fit(5).unwrap(), e.classes[5]);
}

#[test]
fn lime_errors_name_what_is_wrong() {
    let gpu = gpu!();
    let model = quadrant_model(gpu, 8);
    let image = faces(1, 4).image(0).to_vec();
    let opts = LimeOptions { samples: 16, ..Default::default() };
    let err = |r: mien::Result<lime::LimeExplanation>| r.unwrap_err().0;
    let e = err(lime::explain(gpu, &model, &image, &Classes::List(vec![2, 7]), &opts));
    assert!(e.contains("class 7 is out of range") && e.contains("7 classes") && e.contains("Neutral"), "{e}");
    let e = err(lime::explain(gpu, &model, &image[..100], &Classes::Predicted, &opts));
    assert!(e.contains("100 values") && e.contains("1x48x48"), "{e}");
    let e = err(lime::explain(gpu, &model, &image, &Classes::Top(8), &opts));
    assert!(e.contains("top 8"), "{e}");
    let e = err(lime::explain(gpu, &model, &image, &Classes::Predicted, &LimeOptions { samples: 0, ..opts.clone() }));
    assert!(e.contains("at least 1 sample"), "{e}");
    let seg = slic(&vec![0.5; 24 * 24], 24, 24, &SlicOptions::default()).unwrap();
    let e = err(lime::explain_with_segments(gpu, &model, &image, seg, &Classes::Predicted, &opts));
    assert!(e.contains("segments are 24x24"), "{e}");
    let e = lime::explain(gpu, &model, &image, &Classes::Predicted, &opts).unwrap();
    assert!(e.fit(9).unwrap_err().0.contains("class 9 is out of range"));
    assert!(e.render(9, 3, 0.0, 1).is_err());
}

/// Numbers for the report (not part of CI): LIME on a model trained on the built-in faces
/// (R^2, overlap of the top superpixels with the expression mask) and the time for 1000
/// samples. `cargo test --release --test lime -- --ignored --nocapture`
#[test]
#[ignore]
fn report_trained_model_numbers() {
    use mien::train;
    let gpu = gpu!();
    let side: usize = std::env::var("MIEN_LIME_SIDE").ok().and_then(|s| s.parse().ok()).unwrap_or(32);
    let dir = std::env::temp_dir().join(format!("mien-lime-report-{side}"));
    let (cfg, data) = common::clean_faces(side);
    let val = data.val.clone();
    if !dir.join("best.safetensors").exists() {
        let t = Instant::now();
        let out = train::run(gpu, &cfg, &data, &dir, false, false).unwrap();
        eprintln!("trained in {:.1?}: best val acc {:.3}", t.elapsed(), out.best_val_acc);
    }
    let batch: usize = std::env::var("MIEN_LIME_BATCH").ok().and_then(|s| s.parse().ok()).unwrap_or(100);
    let model = Model::load(gpu, &dir, batch).unwrap();
    let opts = LimeOptions { slic: SlicOptions { segments: if side >= 48 { 40 } else { 25 }, ..Default::default() }, ..Default::default() };
    let mut rows = Vec::new();
    let (mut r2, mut overlap, mut base, mut secs) = (vec![], vec![], vec![], vec![]);
    for i in 0..8 {
        let image = val.image(i);
        let t = Instant::now();
        let e = lime::explain(gpu, &model, image, &Classes::Predicted, &opts).unwrap();
        secs.push(t.elapsed().as_secs_f64());
        let c = &e.classes[0];
        let top = c.top_positive(5, 0.0);
        let mask = val.mask(i).unwrap();
        let px: Vec<usize> = (0..side * side).filter(|&p| top.contains(&e.segments.labels[p])).collect();
        let on = px.iter().filter(|&&p| mask[p] != 0).count() as f64 / px.len().max(1) as f64;
        let all = mask.iter().filter(|&&m| m != 0).count() as f64 / mask.len() as f64;
        eprintln!(
            "image {i}: label {} predicted {} p {:.3}, {} superpixels, R^2 {:.3}, top-5 positive pixels on the expression mask {:.2} (image {:.2}), {:.2} s",
            val.labels[i], e.predicted, c.probability, e.segments.count, c.score, on, all, secs[i]
        );
        r2.push(c.score);
        overlap.push(on);
        base.push(all);
        if i < 4 {
            rows.push(e.class_row(5, 3).unwrap());
        }
    }
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    eprintln!(
        "{}: mean R^2 {:.3} (min {:.3}), mask overlap {:.2} vs base rate {:.2}, {:.2} s per image (1000 samples, batch {batch}; first includes pipeline creation)",
        gpu.info().name,
        mean(&r2),
        r2.iter().cloned().fold(1.0, f64::min),
        mean(&overlap),
        mean(&base),
        mean(&secs[1..])
    );
    if let Ok(out) = std::env::var("MIEN_LIME_PICTURES") {
        for (i, r) in rows.iter().enumerate() {
            mien::render::save_png(r, &std::path::Path::new(&out).join(format!("lime_trained_row{i}.png"))).unwrap();
        }
    }
}

/// Time for 1000 LIME samples at 48x48 on the `small` preset (random weights: timing only),
/// next to a plain forward of 1000 uploaded images. `-- --ignored --nocapture`
#[test]
#[ignore]
fn report_time_for_1000_samples_at_48() {
    let gpu = gpu!();
    let batch: usize = std::env::var("MIEN_LIME_BATCH").ok().and_then(|s| s.parse().ok()).unwrap_or(100);
    let spec = ModelSpec::preset("small", 7).unwrap();
    let net = Network::build(gpu, &spec, [1, SIDE, SIDE], 7, batch, BuildOptions::EXPLAIN).unwrap();
    net.init(gpu, 1).unwrap();
    let info = CheckpointInfo { model: spec, input_chw: [1, SIDE, SIDE], class_names: mien::data::fer2013_class_names(), epoch: 0, optimizer_steps: 0 };
    let model = Model::wrap(gpu, net, info, "random".into()).unwrap();
    let data = faces(1001, 2);
    let opts = LimeOptions::default();
    lime::explain(gpu, &model, data.image(0), &Classes::Predicted, &LimeOptions { samples: 10, ..opts.clone() }).unwrap();
    let t = Instant::now();
    let e = lime::explain(gpu, &model, data.image(0), &Classes::All, &opts).unwrap();
    let lime_s = t.elapsed().as_secs_f64();
    let t = Instant::now();
    model.probabilities(gpu, &data.images[SIDE * SIDE..]).unwrap();
    let fwd_s = t.elapsed().as_secs_f64();
    eprintln!(
        "{}: LIME 1000 samples, {} superpixels, 7 classes fitted, batch {batch}: {lime_s:.2} s; forward of 1000 uploaded images: {fwd_s:.2} s",
        gpu.info().name,
        e.segments.count
    );
}
