//! f64 reference for shaders/optim.wgsl: one optimizer step over the whole arena, in place.
//! Call once per step with t = 1, 2, ... (Adam's bias corrections use t).
//! Weight decay: L2 (`decoupled` false) adds `wd * p` to the gradient; decoupled (AdamW)
//! subtracts `lr * wd * p` beside the step, using p before the step.

/// SGD, PyTorch form: buf = momentum * buf + g'; step = nesterov ? g' + momentum * buf : buf;
/// p -= lr * step. With momentum 0 (plain SGD) `buf` may be empty and is then not touched.
#[allow(clippy::too_many_arguments)]
pub fn sgd_step(p: &mut [f64], g: &[f64], buf: &mut [f64], lr: f64, momentum: f64, nesterov: bool, weight_decay: f64, decoupled: bool) {
    assert_eq!(p.len(), g.len());
    assert!(buf.len() == p.len() || (momentum == 0.0 && buf.is_empty()), "momentum buffer length");
    for i in 0..p.len() {
        let w = p[i];
        let gi = if decoupled { g[i] } else { g[i] + weight_decay * w };
        let step = if momentum == 0.0 && buf.is_empty() {
            gi
        } else {
            buf[i] = momentum * buf[i] + gi;
            if nesterov {
                gi + momentum * buf[i]
            } else {
                buf[i]
            }
        };
        let decay = if decoupled { weight_decay * w } else { 0.0 };
        p[i] = w - lr * (step + decay);
    }
}

