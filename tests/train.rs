//! Training end to end on the GPU: checkpoints (round trip, mismatch), exact resume after
//! SIGKILL at random points and mid-write (the `train` binary as a child process), resume
//! with changed flags, damaged run directories, NaN stop, data smaller than a batch, start-up
//! without driver noise, and a run on the built-in data reaching high validation accuracy.

#[path = "kernels/common.rs"]
mod common;

use mien::data::Dataset;
use mien::nn::checkpoint;
use mien::nn::network::{BuildOptions, Network};
use mien::nn::precision::{Precision, PrecisionChoice};
use mien::nn::spec::ModelSpec;
use mien::train::{self, LrScale, Schedule, TrainConfig, TrainData};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Small faces keep these tests inside the CI budget on a CPU Vulkan driver.
const SIDE: usize = 24;

fn config(model: &str, epochs: usize) -> TrainConfig {
    TrainConfig { model: model.into(), epochs, batch: 32, lr: 3e-3, lr_scale: LrScale::None, schedule: Schedule::Constant, seed: 7, val_split: 0.2, synthetic: 256, image_size: SIDE, ..Default::default() }
}

fn tmpdir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("mien-test-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

fn tiny_data(n: usize) -> TrainData {
    let cfg = TrainConfig { synthetic: n, ..config("tiny-cnn", 1) };
    train::load_data(&cfg).unwrap()
}

fn logits(gpu: &mien::Gpu, net: &Network, data: &Dataset) -> Vec<f32> {
    let images: Vec<f32> = (0..net.batch).flat_map(|i| data.image(i).to_vec()).collect();
    net.set_batch(gpu, &images, &vec![0; net.batch]).unwrap();
    gpu.run(net.infer_dispatches()).unwrap();
    gpu.read(net.logits()).unwrap()
}

#[test]
fn checkpoint_round_trip_gives_identical_logits() {
    let gpu = gpu!();
    let data = tiny_data(64);
    let spec = ModelSpec::preset("tiny-cnn", 7).unwrap();
    let a = Network::build(gpu, &spec, [1, SIDE, SIDE], 7, 4, BuildOptions::default()).unwrap();
    a.init(gpu, 3).unwrap();
    // Make BN running statistics non-trivial: one training forward.
    let images: Vec<f32> = (0..4).flat_map(|i| data.train.image(i).to_vec()).collect();
    a.set_batch(gpu, &images, &[0, 1, 2, 3]).unwrap();
    gpu.run(a.train_dispatches()).unwrap();
    let dir = tmpdir("roundtrip");
    let file = dir.join("x.safetensors");
    checkpoint::save(gpu, &file, &a, None, &data.class_names, 1).unwrap();
    let b = Network::build(gpu, &spec, [1, SIDE, SIDE], 7, 4, BuildOptions::default()).unwrap();
    b.init(gpu, 99).unwrap();
    let info = checkpoint::load(gpu, &file, &b, None).unwrap();
    assert_eq!((info.model, info.epoch, info.class_names), (spec, 1, data.class_names.clone()));
    assert_eq!(logits(gpu, &a, &data.train), logits(gpu, &b, &data.train));
    // No temporary file is left behind.
    assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 1);
}

#[test]
fn a_checkpoint_that_does_not_fit_names_the_first_mismatching_tensor() {
    let gpu = gpu!();
    let spec = ModelSpec::preset("tiny-cnn", 7).unwrap();
    let a = Network::build(gpu, &spec, [1, SIDE, SIDE], 7, 2, BuildOptions::default()).unwrap();
    let file = tmpdir("mismatch").join("a.safetensors");
    checkpoint::save(gpu, &file, &a, None, &[], 0).unwrap();
    let five = ModelSpec::preset("tiny-cnn", 5).unwrap();
    let b = Network::build(gpu, &five, [1, SIDE, SIDE], 5, 2, BuildOptions::default()).unwrap();
    let e = checkpoint::load(gpu, &file, &b, None).unwrap_err().to_string();
    assert!(e.contains("dense_1.weight") && e.contains("[7, 288]") && e.contains("[5, 288]"), "{e}");
    let e = checkpoint::load(gpu, &file.with_file_name("missing.safetensors"), &b, None).unwrap_err().to_string();
    assert!(e.contains("missing.safetensors"), "{e}");
}

