//! `history.csv`: one row per epoch (epoch, train/val loss and accuracy, learning rate,
//! seconds, note), the data behind `curves.png` and the DNN-vs-CNN comparison. Floats are
//! written in their shortest round-trip form, so a resumed run reads back exactly the
//! values the schedule and early stopping saw.

pub use crate::render::EpochRecord;
use crate::{Error, Result};
use std::path::Path;

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
