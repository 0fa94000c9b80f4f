//! `history.csv`: one row per epoch (epoch, train/val loss and accuracy, learning rate,
//! seconds, note), the data behind `curves.png` and the DNN-vs-CNN comparison. Floats are
//! written in their shortest round-trip form, so a resumed run reads back exactly the
//! values the schedule and early stopping saw.

use crate::{Error, Result};
use serde::{Deserialize, Serialize};
use std::path::Path;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EpochRecord {
    /// 1-based, as Keras prints it.
    pub epoch: usize,
    pub train_loss: f64,
    pub train_acc: f64,
    pub val_loss: Option<f64>,
    pub val_acc: Option<f64>,
    pub lr: f64,
    /// Wall-clock seconds of the epoch's training steps and validation.
    pub seconds: f64,
    /// What changed before this epoch, e.g. `resumed: --epochs 4 -> 10` (empty when
    /// nothing did; files written before the column existed read as empty).
    #[serde(default)]
    pub note: String,
}

pub fn write(path: &Path, records: &[EpochRecord]) -> Result<()> {
    let mut w = csv::Writer::from_writer(Vec::new());
    for r in records {
        w.serialize(r).map_err(|e| Error::new(format!("{}: {e}", path.display())))?;
    }
    let bytes = w.into_inner().map_err(|e| Error::new(format!("{}: {e}", path.display())))?;
    super::checkpoint::write_atomic(path, &bytes)
}

pub fn read(path: &Path) -> Result<Vec<EpochRecord>> {
    let mut r = csv::Reader::from_path(path).map_err(|e| Error::new(format!("{}: {e}", path.display())))?;
    r.deserialize()
        .enumerate()
        .map(|(i, rec)| rec.map_err(|e| Error::new(format!("{}:{}: {e}", path.display(), i + 2))))
        .collect()
}
