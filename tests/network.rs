//! The pieces compose: a tiny CNN ((conv-BN-ReLU-pool) x2, dense, softmax cross-entropy,
//! Adam) trains entirely on the GPU with one submit per step, matches the f64 reference
//! step for step, and overfits 64 images.

#[path = "kernels/common.rs"]
mod common;

use mien::nn::precision::Precision;
use mien::nn::network::{BuildOptions, Network};
use mien::nn::optim::{Optimizer, OptimizerConfig, OptimizerKind};
use mien::nn::spec::{LayerSpec, ModelSpec};
use mien::reference::network::RefNetwork;
use mien::reference::optim::adam_step;
use mien::rng::Rng;

const CLASSES: usize = 7;
const HW: usize = 12;

/// 64 images whose class shows as a bright bar at a class-dependent row, plus noise:
/// learnable, but not by a constant.
fn toy_batch(n: usize, seed: u64) -> (Vec<f32>, Vec<u32>) {
    let mut rng = Rng::new(seed);
    let mut x = vec![0.0f32; n * HW * HW];
    let labels: Vec<u32> = (0..n).map(|i| (i % CLASSES) as u32).collect();
    for (i, &l) in labels.iter().enumerate() {
        let img = &mut x[i * HW * HW..(i + 1) * HW * HW];
        for v in img.iter_mut() {
            *v = rng.range(0.0, 0.6) as f32;
        }
        let row = 1 + l as usize * (HW - 2) / CLASSES;
        for c in 0..HW {
            img[row * HW + c] += 1.0;
        }
    }
    (x, labels)
}

fn adam() -> OptimizerConfig {
    OptimizerConfig { kind: OptimizerKind::Adam { beta1: 0.9, beta2: 0.999, eps: 1e-7 }, weight_decay: 0.0, decoupled_weight_decay: false }
}

#[test]
fn tiny_cnn_first_steps_match_the_reference() {
    first_steps_match_the_reference(ModelSpec::tiny_cnn(CLASSES), 64);
}

/// Wider convolutions (>= 8 input channels) take the uniform-window weight-gradient path;
/// PReLU per element, average pooling and dropout too.
#[test]
fn wider_cnn_first_steps_match_the_reference() {
    use mien::nn::spec::{PaddingName, PaddingSpec, Pair};
    let conv = |filters| LayerSpec::Conv2d { filters, kernel: Pair::Square(3), stride: Pair::Square(1), padding: PaddingSpec::Named(PaddingName::Same), bias: true };
    let spec = ModelSpec {
        name: "wider".into(),
        layers: vec![
            conv(8),
            LayerSpec::BatchNorm { eps: 1e-3, momentum: 0.9 },
            LayerSpec::Relu,
            conv(12),
            LayerSpec::BatchNorm { eps: 1e-3, momentum: 0.9 },
            LayerSpec::Prelu { per_channel: false },
            LayerSpec::AvgPool { size: Pair::Square(2), stride: None, padding: PaddingSpec::Named(PaddingName::Valid) },
            LayerSpec::Flatten,
            LayerSpec::Dropout { rate: 0.25 },
            LayerSpec::Dense { units: 16, bias: true },
            LayerSpec::LeakyRelu { alpha: 0.1 },
            LayerSpec::Dense { units: CLASSES, bias: true },
        ],
    };
    first_steps_match_the_reference(spec, 16);
}

fn first_steps_match_the_reference(spec: ModelSpec, batch: usize) {
    let gpu = gpu!();
    steps_follow_the_reference(gpu, &spec, batch, Precision::F32, 1e-3);
}

/// Five Adam steps of `spec` built for `precision`, the loss after each within `rtol` of the
/// f64 reference's; returns the network.
fn steps_follow_the_reference(gpu: &mien::Gpu, spec: &ModelSpec, batch: usize, precision: Precision, rtol: f64) -> Network {
    let net = Network::build(gpu, spec, [1, HW, HW], CLASSES, batch, BuildOptions::default().with_precision(precision)).unwrap();
    let mut opt = net.optimizer(gpu, "adam", adam()).unwrap();
    let init = net.initial_params(3);
    net.init(gpu, 3).unwrap();
    let (x, labels) = toy_batch(batch, 11);
    net.set_batch(gpu, &x, &labels).unwrap();

    let mut r = RefNetwork::new(spec, [1, HW, HW], CLASSES, batch).unwrap();
    let offsets: Vec<usize> = net.params.iter().map(|p| p.offset).collect();
    let names: Vec<&str> = net.params.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, r.params.iter().map(|p| p.name.as_str()).collect::<Vec<_>>());
    r.set_params(&init, &offsets);
    let mut m: Vec<Vec<f64>> = r.params.iter().map(|p| vec![0.0; p.value.len()]).collect();
    let mut v = m.clone();
    let x64 = mien::reference::f64s(&x);
    let lr = 0.01;

    for step in 1..=5u64 {
        net.set_dropout_seed(gpu, step as u32);
        {
            let update = opt.step(gpu, lr as f32);
            gpu.run(net.train_dispatches().chain(std::iter::once(update))).unwrap();
        }
        let (gpu_loss, gpu_correct) = net.read_stats(gpu).unwrap();
        let (ref_loss, ref_correct, grads) = r.loss_and_grads(&x64, &labels, step as u32);
        for (k, p) in r.params.iter_mut().enumerate() {
            adam_step(&mut p.value, &grads[k], &mut m[k], &mut v[k], step, lr, 0.9, 0.999, 1e-7, 0.0, false);
        }
        let rel = (gpu_loss as f64 - ref_loss).abs() / ref_loss.abs();
        eprintln!("{precision} step {step}: gpu loss {gpu_loss:.6} ({gpu_correct} correct), reference {ref_loss:.6} ({ref_correct}), rel {rel:.2e}");
        assert!(rel <= rtol, "{precision} step {step}: GPU loss {gpu_loss} vs reference {ref_loss} (relative {rel:e})");
    }
    net
}

