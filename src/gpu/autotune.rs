//! Kernel variants chosen per adapter by a short timing at start-up, cached in a small
//! JSON file keyed by adapter and driver.
//!
//! A layer with several kernel variants for one job (e.g. a dense forward GEMM: blocked,
//! uniform-window, subgroup, tiled) calls
//! `gpu.autotune().choose(key, &candidates, default, |variant, best| time it)` once when it
//! is built. `key` names the job and its shape ("dense forward 64x4608->600"). The answer
//! comes from the cache when the cache holds one for (this adapter, backend, driver,
//! driver info, key) that is still a candidate and was chosen among all of today's
//! candidates (`Entry::stands`); else each candidate is timed (`measure`,
//! e.g. with `time_candidate`), the fastest is written to the cache (atomically) and
//! returned.
//!
//! Modes (env `MIEN_AUTOTUNE=on|off|refresh`, or `--autotune` on the binaries, which calls
//! `set_mode`): `On` (default) as above; `Off`: every layer uses its built-in default
//! variant, nothing is timed, the file is neither read nor written; `Refresh`: ignore the
//! cached answers, time again and overwrite them.
//!
//! Cache file: `$MIEN_CACHE_DIR/autotune.json`, else `$XDG_CACHE_HOME/mien/autotune.json`,
//! else `~/.cache/mien/autotune.json`. A file that does not parse gives a warning naming it
//! and is rebuilt; a file that cannot be written gives a warning (the choice still holds
//! for this process).

use super::timing::{process_cpu_ns, time_dispatches};
use super::{Dispatch, Gpu};
use crate::{Error, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use crate::platform::Instant;

/// Whether layers time their kernel variants (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mode {
    #[default]
    On,
    Off,
    Refresh,
}

impl std::str::FromStr for Mode {
    type Err = Error;
    fn from_str(s: &str) -> Result<Mode> {
        match s.trim().to_ascii_lowercase().as_str() {
            "on" | "1" | "true" => Ok(Mode::On),
            "off" | "0" | "false" => Ok(Mode::Off),
            "refresh" => Ok(Mode::Refresh),
            _ => Err(Error::new(format!("autotune mode {s:?}: expected on, off or refresh"))),
        }
    }
}

impl std::fmt::Display for Mode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Mode::On => "on",
            Mode::Off => "off",
            Mode::Refresh => "refresh",
        })
    }
}

/// One cached answer: the chosen variant, the milliseconds each candidate took and the
/// candidates that failed to run.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Entry {
    pub choice: String,
    #[serde(default)]
    pub ms: BTreeMap<String, f64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub failed: Vec<String>,
}

impl Entry {
    /// Whether this answer still stands among `candidates`: the choice is one of them and
    /// every one of them was timed or failed when it was made (a variant added since, e.g.
    /// by a newer mien, is timed against it). An entry without timings (written by hand)
    /// stands on its choice alone.
    pub fn stands(&self, candidates: &[&str]) -> bool {
        candidates.contains(&self.choice.as_str()) && (self.ms.is_empty() || candidates.iter().all(|c| self.ms.contains_key(*c) || self.failed.iter().any(|f| f == c)))
    }
}

/// The file's contents: device key -> job key -> entry.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct CacheFile {
    version: u32,
    devices: BTreeMap<String, BTreeMap<String, Entry>>,
}

const VERSION: u32 = 1;

struct State {
    mode: Mode,
    path: Option<PathBuf>,
    /// Answers of this process (and those read from the file), by job key.
    memo: BTreeMap<String, Entry>,
    /// Whether the file has been read into `memo`.
    loaded: bool,
    /// Keys timed by this process (Refresh times each key once per process).
    timed: std::collections::BTreeSet<String>,
    /// Answers fixed by `pin` (a resumed training run's kernels), used in every mode.
    pinned: BTreeMap<String, String>,
    /// Every answer `choose` gave in this process, by job key.
    given: BTreeMap<String, String>,
}

/// The autotuner of one device (`Gpu::autotune`).
pub struct Autotune {
    device: String,
    state: Mutex<State>,
}

/// The default cache file: `$MIEN_CACHE_DIR`, else `$XDG_CACHE_HOME/mien`, else
/// `~/.cache/mien`, then `autotune.json`; None when none of these is set.
pub fn default_path() -> Option<PathBuf> {
    let nonempty = |k: &str| std::env::var_os(k).filter(|v| !v.is_empty()).map(PathBuf::from);
    let dir = nonempty("MIEN_CACHE_DIR")
        .or_else(|| nonempty("XDG_CACHE_HOME").map(|d| d.join("mien")))
        .or_else(|| nonempty("HOME").map(|d| d.join(".cache").join("mien")))?;
    Some(dir.join("autotune.json"))
}