/// A run killed after epoch 2 (its checkpoint written, a half-written temp file left behind)
/// and resumed to epoch 3 ends with exactly the weights of an uninterrupted 3-epoch run.
/// A mixed-precision run resumed after its first epoch ends bit-identical to one trained
/// straight through: the loss-scale state (scale, applied and skipped steps) is saved in
/// last.safetensors and restored with the moments.
#[test]
fn a_resumed_mixed_precision_run_continues_the_same_run() {
    let gpu = gpu!();
    let data = tiny_data(160);
    let cfg = TrainConfig { lr: 2e-3, precision: PrecisionChoice::Mixed, ..config("tiny-cnn", 2) };
    let (straight, resumed) = (tmpdir("mixed-straight"), tmpdir("mixed-resumed"));
    train::run(gpu, &cfg, &data, &straight, false, false).unwrap();
    train::run(gpu, &TrainConfig { epochs: 1, ..cfg.clone() }, &data, &resumed, false, false).unwrap();
    train::run(gpu, &cfg, &data, &resumed, true, false).unwrap();
    let read = |d: &PathBuf| std::fs::read(d.join("last.safetensors")).unwrap();
    let (a, b) = (read(&straight), read(&resumed));
    let (ta, tb) = (safetensors::SafeTensors::deserialize(&a).unwrap(), safetensors::SafeTensors::deserialize(&b).unwrap());
    let mut names = ta.names();
    names.sort();
    assert!(names.contains(&"optimizer.loss_scale"), "{names:?}");
    for n in names {
        assert_eq!(ta.tensor(n).unwrap().data(), tb.tensor(n).unwrap().data(), "tensor {n} differs after resume");
    }
    let strip = |d: &PathBuf| train::history::read(&d.join("history.csv")).unwrap().into_iter().map(|r| (r.train_loss, r.val_acc, r.skipped_steps, r.loss_scale)).collect::<Vec<_>>();
    assert_eq!(strip(&straight), strip(&resumed));
}

#[test]
fn resume_after_a_kill_continues_the_same_run() {
    let gpu = gpu!();
    let data = tiny_data(160);
    let cfg = TrainConfig { lr: 2e-3, ..config("tiny-cnn", 3) };
    let straight = tmpdir("straight");
    train::run(gpu, &cfg, &data, &straight, false, false).unwrap();

    let killed = tmpdir("killed");
    train::run(gpu, &TrainConfig { epochs: 2, ..cfg.clone() }, &data, &killed, false, false).unwrap();
    std::fs::write(killed.join(".last.safetensors.1234-0.tmp"), b"torn write").unwrap();
    let resumed = train::run(gpu, &cfg, &data, &killed, true, false).unwrap();
    assert_eq!(resumed.history.len(), 3);

    let read = |d: &PathBuf| std::fs::read(d.join("last.safetensors")).unwrap();
    let (a, b) = (read(&straight), read(&killed));
    let (ta, tb) = (safetensors::SafeTensors::deserialize(&a).unwrap(), safetensors::SafeTensors::deserialize(&b).unwrap());
    let mut names = ta.names();
    names.sort();
    for n in names {
        assert_eq!(ta.tensor(n).unwrap().data(), tb.tensor(n).unwrap().data(), "tensor {n} differs after resume");
    }
    let h = train::history::read(&killed.join("history.csv")).unwrap();
    assert_eq!(h.iter().map(|r| r.epoch).collect::<Vec<_>>(), vec![1, 2, 3]);
}

#[test]
fn a_nan_loss_stops_training_and_keeps_the_last_good_checkpoint() {
    let gpu = gpu!();
    let data = tiny_data(96);
    let dir = tmpdir("nan");
    let cfg = config("tiny-cnn", 1);
    train::run(gpu, &cfg, &data, &dir, false, false).unwrap();
    let before = std::fs::read(dir.join("last.safetensors")).unwrap();
    let wild = TrainConfig { epochs: 3, lr: 1e37, ..cfg };
    let e = train::run(gpu, &wild, &data, &dir, true, false).unwrap_err().to_string();
    assert!(e.contains("loss became") && e.contains("--lr"), "{e}");
    assert_eq!(std::fs::read(dir.join("last.safetensors")).unwrap(), before);
}

/// The CI-sized end-to-end run: the `small` preset on 32x32 synthetic faces without the
/// distractors (background, lighting, noise, occluders) that make the full set slow to learn.
#[test]
fn small_model_learns_the_built_in_faces() {
    let gpu = gpu!();
    let (cfg, data) = common::clean_faces(32);
    let dir = tmpdir("learn");
    let out = train::run(gpu, &cfg, &data, &dir, false, false).unwrap();
    eprintln!("{:#?}", out.history);
    assert!(out.best_val_acc >= 0.8, "best validation accuracy {} after {} epochs", out.best_val_acc, out.history.len());
    for f in ["last.safetensors", "best.safetensors", "history.csv", "curves.png", "confusion.png", "confusion.csv", "summary.txt", "config.json", "model.json"] {
        assert!(dir.join(f).exists(), "{f} missing");
    }
}

// ---------------------------------------------------------------------------------------
// Exact resume of the `train` binary.

/// A model with every per-step random stream: dropout, and (flags) augmentation.
const DROPOUT_MODEL: &str = r#"name = "tiny-dropout"
[[layers]]
type = "conv2d"
filters = 4
kernel = 3
[[layers]]
type = "batch_norm"
[[layers]]
type = "relu"
[[layers]]
type = "max_pool"
[[layers]]
type = "dropout"
rate = 0.3
[[layers]]
type = "flatten"
[[layers]]
type = "dense"
"#;

