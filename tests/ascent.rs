//! Filter ascent and filter outputs on the GPU.
//!
//! The model is tiny-cnn with fixed-seed random weights (He init, BN at its initial
//! statistics) at 24x24: what is tested is that the optimizer climbs the gradient of the
//! chosen filter's mean activation through the network's own forward / backward kernels
//! (checked against the reference elsewhere) with the update kernels checked here, and
//! that neither depends on what the weights learned. For the first conv layer the
//! activation is linear in the image, so the best reachable value under the [0, 1] clamp is
//! known exactly and the ascent is measured against it.

#[path = "kernels/common.rs"]
mod common;

use common::{read, up, zeros, ATOL, RTOL};
use mien::explain::ascent::{self, kernels, AscentOptions, StepConfig};
use mien::explain::filter_outputs;
use mien::explain::Model;
use mien::gpu::Gpu;
use mien::nn::checkpoint::CheckpointInfo;
use mien::nn::network::{BuildOptions, Network};
use mien::nn::spec::ModelSpec;
use mien::reference::{ascent as ra, assert_close, f64s};
use mien::rng::Rng;
use std::path::PathBuf;

const SIDE: usize = 24;

fn random_model(gpu: &Gpu, batch: usize) -> Model {
    let spec = ModelSpec::tiny_cnn(7);
    let net = Network::build(gpu, &spec, [1, SIDE, SIDE], 7, batch, BuildOptions::EXPLAIN).unwrap();
    net.init(gpu, 11).unwrap();
    let info = CheckpointInfo { model: spec, input_chw: [1, SIDE, SIDE], class_names: mien::data::fer2013_class_names(), epoch: 0, optimizer_steps: 0 };
    Model::wrap(gpu, net, info, PathBuf::from("random tiny-cnn")).unwrap()
}

fn run1(gpu: &Gpu, d: mien::Dispatch) {
    gpu.run([&d]).unwrap();
}

fn ints(gpu: &Gpu, label: &str, v: &[i32]) -> mien::Tensor {
    gpu.upload(label, &[v.len()], v).unwrap()
}

// ---------------------------------------------------------------- update kernels vs f64

/// (N, C, H, W) shapes: batch 1, odd sizes, 1 and 3 channels, 858 and 2431 elements (not
/// multiples of the workgroup size 256).
const SHAPES: [[usize; 4]; 4] = [[1, 1, 5, 7], [3, 1, 9, 11], [3, 2, 13, 11], [1, 3, 17, 11 * 13]];

#[test]
fn init_seed_and_filter_mean_match_reference() {
    let gpu = gpu!();
    for [n, c, h, w] in SHAPES {
        let filters: Vec<u32> = (0..n as u32).map(|b| 3 * b + 1).collect();
        let ft = gpu.upload("filters", &[n], &filters).unwrap();
        let y = zeros(gpu, "init", &[n, c, h, w]);
        run1(gpu, kernels::init(gpu, &y, &ft, 77, 0.5, 0.1).unwrap());
        let want = ra::init(n, c * h * w, &filters, 77, 0.5, 0.1);
        assert_close(&format!("init {:?}", [n, c, h, w]), &read(gpu, &y), &want, 1e-6, 0.0);
        // Layer output [N, K, S] with K > every filter index.
        let (k, s) = (3 * n + 2, h * w);
        let seed = zeros(gpu, "seed", &[n, k, h, w]);
        run1(gpu, kernels::seed(gpu, &seed, &ft).unwrap());
        assert_close("seed", &read(gpu, &seed), &ra::seed(n, k, s, &filters), 1e-7, 0.0);
        let mut rng = Rng::new(n as u64);
        let (act, act64) = common::rand(&mut rng, n * k * s);
        let act_t = up(gpu, "act", &[n, k, h, w], &act);
        let means = zeros(gpu, "means", &[n]);
        run1(gpu, kernels::filter_mean(gpu, &means, &act_t, &ft).unwrap());
        assert_close("filter_mean", &read(gpu, &means), &ra::filter_mean(&act64, n, k, s, &filters), ATOL, RTOL);
    }
    // A starting image depends on its filter, not on its place in the batch.
    let a = zeros(gpu, "a", &[2, 1, 5, 7]);
    run1(gpu, kernels::init(gpu, &a, &gpu.upload("f", &[2], &[4u32, 9]).unwrap(), 5, 0.5, 0.1).unwrap());
    let b = zeros(gpu, "b", &[1, 1, 5, 7]);
    run1(gpu, kernels::init(gpu, &b, &gpu.upload("f", &[1], &[9u32]).unwrap(), 5, 0.5, 0.1).unwrap());
    assert_eq!(read(gpu, &a)[35..], read(gpu, &b)[..]);
}

