//! Fusion, in one place: which layers run as one, for inference and for training.
//!
//! Inference fusion: a conv followed by BatchNorm runs as one conv on folded weights
//! (wf = w * gamma / sqrt(var + eps), bf = (b - mean) * scale + beta, made by a small
//! batchnorm_fold dispatch ahead of it), writing the BatchNorm's output directly; where an
//! activation (ReLU, LeakyReLU, PReLU) follows and the conv's kernel has an activation
//! epilogue, that too. Only in networks that reuse memory: the skipped layers' outputs are
//! never written, and explanation networks read every activation.
//!
//! Training fusion (`train_pairs`): a BatchNorm followed by ReLU, LeakyReLU or PReLU (per
//! channel or per element) runs as the BatchNorm's passes with the activation inside
//! (`BatchNorm::forward_train_act` / `backward_act`, shaders/batchnorm.wgsl): the forward
//! writes act(gamma * xhat + beta) straight into the activation's output, the backward
//! takes the activation's output gradient and recomputes the pre-activation, so the
//! BatchNorm's output and its gradient are neither written nor allocated for training
//! (src/nn/memory.rs). Where: networks that reuse memory and take no input gradients
//! (training, evaluation), with `BuildOptions::fuse` (default on; `MIEN_FUSE=0` turns it
//! off for before / after comparisons). Results equal the unfused pair's bit for bit, except
//! where the fused reduction sums in another order (shaders/batchnorm.wgsl): per-channel
//! PReLU's slope gradient in the vec4 and per-row reductions, and with per-element PReLU
//! (S > 1) the BatchNorm sums and so dx, dgamma and dbeta: equal to rounding (tests state
//! the tolerance).

use super::activation::{Activation, Kind};
use super::batchnorm::{BatchNormLayer, FusedAct, PoolTail};
use super::dropout::Dropout;
use super::pool::{Pool2d, PoolKind};
use super::conv2d::{subgroup::Epilogue, Conv2d, Conv2dConfig};
use super::layer::{LayerOp, Mode};
use super::network::{BuildOptions, Network};
use crate::gpu::{Dispatch, Gpu, Tensor};
use crate::Result;

/// A fused conv + BatchNorm: the conv (with a bias) and its folded weight and bias, kept
/// alive as long as the dispatches that bind them.
pub struct Fused {
    pub conv: Conv2d,
    pub weight: Tensor,
    pub bias: Tensor,
}

/// The inference forward of `net`, fusing where it can, and the fused layers.
pub fn record_inference(net: &Network, gpu: &Gpu) -> Result<(Vec<Dispatch>, Vec<Fused>)> {
    let mut out = Vec::new();
    let mut fused = Vec::new();
    let mut i = 0;
    while i < net.layers.len() {
        if let Some((f, covered)) = fold_conv_bn(net, gpu, i, &mut out)? {
            fused.push(f);
            i += 1 + covered;
            continue;
        }
        out.extend(net.record_forward(gpu, Mode::Infer, i..i + 1)?);
        i += 1;
    }
    Ok((out, fused))
}

/// The activation epilogue the conv kernels can apply for layer `j`, if it is one.
fn epilogue<'a>(net: &'a Network, j: usize) -> Option<Epilogue<'a>> {
    let act = net.layers.get(j)?.op.as_any().downcast_ref::<Activation>()?;
    let alpha = (!net.layers[j].params.is_empty()).then(|| &net.layer_param(j, 0).value);
    match (act.kind, alpha) {
        (Kind::Relu, _) => Some(Epilogue::Relu),
        (Kind::LeakyRelu(a), _) => Some(Epilogue::LeakyRelu(a)),
        (Kind::PRelu, Some(a)) => Some(Epilogue::PRelu(a)),
        (Kind::PReluPerElement, Some(a)) => Some(Epilogue::PReluPerElement(a)),
        _ => None,
    }
}