/// `train` on 640 tiny faces: 6 epochs of 20 steps, augmentation, dropout, and a plateau
/// schedule (its rate depends on the history's validation losses).
fn train_cmd(dir: &Path, model: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_train"));
    c.args(["--model", model.to_str().unwrap(), "--synthetic", "640", "--image-size", "20", "--batch", "32", "--epochs", "6"]);
    c.args(["--augment", "rotation=10,shift=0.1,flip=true", "--schedule", "plateau:1:0.5", "--lr", "4e-3", "--seed", "11", "--quiet"]);
    c.arg("--out").arg(dir).stdout(Stdio::null()).stderr(Stdio::piped());
    c
}

fn resume_cmd(dir: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_train"));
    c.arg("--resume").arg(dir).arg("--quiet").stdout(Stdio::null()).stderr(Stdio::piped());
    c
}

fn finish(mut c: Command, what: &str) {
    let out = c.output().unwrap();
    assert!(out.status.success(), "{what} failed: {}", String::from_utf8_lossy(&out.stderr));
}

/// Start `c` and SIGKILL it `after` from when it has set up (its run directory holds
/// kernels.json), unless it ended by then. Returns whether it was killed, and how long it
/// ran after setting up.
fn kill_after(mut c: Command, dir: &Path, after: Option<Duration>) -> (bool, Duration) {
    let marker = dir.join(train::resume::KERNELS);
    let mut child = c.spawn().unwrap();
    let ready = |t0: Instant| if marker.exists() { t0 } else { Instant::now() };
    let mut started = Instant::now();
    loop {
        started = ready(started);
        if let Some(status) = child.try_wait().unwrap() {
            let stderr = std::io::read_to_string(child.stderr.take().unwrap()).unwrap();
            assert!(status.success(), "train failed: {stderr}");
            return (false, started.elapsed());
        }
        if after.is_some_and(|a| marker.exists() && started.elapsed() >= a) {
            child.kill().unwrap(); // SIGKILL on Unix
            child.wait().unwrap();
            return (true, started.elapsed());
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// Every tensor of two checkpoints, bit for bit, and their epoch / optimizer-step metadata.
fn assert_same_checkpoint(a: &Path, b: &Path) {
    let (ba, bb) = (std::fs::read(a).unwrap(), std::fs::read(b).unwrap());
    let (ta, tb) = (safetensors::SafeTensors::deserialize(&ba).unwrap(), safetensors::SafeTensors::deserialize(&bb).unwrap());
    let mut names = ta.names();
    names.sort();
    let mut nb = tb.names();
    nb.sort();
    assert_eq!(names, nb, "{} and {} hold different tensors", a.display(), b.display());
    for n in names {
        assert!(ta.tensor(n).unwrap().data() == tb.tensor(n).unwrap().data(), "tensor {n} differs: {} vs {}", a.display(), b.display());
    }
    for key in ["epoch", "optimizer_steps", "best_epoch", "lr"] {
        assert_eq!(checkpoint::metadata(&ba, key), checkpoint::metadata(&bb, key), "{key}: {} vs {}", a.display(), b.display());
    }
}

/// history.csv of two runs: every column but the wall-clock seconds, exactly.
fn assert_same_history(a: &Path, b: &Path) {
    let strip = |d: &Path| {
        train::history::read(&d.join("history.csv")).unwrap().into_iter().map(|r| train::EpochRecord { seconds: 0.0, ..r }).collect::<Vec<_>>()
    };
    assert_eq!(strip(a), strip(b), "history of {} vs {}", a.display(), b.display());
}

fn assert_same_run(straight: &Path, other: &Path) {
    assert_same_history(straight, other);
    assert_same_checkpoint(&straight.join("last.safetensors"), &other.join("last.safetensors"));
    assert_same_checkpoint(&straight.join("best.safetensors"), &other.join("best.safetensors"));
}

/// SIGKILL at random points (seeded: MIEN_KILL_SEED, else the clock; printed), then
/// `--resume` until the run completes: the same weights, best checkpoint and history as the
/// run uninterrupted. Then kills halfway through writing each file of an epoch's commit.
#[test]
fn killed_and_resumed_runs_end_bit_identical_to_the_uninterrupted_run() {
    let _gpu = gpu!();
    let root = tmpdir("kill");
    std::fs::create_dir_all(&root).unwrap();
    let model = root.join("tiny-dropout.toml");
    std::fs::write(&model, DROPOUT_MODEL).unwrap();
    let straight = root.join("straight");
    // How long the training itself takes (from set-up to exit): the kills fall inside it.
    let (_, total) = kill_after(train_cmd(&straight, &model), &straight, None);
    let h = train::history::read(&straight.join("history.csv")).unwrap();
    assert_eq!(h.len(), 6);
    // The plateau schedule did act: the rate is not constant.
    assert!(h.iter().any(|r| r.lr != h[0].lr), "plateau never cut the rate: {h:?}");

    let seed = std::env::var("MIEN_KILL_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(|| {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos() as u64
    });
    eprintln!("uninterrupted run: {:.2} s; kill points from MIEN_KILL_SEED={seed}", total.as_secs_f64());
    let mut rng = mien::rng::Rng::new(seed);
    let killed = root.join("killed");
    let mut cmd = train_cmd(&killed, &model);
    let mut kills = 0;
    // Kill points within the first 80% of the uninterrupted run's time (a loaded machine
    // runs at varying speed). A run that finished before its kill point is started over,
    // killed earlier, until one kill has landed: a resume of a finished run has nothing
    // left to kill.
    let mut scale = 0.8;
    for round in 0..3 {
        let after = total.mul_f64(rng.range(0.0, scale));
        let (k, _) = kill_after(cmd, &killed, Some(after));
        let epochs = train::history::read(&killed.join("history.csv")).map_or(0, |h| h.len());
        eprintln!("round {round}: kill after {:.2} s: {} ({epochs} history rows)", after.as_secs_f64(), if k { "killed" } else { "it had finished" });
        kills += k as usize;
        cmd = if kills == 0 {
            std::fs::remove_dir_all(&killed).unwrap();
            scale /= 2.0;
            train_cmd(&killed, &model)
        } else {
            resume_cmd(&killed)
        };
    }
    finish(cmd, "the final resume");
    assert!(kills >= 1, "no kill landed inside a run (set-up to exit: {total:?})");
    assert_same_run(&straight, &killed);

    // Die halfway through writing one file of epoch 2's commit (history, then last, then
    // best: that one only where epoch 2 improved), then resume.
    let improved2 = h[1].val_acc > h[0].val_acc;
    for (file, k) in [("history.csv", 2), ("last.safetensors", 2), ("best.safetensors", if improved2 { 2 } else { 1 })] {
        let dir = root.join(format!("fault-{file}"));
        let mut c = train_cmd(&dir, &model);
        c.env("MIEN_FAULT_KILL_WRITE", format!("{file}:{k}"));
        let out = c.output().unwrap();
        assert!(!out.status.success(), "the run did not die writing {file}");
        let torn = std::fs::read_dir(&dir).unwrap().filter(|e| e.as_ref().unwrap().file_name().to_string_lossy().ends_with(".tmp")).count();
        assert_eq!(torn, 1, "a half-written temp file of {file} is left");
        finish(resume_cmd(&dir), &format!("the resume after dying in {file}"));
        assert_same_run(&straight, &dir);
    }
}

/// The issue's case: `--resume DIR` continues the run it was started with (not the flag's
/// default of 10 epochs); a flag given with it changes that setting, recorded in
/// config.json and the history; a flag that defines the run is refused.
#[test]
fn resume_keeps_the_runs_settings_and_records_explicit_changes() {
    let _gpu = gpu!();
    let dir = tmpdir("flags");
    let mut c = Command::new(env!("CARGO_BIN_EXE_train"));
    c.args(["--model", "tiny-cnn", "--synthetic", "96", "--image-size", "16", "--batch", "32", "--epochs", "2", "--quiet"]).arg("--out").arg(&dir);
    finish(c, "the first run");
    finish(resume_cmd(&dir), "a resume of a finished run");
    let h = train::history::read(&dir.join("history.csv")).unwrap();
    assert_eq!(h.len(), 2, "a resume without flags trained on: {h:?}");

    let mut c = resume_cmd(&dir);
    c.args(["--epochs", "3", "--lr", "1e-3"]);
    finish(c, "a resume with --epochs 3 --lr 1e-3");
    let h = train::history::read(&dir.join("history.csv")).unwrap();
    assert_eq!(h.len(), 3);
    assert_eq!(h[2].note, "resumed: --epochs 2 -> 3; --lr 0.002 -> 0.001", "{h:?}");
    assert!(h[..2].iter().all(|r| r.note.is_empty()));
    let cfg = train::resume::read_config(&dir).unwrap();
    assert_eq!((cfg.epochs, cfg.lr, cfg.changes.len()), (3, 1e-3, 2));
    assert_eq!((cfg.changes[0].after_epoch, cfg.changes[0].flag.as_str()), (2, "--epochs"));

    // What `auto` meant here is recorded; the other precision would be another run.
    let other = if cfg.precision == PrecisionChoice::F32 { "mixed" } else { "f32" };
    for (flag, value) in [("--seed", "9"), ("--model", "small"), ("--synthetic", "200"), ("--optimizer", "sgd"), ("--precision", other)] {
        let out = resume_cmd(&dir).args([flag, value]).output().unwrap();
        let e = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success() && e.contains("config.json") && e.contains(&format!("resuming it with {flag} {value}")), "{flag}: {e}");
    }
    assert_eq!(train::resume::read_config(&dir).unwrap(), cfg, "a refused resume changed config.json");
}

/// A run directory whose files are damaged, or from another model, is refused with the
/// file's name and what is wrong.
#[test]
fn resuming_a_damaged_run_names_the_file_and_why() {
    let gpu = gpu!();
    let data = tiny_data(96);
    let cfg = config("tiny-cnn", 2);
    let good = tmpdir("damage-good");
    train::run(gpu, &cfg, &data, &good, false, false).unwrap();
    let copy = |name: &str| {
        let d = tmpdir(&format!("damage-{name}"));
        std::fs::create_dir_all(&d).unwrap();
        for f in std::fs::read_dir(&good).unwrap() {
            let f = f.unwrap();
            std::fs::copy(f.path(), d.join(f.file_name())).unwrap();
        }
        d
    };
    let resume = |d: &Path| train::run(gpu, &TrainConfig { epochs: 3, ..cfg.clone() }, &data, d, true, false).unwrap_err().to_string();

    let d = copy("truncated");
    let bytes = std::fs::read(d.join("last.safetensors")).unwrap();
    std::fs::write(d.join("last.safetensors"), &bytes[..bytes.len() / 2]).unwrap();
    let e = resume(&d);
    assert!(e.contains("last.safetensors"), "{e}");

    let d = copy("history-short");
    let text = std::fs::read_to_string(d.join("history.csv")).unwrap();
    std::fs::write(d.join("history.csv"), text.lines().take(2).collect::<Vec<_>>().join("\n")).unwrap();
    let e = resume(&d);
    assert!(e.contains("history.csv: has 1 epochs") && e.contains("after epoch 2"), "{e}");

    let d = copy("history-garbage");
    std::fs::write(d.join("history.csv"), text.replace(",0.003,", ",fast,")).unwrap();
    let e = resume(&d);
    assert!(e.contains("history.csv:2"), "{e}");

    let d = copy("history-other-run");
    let mut h = train::history::read(&d.join("history.csv")).unwrap();
    // The epoch that was not the best becomes the best.
    let other = if h[1].val_acc > h[0].val_acc { 0 } else { 1 };
    h[other].val_acc = Some(2.0);
    train::history::write(&d.join("history.csv"), &h).unwrap();
    let e = resume(&d);
    assert!(e.contains("last.safetensors: records best epoch") && e.contains(&format!("history.csv makes it epoch {}", other + 1)), "{e}");

    let d = copy("config");
    std::fs::write(d.join("config.json"), "{\"model\": ").unwrap();
    let e = resume(&d);
    assert!(e.contains("config.json: not a mien run configuration"), "{e}");

    // last.safetensors of another model (same name in config.json: a copied file).
    let other = tmpdir("another-model");
    let spec = ModelSpec::preset("small", 7).unwrap();
    let net = Network::build(gpu, &spec, [1, SIDE, SIDE], 7, 2, BuildOptions::default()).unwrap();
    checkpoint::save(gpu, &other.join("x.safetensors"), &net, None, &data.class_names, 2).unwrap();
    let d = copy("other-model");
    std::fs::copy(other.join("x.safetensors"), d.join("last.safetensors")).unwrap();
    let e = resume(&d);
    assert!(e.contains("last.safetensors: holds model \"small\"") && e.contains("another model"), "{e}");

    // best.safetensors missing: rewritten from last when the best epoch is last's own (a
    // kill between the two writes), else its weights are lost and resuming says so.
    let d = copy("best-missing");
    std::fs::remove_file(d.join("best.safetensors")).unwrap();
    let h = train::history::read(&d.join("history.csv")).unwrap();
    let r = train::run(gpu, &TrainConfig { epochs: 3, ..cfg.clone() }, &data, &d, true, false);
    if h[1].val_acc > h[0].val_acc {
        r.unwrap();
        assert!(d.join("best.safetensors").exists());
    } else {
        let e = r.unwrap_err().to_string();
        assert!(e.contains("best.safetensors: missing, but the run's best epoch is 1"), "{e}");
    }
}

/// A data set smaller than one batch trains as one batch (with a warning), not an error.
#[test]
fn data_smaller_than_a_batch_trains_as_one_batch() {
    let gpu = gpu!();
    let data = tiny_data(20);
    assert!(data.train.len() < 32);
    let out = train::run(gpu, &config("tiny-cnn", 2), &data, &tmpdir("tiny-set"), false, false).unwrap();
    assert_eq!(out.history.len(), 2);
    assert!(out.history.iter().all(|r| r.train_loss.is_finite()));
}

/// Malformed data is reported before the GPU is set up, and start-up prints nothing a user
/// cannot act on (no XDG_RUNTIME_DIR complaint from Mesa, no GL probing errors).
#[test]
fn start_up_is_quiet_and_bad_data_is_reported_first() {
    let _gpu = gpu!();
    let dir = tmpdir("quiet");
    std::fs::create_dir_all(&dir).unwrap();
    let bad = dir.join("bad.csv");
    std::fs::write(&bad, "emotion,pixels,Usage\n3,1 2 3,Training\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_train")).arg("--data").arg(&bad).env_remove("XDG_RUNTIME_DIR").output().unwrap();
    let e = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && e.contains("bad.csv:2"), "{e}");
    assert!(!e.contains("adapter:"), "the GPU was set up before the data was read:\n{e}");

    let out = Command::new(env!("CARGO_BIN_EXE_train"))
        .args(["--model", "tiny-cnn", "--synthetic", "64", "--image-size", "16", "--batch", "32", "--epochs", "1"])
        .arg("--out")
        .arg(dir.join("run"))
        .env_remove("XDG_RUNTIME_DIR")
        .env_remove("WGPU_BACKEND")
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    let e = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{e}");
    assert!(e.starts_with("adapter: "), "start-up printed something before the adapter line:\n{e}");
    for noise in ["XDG_RUNTIME_DIR", "ERROR", "egl", "DRI2"] {
        assert!(!e.contains(noise), "start-up noise {noise:?}:\n{e}");
    }
}

