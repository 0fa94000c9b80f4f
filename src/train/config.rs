//! What a training run was asked to do: saved as `config.json` in the run directory, so
//! `--resume` continues with the same settings. A setting changed at resume time is
//! recorded in `changes` (and in the history's note column); settings that define the data
//! or the model cannot change (`TrainConfig::resume_changes`).

use crate::nn::augment::AugmentConfig;
use crate::nn::optim::{OptimizerConfig, OptimizerKind};
use crate::nn::precision::PrecisionChoice;
use crate::{bail, ensure, Error, Result};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// Learning-rate schedule, applied per epoch.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Schedule {
    Constant,
    /// lr * gamma^(epoch / every).
    Step { every: usize, gamma: f64 },
    /// Cosine from lr down to `min_lr` over the run's epochs.
    Cosine { min_lr: f64 },
    /// Multiply by `factor` when validation loss has not improved for `patience` epochs
    /// (Keras ReduceLROnPlateau), never below `min_lr`.
    Plateau { patience: usize, factor: f64, min_lr: f64 },
}

impl std::str::FromStr for Schedule {
    type Err = Error;
    /// `constant`, `step:EVERY:GAMMA`, `cosine[:MIN_LR]`, `plateau[:PATIENCE[:FACTOR]]`.
    fn from_str(s: &str) -> Result<Schedule> {
        let parts: Vec<&str> = s.split(':').collect();
        let num = |i: usize, default: f64| -> Result<f64> {
            parts.get(i).map_or(Ok(default), |p| p.parse().map_err(|_| Error::new(format!("--schedule {s}: {p:?} is not a number"))))
        };
        Ok(match parts[0] {
            "constant" | "none" => Schedule::Constant,
            "step" => {
                let every = num(1, 10.0)?;
                ensure!(every >= 1.0, "--schedule {s}: the step interval must be at least 1 epoch");
                Schedule::Step { every: every as usize, gamma: num(2, 0.5)? }
            }
            "cosine" => Schedule::Cosine { min_lr: num(1, 0.0)? },
            "plateau" => Schedule::Plateau { patience: num(1, 3.0)? as usize, factor: num(2, 0.5)?, min_lr: num(3, 1e-6)? },
            other => bail!("--schedule {s}: unknown schedule {other:?}; expected constant, step:EVERY:GAMMA, cosine[:MIN_LR] or plateau[:PATIENCE[:FACTOR]]"),
        })
    }
}

impl std::fmt::Display for Schedule {
    /// The `--schedule` syntax (`FromStr` reads it back).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match *self {
            Schedule::Constant => write!(f, "constant"),
            Schedule::Step { every, gamma } => write!(f, "step:{every}:{gamma}"),
            Schedule::Cosine { min_lr } => write!(f, "cosine:{min_lr}"),
            Schedule::Plateau { patience, factor, min_lr } => write!(f, "plateau:{patience}:{factor}:{min_lr}"),
        }
    }
}

impl Schedule {
    /// The learning rate for `epoch` (0-based) of `epochs`. `val_losses` are the validation
    /// losses of the epochs before it and `previous` the rate the last epoch used (Plateau
    /// derives its state from them, so a resumed run continues the same schedule).
    pub fn lr(&self, base: f64, epoch: usize, epochs: usize, previous: f64, val_losses: &[f64]) -> f64 {
        match *self {
            Schedule::Constant => base,
            Schedule::Step { every, gamma } => base * gamma.powi((epoch / every.max(1)) as i32),
            Schedule::Cosine { min_lr } => {
                let t = epoch as f64 / (epochs.max(2) - 1) as f64;
                min_lr + 0.5 * (base - min_lr) * (1.0 + (std::f64::consts::PI * t).cos())
            }
            Schedule::Plateau { patience, factor, min_lr } => {
                if epoch == 0 || val_losses.is_empty() {
                    return base;
                }
                // Epochs since the best validation loss so far (Keras ReduceLROnPlateau),
                // restarting the count after each reduction (the epoch where the rate changed).
                let best = val_losses.iter().enumerate().fold((0, f64::INFINITY), |b, (i, &l)| if l < b.1 { (i, l) } else { b });
                let since_best = val_losses.len() - 1 - best.0;
                if since_best >= patience.max(1) && since_best.is_multiple_of(patience.max(1)) {
                    (previous * factor).max(min_lr)
                } else {
                    previous
                }
            }
        }
    }
}

