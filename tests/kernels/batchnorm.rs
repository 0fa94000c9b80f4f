use crate::common::{rand, read, up, zeros, ATOL, RTOL};
use crate::gpu;
use mien::gpu::Gpu;
use mien::nn::batchnorm::{BatchNorm, BatchNormConfig};
use mien::reference::{assert_close, batchnorm as r, f64s};
use mien::rng::Rng;

/// Batch 1 with spatial > 1, odd spatial 7x5, dense [N, F] (S = 1), 1 / 3 / 64+ channels,
/// per-channel counts (M = N*S) below, above and not a multiple of the 256-wide workgroup
/// (572, 969), element counts that are not multiples of 256, and M = 1 ([1, F]: zero
/// variance, y = beta, dx = 0). The last three take the vec4 kernels (S % 4 == 0): batch 1,
/// M / 4 = 255 (not a multiple of the workgroup), 65 channels.
const SHAPES: &[&[usize]] = &[
    &[1, 3, 4, 4],
    &[5, 2, 17, 12],
    &[2, 65, 2, 4],
    &[1, 4],
    &[1, 3, 7, 5],
    &[2, 1, 7, 5],
    &[5, 17],
    &[2, 64, 3, 3],
    &[3, 65, 5, 7],
    &[4, 1, 13, 11],
    &[3, 2, 17, 19],
];

/// Host copies (f32 as uploaded, and the same values in f64) of one layer's inputs.
struct Case {
    shape: Vec<usize>,
    c: usize,
    s: usize,
    x: Vec<f32>,
    dy: Vec<f32>,
    gamma: Vec<f32>,
    beta: Vec<f32>,
    rm: Vec<f32>,
    rv: Vec<f32>,
}

impl Case {
    fn new(rng: &mut Rng, shape: &[usize], offset: f32) -> Case {
        let n: usize = shape.iter().product();
        let (c, s) = (shape[1], shape[2..].iter().product::<usize>());
        let x = rand(rng, n).0.into_iter().map(|v| v + offset).collect();
        let dy = rand(rng, n).0;
        let gamma = rng.vec_f32(c, 0.5, 1.5);
        let beta = rand(rng, c).0;
        let rm = rand(rng, c).0;
        let rv = rng.vec_f32(c, 0.5, 1.5);
        Case { shape: shape.to_vec(), c, s, x, dy, gamma, beta, rm, rv }
    }
    fn m(&self) -> usize {
        self.x.len() / self.c
    }
}

/// GPU tensors for a case.
struct Tensors {
    x: mien::Tensor,
    dy: mien::Tensor,
    gamma: mien::Tensor,
    beta: mien::Tensor,
    rm: mien::Tensor,
    rv: mien::Tensor,
    saved: mien::Tensor,
    y: mien::Tensor,
    dx: mien::Tensor,
    dgamma: mien::Tensor,
    dbeta: mien::Tensor,
}

impl Tensors {
    fn new(gpu: &Gpu, k: &Case) -> Tensors {
        let c = [k.c];
        Tensors {
            x: up(gpu, "x", &k.shape, &k.x),
            dy: up(gpu, "dy", &k.shape, &k.dy),
            gamma: up(gpu, "gamma", &c, &k.gamma),
            beta: up(gpu, "beta", &c, &k.beta),
            rm: up(gpu, "running_mean", &c, &k.rm),
            rv: up(gpu, "running_var", &c, &k.rv),
            saved: zeros(gpu, "saved", &[2, k.c]),
            y: zeros(gpu, "y", &k.shape),
            dx: zeros(gpu, "dx", &k.shape),
            dgamma: zeros(gpu, "dgamma", &c),
            dbeta: zeros(gpu, "dbeta", &c),
        }
    }
}

/// Tolerances of one `check_all` run.
struct Tol {
    /// Saved batch mean vs the exact f64 mean: (atol, rtol).
    mean: (f64, f64),
    /// Saved inv_std vs exact.
    inv_std: (f64, f64),
    /// y and dx vs the reference with exact statistics (end to end).
    y_dx: (f64, f64),
    /// dgamma / dbeta vs the reference with exact statistics, given M.
    dparam: fn(usize) -> (f64, f64),
}

