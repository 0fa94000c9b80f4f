use crate::common::{rand, read, up, zeros, ATOL, RTOL};
use crate::gpu;
use mien::nn::activation::{Activation, Kind};
use mien::reference::{activation as r, assert_close};
use mien::rng::Rng;

/// Shapes: batch 1, odd spatial, 1 / 3 / 64+ channels, dense-style [N, F], and one
/// element count that is not a multiple of the 256-wide workgroup; the last four take the
/// vec4 kernels (S % 4 == 0, or C*S % 4 == 0 for per-element slopes; [3, 7, 4, 12] has 252
/// vec4s, not a multiple of the workgroup).
const SHAPES: &[&[usize]] = &[
    &[1, 1, 1, 1],
    &[1, 3, 7, 5],
    &[2, 64, 3, 3],
    &[3, 65, 5, 7],
    &[5, 17],
    &[4, 1, 13, 11],
    &[2, 3, 4, 4],
    &[3, 5, 2, 6],
    &[4, 20],
    &[3, 7, 4, 12],
];

/// Inputs that stay clear of the kink at 0 so the f32 and f64 sides agree on the branch.
fn inputs(rng: &mut Rng, n: usize) -> (Vec<f32>, Vec<f64>) {
    let (mut x, _) = rand(rng, n);
    for v in &mut x {
        if v.abs() < 1e-3 {
            *v += 0.01;
        }
    }
    let x64 = mien::reference::f64s(&x);
    (x, x64)
}

fn check(kind: Kind) {
    let gpu = gpu!();
    let mut rng = Rng::new(7);
    for shape in SHAPES {
        let n: usize = shape.iter().product();
        let (c, s) = (shape[1], shape[2..].iter().product::<usize>());
        let layer = Activation::new(gpu, "act", kind, shape).unwrap();
        let (x, x64) = inputs(&mut rng, n);
        let (dy, dy64) = rand(&mut rng, n);
        let prelu = layer.param_shape();
        // Per-element slopes: the reference sees alpha as [C*S] channels of size 1.
        let (ac, as_) = if kind == Kind::PReluPerElement { (c * s, 1) } else { (c, s) };
        let (a, a64) = rand(&mut rng, ac);
        let tx = up(gpu, "x", shape, &x);
        let tdy = up(gpu, "dy", shape, &dy);
        let ashape = prelu.clone().unwrap_or(vec![c]);
        let ta = up(gpu, "alpha", &ashape, &a);
        let (ty, tdx, tda) = (zeros(gpu, "y", shape), zeros(gpu, "dx", shape), zeros(gpu, "dalpha", &ashape));
        let alpha = prelu.is_some().then_some(&ta);
        let mut steps = vec![layer.forward(gpu, &tx, alpha, &ty).unwrap(), layer.backward_input(gpu, &tdx, &tdy, &tx, alpha).unwrap()];
        if prelu.is_some() {
            steps.push(layer.backward_alpha(gpu, &tda, &tdy, &tx, false).unwrap());
        }
        gpu.run(&steps).unwrap();
        let (want_y, want_dx) = match kind {
            Kind::Relu => (r::relu_forward(&x64), r::relu_backward(&dy64, &x64)),
            Kind::LeakyRelu(al) => (r::leaky_relu_forward(&x64, al as f64), r::leaky_relu_backward(&dy64, &x64, al as f64)),
            Kind::PRelu | Kind::PReluPerElement => {
                let (dx, da) = r::prelu_backward(&dy64, &x64, &a64, as_);
                assert_close(&format!("{kind:?} dalpha {shape:?}"), &read(gpu, &tda), &da, ATOL, RTOL);
                (r::prelu_forward(&x64, &a64, as_), dx)
            }
        };
        assert_close(&format!("{kind:?} forward {shape:?}"), &read(gpu, &ty), &want_y, ATOL, RTOL);
        assert_close(&format!("{kind:?} backward {shape:?}"), &read(gpu, &tdx), &want_dx, ATOL, RTOL);
    }
}

#[test]
fn relu_matches_reference() {
    check(Kind::Relu);
}

#[test]
fn leaky_relu_matches_reference() {
    check(Kind::LeakyRelu(0.1));
}

#[test]
fn prelu_matches_reference() {
    check(Kind::PRelu);
}

