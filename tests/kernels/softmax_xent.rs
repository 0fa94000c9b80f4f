use crate::common::{rand, read, up, zeros, ATOL, RTOL};
use crate::gpu;
use mien::gpu::Gpu;
use mien::nn::softmax_xent::SoftmaxXent;
use mien::reference::{assert_close, f64s, softmax_xent as r};
use mien::rng::Rng;

struct Out {
    losses: Vec<f32>,
    correct: Vec<u32>,
    dlogits: Vec<f32>,
    stats: Vec<f32>,
    probs: Vec<f32>,
}

/// Run all three kernels on `logits` [N, K] with `labels`.
fn run(gpu: &Gpu, name: &str, logits: &[f32], labels: &[u32], k: usize, total: usize) -> Out {
    let n = labels.len();
    let layer = SoftmaxXent::new(gpu, name, &[n, k], total).unwrap();
    assert_eq!((layer.batch, layer.classes), (n, k));
    let tl = up(gpu, "logits", &[n, k], logits);
    let tlab = gpu.upload("labels", &[n], labels).unwrap();
    // Garbage everywhere: every kernel overwrites.
    let tdl = up(gpu, "dlogits", &[n, k], &vec![9.0; n * k]);
    let tloss = up(gpu, "losses", &[n], &vec![9.0; n]);
    let tcor = gpu.upload("correct", &[n], &vec![9u32; n]).unwrap();
    let tstats = up(gpu, "stats", &[2], &[9.0, 9.0]);
    let tprobs = up(gpu, "probs", &[n, k], &vec![9.0; n * k]);
    let steps = [
        layer.forward_backward(gpu, &tdl, &tloss, &tcor, &tl, &tlab).unwrap(),
        layer.reduce(gpu, &tstats, &tloss, &tcor).unwrap(),
        layer.probabilities(gpu, &tprobs, &tl).unwrap(),
    ];
    gpu.run(&steps).unwrap();
    Out {
        losses: read(gpu, &tloss),
        correct: gpu.read_u32(&tcor).unwrap(),
        dlogits: read(gpu, &tdl),
        stats: read(gpu, &tstats),
        probs: read(gpu, &tprobs),
    }
}

fn check(gpu: &Gpu, what: &str, logits: &[f32], labels: &[u32], k: usize, total: usize) {
    let n = labels.len();
    let what = format!("{what} N={n} K={k} total={total}");
    let l64 = f64s(logits);
    let got = run(gpu, "xent", logits, labels, k, total);
    let (losses, correct, probs) = r::forward(&l64, labels, k);
    let dl = r::backward(&l64, labels, k, 1.0 / total as f64);
    let stats = r::reduce(&losses, &correct);
    assert_close(&format!("{what} losses"), &got.losses, &losses, ATOL, RTOL);
    assert_eq!(got.correct, correct, "{what} correct");
    assert_close(&format!("{what} dlogits"), &got.dlogits, &dl, ATOL, RTOL);
    assert_close(&format!("{what} probs"), &got.probs, &probs, ATOL, RTOL);
    assert_close(&format!("{what} stats"), &got.stats, &stats, ATOL, RTOL);
}

fn labels(rng: &mut Rng, n: usize, k: usize) -> Vec<u32> {
    (0..n).map(|_| rng.below(k) as u32).collect()
}

#[test]
fn softmax_xent_matches_reference() {
    let gpu = gpu!();
    let mut rng = Rng::new(41);
    // N: batch 1, not a multiple of the 64-wide workgroup, more than the reduction's 256
    // invocations. K: 1, 2, 7 (the FER classes), 67.
    for (n, k) in [(1usize, 7usize), (3, 7), (130, 7), (300, 7), (5, 1), (6, 2), (1, 2), (33, 67)] {
        let (logits, _) = rand(&mut rng, n * k);
        let logits: Vec<f32> = logits.iter().map(|v| 4.0 * v).collect();
        let lab = labels(&mut rng, n, k);
        check(gpu, "random", &logits, &lab, k, n);
        // A chunk of a bigger batch: gradients scaled by 1 / total.
        check(gpu, "chunk", &logits, &lab, k, 3 * n + 1);
    }
}