/// Layers i (conv) and i + 1 (BatchNorm) as one conv, and layer i + 2 in its epilogue when
/// it is an activation the kernel can apply. Returns the fused conv and how many layers
/// after `i` it covered (1 or 2); None where nothing fuses, or where the conv input and the
/// fused output share a buffer (a kernel cannot bind one buffer for both).
fn fold_conv_bn(net: &Network, gpu: &Gpu, i: usize, out: &mut Vec<Dispatch>) -> Result<Option<(Fused, usize)>> {
    let (Some(layer), Some(next)) = (net.layers.get(i), net.layers.get(i + 1)) else { return Ok(None) };
    let (Some(conv), Some(bn)) = (layer.op.as_any().downcast_ref::<Conv2d>(), next.op.as_any().downcast_ref::<BatchNormLayer>()) else {
        return Ok(None);
    };
    let x = net.io(i, false).x;
    let bn_out = net.io(i + 1, false).y;
    if !net.reuses_memory() || x.same_buffer(bn_out) {
        return Ok(None);
    }
    let w = &net.layer_param(i, 0).value;
    let b = conv.cfg.bias.then(|| &net.layer_param(i, 1).value);
    let (gamma, beta) = (&net.layer_param(i + 1, 0).value, &net.layer_param(i + 1, 1).value);
    let wf = gpu.tensor(&format!("{} folded weight", conv.name), &conv.weight_shape())?;
    let bf = gpu.tensor(&format!("{} folded bias", conv.name), &conv.bias_shape())?;
    out.push(bn.op.fold_into(gpu, w, b, gamma, beta, &bn.running_mean, &bn.running_var, &wf, &bf)?);
    let cfg = Conv2dConfig { bias: true, ..conv.cfg };
    let fused = Conv2d::new_in(gpu, &format!("{}+{}", conv.name, bn.op.name), cfg, &conv.input_shape, conv.precision())?;
    if let Some(e) = epilogue(net, i + 2) {
        let act_out = net.io(i + 2, false).y;
        if !x.same_buffer(act_out) {
            if let Some(d) = fused.forward_act_dispatches(gpu, x, &wf, &bf, act_out, e)? {
                out.extend(d);
                return Ok(Some((Fused { conv: fused, weight: wf, bias: bf }, 2)));
            }
        }
    }
    out.extend(fused.forward_dispatches(gpu, x, &wf, Some(&bf), bn_out)?);
    Ok(Some((Fused { conv: fused, weight: wf, bias: bf }, 1)))
}

/// Training fusion's default: on unless the environment sets `MIEN_FUSE=0`.
pub fn enabled_by_env() -> bool {
    std::env::var("MIEN_FUSE").map_or(true, |v| v.trim() != "0")
}

/// Statistics fusion's default: on unless the environment sets `MIEN_FUSE=0` or
/// `MIEN_FUSE_STATS=0`.
pub fn stats_enabled_by_env() -> bool {
    enabled_by_env() && std::env::var("MIEN_FUSE_STATS").map_or(true, |v| v.trim() != "0")
}

/// Pool fusion's default: on unless the environment sets `MIEN_FUSE=0` or
/// `MIEN_FUSE_POOL=0`.
pub fn pool_enabled_by_env() -> bool {
    enabled_by_env() && std::env::var("MIEN_FUSE_POOL").map_or(true, |v| v.trim() != "0")
}

/// Per layer: where layer i starts a training pair whose activation (i + 1) is followed by
/// a 2x2 stride-2 max pool over even planes (`Pool2d::pairs`), optionally with a dropout
/// right before it and one right after it, how many of those layers (1 to 3) the pair's
/// forward runs too (`BatchNorm::forward_train_act_pool`); else 0. Only with `fuse_pool`.
/// Their backward passes stay their own: the pool's reads only the argmax (which the fused
/// pass writes), a dropout's recomputes its mask.
pub fn pool_tails(ops: &[Box<dyn LayerOp>], train_pairs: &[bool], opts: BuildOptions) -> Vec<usize> {
    let op = |j: usize| ops.get(j).map(|o| o.as_any());
    let is_dropout = |j: usize| op(j).is_some_and(|o| o.is::<Dropout>());
    let is_pool = |j: usize| op(j).and_then(|o| o.downcast_ref::<Pool2d>()).is_some_and(|p| p.cfg.kind == PoolKind::Max && p.pairs());
    (0..ops.len())
        .map(|i| {
            if !(opts.fuse_pool && train_pairs[i]) {
                return 0;
            }
            let pre = is_dropout(i + 2) as usize;
            if !is_pool(i + 2 + pre) {
                return 0;
            }
            pre + 1 + is_dropout(i + 3 + pre) as usize
        })
        .collect()
}

