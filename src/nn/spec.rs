//! A model as data: a list of layer specs (serde, so TOML / JSON files and built-in presets
//! share one form). `Network::build` turns it into GPU ops for one input shape and batch;
//! `reference::network` runs the same spec in f64.

use super::activation::{Activation, Kind};
use super::batchnorm::{BatchNormConfig, BatchNormLayer};
use super::conv2d::{Conv2d, Conv2dConfig};
use super::dense::Dense;
use super::dropout::Dropout;
use super::layer::{Flatten, LayerOp};
use super::pad::Pad2d;
use super::pool::{Pool2d, PoolConfig, PoolKind};
use super::precision::Precision;
use super::Padding;
use crate::gpu::Gpu;
use crate::Result;
use serde::{Deserialize, Serialize};

/// A size given as one number (square) or `[height, width]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Pair {
    Square(usize),
    Rect([usize; 2]),
}

impl Pair {
    pub fn hw(self) -> (usize, usize) {
        match self {
            Pair::Square(k) => (k, k),
            Pair::Rect([h, w]) => (h, w),
        }
    }
}

/// Padding as written in a spec: "same", "valid", or `[top, bottom, left, right]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum PaddingSpec {
    Named(PaddingName),
    Explicit([usize; 4]),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PaddingName {
    Same,
    Valid,
}

impl PaddingSpec {
    pub fn resolve(self) -> Padding {
        match self {
            PaddingSpec::Named(PaddingName::Same) => Padding::Same,
            PaddingSpec::Named(PaddingName::Valid) => Padding::Valid,
            PaddingSpec::Explicit([top, bottom, left, right]) => Padding::Explicit { top, bottom, left, right },
        }
    }
}

fn one() -> Pair {
    Pair::Square(1)
}
fn two() -> Pair {
    Pair::Square(2)
}
fn same() -> PaddingSpec {
    PaddingSpec::Named(PaddingName::Same)
}
fn valid() -> PaddingSpec {
    PaddingSpec::Named(PaddingName::Valid)
}
fn yes() -> bool {
    true
}
fn bn_eps() -> f32 {
    1e-3
}
fn bn_momentum() -> f32 {
    0.99
}
fn leaky_alpha() -> f32 {
    0.3
}

/// One layer. Shapes of inputs come from the previous layer; only hyper-parameters here.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum LayerSpec {
    Conv2d {
        filters: usize,
        kernel: Pair,
        #[serde(default = "one")]
        stride: Pair,
        #[serde(default = "same")]
        padding: PaddingSpec,
        #[serde(default = "yes")]
        bias: bool,
    },
    MaxPool {
        #[serde(default = "two")]
        size: Pair,
        /// Defaults to `size`.
        #[serde(default)]
        stride: Option<Pair>,
        #[serde(default = "valid")]
        padding: PaddingSpec,
    },
    AvgPool {
        #[serde(default = "two")]
        size: Pair,
        #[serde(default)]
        stride: Option<Pair>,
        #[serde(default = "valid")]
        padding: PaddingSpec,
    },
    /// Zero padding (Keras ZeroPadding2D): [top, bottom, left, right].
    ZeroPad { pad: [usize; 4] },
    BatchNorm {
        #[serde(default = "bn_eps")]
        eps: f32,
        #[serde(default = "bn_momentum")]
        momentum: f32,
    },
    Relu,
    LeakyRelu {
        #[serde(default = "leaky_alpha")]
        alpha: f32,
    },
    /// Learned slope, initialised to 0.25: one per channel (`per_channel = true`, the
    /// default), or one per element of a sample like Keras' `PReLU()` (`per_channel = false`).
    Prelu {
        #[serde(default = "yes")]
        per_channel: bool,
    },
    Dropout { rate: f32 },
    /// A view: no kernel runs.
    Flatten,
    Dense {
        /// Omitted (0) in the last layer of a model file: the number of classes.
        #[serde(default)]
        units: usize,
        #[serde(default = "yes")]
        bias: bool,
    },
}

