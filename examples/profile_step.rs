//! Where a training step's time goes: every dispatch of one model's training step replayed
//! alone (a few times) and timed by process CPU time, grouped by kernel.
//! `cargo run --release --example profile_step -- [model] [batch] [f32|mixed|auto] [labels]`
//! (defaults seed-cnn 64 auto; `labels` groups by whole dispatch label, i.e. per layer and
//! pass, instead of by kernel).
use mien::gpu::{Dispatch, Gpu};
use mien::nn::network::{BuildOptions, Network};
use mien::nn::precision::PrecisionChoice;
use mien::nn::spec::ModelSpec;
use std::collections::BTreeMap;

fn main() -> mien::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let model = args.get(1).map(String::as_str).unwrap_or("seed-cnn");
    let batch: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(64);
    let choice: PrecisionChoice = args.get(3).map_or(Ok(PrecisionChoice::Auto), |s| s.parse())?;
    let by_label = args.get(4).is_some_and(|s| s == "labels");
    let gpu = Gpu::new()?;
    let (precision, _) = choice.resolve(&gpu);
    println!("{}", gpu.describe().lines().next().unwrap_or(""));
    let spec = ModelSpec::preset(model, 7).ok_or_else(|| mien::Error::new(format!("unknown model {model}")))?;
    let net = Network::build(&gpu, &spec, [1, 48, 48], 7, batch, BuildOptions::default().with_precision(precision))?;
    net.init(&gpu, 1)?;
    let ds: Vec<&Dispatch> = net.train_dispatches().collect();
    gpu.run(ds.iter().copied())?;
    let reps = 3;
    let mut by_kernel: BTreeMap<String, (f64, usize)> = BTreeMap::new();
    let mut total = 0.0;
    for d in &ds {
        let c0 = mien::gpu::timing::process_cpu_seconds().unwrap_or(0.0);
        gpu.run((0..reps).map(|_| *d))?;
        let ms = (mien::gpu::timing::process_cpu_seconds().unwrap_or(0.0) - c0) * 1e3 / reps as f64;
        total += ms;
        // Kernel name: the label without the layer name and the parenthesised detail.
        let kernel = if by_label { d.label.clone() } else { d.label.split_whitespace().nth(1).unwrap_or(&d.label).to_string() };
        let e = by_kernel.entry(kernel).or_default();
        e.0 += ms;
        e.1 += 1;
    }
    let mut v: Vec<_> = by_kernel.into_iter().collect();
    v.sort_by(|a, b| b.1 .0.partial_cmp(&a.1 .0).unwrap());
    println!("{model} b{batch} {precision}: {} dispatches, {total:.0} CPU ms per step (10 ms clock ticks; each dispatch alone)", ds.len());
    for (k, (ms, n)) in v {
        println!("{k:<48} {n:>4} dispatches {ms:>9.1} ms {:>5.1}%", 100.0 * ms / total);
    }
    Ok(())
}