#[test]
fn softmax_xent_huge_logits_and_ties() {
    let gpu = gpu!();
    let mut rng = Rng::new(42);
    let (n, k) = (20usize, 7usize);
    let (logits, _) = rand(&mut rng, n * k);
    let mut logits: Vec<f32> = logits.iter().map(|v| 1e4 * v).collect();
    // Rows of +-1e4 only, and a row tied at the max: argmax is the lowest index.
    for (j, v) in logits[..k].iter_mut().enumerate() {
        *v = if j % 2 == 0 { 1e4 } else { -1e4 };
    }
    let mut lab = labels(&mut rng, n, k);
    lab[0] = 0;
    lab[1] = 2; // a tied max that is not the first: not counted as correct
    logits.copy_within(..k, k);
    let got = run(gpu, "xent", &logits, &lab, k, n);
    assert!(got.losses.iter().chain(&got.dlogits).chain(&got.probs).chain(&got.stats).all(|v| v.is_finite()));
    assert_eq!(&got.correct[..2], &[1, 0]);
    // Losses up to ~2e4: rtol 1e-4 of that is the f32 resolution budget.
    check(gpu, "+-1e4", &logits, &lab, k, n);
}

#[test]
fn softmax_xent_flags_out_of_range_labels() {
    let gpu = gpu!();
    let (k, n) = (3usize, 4usize);
    let logits = [0.5f32, 2.0, -1.0, 1.0, 1.0, 1.0, 3.0, 0.0, 0.0, -2.0, 0.0, 2.0];
    let lab = [1u32, 3, 0, 2];
    let got = run(gpu, "xent", &logits, &lab, k, n);
    assert!(got.losses[1].is_nan(), "label 3 of 3 classes: loss {}", got.losses[1]);
    assert_eq!(got.correct[1], 0);
    assert_eq!(&got.dlogits[3..6], &[0.0, 0.0, 0.0]);
    assert!(got.stats[0].is_nan(), "mean loss with a bad label: {}", got.stats[0]);
    // Other samples are unaffected.
    let (losses, correct, _) = r::forward(&f64s(&logits), &lab, k);
    assert_eq!(got.correct, correct);
    assert_eq!(got.stats[1], 3.0);
    for i in [0, 2, 3] {
        assert!((got.losses[i] as f64 - losses[i]).abs() < 1e-5);
    }
}

#[test]
fn softmax_xent_wrong_shapes_are_errors_naming_the_layer() {
    let gpu = gpu!();
    let e = err(SoftmaxXent::new(gpu, "loss", &[4, 7, 2], 4));
    assert!(e.contains("loss") && e.contains("[N, K]"), "{e}");
    let e = err(SoftmaxXent::new(gpu, "loss", &[4, 7], 3));
    assert!(e.contains("loss") && e.contains("total_batch"), "{e}");
    let layer = SoftmaxXent::new(gpu, "loss", &[4, 7, 1, 1], 8).unwrap();
    let (logits, dl) = (zeros(gpu, "logits", &[4, 7]), zeros(gpu, "dlogits", &[4, 7]));
    let (losses, correct, labels) = (zeros(gpu, "losses", &[4]), zeros(gpu, "correct", &[4]), zeros(gpu, "labels", &[4]));
    layer.forward_backward(gpu, &dl, &losses, &correct, &logits, &labels).unwrap();
    let e = err(layer.forward_backward(gpu, &dl, &losses, &correct, &zeros(gpu, "logits", &[4, 6]), &labels));
    assert!(e.contains("loss") && e.contains("logits") && e.contains("28"), "{e}");
    let e = err(layer.forward_backward(gpu, &dl, &losses, &correct, &logits, &zeros(gpu, "labels", &[5])));
    assert!(e.contains("loss") && e.contains("labels"), "{e}");
    let e = err(layer.reduce(gpu, &zeros(gpu, "stats", &[3]), &losses, &correct));
    assert!(e.contains("loss") && e.contains("stats"), "{e}");
    let e = err(layer.probabilities(gpu, &zeros(gpu, "probs", &[4, 8]), &logits));
    assert!(e.contains("loss") && e.contains("probabilities"), "{e}");
}

/// The error message of a call that must fail.
fn err<T>(r: mien::Result<T>) -> String {
    match r {
        Ok(_) => panic!("expected an error"),
        Err(e) => e.to_string(),
    }
}
