//! f64 reference for shaders/activation.wgsl. Layout [N, C, S] flattened; alpha is [C].

use crate::nn::activation::Kind;

/// y = act(x) for any kind; `alpha` PReLU's slopes, `s` the elements per slope channel
/// (S for [C] slopes, 1 for per-element slopes).
pub fn forward(kind: Kind, x: &[f64], alpha: Option<&[f64]>, s: usize) -> Vec<f64> {
    match (kind, alpha) {
        (Kind::Relu, _) => relu_forward(x),
        (Kind::LeakyRelu(a), _) => leaky_relu_forward(x, a as f64),
        (_, Some(alpha)) => prelu_forward(x, alpha, s),
        (_, None) => panic!("PReLU needs its slopes"),
    }
}

/// (dx, the slope gradient where the kind has slopes); arguments as `forward`.
pub fn backward(kind: Kind, dy: &[f64], x: &[f64], alpha: Option<&[f64]>, s: usize) -> (Vec<f64>, Option<Vec<f64>>) {
    match (kind, alpha) {
        (Kind::Relu, _) => (relu_backward(dy, x), None),
        (Kind::LeakyRelu(a), _) => (leaky_relu_backward(dy, x, a as f64), None),
        (_, Some(alpha)) => {
            let (dx, da) = prelu_backward(dy, x, alpha, s);
            (dx, Some(da))
        }
        (_, None) => panic!("PReLU needs its slopes"),
    }
}

pub fn relu_forward(x: &[f64]) -> Vec<f64> {
    x.iter().map(|&v| v.max(0.0)).collect()
}

pub fn relu_backward(dy: &[f64], x: &[f64]) -> Vec<f64> {
    dy.iter().zip(x).map(|(&g, &v)| if v > 0.0 { g } else { 0.0 }).collect()
}

pub fn leaky_relu_forward(x: &[f64], alpha: f64) -> Vec<f64> {
    x.iter().map(|&v| if v > 0.0 { v } else { alpha * v }).collect()
}

pub fn leaky_relu_backward(dy: &[f64], x: &[f64], alpha: f64) -> Vec<f64> {
    dy.iter().zip(x).map(|(&g, &v)| if v > 0.0 { g } else { alpha * g }).collect()
}

/// Which slope element `i` of an [N, C, S] tensor uses: its channel when alpha is [C]
/// (`s` = S), its position within the sample when alpha is [C, S] (`s` = 1).
fn channel(i: usize, c: usize, s: usize) -> usize {
    (i / s) % c
}

pub fn prelu_forward(x: &[f64], alpha: &[f64], s: usize) -> Vec<f64> {
    let c = alpha.len();
    x.iter().enumerate().map(|(i, &v)| if v > 0.0 { v } else { alpha[channel(i, c, s)] * v }).collect()
}

/// Returns (dx, dalpha).
pub fn prelu_backward(dy: &[f64], x: &[f64], alpha: &[f64], s: usize) -> (Vec<f64>, Vec<f64>) {
    let c = alpha.len();
    let mut dalpha = vec![0.0; c];
    let dx = dy
        .iter()
        .zip(x)
        .enumerate()
        .map(|(i, (&g, &v))| {
            let ch = channel(i, c, s);
            if v > 0.0 {
                g
            } else {
                dalpha[ch] += g * v;
                alpha[ch] * g
            }
        })
        .collect();
    (dx, dalpha)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reference::{assert_grad, dot, numeric_grad, randv};
    use crate::rng::Rng;

    #[test]
    fn prelu_gradients_match_finite_differences() {
        let mut rng = Rng::new(1);
        let (n, c, s) = (2, 3, 5);
        // Keep inputs away from the kink at 0, where the derivative does not exist.
        let x: Vec<f64> = randv(&mut rng, n * c * s).into_iter().map(|v| if v.abs() < 0.05 { v + 0.1 } else { v }).collect();
        let alpha = randv(&mut rng, c);
        let dy = randv(&mut rng, n * c * s);
        let (dx, da) = prelu_backward(&dy, &x, &alpha, s);
        let nx = numeric_grad(|x| dot(&prelu_forward(x, &alpha, s), &dy), &x, 1e-6);
        let na = numeric_grad(|a| dot(&prelu_forward(&x, a, s), &dy), &alpha, 1e-6);
        assert_grad("prelu dx", &dx, &nx, 1e-7);
        assert_grad("prelu dalpha", &da, &na, 1e-7);
    }

    #[test]
    fn relu_and_leaky_gradients_match_finite_differences() {
        let mut rng = Rng::new(2);
        let x: Vec<f64> = randv(&mut rng, 40).into_iter().map(|v| if v.abs() < 0.05 { v - 0.1 } else { v }).collect();
        let dy = randv(&mut rng, 40);
        let n = numeric_grad(|x| dot(&relu_forward(x), &dy), &x, 1e-6);
        assert_grad("relu dx", &relu_backward(&dy, &x), &n, 1e-7);
        let n = numeric_grad(|x| dot(&leaky_relu_forward(x, 0.1), &dy), &x, 1e-6);
        assert_grad("leaky dx", &leaky_relu_backward(&dy, &x, 0.1), &n, 1e-7);
    }
}
