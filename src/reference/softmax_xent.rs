//! f64 reference for shaders/softmax_xent.wgsl. logits, dlogits, probs [N, K]; labels [N].
//! A label >= K is flagged as on the GPU: loss NaN, correct 0, zero gradient row.

/// Softmax of one row, max subtracted first.
fn softmax_row(row: &[f64]) -> Vec<f64> {
    let m = row.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    let e: Vec<f64> = row.iter().map(|&v| (v - m).exp()).collect();
    let s: f64 = e.iter().sum();
    e.into_iter().map(|v| v / s).collect()
}

/// Index of the first maximum (ties: lowest index).
fn argmax(row: &[f64]) -> usize {
    let mut best = 0;
    for (k, &v) in row.iter().enumerate() {
        if v > row[best] {
            best = k;
        }
    }
    best
}

/// Returns (losses [N], correct [N] as 0/1, probs [N, K]) with loss = logsumexp - logit[label].
pub fn forward(logits: &[f64], labels: &[u32], k: usize) -> (Vec<f64>, Vec<u32>, Vec<f64>) {
    let n = labels.len();
    assert_eq!(logits.len(), n * k);
    let mut losses = Vec::with_capacity(n);
    let mut correct = Vec::with_capacity(n);
    let mut probs = Vec::with_capacity(n * k);
    for (s, &label) in labels.iter().enumerate() {
        let row = &logits[s * k..(s + 1) * k];
        let m = row.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        let lse = m + row.iter().map(|&v| (v - m).exp()).sum::<f64>().ln();
        let valid = (label as usize) < k;
        losses.push(if valid { lse - row[label as usize] } else { f64::NAN });
        correct.push((valid && argmax(row) == label as usize) as u32);
        probs.extend(softmax_row(row));
    }
    (losses, correct, probs)
}

/// dlogits = (softmax - onehot(label)) * scale: the gradient of scale * sum_n losses[n].
pub fn backward(logits: &[f64], labels: &[u32], k: usize, scale: f64) -> Vec<f64> {
    let mut d = Vec::with_capacity(logits.len());
    for (s, &label) in labels.iter().enumerate() {
        let row = &logits[s * k..(s + 1) * k];
        if label as usize >= k {
            d.extend(std::iter::repeat_n(0.0, k));
            continue;
        }
        d.extend(softmax_row(row).into_iter().enumerate().map(|(j, p)| (p - (j == label as usize) as u32 as f64) * scale));
    }
    d
}

/// (mean loss over the samples, number correct).
pub fn reduce(losses: &[f64], correct: &[u32]) -> [f64; 2] {
    [losses.iter().sum::<f64>() / losses.len() as f64, correct.iter().map(|&c| c as f64).sum()]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reference::{assert_grad, numeric_grad, randv};
    use crate::rng::Rng;

    #[test]
    fn gradient_matches_finite_differences() {
        let mut rng = Rng::new(21);
        for (n, k) in [(3usize, 7usize), (1, 1), (2, 2), (4, 5)] {
            let logits: Vec<f64> = randv(&mut rng, n * k).into_iter().map(|v| 3.0 * v).collect();
            let labels: Vec<u32> = (0..n).map(|_| rng.below(k) as u32).collect();
            let scale = 1.0 / 9.0;
            let num = numeric_grad(|l| scale * forward(l, &labels, k).0.iter().sum::<f64>(), &logits, 1e-6);
            assert_grad("softmax_xent dlogits", &backward(&logits, &labels, k, scale), &num, 1e-7);
        }
    }

    #[test]
    fn huge_logits_stay_finite_and_ties_pick_the_lowest_index() {
        let (l, c, p) = forward(&[1e4, -1e4, 1e4, 0.0, 0.0, 0.0], &[1, 2], 3);
        assert!((l[0] - (2e4 + 2f64.ln())).abs() < 1e-9, "{l:?}");
        assert!((l[1] - 3f64.ln()).abs() < 1e-12);
        assert_eq!(c, vec![0, 0]);
        assert_eq!(argmax(&[0.0, 1.0, 1.0]), 1);
        assert!((p[0] - 0.5).abs() < 1e-12 && p[1] == 0.0);
        let d = backward(&[1e4, -1e4, 1e4], &[1], 3, 0.5);
        assert_eq!(d, vec![0.25, -0.5, 0.25]);
    }

    #[test]
    fn out_of_range_labels_are_flagged() {
        let (l, c, _) = forward(&[1.0, 2.0], &[2], 2);
        assert!(l[0].is_nan() && c[0] == 0);
        assert_eq!(backward(&[1.0, 2.0], &[2], 2, 1.0), vec![0.0, 0.0]);
    }
}
