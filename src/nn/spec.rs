//! A model as data: a list of layer specs (serde, so TOML / JSON files and built-in presets
//! share one form). `Network::build` turns it into GPU ops for one input shape and batch;
//! `reference::network` runs the same spec in f64.

use super::Padding;
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
    /// Learned slope per channel, initialised to 0.25.
    Prelu,
    Dropout { rate: f32 },
    /// A view: no kernel runs.
    Flatten,
    Dense {
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
            LayerSpec::Prelu => "prelu",
            LayerSpec::Dropout { .. } => "dropout",
            LayerSpec::Flatten => "flatten",
            LayerSpec::Dense { .. } => "dense",
        }
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

    /// The tiny CNN that proves the pieces compose: (conv-BN-ReLU-pool) x2, dense.
    pub fn tiny_cnn(classes: usize) -> ModelSpec {
        let conv = |filters| LayerSpec::Conv2d { filters, kernel: Pair::Square(3), stride: one(), padding: same(), bias: true };
        let bn = || LayerSpec::BatchNorm { eps: bn_eps(), momentum: bn_momentum() };
        let pool = || LayerSpec::MaxPool { size: two(), stride: None, padding: valid() };
        ModelSpec {
            name: "tiny-cnn".into(),
            layers: vec![
                conv(4),
                bn(),
                LayerSpec::Relu,
                pool(),
                conv(8),
                bn(),
                LayerSpec::Relu,
                pool(),
                LayerSpec::Flatten,
                LayerSpec::Dense { units: classes, bias: true },
            ],
        }
    }
}