#[test]
fn roll_and_resize_match_reference() {
    let gpu = gpu!();
    let mut rng = Rng::new(2);
    for [n, c, h, w] in SHAPES {
        let (x, x64) = common::rand(&mut rng, n * c * h * w);
        let xt = up(gpu, "x", &[n, c, h, w], &x);
        let shift: Vec<i32> = (0..2 * n as i32).map(|i| [3, -2, -7, 12, 0, 1][i as usize % 6]).collect();
        let st = ints(gpu, "shift", &shift);
        for sign in [1, -1] {
            let y = zeros(gpu, "y", &[n, c, h, w]);
            run1(gpu, kernels::roll(gpu, &y, &xt, &st, sign).unwrap());
            assert_close(&format!("roll {sign} {:?}", [n, c, h, w]), &read(gpu, &y), &ra::roll(&x64, [n, c, h, w], &shift, sign), 0.0, 0.0);
        }
        // Up (the octaves), down, and identity.
        for (oh, ow) in [(2 * h + 3, w + 4), (h.div_ceil(2), w.div_ceil(3)), (h, w)] {
            let y = zeros(gpu, "y", &[n, c, oh, ow]);
            run1(gpu, kernels::resize(gpu, &y, &xt).unwrap());
            let what = format!("resize {:?} -> {oh}x{ow}", [n, c, h, w]);
            assert_close(&what, &read(gpu, &y), &ra::resize(&x64, n * c, (h, w), (oh, ow)), ATOL, RTOL);
            let (dy, dy64) = common::rand(&mut rng, n * c * oh * ow);
            let dyt = up(gpu, "dy", &[n, c, oh, ow], &dy);
            let dx = zeros(gpu, "dx", &[n, c, h, w]);
            run1(gpu, kernels::resize_backward(gpu, &dx, &dyt).unwrap());
            // Sums of up to (2 * scale + 1)^2 terms of size 1: atol scaled by that length.
            let terms = ((2 * oh / h + 2) * (2 * ow / w + 2)) as f64;
            assert_close(&format!("{what} backward"), &read(gpu, &dx), &ra::resize_backward(&dy64, n * c, (h, w), (oh, ow)), ATOL * terms.sqrt(), RTOL);
        }
    }
}

#[test]
fn tv_step_and_blur_match_reference() {
    let gpu = gpu!();
    let mut rng = Rng::new(3);
    for [n, c, h, w] in SHAPES {
        let len = n * c * h * w;
        let shape = [n, c, h, w];
        let x: Vec<f32> = rng.vec_f32(len, 0.0, 1.0);
        let x64 = f64s(&x);
        let xt = up(gpu, "x", &shape, &x);
        let t = zeros(gpu, "tv", &shape);
        run1(gpu, kernels::tv_grad(gpu, &t, &xt).unwrap());
        let t64 = ra::tv_grad(&x64, n * c, h, w);
        assert_close("tv_grad", &read(gpu, &t), &t64, 0.0, 0.0);

        let (g, g64) = common::rand(&mut rng, len);
        let gt = up(gpu, "g", &shape, &g);
        let r = zeros(gpu, "inv_rms", &[n]);
        run1(gpu, kernels::inv_rms(gpu, &r, &gt, 1e-8).unwrap());
        let r64 = ra::inv_rms(&g64, c * h * w, 1e-8);
        assert_close("inv_rms", &read(gpu, &r), &r64, ATOL, RTOL);

        // Big steps so that the clamp binds for some pixels.
        let cfg = StepConfig { lr: 0.3, decay: 0.2, tv: 0.05, center: 0.5, lo: 0.0, hi: 1.0 };
        let f = |v: f32| v as f64;
        let step = ra::Step { lr: f(cfg.lr), decay: f(cfg.decay), tv: f(cfg.tv), center: f(cfg.center), lo: f(cfg.lo), hi: f(cfg.hi) };
        for normalize in [true, false] {
            let img = up(gpu, "img", &shape, &x);
            run1(gpu, kernels::step(gpu, &img, &gt, &t, normalize.then_some(&r), &cfg).unwrap());
            let want = ra::step(&x64, &g64, &t64, normalize.then_some(&r64[..]), c * h * w, &step);
            assert!(want.iter().any(|&v| v == 0.0 || v == 1.0), "the clamp is exercised");
            assert_close(&format!("step normalize={normalize} {shape:?}"), &read(gpu, &img), &want, ATOL, RTOL);
        }

        for sigma in [0.5f32, 1.0, 2.5] {
            let img = up(gpu, "img", &shape, &x);
            let tmp = zeros(gpu, "tmp", &shape);
            let [a, b] = kernels::blur(gpu, &img, &tmp, sigma).unwrap();
            gpu.run([&a, &b]).unwrap();
            let want = ra::blur(&x64, n * c, h, w, sigma as f64, kernels::blur_radius(sigma, h, w));
            assert_close(&format!("blur sigma={sigma} {shape:?}"), &read(gpu, &img), &want, ATOL, RTOL);
        }
    }
}

