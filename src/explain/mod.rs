//! What the trained network looks at, computed on the GPU through the same WGSL forward and
//! backward kernels (gradients with respect to the input or an intermediate activation,
//! batched); the CPU only draws pictures and solves small linear systems.
//!
//! `Model` is a trained run loaded for explanations: the network built with input
//! gradients, in inference mode. Each method lives in its own module.

pub mod ascent;
pub mod batching;
pub mod faithfulness;
pub mod filter_outputs;
pub mod gallery;
pub mod gradcam;
pub mod lime;
pub mod occlusion;
pub mod report;
pub mod saliency;
pub mod superpixels;

use crate::gpu::{Dispatch, Gpu};
use crate::nn::checkpoint::{self, CheckpointInfo};
use crate::nn::network::{BuildOptions, Network};
use crate::nn::precision::Precision;
use crate::{ensure, Error, Result};
use std::path::{Path, PathBuf};

/// A trained model ready for explanations.
pub struct Model {
    pub net: Network,
    pub info: CheckpointInfo,
    pub checkpoint: PathBuf,
    /// Inference backward from the logits to the input, recorded once.
    backward: Vec<Dispatch>,
}

impl Model {
    /// Load `run_dir/best.safetensors` (or `last`) into a network of batch `batch`. A
    /// missing run or checkpoint is an error saying how to make one.
    pub fn load(gpu: &Gpu, run_dir: &Path, batch: usize) -> Result<Model> {
        Self::load_with(gpu, run_dir, batch, Precision::F32)
    }

    /// `load` with the convolutions and dense layers built for `precision` (mixed: f16 GEMM
    /// operands in every pass, the input gradients included).
    pub fn load_with(gpu: &Gpu, run_dir: &Path, batch: usize, precision: Precision) -> Result<Model> {
        let file = Self::checkpoint_file(run_dir)?;
        let (_, info) = checkpoint::read(&file)?;
        Self::from_checkpoint(gpu, &file, info, batch, precision)
    }

    /// The checkpoint `load` reads: `run_dir/best.safetensors`, else `last`; an error saying
    /// how to train a run when there is neither (checked before any GPU work).
    pub fn checkpoint_file(run_dir: &Path) -> Result<PathBuf> {
        ["best.safetensors", "last.safetensors"].iter().map(|f| run_dir.join(f)).find(|p| p.exists()).ok_or_else(|| {
            Error::new(format!(
                "{}: no trained run (no best.safetensors or last.safetensors). Train one first: \
                 cargo run --release --bin train (it writes runs/latest)",
                run_dir.display()
            ))
        })
    }

    fn from_checkpoint(gpu: &Gpu, file: &Path, info: CheckpointInfo, batch: usize, precision: Precision) -> Result<Model> {
        ensure!(batch > 0, "explanations need a batch of at least 1");
        let net = Network::build(gpu, &info.model, info.input_chw, info.class_names.len(), batch, BuildOptions::EXPLAIN.with_precision(precision))?;
        checkpoint::load(gpu, file, &net, None)?;
        Self::wrap(gpu, net, info, file.to_path_buf())
    }

    /// A model from a checkpoint's bytes (`name` for messages and `checkpoint`: a dropped
    /// or fetched file in the browser).
    pub fn from_bytes(gpu: &Gpu, name: &str, bytes: &[u8], batch: usize) -> Result<Model> {
        ensure!(batch > 0, "explanations need a batch of at least 1");
        let info = checkpoint::read_bytes(bytes, name)?;
        let net = Network::build(gpu, &info.model, info.input_chw, info.class_names.len(), batch, BuildOptions::EXPLAIN)?;
        checkpoint::load_bytes(gpu, name, bytes, &net, None)?;
        Self::wrap(gpu, net, info, PathBuf::from(name))
    }

    /// A model from an already built network (tests; randomized weights for sanity checks).
    pub fn wrap(gpu: &Gpu, net: Network, info: CheckpointInfo, checkpoint: PathBuf) -> Result<Model> {
        let backward = net.explain_backward(gpu, net.layers.len() - 1, 0)?;
        Ok(Model { backward, net, info, checkpoint })
    }

    pub fn batch(&self) -> usize {
        self.net.batch
    }
    pub fn classes(&self) -> usize {
        self.info.class_names.len()
    }
    /// Pixels per image (C*H*W).
    pub fn image_len(&self) -> usize {
        self.info.input_chw.iter().product()
    }
    pub fn hw(&self) -> (usize, usize) {
        (self.info.input_chw[1], self.info.input_chw[2])
    }