// ---------------------------------------------------------------------------------------
// BatchNorm population statistics.

/// After `PopulationStats::compute`, each BN layer's running mean and variance are the
/// exact (f64) mean and biased variance of its input over the sample when the network runs
/// in inference mode with those statistics (so BN 2's input is computed with BN 1's
/// population statistics): read back from a network that keeps every activation.
#[test]
fn population_statistics_are_those_of_each_bn_input_in_inference_mode() {
    let gpu = gpu!();
    let data = tiny_data(200);
    let spec = ModelSpec::preset("tiny-cnn", 7).unwrap();
    let net = Network::build(gpu, &spec, [1, SIDE, SIDE], 7, 32, BuildOptions::default()).unwrap();
    net.init(gpu, 3).unwrap();
    let pop = train::bn_stats::PopulationStats::new(gpu, &net, &data, Some(150), 9).unwrap().expect("tiny-cnn has BatchNorm");
    // 150 images: whole batches of 64.
    assert_eq!(pop.images(), 128);
    pop.compute(gpu, &data.train).unwrap();

    let check = net.build_like(gpu, 128, BuildOptions { input_grad: false, reuse: false, fuse: false, fuse_stats: false, fuse_pool: false, precision: Precision::F32 }).unwrap();
    let images: Vec<f32> = pop.sample().iter().flat_map(|&i| data.train.image(i).to_vec()).collect();
    gpu.write(check.input(), &images).unwrap();
    gpu.run(check.forward_infer_dispatches()).unwrap();
    let mut layers = 0;
    for (i, l) in check.layers.iter().enumerate().filter(|(_, l)| matches!(l.spec, mien::nn::spec::LayerSpec::BatchNorm { .. })) {
        let x = mien::reference::f64s(&gpu.read(check.activation(i - 1).0).unwrap());
        let (c, s) = (l.in_shape[1], l.in_shape[2..].iter().product::<usize>());
        let (mean, var) = mien::reference::batchnorm::population(&[x], c, s);
        let stat = |k: &str| gpu.read(&net.buffers.iter().find(|(n, _)| *n == format!("{}.{k}", l.name)).unwrap().1).unwrap();
        mien::reference::assert_close(&format!("{} population mean", l.name), &stat("running_mean"), &mean, 1e-4, 1e-4);
        mien::reference::assert_close(&format!("{} population variance", l.name), &stat("running_var"), &var, 1e-4, 1e-4);
        layers += 1;
    }
    assert_eq!(layers, 2);
}

