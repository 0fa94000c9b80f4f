//! Atomic file writes: the bytes go to a temp file in the destination's directory, which is
//! then renamed over the destination, so readers (and a run killed mid-write) see the old
//! file or the whole new one. Checkpoints, histories, PNGs and reports all go through it.

use crate::{Error, Result};
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// Distinguishes temp files of concurrent writes from one process.
static NEXT_TMP: AtomicU64 = AtomicU64::new(0);

/// Write `bytes` to `path` atomically, creating parent directories. Errors name the path.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let err = |what: &str, e: std::io::Error| Error::new(format!("{what} {}: {e}", path.display()));
    let name = path
        .file_name()
        .ok_or_else(|| Error::new(format!("writing {}: not a file path", path.display())))?;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    fs::create_dir_all(&dir).map_err(|e| err("creating the directory of", e))?;
    // Hidden temp name in the same directory (rename is atomic only within a filesystem),
    // unique per process and call.
    let n = NEXT_TMP.fetch_add(1, Ordering::Relaxed);
    let tmp = dir.join(format!(
        ".{}.{}-{n}.tmp",
        name.to_string_lossy(),
        std::process::id()
    ));
    let result = (|| {
        let mut f = fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        fs::rename(&tmp, path)
    })();
    if let Err(e) = result {
        let _ = fs::remove_file(&tmp);
        return Err(err("writing", e));
    }
    Ok(())
}