/// Training forward, inference forward and backward of every shape against the reference;
/// `offset` shifts the inputs (large mean). Everything computed from the GPU's own saved
/// statistics (y, dx, dgamma, dbeta) is also checked at ATOL / RTOL against the reference
/// fed those same f32 statistics, which isolates the kernels' arithmetic from the rounding
/// of the statistics themselves.
fn check_all(gpu: &Gpu, rng: &mut Rng, shapes: &[&[usize]], offset: f32, tol: Tol) {
    let cfg = BatchNormConfig::default();
    let (eps, mom) = (cfg.eps as f64, cfg.momentum as f64);
    for shape in shapes {
        let k = Case::new(rng, shape, offset);
        let t = Tensors::new(gpu, &k);
        let bn = BatchNorm::new(gpu, "bn", cfg, shape).unwrap();
        assert_eq!(bn.channels(), k.c);
        let mut steps = bn.forward_train(gpu, &t.x, &t.gamma, &t.beta, &t.rm, &t.rv, &t.saved, &t.y).unwrap();
        steps.extend(bn.backward(gpu, &t.dx, &t.dgamma, &t.dbeta, &t.dy, &t.x, &t.gamma, &t.saved, false).unwrap());
        gpu.run(&steps).unwrap();

        let (x, g, b, dy) = (f64s(&k.x), f64s(&k.gamma), f64s(&k.beta), f64s(&k.dy));
        let f = r::forward_train(&x, &g, &b, &f64s(&k.rm), &f64s(&k.rv), k.s, eps, mom);
        let what = |w: &str| format!("{w} {shape:?} offset {offset}");
        let saved = read(gpu, &t.saved);
        let (gpu_mean, gpu_inv_std) = (f64s(&saved[..k.c]), f64s(&saved[k.c..]));
        assert_close(&what("saved mean"), &saved[..k.c], &f.mean, tol.mean.0, tol.mean.1);
        assert_close(&what("saved inv_std"), &saved[k.c..], &f.inv_std, tol.inv_std.0, tol.inv_std.1);
        assert_close(&what("running mean"), &read(gpu, &t.rm), &f.running_mean, ATOL, RTOL);
        assert_close(&what("running var"), &read(gpu, &t.rv), &f.running_var, ATOL, RTOL);

        let (y, dx, dgamma, dbeta) = (read(gpu, &t.y), read(gpu, &t.dx), read(gpu, &t.dgamma), read(gpu, &t.dbeta));
        // End to end, against exact statistics.
        let (want_dx, want_dg, want_db) = r::backward(&dy, &x, &g, &f.mean, &f.inv_std, k.s);
        let (yt, dt) = (tol.y_dx, (tol.dparam)(k.m()));
        assert_close(&what("train y"), &y, &f.y, yt.0, yt.1);
        assert_close(&what("dx"), &dx, &want_dx, yt.0, yt.1);
        assert_close(&what("dgamma"), &dgamma, &want_dg, dt.0, dt.1);
        assert_close(&what("dbeta"), &dbeta, &want_db, dt.0, dt.1);
        // Kernel arithmetic, against the GPU's own statistics.
        let want_y = r::normalize(&x, &g, &b, &gpu_mean, &gpu_inv_std, k.s);
        let (want_dx, want_dg, want_db) = r::backward(&dy, &x, &g, &gpu_mean, &gpu_inv_std, k.s);
        assert_close(&what("train y (GPU stats)"), &y, &want_y, ATOL, RTOL);
        assert_close(&what("dx (GPU stats)"), &dx, &want_dx, ATOL, RTOL);
        assert_close(&what("dgamma (GPU stats)"), &dgamma, &want_dg, ATOL, RTOL);
        assert_close(&what("dbeta (GPU stats)"), &dbeta, &want_db, ATOL, RTOL);

        // Inference with the updated running statistics (read back, so exactly what the GPU
        // holds).
        let (rm, rv) = (read(gpu, &t.rm), read(gpu, &t.rv));
        gpu.run(&[bn.forward_infer(gpu, &t.x, &t.gamma, &t.beta, &t.rm, &t.rv, &t.y).unwrap()]).unwrap();
        let want = r::forward_infer(&x, &g, &b, &f64s(&rm), &f64s(&rv), k.s, eps);
        assert_close(&what("infer y"), &read(gpu, &t.y), &want, ATOL, RTOL);
    }
}

#[test]
fn batchnorm_matches_reference() {
    let gpu = gpu!();
    let mut rng = Rng::new(21);
    let strict = (ATOL, RTOL);
    check_all(gpu, &mut rng, SHAPES, 0.0, Tol { mean: strict, inv_std: strict, y_dx: strict, dparam: |_| (ATOL, RTOL) });
}

#[test]
fn batchnorm_statistics_are_stable_for_a_large_mean() {
    // x = 1000 + U(-1, 1). A one-pass E[x^2] - E[x]^2 in f32 would lose the variance (~0.33)
    // entirely to cancellation against 1e6; the shifted two-pass kernel keeps inv_std to
    // f32 precision (checked to 1e-5 relative, seen ~1e-7).
    // The mean itself is stored as f32, whose ulp at 1000 is 2^-14 = 6.1e-5: it can be off
    // by half an ulp (checked to within one ulp). That rounding d shifts every xhat of the
    // channel by d * inv_std <= 5.3e-5, so end to end (vs exact statistics):
    // y is off by up to gamma * 5.3e-5 <= 8e-5 (atol 2e-4); dgamma by d * inv_std * sum dy,
    // with |sum dy| ~ 0.58 sqrt(M) for U(-1, 1) dy (atol 2e-4 * sqrt(M), ~3 sigma of margin).
    // dx and dbeta do not depend on that shift to first order. check_all also verifies all
    // of them at ATOL / RTOL against the reference fed the GPU's own f32 statistics.
    let gpu = gpu!();
    let mut rng = Rng::new(22);
    let shapes: &[&[usize]] = &[&[4, 3, 9, 7], &[64, 5], &[1, 2, 7, 5], &[3, 1, 17, 19]];
    let tol = Tol {
        mean: (2f64.powi(-14), 0.0),
        inv_std: (0.0, 1e-5),
        y_dx: (2e-4, RTOL),
        dparam: |m| (2e-4 * (m as f64).sqrt(), RTOL),
    };
    check_all(gpu, &mut rng, shapes, 1000.0, tol);
}