#[test]
fn tiny_cnn_overfits_64_images() {
    let gpu = gpu!();
    let batch = 64;
    let spec = ModelSpec::tiny_cnn(CLASSES);
    let net = Network::build(gpu, &spec, [1, HW, HW], CLASSES, batch, BuildOptions::default()).unwrap();
    let mut opt = Optimizer::new(gpu, "adam", adam(), &net.arena, &net.grads).unwrap();
    net.init(gpu, 5).unwrap();
    let (x, labels) = toy_batch(batch, 12);
    net.set_batch(gpu, &x, &labels).unwrap();
    let mut history = vec![];
    for step in 0..300 {
        {
            let update = opt.step(gpu, 0.01);
            gpu.submit(net.train_dispatches().chain(std::iter::once(update)));
        }
        if step % 25 == 24 {
            gpu.run(net.eval_dispatches()).unwrap();
            let (loss, correct) = net.read_stats(gpu).unwrap();
            history.push((step + 1, loss, correct));
            if correct as usize == batch {
                eprintln!("100% after {} steps: {history:?}", step + 1);
                return;
            }
        }
    }
    panic!("tiny CNN did not reach 100% training accuracy on 64 images in 300 steps: {history:?}");
}

#[test]
fn a_model_whose_logits_do_not_match_the_classes_is_refused() {
    let gpu = gpu!();
    let spec = ModelSpec { name: "bad".into(), layers: vec![LayerSpec::Flatten, LayerSpec::Dense { units: 5, bias: true }] };
    let e = Network::build(gpu, &spec, [1, 4, 4], CLASSES, 2, BuildOptions::default()).err().unwrap().to_string();
    assert!(e.contains("dense_1") && e.contains("[2, 7]"), "{e}");
}

#[test]
fn a_dnn_starting_with_flatten_trains_and_gives_input_gradients() {
    let gpu = gpu!();
    let spec = ModelSpec {
        name: "dnn".into(),
        layers: vec![LayerSpec::Flatten, LayerSpec::Dense { units: 9, bias: true }, LayerSpec::Relu, LayerSpec::Dense { units: CLASSES, bias: true }],
    };
    let batch = 3;
    let net = Network::build(gpu, &spec, [1, 5, 5], CLASSES, batch, BuildOptions { input_grad: true, reuse: true, fuse: false, fuse_stats: false, fuse_pool: false, precision: Precision::F32 }).unwrap();
    net.init(gpu, 1).unwrap();
    let (x, labels) = toy_batch(batch, 3);
    let x: Vec<f32> = x.chunks(HW * HW).flat_map(|img| img[..25].to_vec()).collect();
    net.set_batch(gpu, &x, &labels).unwrap();
    gpu.run(net.train_dispatches()).unwrap();
    let gx = gpu.read(net.input_grad().unwrap()).unwrap();
    // The reference's input gradient, by finite differences of its loss.
    let mut r = RefNetwork::new(&spec, [1, 5, 5], CLASSES, batch).unwrap();
    r.set_params(&net.initial_params(1), &net.params.iter().map(|p| p.offset).collect::<Vec<_>>());
    let x64 = mien::reference::f64s(&x);
    let numeric = mien::reference::numeric_grad(|x| r.loss_and_grads(x, &labels, 0).0, &x64, 1e-5);
    mien::reference::assert_close("dnn input gradient", &gx, &numeric, 1e-4, 1e-3);
}

/// The presets' parameter counts equal the reports' Keras summaries (seed file 001):
/// seed-cnn 3,532,743 total / 2,816 non-trainable; seed-dnn 3,533,188 / 8,274.
#[test]
fn seed_presets_have_the_reports_parameter_counts() {
    let gpu = gpu!();
    let count = |name: &str| {
        let spec = ModelSpec::preset(name, CLASSES).unwrap();
        let net = Network::build(gpu, &spec, [1, 48, 48], CLASSES, 1, BuildOptions::default()).unwrap();
        let (t, nt) = net.param_counts();
        eprintln!("{}", net.summary());
        (t + nt, nt)
    };
    assert_eq!(count("seed-cnn"), (3_532_743, 2_816));
    assert_eq!(count("seed-dnn"), (3_533_188, 8_274));
    let (cnn, dnn) = (count("seed-cnn").0 as f64, count("seed-dnn").0 as f64);
    assert!((cnn - dnn).abs() / cnn < 0.05);
}

/// The inference-mode input gradient of a class score (saliency) matches central finite
/// differences of the GPU's own inference forward pass, on a net with BN, PReLU, pooling
/// and dropout.
#[test]
fn explain_backward_gives_the_input_gradient_of_a_class_score() {
    // Explanations build without reuse; with it, a seed on the logits still works.
    for opts in [BuildOptions::EXPLAIN, BuildOptions { input_grad: true, reuse: true, fuse: false, fuse_stats: false, fuse_pool: false, precision: Precision::F32 }] {
        explain_backward_matches_finite_differences(opts);
    }
}