/// Per layer: where layer i is a conv whose forward kernel has the statistics epilogue
/// (`Conv2d::stats_groups`) and layer i + 1 the BatchNorm of a training pair, the partials
/// [C, G, 3] the conv writes for it (owned by the network; the BatchNorm's training forward
/// merges them instead of reading the conv's output twice). Only with `fuse_stats` and
/// where training pairs exist (`train_pairs`: fusion on, reuse, no input gradients).
pub fn stats_partials(gpu: &Gpu, names: &[String], ops: &[Box<dyn LayerOp>], train_pairs: &[bool], opts: BuildOptions) -> Result<Vec<Option<Tensor>>> {
    let mut out: Vec<Option<Tensor>> = (0..ops.len()).map(|_| None).collect();
    if !opts.fuse_stats {
        return Ok(out);
    }
    for i in 0..ops.len().saturating_sub(1) {
        let Some(conv) = ops[i].as_any().downcast_ref::<Conv2d>() else { continue };
        if !train_pairs[i + 1] {
            continue;
        }
        if let Some(groups) = conv.stats_groups(gpu)? {
            let label = format!("{} -> {} statistics partials", names[i], names[i + 1]);
            out[i] = Some(gpu.tensor(&label, &[conv.cfg.out_channels, groups, 3])?);
        }
    }
    Ok(out)
}

/// Training forward of the conv at `i` that also writes the BatchNorm statistics partials
/// (`stats_partials`).
pub fn conv_forward_stats(net: &Network, gpu: &Gpu, i: usize, partials: &Tensor) -> Result<Vec<Dispatch>> {
    let conv = net.layers[i].op.as_any().downcast_ref::<Conv2d>().expect("statistics partials belong to a conv");
    let io = net.io(i, false);
    match conv.forward_stats_dispatches(gpu, io.x, io.value(0), io.maybe_value(1), io.y, partials)? {
        Some(steps) => Ok(steps),
        None => crate::bail!("layer {}: its forward kernel has no statistics epilogue, but partials were planned for it", conv.name),
    }
}

/// Storage buffers the fused training kernels bind at most (`batchnorm_backward_params_act4`:
/// x, dy, the saved statistics, gamma, beta, both slope views, sums, dbeta, dgamma, dalpha;
/// tests/shaders.rs counts them with naga). WebGPU's default limit is 8 and browsers offer
/// about 10, so there the unfused kernels run instead.
pub const TRAIN_STORAGE_BUFFERS: u32 = 11;

/// Whether the adapter can bind the fused training kernels' storage buffers.
pub fn fits(gpu: &crate::gpu::Gpu) -> bool {
    let have = gpu.limits().max_storage_buffers_per_shader_stage;
    if have < TRAIN_STORAGE_BUFFERS {
        log::info!("training fusion off: the fused BatchNorm kernels bind {TRAIN_STORAGE_BUFFERS} storage buffers, this adapter allows {have} per stage (max_storage_buffers_per_shader_stage)");
    }
    have >= TRAIN_STORAGE_BUFFERS
}

/// Per layer: does layer i (a BatchNorm) run the activation at i + 1 inside its training
/// passes? The one place training pairs are chosen (module docs); the memory plan and the
/// network's passes follow it.
pub fn train_pairs(ops: &[Box<dyn LayerOp>], opts: BuildOptions) -> Vec<bool> {
    let on = opts.fuse && opts.reuse && !opts.input_grad;
    let mut pairs = vec![false; ops.len()];
    for i in 0..ops.len().saturating_sub(1) {
        pairs[i] = on && fusable(ops[i].as_ref(), ops[i + 1].as_ref()) && (i == 0 || !pairs[i - 1]);
    }
    pairs
}