#[test]
fn kernel_shape_errors_say_what_is_wrong() {
    let gpu = gpu!();
    let x = zeros(gpu, "x", &[2, 1, 5, 5]);
    let shift = ints(gpu, "shift", &[0, 0]);
    let e = kernels::roll(gpu, &zeros(gpu, "y", &[2, 1, 5, 5]), &x, &shift, 1).err().unwrap().to_string();
    assert!(e.contains("filter ascent") && e.contains("shifts") && e.contains("expected 4"), "{e}");
    let e = kernels::resize(gpu, &zeros(gpu, "y", &[1, 1, 9, 9]), &x).err().unwrap().to_string();
    assert!(e.contains("batch and channels"), "{e}");
    let e = kernels::blur(gpu, &x, &zeros(gpu, "t", &[2, 1, 5, 5]), 0.0).err().unwrap().to_string();
    assert!(e.contains("sigma"), "{e}");
}

// ---------------------------------------------------------------- the ascent itself

/// The best mean activation of conv2d_1 filter f over images in [0, 1], and the mean
/// activation of `image`: the layer is linear, act(x) = b + sum_p coef[p] x[p] with coef the
/// conv's input gradient of the mean (from the f64 reference conv).
fn linear_bound(gpu: &Gpu, model: &Model, f: usize, image: &[f32]) -> (f64, f64) {
    use mien::reference::conv2d::{backward, forward, ConvGeom};
    let arena = gpu.read(&model.net.arena).unwrap();
    let (pw, pb) = (&model.net.params[0], &model.net.params[1]);
    assert_eq!(pw.name, "conv2d_1.weight");
    let w = f64s(&arena[pw.offset..pw.offset + pw.len()]);
    let b = f64s(&arena[pb.offset..pb.offset + pb.len()]);
    let k = pw.shape[0];
    let g = ConvGeom::new([1, 1, SIDE, SIDE], k, (3, 3), (1, 1), mien::nn::Padding::Same).unwrap();
    let s = (SIDE * SIDE) as f64;
    let mut dy = vec![0.0; k * SIDE * SIDE];
    dy[f * SIDE * SIDE..(f + 1) * SIDE * SIDE].fill(1.0 / s);
    let (coef, _, _) = backward(&g, &dy, &vec![0.0; SIDE * SIDE], &w);
    let best = b[f] + coef.iter().map(|c| c.max(0.0)).sum::<f64>();
    let y = forward(&g, &f64s(image), &w, Some(&b));
    (best, y[f * SIDE * SIDE..(f + 1) * SIDE * SIDE].iter().sum::<f64>() / s)
}

#[test]
fn ascent_reaches_the_known_optimum_of_a_linear_layer() {
    let gpu = gpu!();
    let model = random_model(gpu, 4);
    // Without regularizers the ascent should find the clamp-box optimum; with the default
    // ones (decay to gray, TV, blur, jitter) it should still cover most of the way.
    let bare = AscentOptions { decay: 0.0, tv: 0.0, blur_every: 0, jitter: 0, steps: 64, ..AscentOptions::default() };
    for (opts, frac) in [(bare, 0.97), (AscentOptions::default(), 0.7)] {
        let r = ascent::filter_ascent(gpu, &model, "conv2d_1", None, &opts).unwrap();
        assert_eq!(r.filters, [0, 1, 2, 3]);
        for (i, &f) in r.filters.iter().enumerate() {
            let (best, act) = linear_bound(gpu, &model, f, r.image(i));
            assert!((act - r.activation[i] as f64).abs() < 1e-4, "reported activation {} vs reference {act}", r.activation[i]);
            let got = (r.activation[i] - r.start_activation[i]) as f64 / (best - r.start_activation[i] as f64);
            eprintln!("filter {f}: start {:.4} final {:.4} best {best:.4}: {:.1}% of the possible gain", r.start_activation[i], r.activation[i], 100.0 * got);
            assert!(got >= frac, "filter {f}: {:.1}% of the possible gain, wanted {}%", 100.0 * got, 100.0 * frac);
        }
    }
}

