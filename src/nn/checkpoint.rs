//! Checkpoints as safetensors, readable from numpy / PyTorch:
//! - `<layer>.<weight|bias|gamma|beta|alpha>`: parameters, f32, layouts as in the README
//!   (conv `[out, in, kh, kw]`, dense `[out, in]`);
//! - `<layer>.running_mean`, `<layer>.running_var`: BatchNorm statistics;
//! - `optimizer.<state>.<param>`: optimizer moments (`m`, `v` for Adam, `momentum` for SGD),
//!   same shape as the parameter.
//!
//! Metadata (strings): `mien.model` (the ModelSpec as JSON), `mien.input` ("[C,H,W]"),
//! `mien.classes` (class names, JSON), `mien.epoch`, `mien.optimizer_steps`,
//! `mien.format` ("1"), and in a training run's checkpoints the loop's state
//! (`mien.best_epoch`, `mien.lr`: see `train::resume`). Written to a temporary file and
//! renamed, so a killed run never leaves a torn checkpoint.

use crate::gpu::{Gpu, Tensor};
use crate::nn::network::Network;
use crate::nn::optim::Optimizer;
use crate::nn::spec::ModelSpec;
use crate::{ensure, Error, Result};
use safetensors::{tensor::TensorView, Dtype, SafeTensors};
use std::collections::HashMap;
use std::path::Path;

/// What a checkpoint says about itself besides the tensors.
#[derive(Debug, Clone, PartialEq)]
pub struct CheckpointInfo {
    pub model: ModelSpec,
    pub input_chw: [usize; 3],
    pub class_names: Vec<String>,
    /// Epochs completed when it was written.
    pub epoch: usize,
    pub optimizer_steps: u64,
}

pub use crate::io::write_atomic;

/// A tensor as a checkpoint stores it: (name, shape, values).
type Named = (String, Vec<usize>, Vec<f32>);

/// Every tensor a checkpoint of `net` holds, read from the GPU.
async fn collect(gpu: &Gpu, net: &Network, opt: Option<&Optimizer>) -> Result<Vec<Named>> {
    let arena = gpu.read_async(&net.arena).await?;
    let slice = |a: &[f32], off: usize, n: usize| a[off..off + n].to_vec();
    let mut out: Vec<_> = net.params.iter().map(|p| (p.name.clone(), p.shape.clone(), slice(&arena, p.offset, p.len()))).collect();
    for (name, t) in &net.buffers {
        out.push((name.clone(), t.shape().to_vec(), gpu.read_async(t).await?));
    }
    if let Some(opt) = opt {
        for (state, t) in opt.state() {
            let values = gpu.read_async(t).await?;
            for p in &net.params {
                out.push((format!("optimizer.{state}.{}", p.name), p.shape.clone(), slice(&values, p.offset, p.len())));
            }
        }
        if let Some(t) = opt.loss_scale() {
            out.push((LOSS_SCALE.to_string(), t.shape().to_vec(), gpu.read_async(t).await?));
        }
    }
    Ok(out)
}

/// Save `net`'s parameters, BN statistics and (when given) optimizer state to `path`.
pub fn save(gpu: &Gpu, path: &Path, net: &Network, opt: Option<&Optimizer>, class_names: &[String], epoch: usize) -> Result<()> {
    save_with(gpu, path, net, opt, class_names, epoch, &[])
}

/// `save`, with extra metadata entries `mien.<key>` = value (a training run's state).
#[allow(clippy::too_many_arguments)]
pub fn save_with(
    gpu: &Gpu,
    path: &Path,
    net: &Network,
    opt: Option<&Optimizer>,
    class_names: &[String],
    epoch: usize,
    extra: &[(&str, String)],
) -> Result<()> {
    let bytes = crate::platform::block_on(to_bytes_async(gpu, net, opt, class_names, epoch, extra))
        .map_err(|e| e.context(path.display()))?;
    write_atomic(path, &bytes)
}

/// The bytes `save_with` writes (a browser page offers them as a download).
pub async fn to_bytes_async(
    gpu: &Gpu,
    net: &Network,
    opt: Option<&Optimizer>,
    class_names: &[String],
    epoch: usize,
    extra: &[(&str, String)],
) -> Result<Vec<u8>> {
    let tensors = collect(gpu, net, opt).await?;
    let views = tensors
        .iter()
        .map(|(name, shape, v)| {
            TensorView::new(Dtype::F32, shape.clone(), bytemuck::cast_slice(v))
                .map(|t| (name.clone(), t))
                .map_err(|e| Error::new(format!("tensor {name}: {e}")))
        })
        .collect::<Result<Vec<_>>>()?;
    let mut meta = HashMap::from([
        ("mien.format".to_string(), "1".to_string()),
        ("mien.model".to_string(), json(&net.spec)),
        ("mien.input".to_string(), json(&net.input_chw.to_vec())),
        ("mien.classes".to_string(), json(&class_names.to_vec())),
        ("mien.epoch".to_string(), epoch.to_string()),
        ("mien.optimizer_steps".to_string(), opt.map_or(0, |o| o.steps_taken()).to_string()),
    ]);
    meta.extend(extra.iter().map(|(k, v)| (format!("mien.{k}"), v.clone())));
    safetensors::serialize(views, Some(meta)).map_err(|e| Error::new(e.to_string()))
}

fn json<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_string(v).expect("metadata serializes")
}

/// The metadata entry `mien.<key>` of a checkpoint's bytes (from `read`), if present.
pub fn metadata(bytes: &[u8], key: &str) -> Option<String> {
    let (_, meta) = SafeTensors::read_metadata(bytes).ok()?;
    meta.metadata().as_ref()?.get(&format!("mien.{key}")).cloned()
}