#[test]
fn running_statistics_update_every_step() {
    let gpu = gpu!();
    let mut rng = Rng::new(23);
    let shape = [3usize, 5, 7, 5];
    let k = Case::new(&mut rng, &shape, 0.25);
    let t = Tensors::new(gpu, &k);
    let cfg = BatchNormConfig { eps: 1e-5, momentum: 0.9 };
    let bn = BatchNorm::new(gpu, "bn", cfg, &shape).unwrap();
    let steps = bn.forward_train(gpu, &t.x, &t.gamma, &t.beta, &t.rm, &t.rv, &t.saved, &t.y).unwrap();
    // Replaying the same dispatches three times applies the momentum rule three times.
    let (x, g, b) = (f64s(&k.x), f64s(&k.gamma), f64s(&k.beta));
    let (mut rm, mut rv) = (f64s(&k.rm), f64s(&k.rv));
    for step in 0..3 {
        gpu.run(&steps).unwrap();
        let f = r::forward_train(&x, &g, &b, &rm, &rv, k.s, 1e-5, 0.9);
        (rm, rv) = (f.running_mean, f.running_var);
        assert_close(&format!("running mean after {} steps", step + 1), &read(gpu, &t.rm), &rm, ATOL, RTOL);
        assert_close(&format!("running var after {} steps", step + 1), &read(gpu, &t.rv), &rv, ATOL, RTOL);
        assert_close(&format!("train y step {}", step + 1), &read(gpu, &t.y), &f.y, ATOL, RTOL);
    }
}

#[test]
fn parameter_gradients_accumulate_and_dx_uses_its_own_batch() {
    let gpu = gpu!();
    let mut rng = Rng::new(24);
    let cfg = BatchNormConfig::default();
    // Two batch chunks of one step, each normalized by its own statistics (what a chunked
    // step computes): dgamma / dbeta are the sums over chunks, each chunk's dx its own.
    let chunks = [Case::new(&mut rng, &[1, 3, 7, 5], 0.0), Case::new(&mut rng, &[2, 3, 7, 5], 0.0)];
    let (dgamma, dbeta) = (zeros(gpu, "dgamma", &[3]), zeros(gpu, "dbeta", &[3]));
    let (mut want_g, mut want_b) = (vec![0.0; 3], vec![0.0; 3]);
    for (i, k) in chunks.iter().enumerate() {
        let t = Tensors::new(gpu, k);
        // Same parameters for both chunks.
        let (g, b) = (f64s(&chunks[0].gamma), f64s(&chunks[0].beta));
        gpu.write(&t.gamma, &chunks[0].gamma).unwrap();
        gpu.write(&t.beta, &chunks[0].beta).unwrap();
        let bn = BatchNorm::new(gpu, "bn", cfg, &k.shape).unwrap();
        let mut steps = bn.forward_train(gpu, &t.x, &t.gamma, &t.beta, &t.rm, &t.rv, &t.saved, &t.y).unwrap();
        steps.extend(bn.backward(gpu, &t.dx, &dgamma, &dbeta, &t.dy, &t.x, &t.gamma, &t.saved, i > 0).unwrap());
        gpu.run(&steps).unwrap();
        let x = f64s(&k.x);
        let f = r::forward_train(&x, &g, &b, &f64s(&k.rm), &f64s(&k.rv), k.s, cfg.eps as f64, cfg.momentum as f64);
        let (dx, dg, db) = r::backward(&f64s(&k.dy), &x, &g, &f.mean, &f.inv_std, k.s);
        assert_close(&format!("chunk {i} dx"), &read(gpu, &t.dx), &dx, ATOL, RTOL);
        for ch in 0..3 {
            want_g[ch] += dg[ch];
            want_b[ch] += db[ch];
        }
        assert_close(&format!("dgamma after chunk {i}"), &read(gpu, &dgamma), &want_g, ATOL, RTOL);
        assert_close(&format!("dbeta after chunk {i}"), &read(gpu, &dbeta), &want_b, ATOL, RTOL);
    }

    // Once overwriting then once adding over the same batch gives exactly twice the sums,
    // and dx is the same both times: per-channel workgroups (S = 3) and, after a dense layer
    // (S = 1), the one-invocation-per-channel kernels.
    for shape in [&[2usize, 65, 3, 1][..], &[3, 65][..]] {
        let k = Case::new(&mut rng, shape, 0.0);
        let t = Tensors::new(gpu, &k);
        let bn = BatchNorm::new(gpu, "bn", cfg, &k.shape).unwrap();
        gpu.write(&t.dgamma, &vec![7.0f32; k.c]).unwrap();
        let mut steps = bn.forward_train(gpu, &t.x, &t.gamma, &t.beta, &t.rm, &t.rv, &t.saved, &t.y).unwrap();
        let backward = bn.backward(gpu, &t.dx, &t.dgamma, &t.dbeta, &t.dy, &t.x, &t.gamma, &t.saved, false).unwrap();
        assert_eq!(backward[0].label.ends_with("_rows"), shape.len() == 2, "{}", backward[0].label);
        steps.extend(backward);
        gpu.run(&steps).unwrap();
        let (g1, b1, dx1) = (read(gpu, &t.dgamma), read(gpu, &t.dbeta), read(gpu, &t.dx));
        gpu.run(&bn.backward(gpu, &t.dx, &t.dgamma, &t.dbeta, &t.dy, &t.x, &t.gamma, &t.saved, true).unwrap()).unwrap();
        let twice = |v: &[f32]| v.iter().map(|&a| 2.0 * a as f64).collect::<Vec<_>>();
        assert_close(&format!("dgamma accumulated twice {shape:?}"), &read(gpu, &t.dgamma), &twice(&g1), 1e-6, 1e-6);
        assert_close(&format!("dbeta accumulated twice {shape:?}"), &read(gpu, &t.dbeta), &twice(&b1), 1e-6, 1e-6);
        assert_close(&format!("dx unchanged by accumulate {shape:?}"), &read(gpu, &t.dx), &f64s(&dx1), 0.0, 0.0);
    }
}

