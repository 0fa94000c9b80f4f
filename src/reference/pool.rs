//! f64 reference for shaders/pool.wgsl. x, dx [N, C, H, W]; y, dy, argmax [N, C, OH, OW];
//! argmax is `h*W + w` inside the (n, c) plane. Padded positions never win a max and do not
//! count in an average (which divides by the window's in-bounds element count). Ties: the
//! first element in row-major window scan order wins. Backward passes scatter (the GPU
//! gathers), so the two are independent derivations.

use crate::nn::{resolve_padding, Padding};

/// Pooling geometry: input [n, c, h, w], window (kh, kw), stride (sh, sw), leading padding
/// (pt, pl), output (oh, ow).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolGeom {
    pub n: usize,
    pub c: usize,
    pub h: usize,
    pub w: usize,
    pub kh: usize,
    pub kw: usize,
    pub sh: usize,
    pub sw: usize,
    pub pt: usize,
    pub pl: usize,
    pub oh: usize,
    pub ow: usize,
}

impl PoolGeom {
    /// Resolve `padding` with `nn::resolve_padding` (panics on a bad config: tests only).
    pub fn new(shape: [usize; 4], window: (usize, usize), stride: (usize, usize), padding: Padding) -> Self {
        let [n, c, h, w] = shape;
        let (pt, pl, oh, ow) = resolve_padding("reference pool", padding, h, w, window, stride).unwrap();
        PoolGeom { n, c, h, w, kh: window.0, kw: window.1, sh: stride.0, sw: stride.1, pt, pl, oh, ow }
    }

    /// In-bounds input rows [lo, hi) and columns of window (oy, ox).
    fn window(&self, oy: usize, ox: usize) -> ((usize, usize), (usize, usize)) {
        let clip = |start: usize, k: usize, before: usize, len: usize| {
            let lo = start.max(before) - before;
            let hi = (start + k).min(before + len) - before;
            (lo, hi)
        };
        (clip(oy * self.sh, self.kh, self.pt, self.h), clip(ox * self.sw, self.kw, self.pl, self.w))
    }

    /// Calls `f(plane, oy, ox, rows, cols)` for every output, in output order.
    fn each_output(&self, mut f: impl FnMut(usize, usize, usize, (usize, usize), (usize, usize))) {
        for plane in 0..self.n * self.c {
            for oy in 0..self.oh {
                for ox in 0..self.ow {
                    let (rows, cols) = self.window(oy, ox);
                    assert!(rows.0 < rows.1 && cols.0 < cols.1, "window ({oy}, {ox}) holds no input element");
                    f(plane, oy, ox, rows, cols);
                }
            }
        }
    }

    pub fn input_len(&self) -> usize {
        self.n * self.c * self.h * self.w
    }
    pub fn output_len(&self) -> usize {
        self.n * self.c * self.oh * self.ow
    }
}

/// Returns (y, argmax).
pub fn max_pool_forward(x: &[f64], g: &PoolGeom) -> (Vec<f64>, Vec<u32>) {
    assert_eq!(x.len(), g.input_len());
    let (mut y, mut arg) = (Vec::with_capacity(g.output_len()), Vec::with_capacity(g.output_len()));
    let hw = g.h * g.w;
    g.each_output(|plane, _, _, rows, cols| {
        let mut best: Option<(f64, usize)> = None;
        for r in rows.0..rows.1 {
            for c in cols.0..cols.1 {
                let idx = r * g.w + c;
                let v = x[plane * hw + idx];
                // Strict >: the first maximum in scan order wins.
                if best.is_none_or(|(b, _)| v > b) {
                    best = Some((v, idx));
                }
            }
        }
        let (v, idx) = best.unwrap();
        y.push(v);
        arg.push(idx as u32);
    });
    (y, arg)
}

/// dx: each dy goes to its window's argmax.
pub fn max_pool_backward(dy: &[f64], argmax: &[u32], g: &PoolGeom) -> Vec<f64> {
    assert_eq!(dy.len(), g.output_len());
    assert_eq!(argmax.len(), g.output_len());
    let mut dx = vec![0.0; g.input_len()];
    let (hw, ohw) = (g.h * g.w, g.oh * g.ow);
    for (o, (&d, &a)) in dy.iter().zip(argmax).enumerate() {
        dx[(o / ohw) * hw + a as usize] += d;
    }
    dx
}

pub fn avg_pool_forward(x: &[f64], g: &PoolGeom) -> Vec<f64> {
    assert_eq!(x.len(), g.input_len());
    let mut y = Vec::with_capacity(g.output_len());
    let hw = g.h * g.w;
    g.each_output(|plane, _, _, rows, cols| {
        let mut s = 0.0;
        for r in rows.0..rows.1 {
            for c in cols.0..cols.1 {
                s += x[plane * hw + r * g.w + c];
            }
        }
        y.push(s / ((rows.1 - rows.0) * (cols.1 - cols.0)) as f64);
    });
    y
}