fn explain_backward_matches_finite_differences(opts: BuildOptions) {
    let gpu = gpu!();
    let spec = ModelSpec {
        name: "explain".into(),
        layers: vec![
            LayerSpec::Conv2d { filters: 3, kernel: mien::nn::spec::Pair::Square(3), stride: mien::nn::spec::Pair::Square(1), padding: mien::nn::spec::PaddingSpec::Named(mien::nn::spec::PaddingName::Same), bias: true },
            LayerSpec::BatchNorm { eps: 1e-3, momentum: 0.9 },
            LayerSpec::Prelu { per_channel: true },
            LayerSpec::AvgPool { size: mien::nn::spec::Pair::Square(2), stride: None, padding: mien::nn::spec::PaddingSpec::Named(mien::nn::spec::PaddingName::Valid) },
            LayerSpec::Dropout { rate: 0.5 },
            LayerSpec::Flatten,
            LayerSpec::Dense { units: CLASSES, bias: true },
        ],
    };
    let (batch, side) = (2, 6);
    let net = Network::build(gpu, &spec, [1, side, side], CLASSES, batch, opts).unwrap();
    net.init(gpu, 4).unwrap();
    let mut rng = Rng::new(8);
    let x: Vec<f32> = rng.vec_f32(batch * side * side, 0.0, 1.0);
    net.set_batch(gpu, &x, &[0, 3]).unwrap();
    // Make BN's running statistics non-trivial with one training forward.
    gpu.run(net.train_dispatches()).unwrap();
    let last = net.layers.len() - 1;
    let seed: Vec<f32> = (0..batch * CLASSES).map(|i| if i % CLASSES == 2 { 1.0 } else { 0.0 }).collect();
    let back = net.explain_backward(gpu, last, 0).unwrap();
    net.set_batch(gpu, &x, &[0, 3]).unwrap();
    gpu.run(net.forward_infer_dispatches()).unwrap();
    gpu.write(net.activation(last).1.unwrap(), &seed).unwrap();
    gpu.run(&back).unwrap();
    let grad = gpu.read(net.input_grad().unwrap()).unwrap();
    // Finite differences of logit 2 of sample 0 through the GPU forward (f32: eps 1e-2).
    let score = |x: &[f32]| {
        net.set_batch(gpu, x, &[0, 3]).unwrap();
        gpu.run(net.forward_infer_dispatches()).unwrap();
        gpu.read(net.logits()).unwrap()[2] as f64
    };
    for &p in &[0usize, 7, 14, 20, 35] {
        let (mut xp, mut xm) = (x.clone(), x.clone());
        xp[p] += 1e-2;
        xm[p] -= 1e-2;
        let numeric = (score(&xp) - score(&xm)) / 2e-2;
        assert!((numeric - grad[p] as f64).abs() <= 2e-3 + 2e-2 * numeric.abs(), "pixel {p}: gpu {} vs finite differences {numeric}", grad[p]);
    }
}

/// Every layer kind (a first-layer BatchNorm whose dx goes to a sink, max and average
/// pooling, zero padding, PReLU, dropout, Flatten, dense) for the memory-reuse tests.
fn mixed_cnn() -> ModelSpec {
    use mien::nn::spec::{PaddingName, PaddingSpec, Pair};
    let conv = |filters| LayerSpec::Conv2d { filters, kernel: Pair::Square(3), stride: Pair::Square(1), padding: PaddingSpec::Named(PaddingName::Same), bias: true };
    let pool = |max| {
        let (size, stride, padding) = (Pair::Square(2), None, PaddingSpec::Named(PaddingName::Valid));
        if max { LayerSpec::MaxPool { size, stride, padding } } else { LayerSpec::AvgPool { size, stride, padding } }
    };
    ModelSpec {
        name: "mixed".into(),
        layers: vec![
            LayerSpec::BatchNorm { eps: 1e-3, momentum: 0.9 },
            conv(4),
            LayerSpec::Relu,
            pool(true),
            LayerSpec::ZeroPad { pad: [1, 0, 1, 0] },
            conv(6),
            LayerSpec::BatchNorm { eps: 1e-3, momentum: 0.9 },
            LayerSpec::Prelu { per_channel: false },
            LayerSpec::Dropout { rate: 0.25 },
            pool(false),
            LayerSpec::Flatten,
            LayerSpec::Dense { units: 10, bias: true },
            LayerSpec::Prelu { per_channel: true },
            LayerSpec::Dropout { rate: 0.5 },
            LayerSpec::Dense { units: CLASSES, bias: true },
        ],
    }
}

fn dnn() -> ModelSpec {
    ModelSpec {
        name: "dnn".into(),
        layers: vec![
            LayerSpec::Flatten,
            LayerSpec::Dense { units: 12, bias: true },
            LayerSpec::BatchNorm { eps: 1e-3, momentum: 0.9 },
            LayerSpec::LeakyRelu { alpha: 0.1 },
            LayerSpec::Dropout { rate: 0.3 },
            LayerSpec::Dense { units: CLASSES, bias: true },
        ],
    }
}

fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

