use crate::common::{rand, read, up, zeros, ATOL, RTOL};
use crate::gpu;
use mien::nn::optim::{Optimizer, OptimizerConfig, OptimizerKind};
use mien::reference::{assert_close, optim as r};
use mien::rng::Rng;
use mien::Gpu;

/// Arena lengths: a single parameter, and two that are not multiples of the 256-wide
/// workgroup (the second spans several workgroups).
const LENGTHS: &[usize] = &[1, 1000, 4099];
const STEPS: u64 = 4;

fn sgd(momentum: f32, nesterov: bool, weight_decay: f32, decoupled: bool) -> OptimizerConfig {
    OptimizerConfig { kind: OptimizerKind::Sgd { momentum, nesterov }, weight_decay, decoupled_weight_decay: decoupled }
}

fn adam(weight_decay: f32, decoupled: bool) -> OptimizerConfig {
    OptimizerConfig { kind: OptimizerKind::Adam { beta1: 0.9, beta2: 0.999, eps: 1e-8 }, weight_decay, decoupled_weight_decay: decoupled }
}

/// The f64 mirror of one optimizer: parameters and state in the order of `Optimizer::state`.
struct Mirror {
    cfg: OptimizerConfig,
    p: Vec<f64>,
    state: Vec<Vec<f64>>,
    t: u64,
}

impl Mirror {
    fn new(cfg: OptimizerConfig, p: Vec<f64>) -> Self {
        let k = match cfg.kind {
            OptimizerKind::Sgd { momentum: 0.0, .. } => 0,
            OptimizerKind::Sgd { .. } => 1,
            OptimizerKind::Adam { .. } => 2,
        };
        let state = vec![vec![0.0; p.len()]; k];
        Mirror { cfg, p, state, t: 0 }
    }

    fn step(&mut self, g: &[f64], lr: f32) {
        self.t += 1;
        let (lr, wd, dec) = (lr as f64, self.cfg.weight_decay as f64, self.cfg.decoupled_weight_decay);
        match (self.cfg.kind, self.state.as_mut_slice()) {
            (OptimizerKind::Sgd { momentum, nesterov }, []) => r::sgd_step(&mut self.p, g, &mut [], lr, momentum as f64, nesterov, wd, dec),
            (OptimizerKind::Sgd { momentum, nesterov }, [buf]) => r::sgd_step(&mut self.p, g, buf, lr, momentum as f64, nesterov, wd, dec),
            (OptimizerKind::Adam { beta1, beta2, eps }, [m, v]) => {
                r::adam_step(&mut self.p, g, m, v, self.t, lr, beta1 as f64, beta2 as f64, eps as f64, wd, dec)
            }
            _ => unreachable!(),
        }
    }

    fn check(&self, gpu: &Gpu, what: &str, params: &mien::Tensor, opt: &Optimizer) {
        assert_close(&format!("{what} params"), &read(gpu, params), &self.p, ATOL, RTOL);
        let state = opt.state();
        assert_eq!(state.len(), self.state.len(), "{what}: state tensors");
        for ((name, t), want) in state.iter().zip(&self.state) {
            assert_close(&format!("{what} {name}"), &read(gpu, t), want, ATOL, RTOL);
        }
    }
}

/// Several consecutive steps with fresh gradients and a changing learning rate, params and
/// state compared with the reference after every step.
fn check(cfg: OptimizerConfig) {
    let gpu = gpu!();
    let mut rng = Rng::new(21);
    for &n in LENGTHS {
        let (p, p64) = rand(&mut rng, n);
        let params = up(gpu, "arena", &[n], &p);
        let grads = zeros(gpu, "grads", &[n]);
        let mut opt = Optimizer::new(gpu, "opt", cfg, &params, &grads).unwrap();
        let mut mirror = Mirror::new(cfg, p64);
        for t in 1..=STEPS {
            let (g, g64) = rand(&mut rng, n);
            gpu.write(&grads, &g).unwrap();
            let lr = 0.01 * (1.0 + 0.5 * t as f32);
            gpu.run([opt.step(gpu, lr)]).unwrap();
            assert_eq!(opt.steps_taken(), t);
            mirror.step(&g64, lr);
            mirror.check(gpu, &format!("{cfg:?} n={n} step {t}"), &params, &opt);
        }
    }
}

#[test]
fn sgd_matches_reference() {
    check(sgd(0.0, false, 0.0, false));
}

#[test]
fn sgd_momentum_matches_reference() {
    check(sgd(0.9, false, 0.0, false));
}

#[test]
fn sgd_nesterov_matches_reference() {
    check(sgd(0.9, true, 0.0, false));
}

#[test]
fn sgd_weight_decay_l2_and_decoupled_match_reference() {
    check(sgd(0.0, false, 0.05, false));
    check(sgd(0.9, false, 0.05, false));
    check(sgd(0.9, true, 0.05, true));
}

#[test]
fn adam_matches_reference() {
    check(adam(0.0, false));
}

#[test]
fn adam_l2_matches_reference() {
    check(adam(0.1, false));
}

