//! Dynamic loss scaling (shaders/loss_scale.wgsl, nn::loss_scale) with the optimizer's
//! `*_scaled` entries, against the f64 rule (src/reference/loss_scale.rs) and optimizer.

use crate::common::{rand, read, up, zeros, ATOL, RTOL};
use crate::gpu;
use mien::nn::loss_scale::LossScale;
use mien::nn::optim::{Optimizer, OptimizerConfig, OptimizerKind};
use mien::reference::{assert_close, loss_scale::Scaler, optim as r};
use mien::rng::Rng;

/// Steps whose gradients overflow: an inf in one, a NaN in another.
const BAD: [(u64, f32); 2] = [(2, f32::INFINITY), (5, f32::NAN)];
const STEPS: u64 = 9;

/// Gradients of a scaled loss, steps skipped on overflow, the scale halved and doubled: the
/// parameters, moments and the scale state follow the reference after every step. Arena
/// lengths 1 and 4099 (not a multiple of the 256-wide workgroup).
#[test]
fn scaled_steps_follow_the_reference_and_overflowed_steps_change_nothing() {
    let gpu = gpu!();
    let mut rng = Rng::new(31);
    let adam = OptimizerConfig { kind: OptimizerKind::Adam { beta1: 0.9, beta2: 0.999, eps: 1e-8 }, weight_decay: 0.01, decoupled_weight_decay: true };
    let sgd = OptimizerConfig { kind: OptimizerKind::Sgd { momentum: 0.9, nesterov: true }, weight_decay: 0.05, decoupled_weight_decay: false };
    for cfg in [adam, sgd] {
        for n in [1usize, 4099] {
            let what = format!("{:?} n={n}", cfg.kind);
            let (p, p64) = rand(&mut rng, n);
            let params = up(gpu, "arena", &[n], &p);
            let grads = zeros(gpu, "grads", &[n]);
            let dlogits = zeros(gpu, "dlogits", &[5, 7]);
            let ls = LossScale::new(gpu, "ls", &dlogits, &grads, 8.0, 3).unwrap();
            let mut opt = Optimizer::new_scaled(gpu, "opt", cfg, &params, &grads, ls.state()).unwrap();
            let (mut w, mut m, mut v) = (p64, vec![0.0; n], vec![0.0; n]);
            let mut scaler = Scaler::new(8.0, 3);
            for step in 1..=STEPS {
                // The loss gradient is multiplied by the current scale.
                let (dl, dl64) = rand(&mut rng, 35);
                gpu.write(&dlogits, &dl).unwrap();
                gpu.run([ls.apply()]).unwrap();
                let want: Vec<f64> = dl64.iter().map(|x| x * scaler.scale).collect();
                assert_close(&format!("{what} step {step} scaled dlogits"), &read(gpu, &dlogits), &want, 0.0, 0.0);
                // Gradients as a scaled backward pass leaves them.
                let (mut g, _) = rand(&mut rng, n);
                g.iter_mut().for_each(|x| *x *= scaler.scale as f32);
                let bad = BAD.iter().find(|b| b.0 == step);
                if let Some(&(_, value)) = bad {
                    g[rng.below(n)] = value;
                }
                gpu.write(&grads, &g).unwrap();
                let [check, update] = ls.check_and_update();
                gpu.run([check, update, opt.step(gpu, 0.01)]).unwrap();
                if let Some(unscale) = scaler.step(bad.is_none()) {
                    let g64: Vec<f64> = g.iter().map(|&x| x as f64 * unscale).collect();
                    match cfg.kind {
                        OptimizerKind::Adam { beta1, beta2, eps } => {
                            r::adam_step(&mut w, &g64, &mut m, &mut v, scaler.applied, 0.01, beta1 as f64, beta2 as f64, eps as f64, 0.01, true)
                        }
                        OptimizerKind::Sgd { momentum, nesterov } => r::sgd_step(&mut w, &g64, &mut m, 0.01, momentum as f64, nesterov, 0.05, false),
                    }
                }
                let tag = format!("{what} step {step}{}", if bad.is_some() { " (overflow)" } else { "" });
                assert_close(&format!("{tag} params"), &read(gpu, &params), &w, ATOL, RTOL);
                assert_close(&format!("{tag} first moment"), &read(gpu, opt.state()[0].1), &m, ATOL, RTOL);
                let s = ls.read(gpu).unwrap();
                assert_eq!((s.scale as f64, s.applied, s.skipped), (scaler.scale, scaler.applied, scaler.skipped), "{tag}: scale state");
            }
            assert_eq!(scaler.skipped, 2, "{what}: both overflows skipped");
            // 8, halved at step 2 (inf) and step 5 (NaN; steps 3 and 4 were too few to grow), then
            // doubled after the three finite steps 6 to 8: 4.
            assert_eq!(scaler.scale, 4.0, "{what}: halved twice, doubled once");
        }
    }
}

/// `reset` restores the initial state; bad settings are errors naming the scaler.
#[test]
fn reset_and_bad_settings() {
    let gpu = gpu!();
    let (dl, g) = (zeros(gpu, "dl", &[3]), zeros(gpu, "g", &[4]));
    let ls = LossScale::new(gpu, "trainer.ls", &dl, &g, 1024.0, 10).unwrap();
    gpu.write(&g, &[f32::INFINITY, 0.0, 0.0, 0.0]).unwrap();
    gpu.run(ls.check_and_update()).unwrap();
    assert_eq!(ls.read(gpu).unwrap().skipped, 1);
    assert_eq!(ls.read(gpu).unwrap().scale, 512.0);
    ls.reset(gpu, 1024.0, 10).unwrap();
    let s = ls.read(gpu).unwrap();
    assert_eq!((s.scale, s.applied, s.skipped), (1024.0, 0, 0));
    // The flag was cleared by the update: a finite step now applies.
    gpu.write(&g, &[1.0f32; 4]).unwrap();
    gpu.run(ls.check_and_update()).unwrap();
    assert_eq!(ls.read(gpu).unwrap().applied, 1);
    for (scale, interval, word) in [(0.0, 10, "scale"), (f32::NAN, 10, "scale"), (8.0, 0, "interval")] {
        let e = LossScale::new(gpu, "trainer.ls", &dl, &g, scale, interval).err().unwrap().to_string();
        assert!(e.contains("trainer.ls") && e.contains(word), "{e}");
    }
    let e = LossScale::new(gpu, "trainer.ls", &g, &g, 8.0, 10).err().unwrap().to_string();
    assert!(e.contains("trainer.ls") && e.contains("separate"), "{e}");
}