/// A model file: two conv blocks (3x3 conv with `filters`, BatchNorm with `momentum`, ReLU,
/// 2x2 max pool) and a dense head.
fn two_blocks(name: &str, filters: [usize; 2], momentum: Option<f32>) -> String {
    let bn = momentum.map_or(String::new(), |m| format!("momentum = {m}\n"));
    let block = |f: usize| format!("[[layers]]\ntype = \"conv2d\"\nfilters = {f}\nkernel = 3\n[[layers]]\ntype = \"batch_norm\"\n{bn}[[layers]]\ntype = \"relu\"\n[[layers]]\ntype = \"max_pool\"\n");
    format!("name = \"{name}\"\n{}{}[[layers]]\ntype = \"flatten\"\n[[layers]]\ntype = \"dense\"\n", block(filters[0]), block(filters[1]))
}

/// Clean `side`x`side` faces (no background, occluders, lighting or noise): `n` training
/// images (seed 5) and `val` validation images (seed 6).
fn clean_data(side: usize, n: usize, val: usize) -> TrainData {
    let opts = mien::data::SynthOptions { hw: (side, side), background: false, occluders: false, lighting: false, noise: false, ..Default::default() };
    let train_set = mien::data::synthetic_with(n, 5, &opts);
    TrainData { val: mien::data::synthetic_with(val, 6, &opts), class_names: train_set.class_names.clone(), train: train_set }
}