/// Sharing activation memory changes no training bit: 3 Adam steps with dropout, with and
/// without reuse. With reuse and training fusion (src/nn/fuse.rs) too: BatchNorm + ReLU
/// (tiny-cnn) and + LeakyReLU (dnn) bit for bit; mixed's BatchNorm + per-element PReLU sums
/// its BatchNorm gradients in another order (shaders/batchnorm.wgsl): its training losses
/// within 1e-4 (see below for why not its parameters and evaluation).
/// Evaluation (and a tail network from build_like) with reuse runs conv + BatchNorm as one
/// conv on folded weights, which rounds differently: equal to 1e-5.
#[test]
fn reusing_activation_memory_gives_bit_identical_training() {
    let gpu = gpu!();
    let batch = 4;
    for (spec, input_grad) in [(ModelSpec::tiny_cnn(CLASSES), false), (mixed_cnn(), true), (mixed_cnn(), false), (dnn(), false)] {
        let run = |reuse: bool, fuse: bool| {
            let net = Network::build(gpu, &spec, [1, HW, HW], CLASSES, batch, BuildOptions { input_grad, reuse, fuse, fuse_stats: false, fuse_pool: fuse, precision: Precision::F32 }).unwrap();
            assert_eq!(net.reuses_memory(), reuse);
            let mut opt = Optimizer::new(gpu, "adam", adam(), &net.arena, &net.grads).unwrap();
            net.init(gpu, 7).unwrap();
            let mut out: Vec<Vec<u32>> = vec![];
            for step in 1..=3u64 {
                let (x, labels) = toy_batch(batch, 20 + step);
                net.set_batch(gpu, &x, &labels).unwrap();
                net.set_dropout_seed(gpu, step as u32);
                let update = opt.step(gpu, 0.01);
                gpu.run(net.train_dispatches().chain(std::iter::once(update))).unwrap();
                out.push(bits(&gpu.read(net.stats()).unwrap()));
                if let Some(g) = net.input_grad() {
                    out.push(bits(&gpu.read(g).unwrap()));
                }
            }
            out.push(bits(&gpu.read(&net.grads).unwrap()));
            out.push(bits(&gpu.read(&net.arena).unwrap()));
            for (_, t) in &net.buffers {
                out.push(bits(&gpu.read(t).unwrap()));
            }
            let mut eval: Vec<Vec<f32>> = vec![];
            let (x, labels) = toy_batch(batch, 99);
            net.set_batch(gpu, &x, &labels).unwrap();
            gpu.run(net.eval_dispatches()).unwrap();
            for t in [net.stats(), net.probabilities(), net.logits(), net.per_sample().0, net.per_sample().1] {
                eval.push(gpu.read(t).unwrap());
            }
            let tail = net.build_like(gpu, 3, BuildOptions { input_grad: false, reuse, fuse, fuse_stats: false, fuse_pool: fuse, precision: Precision::F32 }).unwrap();
            tail.set_batch(gpu, &x[..3 * HW * HW], &labels[..3]).unwrap();
            gpu.run(tail.eval_dispatches()).unwrap();
            eval.push(gpu.read(tail.probabilities()).unwrap());
            let fused_act = net.forward_infer_dispatches().filter(|d| d.label.contains("conv2d_sg_3x3 (forward+activation)")).count();
            if spec.name == "tiny-cnn" && reuse && gpu.subgroup_min_size() >= Some(8) {
                // conv(12x12) + BN + ReLU: one pass with the activation in the epilogue.
                assert_eq!(fused_act, 1, "tiny-cnn: conv + BN + ReLU should fuse");
            }
            if spec.name == "tiny-cnn" {
                // Both blocks' BN + ReLU + 2x2 max pool (12x12 and 6x6) run as one pass.
                let tails = net.train_dispatches().filter(|d| d.label.ends_with("batchnorm_forward_train_act_pool")).count();
                assert_eq!(tails, if reuse && fuse { 2 } else { 0 }, "tiny-cnn: pool tails with reuse={reuse} fuse={fuse}");
            }
            (out, eval, net.activation_memory(), net.forward_infer_dispatches().filter(|d| d.label.ends_with("batchnorm_fold")).count())
        };
        let (plain, plain_eval, plain_mem, plain_infer) = run(false, false);
        let (shared, shared_eval, shared_mem, shared_infer) = run(true, false);
        let (fused, fused_eval, fused_mem, _) = run(true, true);
        eprintln!("{}: without reuse {plain_mem:?}, with {shared_mem:?}, fused {fused_mem:?}", spec.name);
        let per_element = spec.layers.windows(2).any(|w| matches!(w, [LayerSpec::BatchNorm { .. }, LayerSpec::Prelu { per_channel: false }]));
        for (what, other, other_eval) in [("memory reuse", &shared, &shared_eval), ("memory reuse and training fusion", &fused, &fused_eval)] {
            assert_eq!(plain.len(), other.len());
            for (k, (a, b)) in plain.iter().zip(other).enumerate() {
                if per_element && !input_grad && what.contains("fusion") {
                    // The three steps' losses only: the conv biases before its BatchNorms
                    // have a gradient of rounding noise (the BatchNorm subtracts the batch
                    // mean), which Adam turns into steps of up to lr, so summing in another
                    // order moves them (and the running means after them) apart without
                    // changing the function; fused_batchnorm_activation_trains_like_the_unfused_pair
                    // compares everything on a net without such biases.
                    if k < 3 {
                        let f = |v: &[u32]| v.iter().map(|&b| f32::from_bits(b)).collect::<Vec<f32>>();
                        let want: Vec<f64> = f(a).iter().map(|&v| v as f64).collect();
                        mien::reference::assert_close(&format!("{}: loss of step {} with {what}", spec.name, k + 1), &f(b), &want, 1e-4, 1e-4);
                    }
                } else {
                    assert!(a == b, "{}: result {k} differs with {what}", spec.name);
                }
            }
            for (k, (a, b)) in plain_eval.iter().zip(other_eval).enumerate() {
                if per_element && !input_grad && what.contains("fusion") {
                    break; // the running means lag those biases (below)
                }
                let want: Vec<f64> = a.iter().map(|&v| v as f64).collect();
                mien::reference::assert_close(&format!("{}: evaluation result {k} (folded BN, {what})", spec.name), b, &want, 1e-5, 1e-5);
            }
        }
        // Fusion drops the BatchNorm outputs' gradients and keeps the outputs only for their
        // forward steps (not with input gradients: then nothing fuses).
        assert!(fused_mem.unshared_bytes <= shared_mem.unshared_bytes && fused_mem.allocated_bytes <= shared_mem.allocated_bytes, "{}: {fused_mem:?}", spec.name);
        assert_eq!(fused_mem == shared_mem, input_grad, "{}: fused {fused_mem:?}", spec.name);
        let has_conv_bn = spec.layers.windows(2).any(|w| matches!(w, [LayerSpec::Conv2d { .. }, LayerSpec::BatchNorm { .. }]));
        assert_eq!((plain_infer, shared_infer > 0), (0, has_conv_bn), "{}: folded conv + BN pairs without / with reuse", spec.name);
        assert_eq!(plain_mem.allocated_bytes, plain_mem.unshared_bytes);
        assert_eq!((plain_mem.arenas, plain_mem.unshared_bytes), (0, shared_mem.unshared_bytes));
        assert!(shared_mem.allocated_bytes < plain_mem.allocated_bytes, "{}: {shared_mem:?}", spec.name);
    }
}