/// Where BatchNorm's inference statistics come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum BnStats {
    /// Recomputed exactly before each validation and checkpoint: the mean and variance of
    /// every BN layer's input in inference mode over `images` training images (a fixed
    /// seeded sample; None: all of them). See `train::bn_stats`.
    Population { images: Option<usize> },
    /// Keras: running averages updated by every training step with the layer's momentum.
    Momentum,
}

impl BnStats {
    /// The default: population statistics over 1024 training images.
    pub const DEFAULT: BnStats = BnStats::Population { images: Some(1024) };

    /// What a config.json written before this setting existed meant.
    fn legacy() -> BnStats {
        BnStats::Momentum
    }
}

impl std::str::FromStr for BnStats {
    type Err = Error;
    /// `population` (1024 images), `population:N`, `population:all`, `momentum` (or `keras`).
    fn from_str(s: &str) -> Result<BnStats> {
        Ok(match s.split_once(':').unwrap_or((s, "")) {
            ("population", "") => BnStats::DEFAULT,
            ("population", "all") => BnStats::Population { images: None },
            ("population", n) => match n.parse::<usize>() {
                Ok(n) if n >= 1 => BnStats::Population { images: Some(n) },
                _ => bail!("--bn-stats {s}: {n:?} is not a positive number of images (or all)"),
            },
            ("momentum" | "keras", "") => BnStats::Momentum,
            _ => bail!("--bn-stats {s}: expected population, population:N, population:all or momentum"),
        })
    }
}

impl std::fmt::Display for BnStats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BnStats::Population { images: Some(n) } => write!(f, "population:{n}"),
            BnStats::Population { images: None } => write!(f, "population:all"),
            BnStats::Momentum => write!(f, "momentum"),
        }
    }
}

/// How `--lr` follows the batch size: `--lr` is the rate at batch `LR_REFERENCE_BATCH`
/// and the run uses `lr * factor(batch / 64)`. A bigger batch takes fewer steps an epoch;
/// without a larger rate it trains less in the same epochs (measured in the README: batch
/// 256 at 2e-3 ends 2.8 points below batch 64).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LrScale {
    /// `--lr` as given, at any batch (Keras).
    None,
    /// `lr * sqrt(batch / 64)`: the square-root rule for adaptive optimizers (Adam's update
    /// noise scales with 1/sqrt(batch); Malladi et al. 2022, "On the SDEs and Scaling Rules
    /// for Adaptive Gradient Algorithms").
    Sqrt,
    /// `lr * batch / 64`: the linear rule for SGD (Goyal et al. 2017).
    Linear,
}

/// The batch size at which `--lr` is taken as given whatever `--lr-scale` says.
pub const LR_REFERENCE_BATCH: usize = 64;

impl LrScale {
    /// What a config.json written before this setting existed meant.
    fn legacy() -> LrScale {
        LrScale::None
    }

    /// The factor at `batch`.
    pub fn factor(self, batch: usize) -> f64 {
        let r = batch as f64 / LR_REFERENCE_BATCH as f64;
        match self {
            LrScale::None => 1.0,
            LrScale::Sqrt => r.sqrt(),
            LrScale::Linear => r,
        }
    }
}