/// At a large batch (6 steps an epoch), momentum-0.99 running statistics lag the weights and
/// validation says little about the model; population statistics make it follow training.
/// The same seeded run with --bn-stats momentum and population: the training (which uses
/// batch statistics) is identical, and with population statistics the best validation
/// accuracy is clearly higher and the last epoch's gap to the training accuracy is less than
/// half of momentum's. Measured on lavapipe: best 0.28 vs 0.16, gaps 0.06 vs 0.18.
#[test]
fn population_statistics_make_validation_follow_training_at_large_batches() {
    let gpu = gpu!();
    let side = 24;
    let data = clean_data(side, 1200, 300);
    let root = tmpdir("bn99");
    std::fs::create_dir_all(&root).unwrap();
    let model = root.join("bn99.toml");
    // Keras' BatchNorm momentum 0.99, the issue's case in small.
    std::fs::write(&model, two_blocks("bn99", [8, 16], Some(0.99))).unwrap();
    let cfg = TrainConfig { model: model.to_str().unwrap().into(), epochs: 6, batch: 200, lr: 4e-3, lr_scale: LrScale::None, schedule: Schedule::Constant, seed: 7, image_size: side, ..Default::default() };
    let run = |bn: train::BnStats| {
        let out = train::run(gpu, &TrainConfig { bn_stats: bn, ..cfg.clone() }, &data, &root.join(bn.to_string()), false, false).unwrap();
        let v: Vec<String> = out.history.iter().map(|r| format!("{:.3}/{:.3}", r.train_acc, r.val_acc.unwrap())).collect();
        eprintln!("--bn-stats {bn}: best {:.3}, train/val per epoch {}", out.best_val_acc, v.join(" "));
        out
    };
    let (m, p) = (run(train::BnStats::Momentum), run(train::BnStats::DEFAULT));
    let train_accs = |o: &train::Outcome| o.history.iter().map(|r| (r.train_loss, r.train_acc)).collect::<Vec<_>>();
    assert_eq!(train_accs(&m), train_accs(&p), "the BN statistics changed the training itself");
    let gap = |o: &train::Outcome| (o.history.last().unwrap().train_acc - o.history.last().unwrap().val_acc.unwrap()).abs();
    assert!(p.best_val_acc >= m.best_val_acc + 0.05, "population best {} vs momentum best {}", p.best_val_acc, m.best_val_acc);
    assert!(gap(&p) < gap(&m) / 2.0, "last-epoch train/val gap: population {} vs momentum {}", gap(&p), gap(&m));
}

