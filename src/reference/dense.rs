//! f64 reference for shaders/dense.wgsl. x, dx [N, I] flat; W, dW [O, I]; b, db [O];
//! y, dy [N, O].

/// y[n, o] = b[o] + sum_i x[n, i] W[o, i]. `b` is `None` for a layer without bias.
pub fn forward(x: &[f64], w: &[f64], b: Option<&[f64]>, n: usize, inf: usize, outf: usize) -> Vec<f64> {
    assert_eq!(x.len(), n * inf);
    assert_eq!(w.len(), outf * inf);
    let mut y = vec![0.0; n * outf];
    for s in 0..n {
        for o in 0..outf {
            let dot: f64 = (0..inf).map(|i| x[s * inf + i] * w[o * inf + i]).sum();
            y[s * outf + o] = dot + b.map_or(0.0, |b| b[o]);
        }
    }
    y
}

/// dx[n, i] = sum_o dy[n, o] W[o, i].
pub fn backward_input(dy: &[f64], w: &[f64], n: usize, inf: usize, outf: usize) -> Vec<f64> {
    let mut dx = vec![0.0; n * inf];
    for s in 0..n {
        for i in 0..inf {
            dx[s * inf + i] = (0..outf).map(|o| dy[s * outf + o] * w[o * inf + i]).sum();
        }
    }
    dx
}

/// dW[o, i] = sum_n dy[n, o] x[n, i].
pub fn backward_weight(dy: &[f64], x: &[f64], n: usize, inf: usize, outf: usize) -> Vec<f64> {
    let mut dw = vec![0.0; outf * inf];
    for o in 0..outf {
        for i in 0..inf {
            dw[o * inf + i] = (0..n).map(|s| dy[s * outf + o] * x[s * inf + i]).sum();
        }
    }
    dw
}

/// db[o] = sum_n dy[n, o].
pub fn backward_bias(dy: &[f64], n: usize, outf: usize) -> Vec<f64> {
    (0..outf).map(|o| (0..n).map(|s| dy[s * outf + o]).sum()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reference::{assert_grad, dot, numeric_grad, randv};
    use crate::rng::Rng;

    #[test]
    fn gradients_match_finite_differences() {
        let mut rng = Rng::new(11);
        for (n, inf, outf) in [(3, 7, 5), (1, 1, 1), (2, 9, 1)] {
            let x = randv(&mut rng, n * inf);
            let w = randv(&mut rng, outf * inf);
            let b = randv(&mut rng, outf);
            let dy = randv(&mut rng, n * outf);
            let f = |x: &[f64], w: &[f64], b: &[f64]| dot(&forward(x, w, Some(b), n, inf, outf), &dy);
            let nx = numeric_grad(|v| f(v, &w, &b), &x, 1e-6);
            let nw = numeric_grad(|v| f(&x, v, &b), &w, 1e-6);
            let nb = numeric_grad(|v| f(&x, &w, v), &b, 1e-6);
            assert_grad("dense dx", &backward_input(&dy, &w, n, inf, outf), &nx, 1e-7);
            assert_grad("dense dW", &backward_weight(&dy, &x, n, inf, outf), &nw, 1e-7);
            assert_grad("dense db", &backward_bias(&dy, n, outf), &nb, 1e-7);
        }
    }

    #[test]
    fn forward_without_bias_is_the_plain_product() {
        // [[1, 2], [3, 4]] W^T with W = [[1, 0], [1, 1], [0, 2]].
        let y = forward(&[1.0, 2.0, 3.0, 4.0], &[1.0, 0.0, 1.0, 1.0, 0.0, 2.0], None, 2, 2, 3);
        assert_eq!(y, vec![1.0, 3.0, 4.0, 3.0, 7.0, 8.0]);
    }
}