#[test]
fn adamw_matches_reference() {
    check(adam(0.1, true));
}

/// A checkpoint round trip: a fresh optimizer given the saved state and step count continues
/// exactly like the original.
#[test]
fn resumed_optimizer_continues_like_the_original() {
    let gpu = gpu!();
    let mut rng = Rng::new(22);
    let n = 777;
    let cfg = adam(0.01, true);
    let (p, _) = rand(&mut rng, n);
    let params = up(gpu, "arena", &[n], &p);
    let grads = zeros(gpu, "grads", &[n]);
    let mut opt = Optimizer::new(gpu, "opt", cfg, &params, &grads).unwrap();
    let gs: Vec<Vec<f32>> = (0..5).map(|_| rand(&mut rng, n).0).collect();
    for g in &gs[..3] {
        gpu.write(&grads, g).unwrap();
        gpu.run([opt.step(gpu, 0.01)]).unwrap();
    }
    // Save, and restore into a new optimizer over a new arena.
    let saved_p = read(gpu, &params);
    let saved: Vec<(&str, Vec<f32>)> = opt.state().iter().map(|(k, t)| (*k, read(gpu, t))).collect();
    let params2 = up(gpu, "arena2", &[n], &saved_p);
    let grads2 = zeros(gpu, "grads2", &[n]);
    let mut opt2 = Optimizer::new(gpu, "opt2", cfg, &params2, &grads2).unwrap();
    for ((k, t), (k2, v)) in opt2.state().iter().zip(&saved) {
        assert_eq!(k, k2);
        gpu.write(t, v).unwrap();
    }
    opt2.set_steps_taken(opt.steps_taken());
    for g in &gs[3..] {
        gpu.write(&grads, g).unwrap();
        gpu.write(&grads2, g).unwrap();
        gpu.run([opt.step(gpu, 0.01)]).unwrap();
        gpu.run([opt2.step(gpu, 0.01)]).unwrap();
    }
    assert_eq!(opt2.steps_taken(), 5);
    assert_eq!(read(gpu, &params2), read(gpu, &params));
    for ((_, a), (_, b)) in opt.state().iter().zip(opt2.state().iter()) {
        assert_eq!(read(gpu, a), read(gpu, b));
    }
}

#[test]
fn bad_configs_and_lengths_are_errors_naming_the_optimizer() {
    let gpu = gpu!();
    let (params, grads, short) = (zeros(gpu, "p", &[10]), zeros(gpu, "g", &[10]), zeros(gpu, "short", &[9]));
    let bad = [
        (sgd(0.0, true, 0.0, false), "Nesterov"),
        (sgd(1.0, false, 0.0, false), "momentum"),
        (sgd(-0.1, false, 0.0, false), "momentum"),
        (sgd(0.9, false, -1.0, false), "weight_decay"),
        (sgd(0.9, false, f32::NAN, false), "weight_decay"),
        (OptimizerConfig { kind: OptimizerKind::Adam { beta1: 1.0, beta2: 0.999, eps: 1e-8 }, ..adam(0.0, false) }, "beta1"),
        (OptimizerConfig { kind: OptimizerKind::Adam { beta1: 0.9, beta2: 1.0, eps: 1e-8 }, ..adam(0.0, false) }, "beta2"),
        (OptimizerConfig { kind: OptimizerKind::Adam { beta1: 0.9, beta2: 0.999, eps: 0.0 }, ..adam(0.0, false) }, "eps"),
    ];
    for (cfg, word) in bad {
        let e = Optimizer::new(gpu, "trainer.opt", cfg, &params, &grads).err().unwrap().to_string();
        assert!(e.contains("trainer.opt") && e.contains(word), "{cfg:?}: {e}");
    }
    let e = Optimizer::new(gpu, "trainer.opt", adam(0.0, false), &params, &short).err().unwrap().to_string();
    assert!(e.contains("trainer.opt") && e.contains("10") && e.contains("9"), "{e}");
    let e = Optimizer::new(gpu, "trainer.opt", adam(0.0, false), &params, &params).err().unwrap().to_string();
    assert!(e.contains("trainer.opt") && e.contains("separate"), "{e}");
    // Plain SGD keeps no state; momentum SGD one buffer; Adam two, all zeroed.
    let opt = Optimizer::new(gpu, "o", sgd(0.0, false, 0.0, false), &params, &grads).unwrap();
    assert!(opt.state().is_empty());
    let opt = Optimizer::new(gpu, "o", sgd(0.5, false, 0.0, false), &params, &grads).unwrap();
    assert_eq!(opt.state().iter().map(|(k, _)| *k).collect::<Vec<_>>(), ["momentum"]);
    let opt = Optimizer::new(gpu, "o", adam(0.0, false), &params, &grads).unwrap();
    assert_eq!(opt.state().iter().map(|(k, _)| *k).collect::<Vec<_>>(), ["m", "v"]);
    for (_, t) in opt.state() {
        assert_eq!(read(gpu, t), vec![0.0; 10]);
    }
}