/// seed-cnn's activations and gradients take much less memory with reuse (batch 2 here;
/// the benchmark reports batch 128), and the GPU allocates exactly what the plan says.
#[test]
fn reuse_cuts_seed_cnn_activation_memory() {
    let gpu = gpu!();
    let spec = ModelSpec::preset("seed-cnn", CLASSES).unwrap();
    let build = |reuse, fuse| Network::build(gpu, &spec, [1, 48, 48], CLASSES, 2, BuildOptions { input_grad: false, reuse, fuse, fuse_stats: fuse, fuse_pool: fuse, precision: Precision::F32 }).unwrap();
    let (plain, shared, fused) = (build(false, false).activation_memory(), build(true, false).activation_memory(), build(true, true).activation_memory());
    eprintln!("seed-cnn batch 2: without reuse {plain:?}, with {shared:?}, with training fusion {fused:?}");
    // Floor: after the second 64-channel PReLU's backward, the five 64x48x48 tensors the
    // first block's backward still reads plus two gradients are alive: 7 of the 12 that
    // block allocates without reuse, before counting the deeper blocks.
    assert!((shared.allocated_bytes as f64) < 0.45 * plain.allocated_bytes as f64, "{shared:?} vs {plain:?}");
    let per = 2 * 64 * 48 * 48 * 4u64;
    assert!(shared.live_peak_bytes >= 7 * per && shared.allocated_bytes >= shared.live_peak_bytes, "{shared:?}");
    // The greedy packing stays near the liveness floor.
    assert!((shared.allocated_bytes as f64) < 1.4 * shared.live_peak_bytes as f64, "{shared:?}");
    // Training fusion (BatchNorm + PReLU): the BatchNorm outputs are no longer kept for the
    // backward, nor their gradients allocated: per 64-channel block two tensors fewer.
    assert!(fused.live_peak_bytes + 2 * per <= shared.live_peak_bytes, "{fused:?} vs {shared:?}");
    assert!(fused.allocated_bytes < shared.allocated_bytes && (fused.allocated_bytes as f64) < 1.4 * fused.live_peak_bytes as f64, "{fused:?}");
}

/// Peak bytes at batch 128 (what the memory benchmark reports, without parameters and
/// optimizer state): `cargo test --release --test network -- --ignored --nocapture`.
#[test]
#[ignore]
fn report_activation_memory_at_batch_128() {
    let gpu = gpu!();
    for model in ["small", "seed-cnn", "seed-dnn"] {
        let spec = ModelSpec::preset(model, CLASSES).unwrap();
        for (reuse, fuse, fuse_pool) in [(false, false, false), (true, false, false), (true, true, false), (true, true, true)] {
            let m = Network::build(gpu, &spec, [1, 48, 48], CLASSES, 128, BuildOptions { input_grad: false, reuse, fuse, fuse_stats: fuse, fuse_pool, precision: Precision::F32 }).unwrap().activation_memory();
            let mib = |b: u64| b as f64 / (1 << 20) as f64;
            eprintln!(
                "{model} b128 reuse={reuse} fuse={fuse} fuse_pool={fuse_pool}: {} tensors, {:.1} MiB unshared, {:.1} MiB allocated in {} arenas, liveness floor {:.1} MiB",
                m.tensors,
                mib(m.unshared_bytes),
                mib(m.allocated_bytes),
                m.arenas,
                mib(m.live_peak_bytes)
            );
        }
    }
}

/// With reuse, `try_activation` refuses layers whose output shares memory; the logits never
/// share; without reuse every activation is readable.
#[test]
fn try_activation_refuses_shared_tensors() {
    let gpu = gpu!();
    let spec = ModelSpec::tiny_cnn(CLASSES);
    let shared = Network::build(gpu, &spec, [1, HW, HW], CLASSES, 2, BuildOptions::default()).unwrap();
    let plain = Network::build(gpu, &spec, [1, HW, HW], CLASSES, 2, BuildOptions::EXPLAIN).unwrap();
    let last = spec.layers.len() - 1;
    let e = shared.try_activation(1).expect_err("a shared activation").to_string();
    assert!(e.contains("shares memory") && e.contains(&shared.layers[1].name), "{e}");
    assert!(shared.try_activation(last).is_ok());
    assert!((0..=last).all(|i| plain.try_activation(i).is_ok()));
    assert!(plain.try_activation(last + 1).is_err());
}