#[test]
fn wrong_shapes_and_configs_are_errors_naming_the_layer() {
    let gpu = gpu!();
    let cfg = BatchNormConfig::default();
    let shape = [2usize, 3, 4, 5];
    let bn = BatchNorm::new(gpu, "block2.bn", cfg, &shape).unwrap();
    let x = zeros(gpu, "x", &shape);
    let y = zeros(gpu, "y", &shape);
    let c3 = zeros(gpu, "c3", &[3]);
    let c4 = zeros(gpu, "c4", &[4]);
    let saved = zeros(gpu, "saved", &[2, 3]);
    let has = |e: mien::Error, words: &[&str]| {
        let e = e.to_string();
        assert!(e.contains("block2.bn") && words.iter().all(|w| e.contains(w)), "{e}");
    };
    has(bn.forward_train(gpu, &x, &c4, &c3, &c3, &c3, &saved, &y).err().unwrap(), &["gamma", "[3]"]);
    has(bn.forward_train(gpu, &x, &c3, &c3, &c3, &c4, &saved, &y).err().unwrap(), &["running variance"]);
    has(bn.forward_train(gpu, &x, &c3, &c3, &c3, &c3, &c3, &y).err().unwrap(), &["saved", "[2, 3]"]);
    let bad_x = zeros(gpu, "x", &[2, 3, 5, 4]);
    has(bn.forward_train(gpu, &bad_x, &c3, &c3, &c3, &c3, &saved, &y).err().unwrap(), &["input", "[2, 3, 4, 5]"]);
    has(bn.forward_infer(gpu, &x, &c3, &c3, &c4, &c3, &y).err().unwrap(), &["running mean"]);
    has(bn.backward(gpu, &y, &c4, &c3, &y, &x, &c3, &saved, false).err().unwrap(), &["gamma gradient"]);
    let short = zeros(gpu, "dy", &[2, 3, 4]);
    has(bn.backward(gpu, &y, &c3, &c3, &short, &x, &c3, &saved, false).err().unwrap(), &["output gradient"]);
    has(BatchNorm::new(gpu, "block2.bn", cfg, &[5]).err().unwrap(), &["[5]"]);
    has(BatchNorm::new(gpu, "block2.bn", BatchNormConfig { eps: 0.0, momentum: 0.99 }, &shape).err().unwrap(), &["eps"]);
    has(BatchNorm::new(gpu, "block2.bn", BatchNormConfig { eps: 1e-3, momentum: 1.5 }, &shape).err().unwrap(), &["momentum"]);
}

#[test]
fn inference_forward_splits_a_huge_tensor_over_a_2d_grid() {
    // 3 * 2401 * 2401 = 17.29M elements > 65535 * 256: groups_1d needs a second dimension
    // (an odd plane keeps the scalar kernel; a vec4 grid that large would pass 128 MiB).
    let gpu = gpu!();
    let mut rng = Rng::new(25);
    let shape = [1usize, 3, 2401, 2401];
    let n: usize = shape.iter().product();
    let x = rng.vec_f32(n, -1.0, 1.0);
    let (gamma, beta, rm, rv) = ([0.5f32, -1.0, 2.0], [0.1f32, 0.2, -0.3], [0.25f32, -0.5, 0.0], [0.5f32, 1.0, 2.0]);
    let bn = BatchNorm::new(gpu, "bn", BatchNormConfig::default(), &shape).unwrap();
    let (tx, ty) = (up(gpu, "x", &shape, &x), zeros(gpu, "y", &shape));
    let (tg, tb, tm, tv) = (up(gpu, "g", &[3], &gamma), up(gpu, "b", &[3], &beta), up(gpu, "m", &[3], &rm), up(gpu, "v", &[3], &rv));
    let d = bn.forward_infer(gpu, &tx, &tg, &tb, &tm, &tv, &ty).unwrap();
    assert!(d.groups()[1] > 1, "expected a 2-D grid, got {:?}", d.groups());
    gpu.run(&[d]).unwrap();
    let want = r::forward_infer(&f64s(&x), &f64s(&gamma), &f64s(&beta), &f64s(&rm), &f64s(&rv), 2401 * 2401, 1e-3);
    assert_close("infer y (2-D grid)", &read(gpu, &ty), &want, ATOL, RTOL);
}