impl LayerSpec {
    /// The Keras-like base name used for automatic layer names (`conv2d_1`, ...).
    pub fn kind_name(&self) -> &'static str {
        match self {
            LayerSpec::Conv2d { .. } => "conv2d",
            LayerSpec::MaxPool { .. } => "max_pool",
            LayerSpec::AvgPool { .. } => "avg_pool",
            LayerSpec::ZeroPad { .. } => "zero_pad",
            LayerSpec::BatchNorm { .. } => "batch_norm",
            LayerSpec::Relu => "relu",
            LayerSpec::LeakyRelu { .. } => "leaky_relu",
            LayerSpec::Prelu { .. } => "prelu",
            LayerSpec::Dropout { .. } => "dropout",
            LayerSpec::Flatten => "flatten",
            LayerSpec::Dense { .. } => "dense",
        }
    }

    /// Is this a convolution (Grad-CAM, filter ascent and filter outputs pick these)?
    pub fn is_conv(&self) -> bool {
        matches!(self, LayerSpec::Conv2d { .. })
    }

    /// Does this layer belong to the block of the conv before it: BatchNorm and activations,
    /// whose output explanations read as the block's output (Grad-CAM, filter outputs)?
    pub fn extends_block(&self) -> bool {
        matches!(self, LayerSpec::BatchNorm { .. }) || Kind::of(self).is_some()
    }

    /// In inference, is this layer an affine map that treats every position alike (conv,
    /// zero padding, BatchNorm, dropout)? A stack of these has position-independent input
    /// gradients (filter ascent checks against its reference this way).
    pub fn is_affine_stationary(&self) -> bool {
        matches!(self, LayerSpec::Conv2d { .. } | LayerSpec::ZeroPad { .. } | LayerSpec::BatchNorm { .. } | LayerSpec::Dropout { .. })
    }

    /// The GPU op of this layer for inputs of `in_shape` (batch first); errors name the layer.
    /// Convolutions and dense layers are built for `precision`.
    pub fn build(&self, gpu: &Gpu, name: &str, in_shape: &[usize], precision: Precision) -> Result<Box<dyn LayerOp>> {
        Ok(match self {
            LayerSpec::Conv2d { filters, kernel, stride, padding, bias } => {
                let cfg = Conv2dConfig {
                    in_channels: *in_shape.get(1).unwrap_or(&0),
                    out_channels: *filters,
                    kernel: kernel.hw(),
                    stride: stride.hw(),
                    padding: padding.resolve(),
                    bias: *bias,
                };
                Box::new(Conv2d::new_in(gpu, name, cfg, in_shape, precision)?)
            }
            LayerSpec::MaxPool { size, stride, padding } | LayerSpec::AvgPool { size, stride, padding } => {
                let kind = if matches!(self, LayerSpec::MaxPool { .. }) { PoolKind::Max } else { PoolKind::Avg };
                let cfg = PoolConfig { kind, window: size.hw(), stride: stride.unwrap_or(*size).hw(), padding: padding.resolve() };
                Box::new(Pool2d::new(gpu, name, cfg, in_shape)?)
            }
            LayerSpec::ZeroPad { pad } => Box::new(Pad2d::new(gpu, name, (pad[0], pad[1], pad[2], pad[3]), in_shape)?),
            LayerSpec::BatchNorm { eps, momentum } => Box::new(BatchNormLayer::new(gpu, name, BatchNormConfig { eps: *eps, momentum: *momentum }, in_shape)?),
            LayerSpec::Dropout { rate } => Box::new(Dropout::new(gpu, name, *rate, in_shape)?),
            LayerSpec::Flatten => Box::new(Flatten::new(in_shape)),
            LayerSpec::Dense { units, bias } => {
                let features: usize = in_shape[1..].iter().product();
                Box::new(Dense::new_in(gpu, name, features, *units, *bias, in_shape, precision)?)
            }
            LayerSpec::Relu | LayerSpec::LeakyRelu { .. } | LayerSpec::Prelu { .. } => {
                let kind = Kind::of(self).expect("an activation spec");
                Box::new(Activation::new(gpu, name, kind, in_shape)?)
            }
        })
    }
}