/// Training fusion (src/nn/fuse.rs) against the unfused passes, 3 Adam steps with dropout
/// at batch 3, on a net with every pair kind: BatchNorm + per-channel PReLU on a vec4
/// BatchNorm (12x12), + LeakyReLU, + per-channel PReLU on a scalar one (5x5), + per-element
/// PReLU (5x5), + ReLU, and after a dense layer (S = 1) + per-element and + per-channel
/// PReLU. No activation kernel runs in the fused training pass. Per-channel PReLU's slope
/// gradient is summed in another order by the vec4 and per-row BatchNorm reductions, and
/// per-element PReLU's BatchNorm sums by the per-slope-column reduction (see
/// shaders/batchnorm.wgsl), so the two runs drift apart by rounding: losses, parameters,
/// gradients and running statistics agree within 1e-4 absolute + 1e-4 relative (seen on
/// lavapipe: 3e-4 of 1e-3 + |value|, the parameters Adam moved least).
/// The convs and dense layers before a BatchNorm have no bias: its gradient would be
/// rounding noise (the BatchNorm subtracts the batch mean) that Adam's normalised steps turn
/// into moves of up to lr, different for any two summation orders.
/// The same net with those pairs replaced (per-channel PReLU on the scalar BatchNorm,
/// per-element PReLU after the dense layer stay) is bit for bit, as are tiny-cnn and dnn in
/// `reusing_activation_memory_gives_bit_identical_training`.
#[test]
fn fused_batchnorm_activation_trains_like_the_unfused_pair() {
    use mien::nn::spec::{PaddingName, PaddingSpec, Pair};
    let gpu = gpu!();
    let conv = |filters, k, same| LayerSpec::Conv2d {
        filters,
        kernel: Pair::Square(k),
        stride: Pair::Square(1),
        padding: PaddingSpec::Named(if same { PaddingName::Same } else { PaddingName::Valid }),
        bias: false,
    };
    let bn = || LayerSpec::BatchNorm { eps: 1e-3, momentum: 0.9 };
    let per_channel = LayerSpec::Prelu { per_channel: true };
    let per_element = LayerSpec::Prelu { per_channel: false };
    let spec = |reordered: bool| ModelSpec {
        name: "fusable".into(),
        layers: [
            vec![conv(4, 3, true), bn(), if reordered { LayerSpec::Relu } else { per_channel.clone() }],
            vec![conv(6, 3, true), bn(), LayerSpec::LeakyRelu { alpha: 0.2 }],
            vec![LayerSpec::MaxPool { size: Pair::Square(2), stride: None, padding: PaddingSpec::Named(PaddingName::Valid) }],
            vec![conv(5, 2, false), bn(), per_channel.clone()],
            vec![conv(3, 3, true), bn(), if reordered { LayerSpec::Relu } else { per_element.clone() }],
            vec![conv(3, 3, true), bn(), LayerSpec::Relu],
            vec![LayerSpec::Flatten, LayerSpec::Dense { units: 10, bias: false }, bn(), per_element.clone()],
            vec![LayerSpec::Dense { units: 9, bias: false }, bn()],
            vec![if reordered { LayerSpec::LeakyRelu { alpha: 0.1 } } else { per_channel.clone() }],
            vec![LayerSpec::Dropout { rate: 0.3 }, LayerSpec::Dense { units: CLASSES, bias: true }],
        ]
        .concat(),
    };
    let batch = 3;
    for exact in [false, true] {
        let spec = spec(exact);
        let run = |fuse: bool| {
            let net = Network::build(gpu, &spec, [1, HW, HW], CLASSES, batch, BuildOptions { input_grad: false, reuse: true, fuse, fuse_stats: false, fuse_pool: false, precision: Precision::F32 }).unwrap();
            let labels: Vec<&str> = net.train_dispatches().map(|d| d.label.as_str()).collect();
            let acts = labels.iter().filter(|l| l.contains("relu_")).count();
            let fused = labels.iter().filter(|l| l.contains("_act")).count();
            assert_eq!((acts == 0, fused), (fuse, if fuse { 7 * 3 } else { 0 }), "fuse={fuse}: {labels:?}");
            let mut opt = Optimizer::new(gpu, "adam", adam(), &net.arena, &net.grads).unwrap();
            net.init(gpu, 11).unwrap();
            let mut out: Vec<Vec<f32>> = vec![];
            for step in 1..=3u64 {
                let (x, labels) = toy_batch(batch, 40 + step);
                net.set_batch(gpu, &x, &labels).unwrap();
                net.set_dropout_seed(gpu, step as u32);
                let update = opt.step(gpu, 0.01);
                gpu.run(net.train_dispatches().chain(std::iter::once(update))).unwrap();
                out.push(gpu.read(net.stats()).unwrap());
            }
            out.push(gpu.read(&net.grads).unwrap());
            out.push(gpu.read(&net.arena).unwrap());
            for (_, t) in &net.buffers {
                out.push(gpu.read(t).unwrap());
            }
            (out, labels.len(), net.activation_memory())
        };
        let (plain, plain_n, plain_mem) = run(false);
        let (fused, fused_n, fused_mem) = run(true);
        eprintln!("exact={exact}: {plain_n} -> {fused_n} training dispatches, {plain_mem:?} -> {fused_mem:?}");
        // Per pair the activation's forward and backward dispatches go (two backward for PReLU).
        let prelus = spec.layers.iter().filter(|l| matches!(l, LayerSpec::Prelu { .. })).count();
        assert_eq!(fused_n + 7 + 7 + prelus, plain_n);
        assert!(fused_mem.live_peak_bytes < plain_mem.live_peak_bytes);
        let mut worst = 0f64;
        for (k, (a, b)) in plain.iter().zip(&fused).enumerate() {
            if exact {
                assert!(bits(a) == bits(b), "result {k} differs with training fusion");
            } else {
                let want: Vec<f64> = a.iter().map(|&v| v as f64).collect();
                mien::reference::assert_close(&format!("result {k} fused vs unfused"), b, &want, 1e-4, 1e-4);
                worst = a.iter().zip(b).fold(worst, |w, (&p, &q)| w.max((p - q).abs() as f64 / (1e-3 + p.abs() as f64)));
            }
        }
        eprintln!("exact={exact}: worst |fused - unfused| / (1e-3 + |unfused|) = {worst:.2e}");
    }
}