impl std::fmt::Display for LrScale {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            LrScale::None => "none",
            LrScale::Sqrt => "sqrt",
            LrScale::Linear => "linear",
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum OptimizerChoice {
    Adam,
    Sgd,
}

/// Everything a run needs besides the data itself.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainConfig {
    /// Preset name or path of a model file (TOML / JSON).
    pub model: String,
    pub epochs: usize,
    pub batch: usize,
    /// The learning rate at batch 64 (`lr_scale` gives the rate at `batch`).
    pub lr: f64,
    /// How the rate follows the batch size (config files from before this setting: none).
    #[serde(default = "LrScale::legacy")]
    pub lr_scale: LrScale,
    pub optimizer: OptimizerChoice,
    /// SGD momentum (0 = plain SGD).
    pub momentum: f32,
    pub nesterov: bool,
    pub weight_decay: f32,
    /// AdamW-style decay instead of L2 added to the gradient.
    pub decoupled_weight_decay: bool,
    pub schedule: Schedule,
    /// Stop when validation accuracy has not improved for this many epochs.
    pub early_stopping: Option<usize>,
    pub seed: u64,
    pub augment: AugmentConfig,
    /// Validation fraction when the data has no validation part.
    pub val_split: f64,
    /// FER2013 CSV or image folder; None = the built-in synthetic faces.
    pub data: Option<PathBuf>,
    /// Size of the built-in dataset (training images; validation is a quarter of it).
    pub synthetic: usize,
    /// Input size images are resized to (folders); CSVs keep their own size.
    pub image_size: usize,
    /// BatchNorm inference statistics (config files from before this setting: momentum).
    #[serde(default = "BnStats::legacy")]
    pub bn_stats: BnStats,
    /// f32 or mixed-precision GEMMs (nn::precision). A run records what `auto` meant on its
    /// adapter, so it resumes with the same numerics (config files from before this
    /// setting: f32).
    #[serde(default = "PrecisionChoice::legacy")]
    pub precision: PrecisionChoice,
    /// Settings changed when the run was resumed, oldest first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub changes: Vec<ConfigChange>,
}

/// One setting changed when a run was resumed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConfigChange {
    /// Epochs completed when the change took effect.
    pub after_epoch: usize,
    /// The command-line flag (`--epochs`).
    pub flag: String,
    /// The old and new values as the flag takes them (`4`, `cosine:0`), or as compact JSON
    /// where it has no short form (`--augment`).
    pub from: String,
    pub to: String,
}

impl std::fmt::Display for ConfigChange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {} -> {}", self.flag, self.from, self.to)
    }
}

/// A setting's value as its flag takes it, else compact JSON.
fn show(key: &str, v: &serde_json::Value) -> String {
    match (key, v) {
        ("schedule", _) => serde_json::from_value::<Schedule>(v.clone()).map_or_else(|_| v.to_string(), |s| s.to_string()),
        ("lr_scale", serde_json::Value::String(s)) => s.clone(),
        ("bn_stats", _) => serde_json::from_value::<BnStats>(v.clone()).map_or_else(|_| v.to_string(), |s| s.to_string()),
        (_, serde_json::Value::String(s)) => s.clone(),
        (_, serde_json::Value::Null) => "none".to_string(),
        _ => v.to_string(),
    }
}

/// Settings that define the data, the model or the optimizer's state: a resumed run with
/// another value would be a different run, not this one continued.
const FIXED_ON_RESUME: [&str; 8] = ["model", "data", "synthetic", "image_size", "val_split", "seed", "optimizer", "precision"];

impl Default for TrainConfig {
    /// The `train` binary's defaults: `small` on 8000 built-in faces, 10 epochs, Adam 2e-3
    /// (at batch 64, square-root scaled at other batch sizes) with a cosine schedule, batch 64, no augmentation, BatchNorm population statistics.
    fn default() -> Self {
        TrainConfig {
            model: "small".into(),
            epochs: 10,
            batch: 64,
            lr: 2e-3,
            lr_scale: LrScale::Sqrt,
            optimizer: OptimizerChoice::Adam,
            momentum: 0.9,
            nesterov: false,
            weight_decay: 0.0,
            decoupled_weight_decay: false,
            schedule: Schedule::Cosine { min_lr: 0.0 },
            early_stopping: None,
            seed: 1,
            augment: AugmentConfig::none(),
            val_split: 0.1,
            data: None,
            synthetic: 8000,
            image_size: 48,
            bn_stats: BnStats::DEFAULT,
            precision: PrecisionChoice::Auto,
            changes: Vec::new(),
        }
    }
}

impl TrainConfig {
    /// The schedule's starting rate for steps of `batch` images (the batch the steps use:
    /// `batch`, or the whole training set when it is smaller).
    pub fn base_lr(&self, batch: usize) -> f64 {
        self.lr * self.lr_scale.factor(batch)
    }

