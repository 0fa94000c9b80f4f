//! f64 mirror of `nn::Network`: the same `ModelSpec` run through the reference ops, so a
//! whole GPU training step (forward, loss, backward, optimizer) can be checked.
//! Parameters are held per tensor, in the same order and with the same names as
//! `Network::params`; BatchNorm running statistics as `buffers`.

use super::{activation, batchnorm, conv2d, dense, dropout, pad, pool, softmax_xent};
use crate::nn::activation::Kind;
use crate::nn::pool::PoolKind;
use crate::nn::spec::{LayerSpec, ModelSpec};
use crate::{ensure, Result};

/// What the forward pass keeps for the backward pass, per layer.
enum Cache {
    Conv { geom: conv2d::ConvGeom, x: Vec<f64> },
    Pool { kind: PoolKind, geom: pool::PoolGeom, argmax: Vec<u32> },
    Pad { shape: [usize; 4], pads: (usize, usize, usize, usize) },
    BatchNorm { x: Vec<f64>, mean: Vec<f64>, inv_std: Vec<f64>, s: usize },
    Act { kind: Kind, x: Vec<f64>, s: usize },
    Dropout { seed: u32, rate: f32 },
    Flatten,
    Dense { x: Vec<f64>, inf: usize, outf: usize },
}

pub struct RefParam {
    pub name: String,
    pub shape: Vec<usize>,
    pub value: Vec<f64>,
}

pub struct RefNetwork {
    pub spec: ModelSpec,
    pub batch: usize,
    pub input_chw: [usize; 3],
    pub classes: usize,
    pub params: Vec<RefParam>,
    pub buffers: Vec<(String, Vec<f64>)>,
    /// Per layer: indices into `params`, input shape.
    layer_params: Vec<Vec<usize>>,
    in_shapes: Vec<Vec<usize>>,
}

fn shape4(s: &[usize]) -> [usize; 4] {
    [s[0], s[1], s[2], s[3]]
}

/// (N, C, S) of an activation shape.
fn ncs(s: &[usize]) -> (usize, usize, usize) {
    (s[0], s[1], s[2..].iter().product())
}

impl RefNetwork {
    /// Walk the spec's shapes; parameters start at zero (set them with `set_params`).
    pub fn new(spec: &ModelSpec, input_chw: [usize; 3], classes: usize, batch: usize) -> Result<Self> {
        let names = spec.layer_names();
        let mut shape = vec![batch, input_chw[0], input_chw[1], input_chw[2]];
        let (mut params, mut buffers, mut layer_params, mut in_shapes) = (vec![], vec![], vec![], vec![]);
        for (name, l) in names.iter().zip(&spec.layers) {
            in_shapes.push(shape.clone());
            let mut idx = vec![];
            let mut add = |suffix: &str, pshape: Vec<usize>| {
                idx.push(params.len());
                let n = pshape.iter().product();
                params.push(RefParam { name: format!("{name}.{suffix}"), shape: pshape, value: vec![0.0; n] });
            };
            shape = match l {
                LayerSpec::Conv2d { filters, kernel, stride, padding, bias } => {
                    let g = conv2d::ConvGeom::new(shape4(&shape), *filters, kernel.hw(), stride.hw(), padding.resolve())?;
                    add("weight", vec![*filters, g.cin, g.kh, g.kw]);
                    if *bias {
                        add("bias", vec![*filters]);
                    }
                    vec![batch, *filters, g.oh, g.ow]
                }
                LayerSpec::MaxPool { size, stride, padding } | LayerSpec::AvgPool { size, stride, padding } => {
                    let g = pool::PoolGeom::new(shape4(&shape), size.hw(), stride.unwrap_or(*size).hw(), padding.resolve());
                    vec![batch, shape[1], g.oh, g.ow]
                }
                LayerSpec::ZeroPad { pad } => vec![batch, shape[1], shape[2] + pad[0] + pad[1], shape[3] + pad[2] + pad[3]],
                LayerSpec::BatchNorm { .. } => {
                    add("gamma", vec![shape[1]]);
                    add("beta", vec![shape[1]]);
                    buffers.push((format!("{name}.running_mean"), vec![0.0; shape[1]]));
                    buffers.push((format!("{name}.running_var"), vec![1.0; shape[1]]));
                    shape
                }
                LayerSpec::Relu | LayerSpec::LeakyRelu { .. } | LayerSpec::Prelu { .. } => {
                    match Kind::of(l) {
                        Some(Kind::PRelu) => add("alpha", vec![shape[1]]),
                        Some(Kind::PReluPerElement) => add("alpha", shape[1..].to_vec()),
                        _ => {}
                    }
                    shape
                }
                LayerSpec::Dropout { .. } => shape,
                LayerSpec::Flatten => vec![batch, shape[1..].iter().product()],
                LayerSpec::Dense { units, bias } => {
                    add("weight", vec![*units, shape[1..].iter().product()]);
                    if *bias {
                        add("bias", vec![*units]);
                    }
                    vec![batch, *units]
                }
            };
            layer_params.push(idx);
        }
        ensure!(shape == [batch, classes], "reference model {}: last layer outputs {shape:?}, expected [{batch}, {classes}]", spec.name);
        Ok(RefNetwork { spec: spec.clone(), batch, input_chw, classes, params, buffers, layer_params, in_shapes })
    }