/// Pool tails (src/nn/fuse.rs, `fuse_pool`): a training pair's forward also runs the 2x2 max
/// pool after its activation and the dropouts around it. On 24x24 inputs: PReLU, dropout,
/// pool, dropout (24 -> 12: three layers), per-element PReLU, pool, dropout (12 -> 6: two),
/// LeakyReLU, dropout, pool (6 -> 3: two), then a ReLU and pool over 3x3 planes, which the
/// tail cannot pair (odd: the layers' own kernels). Everything else the same (training
/// pairs and statistics fusion on in both), 3 Adam steps with fresh dropout masks give the
/// same bits with and without the tails: losses, gradients, parameters, running statistics;
/// evaluation equal to 1e-5; 7 forward dispatches fewer; no higher liveness floor.
#[test]
fn pool_tails_train_bit_for_bit_like_the_separate_layers() {
    use mien::nn::spec::{PaddingName, PaddingSpec, Pair};
    let gpu = gpu!();
    let conv = |filters| LayerSpec::Conv2d { filters, kernel: Pair::Square(3), stride: Pair::Square(1), padding: PaddingSpec::Named(PaddingName::Same), bias: false };
    let bn = || LayerSpec::BatchNorm { eps: 1e-3, momentum: 0.9 };
    let pool = || LayerSpec::MaxPool { size: Pair::Square(2), stride: None, padding: PaddingSpec::Named(PaddingName::Valid) };
    let drop = |rate| LayerSpec::Dropout { rate };
    let spec = ModelSpec {
        name: "pool-tails".into(),
        layers: [
            vec![conv(4), bn(), LayerSpec::Prelu { per_channel: true }, drop(0.2), pool(), drop(0.3)],
            vec![conv(5), bn(), LayerSpec::Prelu { per_channel: false }, pool(), drop(0.25)],
            vec![conv(6), bn(), LayerSpec::LeakyRelu { alpha: 0.2 }, drop(0.4), pool()],
            vec![conv(3), bn(), LayerSpec::Relu, pool()],
            vec![LayerSpec::Flatten, LayerSpec::Dense { units: CLASSES, bias: true }],
        ]
        .concat(),
    };
    let (side, batch) = (24, 3);
    let run = |fuse_pool: bool| {
        let net = Network::build(gpu, &spec, [1, side, side], CLASSES, batch, BuildOptions { input_grad: false, reuse: true, fuse: true, fuse_stats: true, fuse_pool, precision: Precision::F32 }).unwrap();
        let labels: Vec<&str> = net.train_dispatches().map(|d| d.label.as_str()).collect();
        let tails = labels.iter().filter(|l| l.ends_with("batchnorm_forward_train_act_pool")).count();
        assert_eq!(tails, if fuse_pool { 3 } else { 0 }, "fuse_pool={fuse_pool}: {labels:?}");
        let mut opt = Optimizer::new(gpu, "adam", adam(), &net.arena, &net.grads).unwrap();
        net.init(gpu, 5).unwrap();
        let mut out: Vec<Vec<u32>> = vec![];
        let mut rng = Rng::new(17);
        for step in 1..=3u32 {
            let x = rng.vec_f32(batch * side * side, -1.0, 1.0);
            let labels: Vec<u32> = (0..batch).map(|i| ((i + step as usize) % CLASSES) as u32).collect();
            net.set_batch(gpu, &x, &labels).unwrap();
            net.set_dropout_seed(gpu, 100 + step);
            let update = opt.step(gpu, 0.01);
            gpu.run(net.train_dispatches().chain(std::iter::once(update))).unwrap();
            out.push(bits(&gpu.read(net.stats()).unwrap()));
        }
        out.push(bits(&gpu.read(&net.grads).unwrap()));
        out.push(bits(&gpu.read(&net.arena).unwrap()));
        for (_, t) in &net.buffers {
            out.push(bits(&gpu.read(t).unwrap()));
        }
        gpu.run(net.eval_dispatches()).unwrap();
        let probs = gpu.read(net.probabilities()).unwrap();
        (out, probs, labels.len(), net.activation_memory())
    };
    let (plain, plain_probs, plain_n, plain_mem) = run(false);
    let (fused, fused_probs, fused_n, fused_mem) = run(true);
    eprintln!("{plain_n} -> {fused_n} training dispatches; activation memory {plain_mem:?} -> {fused_mem:?}");
    assert_eq!(plain_n - fused_n, 3 + 2 + 2, "the tails' pool and dropout forwards");
    assert_eq!(plain.len(), fused.len());
    for (k, (a, b)) in plain.iter().zip(&fused).enumerate() {
        assert!(a == b, "result {k} differs with pool tails");
    }
    // Evaluation folds conv + BatchNorm where the memory plan lets it (src/nn/fuse.rs), and
    // the plans differ: the same function, rounded differently.
    mien::reference::assert_close("evaluation with pool tails", &fused_probs, &mien::reference::f64s(&plain_probs), 1e-5, 1e-5);
    // The tails write their outputs early, but what lives only in between is inference
    // tensors (src/nn/memory.rs): the liveness floor does not grow.
    assert!(fused_mem.live_peak_bytes <= plain_mem.live_peak_bytes, "{fused_mem:?} vs {plain_mem:?}");
}

