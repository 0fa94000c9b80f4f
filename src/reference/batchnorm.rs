//! f64 reference for shaders/batchnorm.wgsl. Layout [N, C, S] flattened (S = 1 for [N, F]);
//! gamma, beta, running stats are [C]; M = N*S values per channel.

/// What the training forward produces.
#[derive(Debug, Clone)]
pub struct Train {
    pub y: Vec<f64>,
    /// Batch mean per channel.
    pub mean: Vec<f64>,
    /// 1 / sqrt(biased batch variance + eps) per channel.
    pub inv_std: Vec<f64>,
    /// momentum * running_mean + (1 - momentum) * mean.
    pub running_mean: Vec<f64>,
    /// momentum * running_var + (1 - momentum) * biased batch variance (as Keras).
    pub running_var: Vec<f64>,
}

/// Flat indices of channel `ch`'s M values in an [N, C, S] tensor of `len` elements.
fn channel_indices(len: usize, c: usize, s: usize, ch: usize) -> impl Iterator<Item = usize> {
    let n = len / (c * s);
    (0..n).flat_map(move |b| (0..s).map(move |k| (b * c + ch) * s + k))
}

fn check(len: usize, c: usize, s: usize) -> usize {
    assert!(c > 0 && s > 0 && len.is_multiple_of(c * s) && len > 0, "x of {len} values is not [N, {c}, {s}]");
    len / c
}

/// Training forward: per-channel biased statistics, normalize, Keras running-stat update.
#[allow(clippy::too_many_arguments)]
pub fn forward_train(
    x: &[f64],
    gamma: &[f64],
    beta: &[f64],
    running_mean: &[f64],
    running_var: &[f64],
    s: usize,
    eps: f64,
    momentum: f64,
) -> Train {
    let c = gamma.len();
    let m = check(x.len(), c, s) as f64;
    let mut out = Train {
        y: vec![0.0; x.len()],
        mean: vec![0.0; c],
        inv_std: vec![0.0; c],
        running_mean: vec![0.0; c],
        running_var: vec![0.0; c],
    };
    for ch in 0..c {
        let mean = channel_indices(x.len(), c, s, ch).map(|i| x[i]).sum::<f64>() / m;
        let var = channel_indices(x.len(), c, s, ch).map(|i| (x[i] - mean).powi(2)).sum::<f64>() / m;
        let inv_std = 1.0 / (var + eps).sqrt();
        out.mean[ch] = mean;
        out.inv_std[ch] = inv_std;
        out.running_mean[ch] = momentum * running_mean[ch] + (1.0 - momentum) * mean;
        out.running_var[ch] = momentum * running_var[ch] + (1.0 - momentum) * var;
    }
    out.y = normalize(x, gamma, beta, &out.mean, &out.inv_std, s);
    out
}

/// y = gamma * (x - mean) * inv_std + beta with given per-channel statistics (the second
/// half of the training forward; also lets a test feed the GPU's own f32 statistics).
pub fn normalize(x: &[f64], gamma: &[f64], beta: &[f64], mean: &[f64], inv_std: &[f64], s: usize) -> Vec<f64> {
    let c = gamma.len();
    check(x.len(), c, s);
    x.iter()
        .enumerate()
        .map(|(i, &v)| {
            let ch = (i / s) % c;
            gamma[ch] * (v - mean[ch]) * inv_std[ch] + beta[ch]
        })
        .collect()
}

/// Inference forward: y = gamma * (x - running_mean) / sqrt(running_var + eps) + beta.
pub fn forward_infer(x: &[f64], gamma: &[f64], beta: &[f64], running_mean: &[f64], running_var: &[f64], s: usize, eps: f64) -> Vec<f64> {
    let c = gamma.len();
    check(x.len(), c, s);
    x.iter()
        .enumerate()
        .map(|(i, &v)| {
            let ch = (i / s) % c;
            gamma[ch] * (v - running_mean[ch]) / (running_var[ch] + eps).sqrt() + beta[ch]
        })
        .collect()
}

/// Training-mode backward from the saved batch `mean` and `inv_std`; the loss depends on x
/// through the batch statistics too. Returns (dx, dgamma, dbeta):
/// dbeta = sum dy, dgamma = sum dy * xhat,
/// dx = gamma * inv_std / M * (M * dy - sum dy - xhat * sum dy * xhat).
pub fn backward(dy: &[f64], x: &[f64], gamma: &[f64], mean: &[f64], inv_std: &[f64], s: usize) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
    let c = gamma.len();
    let m = check(x.len(), c, s) as f64;
    assert_eq!(dy.len(), x.len());
    let mut dx = vec![0.0; x.len()];
    let (mut dgamma, mut dbeta) = (vec![0.0; c], vec![0.0; c]);
    for ch in 0..c {
        let xhat = |i: usize| (x[i] - mean[ch]) * inv_std[ch];
        let sum_dy: f64 = channel_indices(x.len(), c, s, ch).map(|i| dy[i]).sum();
        let sum_dy_xhat: f64 = channel_indices(x.len(), c, s, ch).map(|i| dy[i] * xhat(i)).sum();
        for i in channel_indices(x.len(), c, s, ch) {
            dx[i] = gamma[ch] * inv_std[ch] / m * (m * dy[i] - sum_dy - xhat(i) * sum_dy_xhat);
        }
        dgamma[ch] = sum_dy_xhat;
        dbeta[ch] = sum_dy;
    }
    (dx, dgamma, dbeta)
}

