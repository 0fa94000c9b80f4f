//! BatchNorm population statistics (precise BatchNorm, Wu & Johnson 2021): before each
//! validation and checkpoint, every BN layer's running mean and variance are replaced by the
//! exact mean and variance of its input in inference mode over a fixed sample of training
//! images.
//!
//! Why: the momentum rule (Keras, 0.99) averages batch statistics of weights that kept
//! changing, and with few steps an epoch (batch 256 on 6,000 images: 23) it cannot settle,
//! so validation accuracy swings from epoch to epoch. Inference-mode statistics are what
//! the inference network sees: layer by layer, each BN's input is computed with the BNs
//! before it already holding their population statistics (one pass over the sample per BN
//! layer; a pass in training mode would measure batch-normalized inputs instead).
//!
//! On the GPU: a copy of the network at a small batch built without memory reuse (every
//! activation readable, no BN folded away), sharing the weights and running statistics;
//! per BN layer, `Network::forward_infer_prefix` up to it and `batchnorm::Population`
//! (shaders/batchnorm.wgsl) merging each batch's exact mean and variance. The sample is a
//! seeded choice of training images, without augmentation, the same every epoch, so a
//! resumed run recomputes the same statistics.

use super::{gather, TrainData};
use crate::data::Dataset;
use crate::gpu::{Dispatch, Gpu};
use crate::nn::batchnorm::Population;
use crate::nn::network::{BuildOptions, Network};
use crate::nn::spec::LayerSpec;
use crate::rng::Rng;
use crate::Result;

/// Batch of the statistics network (the result does not depend on it).
const BATCH: usize = 64;

/// One BN layer's pass: the forward up to its input, the merge, the final write.
struct LayerPass {
    forward: Vec<Dispatch>,
    accumulate: Dispatch,
    finish: Dispatch,
    op: Population,
}

/// Population statistics of one network's BN layers over a fixed sample of training images.
pub struct PopulationStats {
    net: Network,
    layers: Vec<LayerPass>,
    /// Training-set indices of the sample, `batches` full batches of the network's batch.
    sample: Vec<usize>,
    batches: usize,
}

impl PopulationStats {
    /// For `train_net`'s BN layers (None when it has none), over `images` training images
    /// (None: all; rounded down to whole batches, at least one) chosen with `seed`.
    pub fn new(gpu: &Gpu, train_net: &Network, data: &TrainData, images: Option<usize>, seed: u64) -> Result<Option<PopulationStats>> {
        let bn: Vec<usize> = train_net.layers.iter().enumerate().filter(|(_, l)| matches!(l.spec, LayerSpec::BatchNorm { .. })).map(|(i, _)| i).collect();
        if bn.is_empty() {
            return Ok(None);
        }
        let n = images.unwrap_or(usize::MAX).min(data.train.len());
        let b = BATCH.min(n).max(1);
        let batches = (n / b).max(1);
        let mut order: Vec<usize> = (0..data.train.len()).collect();
        Rng::new(seed ^ 0xB7_5747_5000_0001).shuffle(&mut order);
        order.truncate(batches * b);
        let net = train_net.build_like(gpu, b, BuildOptions { input_grad: false, reuse: false, fuse: false, fuse_stats: false, fuse_pool: false, precision: train_net.precision })?;
        let mut layers = Vec::new();
        for &i in &bn {
            let name = &net.layers[i].name;
            let op = Population::new(gpu, name, &net.layers[i].in_shape, batches)?;
            let x = if i == 0 { net.input() } else { net.activation(i - 1).0 };
            let stat = |suffix: &str| {
                net.buffers.iter().find(|(n, _)| *n == format!("{name}.{suffix}")).map(|(_, t)| t.clone()).expect("a BatchNorm layer's running statistics")
            };
            layers.push(LayerPass {
                forward: net.forward_infer_prefix(gpu, i)?,
                accumulate: op.accumulate(gpu, x)?,
                finish: op.finish(gpu, &stat("running_mean"), &stat("running_var"))?,
                op,
            });
        }
        Ok(Some(PopulationStats { net, layers, sample: order, batches }))
    }

    /// Images in the sample.
    pub fn images(&self) -> usize {
        self.sample.len()
    }

    /// Training-set indices of the sample.
    pub fn sample(&self) -> &[usize] {
        &self.sample
    }

    /// Overwrite every BN layer's running statistics with the population's, first layer
    /// first.
    pub fn compute(&self, gpu: &Gpu, train: &Dataset) -> Result<()> {
        let b = self.net.batch;
        let (mut images, mut labels) = (Vec::new(), Vec::new());
        for layer in &self.layers {
            for k in 0..self.batches {
                gather(train, &self.sample[k * b..(k + 1) * b], &mut images, &mut labels);
                gpu.write(self.net.input(), &images)?;
                layer.op.set_batch(gpu, k);
                // One submit per batch: the batch index is a uniform written before it.
                gpu.submit(layer.forward.iter().chain(std::iter::once(&layer.accumulate)));
            }
            gpu.run(std::iter::once(&layer.finish))?;
        }
        Ok(())
    }
}
