//! Exact resume: a run killed at any point and continued with `--resume` ends with the
//! weights and history of the same run uninterrupted (bit for bit on the same adapter).
//!
//! What a step depends on, and where it comes from on resume:
//! - weights, BatchNorm statistics, optimizer moments and step count: `last.safetensors`;
//! - the schedule's position (epoch, the previous epoch's rate, validation losses for
//!   plateau), best-so-far and early-stopping counters: `history.csv`, truncated to the
//!   checkpoint's epoch (rows written after it belong to an epoch that is trained again) and
//!   checked against the state the checkpoint recorded (`mien.best_epoch`, `mien.lr`);
//! - data order, dropout and augmentation streams: functions of the seed, the epoch and
//!   the global step (`Session::epoch`);
//! - the kernel variants (their sums round differently): `kernels.json`, the autotuner's
//!   answers when the run started, pinned before the network is built (`pin_kernels`);
//! - the settings: `config.json`; a setting changed at resume time is recorded there and
//!   in the next history row's note (`TrainConfig::resume_changes`).
//!
//! Files are written history, then `last` (the commit point), then `best`: a kill between
//! `last` and `best` leaves `best` one improvement behind, and `restore` rewrites it from
//! `last`. A run killed before its first checkpoint starts again from its seed. A damaged
//! file, or one from another run or model, is an error naming the file and what is wrong.

use super::{best, best_checkpoint_epoch, checkpoint, history, EpochRecord, TrainConfig, TrainData, BEST, LAST};
use crate::nn::network::Network;
use crate::nn::optim::Optimizer;
use crate::nn::spec::ModelSpec;
use crate::{bail, ensure, Error, Result};
use std::path::Path;

/// The state of a run directory `restore` continues from.
pub struct Restored {
    /// The run's settings with the changes made at this resume (and recorded).
    pub cfg: TrainConfig,
    /// The completed epochs.
    pub history: Vec<EpochRecord>,
    /// The note for the next history row: what changed at this resume (empty: nothing).
    pub note: String,
}

/// The training state recorded in `last.safetensors` besides the epoch and optimizer
/// steps: which epoch `best.safetensors` holds and the rate the last epoch used.
pub fn state_metadata(history: &[EpochRecord], has_val: bool) -> Vec<(&'static str, String)> {
    vec![
        ("best_epoch", best_checkpoint_epoch(history, has_val).to_string()),
        ("lr", history.last().map_or(String::new(), |r| r.lr.to_string())),
    ]
}

/// The run's config.json.
pub fn read_config(dir: &Path) -> Result<TrainConfig> {
    let path = dir.join("config.json");
    let text = std::fs::read_to_string(&path).map_err(|e| Error::new(format!("{}: cannot resume: {e}", path.display())))?;
    serde_json::from_str(&text).map_err(|e| Error::new(format!("{}: not a mien run configuration ({e})", path.display())))
}

/// The file holding the kernel variants a run's networks were built with.
pub const KERNELS: &str = "kernels.json";

/// Record the autotuner's answers so far (the run's networks are built) in `dir`.
pub fn record_kernels(gpu: &crate::Gpu, dir: &Path) -> Result<()> {
    let text = serde_json::to_string_pretty(&gpu.autotune().answers()).expect("answers serialize");
    crate::io::write_atomic(&dir.join(KERNELS), text.as_bytes())
}

/// Pin the kernel variants the run in `dir` was started with (none recorded: nothing to
/// pin, the autotuner's cache decides).
pub fn pin_kernels(gpu: &crate::Gpu, dir: &Path) -> Result<()> {
    let path = dir.join(KERNELS);
    if !path.exists() {
        return Ok(());
    }
    let text = std::fs::read_to_string(&path).map_err(|e| Error::new(format!("{}: {e}", path.display())))?;
    let answers = serde_json::from_str(&text)
        .map_err(|e| Error::new(format!("{}: expected {{\"job key\": \"variant\"}} ({e}); delete it to let the autotuner choose", path.display())))?;
    gpu.autotune().pin(answers);
    Ok(())
}

/// The run's saved settings, after checking that `cfg` (what it is resumed with) changes
/// none of the settings that cannot change. Call before building anything.
pub fn check_settings(dir: &Path, cfg: &TrainConfig) -> Result<TrainConfig> {
    let saved = read_config(dir)?;
    saved.resume_changes(cfg, 0).map_err(|e| e.context(dir.join("config.json").display()))?;
    Ok(saved)
}

