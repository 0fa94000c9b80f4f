//! The training loop: epochs of shuffled batches, each step one submit (augmentation,
//! forward, loss, backward, optimizer, and a copy of the step's loss statistics into an
//! epoch buffer read once at the end of the epoch); validation; history, checkpoints,
//! curves and the confusion matrix in the run directory.

pub mod bn_stats;
pub mod config;
pub mod history;
pub mod resume;

use crate::data::Dataset;
use crate::gpu::{Dispatch, Gpu, Tensor};
use crate::nn::augment::Augment;
use crate::nn::checkpoint;
use crate::nn::network::{BuildOptions, Network};
use crate::nn::loss_scale::ScaleState;
use crate::nn::optim::Optimizer;
use crate::nn::spec::ModelSpec;
use crate::rng::Rng;
use crate::{ensure, Error, Result};
pub use config::{BnStats, LrScale, OptimizerChoice, Schedule, TrainConfig};
pub use history::EpochRecord;
use std::path::{Path, PathBuf};
use crate::platform::Instant;

/// Training and validation data with the class names.
pub struct TrainData {
    pub train: Dataset,
    pub val: Dataset,
    pub class_names: Vec<String>,
}

/// Why a run ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Stop {
    Finished,
    EarlyStopped { epoch: usize, best_epoch: usize },
}

#[derive(Debug)]
pub struct Outcome {
    pub dir: PathBuf,
    pub history: Vec<EpochRecord>,
    pub best_val_acc: f64,
    pub best_epoch: usize,
    pub stop: Stop,
    /// Validation confusion counts of the best model [true][predicted].
    pub confusion: Vec<Vec<u64>>,
}

/// Loss, accuracy and per-sample predictions over a dataset.
pub struct Evaluation {
    pub loss: f64,
    pub acc: f64,
    pub predictions: Vec<u32>,
    /// [n, classes] softmax probabilities.
    pub probabilities: Vec<f32>,
}

/// Files a run directory holds.
pub const LAST: &str = "last.safetensors";
pub const BEST: &str = "best.safetensors";

/// A per-step seed for dropout and augmentation from the run seed and global step.
fn step_seed(seed: u64, step: u64, salt: u64) -> u32 {
    Rng::new(seed ^ step.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ salt).next_u32()
}

/// Copy the images and labels of `idx` into host batch buffers.
fn gather(ds: &Dataset, idx: &[usize], images: &mut Vec<f32>, labels: &mut Vec<u32>) {
    images.clear();
    labels.clear();
    for &i in idx {
        images.extend_from_slice(ds.image(i));
        labels.push(ds.label(i).unwrap_or(0));
    }
}

/// Index of the largest value of each row of `probs` [n, k] (ties: lowest index).
pub fn argmax_rows(probs: &[f32], k: usize) -> Vec<u32> {
    probs
        .chunks(k)
        .map(|row| row.iter().enumerate().fold((0, f32::NEG_INFINITY), |b, (i, &p)| if p > b.1 { (i, p) } else { b }).0 as u32)
        .collect()
}

/// The network for the last, partial batch of a dataset of `n` items evaluated with `net`:
/// same parameters, the remainder's batch size.
pub fn tail_network(gpu: &Gpu, net: &Network, n: usize) -> Result<Option<Network>> {
    let rem = n % net.batch;
    Ok(if rem > 0 { Some(net.build_like(gpu, rem, BuildOptions::default())?) } else { None })
}

/// Inference over a whole dataset with `net` (its batch size) and `tail` (from
/// `tail_network`) for the remainder. Labels, when the data has them, give loss and
/// accuracy; every sample gets probabilities and a prediction.
pub fn evaluate(gpu: &Gpu, net: &Network, tail: Option<&Network>, data: &Dataset) -> Result<Evaluation> {
    ensure!(!data.is_empty(), "evaluation data is empty");
    let b = net.batch;
    ensure!(
        tail.map(|t| t.batch) == Some(data.len() % b).filter(|&r| r > 0),
        "evaluation of {} items with batch {b} needs a tail network of {} (tail_network)",
        data.len(),
        data.len() % b
    );
    let (mut images, mut labels) = (Vec::new(), Vec::new());
    let (mut loss_sum, mut correct) = (0.0f64, 0.0f64);
    let mut probabilities = Vec::with_capacity(data.len() * net.classes);
    for start in (0..data.len()).step_by(b) {
        let idx: Vec<usize> = (start..(start + b).min(data.len())).collect();
        let n = if idx.len() == b { net } else { tail.expect("checked above") };
        gather(data, &idx, &mut images, &mut labels);
        n.set_batch(gpu, &images, &labels)?;
        gpu.run(n.eval_dispatches())?;
        if data.labelled {
            let (l, c) = n.read_stats(gpu)?;
            loss_sum += l as f64 * idx.len() as f64;
            correct += c as f64;
        }
        probabilities.extend(gpu.read(n.probabilities())?);
    }
    let predictions = argmax_rows(&probabilities, net.classes);
    let n = data.len() as f64;
    Ok(Evaluation { loss: loss_sum / n, acc: correct / n, predictions, probabilities })
}