/// Adam: m = b1 m + (1 - b1) g'; v = b2 v + (1 - b2) g'^2;
/// p -= lr * (m / (1 - b1^t)) / (sqrt(v / (1 - b2^t)) + eps). `t` is this step's number (>= 1).
#[allow(clippy::too_many_arguments)]
pub fn adam_step(
    p: &mut [f64],
    g: &[f64],
    m: &mut [f64],
    v: &mut [f64],
    t: u64,
    lr: f64,
    beta1: f64,
    beta2: f64,
    eps: f64,
    weight_decay: f64,
    decoupled: bool,
) {
    assert!(t >= 1, "Adam steps count from 1");
    assert!(p.len() == g.len() && p.len() == m.len() && p.len() == v.len());
    let bc1 = 1.0 - beta1.powi(t as i32);
    let bc2 = 1.0 - beta2.powi(t as i32);
    for i in 0..p.len() {
        let w = p[i];
        let gi = if decoupled { g[i] } else { g[i] + weight_decay * w };
        m[i] = beta1 * m[i] + (1.0 - beta1) * gi;
        v[i] = beta2 * v[i] + (1.0 - beta2) * gi * gi;
        let step = (m[i] / bc1) / ((v[i] / bc2).sqrt() + eps);
        let decay = if decoupled { weight_decay * w } else { 0.0 };
        p[i] = w - lr * (step + decay);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reference::randv;
    use crate::rng::Rng;

    fn close(what: &str, a: f64, b: f64) {
        assert!((a - b).abs() <= 1e-12 * (1.0 + b.abs()), "{what}: {a} vs {b}");
    }

    #[test]
    fn sgd_momentum_constant_gradient_has_closed_form() {
        // Constant g: buf_t = g (1 - mu^t) / (1 - mu); p_T = p_0 - lr * sum_t step_t.
        let (g, lr, mu, steps) = (0.7, 0.1, 0.9, 5);
        for nesterov in [false, true] {
            let (mut p, mut buf) = (vec![1.0], vec![0.0]);
            let mut want = 1.0;
            for t in 1..=steps {
                sgd_step(&mut p, &[g], &mut buf, lr, mu, nesterov, 0.0, false);
                let b = g * (1.0 - f64::powi(mu, t)) / (1.0 - mu);
                want -= lr * if nesterov { g + mu * b } else { b };
                close("momentum buffer", buf[0], b);
            }
            close(&format!("sgd nesterov={nesterov}"), p[0], want);
        }
    }

    #[test]
    fn plain_sgd_and_weight_decay_forms() {
        let mut rng = Rng::new(4);
        let g = randv(&mut rng, 9);
        let p0 = randv(&mut rng, 9);
        // Without momentum, L2 and decoupled decay give the same update: p -= lr (g + wd p).
        let (mut a, mut b) = (p0.clone(), p0.clone());
        sgd_step(&mut a, &g, &mut [], 0.05, 0.0, false, 0.1, false);
        sgd_step(&mut b, &g, &mut [], 0.05, 0.0, false, 0.1, true);
        for i in 0..9 {
            close("plain sgd", a[i], p0[i] - 0.05 * (g[i] + 0.1 * p0[i]));
            close("plain sgd decoupled", b[i], a[i]);
        }
        // With momentum they differ: L2 decay enters the buffer, decoupled does not.
        let (mut a, mut b, mut ba, mut bb) = (p0.clone(), p0.clone(), vec![0.0; 9], vec![0.0; 9]);
        for _ in 0..2 {
            sgd_step(&mut a, &g, &mut ba, 0.05, 0.9, false, 0.1, false);
            sgd_step(&mut b, &g, &mut bb, 0.05, 0.9, false, 0.1, true);
        }
        close("decoupled buffer ignores decay", bb[0], g[0] * 1.9);
        assert!((a[0] - b[0]).abs() > 1e-6);
    }

    #[test]
    fn adam_first_step_is_lr_times_sign() {
        // t = 1: m / bc1 = g and sqrt(v / bc2) = |g|, so p moves by lr g / (|g| + eps).
        let g = [0.3, -2.0, 1e-3];
        let (mut p, mut m, mut v) = (vec![0.5; 3], vec![0.0; 3], vec![0.0; 3]);
        adam_step(&mut p, &g, &mut m, &mut v, 1, 0.01, 0.9, 0.999, 1e-8, 0.0, false);
        for i in 0..3 {
            close("adam step 1", p[i], 0.5 - 0.01 * g[i] / (g[i].abs() + 1e-8));
            close("adam m", m[i], 0.1 * g[i]);
            close("adam v", v[i], 0.001 * g[i] * g[i]);
        }
    }

    #[test]
    fn adamw_decay_alone_shrinks_geometrically() {
        // Zero gradient: m = v = 0, the Adam step is 0 and p_T = p_0 (1 - lr wd)^T.
        let (mut p, mut m, mut v) = (vec![2.0, -1.0], vec![0.0; 2], vec![0.0; 2]);
        for t in 1..=4 {
            adam_step(&mut p, &[0.0, 0.0], &mut m, &mut v, t, 0.1, 0.9, 0.999, 1e-8, 0.5, true);
        }
        close("adamw", p[0], 2.0 * 0.95f64.powi(4));
        close("adamw", p[1], -0.95f64.powi(4));
        // L2 decay goes through the moments instead: the first step is lr * sign(p).
        let (mut p, mut m, mut v) = (vec![2.0], vec![0.0], vec![0.0]);
        adam_step(&mut p, &[0.0], &mut m, &mut v, 1, 0.1, 0.9, 0.999, 1e-8, 0.5, false);
        close("adam l2", p[0], 2.0 - 0.1 * 1.0 / (1.0 + 1e-8));
    }

    #[test]
    fn both_minimize_a_quadratic() {
        // loss = sum (p - c)^2 / 2, gradient p - c.
        let c = [0.3, -0.7, 1.2];
        let grad = |p: &[f64]| p.iter().zip(&c).map(|(a, b)| a - b).collect::<Vec<_>>();
        let (mut p, mut m, mut v) = (vec![0.0; 3], vec![0.0; 3], vec![0.0; 3]);
        for t in 1..=2000 {
            let g = grad(&p);
            adam_step(&mut p, &g, &mut m, &mut v, t, 0.01, 0.9, 0.999, 1e-8, 0.0, false);
        }
        let (mut q, mut buf) = (vec![0.0; 3], vec![0.0; 3]);
        for _ in 0..200 {
            let g = grad(&q);
            sgd_step(&mut q, &g, &mut buf, 0.1, 0.9, true, 0.0, false);
        }
        for i in 0..3 {
            assert!((p[i] - c[i]).abs() < 1e-3, "adam {p:?}");
            assert!((q[i] - c[i]).abs() < 1e-6, "sgd {q:?}");
        }
    }
}