    /// Set every parameter from a flat arena laid out at `offsets` (the GPU network's).
    pub fn set_params(&mut self, arena: &[f32], offsets: &[usize]) {
        for (p, &o) in self.params.iter_mut().zip(offsets) {
            let n = p.value.len();
            p.value = arena[o..o + n].iter().map(|&v| v as f64).collect();
        }
    }

    fn buffer_mut(&mut self, name: &str) -> &mut Vec<f64> {
        &mut self.buffers.iter_mut().find(|(n, _)| n == name).expect("buffer").1
    }

    /// Forward pass. `train`: BatchNorm uses (and updates the running estimates with) batch
    /// statistics and dropout is active with per-layer seeds derived from `dropout_seed`
    /// exactly as `Network::set_dropout_seed` does.
    fn forward(&mut self, x: &[f64], train: bool, dropout_seed: u32) -> (Vec<f64>, Vec<Cache>) {
        let names = self.spec.layer_names();
        let mut a = x.to_vec();
        let mut caches = Vec::new();
        for (i, name) in names.iter().enumerate() {
            let shape = self.in_shapes[i].clone();
            let p: Vec<Vec<f64>> = self.layer_params[i].iter().map(|&k| self.params[k].value.clone()).collect();
            let layer = self.spec.layers[i].clone();
            let (out, cache) = match layer {
                LayerSpec::Conv2d { filters, kernel, stride, padding, .. } => {
                    let g = conv2d::ConvGeom::new(shape4(&shape), filters, kernel.hw(), stride.hw(), padding.resolve()).unwrap();
                    (conv2d::forward(&g, &a, &p[0], p.get(1).map(|b| b.as_slice())), Cache::Conv { geom: g, x: a })
                }
                LayerSpec::MaxPool { size, stride, padding } => {
                    let g = pool::PoolGeom::new(shape4(&shape), size.hw(), stride.unwrap_or(size).hw(), padding.resolve());
                    let (y, argmax) = pool::max_pool_forward(&a, &g);
                    (y, Cache::Pool { kind: PoolKind::Max, geom: g, argmax })
                }
                LayerSpec::AvgPool { size, stride, padding } => {
                    let g = pool::PoolGeom::new(shape4(&shape), size.hw(), stride.unwrap_or(size).hw(), padding.resolve());
                    (pool::avg_pool_forward(&a, &g), Cache::Pool { kind: PoolKind::Avg, geom: g, argmax: vec![] })
                }
                LayerSpec::ZeroPad { pad } => {
                    let pads = (pad[0], pad[1], pad[2], pad[3]);
                    (pad::pad_forward(&a, shape4(&shape), pads), Cache::Pad { shape: shape4(&shape), pads })
                }
                LayerSpec::BatchNorm { eps, momentum } => {
                    let (_, _, s) = ncs(&shape);
                    let (rm, rv) = (format!("{name}.running_mean"), format!("{name}.running_var"));
                    let (m, v) = (self.buffer_mut(&rm).clone(), self.buffer_mut(&rv).clone());
                    if train {
                        let t = batchnorm::forward_train(&a, &p[0], &p[1], &m, &v, s, eps as f64, momentum as f64);
                        *self.buffer_mut(&rm) = t.running_mean;
                        *self.buffer_mut(&rv) = t.running_var;
                        (t.y, Cache::BatchNorm { x: a, mean: t.mean, inv_std: t.inv_std, s })
                    } else {
                        let y = batchnorm::forward_infer(&a, &p[0], &p[1], &m, &v, s, eps as f64);
                        (y, Cache::Flatten)
                    }
                }
                LayerSpec::Relu | LayerSpec::LeakyRelu { .. } | LayerSpec::Prelu { .. } => {
                    let kind = Kind::of(&layer).expect("an activation");
                    // Per-element slopes are "channels" of one element each.
                    let s = if kind == Kind::PReluPerElement { 1 } else { ncs(&shape).2 };
                    (activation::forward(kind, &a, p.first().map(|v| v.as_slice()), s), Cache::Act { kind, x: a, s })
                }
                LayerSpec::Dropout { rate } => {
                    let seed = dropout_seed.wrapping_mul(0x9E37_79B9).wrapping_add(i as u32);
                    let y = if train { dropout::dropout_forward(&a, seed, rate) } else { a };
                    (y, Cache::Dropout { seed, rate })
                }
                LayerSpec::Flatten => (a, Cache::Flatten),
                LayerSpec::Dense { units, .. } => {
                    let inf = shape[1..].iter().product();
                    (dense::forward(&a, &p[0], p.get(1).map(|b| b.as_slice()), self.batch, inf, units), Cache::Dense { x: a, inf, outf: units })
                }
            };
            a = out;
            caches.push(cache);
        }
        (a, caches)
    }