#[test]
fn inference_backward_matches_reference() {
    let gpu = crate::gpu!();
    let mut rng = mien::rng::Rng::new(41);
    for shape in [&[1usize, 3, 7, 5][..], &[5, 17], &[2, 65, 3, 3]] {
        let n: usize = shape.iter().product();
        let (c, s) = (shape[1], shape[2..].iter().product::<usize>());
        let bn = mien::nn::batchnorm::BatchNorm::new(gpu, "bn_infer", Default::default(), shape).unwrap();
        let (dy, dy64) = crate::common::rand(&mut rng, n);
        let (g, g64) = crate::common::rand(&mut rng, c);
        let var: Vec<f32> = rng.vec_f32(c, 0.1, 2.0);
        let (tdy, tg, tv) = (crate::common::up(gpu, "dy", shape, &dy), crate::common::up(gpu, "g", &[c], &g), crate::common::up(gpu, "v", &[c], &var));
        let tdx = crate::common::zeros(gpu, "dx", shape);
        gpu.run([&bn.backward_infer(gpu, &tdx, &tdy, &tg, &tv).unwrap()]).unwrap();
        let want = mien::reference::batchnorm::backward_infer(&dy64, &g64, &mien::reference::f64s(&var), s, 1e-3);
        mien::reference::assert_close(&format!("bn backward_infer {shape:?}"), &crate::common::read(gpu, &tdx), &want, 1e-4, 1e-4);
    }
}

/// Population statistics over K = 1, 2 and 5 batches of every shape, with inputs near 0 and
/// with a large mean (offset 50: the shifted two-pass sums keep f32 exact enough), against
/// the exact f64 mean and biased variance over all K*M values per channel. The running
/// statistics hold garbage before: finish overwrites them.
#[test]
fn population_statistics_match_the_reference() {
    let gpu = gpu!();
    let mut rng = Rng::new(31);
    for shape in SHAPES {
        let (c, s) = (shape[1], shape[2..].iter().product::<usize>());
        for (batches, offset) in [(1, 0.0f32), (2, 50.0), (5, 0.0)] {
            let pop = mien::nn::batchnorm::Population::new(gpu, "bn", shape, batches).unwrap();
            let x = zeros(gpu, "x", shape);
            let (rm, rv) = (up(gpu, "rm", &[c], &vec![7.0; c]), up(gpu, "rv", &[c], &vec![-3.0; c]));
            let acc = pop.accumulate(gpu, &x).unwrap();
            let mut host = Vec::new();
            for k in 0..batches {
                // Batches with different means and spreads, so the spread of the batch means
                // counts in the variance.
                let v: Vec<f32> = rand(&mut rng, x.len()).0.iter().map(|&v| v * (1.0 + k as f32) + offset + 0.3 * k as f32).collect();
                gpu.write(&x, &v).unwrap();
                pop.set_batch(gpu, k);
                gpu.run([&acc]).unwrap();
                host.push(f64s(&v));
            }
            gpu.run([&pop.finish(gpu, &rm, &rv).unwrap()]).unwrap();
            let (mean, var) = r::population(&host, c, s);
            let what = |w: &str| format!("population {w} {shape:?} x{batches} offset {offset}");
            // Relative to the data's scale: the mean is ~offset, f32 holds ~7 digits.
            assert_close(&what("mean"), &read(gpu, &rm), &mean, ATOL * (1.0 + offset as f64), RTOL);
            assert_close(&what("variance"), &read(gpu, &rv), &var, ATOL, RTOL);
        }
    }
}