/// Confusion counts [true][predicted].
pub fn confusion(truth: &[u32], pred: &[u32], classes: usize) -> Vec<Vec<u64>> {
    let mut m = vec![vec![0u64; classes]; classes];
    for (&t, &p) in truth.iter().zip(pred) {
        m[t as usize][p as usize] += 1;
    }
    m
}

/// Everything one training run holds on the GPU.
struct Session<'g> {
    gpu: &'g Gpu,
    cfg: TrainConfig,
    /// The batch the steps use: `cfg.batch`, or the whole training set when it is smaller.
    batch: usize,
    net: Network,
    opt: Optimizer,
    /// Raw batch upload target and the augmentation writing the network's input.
    augment: Option<(Tensor, Augment, Dispatch)>,
    /// [steps_per_epoch, 2]: each step's (mean loss, correct) copied here.
    step_stats: Tensor,
    /// Validation's partial last batch.
    val_tail: Option<Network>,
    /// BatchNorm population statistics (`BnStats::Population` and a model with BN).
    population: Option<bn_stats::PopulationStats>,
    steps_per_epoch: usize,
}

impl<'g> Session<'g> {
    fn new(gpu: &'g Gpu, cfg: &TrainConfig, spec: &ModelSpec, data: &TrainData) -> Result<Self> {
        let chw = [1, data.train.h, data.train.w];
        let classes = data.class_names.len();
        ensure!(!data.train.is_empty(), "{}: the training set is empty", data_name(cfg));
        let batch = cfg.batch.min(data.train.len());
        if batch < cfg.batch {
            log::warn!(
                "the training set has {} images, fewer than one batch of {}: training with all of them as one batch",
                data.train.len(),
                cfg.batch
            );
        }
        let (precision, _) = cfg.precision.resolve(gpu);
        let net = Network::build(gpu, spec, chw, classes, batch, BuildOptions::default().with_precision(precision))?;
        let opt = net.optimizer(gpu, "optimizer", cfg.optimizer_config())?;
        let augment = if cfg.augment.is_identity() {
            None
        } else {
            let raw = gpu.tensor("raw batch", net.input().shape())?;
            let aug = Augment::new(gpu, "augment", cfg.augment, net.input().shape())?;
            let d = aug.forward(gpu, &raw, net.input())?;
            Some((raw, aug, d))
        };
        let steps_per_epoch = data.train.len() / batch;
        let step_stats = gpu.tensor("step stats", &[steps_per_epoch, 2])?;
        let val_tail = tail_network(gpu, &net, data.val.len())?;
        let population = match cfg.bn_stats {
            BnStats::Population { images } => bn_stats::PopulationStats::new(gpu, &net, data, images, cfg.seed)?,
            BnStats::Momentum => None,
        };
        Ok(Session { gpu, cfg: cfg.clone(), batch, net, opt, augment, step_stats, val_tail, population, steps_per_epoch })
    }

    /// Mixed precision: the loss-scale state now (None in f32).
    fn loss_scale(&self) -> Result<Option<ScaleState>> {
        self.net.loss_scale().map(|ls| ls.read(self.gpu)).transpose()
    }