/// Statistics fusion (src/nn/fuse.rs, `fuse_stats`): the subgroup convs (12x12, W a multiple
/// of 4) write their BatchNorm's batch statistics as per-workgroup partials, merged by
/// batchnorm_stats_partials; the conv at 6x6 (no subgroup kernel) leaves its BatchNorm the
/// usual statistics pass. The partials sum in another order than the BatchNorm's two passes,
/// so 3 Adam steps agree with the unfused statistics within 1e-4 absolute + 1e-4 relative
/// (losses, parameters, gradients, running statistics), not bit for bit. Convs without bias
/// (their gradient before a BatchNorm would be rounding noise that Adam amplifies).
#[test]
fn conv_epilogue_statistics_train_like_the_batchnorm_pass() {
    use mien::nn::spec::{PaddingName, PaddingSpec, Pair};
    let gpu = gpu!();
    let conv = |filters| LayerSpec::Conv2d { filters, kernel: Pair::Square(3), stride: Pair::Square(1), padding: PaddingSpec::Named(PaddingName::Same), bias: false };
    let bn = || LayerSpec::BatchNorm { eps: 1e-3, momentum: 0.9 };
    let pool = LayerSpec::MaxPool { size: Pair::Square(2), stride: None, padding: PaddingSpec::Named(PaddingName::Valid) };
    let spec = ModelSpec {
        name: "stats".into(),
        layers: vec![
            conv(5),
            bn(),
            LayerSpec::Prelu { per_channel: false },
            conv(9),
            bn(),
            LayerSpec::Relu,
            pool,
            conv(3),
            bn(),
            LayerSpec::LeakyRelu { alpha: 0.2 },
            LayerSpec::Flatten,
            LayerSpec::Dense { units: CLASSES, bias: true },
        ],
    };
    let sg = gpu.subgroup_min_size() >= Some(mien::nn::conv2d::subgroup::MIN_LANES);
    assert!(sg || !gpu.info().name.contains("llvmpipe"), "lavapipe offers 8-lane subgroups");
    let batch = 3;
    let run = |fuse_stats: bool| {
        let net = Network::build(gpu, &spec, [1, HW, HW], CLASSES, batch, BuildOptions { input_grad: false, reuse: true, fuse: true, fuse_stats, fuse_pool: false, precision: Precision::F32 }).unwrap();
        let labels: Vec<&str> = net.train_dispatches().map(|d| d.label.as_str()).collect();
        let count = |s: &str| labels.iter().filter(|l| l.ends_with(s)).count();
        let want = if fuse_stats && sg { (2, 1) } else { (0, 3) };
        assert_eq!((count("batchnorm_stats_partials"), count("batchnorm_stats") + count("batchnorm_stats4")), want, "fuse_stats={fuse_stats}: {labels:?}");
        let mut opt = Optimizer::new(gpu, "adam", adam(), &net.arena, &net.grads).unwrap();
        net.init(gpu, 13).unwrap();
        let mut out: Vec<Vec<f32>> = vec![];
        for step in 1..=3u64 {
            let (x, labels) = toy_batch(batch, 60 + step);
            net.set_batch(gpu, &x, &labels).unwrap();
            let update = opt.step(gpu, 0.01);
            gpu.run(net.train_dispatches().chain(std::iter::once(update))).unwrap();
            out.push(gpu.read(net.stats()).unwrap());
        }
        out.push(gpu.read(&net.grads).unwrap());
        out.push(gpu.read(&net.arena).unwrap());
        for (_, t) in &net.buffers {
            out.push(gpu.read(t).unwrap());
        }
        out
    };
    let (plain, fused) = (run(false), run(true));
    for (k, (a, b)) in plain.iter().zip(&fused).enumerate() {
        let want: Vec<f64> = a.iter().map(|&v| v as f64).collect();
        mien::reference::assert_close(&format!("result {k}: statistics from the conv vs the BatchNorm pass"), b, &want, 1e-4, 1e-4);
    }
}

/// Explaining through a training network whose activation is fused into its BatchNorm is
/// refused with the reason and the fix (input gradients turn fusion off).
#[test]
fn explaining_a_fused_training_network_names_the_fused_layer() {
    use mien::nn::spec::{PaddingName, PaddingSpec, Pair};
    let gpu = gpu!();
    let conv = LayerSpec::Conv2d { filters: 4, kernel: Pair::Square(3), stride: Pair::Square(1), padding: PaddingSpec::Named(PaddingName::Same), bias: false };
    let layers = vec![conv, LayerSpec::BatchNorm { eps: 1e-3, momentum: 0.9 }, LayerSpec::Relu, LayerSpec::Flatten, LayerSpec::Dense { units: CLASSES, bias: true }];
    let spec = ModelSpec { name: "fused".into(), layers };
    let net = Network::build(gpu, &spec, [1, HW, HW], CLASSES, 2, BuildOptions { input_grad: false, reuse: true, fuse: true, fuse_stats: true, fuse_pool: true, precision: Precision::F32 }).unwrap();
    if !mien::nn::fuse::fits(gpu) {
        panic!("this adapter cannot bind the fused kernels (lavapipe can): the test needs fusion on");
    }
    let e = net.explain_backward(gpu, 4, 2).err().expect("no gradient at the fused activation's input").to_string();
    assert!(e.contains("relu_1") && e.contains("fused") && e.contains("input_grad: true"), "{e}");
    let e = net.explain_backward(gpu, 4, 0).err().unwrap().to_string();
    assert!(e.contains("input_grad: true"), "{e}");
}

/// Mixed precision: every conv and dense pass runs the coop kernels (their plain-WGSL build
/// on lavapipe), the training build scales the loss, and five Adam steps follow the f64
/// reference within the f16 operands' rounding (loss within 0.2%; 4e-4 seen). A
/// twin from `build_like` shares the precision but has no loss scale of its own.
#[test]
fn mixed_precision_steps_follow_the_reference() {
    use mien::nn::conv2d::{Conv2d, ConvVariant};
    use mien::nn::dense::{Dense, DenseVariant};
    let gpu = gpu!();
    let net = steps_follow_the_reference(gpu, &ModelSpec::tiny_cnn(CLASSES), 32, Precision::Mixed, 2e-3);
    assert_eq!(net.precision, Precision::Mixed);
    for l in &net.layers {
        if let Some(c) = l.op.as_any().downcast_ref::<Conv2d>() {
            assert_eq!(c.variants(), [ConvVariant::Coop; 3], "layer {}", l.name);
        }
        if let Some(d) = l.op.as_any().downcast_ref::<Dense>() {
            assert_eq!(d.variants(), [DenseVariant::Coop; 3], "layer {}", l.name);
        }
    }
    let s = net.loss_scale().expect("a mixed training build scales its loss").read(gpu).unwrap();
    assert_eq!((s.applied, s.skipped, s.scale), (5, 0, mien::nn::loss_scale::INITIAL_SCALE), "no overflow at the initial scale here");
    let twin = net.build_like(gpu, 5, BuildOptions::default()).unwrap();
    assert_eq!(twin.precision, Precision::Mixed);
    assert!(twin.loss_scale().is_none());
}
