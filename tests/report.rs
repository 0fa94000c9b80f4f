//! The explain binary's HTML report, looked at as a person would: a quickly trained run is
//! explained by `explain`, and headless Chromium renders report.html to a PNG that must
//! show the page (not blank, every figure loaded). CI installs Chromium; without it this
//! test fails and says how to get it.

#[path = "kernels/common.rs"]
mod common;

use mien::train::{self, Schedule, TrainConfig};
use std::path::{Path, PathBuf};
use std::process::Command;

fn chromium() -> PathBuf {
    for c in ["chromium", "chromium-browser", "google-chrome"] {
        if let Ok(out) = Command::new("which").arg(c).output() {
            if out.status.success() {
                return PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
            }
        }
    }
    panic!("no Chromium found for the report screenshot test: apt-get install chromium");
}

fn screenshot(html: &Path, png: &Path, profile: &Path) {
    let status = Command::new(chromium())
        .args(["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking"])
        .args(["--disable-component-update", "--disable-sync", "--hide-scrollbars", "--window-size=1320,4000"])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg(format!("--screenshot={}", png.display()))
        .arg(format!("file://{}", html.display()))
        .status()
        .expect("chromium runs");
    assert!(status.success(), "chromium failed: {status}");
}

#[test]
fn the_report_renders_in_a_browser_with_every_figure() {
    let _gpu = gpu!();
    let gpu = common::gpu().unwrap();
    let dir = std::env::temp_dir().join(format!("mien-report-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let run = dir.join("run");
    let cfg = TrainConfig { model: "tiny-cnn".into(), epochs: 2, batch: 32, lr: 3e-3, schedule: Schedule::Constant, seed: 3, val_split: 0.2, synthetic: 256, image_size: 24, ..Default::default() };
    let data = train::load_data(&cfg).unwrap();
    train::run(gpu, &cfg, &data, &run, false, false).unwrap();

    let out = Command::new(env!("CARGO_BIN_EXE_explain"))
        .args(["--run", run.to_str().unwrap(), "--compare", run.to_str().unwrap()])
        .args(["--lime-samples", "64", "--ascent-steps", "8", "--samples", "4", "--metrics-images", "8"])
        .output()
        .unwrap();
    assert!(out.status.success(), "explain failed: {}", String::from_utf8_lossy(&out.stderr));
    let html_path = run.join("report").join("report.html");
    let html = std::fs::read_to_string(&html_path).unwrap();
    // The faithfulness table: a row per gallery method and the random baseline.
    for text in ["Faithfulness", "deletion AUC", "insertion AUC", "randomization |rho|", "pointing game", "random order (baseline)", "SmoothGrad", "LIME"] {
        assert!(html.contains(text), "the report lacks {text:?}");
    }
    // Every <img> in the page exists on disk.
    let imgs: Vec<&str> = html.split("<img src=\"").skip(1).map(|s| s.split('"').next().unwrap()).collect();
    assert!(imgs.len() >= 3, "only {} figures in the report", imgs.len());
    for img in &imgs {
        assert!(run.join("report").join(img).exists(), "the report shows {img}, which is missing");
    }

    let png = dir.join("report.png");
    screenshot(&html_path, &png, &dir.join("chromium-profile"));
    let shot = image::open(&png).unwrap().to_rgb8();
    assert_eq!(shot.width(), 1320);
    // Not blank: many distinct colours (figures, text) on the rendered page.
    let mut colours: Vec<[u8; 3]> = shot.pixels().step_by(7).map(|p| p.0).collect();
    colours.sort();
    colours.dedup();
    assert!(colours.len() > 200, "the screenshot has only {} colours: blank page?", colours.len());
    if let Ok(keep) = std::env::var("MIEN_KEEP_SCREENSHOT") {
        std::fs::copy(&png, keep).unwrap();
    }
}

/// `explain --metrics` prints the faithfulness scores of every gallery method as JSON.
#[test]
fn explain_metrics_prints_the_scores_as_json() {
    let _gpu = gpu!();
    let gpu = common::gpu().unwrap();
    let dir = std::env::temp_dir().join(format!("mien-metrics-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let cfg = TrainConfig { model: "tiny-cnn".into(), epochs: 1, batch: 32, lr: 3e-3, schedule: Schedule::Constant, seed: 3, val_split: 0.2, synthetic: 128, image_size: 16, ..Default::default() };
    let data = train::load_data(&cfg).unwrap();
    train::run(gpu, &cfg, &data, &dir, false, false).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_explain"))
        .args(["--run", dir.to_str().unwrap(), "--metrics", "--metrics-images", "5", "--curve-steps", "8", "--lime-samples", "32", "--samples", "2"])
        .output()
        .unwrap();
    assert!(out.status.success(), "explain --metrics failed: {}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&out.stdout)));
    assert_eq!((v["images"].as_u64(), v["steps"].as_u64()), (Some(5), Some(8)), "{v}");
    let unit = |x: &serde_json::Value| x.as_f64().is_some_and(|f| (0.0..=1.0).contains(&f));
    assert!(unit(&v["random_deletion_auc"]) && unit(&v["random_insertion_auc"]) && unit(&v["pointing_chance"]), "{v}");
    let methods = v["methods"].as_array().unwrap();
    let names: Vec<&str> = methods.iter().map(|m| m["method"].as_str().unwrap()).collect();
    assert_eq!(names, ["saliency", "SmoothGrad", "Integrated Gradients", "Grad-CAM", "Grad-CAM++", "occlusion", "LIME"]);
    for m in methods {
        for k in ["deletion_auc", "insertion_auc", "pointing_game"] {
            assert!(unit(&m[k]), "{k} of {m}");
        }
        assert!(m["randomization_rho"].is_number() || m["randomization_rho"].is_null(), "{m}");
    }
}