#[test]
fn ascent_multiplies_a_deep_relu_filters_activation() {
    let gpu = gpu!();
    let model = random_model(gpu, 8);
    for octaves in [1, 2] {
        let opts = AscentOptions { octaves, ..AscentOptions::default() };
        let r = ascent::filter_ascent(gpu, &model, "relu_2", None, &opts).unwrap();
        assert_eq!(r.images.len(), 8 * SIDE * SIDE);
        for (i, f) in r.filters.iter().enumerate() {
            let (a0, a) = (r.start_activation[i], r.activation[i]);
            eprintln!("octaves {octaves} relu_2 filter {f}: {a0:.4} -> {a:.4} ({:.1}x)", a / a0);
            assert!(a0 > 0.0 && a >= 2.0 * a0, "filter {f}: mean activation {a0} -> {a}, wanted at least 2x");
            assert!(r.image(i).iter().all(|v| (0.0..=1.0).contains(v)), "pixels stay in the clamp range");
        }
    }
}

#[test]
fn filters_do_not_depend_on_their_batch() {
    let gpu = gpu!();
    // Filters 1 and 6 of relu_2 alone (a batch of one, two chunks) and among others.
    let opts = AscentOptions { steps: 32, ..AscentOptions::default() };
    let alone = ascent::filter_ascent(gpu, &random_model(gpu, 1), "relu_2", Some(&[6, 1]), &opts).unwrap();
    let mixed = ascent::filter_ascent(gpu, &random_model(gpu, 5), "relu_2", Some(&[0, 1, 2, 6]), &opts).unwrap();
    for (i, j) in [(0, 3), (1, 1)] {
        let what = format!("filter {} alone vs in a batch", alone.filters[i]);
        assert_close(&what, alone.image(i), &f64s(mixed.image(j)), 1e-4, 0.0);
        assert!((alone.activation[i] - mixed.activation[j]).abs() < 1e-4, "{what}: activations");
    }
}

// ---------------------------------------------------------------- filter outputs

#[test]
fn filter_outputs_are_the_forward_activations() {
    let gpu = gpu!();
    let model = random_model(gpu, 3);
    let faces = mien::data::synthetic(3, 4, (SIDE, SIDE));
    let image = faces.image(1);
    let conv = filter_outputs::filter_outputs(gpu, &model, image, "conv2d_1").unwrap();
    assert_eq!((conv.channels, conv.h, conv.w), (4, SIDE, SIDE));
    let all = filter_outputs::conv_outputs(gpu, &model, image).unwrap();
    assert_eq!(all.iter().map(|o| o.layer.as_str()).collect::<Vec<_>>(), ["relu_1", "relu_2"]);
    assert_eq!((all[1].channels, all[1].h, all[1].w), (8, SIDE / 2, SIDE / 2));
    let dense = filter_outputs::filter_outputs(gpu, &model, image, "dense_1").unwrap();
    assert_eq!((dense.channels, dense.h, dense.w), (7, 1, 1));

    // The same image in the middle of a batch of other faces.
    model.forward(gpu, &faces.images).unwrap();
    let len = SIDE * SIDE;
    for outs in [&conv, &all[0], &all[1], &dense] {
        let i = model.layer_index(&outs.layer).unwrap();
        let act = gpu.read(model.net.activation(i).0).unwrap();
        let per = act.len() / 3;
        assert_close(&format!("{} outputs", outs.layer), &outs.values, &f64s(&act[per..2 * per]), 1e-5, 1e-5);
    }
    // And conv2d_1 against the f64 reference convolution.
    let (_, mean0) = linear_bound(gpu, &model, 0, image);
    assert!((conv.means()[0] as f64 - mean0).abs() < 1e-4);
    assert_eq!(image.len(), len);

    let dir = std::env::temp_dir().join(format!("mien-ascent-outputs-{}", std::process::id()));
    filter_outputs::save_filter_outputs(image, (SIDE, SIDE), &conv, 0, 2, &dir.join("conv.png")).unwrap();
    filter_outputs::save_conv_outputs(image, (SIDE, SIDE), &all, 9, 2, &dir.join("all.png")).unwrap();
    let grid = image::open(dir.join("all.png")).unwrap();
    assert!(grid.height() > image::open(dir.join("conv.png")).unwrap().height());
    let _ = std::fs::remove_dir_all(dir);
}