/// Can `bn` run `act` inside its training passes (a BatchNorm, then an activation of its
/// output shape whose kind the fused kernels apply)?
pub fn fusable(bn: &dyn LayerOp, act: &dyn LayerOp) -> bool {
    let Some(a) = act.as_any().downcast_ref::<Activation>() else { return false };
    // Exhaustive: a new activation kind decides here (and, if fused, gets an ACT code in
    // BatchNorm::act_constants and shaders/batchnorm.wgsl).
    let kind_fuses = match a.kind {
        Kind::Relu | Kind::LeakyRelu(_) | Kind::PRelu | Kind::PReluPerElement => true,
    };
    bn.as_any().is::<BatchNormLayer>() && kind_fuses && a.shape == bn.out_shape()
}

/// The BatchNorm at `i` and the activation at `i + 1` of a training pair, and the
/// activation as the BatchNorm's kernels take it.
fn pair(net: &Network, i: usize) -> (&BatchNormLayer, FusedAct<'_>) {
    let bn = net.layers[i].op.as_any().downcast_ref::<BatchNormLayer>().expect("a training pair starts with a BatchNorm");
    let act = net.layers[i + 1].op.as_any().downcast_ref::<Activation>().expect("a training pair ends with an activation");
    let slopes = net.layers[i + 1].params.first().map(|_| net.layer_param(i + 1, 0));
    (bn, FusedAct { kind: act.kind, alpha: slopes.map(|p| &p.value), dalpha: slopes.map(|p| &p.grad) })
}

/// Training forward of the pair at `i`: the BatchNorm's input to the activation's output.
pub fn train_forward(net: &Network, gpu: &Gpu, i: usize) -> Result<Vec<Dispatch>> {
    let (bn, act) = pair(net, i);
    let (io, out) = (net.io(i, false), net.io(i + 1, false));
    bn.op.forward_train_act(gpu, io.x, net.stats_partials_for(i), io.value(0), io.value(1), &bn.running_mean, &bn.running_var, &bn.saved, &act, out.y)
}

/// Training forward of the pair at `i` with its pool tail of `tail` layers (`pool_tails`):
/// the BatchNorm's input to the tail's output and the pool's argmax.
pub fn train_forward_pool(net: &Network, gpu: &Gpu, i: usize, tail: usize) -> Result<Vec<Dispatch>> {
    let (bn, act) = pair(net, i);
    let dropout = |j: usize| net.layers[j].op.as_any().downcast_ref::<Dropout>();
    let pre = dropout(i + 2);
    let p = i + 2 + pre.is_some() as usize;
    let pool = net.layers[p].op.as_any().downcast_ref::<Pool2d>().expect("a pool tail has a max pool");
    let post = (p < i + 1 + tail).then(|| dropout(p + 1).expect("a pool tail ends with the pool or a dropout"));
    let argmax = net.io(p, false).extra.first().expect("max pooling plans an argmax");
    let t = PoolTail { width: pool.input_shape[3], argmax, pre, post };
    let (io, out) = (net.io(i, false), net.io(i + 1 + tail, false));
    bn.op.forward_train_act_pool(gpu, io.x, net.stats_partials_for(i), io.value(0), io.value(1), &bn.running_mean, &bn.running_var, &bn.saved, &act, &t, out.y)
}

/// Training backward of the pair at `i`: from the activation's output gradient to the
/// BatchNorm's input gradient (or its sink), gamma, beta and slope gradients.
pub fn train_backward(net: &Network, gpu: &Gpu, i: usize, need_dx: bool) -> Result<Vec<Dispatch>> {
    let (bn, act) = pair(net, i);
    let (io, out) = (net.io(i, need_dx), net.io(i + 1, false));
    let dx = io.dx.expect("a BatchNorm dx or sink");
    bn.op.backward_act(gpu, dx, io.grad(0), io.grad(1), out.dy(), io.x, io.value(0), io.value(1), &bn.saved, &act, false)
}
