//! f64 reference for shaders/conv2d.wgsl. x [N, Cin, H, W], w [Cout, Cin, KH, KW], b [Cout],
//! y [N, Cout, OH, OW]; zero padding (pad_top, pad_left; bottom/right only shrink or grow
//! OH/OW), input position iy = oy * stride_h + ky - pad_top (likewise ix). The geometry is
//! nn's `ConvGeom` (what a `Conv2d` layer resolves), re-exported here.

pub use crate::nn::conv2d::ConvGeom;

/// Input (iy, ix) read by output (oy, ox) through tap (ky, kx); None in the zero padding.
fn input_pos(g: &ConvGeom, oy: usize, ox: usize, ky: usize, kx: usize) -> Option<(usize, usize)> {
    let iy = (oy * g.stride_h + ky).checked_sub(g.pad_top)?;
    let ix = (ox * g.stride_w + kx).checked_sub(g.pad_left)?;
    (iy < g.h && ix < g.w).then_some((iy, ix))
}

/// Calls `f(x_index, w_index, y_index)` for every product term of the convolution.
fn for_each_term(g: &ConvGeom, mut f: impl FnMut(usize, usize, usize)) {
    for n in 0..g.n {
        for co in 0..g.cout {
            for oy in 0..g.oh {
                for ox in 0..g.ow {
                    let yi = ((n * g.cout + co) * g.oh + oy) * g.ow + ox;
                    for ci in 0..g.cin {
                        for ky in 0..g.kh {
                            for kx in 0..g.kw {
                                if let Some((iy, ix)) = input_pos(g, oy, ox, ky, kx) {
                                    let xi = ((n * g.cin + ci) * g.h + iy) * g.w + ix;
                                    let wi = ((co * g.cin + ci) * g.kh + ky) * g.kw + kx;
                                    f(xi, wi, yi);
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// y[n,co,oy,ox] = b[co] + sum_{ci,ky,kx} w[co,ci,ky,kx] * x[n,ci,iy,ix].
pub fn forward(g: &ConvGeom, x: &[f64], w: &[f64], b: Option<&[f64]>) -> Vec<f64> {
    assert_eq!(x.len(), g.x_len(), "reference conv2d: x length");
    assert_eq!(w.len(), g.w_len(), "reference conv2d: w length");
    let mut y = vec![0.0; g.y_len()];
    if let Some(b) = b {
        assert_eq!(b.len(), g.cout, "reference conv2d: b length");
        let s = g.oh * g.ow;
        for (i, v) in y.iter_mut().enumerate() {
            *v = b[(i / s) % g.cout];
        }
    }
    for_each_term(g, |xi, wi, yi| y[yi] += w[wi] * x[xi]);
    y
}

/// Returns (dx, dw, db): dx[xi] += w * dy, dw[wi] += x * dy over every product term,
/// db[co] = sum of dy over n, oy, ox.
pub fn backward(g: &ConvGeom, dy: &[f64], x: &[f64], w: &[f64]) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
    assert_eq!(dy.len(), g.y_len(), "reference conv2d: dy length");
    let mut dx = vec![0.0; g.x_len()];
    let mut dw = vec![0.0; g.w_len()];
    for_each_term(g, |xi, wi, yi| {
        dx[xi] += w[wi] * dy[yi];
        dw[wi] += x[xi] * dy[yi];
    });
    let s = g.oh * g.ow;
    let mut db = vec![0.0; g.cout];
    for (i, v) in dy.iter().enumerate() {
        db[(i / s) % g.cout] += v;
    }
    (dx, dw, db)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nn::Padding;
    use crate::reference::{assert_grad, dot, numeric_grad, randv};
    use crate::rng::Rng;

    fn check(x_shape: [usize; 4], cout: usize, k: (usize, usize), s: (usize, usize), p: Padding, seed: u64) {
        let g = ConvGeom::new(x_shape, cout, k, s, p).unwrap();
        let mut rng = Rng::new(seed);
        let x = randv(&mut rng, g.x_len());
        let w = randv(&mut rng, g.w_len());
        let b = randv(&mut rng, g.cout);
        let dy = randv(&mut rng, g.y_len());
        let (dx, dw, db) = backward(&g, &dy, &x, &w);
        // The op is linear in each argument, so central differences are exact up to rounding.
        let nx = numeric_grad(|x| dot(&forward(&g, x, &w, Some(&b)), &dy), &x, 1e-3);
        let nw = numeric_grad(|w| dot(&forward(&g, &x, w, Some(&b)), &dy), &w, 1e-3);
        let nb = numeric_grad(|b| dot(&forward(&g, &x, &w, Some(b)), &dy), &b, 1e-3);
        let what = format!("{x_shape:?} cout {cout} k {k:?} s {s:?} {p:?}");
        assert_grad(&format!("conv2d dx {what}"), &dx, &nx, 1e-8);
        assert_grad(&format!("conv2d dw {what}"), &dw, &nw, 1e-8);
        assert_grad(&format!("conv2d db {what}"), &db, &nb, 1e-8);
    }

    #[test]
    fn gradients_match_finite_differences() {
        check([2, 3, 5, 7], 2, (3, 3), (1, 1), Padding::Same, 1);
        check([1, 2, 7, 5], 3, (3, 2), (2, 2), Padding::Explicit { top: 2, bottom: 0, left: 1, right: 3 }, 2);
        check([2, 1, 6, 5], 2, (5, 5), (1, 2), Padding::Same, 3);
        check([1, 2, 5, 5], 1, (2, 3), (2, 1), Padding::Valid, 4);
        check([2, 2, 3, 3], 2, (1, 1), (2, 2), Padding::Valid, 5);
    }

    #[test]
    fn forward_matches_hand_computed_values() {
        // 1x1x3x3 input 1..9, one 2x2 filter of ones, valid: sums of each 2x2 window.
        let g = ConvGeom::new([1, 1, 3, 3], 1, (2, 2), (1, 1), Padding::Valid).unwrap();
        let x: Vec<f64> = (1..=9).map(f64::from).collect();
        assert_eq!(forward(&g, &x, &[1.0; 4], Some(&[0.5])), vec![12.5, 16.5, 24.5, 28.5]);
        // Same padding, 3x3 ones: the corner sees 1+2+4+5 (bottom/right zeros).
        let g = ConvGeom::new([1, 1, 3, 3], 1, (3, 3), (1, 1), Padding::Same).unwrap();
        let y = forward(&g, &x, &[1.0; 9], None);
        assert_eq!(y[0], 12.0);
        assert_eq!(y[4], 45.0);
        // Stride 2 with explicit asymmetric padding (top 1, right 1): 2x2 output, the first
        // row sees only input row 0, the last column only input column 2.
        let g = ConvGeom::new([1, 1, 3, 3], 1, (2, 2), (2, 2), Padding::Explicit { top: 1, bottom: 0, left: 0, right: 1 }).unwrap();
        assert_eq!((g.oh, g.ow), (2, 2));
        assert_eq!(forward(&g, &x, &[1.0; 4], None), vec![3.0, 3.0, 24.0, 15.0]);
    }
}