    /// One epoch of training steps; returns (mean loss, accuracy) over its samples. The
    /// data order and the dropout and augmentation streams are functions of the seed, the
    /// epoch and the global step only, so a resumed run replays them exactly.
    fn epoch(&mut self, data: &Dataset, epoch: usize, lr: f64, bar: &crate::platform::Progress) -> Result<(f64, f64)> {
        let gpu = self.gpu;
        let b = self.batch;
        let mut order: Vec<usize> = (0..data.len()).collect();
        Rng::new(self.cfg.seed ^ (epoch as u64 + 1).wrapping_mul(0xA24B_AED4_963E_E407)).shuffle(&mut order);
        let (mut images, mut labels) = (Vec::new(), Vec::new());
        let mut previous: Option<wgpu::SubmissionIndex> = None;
        for step in 0..self.steps_per_epoch {
            let global = (epoch * self.steps_per_epoch + step) as u64;
            gather(data, &order[step * b..(step + 1) * b], &mut images, &mut labels);
            self.net.set_labels(gpu, &labels)?;
            match &self.augment {
                Some((raw, aug, _)) => {
                    gpu.write(raw, &images)?;
                    aug.set_seed(gpu, step_seed(self.cfg.seed, global, 1));
                }
                None => gpu.write(self.net.input(), &images)?,
            }
            self.net.set_dropout_seed(gpu, step_seed(self.cfg.seed, global, 2));
            let stats = self.net.stats().clone();
            let dst = &self.step_stats;
            let aug = self.augment.as_ref().map(|(_, _, d)| d);
            let update = self.opt.step(gpu, lr as f32);
            let idx = gpu.submit_with(aug.into_iter().chain(self.net.train_dispatches()).chain(std::iter::once(update)), |enc| {
                stats.copy_to(enc, dst, step * 2)
            });
            // At most two steps in flight: the host prepares the next batch while the GPU runs.
            if let Some(p) = previous.replace(idx) {
                gpu.wait(Some(p))?;
            }
            bar.inc(b as u64);
            if step % 20 == 19 || step + 1 == self.steps_per_epoch {
                let (loss, correct) = self.net.read_stats(gpu)?;
                bar.set_message(format!("loss {loss:.4} acc {:.3} lr {lr:.2e}", correct / b as f32));
            }
        }
        let s = gpu.read(&self.step_stats)?;
        let steps = self.steps_per_epoch as f64;
        if let Some(bad) = s.chunks(2).position(|v| !v[0].is_finite()) {
            return Err(Error::new(format!(
                "training stopped: the loss became {} at epoch {} step {}; try a smaller --lr (now {lr:e}). \
                 The last good checkpoint is kept.",
                s[bad * 2],
                epoch + 1,
                bad + 1
            )));
        }
        let loss = s.chunks(2).map(|v| v[0] as f64).sum::<f64>() / steps;
        let acc = s.chunks(2).map(|v| v[1] as f64).sum::<f64>() / (steps * b as f64);
        Ok((loss, acc))
    }
}

fn write_text(path: &Path, text: &str) -> Result<()> {
    checkpoint::write_atomic(path, text.as_bytes())
}

/// (epoch, validation accuracy) of the best epoch so far, (0, -1) before any. Ties go to
/// the earlier epoch.
fn best(history: &[EpochRecord]) -> (usize, f64) {
    history.iter().filter_map(|r| r.val_acc.map(|a| (r.epoch, a))).fold((0, -1.0), |b, x| if x.1 > b.1 { x } else { b })
}

/// The epoch `best.safetensors` holds after `history`: the best validation epoch, or the
/// last epoch when there is no validation data.
fn best_checkpoint_epoch(history: &[EpochRecord], has_val: bool) -> usize {
    if has_val {
        best(history).0
    } else {
        history.len()
    }
}

/// Early stopping after `history`: validation accuracy has not improved for `patience`
/// epochs since the best one.
fn early_stop(cfg: &TrainConfig, history: &[EpochRecord]) -> Option<Stop> {
    let patience = cfg.early_stopping?;
    let (best_epoch, _) = best(history);
    let epoch = history.len();
    (best_epoch > 0 && epoch >= best_epoch + patience).then_some(Stop::EarlyStopped { epoch, best_epoch })
}

