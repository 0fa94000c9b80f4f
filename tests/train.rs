//! Training end to end on the GPU: checkpoints (round trip, mismatch, resume after a kill),
//! NaN stop, and a run on the built-in data reaching high validation accuracy.

#[path = "kernels/common.rs"]
mod common;

use mien::data::Dataset;
use mien::nn::checkpoint;
use mien::nn::network::{BuildOptions, Network};
use mien::nn::spec::ModelSpec;
use mien::train::{self, Schedule, TrainConfig, TrainData};
use std::path::PathBuf;

/// Small faces keep these tests inside the CI budget on a CPU Vulkan driver.
const SIDE: usize = 24;

fn config(model: &str, epochs: usize) -> TrainConfig {
    TrainConfig { model: model.into(), epochs, batch: 32, lr: 3e-3, schedule: Schedule::Constant, seed: 7, val_split: 0.2, synthetic: 256, image_size: SIDE, ..Default::default() }
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
