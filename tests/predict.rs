//! The predict binary on the FER2013 sample files in data/: a Kaggle submission for the
//! unlabelled test.csv, accuracy and confusion for labelled data, ensembles, and a clear
//! error without a trained run.

#[path = "kernels/common.rs"]
mod common;

use mien::train::{self, Schedule, TrainConfig};
use std::process::Command;

fn predict(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_predict")).args(args).output().unwrap()
}

#[test]
fn predict_writes_a_submission_and_scores_labelled_data() {
    let _ = gpu!();
    let gpu = common::gpu().unwrap();
    let dir = std::env::temp_dir().join(format!("mien-predict-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let run = dir.join("run");
    // A 48x48 model like the sample files; one quick epoch is enough to exercise the path.
    let cfg = TrainConfig { model: "tiny-cnn".into(), epochs: 1, batch: 16, schedule: Schedule::Constant, synthetic: 64, ..Default::default() };
    let data = train::load_data(&cfg).unwrap();
    train::run(gpu, &cfg, &data, &run, false, false).unwrap();
    let root = env!("CARGO_MANIFEST_DIR");

    let sub = dir.join("submission.csv");
    let out = predict(&["--run", run.to_str().unwrap(), "--data", &format!("{root}/data/test_sample.csv"), "--out", sub.to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = std::fs::read_to_string(&sub).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], "id,label");
    assert_eq!(lines.len(), 11, "{text}");
    for l in &lines[1..] {
        let (_, label) = l.split_once(',').unwrap();
        assert!(label.parse::<u32>().unwrap() < 7, "{l}");
    }

    // Labelled data, as an ensemble of the run with itself: accuracy and a confusion matrix.
    let out = predict(&[
        "--run", run.to_str().unwrap(), "--ensemble", run.to_str().unwrap(),
        "--data", &format!("{root}/data/train_sample.csv"), "--out", dir.join("train_pred.csv").to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("accuracy") && stdout.contains("2 models"), "{stdout}");
    assert!(dir.join("predict_confusion.png").exists());

    let out = predict(&["--run", dir.join("nothing").to_str().unwrap(), "--data", &format!("{root}/data/test_sample.csv")]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("nothing") && err.contains("cargo run --release --bin train"), "{err}");
}