/// `--lr` is the rate at batch 64: the square-root rule (the default) doubles it at batch
/// 256, the linear rule quadruples it, none keeps it; config.json files from before
/// `lr_scale` existed mean none, so their runs resume with the rate they had.
#[test]
fn the_learning_rate_follows_the_batch_size_as_lr_scale_says() {
    let at = |scale: LrScale, batch: usize| TrainConfig { lr: 1e-3, lr_scale: scale, ..Default::default() }.base_lr(batch);
    assert_eq!(TrainConfig::default().lr_scale, LrScale::Sqrt);
    assert_eq!(at(LrScale::Sqrt, 64), 1e-3);
    assert!((at(LrScale::Sqrt, 256) - 2e-3).abs() < 1e-15);
    assert!((at(LrScale::Sqrt, 16) - 0.5e-3).abs() < 1e-15);
    assert!((at(LrScale::Linear, 256) - 4e-3).abs() < 1e-15);
    assert_eq!(at(LrScale::None, 256), 1e-3);
    let mut old = serde_json::to_value(TrainConfig::default()).unwrap();
    old.as_object_mut().unwrap().remove("lr_scale");
    let old: TrainConfig = serde_json::from_value(old).unwrap();
    assert_eq!(old.lr_scale, LrScale::None);
    let json = serde_json::to_string(&TrainConfig::default()).unwrap();
    assert!(json.contains("\"lr_scale\":\"sqrt\""), "{json}");
}