#[test]
fn prelu_per_element_matches_reference() {
    check(Kind::PReluPerElement);
}

#[test]
fn wrong_shapes_are_errors_naming_the_layer() {
    let gpu = gpu!();
    let layer = Activation::new(gpu, "block1.prelu", Kind::PRelu, &[2, 3, 4, 4]).unwrap();
    let x = zeros(gpu, "x", &[2, 3, 4, 5]);
    let y = zeros(gpu, "y", &[2, 3, 4, 4]);
    let a = zeros(gpu, "alpha", &[3]);
    let e = layer.forward(gpu, &x, Some(&a), &y).err().unwrap().to_string();
    assert!(e.contains("block1.prelu") && e.contains("[2, 3, 4, 4]"), "{e}");
    let x = zeros(gpu, "x", &[2, 3, 4, 4]);
    let e = layer.forward(gpu, &x, None, &y).err().unwrap().to_string();
    assert!(e.contains("block1.prelu") && e.contains("alpha"), "{e}");
}

#[test]
fn prelu_alpha_gradient_accumulates_over_batch_chunks() {
    let gpu = gpu!();
    let mut rng = Rng::new(9);
    let shape = [3usize, 5, 4, 3];
    let n: usize = shape.iter().product();
    let (x, x64) = inputs(&mut rng, n);
    let (dy, dy64) = rand(&mut rng, n);
    let (a, a64) = rand(&mut rng, 5);
    // Two chunks of the batch: samples [0, 1) and [1, 3), as views of one buffer.
    let tx = up(gpu, "x", &shape, &x);
    let tdy = up(gpu, "dy", &shape, &dy);
    let ta = up(gpu, "alpha", &[5], &a);
    let tda = zeros(gpu, "dalpha", &[5]);
    let per = n / 3;
    let mut steps = vec![];
    for (start, len, acc) in [(0usize, 1usize, false), (1, 2, true)] {
        let cs = [len, 5, 4, 3];
        let layer = Activation::new(gpu, "chunk", Kind::PRelu, &cs).unwrap();
        let xv = tx.view("x chunk", start * per, &cs);
        let dyv = tdy.view("dy chunk", start * per, &cs);
        // 60 floats = 240 bytes per sample is not 256-aligned: copy to fresh tensors instead.
        let (xv, dyv) = match (xv, dyv) {
            (Ok(a), Ok(b)) => (a, b),
            _ => (up(gpu, "x c", &cs, &x[start * per..(start + len) * per]), up(gpu, "dy c", &cs, &dy[start * per..(start + len) * per])),
        };
        steps.push(layer.backward_alpha(gpu, &tda, &dyv, &xv, acc).unwrap());
        let _ = &ta;
    }
    gpu.run(&steps).unwrap();
    let (_, want) = r::prelu_backward(&dy64, &x64, &a64, 12);
    assert_close("chunked dalpha", &read(gpu, &tda), &want, ATOL, RTOL);
}

/// Per-element slopes through the vec4 kernel (C*S = 60): ACCUMULATE adds a second pass to
/// the first (twice the gradient).
#[test]
fn prelu_per_element_vec4_alpha_gradient_accumulates() {
    let gpu = gpu!();
    let mut rng = Rng::new(19);
    let shape = [3usize, 5, 4, 3];
    let n: usize = shape.iter().product();
    let (x, x64) = inputs(&mut rng, n);
    let (dy, dy64) = rand(&mut rng, n);
    let layer = Activation::new(gpu, "per element", Kind::PReluPerElement, &shape).unwrap();
    let (tx, tdy) = (up(gpu, "x", &shape, &x), up(gpu, "dy", &shape, &dy));
    let tda = zeros(gpu, "dalpha", &[5, 4, 3]);
    let steps = [layer.backward_alpha(gpu, &tda, &tdy, &tx, false).unwrap(), layer.backward_alpha(gpu, &tda, &tdy, &tx, true).unwrap()];
    assert!(steps[0].label.ends_with("elementwise4"), "{}", steps[0].label);
    gpu.run(&steps).unwrap();
    let (_, da) = r::prelu_backward(&dy64, &x64, &[0.1; 60], 1);
    let want: Vec<f64> = da.iter().map(|v| 2.0 * v).collect();
    assert_close("per-element dalpha accumulated (vec4)", &read(gpu, &tda), &want, ATOL, RTOL);
}