/// A named model: layers in order. The last layer's output are the class logits; softmax
/// cross-entropy is the loss. `name` is informational.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelSpec {
    pub name: String,
    pub layers: Vec<LayerSpec>,
}

impl ModelSpec {
    /// Layer names: `conv2d_1`, `batch_norm_1`, `relu_1`, `conv2d_2`, ... (per-kind counters).
    pub fn layer_names(&self) -> Vec<String> {
        let mut counts = std::collections::HashMap::new();
        self.layers
            .iter()
            .map(|l| {
                let c = counts.entry(l.kind_name()).or_insert(0usize);
                *c += 1;
                format!("{}_{}", l.kind_name(), c)
            })
            .collect()
    }

    /// Read a model file: TOML (`name = "..."` and `[[layers]]` tables with `type = "conv2d"`,
    /// ...) or JSON, by extension. A last dense layer without `units` gets `classes`.
    pub fn from_file(path: &std::path::Path, classes: usize) -> crate::Result<ModelSpec> {
        let text = std::fs::read_to_string(path).map_err(|e| crate::Error::new(format!("{}: cannot read model file: {e}", path.display())))?;
        let spec: ModelSpec = if path.extension().is_some_and(|e| e == "json") {
            serde_json::from_str(&text).map_err(|e| crate::Error::new(format!("{}: {e}", path.display())))?
        } else {
            toml::from_str(&text).map_err(|e| crate::Error::new(format!("{}: {e}", path.display())))?
        };
        Ok(spec.with_classes(classes))
    }

    /// A preset name or a model file path.
    pub fn resolve(name_or_path: &str, classes: usize) -> crate::Result<ModelSpec> {
        if let Some(spec) = Self::preset(name_or_path, classes) {
            return Ok(spec);
        }
        let path = std::path::Path::new(name_or_path);
        if path.exists() {
            return Self::from_file(path, classes);
        }
        Err(crate::Error::new(format!(
            "model {name_or_path:?} is neither a preset ({}) nor an existing model file",
            Self::PRESETS.join(", ")
        )))
    }

    /// Give a last dense layer without `units` the class count.
    pub fn with_classes(mut self, classes: usize) -> ModelSpec {
        if let Some(LayerSpec::Dense { units, .. }) = self.layers.last_mut() {
            if *units == 0 {
                *units = classes;
            }
        }
        self
    }