/// dx: each dy spread evenly over its window's in-bounds elements.
pub fn avg_pool_backward(dy: &[f64], g: &PoolGeom) -> Vec<f64> {
    assert_eq!(dy.len(), g.output_len());
    let mut dx = vec![0.0; g.input_len()];
    let (hw, ohw) = (g.h * g.w, g.oh * g.ow);
    g.each_output(|plane, oy, ox, rows, cols| {
        let d = dy[plane * ohw + oy * g.ow + ox] / ((rows.1 - rows.0) * (cols.1 - cols.0)) as f64;
        for r in rows.0..rows.1 {
            for c in cols.0..cols.1 {
                dx[plane * hw + r * g.w + c] += d;
            }
        }
    });
    dx
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reference::{assert_grad, dot, numeric_grad, randv};
    use crate::rng::Rng;

    /// Distinct inputs, at least 0.01 apart (a shuffled ramp), so every max is unambiguous
    /// and a finite-difference step of 1e-6 never changes a winner.
    fn distinct(rng: &mut Rng, n: usize) -> Vec<f64> {
        let mut v: Vec<f64> = (0..n).map(|i| (i as f64 - n as f64 / 2.0) * 0.01).collect();
        rng.shuffle(&mut v);
        v
    }

    type Config = ([usize; 4], (usize, usize), (usize, usize), Padding);

    fn configs() -> Vec<Config> {
        vec![
            ([1, 1, 7, 7], (2, 2), (2, 2), Padding::Valid),
            ([1, 1, 7, 7], (2, 2), (2, 2), Padding::Same),
            ([2, 3, 7, 5], (3, 3), (2, 2), Padding::Same),
            ([1, 2, 7, 5], (3, 3), (1, 1), Padding::Same),
            ([1, 2, 7, 5], (3, 3), (1, 1), Padding::Valid),
            ([2, 1, 9, 6], (3, 2), (2, 1), Padding::Same),
            ([1, 2, 6, 7], (2, 3), (1, 2), Padding::Explicit { top: 1, bottom: 0, left: 2, right: 1 }),
            ([1, 3, 5, 7], (5, 7), (1, 1), Padding::Valid),
        ]
    }

    #[test]
    fn output_sizes_match_keras() {
        assert_eq!(PoolGeom::new([1, 1, 7, 7], (2, 2), (2, 2), Padding::Valid).oh, 3);
        assert_eq!(PoolGeom::new([1, 1, 7, 7], (2, 2), (2, 2), Padding::Same).oh, 4);
        let g = PoolGeom::new([1, 1, 7, 5], (3, 3), (2, 2), Padding::Same);
        assert_eq!((g.oh, g.ow, g.pt, g.pl), (4, 3, 1, 1));
    }

    #[test]
    fn max_pool_gradients_match_finite_differences() {
        let mut rng = Rng::new(11);
        for (shape, k, s, pad) in configs() {
            let g = PoolGeom::new(shape, k, s, pad);
            let x = distinct(&mut rng, g.input_len());
            let dy = randv(&mut rng, g.output_len());
            let (_, arg) = max_pool_forward(&x, &g);
            let dx = max_pool_backward(&dy, &arg, &g);
            let num = numeric_grad(|x| dot(&max_pool_forward(x, &g).0, &dy), &x, 1e-6);
            assert_grad(&format!("max pool dx {g:?}"), &dx, &num, 1e-7);
        }
    }

    #[test]
    fn avg_pool_gradients_match_finite_differences() {
        let mut rng = Rng::new(12);
        for (shape, k, s, pad) in configs() {
            let g = PoolGeom::new(shape, k, s, pad);
            let x = randv(&mut rng, g.input_len());
            let dy = randv(&mut rng, g.output_len());
            let dx = avg_pool_backward(&dy, &g);
            let num = numeric_grad(|x| dot(&avg_pool_forward(x, &g), &dy), &x, 1e-6);
            assert_grad(&format!("avg pool dx {g:?}"), &dx, &num, 1e-7);
        }
    }

    #[test]
    fn max_ties_go_to_the_first_element_and_padding_never_wins() {
        // All -1: padding (zeros in a zero-padding view) must not win, and the first
        // in-bounds element of each window must.
        let g = PoolGeom::new([1, 1, 3, 3], (2, 2), (2, 2), Padding::Same);
        let (y, arg) = max_pool_forward(&[-1.0; 9], &g);
        assert_eq!(y, vec![-1.0; 4]);
        assert_eq!(arg, vec![0, 2, 6, 8]);
    }

    #[test]
    fn avg_divides_by_in_bounds_count() {
        // 3x3 same-padded 3x3 window over a 2x2 of ones: every window averages to 1.
        let g = PoolGeom::new([1, 1, 2, 2], (3, 3), (1, 1), Padding::Same);
        assert_eq!(avg_pool_forward(&[1.0; 4], &g), vec![1.0; 4]);
        // Global average pooling.
        let g = PoolGeom::new([1, 2, 2, 3], (2, 3), (1, 1), Padding::Valid);
        assert_eq!(avg_pool_forward(&[1., 2., 3., 4., 5., 6., 0., 0., 0., 0., 0., 6.], &g), vec![3.5, 1.0]);
    }
}