/// Training BatchNorm fused with the activation after it (`forward_train_act`,
/// `backward_act`) for every activation kind on every shape of SHAPES (batch 1, odd
/// spatial sizes, S = 1, 1 / 3 / 65 channels, counts not multiples of the workgroup;
/// scalar, vec4, per-row and per-slope-column kernels): against the f64 reference
/// (BatchNorm then the activation, fed the GPU's own f32 statistics) at ATOL / RTOL, and
/// against the unfused kernels (BatchNorm, activation forward; activation backward,
/// BatchNorm backward) bit for bit where the fused kernels sum in the same order: y, saved
/// and running statistics always; dx, dgamma, dbeta except per-element PReLU with S > 1
/// (its reduction walks the channel by slope columns); the slope gradient except
/// per-channel PReLU with a vec4 (S % 4 == 0) or per-row (S == 1) reduction. Those differ
/// by rounding only: within ATOL / RTOL of the unfused results.
#[test]
fn fused_activation_matches_reference_and_the_unfused_pair() {
    use mien::nn::activation::{Activation, Kind};
    use mien::nn::batchnorm::FusedAct;
    use mien::reference::activation as ra;
    let gpu = gpu!();
    let mut rng = Rng::new(25);
    let cfg = BatchNormConfig::default();
    let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
    for shape in SHAPES {
        for kind in [Kind::Relu, Kind::LeakyRelu(0.3), Kind::PRelu, Kind::PReluPerElement] {
            let what = |w: &str| format!("{w} {shape:?} {kind:?}");
            let k = Case::new(&mut rng, shape, 0.0);
            let (t, f) = (Tensors::new(gpu, &k), Tensors::new(gpu, &k));
            let bn = BatchNorm::new(gpu, "bn", cfg, shape).unwrap();
            let act = Activation::new(gpu, "act", kind, shape).unwrap();
            let slopes = act.param_shape();
            let alpha_host = slopes.as_ref().map(|s| rng.vec_f32(s.iter().product(), -0.5, 0.5));
            let alpha = slopes.as_ref().map(|s| up(gpu, "alpha", s, alpha_host.as_ref().unwrap()));
            let (dalpha_u, dalpha_f) = (slopes.as_ref().map(|s| zeros(gpu, "dalpha", s)), slopes.as_ref().map(|s| zeros(gpu, "dalpha fused", s)));

            // Unfused: BatchNorm -> z -> activation -> y; activation backward -> dz -> BatchNorm backward.
            let (z, y, dz) = (zeros(gpu, "z", shape), zeros(gpu, "y", shape), zeros(gpu, "dz", shape));
            let mut steps = bn.forward_train(gpu, &t.x, &t.gamma, &t.beta, &t.rm, &t.rv, &t.saved, &z).unwrap();
            steps.push(act.forward(gpu, &z, alpha.as_ref(), &y).unwrap());
            if let Some(da) = &dalpha_u {
                steps.push(act.backward_alpha(gpu, da, &t.dy, &z, false).unwrap());
            }
            steps.push(act.backward_input(gpu, &dz, &t.dy, &z, alpha.as_ref()).unwrap());
            steps.extend(bn.backward(gpu, &t.dx, &t.dgamma, &t.dbeta, &dz, &t.x, &t.gamma, &t.saved, false).unwrap());
            gpu.run(&steps).unwrap();

            // Fused: two dispatches forward, two backward.
            let fa = FusedAct { kind, alpha: alpha.as_ref(), dalpha: dalpha_f.as_ref() };
            let mut steps = bn.forward_train_act(gpu, &f.x, None, &f.gamma, &f.beta, &f.rm, &f.rv, &f.saved, &fa, &f.y).unwrap();
            let backward = bn.backward_act(gpu, &f.dx, &f.dgamma, &f.dbeta, &f.dy, &f.x, &f.gamma, &f.beta, &f.saved, &fa, false).unwrap();
            assert_eq!((steps.len(), backward.len()), (2, 2), "{}", what("dispatch count"));
            steps.extend(backward);
            gpu.run(&steps).unwrap();

            // Bit for bit against the unfused pair.
            for (name, a, b) in [
                ("y", &y, &f.y),
                ("saved", &t.saved, &f.saved),
                ("running mean", &t.rm, &f.rm),
                ("running var", &t.rv, &f.rv),
                ("dx", &t.dx, &f.dx),
                ("dgamma", &t.dgamma, &f.dgamma),
                ("dbeta", &t.dbeta, &f.dbeta),
            ] {
                let (a, b) = (read(gpu, a), read(gpu, b));
                let by_columns = kind == Kind::PReluPerElement && k.s > 1 && matches!(name, "dx" | "dgamma" | "dbeta");
                if by_columns {
                    assert_close(&what(&format!("fused {name} vs unfused")), &b, &f64s(&a), ATOL, RTOL);
                } else {
                    assert_eq!(bits(&a), bits(&b), "{}", what(&format!("fused {name} differs from unfused")));
                }
            }
            if let (Some(u), Some(fd)) = (&dalpha_u, &dalpha_f) {
                let (u, fd) = (read(gpu, u), read(gpu, fd));
                if kind == Kind::PRelu && (k.s.is_multiple_of(4) || k.s == 1) {
                    assert_close(&what("fused dalpha vs unfused"), &fd, &f64s(&u), ATOL, RTOL);
                } else {
                    assert_eq!(bits(&u), bits(&fd), "{}", what("fused dalpha differs from unfused"));
                }
            }

            // Against the f64 reference with the GPU's own statistics.
            let saved = read(gpu, &f.saved);
            let (mean, inv_std) = (f64s(&saved[..k.c]), f64s(&saved[k.c..]));
            let (x, g, b, dy) = (f64s(&k.x), f64s(&k.gamma), f64s(&k.beta), f64s(&k.dy));
            let zr = r::normalize(&x, &g, &b, &mean, &inv_std, k.s);
            let a64 = alpha_host.as_ref().map(|a| f64s(a));
            let per = if kind == Kind::PReluPerElement { 1 } else { k.s };
            let yr = ra::forward(kind, &zr, a64.as_deref(), per);
            let (dzr, dar) = ra::backward(kind, &dy, &zr, a64.as_deref(), per);
            let (dxr, dgr, dbr) = r::backward(&dzr, &x, &g, &mean, &inv_std, k.s);
            assert_close(&what("fused y"), &read(gpu, &f.y), &yr, ATOL, RTOL);
            assert_close(&what("fused dx"), &read(gpu, &f.dx), &dxr, ATOL, RTOL);
            assert_close(&what("fused dgamma"), &read(gpu, &f.dgamma), &dgr, ATOL, RTOL);
            assert_close(&what("fused dbeta"), &read(gpu, &f.dbeta), &dbr, ATOL, RTOL);
            if let (Some(fd), Some(dar)) = (&dalpha_f, &dar) {
                assert_close(&what("fused dalpha"), &read(gpu, fd), dar, ATOL, RTOL);
            }
        }
    }
}