/// Validation at any batch size (issue 12's target at CI size): with population statistics
/// and the square-root rule (both defaults), a 4x larger batch reaches the small batch's best
/// validation accuracy within one point in the same epochs. Measured on lavapipe (side 24,
/// 1280 clean faces, 16 epochs, 4e-3 at batch 64): batch 32 best 0.7000, batch 128 0.7125
/// (batch 128 at 10 epochs: 0.6050 vs 0.6425, not yet converged; the full-size figures are
/// in the README: 0.8845 at batch 256 vs 0.8915 at 64).
#[test]
fn a_four_times_larger_batch_reaches_the_small_batch_accuracy_within_one_point() {
    let gpu = gpu!();
    let side = 24;
    let data = clean_data(side, 1280, 400);
    let root = tmpdir("batch-size");
    let cfg = TrainConfig { model: "small".into(), epochs: 16, lr: 4e-3, seed: 7, image_size: side, ..Default::default() };
    assert_eq!((cfg.lr_scale, cfg.bn_stats), (LrScale::Sqrt, train::BnStats::DEFAULT), "the defaults under test");
    let run = |batch: usize| {
        let c = TrainConfig { batch, ..cfg.clone() };
        let out = train::run(gpu, &c, &data, &root.join(batch.to_string()), false, false).unwrap();
        let v: Vec<String> = out.history.iter().map(|r| format!("{:.3}", r.val_acc.unwrap())).collect();
        eprintln!("batch {batch}: best {:.4}, validation per epoch {}", out.best_val_acc, v.join(" "));
        assert!((out.history[0].lr - 4e-3 * (batch as f64 / 64.0).sqrt()).abs() < 1e-12, "batch {batch}: first epoch's rate {}", out.history[0].lr);
        out.best_val_acc
    };
    let (small, large) = (run(32), run(128));
    assert!(large >= small - 0.01, "best validation accuracy: batch 128 {large} vs batch 32 {small}");
}

// ---------------------------------------------------------------------------------------
// Mixed precision.


/// Mixed precision (f16 GEMM operands with f32 sums, dynamic loss scaling) reaches the f32
/// run's best validation accuracy within 0.5 points at the same seed and epochs, and the
/// run records it: config.json, summary.txt, and the loss scale in history.csv. On lavapipe
/// the mixed GEMMs are their plain-WGSL build (no cooperative matrices), about 8x slower
/// than the f32 kernels here: hence 24x24 clean faces, 1200 training images, two conv
/// blocks (f32 ~10 s, mixed ~85 s on the 2-core CI machine; both reach 0.5975).
#[test]
fn mixed_precision_reaches_f32_accuracy() {
    let gpu = gpu!();
    assert!(gpu.has_f16(), "lavapipe offers SHADER_F16; mixed precision is tested with it");
    let dir = tmpdir("precision");
    std::fs::create_dir_all(&dir).unwrap();
    let model = dir.join("two-blocks.toml");
    // Two blocks: the `small` preset's third costs lavapipe's emulated f16 GEMMs a minute more.
    std::fs::write(&model, two_blocks("two-blocks", [16, 32], None)).unwrap();
    let data = clean_data(24, 1200, 400);
    let base = TrainConfig { batch: 16, schedule: Schedule::Cosine { min_lr: 1e-4 }, ..config(model.to_str().unwrap(), 8) };
    let mut acc = Vec::new();
    for precision in [PrecisionChoice::F32, PrecisionChoice::Mixed] {
        let run = dir.join(precision.name());
        let t = Instant::now();
        let out = train::run(gpu, &TrainConfig { precision, ..base.clone() }, &data, &run, false, false).unwrap();
        eprintln!("{precision}: {:.1} s, validation accuracy per epoch {:?}", t.elapsed().as_secs_f64(), out.history.iter().map(|r| r.val_acc.unwrap()).collect::<Vec<_>>());
        let saved = train::resume::read_config(&run).unwrap();
        assert_eq!(saved.precision, precision, "config.json records the precision");
        let summary = std::fs::read_to_string(run.join("summary.txt")).unwrap();
        assert!(summary.contains(&format!("Precision: {precision}")), "{summary}");
        // The training steps ran the f16 kernels: their layers (batch 16) are below the
        // autotuner's size threshold (the coop default), and any it timed must have chosen
        // coop. (The BatchNorm statistics' batch-64 network may time and keep f32 kernels.)
        let kernels: std::collections::BTreeMap<String, String> = serde_json::from_str(&std::fs::read_to_string(run.join("kernels.json")).unwrap()).unwrap();
        let training = |k: &str| k.ends_with(" mixed") && (k.starts_with("conv 16x") || k.contains(" 16x"));
        for (key, choice) in kernels.iter().filter(|(k, _)| training(k)) {
            assert_eq!(choice, "coop", "{key}: this test is meant to run the f16 GEMMs");
        }
        let history = train::history::read(&run.join("history.csv")).unwrap();
        for r in &history {
            match precision {
                PrecisionChoice::Mixed => assert!(r.loss_scale.is_some_and(|s| s >= 1.0), "epoch {}: loss scale {:?}", r.epoch, r.loss_scale),
                _ => assert_eq!((r.loss_scale, r.skipped_steps), (None, 0), "epoch {}", r.epoch),
            }
        }
        acc.push(out.best_val_acc);
    }
    assert!(acc[0] >= 0.5, "the f32 run learns (chance is 1/7): {acc:?}");
    assert!((acc[1] - acc[0]).abs() <= 0.005, "mixed {:.4} vs f32 {:.4}: more than 0.5 points apart", acc[1], acc[0]);
    let _ = std::fs::remove_dir_all(&dir);
}