/// Run (or, with `resume`, continue) training into `dir`. A resumed run continues the
/// run in `dir` exactly (`resume` module docs): `cfg` is the run's config.json with any
/// settings the user changed, which are recorded.
pub fn run(gpu: &Gpu, cfg: &TrainConfig, data: &TrainData, dir: &Path, resume: bool, progress: bool) -> Result<Outcome> {
    cfg.validate()?;
    // What `auto` (or mixed without f16) means here is what the run records and resumes with.
    let cfg = &TrainConfig { precision: cfg.precision.resolved(gpu), ..cfg.clone() };
    let classes = data.class_names.len();
    let saved = if resume { Some(resume::check_settings(dir, cfg)?) } else { None };
    let spec = ModelSpec::resolve(&cfg.model, classes)?;
    if resume {
        resume::pin_kernels(gpu, dir)?;
    }
    let mut s = Session::new(gpu, cfg, &spec, data)?;
    let (mut history, mut note) = if let Some(saved) = saved {
        let r = resume::restore(gpu, &s.net, &mut s.opt, &spec, saved, cfg, data, dir)?;
        if progress {
            eprintln!(
                "resuming {} after epoch {} of {}{}",
                dir.display(),
                r.history.len(),
                r.cfg.epochs,
                if r.note.is_empty() { String::new() } else { format!(" ({})", r.note) }
            );
        }
        s.cfg = r.cfg;
        (r.history, r.note)
    } else {
        s.net.init(gpu, cfg.seed)?;
        std::fs::create_dir_all(dir).map_err(|e| Error::new(format!("{}: {e}", dir.display())))?;
        write_text(&dir.join("config.json"), &serde_json::to_string_pretty(cfg).expect("config serializes"))?;
        write_text(&dir.join("model.json"), &serde_json::to_string_pretty(&spec).expect("spec serializes"))?;
        resume::record_kernels(gpu, dir)?;
        (Vec::new(), String::new())
    };
    let cfg = s.cfg.clone();
    let summary = format!("{}Precision: {}\n", s.net.summary(), s.net.precision.describe(gpu));
    if progress {
        eprintln!("{summary}");
        if let Some(p) = &s.population {
            eprintln!("BatchNorm statistics: recomputed over {} training images before each validation (--bn-stats {})", p.images(), cfg.bn_stats);
        }
    }
    write_text(&dir.join("summary.txt"), &summary)?;

    let base_lr = cfg.base_lr(s.batch);
    if progress && base_lr != cfg.lr {
        eprintln!(
            "learning rate: {base_lr:.3e} at batch {} (--lr {:e} at batch {}, --lr-scale {}; --lr-scale none keeps --lr at any batch)",
            s.batch,
            cfg.lr,
            config::LR_REFERENCE_BATCH,
            cfg.lr_scale
        );
    }
    let mut stop = early_stop(&cfg, &history).unwrap_or(Stop::Finished);
    let images_per_epoch = s.steps_per_epoch * s.batch;
    for epoch in history.len()..cfg.epochs {
        if stop != Stop::Finished {
            break;
        }
        let started = Instant::now();
        let val_losses: Vec<f64> = history.iter().filter_map(|r| r.val_loss).collect();
        let lr = cfg.schedule.lr(base_lr, epoch, cfg.epochs, history.last().map_or(base_lr, |r| r.lr), &val_losses);
        let bar = crate::platform::Progress::new(progress, images_per_epoch as u64, epoch + 1, cfg.epochs);
        let scale_before = s.loss_scale()?;
        let (train_loss, train_acc) = s.epoch(&data.train, epoch, lr, &bar)?;
        let scale_after = s.loss_scale()?;
        bar.finish_and_clear();
        // Before validation and the checkpoints: the statistics inference will use.
        if let Some(p) = &s.population {
            p.compute(gpu, &data.train)?;
        }
        let val = if data.val.is_empty() { None } else { Some(evaluate(gpu, &s.net, s.val_tail.as_ref(), &data.val)?) };
        let record = EpochRecord {
            epoch: epoch + 1,
            train_loss,
            train_acc,
            val_loss: val.as_ref().map(|v| v.loss),
            val_acc: val.as_ref().map(|v| v.acc),
            lr,
            seconds: started.elapsed().as_secs_f64(),
            note: std::mem::take(&mut note),
            skipped_steps: scale_after.zip(scale_before).map_or(0, |(a, b)| a.skipped - b.skipped),
            loss_scale: scale_after.map(|a| a.scale as f64),
        };
        if progress {
            eprintln!(
                "epoch {:>3}/{}: loss {:.4} acc {:.4}{} lr {:.2e}{} {:.1}s ({:.0} images/s)",
                record.epoch,
                cfg.epochs,
                train_loss,
                train_acc,
                val.as_ref().map_or(String::new(), |v| format!(" - val_loss {:.4} val_acc {:.4}", v.loss, v.acc)),
                lr,
                record.loss_scale.map_or(String::new(), |ls| format!(" loss scale {ls} ({} steps skipped)", record.skipped_steps)),
                record.seconds,
                images_per_epoch as f64 / record.seconds
            );
        }
        let improved = record.val_acc.is_some_and(|a| a > best(&history).1);
        history.push(record);
        // The history first, then `last` (the commit point: a resume truncates the history
        // to its epoch), then `best`, which a resume rewrites from `last` when a kill came
        // between the two (resume::restore).
        history::write(&dir.join("history.csv"), &history)?;
        let state = resume::state_metadata(&history, !data.val.is_empty());
        checkpoint::save_with(gpu, &dir.join(LAST), &s.net, Some(&s.opt), &data.class_names, epoch + 1, &state)?;
        if improved || data.val.is_empty() {
            checkpoint::save(gpu, &dir.join(BEST), &s.net, None, &data.class_names, epoch + 1)?;
        }
        crate::render::plot_curves(&history, &format!("{} on {}", spec.name, data_name(&cfg)), &dir.join("curves.png"))?;
        stop = early_stop(&cfg, &history).unwrap_or(Stop::Finished);
        if let (true, Stop::EarlyStopped { best_epoch, .. }) = (progress, &stop) {
            eprintln!(
                "early stopping: validation accuracy has not improved for {} epochs (best at epoch {best_epoch})",
                cfg.early_stopping.unwrap_or(0)
            );
        }
    }

    // The confusion matrix of the best model on the validation data.
    let (best_epoch, best_acc) = best(&history);
    let mut confusion_counts = vec![vec![0; classes]; classes];
    if !data.val.is_empty() && !history.is_empty() {
        checkpoint::load(gpu, &dir.join(BEST), &s.net, None)?;
        let ev = evaluate(gpu, &s.net, s.val_tail.as_ref(), &data.val)?;
        confusion_counts = confusion(&data.val.labels, &ev.predictions, classes);
        let title = format!("{} (epoch {best_epoch}), validation accuracy {:.4}", spec.name, ev.acc);
        crate::render::plot_confusion(&confusion_counts, &data.class_names, &title, &dir.join("confusion.png"))?;
        crate::render::write_confusion_csv(&confusion_counts, &data.class_names, &dir.join("confusion.csv"))?;
    }
    let mut text = summary;
    if let Some(last) = history.last() {
        text += &format!(
            "\nepochs: {}\nfinal train loss {:.4} acc {:.4}\nbest validation accuracy {:.4} at epoch {best_epoch}\nmean seconds per epoch {:.2}\nadapter: {}\n",
            history.len(),
            last.train_loss,
            last.train_acc,
            best_acc.max(0.0),
            history.iter().map(|r| r.seconds).sum::<f64>() / history.len() as f64,
            gpu.info().name
        );
    }
    write_text(&dir.join("summary.txt"), &text)?;
    Ok(Outcome { dir: dir.to_path_buf(), history, best_val_acc: best_acc.max(0.0), best_epoch, stop, confusion: confusion_counts })
}