/// The fused backward's ACCUMULATE rule (batch chunks), as `backward`'s: once overwriting
/// then once adding over the same batch gives exactly twice dgamma, dbeta and the slope
/// gradient, and the same dx, for the strided (vec4 and scalar), per-row and per-slope-column
/// reductions.
#[test]
fn fused_backward_accumulates_parameter_gradients_only() {
    use mien::nn::activation::{Activation, Kind};
    use mien::nn::batchnorm::FusedAct;
    let gpu = gpu!();
    let mut rng = Rng::new(26);
    let cfg = BatchNormConfig::default();
    for shape in [&[2usize, 5, 4, 4][..], &[3, 65, 3, 1][..], &[3, 65][..]] {
        for kind in [Kind::PRelu, Kind::PReluPerElement] {
            let k = Case::new(&mut rng, shape, 0.0);
            let t = Tensors::new(gpu, &k);
            let bn = BatchNorm::new(gpu, "bn", cfg, shape).unwrap();
            let slopes = Activation::new(gpu, "act", kind, shape).unwrap().param_shape().unwrap();
            let alpha = up(gpu, "alpha", &slopes, &rng.vec_f32(slopes.iter().product(), -0.5, 0.5));
            let dalpha = zeros(gpu, "dalpha", &slopes);
            let fa = FusedAct { kind, alpha: Some(&alpha), dalpha: Some(&dalpha) };
            let mut steps = bn.forward_train_act(gpu, &t.x, None, &t.gamma, &t.beta, &t.rm, &t.rv, &t.saved, &fa, &t.y).unwrap();
            steps.extend(bn.backward_act(gpu, &t.dx, &t.dgamma, &t.dbeta, &t.dy, &t.x, &t.gamma, &t.beta, &t.saved, &fa, false).unwrap());
            gpu.run(&steps).unwrap();
            let once: Vec<Vec<f32>> = [&t.dgamma, &t.dbeta, &dalpha, &t.dx].iter().map(|v| read(gpu, v)).collect();
            gpu.run(&bn.backward_act(gpu, &t.dx, &t.dgamma, &t.dbeta, &t.dy, &t.x, &t.gamma, &t.beta, &t.saved, &fa, true).unwrap()).unwrap();
            let twice = |v: &[f32]| v.iter().map(|&a| 2.0 * a as f64).collect::<Vec<_>>();
            for (i, (name, tensor)) in [("dgamma", &t.dgamma), ("dbeta", &t.dbeta), ("dalpha", &dalpha)].into_iter().enumerate() {
                assert_close(&format!("{name} accumulated twice {shape:?} {kind:?}"), &read(gpu, tensor), &twice(&once[i]), 1e-6, 1e-6);
            }
            assert_close(&format!("dx unchanged by accumulate {shape:?} {kind:?}"), &read(gpu, &t.dx), &f64s(&once[3]), 0.0, 0.0);
        }
    }
}

/// The 2x2 max pool and its dropouts inside the fused training forward
/// (`forward_train_act_pool`), on planes of 2x2, 2x6, 6x4, 4x10 and 18x12 (batch 1, 1 / 3 /
/// 5 / 65 channels, pooled counts not multiples of the workgroup), for every activation
/// kind and every dropout placement (none, before the pool, after it, both): y and the
/// argmax bit for bit against the separate kernels (BatchNorm, activation, dropout, pool,
/// dropout), the statistics too, and y against the f64 reference chain fed the GPU's own
/// statistics at ATOL / RTOL.
#[test]
fn fused_pool_matches_reference_and_the_separate_layers() {
    use mien::nn::activation::{Activation, Kind};
    use mien::nn::batchnorm::{FusedAct, PoolTail};
    use mien::nn::dropout::Dropout;
    use mien::nn::pool::{Pool2d, PoolConfig, PoolKind};
    use mien::nn::Padding;
    use mien::reference::{activation as ra, dropout as rd, pool as rp};
    let gpu = gpu!();
    let mut rng = Rng::new(26);
    let cfg = BatchNormConfig::default();
    let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
    let shapes: [[usize; 4]; 5] = [[1, 1, 2, 2], [1, 3, 2, 6], [3, 5, 6, 4], [2, 65, 4, 10], [2, 2, 18, 12]];
    let kinds = [Kind::Relu, Kind::LeakyRelu(0.3), Kind::PRelu, Kind::PReluPerElement];
    for (si, shape) in shapes.iter().enumerate() {
        for (ki, &kind) in kinds.iter().enumerate() {
            let (pre, post) = ((si + ki) % 2 == 1, (si + ki / 2) % 2 == 1);
            let what = |w: &str| format!("{w} {shape:?} {kind:?} dropout before {pre} after {post}");
            let k = Case::new(&mut rng, shape, 0.5);
            let (t, f) = (Tensors::new(gpu, &k), Tensors::new(gpu, &k));
            let bn = BatchNorm::new(gpu, "bn", cfg, shape).unwrap();
            let act = Activation::new(gpu, "act", kind, shape).unwrap();
            let alpha_host = act.param_shape().map(|s| rng.vec_f32(s.iter().product(), -0.5, 0.5));
            let alpha = alpha_host.as_ref().map(|a| up(gpu, "alpha", &act.param_shape().unwrap(), a));
            let pool = Pool2d::new(gpu, "pool", PoolConfig { kind: PoolKind::Max, window: (2, 2), stride: (2, 2), padding: Padding::Valid }, shape).unwrap();
            let out = pool.output_shape;
            let d_pre = Dropout::new(gpu, "drop before", 0.3, shape).unwrap();
            let d_post = Dropout::new(gpu, "drop after", 0.5, &out).unwrap();
            let (seed_pre, seed_post) = (1000 + si as u32, 2000 + ki as u32);
            d_pre.set_seed(gpu, seed_pre);
            d_post.set_seed(gpu, seed_post);

            // Separate kernels.
            let (z, a, a2, pooled, y) = (zeros(gpu, "z", shape), zeros(gpu, "a", shape), zeros(gpu, "a dropped", shape), zeros(gpu, "pooled", &out), zeros(gpu, "y", &out));
            let argmax = zeros(gpu, "argmax", &out);
            let mut steps = bn.forward_train(gpu, &t.x, &t.gamma, &t.beta, &t.rm, &t.rv, &t.saved, &z).unwrap();
            steps.push(act.forward(gpu, &z, alpha.as_ref(), &a).unwrap());
            let pool_in = if pre {
                steps.push(d_pre.forward(gpu, &a, &a2, true).unwrap());
                &a2
            } else {
                &a
            };
            let pool_out = if post { &pooled } else { &y };
            steps.push(pool.forward(gpu, pool_in, pool_out, Some(&argmax)).unwrap());
            if post {
                steps.push(d_post.forward(gpu, &pooled, &y, true).unwrap());
            }
            gpu.run(&steps).unwrap();

            // Fused: the statistics, then one pass.
            let (yf, argmax_f) = (up(gpu, "y fused", &out, &vec![7.0; y.len()]), zeros(gpu, "argmax fused", &out));
            let fa = FusedAct { kind, alpha: alpha.as_ref(), dalpha: None };
            let tail = PoolTail { width: shape[3], argmax: &argmax_f, pre: pre.then_some(&d_pre), post: post.then_some(&d_post) };
            let steps = bn.forward_train_act_pool(gpu, &f.x, None, &f.gamma, &f.beta, &f.rm, &f.rv, &f.saved, &fa, &tail, &yf).unwrap();
            assert_eq!(steps.len(), 2, "{}", what("dispatch count"));
            gpu.run(&steps).unwrap();

            for (name, a, b) in [("y", &y, &yf), ("saved", &t.saved, &f.saved), ("running mean", &t.rm, &f.rm), ("running var", &t.rv, &f.rv)] {
                assert_eq!(bits(&read(gpu, a)), bits(&read(gpu, b)), "{}", what(&format!("fused {name} differs from the separate kernels")));
            }
            assert_eq!(gpu.read_u32(&argmax).unwrap(), gpu.read_u32(&argmax_f).unwrap(), "{}", what("fused argmax"));

            // The f64 chain with the GPU's own statistics.
            let saved = read(gpu, &f.saved);
            let zr = r::normalize(&f64s(&k.x), &f64s(&k.gamma), &f64s(&k.beta), &f64s(&saved[..k.c]), &f64s(&saved[k.c..]), k.s);
            let a64 = alpha_host.as_ref().map(|a| f64s(a));
            let per = if kind == Kind::PReluPerElement { 1 } else { k.s };
            let mut v = ra::forward(kind, &zr, a64.as_deref(), per);
            if pre {
                v = rd::dropout_forward(&v, seed_pre, 0.3);
            }
            let (mut v, _) = rp::max_pool_forward(&v, &rp::PoolGeom::new(*shape, (2, 2), (2, 2), Padding::Valid));
            if post {
                v = rd::dropout_forward(&v, seed_post, 0.5);
            }
            assert_close(&what("fused y vs reference"), &read(gpu, &yf), &v, ATOL, RTOL);
        }
    }
}

