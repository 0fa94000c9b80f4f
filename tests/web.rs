//! The web page in a real browser: web/build.sh builds the site, web/test/browser.mjs drives
//! it in Debian's Chromium with WebGPU on SwiftShader (playwright-core from npm, the
//! browser's own executable), and this test checks what the page showed against the native
//! tools:
//! - Predict panel, shipped checkpoint (data/web/demo) and image (data/faces): the same class
//!   probabilities as native `predict` (|diff| <= 1e-4), overlays that are not blank;
//! - Explain panel: the gallery and filter ascent draw without an error;
//! - Train panel: a short run lowers the loss, and its checkpoint is read by native
//!   `explain`;
//! - a model over the adapter's limits is refused naming the limit; a browser without
//!   WebGPU gets the page's message;
//! - screenshots of every panel land in target/web-test/.
//!
//! A missing browser, node, playwright-core or WebGPU adapter fails the test (never a
//! skip). Needs: chromium, node + npm (`npm ci --prefix web` is run when
//! web/node_modules lacks playwright-core), the wasm32 target and wasm-bindgen-cli (see
//! web/build.sh).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn run(cmd: &mut Command, what: &str) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{what}: cannot start: {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(out.status.success(), "{what} failed ({}):\nstdout:\n{stdout}\nstderr:\n{}", out.status, String::from_utf8_lossy(&out.stderr));
    stdout
}

/// The probabilities row of `id` in predict's --probabilities CSV.
fn native_probabilities(csv: &Path, id: &str) -> Vec<f64> {
    let text = std::fs::read_to_string(csv).unwrap();
    let line = text.lines().skip(1).find(|l| l.split(',').next() == Some(id)).unwrap_or_else(|| panic!("{id} not in {}:\n{text}", csv.display()));
    line.split(',').skip(1).map(|v| v.parse().unwrap()).collect()
}

