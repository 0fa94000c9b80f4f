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

/// Fault injection for the kill-and-resume tests: with `MIEN_FAULT_KILL_WRITE=NAME:K` the
/// process dies halfway through its K-th (1-based) atomic write of a file named NAME.
fn fault_point(name: &str) -> bool {
    static COUNTS: std::sync::Mutex<Vec<(String, u64)>> = std::sync::Mutex::new(Vec::new());
    let Ok(spec) = std::env::var("MIEN_FAULT_KILL_WRITE") else { return false };
    let Some((file, k)) = spec.rsplit_once(':') else { return false };
    if file != name {
        return false;
    }
    let mut counts = COUNTS.lock().unwrap();
    let n = match counts.iter_mut().find(|(f, _)| f == name) {
        Some((_, n)) => {
            *n += 1;
            *n
        }
        None => {
            counts.push((name.to_string(), 1));
            1
        }
    };
    k.parse() == Ok(n)
}

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
        if fault_point(&name.to_string_lossy()) {
            // Half the bytes on disk, then die as a SIGKILL would: no unwinding, no cleanup.
            f.write_all(&bytes[..bytes.len() / 2])?;
            f.sync_all()?;
            std::process::abort();
        }
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
