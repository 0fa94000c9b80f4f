//! f64 reference for shaders/faithfulness.wgsl (deletion / insertion copies) and for the
//! curve summaries of src/explain/faithfulness.rs.

/// faithfulness_perturb: x, fill [M, len] (len = C*H*W), rank [M, hw] -> out [rows, len],
/// row j holding copy r = min(first + j, total - 1) of image r / (steps + 1) at step
/// k = r % (steps + 1): the pixels of rank < k*hw/steps taken from `fill` (deletion) or from
/// `x` with the rest from `fill` (insertion).
#[allow(clippy::too_many_arguments)]
pub fn perturb(x: &[f64], fill: &[f64], rank: &[u32], len: usize, hw: usize, steps: usize, insert: bool, rows: usize, first: usize, total: usize) -> Vec<f64> {
    let mut out = vec![0.0; rows * len];
    for j in 0..rows {
        let r = (first + j).min(total - 1);
        let (i, k) = (r / (steps + 1), r % (steps + 1));
        let n = k * hw / steps;
        for q in 0..len {
            let affected = (rank[i * hw + q % hw] as usize) < n;
            let (a, b) = if insert { (fill, x) } else { (x, fill) };
            out[j * len + q] = if affected { b[i * len + q] } else { a[i * len + q] };
        }
    }
    out
}

/// Area under a curve sampled at S + 1 evenly spaced points of [0, 1] (trapezoids).
pub fn auc(curve: &[f64]) -> f64 {
    let s = (curve.len() - 1) as f64;
    curve.windows(2).map(|w| (w[0] + w[1]) / 2.0).sum::<f64>() / s
}
