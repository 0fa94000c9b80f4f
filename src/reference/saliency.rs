//! f64 reference for shaders/saliency.wgsl (SmoothGrad noise, Integrated Gradients path
//! images, per-image gradient sums). The noise uses the shader's hash bit for bit; only the
//! Box-Muller transform is evaluated in f64 here (f32 `log` / `cos` on the GPU).
//!
//! Layouts as the shader: L values per image, S copies per image, a batch of `rows` rows
//! holding copies `first..first + rows` of the chunk (clamped to `total - 1`).

use super::dropout::pcg;

/// The copy held by batch row `j`.
fn copy_of(first: usize, total: usize, j: usize) -> usize {
    (first + j).min(total - 1)
}

/// The two uniform words of element `q` of copy `copy` (a global copy id) under `seed`:
/// u1 in (0, 1], u2 in [0, 1), both exact in f32.
pub fn uniforms(seed: u32, copy: u32, q: u32) -> (f64, f64) {
    let key = pcg(pcg(seed) ^ copy);
    let h1 = pcg(key ^ pcg(2u32.wrapping_mul(q)));
    let h2 = pcg(key ^ pcg(2u32.wrapping_mul(q).wrapping_add(1)));
    let scale = 1.0 / 16_777_216.0;
    (((h1 >> 8) + 1) as f64 * scale, (h2 >> 8) as f64 * scale)
}

/// Standard normal draw of element `q` of global copy `copy` (Box-Muller).
pub fn gaussian(seed: u32, copy: u32, q: u32) -> f64 {
    let (u1, u2) = uniforms(seed, copy, q);
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

/// Shape and position of one batch of copies (the shader's uniform).
#[derive(Debug, Clone, Copy)]
pub struct Batch {
    /// L = C*H*W.
    pub len: usize,
    /// S copies per image.
    pub copies: usize,
    /// B rows per batch.
    pub rows: usize,
    /// Copy held by row 0.
    pub first: usize,
    /// Copies in the chunk (m*S).
    pub total: usize,
    /// Index of the chunk's first image among all explained (seeds the noise).
    pub image0: usize,
}

/// saliency_noise: out[j, p] = x[i, p] + sigma[i] * z. x [M, L], sigma [M] -> [rows, L].
pub fn noise(x: &[f64], sigma: &[f64], b: Batch, seed: u32) -> Vec<f64> {
    let mut out = vec![0.0; b.rows * b.len];
    for j in 0..b.rows {
        let r = copy_of(b.first, b.total, j);
        let (i, k) = (r / b.copies, r % b.copies);
        let copy = ((b.image0 + i) * b.copies + k) as u32;
        for q in 0..b.len {
            out[j * b.len + q] = x[i * b.len + q] + sigma[i] * gaussian(seed, copy, q as u32);
        }
    }
    out
}

/// saliency_interpolate: out[j, p] = base[p] + (k + 0.5) / S * (x[i, p] - base[p]).
pub fn interpolate(x: &[f64], base: &[f64], b: Batch) -> Vec<f64> {
    let mut out = vec![0.0; b.rows * b.len];
    for j in 0..b.rows {
        let r = copy_of(b.first, b.total, j);
        let (i, k) = (r / b.copies, r % b.copies);
        let a = (k as f64 + 0.5) / b.copies as f64;
        for q in 0..b.len {
            out[j * b.len + q] = base[q] + a * (x[i * b.len + q] - base[q]);
        }
    }
    out
}

/// saliency_accumulate applied to `acc` [M, L] in place: images with copies in this batch
/// get `s * sum of their rows' gradients`, overwriting when the batch holds their first
/// copy and adding otherwise; s = weight, times (x - base) when `ig`.
pub fn accumulate(acc: &mut [f64], g: &[f64], x: &[f64], base: &[f64], b: Batch, weight: f64, ig: bool) {
    let m = acc.len() / b.len;
    for i in 0..m {
        let lo = (i * b.copies).max(b.first);
        let hi = ((i + 1) * b.copies).min(b.first + b.rows).min(b.total);
        if lo >= hi {
            continue;
        }
        for q in 0..b.len {
            let s: f64 = (lo..hi).map(|r| g[(r - b.first) * b.len + q]).sum();
            let scale = if ig { weight * (x[i * b.len + q] - base[q]) } else { weight };
            let prev = if i * b.copies < b.first { acc[i * b.len + q] } else { 0.0 };
            acc[i * b.len + q] = prev + scale * s;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gaussian_has_unit_variance_and_seeds_differ() {
        let n = 100_000u32;
        let z: Vec<f64> = (0..n).map(|q| gaussian(7, 3, q)).collect();
        let mean = z.iter().sum::<f64>() / n as f64;
        let var = z.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n as f64;
        assert!(mean.abs() < 0.02 && (var - 1.0).abs() < 0.02, "mean {mean} var {var}");
        // Other copies and seeds give unrelated draws.
        let corr = |a: &[f64], b: &[f64]| a.iter().zip(b).map(|(x, y)| x * y).sum::<f64>() / a.len() as f64;
        let other_copy: Vec<f64> = (0..n).map(|q| gaussian(7, 4, q)).collect();
        let other_seed: Vec<f64> = (0..n).map(|q| gaussian(8, 3, q)).collect();
        assert!(corr(&z, &other_copy).abs() < 0.02 && corr(&z, &other_seed).abs() < 0.02);
    }

    #[test]
    fn accumulate_over_batches_sums_every_copy_once() {
        // 3 images of 2 values, 4 copies each, batches of 5 rows: the sum over batches of
        // the gathered gradients is the per-image mean (weight 1/4) of g.
        let (len, copies, rows, m) = (2, 4, 5, 3);
        let total = m * copies;
        let grad_of = |r: usize, q: usize| (r * 10 + q) as f64;
        let mut acc = vec![f64::NAN; m * len];
        let x = vec![0.0; m * len];
        let base = vec![0.0; len];
        for first in (0..total).step_by(rows) {
            let g: Vec<f64> = (0..rows * len).map(|e| grad_of((first + e / len).min(total - 1), e % len)).collect();
            let b = Batch { len, copies, rows, first, total, image0: 0 };
            accumulate(&mut acc, &g, &x, &base, b, 0.25, false);
        }
        for i in 0..m {
            for q in 0..len {
                let want = (0..copies).map(|k| grad_of(i * copies + k, q)).sum::<f64>() / 4.0;
                assert_eq!(acc[i * len + q], want);
            }
        }
    }
}
