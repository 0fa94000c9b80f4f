//! Plain f64 CPU versions of every op and of the explanation kernels: the oracle the shader
//! tests compare against. Each module's backward is itself checked by central finite
//! differences (unit tests). Same layouts as the GPU: NCHW, conv weight [out, in, kh, kw],
//! dense weight [out, in]. This module may use nn's plain types and nothing above them (an
//! explanation kernel's parameters have their own f64 mirror here), never the reverse.

pub mod activation;
pub mod ascent;
pub mod augment;
pub mod batchnorm;
pub mod conv2d;
pub mod dense;
pub mod dropout;
pub mod faithfulness;
pub mod lime;
pub mod loss_scale;
pub mod network;
pub mod occlusion;
pub mod optim;
pub mod pad;
pub mod pool;
pub mod saliency;
pub mod softmax_xent;

/// Widen GPU / test data to f64.
pub fn f64s(v: &[f32]) -> Vec<f64> {
    v.iter().map(|&x| x as f64).collect()
}

/// Check `|got - want| <= atol + rtol * |want|` elementwise. On failure the message names
/// `what`, the worst element (index, got, want, error) and how many elements failed.
pub fn compare(what: &str, got: &[f32], want: &[f64], atol: f64, rtol: f64) -> Result<(), String> {
    if got.len() != want.len() {
        return Err(format!("{what}: got {} values, reference has {}", got.len(), want.len()));
    }
    let mut worst: Option<(usize, f64)> = None;
    let mut failed = 0usize;
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        let g = g as f64;
        let err = (g - w).abs();
        let tol = atol + rtol * w.abs();
        // NaN never passes.
        if err.partial_cmp(&tol).is_none_or(|o| o == std::cmp::Ordering::Greater) {
            failed += 1;
        }
        let excess = if err.is_nan() { f64::INFINITY } else { err / tol };
        if worst.is_none_or(|(_, e)| excess > e) {
            worst = Some((i, excess));
        }
    }
    if failed == 0 {
        return Ok(());
    }
    let (i, _) = worst.unwrap();
    Err(format!(
        "{what}: {failed} of {} values outside atol={atol:e} rtol={rtol:e}; worst at [{i}]: got {} want {} (|err| {:e})",
        got.len(),
        got[i],
        want[i],
        (got[i] as f64 - want[i]).abs()
    ))
}

/// Panicking form of [`compare`] for tests.
#[track_caller]
pub fn assert_close(what: &str, got: &[f32], want: &[f64], atol: f64, rtol: f64) {
    if let Err(msg) = compare(what, got, want, atol, rtol) {
        panic!("{msg}");
    }
}

/// Central finite differences of a scalar function: d f / d x[i] for every i.
pub fn numeric_grad(mut f: impl FnMut(&[f64]) -> f64, x: &[f64], eps: f64) -> Vec<f64> {
    let mut x = x.to_vec();
    (0..x.len())
        .map(|i| {
            let orig = x[i];
            x[i] = orig + eps;
            let fp = f(&x);
            x[i] = orig - eps;
            let fm = f(&x);
            x[i] = orig;
            (fp - fm) / (2.0 * eps)
        })
        .collect()
}

/// `sum(a * b)`: contracts an op's output with a fixed upstream gradient, turning a
/// vector-valued op into the scalar loss that finite differences need.
pub fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// Assert two f64 gradients agree (analytic vs numeric) within `tol` relative to the
/// larger magnitude, printing the worst element.
#[track_caller]
pub fn assert_grad(what: &str, analytic: &[f64], numeric: &[f64], tol: f64) {
    assert_eq!(analytic.len(), numeric.len(), "{what}: length mismatch");
    let scale = numeric.iter().chain(analytic).fold(1e-3f64, |m, v| m.max(v.abs()));
    let (i, err) = analytic
        .iter()
        .zip(numeric)
        .map(|(a, n)| (a - n).abs())
        .enumerate()
        .fold((0, 0.0f64), |(bi, be), (i, e)| if e > be || e.is_nan() { (i, e) } else { (bi, be) });
    assert!(
        err <= tol * scale,
        "{what}: analytic vs finite-difference gradient differ at [{i}]: {} vs {} (|err| {err:e}, allowed {:e})",
        analytic[i],
        numeric[i],
        tol * scale
    );
}

/// Deterministic test inputs for the reference's own unit tests.
#[cfg(test)]
pub(crate) fn randv(rng: &mut crate::rng::Rng, n: usize) -> Vec<f64> {
    (0..n).map(|_| rng.range(-1.0, 1.0)).collect()
}