/// The fused pool refuses planes it cannot pair (odd width or height) and outputs or
/// dropouts of the wrong size, naming the layer.
#[test]
fn fused_pool_refuses_what_it_cannot_pool() {
    use mien::nn::activation::Kind;
    use mien::nn::batchnorm::{FusedAct, PoolTail};
    use mien::nn::dropout::Dropout;
    let gpu = gpu!();
    let fa = FusedAct { kind: Kind::Relu, alpha: None, dalpha: None };
    let try_pool = |shape: &[usize], width: usize, out: usize, drop: Option<&Dropout>| {
        let bn = BatchNorm::new(gpu, "block1.bn", BatchNormConfig::default(), shape).unwrap();
        let c = [shape[1]];
        let (x, g, b, rm, rv, s) = (zeros(gpu, "x", shape), zeros(gpu, "g", &c), zeros(gpu, "b", &c), zeros(gpu, "rm", &c), zeros(gpu, "rv", &c), zeros(gpu, "saved", &[2, shape[1]]));
        let (y, am) = (zeros(gpu, "y", &[out]), zeros(gpu, "argmax", &[out]));
        let tail = PoolTail { width, argmax: &am, pre: drop, post: None };
        bn.forward_train_act_pool(gpu, &x, None, &g, &b, &rm, &rv, &s, &fa, &tail, &y).err().map(|e| e.to_string()).unwrap_or_default()
    };
    let e = try_pool(&[2, 3, 5, 4], 4, 2 * 3 * 2 * 2, None);
    assert!(e.contains("block1.bn") && e.contains("even"), "{e}");
    let e = try_pool(&[2, 3, 4, 3], 3, 2 * 3 * 2, None);
    assert!(e.contains("block1.bn") && e.contains("even"), "{e}");
    let e = try_pool(&[2, 3, 4, 4], 4, 2 * 3 * 8, None);
    assert!(e.contains("block1.bn") && e.contains("pooled output"), "{e}");
    let d = Dropout::new(gpu, "block1.drop", 0.3, &[2, 3, 2, 2]).unwrap();
    let e = try_pool(&[2, 3, 4, 4], 4, 2 * 3 * 2 * 2, Some(&d));
    assert!(e.contains("block1.bn") && e.contains("block1.drop"), "{e}");
}
