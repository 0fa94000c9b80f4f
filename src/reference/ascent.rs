//! f64 reference for shaders/ascent.wgsl, the image-update kernels of filter ascent
//! (`explain::ascent::kernels`), mirroring the shader exactly; tests/ascent.rs compares.
//! Images are `[N, C, H, W]` flattened; `nc = N * C` planes. The random start uses the
//! shaders' `pcg` hash (shaders/prelude.wgsl) bit for bit.

use super::dropout::pcg;

/// `ascent_init`: image b (of `per_image` values) starts at center + amp * (2u - 1).
pub fn init(n: usize, per_image: usize, filters: &[u32], seed: u32, center: f64, amp: f64) -> Vec<f64> {
    (0..n * per_image)
        .map(|i| {
            let f = filters[i / per_image];
            let hsh = pcg(pcg((i % per_image) as u32) ^ pcg(seed ^ pcg(f)));
            let u = (hsh >> 8) as f64 / 16_777_216.0;
            center + amp * (2.0 * u - 1.0)
        })
        .collect()
}

/// `ascent_seed`: [n, k, s] with 1/s on plane filters[b] of image b.
pub fn seed(n: usize, k: usize, s: usize, filters: &[u32]) -> Vec<f64> {
    (0..n * k * s).map(|i| if (i / s) % k == filters[i / (k * s)] as usize { 1.0 / s as f64 } else { 0.0 }).collect()
}

/// `ascent_roll`: numpy.roll of each image by sign * shift[b] = (dy, dx).
pub fn roll(x: &[f64], [n, c, h, w]: [usize; 4], shift: &[i32], sign: i32) -> Vec<f64> {
    let mut y = vec![0.0; x.len()];
    for b in 0..n {
        let (sy, sx) = ((sign * shift[2 * b]) as i64, (sign * shift[2 * b + 1]) as i64);
        for ch in 0..c {
            let base = (b * c + ch) * h * w;
            for i in 0..h {
                for j in 0..w {
                    let si = (i as i64 - sy).rem_euclid(h as i64) as usize;
                    let sj = (j as i64 - sx).rem_euclid(w as i64) as usize;
                    y[base + i * w + j] = x[base + si * w + sj];
                }
            }
        }
    }
    y
}

fn taps(o: usize, len: usize, out_len: usize) -> (usize, usize, f64) {
    let v = ((o as f64 + 0.5) * len as f64 / out_len as f64 - 0.5).clamp(0.0, (len - 1) as f64);
    let i0 = v.floor() as usize;
    (i0, (i0 + 1).min(len - 1), v - i0 as f64)
}

/// `ascent_resize`: `nc` planes of `src` = (h, w) to `dst` = (H, W), bilinear.
pub fn resize(x: &[f64], nc: usize, src: (usize, usize), dst: (usize, usize)) -> Vec<f64> {
    let ((h, w), (oh, ow)) = (src, dst);
    let mut y = Vec::with_capacity(nc * oh * ow);
    for p in 0..nc {
        let x = &x[p * h * w..(p + 1) * h * w];
        for r in 0..oh {
            let (y0, y1, fy) = taps(r, h, oh);
            for q in 0..ow {
                let (x0, x1, fx) = taps(q, w, ow);
                let top = x[y0 * w + x0] * (1.0 - fx) + x[y0 * w + x1] * fx;
                let bot = x[y1 * w + x0] * (1.0 - fx) + x[y1 * w + x1] * fx;
                y.push(top * (1.0 - fy) + bot * fy);
            }
        }
    }
    y
}

/// `ascent_resize_backward`: the transpose of [`resize`] (scatter form), `dy` of size
/// `dst`, result of size `src`.
pub fn resize_backward(dy: &[f64], nc: usize, src: (usize, usize), dst: (usize, usize)) -> Vec<f64> {
    let ((h, w), (oh, ow)) = (src, dst);
    let mut dx = vec![0.0; nc * h * w];
    for p in 0..nc {
        for r in 0..oh {
            let (y0, y1, fy) = taps(r, h, oh);
            for q in 0..ow {
                let (x0, x1, fx) = taps(q, w, ow);
                let g = dy[(p * oh + r) * ow + q];
                let d = &mut dx[p * h * w..(p + 1) * h * w];
                d[y0 * w + x0] += g * (1.0 - fy) * (1.0 - fx);
                d[y0 * w + x1] += g * (1.0 - fy) * fx;
                d[y1 * w + x0] += g * fy * (1.0 - fx);
                d[y1 * w + x1] += g * fy * fx;
            }
        }
    }
    dx
}

/// `ascent_inv_rms`: 1 / (sqrt(mean g^2) + eps) per image of `per_image` values.
pub fn inv_rms(g: &[f64], per_image: usize, eps: f64) -> Vec<f64> {
    g.chunks(per_image).map(|v| 1.0 / ((v.iter().map(|x| x * x).sum::<f64>() / per_image as f64).sqrt() + eps)).collect()
}

/// Anisotropic total variation summed over `nc` planes of h x w.
pub fn tv(x: &[f64], nc: usize, h: usize, w: usize) -> f64 {
    let mut s = 0.0;
    for p in 0..nc {
        let x = &x[p * h * w..(p + 1) * h * w];
        for i in 0..h {
            for j in 0..w {
                if j + 1 < w {
                    s += (x[i * w + j + 1] - x[i * w + j]).abs();
                }
                if i + 1 < h {
                    s += (x[(i + 1) * w + j] - x[i * w + j]).abs();
                }
            }
        }
    }
    s
}