fn data_name(cfg: &TrainConfig) -> String {
    cfg.data.as_ref().map_or("built-in synthetic faces".to_string(), |p| p.display().to_string())
}

/// The data a config names: its file or folder (validation from the file's PublicTest rows,
/// else a seeded `val_split`), or the built-in synthetic faces.
pub fn load_data(cfg: &TrainConfig) -> Result<TrainData> {
    let (train, val) = match &cfg.data {
        Some(path) => crate::data::load(path, (cfg.image_size, cfg.image_size))?.train_val(cfg.val_split, cfg.seed)?,
        None => {
            let n_val = (cfg.synthetic / 4).max(1);
            crate::data::synthetic_loaded(cfg.synthetic, n_val, cfg.seed, (cfg.image_size, cfg.image_size)).train_val(cfg.val_split, cfg.seed)?
        }
    };
    ensure!(train.labelled, "{}: has no labels to train on (a test file?)", data_name(cfg));
    let class_names = train.class_names.clone();
    Ok(TrainData { train, val, class_names })
}

/// `runs/latest` -> the newest run (a symlink; a text file holding the path where the
/// platform has no symlinks).
pub fn mark_latest(dir: &Path) -> Result<()> {
    let Some(parent) = dir.parent() else { return Ok(()) };
    let latest = parent.join("latest");
    let name = dir.file_name().map(PathBuf::from).unwrap_or_else(|| dir.to_path_buf());
    let _ = std::fs::remove_file(&latest);
    #[cfg(unix)]
    let r = std::os::unix::fs::symlink(&name, &latest);
    #[cfg(not(unix))]
    let r = std::fs::write(&latest, name.to_string_lossy().as_bytes());
    r.map_err(|e| Error::new(format!("{}: {e}", latest.display())))
}

/// A run directory name: `<model>-<UTC date>-<time>`.
pub fn run_name(model: &str) -> String {
    let secs = crate::platform::SystemTime::now().duration_since(crate::platform::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    let (days, rem) = ((secs / 86400) as i64, secs % 86400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    let stem = Path::new(model).file_stem().map_or(model.to_string(), |s| s.to_string_lossy().to_string());
    format!("{stem}-{y:04}{m:02}{d:02}-{:02}{:02}{:02}", rem / 3600, rem / 60 % 60, rem % 60)
}
