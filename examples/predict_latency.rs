//! The native side of BENCHMARKS.md's page-vs-native table: what the web page's Predict
//! panel does for one image (the shipped demo model at batch 1: upload, inference forward,
//! readback of the 7 probabilities), timed here on this machine's adapter.
//!
//! `cargo run --release --example predict_latency [-- IMAGE]` (default data/faces/Happy/0.png)

use mien::explain::Model;
use mien::nn::checkpoint;
use mien::{Gpu, Result};
use std::time::Instant;

fn main() -> Result<()> {
    let image = std::env::args().nth(1).unwrap_or_else(|| "data/faces/Happy/0.png".into());
    let gpu = Gpu::new()?;
    let file = "data/web/demo/model.safetensors";
    let (bytes, _) = checkpoint::read(std::path::Path::new(file))?;
    let model = Model::from_bytes(&gpu, file, &bytes, 1)?;
    let img = image::open(&image).map_err(|e| mien::Error::new(format!("{image}: {e}")))?.to_luma8();
    let pixels: Vec<f32> = img.pixels().map(|p| p.0[0] as f32 / 255.0).collect();
    let p = model.probabilities(&gpu, &pixels)?;
    let mut ms = Vec::new();
    for _ in 0..20 {
        let t = Instant::now();
        model.probabilities(&gpu, &pixels)?;
        ms.push(t.elapsed().as_secs_f64() * 1e3);
    }
    ms.sort_by(|a, b| a.partial_cmp(b).unwrap());
    println!("adapter: {} ({:?})", gpu.info().name, gpu.info().backend);
    println!("probabilities: {p:?}");
    println!("predict latency (ms, 20 warm runs): median {:.2}, min {:.2}, max {:.2}", ms[ms.len() / 2], ms[0], ms[ms.len() - 1]);
    Ok(())
}