/// Inference-mode input gradient: dx = dy * gamma / sqrt(running_var + eps).
pub fn backward_infer(dy: &[f64], gamma: &[f64], running_var: &[f64], s: usize, eps: f64) -> Vec<f64> {
    let c = gamma.len();
    dy.iter().enumerate().map(|(i, &g)| {
        let ch = (i / s) % c;
        g * gamma[ch] / (running_var[ch] + eps).sqrt()
    }).collect()
}

/// Population statistics over several batches of one layer's input, each [N, C, S]: the
/// mean and biased variance per channel over all their values.
pub fn population(batches: &[Vec<f64>], c: usize, s: usize) -> (Vec<f64>, Vec<f64>) {
    let mut mean = vec![0.0; c];
    let mut var = vec![0.0; c];
    for ch in 0..c {
        let values: Vec<f64> = batches.iter().flat_map(|x| channel_indices(x.len(), c, s, ch).map(|i| x[i])).collect();
        let m = values.len() as f64;
        mean[ch] = values.iter().sum::<f64>() / m;
        var[ch] = values.iter().map(|v| (v - mean[ch]).powi(2)).sum::<f64>() / m;
    }
    (mean, var)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reference::{assert_grad, dot, numeric_grad, randv};
    use crate::rng::Rng;

    /// (N, C, S): images with odd spatial sizes, batch 1 with spatial > 1, dense [N, F].
    const SHAPES: &[(usize, usize, usize)] = &[(2, 3, 5), (1, 2, 7), (3, 4, 1), (3, 1, 15)];

    #[test]
    fn training_backward_matches_finite_differences() {
        let mut rng = Rng::new(11);
        for &(n, c, s) in SHAPES {
            let len = n * c * s;
            let x = randv(&mut rng, len);
            let gamma: Vec<f64> = randv(&mut rng, c).iter().map(|v| v + 1.5).collect();
            let beta = randv(&mut rng, c);
            let (rm, rv) = (randv(&mut rng, c), vec![1.0; c]);
            let dy = randv(&mut rng, len);
            let eps = 1e-3;
            let f = forward_train(&x, &gamma, &beta, &rm, &rv, s, eps, 0.99);
            let (dx, dg, db) = backward(&dy, &x, &gamma, &f.mean, &f.inv_std, s);
            // dx: the statistics move with x.
            let nx = numeric_grad(|x| dot(&forward_train(x, &gamma, &beta, &rm, &rv, s, eps, 0.99).y, &dy), &x, 1e-6);
            let ng = numeric_grad(|g| dot(&forward_train(&x, g, &beta, &rm, &rv, s, eps, 0.99).y, &dy), &gamma, 1e-6);
            let nb = numeric_grad(|b| dot(&forward_train(&x, &gamma, b, &rm, &rv, s, eps, 0.99).y, &dy), &beta, 1e-6);
            let what = format!("({n}, {c}, {s})");
            assert_grad(&format!("bn dx {what}"), &dx, &nx, 1e-6);
            assert_grad(&format!("bn dgamma {what}"), &dg, &ng, 1e-6);
            assert_grad(&format!("bn dbeta {what}"), &db, &nb, 1e-6);
        }
    }

    #[test]
    fn statistics_and_running_update_follow_keras() {
        // [N=2, C=2, S=2]: channel 0 holds 1, 2, 5, 6; channel 1 holds 3, 4, 7, 8.
        let x: Vec<f64> = (1..=8).map(|v| v as f64).collect();
        let f = forward_train(&x, &[1.0, 2.0], &[0.0, 0.5], &[1.0, -1.0], &[2.0, 3.0], 2, 1e-3, 0.9);
        assert_eq!(f.mean, vec![3.5, 5.5]);
        // Biased variance: mean of squared deviations (2.5^2, 1.5^2, ...) = 4.25.
        let var = 4.25;
        for ch in 0..2 {
            assert!((f.inv_std[ch] - 1.0 / (var + 1e-3f64).sqrt()).abs() < 1e-15);
        }
        assert!((f.running_mean[0] - (0.9 * 1.0 + 0.1 * 3.5)).abs() < 1e-15);
        assert!((f.running_mean[1] - (-0.9 + 0.1 * 5.5)).abs() < 1e-15);
        assert!((f.running_var[0] - (0.9 * 2.0 + 0.1 * var)).abs() < 1e-15);
        assert!((f.running_var[1] - (0.9 * 3.0 + 0.1 * var)).abs() < 1e-15);
        // y = gamma * xhat + beta: channel 1's first value 3 -> 2 * (3 - 5.5) * inv_std + 0.5.
        assert!((f.y[2] - (2.0 * -2.5 * f.inv_std[1] + 0.5)).abs() < 1e-12);
        // Inference with running stats equal to the batch stats reproduces the training y.
        let vars = [var, var];
        let yi = forward_infer(&x, &[1.0, 2.0], &[0.0, 0.5], &f.mean, &vars, 2, 1e-3);
        for (a, b) in yi.iter().zip(&f.y) {
            assert!((a - b).abs() < 1e-12);
        }
    }
}