    pub fn optimizer_config(&self) -> OptimizerConfig {
        let kind = match self.optimizer {
            OptimizerChoice::Adam => OptimizerKind::Adam { beta1: 0.9, beta2: 0.999, eps: 1e-7 },
            OptimizerChoice::Sgd => OptimizerKind::Sgd { momentum: self.momentum, nesterov: self.nesterov },
        };
        OptimizerConfig { kind, weight_decay: self.weight_decay, decoupled_weight_decay: self.decoupled_weight_decay }
    }

    /// The settings `new` changes relative to `self` (the run's saved config), to take
    /// effect after `after_epoch` epochs. Refuses changes of the settings that define the
    /// data, the model or the optimizer (`FIXED_ON_RESUME`), naming the flag. `changes`
    /// itself is not compared.
    pub fn resume_changes(&self, new: &TrainConfig, after_epoch: usize) -> Result<Vec<ConfigChange>> {
        let as_map = |c: &TrainConfig| match serde_json::to_value(TrainConfig { changes: Vec::new(), ..c.clone() }) {
            Ok(serde_json::Value::Object(m)) => m,
            other => panic!("a TrainConfig serializes to an object, got {other:?}"),
        };
        let (old, new) = (as_map(self), as_map(new));
        let mut out = Vec::new();
        for (key, was) in &old {
            let now = new.get(key).expect("same struct");
            if was == now {
                continue;
            }
            let change = ConfigChange { after_epoch, flag: format!("--{}", key.replace('_', "-")), from: show(key, was), to: show(key, now) };
            ensure!(
                !FIXED_ON_RESUME.contains(&key.as_str()),
                "the run was started with {} {}; resuming it with {} {} would train a different run \
                 (start a new one with --out, or leave {} out)",
                change.flag,
                change.from,
                change.flag,
                change.to,
                change.flag
            );
            out.push(change);
        }
        Ok(out)
    }

    /// Checks a user can fail: numbers out of range.
    pub fn validate(&self) -> Result<()> {
        ensure!(self.epochs >= 1, "--epochs must be at least 1");
        ensure!(self.batch >= 1, "--batch must be at least 1");
        ensure!(self.lr > 0.0 && self.lr.is_finite(), "--lr {} must be a positive number", self.lr);
        ensure!((0.0..1.0).contains(&self.val_split), "--val-split {} must be in [0, 1)", self.val_split);
        ensure!(self.weight_decay >= 0.0, "--weight-decay {} must not be negative", self.weight_decay);
        ensure!(self.image_size >= 4, "--image-size {} is too small", self.image_size);
        Ok(())
    }
}

impl std::str::FromStr for AugmentConfig {
    type Err = Error;
    /// `none`, `reports`, or `key=value` pairs: rotation (degrees), shift (both axes),
    /// width_shift, height_shift, zoom, flip (true/false), fill (nearest/constant).
    fn from_str(s: &str) -> Result<AugmentConfig> {
        match s {
            "none" | "off" => return Ok(AugmentConfig::none()),
            "reports" | "keras" => return Ok(AugmentConfig::reports()),
            _ => {}
        }
        let mut cfg = AugmentConfig::none();
        for item in s.split(',').map(str::trim).filter(|i| !i.is_empty()) {
            let (key, value) = item.split_once('=').ok_or_else(|| Error::new(format!("--augment {s}: {item:?} is not key=value")))?;
            let num = || value.parse::<f32>().map_err(|_| Error::new(format!("--augment {s}: {key}={value:?} is not a number")));
            match key {
                "rotation" => cfg.rotation_deg = num()?,
                "shift" => {
                    cfg.width_shift = num()?;
                    cfg.height_shift = cfg.width_shift;
                }
                "width_shift" => cfg.width_shift = num()?,
                "height_shift" => cfg.height_shift = num()?,
                "zoom" => cfg.zoom = num()?,
                "flip" => cfg.horizontal_flip = value.parse().map_err(|_| Error::new(format!("--augment {s}: flip={value:?} is not true/false")))?,
                "fill" => {
                    cfg.fill = match value {
                        "nearest" => crate::nn::augment::Fill::Nearest,
                        "constant" => crate::nn::augment::Fill::Constant,
                        _ => bail!("--augment {s}: fill={value:?}; expected nearest or constant"),
                    }
                }
                _ => bail!("--augment {s}: unknown key {key:?}; expected rotation, shift, width_shift, height_shift, zoom, flip, fill"),
            }
        }
        Ok(cfg)
    }
}