// ---------------------------------------------------------------- outputs and errors

#[test]
fn grid_npy_and_csv_are_written() {
    let gpu = gpu!();
    let model = random_model(gpu, 2);
    let r = ascent::filter_ascent(gpu, &model, "conv2d_2", Some(&[7, 3]), &AscentOptions { steps: 8, ..AscentOptions::default() }).unwrap();
    assert_eq!(r.labels()[0], format!("filter 7  act {:.2}", r.activation[0]));
    let dir = std::env::temp_dir().join(format!("mien-ascent-files-{}", std::process::id()));
    r.save_grid(&dir.join("g.png"), 0, 3, true).unwrap();
    r.save_npy(&dir.join("g.npy")).unwrap();
    r.save_csv(&dir.join("g.csv")).unwrap();
    let npy = std::fs::read(dir.join("g.npy")).unwrap();
    assert_eq!(&npy[..8], b"\x93NUMPY\x01\x00");
    let hlen = u16::from_le_bytes([npy[8], npy[9]]) as usize;
    let header = std::str::from_utf8(&npy[10..10 + hlen]).unwrap();
    assert!(header.contains("'shape': (2, 24, 24)") && (10 + hlen).is_multiple_of(64), "{header}");
    let data: Vec<f32> = npy[10 + hlen..].chunks(4).map(|b| f32::from_le_bytes(b.try_into().unwrap())).collect();
    assert_eq!(data, r.images);
    let csv = std::fs::read_to_string(dir.join("g.csv")).unwrap();
    assert!(csv.starts_with("filter,start_activation,activation\n7,"), "{csv}");
    let png = image::open(dir.join("g.png")).unwrap();
    assert_eq!(png.width(), 2 * (24 * 3 + 8) + 8);
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn errors_name_what_is_wrong() {
    let gpu = gpu!();
    let model = random_model(gpu, 2);
    let opts = AscentOptions { steps: 1, ..AscentOptions::default() };
    let e = ascent::filter_ascent(gpu, &model, "conv2d_9", None, &opts).unwrap_err().to_string();
    assert!(e.contains("unknown layer \"conv2d_9\"") && e.contains("conv2d_1, batch_norm_1, relu_1"), "{e}");
    let e = ascent::filter_ascent(gpu, &model, "conv2d_2", Some(&[2, 8]), &opts).unwrap_err().to_string();
    assert!(e.contains("filter 8 is out of range: layer conv2d_2 has 8 filters"), "{e}");
    let e = ascent::filter_ascent(gpu, &model, "dense_1", Some(&[7]), &opts).unwrap_err().to_string();
    assert!(e.contains("layer dense_1 has 7 units"), "{e}");
    let e = ascent::filter_ascent(gpu, &model, "conv2d_1", Some(&[]), &opts).unwrap_err().to_string();
    assert!(e.contains("no filters"), "{e}");
    let e = ascent::filter_ascent(gpu, &model, "conv2d_1", None, &AscentOptions { lr: 0.0, ..opts.clone() }).unwrap_err().to_string();
    assert!(e.contains("learning rate"), "{e}");
    let e = filter_outputs::filter_outputs(gpu, &model, &[0.5; 48 * 48], "conv2d_1").unwrap_err().to_string();
    assert!(e.contains("2304 values") && e.contains("1x24x24 = 576"), "{e}");
    let e = filter_outputs::filter_outputs(gpu, &model, &[0.5; 576], "nope").unwrap_err().to_string();
    assert!(e.contains("unknown layer") && e.contains("dense_1"), "{e}");

    let empty = std::env::temp_dir().join(format!("mien-ascent-norun-{}", std::process::id()));
    std::fs::create_dir_all(&empty).unwrap();
    let e = ascent::filter_ascent_run(gpu, &empty, None, None, &opts).unwrap_err().to_string();
    assert!(e.contains("no trained run") && e.contains("cargo run --release --bin train"), "{e}");
    let _ = std::fs::remove_dir_all(empty);

    assert_eq!(ascent::parse_filters("0,1,5").unwrap(), [0, 1, 5]);
    assert_eq!(ascent::parse_filters("3-5, 9").unwrap(), [3, 4, 5, 9]);
    let e = ascent::parse_filters("2,x").unwrap_err().to_string();
    assert!(e.contains("\"x\" is not a filter index"), "{e}");
    assert!(ascent::parse_filters("5-2").unwrap_err().to_string().contains("empty"));
}
