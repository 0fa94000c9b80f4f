//! f64 reference for shaders/dropout.wgsl. The mask uses the shader's hash bit for bit (u32
//! wrapping arithmetic, the same f32 threshold test), so CPU and GPU masks agree exactly.

/// PCG-RXS-M-XS 32-bit hash, as `pcg` in the shader.
pub fn pcg(v: u32) -> u32 {
    let state = v.wrapping_mul(747796405).wrapping_add(2891336453);
    let word = ((state >> ((state >> 28) + 4)) ^ state).wrapping_mul(277803737);
    (word >> 22) ^ word
}

/// The mask's random word for flat element `i` under `seed`.
pub fn hash(seed: u32, i: u32) -> u32 {
    pcg(pcg(i) ^ pcg(seed))
}

/// Uniform in [0, 1): the top 24 bits of the hash times 2^-24 (exact in f32).
pub fn uniform(seed: u32, i: u32) -> f32 {
    (hash(seed, i) >> 8) as f32 * (1.0 / 16_777_216.0)
}

/// Whether element `i` is kept (u >= rate, compared in f32 as the shader does).
pub fn keep(seed: u32, i: u32, rate: f32) -> bool {
    uniform(seed, i) >= rate
}

/// The mask of an `n`-element tensor.
pub fn mask(seed: u32, n: usize, rate: f32) -> Vec<bool> {
    (0..n).map(|i| keep(seed, i as u32, rate)).collect()
}

/// y = keep ? x / (1 - rate) : 0.
pub fn dropout_forward(x: &[f64], seed: u32, rate: f32) -> Vec<f64> {
    let scale = 1.0 / (1.0 - rate as f64);
    x.iter().enumerate().map(|(i, &v)| if keep(seed, i as u32, rate) { v * scale } else { 0.0 }).collect()
}

/// dx = keep ? dy / (1 - rate) : 0 (the same mask as the forward of this seed).
pub fn dropout_backward(dy: &[f64], seed: u32, rate: f32) -> Vec<f64> {
    dropout_forward(dy, seed, rate)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reference::{assert_grad, dot, numeric_grad, randv};
    use crate::rng::Rng;

    #[test]
    fn backward_matches_finite_differences() {
        let mut rng = Rng::new(3);
        for (n, seed, rate) in [(37usize, 5u32, 0.3f32), (61, 99, 0.5), (11, 0, 0.0)] {
            let x = randv(&mut rng, n);
            let dy = randv(&mut rng, n);
            let num = numeric_grad(|x| dot(&dropout_forward(x, seed, rate), &dy), &x, 1e-6);
            assert_grad("dropout dx", &dropout_backward(&dy, seed, rate), &num, 1e-7);
        }
    }

    #[test]
    fn kept_fraction_and_seeds() {
        let n = 200_000;
        for rate in [0.1f32, 0.25, 0.5, 0.8] {
            let kept = mask(7, n, rate).iter().filter(|&&k| k).count() as f64 / n as f64;
            assert!((kept - (1.0 - rate as f64)).abs() < 0.01 * (1.0 - rate as f64), "rate {rate}: kept {kept}");
        }
        // Rate 0 keeps everything; forward is then the identity.
        assert!(mask(1, 1000, 0.0).iter().all(|&k| k));
        // Different seeds: about 2 p (1 - p) of the elements differ.
        let (a, b) = (mask(1, n, 0.5), mask(2, n, 0.5));
        let differ = a.iter().zip(&b).filter(|(x, y)| x != y).count() as f64 / n as f64;
        assert!((differ - 0.5).abs() < 0.01, "seeds 1 and 2 differ on {differ} of elements");
    }

    #[test]
    fn hash_known_values() {
        // Computed independently (Python, 32-bit masking). A change to the hash would silently
        // change every model's masks; the GPU test checks the shader against these functions.
        assert_eq!((0..4).map(pcg).collect::<Vec<_>>(), [129708002, 2831084092, 2055130248, 2131687100]);
        assert_eq!((0..3).map(|i| hash(12345, i)).collect::<Vec<_>>(), [3815326922, 1444515323, 827605232]);
    }
}
