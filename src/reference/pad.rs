//! f64 reference for shaders/pad.wgsl. x, dx [N, C, H, W]; y, dy [N, C, H + top + bottom,
//! W + left + right]; `pads` is (top, bottom, left, right).

/// y = x surrounded by zeros.
pub fn pad_forward(x: &[f64], shape: [usize; 4], pads: (usize, usize, usize, usize)) -> Vec<f64> {
    let [n, c, h, w] = shape;
    let (top, bottom, left, right) = pads;
    assert_eq!(x.len(), n * c * h * w);
    let (oh, ow) = (h + top + bottom, w + left + right);
    let mut y = vec![0.0; n * c * oh * ow];
    for plane in 0..n * c {
        for r in 0..h {
            let src = (plane * h + r) * w;
            let dst = (plane * oh + r + top) * ow + left;
            y[dst..dst + w].copy_from_slice(&x[src..src + w]);
        }
    }
    y
}

/// dx = dy cropped to the input's rows and columns.
pub fn pad_backward(dy: &[f64], shape: [usize; 4], pads: (usize, usize, usize, usize)) -> Vec<f64> {
    let [n, c, h, w] = shape;
    let (top, bottom, left, right) = pads;
    let (oh, ow) = (h + top + bottom, w + left + right);
    assert_eq!(dy.len(), n * c * oh * ow);
    let mut dx = Vec::with_capacity(n * c * h * w);
    for plane in 0..n * c {
        for r in 0..h {
            let src = (plane * oh + r + top) * ow + left;
            dx.extend_from_slice(&dy[src..src + w]);
        }
    }
    dx
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reference::{assert_grad, dot, numeric_grad, randv};
    use crate::rng::Rng;

    #[test]
    fn pad_gradient_matches_finite_differences() {
        let mut rng = Rng::new(21);
        for (shape, pads) in [([2, 3, 5, 7], (1, 2, 0, 3)), ([1, 1, 3, 1], (0, 0, 2, 2)), ([1, 2, 4, 3], (0, 0, 0, 0))] {
            let x = randv(&mut rng, shape.iter().product());
            let [n, c, h, w] = shape;
            let dy = randv(&mut rng, n * c * (h + pads.0 + pads.1) * (w + pads.2 + pads.3));
            let num = numeric_grad(|x| dot(&pad_forward(x, shape, pads), &dy), &x, 1e-6);
            assert_grad(&format!("pad dx {shape:?} {pads:?}"), &pad_backward(&dy, shape, pads), &num, 1e-7);
        }
    }

    #[test]
    fn pad_places_the_input_inside_zeros() {
        let y = pad_forward(&[1.0, 2.0], [1, 1, 1, 2], (1, 0, 0, 1));
        assert_eq!(y, vec![0.0, 0.0, 0.0, 1.0, 2.0, 0.0]);
    }
}