/// The cache key of an adapter: name, backend, driver and driver info.
pub fn device_key(info: &wgpu::AdapterInfo) -> String {
    format!("{} | {:?} | {} | {}", info.name, info.backend, info.driver, info.driver_info)
}

impl Autotune {
    /// An autotuner for the device `device` (see `device_key`) with an explicit mode and
    /// cache file (None: keep answers in memory only).
    pub fn new(device: &str, mode: Mode, path: Option<PathBuf>) -> Autotune {
        Autotune { device: device.to_string(), state: Mutex::new(State { mode, path, memo: BTreeMap::new(), loaded: false, timed: Default::default(), pinned: Default::default(), given: Default::default() }) }
    }

    /// Mode from `MIEN_AUTOTUNE` (unset: on), cache file from `default_path`.
    pub fn from_env(info: &wgpu::AdapterInfo) -> Result<Autotune> {
        let mode = match std::env::var("MIEN_AUTOTUNE") {
            Ok(s) if !s.trim().is_empty() => s.parse().map_err(|e: Error| Error::new(format!("MIEN_AUTOTUNE: {e}")))?,
            _ => Mode::On,
        };
        Ok(Autotune::new(&device_key(info), mode, default_path()))
    }

    pub fn mode(&self) -> Mode {
        self.state.lock().unwrap().mode
    }

    /// Change the mode (the binaries' `--autotune`). Answers already given stay.
    pub fn set_mode(&self, mode: Mode) {
        self.state.lock().unwrap().mode = mode;
    }

    pub fn path(&self) -> Option<PathBuf> {
        self.state.lock().unwrap().path.clone()
    }

    /// Use another cache file (None: memory only); forgets what was read from the old one.
    pub fn set_path(&self, path: Option<PathBuf>) {
        let mut s = self.state.lock().unwrap();
        s.path = path;
        s.memo.clear();
        s.loaded = false;
    }

    pub fn device(&self) -> &str {
        &self.device
    }

    /// The answer held for `key` (from the file or this process), if any.
    pub fn cached(&self, key: &str) -> Option<Entry> {
        let mut s = self.state.lock().unwrap();
        self.load(&mut s);
        s.memo.get(key).cloned()
    }

    fn load(&self, s: &mut State) {
        if s.loaded {
            return;
        }
        s.loaded = true;
        if let Some(path) = s.path.clone() {
            if let Some(mut entries) = read_file(&path).devices.remove(&self.device) {
                // Answers of this process win over the file's.
                entries.append(&mut s.memo);
                s.memo = entries;
            }
        }
    }

    /// The variant to use for `key`, one of `candidates` (which must hold `default`).
    /// Off: `default`. On: the cached answer if it is a candidate, else time each candidate
    /// with `measure(variant, best_so_far_seconds)` (seconds per run; an error skips the
    /// candidate with a warning), cache and return the fastest. Refresh: time even when
    /// cached (once per key and process). A single candidate is returned untimed. In every
    /// mode, a key fixed by `pin` gets its pinned answer.
    pub fn choose<F>(&self, key: &str, candidates: &[&str], default: &str, measure: F) -> String
    where
        F: FnMut(&str, f64) -> Result<f64>,
    {
        let pinned = self.state.lock().unwrap().pinned.get(key).filter(|p| candidates.contains(&p.as_str())).cloned();
        let choice = pinned.unwrap_or_else(|| self.choose_unpinned(key, candidates, default, measure));
        self.state.lock().unwrap().given.insert(key.to_string(), choice.clone());
        choice
    }

    /// Every answer `choose` gave in this process (job key -> variant): what a training run
    /// records so that its resumed continuation runs the same kernels.
    pub fn answers(&self) -> BTreeMap<String, String> {
        self.state.lock().unwrap().given.clone()
    }

    /// Fix the answers for these keys, whatever the mode and the cache say (a variant that
    /// is not a candidate of the job is ignored).
    pub fn pin(&self, answers: BTreeMap<String, String>) {
        self.state.lock().unwrap().pinned.extend(answers);
    }