    /// The built-in models: `small` (fast; the default), `seed-cnn` (the reports' VGG-like
    /// net, 3,532,743 parameters at 48x48x1 with 7 classes, as in their Keras summary),
    /// `seed-dnn` (plain dense layers of about the same size), `tiny-cnn` (tests).
    pub const PRESETS: &'static [&'static str] = &["small", "seed-cnn", "seed-dnn", "tiny-cnn"];

    /// A built-in model by name; `classes` sizes the last layer.
    pub fn preset(name: &str, classes: usize) -> Option<ModelSpec> {
        Some(match name {
            "small" => Self::small(classes),
            "seed-cnn" => Self::seed_cnn(classes),
            "seed-dnn" => Self::seed_dnn(classes),
            "tiny-cnn" => Self::tiny_cnn(classes),
            _ => return None,
        })
    }

    /// Three conv-BN-ReLU-pool blocks and a small dense head: trains in minutes on a CPU
    /// Vulkan driver.
    pub fn small(classes: usize) -> ModelSpec {
        // BN momentum 0.9: a short run has few steps for the running statistics to settle.
        let bn = || LayerSpec::BatchNorm { eps: bn_eps(), momentum: 0.9 };
        let mut layers = Vec::new();
        for filters in [16, 32, 64] {
            layers.extend([conv3(filters), bn(), LayerSpec::Relu, max_pool()]);
        }
        // BN before the head's ReLU: without it the 64 units can all die early under Adam
        // (loss stuck at ln 7 on the built-in data).
        layers.extend([
            LayerSpec::Flatten,
            LayerSpec::Dropout { rate: 0.3 },
            LayerSpec::Dense { units: 64, bias: true },
            bn(),
            LayerSpec::Relu,
            LayerSpec::Dense { units: classes, bias: true },
        ]);
        ModelSpec { name: "small".into(), layers }
    }

    /// The reports' CNN (file 001 of the seeds): 2x conv64, pool, 2x conv128, pool,
    /// 2x conv128, pool, dense 512, dense 256, each conv / dense followed by BatchNorm and a
    /// Keras-style PReLU (one slope per element), dropout after each block.
    pub fn seed_cnn(classes: usize) -> ModelSpec {
        let prelu = || LayerSpec::Prelu { per_channel: false };
        let mut layers = Vec::new();
        for (filters, last) in [(64, false), (128, false), (128, true)] {
            for _ in 0..2 {
                layers.extend([conv3(filters), batch_norm(), prelu()]);
            }
            // The report puts the last block's dropout before its pooling; same function.
            if last {
                layers.extend([LayerSpec::Dropout { rate: 0.3 }, max_pool()]);
            } else {
                layers.extend([max_pool(), LayerSpec::Dropout { rate: 0.3 }]);
            }
        }
        layers.push(LayerSpec::Flatten);
        for units in [512, 256] {
            layers.extend([LayerSpec::Dense { units, bias: true }, batch_norm(), prelu(), LayerSpec::Dropout { rate: 0.5 }]);
        }
        layers.push(LayerSpec::Dense { units: classes, bias: true });
        ModelSpec { name: "seed-cnn".into(), layers }
    }

    /// The reports' DNN of about the same size: six dense 600 and one dense 537, each with
    /// BatchNorm, PReLU and dropout (3,533,188 parameters at 48x48x1, 7 classes).
    pub fn seed_dnn(classes: usize) -> ModelSpec {
        let mut layers = vec![LayerSpec::Flatten];
        for units in [600, 600, 600, 600, 600, 600, 537] {
            layers.extend([
                LayerSpec::Dense { units, bias: true },
                batch_norm(),
                LayerSpec::Prelu { per_channel: false },
                LayerSpec::Dropout { rate: 0.3 },
            ]);
        }
        layers.push(LayerSpec::Dense { units: classes, bias: true });
        ModelSpec { name: "seed-dnn".into(), layers }
    }

    /// The tiny CNN that proves the pieces compose: (conv-BN-ReLU-pool) x2, dense.
    pub fn tiny_cnn(classes: usize) -> ModelSpec {
        ModelSpec {
            name: "tiny-cnn".into(),
            layers: vec![
                conv3(4),
                batch_norm(),
                LayerSpec::Relu,
                max_pool(),
                conv3(8),
                batch_norm(),
                LayerSpec::Relu,
                max_pool(),
                LayerSpec::Flatten,
                LayerSpec::Dense { units: classes, bias: true },
            ],
        }
    }
}

/// 3x3 "same" convolution with bias.
fn conv3(filters: usize) -> LayerSpec {
    LayerSpec::Conv2d { filters, kernel: Pair::Square(3), stride: one(), padding: same(), bias: true }
}

fn batch_norm() -> LayerSpec {
    LayerSpec::BatchNorm { eps: bn_eps(), momentum: bn_momentum() }
}

/// 2x2 max pooling, stride 2.
fn max_pool() -> LayerSpec {
    LayerSpec::MaxPool { size: two(), stride: None, padding: valid() }
}