/// Read a checkpoint file and its metadata.
pub fn read(path: &Path) -> Result<(Vec<u8>, CheckpointInfo)> {
    let bytes = std::fs::read(path).map_err(|e| Error::new(format!("{}: cannot read checkpoint: {e}", path.display())))?;
    let info = read_bytes(&bytes, &path.display().to_string())?;
    Ok((bytes, info))
}

/// The metadata of a checkpoint's bytes (`name` for messages: a file, a dropped file).
pub fn read_bytes(bytes: &[u8], name: &str) -> Result<CheckpointInfo> {
    let (_, meta) = SafeTensors::read_metadata(bytes).map_err(|e| Error::new(format!("{name}: not a safetensors file: {e}")))?;
    let m = meta.metadata().clone().unwrap_or_default();
    let get = |k: &str| m.get(k).ok_or_else(|| Error::new(format!("{name}: not a mien checkpoint (no {k} metadata)")));
    let parse = |k: &str, e: &dyn std::fmt::Display| Error::new(format!("{name}: metadata {k}: {e}"));
    let input: Vec<usize> = serde_json::from_str(get("mien.input")?).map_err(|e| parse("mien.input", &e))?;
    ensure!(input.len() == 3, "{name}: metadata mien.input is {input:?}, expected [C, H, W]");
    Ok(CheckpointInfo {
        model: serde_json::from_str(get("mien.model")?).map_err(|e| parse("mien.model", &e))?,
        input_chw: [input[0], input[1], input[2]],
        class_names: serde_json::from_str(get("mien.classes")?).map_err(|e| parse("mien.classes", &e))?,
        epoch: get("mien.epoch")?.parse().map_err(|e| parse("mien.epoch", &e))?,
        optimizer_steps: get("mien.optimizer_steps")?.parse().map_err(|e| parse("mien.optimizer_steps", &e))?,
    })
}

/// One tensor of the checkpoint as f32, checked against the shape the model expects.
fn tensor(st: &SafeTensors, file: &str, name: &str, shape: &[usize]) -> Result<Vec<f32>> {
    let t = st.tensor(name).map_err(|_| Error::new(format!("{}: checkpoint lacks tensor {name} {shape:?} that the model needs", file)))?;
    ensure!(t.dtype() == Dtype::F32, "{}: tensor {name} is {:?}, expected F32", file, t.dtype());
    ensure!(
        t.shape() == shape,
        "{}: tensor {name} has shape {:?}, the model expects {shape:?} (the checkpoint does not fit this model)",
        file,
        t.shape()
    );
    // Copy: the file's bytes need not be 4-byte aligned.
    Ok(t.data().chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect())
}

/// Load parameters, BN statistics and (when `opt` is given) optimizer state into `net`.
/// Refuses a checkpoint that does not fit, naming the first mismatching tensor.
pub fn load(gpu: &Gpu, path: &Path, net: &Network, opt: Option<&mut Optimizer>) -> Result<CheckpointInfo> {
    let (bytes, _) = read(path)?;
    load_bytes(gpu, &path.display().to_string(), &bytes, net, opt)
}

/// `load` from a checkpoint's bytes (`file` names them in messages).
pub fn load_bytes(gpu: &Gpu, file: &str, bytes: &[u8], net: &Network, opt: Option<&mut Optimizer>) -> Result<CheckpointInfo> {
    let info = read_bytes(bytes, file)?;
    let st = SafeTensors::deserialize(bytes).map_err(|e| Error::new(format!("{file}: {e}")))?;
    let mut arena = vec![0.0f32; net.arena.len()];
    for p in &net.params {
        arena[p.offset..p.offset + p.len()].copy_from_slice(&tensor(&st, file, &p.name, &p.shape)?);
    }
    let mut buffers = Vec::new();
    for (name, t) in &net.buffers {
        buffers.push((t, tensor(&st, file, name, t.shape())?));
    }
    // Anything in the file the model does not have is a mismatch too.
    let known = |n: &str| net.params.iter().any(|p| p.name == n) || net.buffers.iter().any(|(b, _)| b == n) || n.starts_with("optimizer.");
    let mut names = st.names();
    names.sort();
    if let Some(extra) = names.iter().find(|n| !known(n)) {
        return Err(Error::new(format!("{file}: tensor {extra} is not part of model {} (the checkpoint does not fit this model)", net.spec.name)));
    }
    gpu.write(&net.arena, &arena)?;
    for (t, v) in buffers {
        gpu.write(t, &v)?;
    }
    if let Some(opt) = opt {
        load_optimizer(gpu, &st, file, net, opt)?;
        opt.set_steps_taken(info.optimizer_steps);
    }
    Ok(info)
}

fn load_optimizer(gpu: &Gpu, st: &SafeTensors, file: &str, net: &Network, opt: &mut Optimizer) -> Result<()> {
    let states: Vec<(&'static str, Tensor)> = opt.state().into_iter().map(|(n, t)| (n, t.clone())).collect();
    for (state, t) in states {
        let mut values = vec![0.0f32; t.len()];
        for p in &net.params {
            let v = tensor(st, file, &format!("optimizer.{state}.{}", p.name), &p.shape)?;
            values[p.offset..p.offset + p.len()].copy_from_slice(&v);
        }
        gpu.write(&t, &values)?;
    }
    if let Some(t) = opt.loss_scale() {
        let v = tensor(st, file, LOSS_SCALE, t.shape())
            .map_err(|e| e.context("a mixed-precision run resumes from a checkpoint with its loss-scale state"))?;
        gpu.write(t, &v)?;
    }
    Ok(())
}

/// The name of a mixed-precision run's loss-scale state (nn::loss_scale) in a checkpoint.
const LOSS_SCALE: &str = "optimizer.loss_scale";