#[test]
fn page_predicts_explains_and_trains_in_chromium_on_webgpu() {
    let t0 = Instant::now();
    let root = root();
    let out = root.join("target/web-test");
    let _ = std::fs::remove_dir_all(&out);
    std::fs::create_dir_all(&out).unwrap();

    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    assert!(Path::new(&chromium).exists(), "no browser at {chromium}: apt-get install chromium (or set CHROMIUM)");
    if !root.join("web/node_modules/playwright-core").exists() {
        run(Command::new("npm").args(["ci", "--prefix", "web", "--no-audit", "--no-fund"]).current_dir(&root), "npm ci --prefix web");
    }
    run(Command::new(root.join("web/build.sh")).current_dir(&root), "web/build.sh");
    let built = t0.elapsed().as_secs_f64();

    // The image, one of data/faces (the folder native predict reads, all 7 classes).
    let image = root.join("data/faces/Happy/0.png");
    let folder = root.join("data/faces");
    let probs_csv = out.join("native_probabilities.csv");
    run(
        Command::new(env!("CARGO_BIN_EXE_predict"))
            .args(["--run", "data/web/demo", "--checkpoint", "model", "--batch", "1", "--data"])
            .arg(&folder)
            .arg("--out")
            .arg(out.join("submission.csv"))
            .arg("--probabilities")
            .arg(&probs_csv)
            .current_dir(&root),
        "native predict",
    );
    let native = native_probabilities(&probs_csv, "Happy/0.png");

    // The page, driven like a user.
    let t1 = Instant::now();
    let stdout = run(
        Command::new("node").arg("web/test/browser.mjs").arg("web/dist").arg(&image).arg(&out).env("CHROMIUM", &chromium).current_dir(&root),
        "web/test/browser.mjs (the page in Chromium)",
    );
    let browser_s = t1.elapsed().as_secs_f64();
    let last = stdout.lines().last().expect("browser.mjs prints its result");
    let r: serde_json::Value = serde_json::from_str(last).unwrap_or_else(|e| panic!("browser.mjs result is not JSON ({e}): {last}"));
    std::fs::write(out.join("result.json"), serde_json::to_string_pretty(&r).unwrap()).unwrap();
    eprintln!("page: {}", r["adapter_text"].as_str().unwrap_or(""));
    assert_eq!(r["state"], "ready", "the page has no WebGPU adapter: {}", r["fatal"]);

    // Predict: same probabilities as native predict.
    let p = &r["predict"];
    assert!(p["error"].is_null(), "predict panel error: {}", p["error"]);
    let page: Vec<f64> = p["probabilities"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect();
    assert_eq!(page.len(), native.len(), "page {page:?} vs native {native:?}");
    let worst = page.iter().zip(&native).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max);
    eprintln!("probabilities: page {page:?}\n               native {native:?}\n               max |diff| {worst:e}");
    assert!(worst <= 1e-4, "page and native predict differ by {worst} (> 1e-4): page {page:?}, native {native:?}");
    // The page's 48x48 gray input is the PNG's pixels / 255.
    let png = image::open(&image).unwrap().to_luma8();
    let pixels: Vec<f64> = p["pixels"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect();
    let pix_worst = png.pixels().zip(&pixels).map(|(a, b)| (a.0[0] as f64 / 255.0 - b).abs()).fold(0.0, f64::max);
    assert!(pix_worst < 1e-6, "the page's input differs from the image by {pix_worst}");
    for (id, spread) in p["overlay_spread"].as_object().unwrap() {
        let s = spread.as_f64().unwrap();
        assert!(s > 5.0, "canvas {id} is blank (pixel standard deviation {s})");
    }

    // Explain.
    assert!(r["gallery_error"].is_null(), "gallery error: {}", r["gallery_error"]);
    assert!(r["gallery_cells"].as_u64().unwrap() >= 8, "gallery drew {} cells", r["gallery_cells"]);
    assert!(r["ascent_error"].is_null(), "filter ascent error: {}", r["ascent_error"]);
    assert!(r["ascent_images"].as_u64().unwrap() >= 1, "filter ascent drew {} images", r["ascent_images"]);

    // Train: the loss falls; native explain reads the checkpoint.
    let t = &r["train"];
    assert!(t["error"].is_null(), "train panel error: {}", t["error"]);
    let losses: Vec<f64> = t["history"].as_array().unwrap().iter().map(|h| h["loss"].as_f64().unwrap()).collect();
    eprintln!("training losses in the page: {losses:?}; validation accuracy {}", t["val_acc"]);
    assert!(losses.len() >= 2, "too few loss reports: {losses:?}");
    assert!(losses.last().unwrap() < &(losses[0] * 0.95), "the loss did not fall: {losses:?}");
    let trained = out.join("trained");
    run(
        Command::new(env!("CARGO_BIN_EXE_explain"))
            .arg("--run")
            .arg(&trained)
            .args(["--metrics", "--metrics-images", "2", "--curve-steps", "4", "--samples", "4", "--lime-samples", "24"])
            .current_dir(&root),
        "native explain on the checkpoint trained in the page",
    );

    // The page switched its panels to the trained network.
    let used = r["use_trained"].as_str().unwrap_or_default();
    assert!(used.contains("trained in this tab"), "'Explain it in the other panels' did not load the trained network: {used:?}");
    // The webcam path (Chromium's fake camera): a frame was taken and predicted.
    assert!(r["webcam_error"].is_null(), "webcam: {}", r["webcam_error"]);
    assert!(r["webcam_source"].as_array().is_some_and(|a| a.len() == 2), "webcam: no frame taken: {}", r["webcam_source"]);
    // `export` makes what the page serves from a run directory.
    let exported = out.join("exported");
    run(Command::new(env!("CARGO_BIN_EXE_export")).arg("--run").arg(&trained).arg("--web").arg(&exported), "export --run --web");
    let meta: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(exported.join("model.json")).unwrap()).unwrap();
    assert_eq!(meta["checkpoint"], "model.safetensors");
    assert_eq!(std::fs::read(exported.join("model.safetensors")).unwrap(), std::fs::read(trained.join("best.safetensors")).unwrap());

    // Limits and no WebGPU.
    let over = r["over_limit"].as_str().unwrap_or_else(|| panic!("no message for a model over the limits: {}", r["over_limit"]));
    assert!(over.contains("max_storage_buffer_binding_size"), "over-limit message names no limit: {over}");
    assert_eq!(r["no_webgpu"]["state"], "no-webgpu", "without --enable-unsafe-webgpu: {}", r["no_webgpu"]);
    assert!(r["no_webgpu"]["message"].as_str().unwrap().contains("WebGPU"), "{}", r["no_webgpu"]["message"]);

    for shot in ["predict.png", "webcam.png", "explain.png", "train.png", "over_limit.png", "no_webgpu.png"] {
        let f = out.join(shot);
        assert!(f.exists() && std::fs::metadata(&f).unwrap().len() > 1000, "screenshot {} missing", f.display());
    }
    eprintln!(
        "web test: build {built:.0} s, browser {browser_s:.0} s; predict latency (warm, ms) {}; training {} images/s; screenshots in {}",
        p["latency_ms"],
        t["images_per_s"],
        out.display()
    );
}