    /// Index of a layer by name; an unknown name lists the valid ones.
    pub fn layer_index(&self, name: &str) -> Result<usize> {
        self.net.layers.iter().position(|l| l.name == name).ok_or_else(|| {
            let names: Vec<&str> = self.net.layers.iter().map(|l| l.name.as_str()).collect();
            Error::new(format!("unknown layer {name:?}; the model's layers are: {}", names.join(", ")))
        })
    }

    /// Indices of the convolution layers, in order.
    pub fn conv_layers(&self) -> Vec<usize> {
        self.net.layers.iter().enumerate().filter(|(_, l)| l.is_conv()).map(|(i, _)| i).collect()
    }

    /// The layer whose output is a conv block's activation: the last layer of the run of
    /// element-wise layers (BN, activation) that follows conv `i`. Grad-CAM and filter
    /// outputs read it, as Keras users read a conv layer with a fused activation.
    pub fn block_output(&self, conv: usize) -> usize {
        let mut j = conv;
        while self.net.layers.get(j + 1).is_some_and(|l| l.spec.extends_block()) {
            j += 1;
        }
        j
    }

    /// Check a class index, naming the classes.
    pub fn check_class(&self, class: usize) -> Result<()> {
        ensure!(class < self.classes(), "class {class} is out of range: the model has {} classes ({})", self.classes(), self.info.class_names.join(", "));
        Ok(())
    }

    /// Upload one batch of `batch()` images (`images.len() == batch * image_len`), record the
    /// inference forward and wait.
    pub fn forward(&self, gpu: &Gpu, images: &[f32]) -> Result<()> {
        ensure!(images.len() == self.batch() * self.image_len(), "{} values for a batch of {} images of {}", images.len(), self.batch(), self.image_len());
        gpu.write(self.net.input(), images)?;
        gpu.run(self.net.forward_infer_dispatches())
    }

    /// Softmax probabilities [n, classes] of any number of images, in batches (the last one
    /// padded by repeating its final image).
    pub fn probabilities(&self, gpu: &Gpu, images: &[f32]) -> Result<Vec<f32>> {
        crate::platform::block_on(self.probabilities_async(gpu, images))
    }

    /// `probabilities`, awaitable (the browser's form; see `crate::platform`).
    pub async fn probabilities_async(&self, gpu: &Gpu, images: &[f32]) -> Result<Vec<f32>> {
        let mut out = Vec::new();
        for (chunk, n) in self.batches(images) {
            gpu.write(self.net.input(), &chunk)?;
            gpu.run(self.net.infer_dispatches())?;
            out.extend_from_slice(&gpu.read_async(self.net.probabilities()).await?[..n * self.classes()]);
        }
        Ok(out)
    }

    /// Gradient of the class score (logit) `classes[i]` of image i with respect to its
    /// pixels, for any number of images, in batches: [n, C*H*W].
    pub fn class_gradients(&self, gpu: &Gpu, images: &[f32], classes: &[u32]) -> Result<Vec<f32>> {
        crate::platform::block_on(self.class_gradients_async(gpu, images, classes))
    }

    /// `class_gradients`, awaitable (the browser's form; see `crate::platform`).
    pub async fn class_gradients_async(&self, gpu: &Gpu, images: &[f32], classes: &[u32]) -> Result<Vec<f32>> {
        let k = self.classes();
        let n = images.len() / self.image_len();
        ensure!(classes.len() == n, "{} classes for {n} images", classes.len());
        for &c in classes {
            self.check_class(c as usize)?;
        }
        let last = self.net.layers.len() - 1;
        let mut out = Vec::with_capacity(images.len());
        for (b, (chunk, m)) in self.batches(images).enumerate() {
            let mut seed = vec![0.0f32; self.batch() * k];
            for i in 0..self.batch() {
                let c = classes[(b * self.batch() + i.min(m - 1)).min(n - 1)];
                seed[i * k + c as usize] = 1.0;
            }
            gpu.write(self.net.input(), &chunk)?;
            gpu.write(self.net.activation(last).1.expect("logits gradient"), &seed)?;
            gpu.run(self.net.forward_infer_dispatches().chain(&self.backward))?;
            out.extend_from_slice(&gpu.read_async(self.net.input_grad().expect("input gradient")).await?[..m * self.image_len()]);
        }
        Ok(out)
    }

    /// Split `images` into full batches, padding the last by repeating its final image.
    /// Yields (batch values, real image count).
    pub fn batches<'a>(&'a self, images: &'a [f32]) -> impl Iterator<Item = (Vec<f32>, usize)> + 'a {
        let len = self.image_len();
        let b = self.batch();
        images.chunks(b * len).map(move |c| {
            let m = c.len() / len;
            let mut v = c.to_vec();
            while v.len() < b * len {
                v.extend_from_slice(&c[(m - 1) * len..m * len]);
            }
            (v, m)
        })
    }
}