    fn choose_unpinned<F>(&self, key: &str, candidates: &[&str], default: &str, mut measure: F) -> String
    where
        F: FnMut(&str, f64) -> Result<f64>,
    {
        debug_assert!(candidates.contains(&default), "{key}: default {default} is not a candidate");
        let mode = self.mode();
        if mode == Mode::Off || candidates.len() <= 1 {
            return default.to_string();
        }
        let timed_here = self.state.lock().unwrap().timed.contains(key);
        if mode == Mode::On || timed_here {
            if let Some(e) = self.cached(key) {
                if e.stands(candidates) {
                    log::info!("autotune {key}: {} (cached)", e.choice);
                    return e.choice;
                }
            }
        }
        let t0 = Instant::now();
        let mut best: Option<(String, f64)> = None;
        let mut ms = BTreeMap::new();
        let mut failed = Vec::new();
        for &c in candidates {
            let bound = best.as_ref().map_or(f64::INFINITY, |b| b.1);
            match measure(c, bound) {
                Ok(s) => {
                    ms.insert(c.to_string(), (s * 1e6).round() / 1e3);
                    if s < bound {
                        best = Some((c.to_string(), s));
                    }
                }
                Err(e) => {
                    log::warn!("autotune {key}: variant {c} failed, skipped: {e}");
                    failed.push(c.to_string());
                }
            }
        }
        let Some((choice, _)) = best else {
            log::warn!("autotune {key}: no variant could be timed; using {default}");
            return default.to_string();
        };
        log::info!("autotune {key}: {choice} (timed in {:.2} s: {ms:?} ms)", t0.elapsed().as_secs_f64());
        self.store(key, Entry { choice: choice.clone(), ms, failed });
        choice
    }

    /// Record an answer and write the cache file (merged with what is on disk now, so
    /// processes sharing the file lose little).
    fn store(&self, key: &str, entry: Entry) {
        let mut s = self.state.lock().unwrap();
        self.load(&mut s);
        s.memo.insert(key.to_string(), entry.clone());
        s.timed.insert(key.to_string());
        let Some(path) = s.path.clone() else { return };
        let mut file = read_file(&path);
        file.version = VERSION;
        file.devices.entry(self.device.clone()).or_default().insert(key.to_string(), entry);
        let text = match serde_json::to_string_pretty(&file) {
            Ok(t) => t,
            Err(e) => return log::warn!("autotune cache {}: {e}", path.display()),
        };
        if let Err(e) = crate::io::write_atomic(&path, text.as_bytes()) {
            log::warn!("autotune cache: {e} (the choice holds for this run only)");
        }
    }
}

/// The cache file's contents; empty when missing, and empty with a warning naming the file
/// when it does not parse (it is then rewritten on the next store).
fn read_file(path: &Path) -> CacheFile {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return CacheFile::default(),
        Err(e) => {
            log::warn!("autotune cache {}: cannot read it ({e}); tuning again", path.display());
            return CacheFile::default();
        }
    };
    match serde_json::from_str::<CacheFile>(&text) {
        Ok(f) if f.version == VERSION => f,
        Ok(f) => {
            log::warn!("autotune cache {}: version {} (expected {VERSION}); rebuilding it", path.display(), f.version);
            CacheFile::default()
        }
        Err(e) => {
            log::warn!("autotune cache {}: corrupt ({e}); rebuilding it", path.display());
            CacheFile::default()
        }
    }
}

/// Seconds per run of `dispatches` for `Autotune::choose`. On a CPU adapter (lavapipe:
/// the kernels run on this process's threads) the cost is the process CPU time per run,
/// which other processes competing for the cores do not inflate; elsewhere wall-clock
/// time. One untimed warm-up run (it compiles), one timed run: when it took over 3x `best`
/// (the fastest candidate so far) that is the answer (clearly slower, not worth more
/// runs); else the fastest of 3 more runs (wall clock: of 3 short repetitions,
/// `timing::time_dispatches`). The fastest, not the median: other work only ever adds
/// time.
pub fn time_candidate(gpu: &Gpu, dispatches: &[&Dispatch], best: f64) -> Result<f64> {
    let cpu = gpu.info().device_type == wgpu::DeviceType::Cpu && process_cpu_ns().is_some();
    let run = || -> Result<f64> {
        let (t0, c0) = (Instant::now(), process_cpu_ns());
        gpu.run(dispatches.iter().copied())?;
        Ok(match (cpu, c0, process_cpu_ns()) {
            (true, Some(a), Some(b)) => b.saturating_sub(a) as f64 * 1e-9,
            _ => t0.elapsed().as_secs_f64(),
        })
    };
    // Untimed: the first run of a pipeline includes the driver's shader compile (lavapipe:
    // tens of ms), which would wrongly cut a fast candidate.
    gpu.run(dispatches.iter().copied())?;
    let first = run()?;
    if first > 3.0 * best {
        return Ok(first);
    }
    if cpu {
        let mut m = first;
        for _ in 0..3 {
            m = m.min(run()?);
        }
        return Ok(m);
    }
    Ok(time_dispatches(gpu, dispatches, 3, 0.01)?.min)
}