    /// Gradients of every parameter (same order as `params`) from the logits' gradient.
    fn backward(&self, caches: Vec<Cache>, dlogits: Vec<f64>) -> Vec<Vec<f64>> {
        let mut grads: Vec<Vec<f64>> = self.params.iter().map(|p| vec![0.0; p.value.len()]).collect();
        let mut d = dlogits;
        for (i, cache) in caches.into_iter().enumerate().rev() {
            let idx = &self.layer_params[i];
            let pv = |k: usize| &self.params[idx[k]].value;
            d = match cache {
                Cache::Conv { geom, x } => {
                    let (dx, dw, db) = conv2d::backward(&geom, &d, &x, pv(0));
                    grads[idx[0]] = dw;
                    if idx.len() > 1 {
                        grads[idx[1]] = db;
                    }
                    dx
                }
                Cache::Pool { kind: PoolKind::Max, geom, argmax } => pool::max_pool_backward(&d, &argmax, &geom),
                Cache::Pool { kind: PoolKind::Avg, geom, .. } => pool::avg_pool_backward(&d, &geom),
                Cache::Pad { shape, pads } => pad::pad_backward(&d, shape, pads),
                Cache::BatchNorm { x, mean, inv_std, s } => {
                    let (dx, dg, db) = batchnorm::backward(&d, &x, pv(0), &mean, &inv_std, s);
                    grads[idx[0]] = dg;
                    grads[idx[1]] = db;
                    dx
                }
                Cache::Act { kind, x, s } => {
                    let (dx, da) = activation::backward(kind, &d, &x, idx.first().map(|_| pv(0).as_slice()), s);
                    if let Some(da) = da {
                        grads[idx[0]] = da;
                    }
                    dx
                }
                Cache::Dropout { seed, rate } => dropout::dropout_backward(&d, seed, rate),
                Cache::Flatten => d,
                Cache::Dense { x, inf, outf } => {
                    grads[idx[0]] = dense::backward_weight(&d, &x, self.batch, inf, outf);
                    if idx.len() > 1 {
                        grads[idx[1]] = dense::backward_bias(&d, self.batch, outf);
                    }
                    dense::backward_input(&d, pv(0), self.batch, inf, outf)
                }
            };
        }
        grads
    }

    /// One training-mode forward + softmax cross-entropy + backward. Returns (mean loss,
    /// number correct, per-parameter gradients).
    pub fn loss_and_grads(&mut self, x: &[f64], labels: &[u32], dropout_seed: u32) -> (f64, usize, Vec<Vec<f64>>) {
        let (logits, caches) = self.forward(x, true, dropout_seed);
        let (losses, correct, _) = softmax_xent::forward(&logits, labels, self.classes);
        let dlogits = softmax_xent::backward(&logits, labels, self.classes, 1.0 / self.batch as f64);
        let stats = softmax_xent::reduce(&losses, &correct);
        (stats[0], stats[1] as usize, self.backward(caches, dlogits))
    }

    /// Inference-mode logits.
    pub fn predict(&mut self, x: &[f64]) -> Vec<f64> {
        self.forward(x, false, 0).0
    }
}