fn sign(v: f64) -> f64 {
    if v > 0.0 {
        1.0
    } else if v < 0.0 {
        -1.0
    } else {
        0.0
    }
}

/// `ascent_tv_grad`: d [`tv`] / d x (sign(0) = 0).
pub fn tv_grad(x: &[f64], nc: usize, h: usize, w: usize) -> Vec<f64> {
    let mut t = vec![0.0; x.len()];
    for p in 0..nc {
        let o = p * h * w;
        for i in 0..h {
            for j in 0..w {
                let k = o + i * w + j;
                let mut d = 0.0;
                if j + 1 < w {
                    d -= sign(x[k + 1] - x[k]);
                }
                if j > 0 {
                    d += sign(x[k] - x[k - 1]);
                }
                if i + 1 < h {
                    d -= sign(x[k + w] - x[k]);
                }
                if i > 0 {
                    d += sign(x[k] - x[k - w]);
                }
                t[k] = d;
            }
        }
    }
    t
}

/// The uniforms of one `ascent_step` (the fields of `explain::ascent::StepConfig`, widened:
/// the oracle keeps to its own plain types).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Step {
    pub lr: f64,
    pub decay: f64,
    pub tv: f64,
    pub center: f64,
    pub lo: f64,
    pub hi: f64,
}

/// `ascent_step` on images of `per_image` values.
pub fn step(img: &[f64], g: &[f64], t: &[f64], inv_rms: Option<&[f64]>, per_image: usize, cfg: &Step) -> Vec<f64> {
    img.iter()
        .enumerate()
        .map(|(i, &v)| {
            let r = inv_rms.map_or(1.0, |r| r[i / per_image]);
            let d = g[i] * r - cfg.decay * (v - cfg.center) - cfg.tv * t[i];
            (v + cfg.lr * d).clamp(cfg.lo, cfg.hi)
        })
        .collect()
}

/// `ascent_blur_h` then `ascent_blur_v`: separable Gaussian, edges repeated.
pub fn blur(x: &[f64], nc: usize, h: usize, w: usize, sigma: f64, radius: usize) -> Vec<f64> {
    let r = radius as i64;
    let wts: Vec<f64> = (-r..=r).map(|k| (-((k * k) as f64) / (2.0 * sigma * sigma)).exp()).collect();
    let norm: f64 = wts.iter().sum();
    let mut tmp = vec![0.0; x.len()];
    let mut y = vec![0.0; x.len()];
    for p in 0..nc {
        let o = p * h * w;
        for i in 0..h {
            for j in 0..w {
                tmp[o + i * w + j] = (-r..=r).map(|k| wts[(k + r) as usize] * x[o + i * w + (j as i64 + k).clamp(0, w as i64 - 1) as usize]).sum::<f64>() / norm;
            }
        }
        for i in 0..h {
            for j in 0..w {
                y[o + i * w + j] = (-r..=r).map(|k| wts[(k + r) as usize] * tmp[o + (i as i64 + k).clamp(0, h as i64 - 1) as usize * w + j]).sum::<f64>() / norm;
            }
        }
    }
    y
}

/// `ascent_filter_mean`: mean of act[b, filters[b], :] for act [n, k, s].
pub fn filter_mean(act: &[f64], n: usize, k: usize, s: usize, filters: &[u32]) -> Vec<f64> {
    (0..n).map(|b| act[(b * k + filters[b] as usize) * s..][..s].iter().sum::<f64>() / s as f64).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reference::{assert_grad, dot, numeric_grad, randv};
    use crate::rng::Rng;

    #[test]
    fn tv_grad_is_the_gradient_of_tv() {
        let mut rng = Rng::new(3);
        let (nc, h, w) = (2, 5, 7);
        let x = randv(&mut rng, nc * h * w);
        let num = numeric_grad(|x| tv(x, nc, h, w), &x, 1e-7);
        assert_grad("tv", &tv_grad(&x, nc, h, w), &num, 1e-6);
    }

    #[test]
    fn resize_backward_is_the_gradient_of_resize() {
        let mut rng = Rng::new(4);
        for (src, dst) in [((5, 7), (11, 9)), ((3, 3), (7, 7)), ((6, 4), (6, 4)), ((9, 8), (4, 5)), ((1, 2), (3, 3))] {
            let nc = 2;
            let x = randv(&mut rng, nc * src.0 * src.1);
            let up = randv(&mut rng, nc * dst.0 * dst.1);
            let num = numeric_grad(|x| dot(&resize(x, nc, src, dst), &up), &x, 1e-6);
            assert_grad("resize", &resize_backward(&up, nc, src, dst), &num, 1e-6);
        }
    }

    #[test]
    fn roll_back_undoes_roll_and_blur_keeps_constants() {
        let mut rng = Rng::new(5);
        let dims = [2, 1, 5, 7];
        let x = randv(&mut rng, 70);
        let shift = [2, -3, -6, 9];
        assert_eq!(roll(&roll(&x, dims, &shift, 1), dims, &shift, -1), x);
        // numpy.roll([0, 1, 2, 3, 4, 5, 6], 2) = [5, 6, 0, 1, 2, 3, 4].
        let row: Vec<f64> = (0..7).map(|v| v as f64).collect();
        assert_eq!(roll(&row, [1, 1, 1, 7], &[0, 2], 1), [5.0, 6.0, 0.0, 1.0, 2.0, 3.0, 4.0]);
        let c = vec![0.3; 35];
        assert!(blur(&c, 1, 5, 7, 1.3, 4).iter().all(|v| (v - 0.3).abs() < 1e-12));
    }
}