/// Load the state of the run in `dir` into `net` and `opt` (built from `cfg`, the run's
/// settings with any the user changed now; `saved` from `check_settings`), and record
/// those changes. See the module docs.
#[allow(clippy::too_many_arguments)]
pub fn restore(
    gpu: &crate::Gpu,
    net: &Network,
    opt: &mut Optimizer,
    spec: &ModelSpec,
    saved: TrainConfig,
    cfg: &TrainConfig,
    data: &TrainData,
    dir: &Path,
) -> Result<Restored> {
    let last = dir.join(LAST);
    let history_path = dir.join("history.csv");
    let history = if last.exists() {
        let (bytes, info) = checkpoint::read(&last)?;
        check_fits(&last, &info, spec, data)?;
        let history = completed_epochs(&history_path, &last, info.epoch)?;
        check_state(&last, &bytes, &history, &history_path, !data.val.is_empty())?;
        checkpoint::load(gpu, &last, net, Some(opt))?;
        repair_best(gpu, dir, net, data, &history)?;
        history
    } else {
        // Killed before the first checkpoint: nothing was trained that counts.
        let rows = if history_path.exists() { history::read(&history_path)?.len() } else { 0 };
        ensure!(
            rows == 0,
            "{}: the run's history has {rows} epochs but there is no {LAST} to continue from (deleted?)",
            dir.display()
        );
        net.init(gpu, saved.seed)?;
        Vec::new()
    };
    let changes = saved.resume_changes(cfg, history.len())?;
    let mut cfg = TrainConfig { changes: saved.changes.clone(), ..cfg.clone() };
    let note = if changes.is_empty() {
        String::new()
    } else {
        cfg.changes.extend(changes.iter().cloned());
        let text = serde_json::to_string_pretty(&cfg).expect("config serializes");
        crate::io::write_atomic(&dir.join("config.json"), text.as_bytes())?;
        format!("resumed: {}", changes.iter().map(|c| c.to_string()).collect::<Vec<_>>().join("; "))
    };
    Ok(Restored { cfg, history, note })
}

/// The checkpoint must hold the model, input shape and classes this run trains.
fn check_fits(path: &Path, info: &checkpoint::CheckpointInfo, spec: &ModelSpec, data: &TrainData) -> Result<()> {
    if info.model != *spec {
        bail!(
            "{}: holds model {:?} ({} layers), but the run trains {:?} ({} layers): the checkpoint is from another model",
            path.display(),
            info.model.name,
            info.model.layers.len(),
            spec.name,
            spec.layers.len()
        );
    }
    let chw = [1, data.train.h, data.train.w];
    ensure!(info.input_chw == chw, "{}: trained on inputs {:?}, but the run's data is {chw:?}", path.display(), info.input_chw);
    ensure!(
        info.class_names == data.class_names,
        "{}: trained on classes {:?}, but the run's data has {:?}",
        path.display(),
        info.class_names,
        data.class_names
    );
    Ok(())
}

/// The history rows of the `epoch` epochs the checkpoint holds (later rows are dropped).
fn completed_epochs(path: &Path, last: &Path, epoch: usize) -> Result<Vec<EpochRecord>> {
    ensure!(path.exists(), "{}: missing, but {} was written after epoch {epoch}", path.display(), last.display());
    let mut h = history::read(path)?;
    ensure!(
        h.len() >= epoch,
        "{}: has {} epochs, but {} was written after epoch {epoch} (the history is damaged or from another run)",
        path.display(),
        h.len(),
        last.display()
    );
    h.truncate(epoch);
    if let Some((i, r)) = h.iter().enumerate().find(|(i, r)| r.epoch != i + 1) {
        bail!("{}:{}: epoch {} where epoch {} was expected (damaged)", path.display(), i + 2, r.epoch, i + 1);
    }
    Ok(h)
}

/// What the history says must match the state the checkpoint recorded (older checkpoints
/// record none).
fn check_state(last: &Path, bytes: &[u8], history: &[EpochRecord], history_path: &Path, has_val: bool) -> Result<()> {
    if let Some(b) = checkpoint::metadata(bytes, "best_epoch") {
        let derived = best_checkpoint_epoch(history, has_val);
        ensure!(
            b == derived.to_string(),
            "{}: records best epoch {b}, but {} makes it epoch {derived} (one of them is damaged or from another run)",
            last.display(),
            history_path.display()
        );
    }
    if let (Some(lr), Some(r)) = (checkpoint::metadata(bytes, "lr"), history.last()) {
        ensure!(
            lr == r.lr.to_string(),
            "{}: records learning rate {lr} for epoch {}, but {} says {} (one of them is damaged or from another run)",
            last.display(),
            r.epoch,
            history_path.display(),
            r.lr
        );
    }
    Ok(())
}

/// `best.safetensors` must hold the best epoch. When that epoch is the checkpoint's own
/// (a kill came between writing `last` and `best`) it is rewritten from `net`, which holds
/// `last`'s weights; otherwise a mismatch is damage.
fn repair_best(gpu: &crate::Gpu, dir: &Path, net: &Network, data: &TrainData, history: &[EpochRecord]) -> Result<()> {
    let want = best_checkpoint_epoch(history, !data.val.is_empty());
    if want == 0 {
        return Ok(());
    }
    let path = dir.join(BEST);
    let have = if path.exists() { Some(checkpoint::read(&path)?.1.epoch) } else { None };
    if have == Some(want) {
        return Ok(());
    }
    ensure!(
        want == history.len(),
        "{}: {}, but the run's best epoch is {want} (validation accuracy {:.4}); its weights are lost",
        path.display(),
        have.map_or("missing".to_string(), |e| format!("holds epoch {e}")),
        best(history).1
    );
    log::info!("{}: rewriting epoch {want} from {LAST} (the run was stopped between the two)", path.display());
    checkpoint::save(gpu, &path, net, None, &data.class_names, want)
}
