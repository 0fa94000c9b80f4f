//! `cargo run --release --bin bench`: kernel and training-step throughput of mien on this
//! machine's adapter.
//!
//! (a) every kernel of the seed-cnn layer shapes at batch 64, forward and backward: time,
//!     GFLOP/s (GEMM-like kernels) or GB/s (memory-bound ones);
//! (b) whole training steps (forward, loss, backward, Adam) in images/s for small, seed-cnn
//!     and seed-dnn at each `--batch`, and inference images/s at `--infer-batch`;
//! (c) peak bytes of GPU memory mien allocates per model (network + optimizer) at batch 128.
//! Fixed seed; warm-up excluded; medians of `--reps` repetitions.

use clap::Parser;
use mien::gpu::timing::{gpu_time, load_average, process_cpu_seconds, time_dispatches};
use mien::gpu::{Dispatch, Gpu, Tensor};
use mien::nn::activation::{Activation, Kind};
use mien::nn::batchnorm::{BatchNorm, BatchNormConfig};
use mien::nn::conv2d::{self, Conv2d, Conv2dConfig, ConvKernels};
use mien::nn::dense::{Dense, DenseKernels, DenseVariant};
use mien::nn::dropout::Dropout;
use mien::nn::network::{BuildOptions, Network};
use mien::nn::optim::{Optimizer, OptimizerConfig};
use mien::nn::pool::{Pool2d, PoolConfig, PoolKind};
use mien::nn::spec::ModelSpec;
use mien::nn::Padding;
use mien::rng::Rng;
use mien::Result;
use serde::Serialize;
use std::time::Instant;

#[derive(Parser, Debug)]
#[command(about = "Benchmark mien's kernels and training steps on this machine's GPU adapter")]
struct Args {
    /// Also write every figure as JSON to FILE.
    #[arg(long, value_name = "FILE")]
    json: Option<std::path::PathBuf>,
    /// Fewer repetitions and skip the slow cases (seed-cnn training at batch 128).
    #[arg(long)]
    quick: bool,
    /// Only run cases whose name contains this substring (e.g. `conv`, `step`, `seed-cnn`).
    #[arg(long)]
    filter: Option<String>,
    /// Batch sizes of the training-step benchmark.
    #[arg(long, value_delimiter = ',', default_values_t = vec![32usize, 64, 128])]
    batch: Vec<usize>,
    /// Batch of the per-kernel benchmark (the seed-cnn layer shapes).
    #[arg(long, default_value_t = 64)]
    kernel_batch: usize,
    /// Batch of the inference benchmark.
    #[arg(long, default_value_t = 256)]
    infer_batch: usize,
    /// Repetitions per case (the median is reported); default 5, 3 with --quick.
    #[arg(long)]
    reps: Option<usize>,
    /// Models of the step / inference / memory benchmarks.
    #[arg(long, value_delimiter = ',', default_values_t = vec!["small".to_string(), "seed-cnn".to_string(), "seed-dnn".to_string()])]
    models: Vec<String>,
    /// Kernel-variant autotuning: on (cached per adapter), off (built-in defaults) or
    /// refresh (time again). Default: $MIEN_AUTOTUNE, else on.
    #[arg(long, value_name = "on|off|refresh")]
    autotune: Option<mien::gpu::autotune::Mode>,
}

#[derive(Serialize, Debug, Clone)]
struct Row {
    group: &'static str,
    name: String,
    /// Median milliseconds per replay (kernel) or per step / forward batch.
    ms: f64,
    min_ms: f64,
    /// Timestamp-query milliseconds, where the adapter has TIMESTAMP_QUERY.
    gpu_ms: Option<f64>,
    /// Process CPU milliseconds per replay (all threads; kernels only): robust to other
    /// processes competing for the cores, unlike `ms` / `gpu_ms`.
    cpu_ms: Option<f64>,
    gflops: Option<f64>,
    gbps: Option<f64>,
    images_per_s: Option<f64>,
    peak_bytes: Option<u64>,
    reps: usize,
    inner: usize,
    load: Option<f64>,
}

#[derive(Serialize)]
struct Report {
    adapter: String,
    driver: String,
    describe: String,
    cpu_threads: usize,
    quick: bool,
    rows: Vec<Row>,
}

struct Ctx<'a> {
    gpu: &'a Gpu,
    args: &'a Args,
    reps: usize,
    target_s: f64,
    rows: Vec<Row>,
    rng: Rng,
}

impl Ctx<'_> {
    fn wanted(&self, name: &str) -> bool {
        self.args.filter.as_deref().is_none_or(|f| name.contains(f))
    }

    fn rand(&mut self, label: &str, shape: &[usize]) -> Result<Tensor> {
        let n: usize = shape.iter().product();
        let v = self.rng.vec_f32(n, -1.0, 1.0);
        self.gpu.upload(label, shape, &v)
    }

    /// Time one kernel (a dispatch list) with its FLOP and byte counts.
    fn kernel(&mut self, name: String, ds: &[Dispatch], flops: f64, bytes: f64) -> Result<()> {
        if !self.wanted(&name) {
            return Ok(());
        }
        let refs: Vec<&Dispatch> = ds.iter().collect();
        let c0 = process_cpu_seconds();
        let t = time_dispatches(self.gpu, &refs, self.reps, self.target_s)?;
        let cpu_ms = c0.zip(process_cpu_seconds()).map(|(a, b)| (b - a) / (1 + t.reps * t.inner) as f64 * 1e3);
        let gpu_ms = gpu_time(self.gpu, &refs, self.reps.min(3))?.map(|s| s * 1e3);
        let secs = gpu_ms.map(|m| m * 1e-3).unwrap_or(t.seconds);
        let row = Row {
            group: "kernel",
            name,
            ms: t.seconds * 1e3,
            min_ms: t.min * 1e3,
            gpu_ms,
            cpu_ms,
            gflops: (flops > 0.0).then(|| flops / secs * 1e-9),
            gbps: (bytes > 0.0).then(|| bytes / secs * 1e-9),
            images_per_s: None,
            peak_bytes: None,
            reps: t.reps,
            inner: t.inner,
            load: load_average(),
        };
        print_row(&row);
        self.rows.push(row);
        Ok(())
    }

    fn conv(&mut self, n: usize, ci: usize, co: usize, hw: usize) -> Result<()> {
        let tag = format!("conv {ci}->{co} {hw}x{hw} b{n}");
        if !self.wanted(&tag) {
            return Ok(());
        }
        let gpu = self.gpu;
        let layer = Conv2d::new(gpu, &tag, Conv2dConfig::same(ci, co, (3, 3)), &[n, ci, hw, hw])?;
        let x = self.rand("x", &layer.input_shape)?;
        let w = self.rand("w", &layer.weight_shape())?;
        let b = self.rand("b", &[co])?;
        let dy = self.rand("dy", &layer.output_shape)?;
        let y = gpu.tensor("y", &layer.output_shape)?;
        let dx = gpu.tensor("dx", &layer.input_shape)?;
        let dw = gpu.tensor("dw", &layer.weight_shape())?;
        let db = gpu.tensor("db", &[co])?;
        let flops = 2.0 * (n * co * hw * hw * ci * 9) as f64;
        let act = |c: usize| (n * c * hw * hw * 4) as f64;
        // Every variant the autotuner chooses among, forced, for the three passes.
        println!("{tag}: uses {} (autotuned)", layer.variant_name());
        let cfg = Conv2dConfig::same(ci, co, (3, 3));
        let mut variants = vec![];
        if conv2d::subgroup::applicable(gpu, &layer) {
            variants.push(ConvKernels::Subgroup);
        }
        variants.extend([ConvKernels::Fast, ConvKernels::Tiled]);
        for kernels in variants {
            let l = Conv2d::new_with(gpu, &tag, cfg, &[n, ci, hw, hw], kernels)?;
            let v = l.variant_name();
            self.kernel(format!("{tag} forward {v}"), &l.forward_dispatches(gpu, &x, &w, Some(&b), &y)?, flops, 0.0)?;
            self.kernel(format!("{tag} backward_input {v}"), &l.backward_input_dispatches(gpu, &dx, &dy, &w)?, flops, 0.0)?;
            self.kernel(format!("{tag} backward_weight {v}"), &l.backward_weight(gpu, &dw, &dy, &x, false)?, flops, 0.0)?;
        }
        self.kernel(format!("{tag} backward_bias"), &[layer.backward_bias(gpu, &db, &dy, false)?], 0.0, act(co))?;
        Ok(())
    }

    fn dense(&mut self, n: usize, i: usize, o: usize) -> Result<()> {
        let tag = format!("dense {i}->{o} b{n}");
        if !self.wanted(&tag) {
            return Ok(());
        }
        let gpu = self.gpu;
        let layer = Dense::new(gpu, &tag, i, o, true, &[n, i])?;
        let x = self.rand("x", &[n, i])?;
        let w = self.rand("w", &[o, i])?;
        let b = self.rand("b", &[o])?;
        let dy = self.rand("dy", &[n, o])?;
        let y = gpu.tensor("y", &[n, o])?;
        let dx = gpu.tensor("dx", &[n, i])?;
        let dw = gpu.tensor("dw", &[o, i])?;
        let db = gpu.tensor("db", &[o])?;
        let flops = 2.0 * (n * i * o) as f64;
        // Every variant this adapter supports, forced; the layer's own choice (the
        // autotuner's, or the default with --autotune off) is printed first.
        println!("{tag}: uses {}", layer.describe_variants());
        for v in DenseVariant::ALL {
            if !layer.supports(gpu, v) {
                continue;
            }
            let vn = v.name();
            let lv = Dense::new_with(gpu, &tag, i, o, true, &[n, i], DenseKernels::Only(v))?;
            self.kernel(format!("{tag} forward {vn}"), &lv.forward_dispatches(gpu, &x, &w, Some(&b), &y)?, flops, 0.0)?;
            self.kernel(format!("{tag} backward_input {vn}"), &lv.backward_input_dispatches(gpu, &dx, &dy, &w)?, flops, 0.0)?;
            self.kernel(format!("{tag} backward_weight {vn}"), &lv.backward_weight_dispatches(gpu, &dw, &dy, &x, false)?, flops, 0.0)?;
        }
        self.kernel(format!("{tag} backward_bias"), &[layer.backward_bias(gpu, &db, &dy, false)?], 0.0, (n * o * 4) as f64)?;
        Ok(())
    }

    /// Memory-bound layers at a seed-cnn shape: GB/s from the bytes each kernel must move.
    fn elementwise(&mut self, n: usize) -> Result<()> {
        let gpu = self.gpu;
        let shape = [n, 64, 48, 48];
        let e = (shape.iter().product::<usize>() * 4) as f64;
        if self.wanted("batchnorm") {
            let tag = format!("batchnorm 64x48x48 b{n}");
            let bn = BatchNorm::new(gpu, &tag, BatchNormConfig { eps: 1e-3, momentum: 0.99 }, &shape)?;
            let x = self.rand("x", &shape)?;
            let dy = self.rand("dy", &shape)?;
            let (y, dx) = (gpu.tensor("y", &shape)?, gpu.tensor("dx", &shape)?);
            let gamma = gpu.upload("gamma", &[64], &[1.0f32; 64])?;
            let beta = gpu.tensor("beta", &[64])?;
            let rm = gpu.tensor("rm", &[64])?;
            let rv = gpu.upload("rv", &[64], &[1.0f32; 64])?;
            let saved = gpu.tensor("saved", &[2, 64])?;
            let (dg, dbeta) = (gpu.tensor("dg", &[64])?, gpu.tensor("db", &[64])?);
            // Training forward: statistics read x, normalize reads x and writes y.
            let fwd = bn.forward_train(gpu, &x, &gamma, &beta, &rm, &rv, &saved, &y)?;
            self.kernel(format!("{tag} forward_train"), &fwd, 0.0, 3.0 * e)?;
            self.kernel(format!("{tag} forward_infer"), &[bn.forward_infer(gpu, &x, &gamma, &beta, &rm, &rv, &y)?], 0.0, 2.0 * e)?;
            // Backward: sums read dy and x; dx reads dy, x and writes dx.
            let bwd = bn.backward(gpu, &dx, &dg, &dbeta, &dy, &x, &gamma, &saved, false)?;
            self.kernel(format!("{tag} backward"), &bwd, 0.0, 5.0 * e)?;
        }
        if self.wanted("prelu") {
            let tag = format!("prelu(per element) 64x48x48 b{n}");
            let act = Activation::new(gpu, &tag, Kind::PReluPerElement, &shape)?;
            let ps = act.param_shape().unwrap();
            let x = self.rand("x", &shape)?;
            let dy = self.rand("dy", &shape)?;
            let alpha = self.rand("alpha", &ps)?;
            let dalpha = gpu.tensor("dalpha", &ps)?;
            let (y, dx) = (gpu.tensor("y", &shape)?, gpu.tensor("dx", &shape)?);
            self.kernel(format!("{tag} forward"), &[act.forward(gpu, &x, Some(&alpha), &y)?], 0.0, 2.0 * e)?;
            self.kernel(format!("{tag} backward_input"), &[act.backward_input(gpu, &dx, &dy, &x, Some(&alpha))?], 0.0, 3.0 * e)?;
            self.kernel(format!("{tag} backward_alpha"), &[act.backward_alpha(gpu, &dalpha, &dy, &x, false)?], 0.0, 2.0 * e)?;
        }
        if self.wanted("pool") {
            let tag = format!("maxpool 2x2 64x48x48 b{n}");
            let cfg = PoolConfig { kind: PoolKind::Max, window: (2, 2), stride: (2, 2), padding: Padding::Valid };
            let pool = Pool2d::new(gpu, &tag, cfg, &shape)?;
            let x = self.rand("x", &shape)?;
            let dy = self.rand("dy", &pool.output_shape)?;
            let (y, am, dx) = (gpu.tensor("y", &pool.output_shape)?, gpu.tensor("argmax", &pool.output_shape)?, gpu.tensor("dx", &shape)?);
            let fwd = pool.forward(gpu, &x, &y, Some(&am))?;
            self.kernel(format!("{tag} forward"), &[fwd], 0.0, 1.5 * e)?;
            // Backward reads the forward's argmax: run the forward once first.
            gpu.run([&pool.forward(gpu, &x, &y, Some(&am))?])?;
            self.kernel(format!("{tag} backward"), &[pool.backward(gpu, &dx, &dy, Some(&am))?], 0.0, 1.5 * e)?;
        }
        if self.wanted("dropout") {
            let dshape = [n, 64, 24, 24];
            let de = (dshape.iter().product::<usize>() * 4) as f64;
            let tag = format!("dropout 0.3 64x24x24 b{n}");
            let d = Dropout::new(gpu, &tag, 0.3, &dshape)?;
            let x = self.rand("x", &dshape)?;
            let (y, dx) = (gpu.tensor("y", &dshape)?, gpu.tensor("dx", &dshape)?);
            self.kernel(format!("{tag} forward"), &[d.forward(gpu, &x, &y, true)?], 0.0, 2.0 * de)?;
            self.kernel(format!("{tag} backward"), &[d.backward(gpu, &dx, &x)?], 0.0, 2.0 * de)?;
        }
        Ok(())
    }

    /// Random images and labels for a network's batch.
    fn fill(&mut self, net: &Network) -> Result<()> {
        let [c, h, w] = net.input_chw;
        let images = self.rng.vec_f32(net.batch * c * h * w, 0.0, 1.0);
        let labels: Vec<u32> = (0..net.batch).map(|_| self.rng.below(net.classes) as u32).collect();
        net.set_batch(self.gpu, &images, &labels)
    }

    /// Training steps (forward, loss, backward, Adam) at `batch`: images/s.
    fn step(&mut self, model: &str, batch: usize) -> Result<()> {
        let name = format!("step {model} b{batch}");
        if !self.wanted(&name) {
            return Ok(());
        }
        if self.args.quick && model == "seed-cnn" && batch > 64 {
            println!("{name:<58} skipped (--quick)");
            return Ok(());
        }
        let gpu = self.gpu;
        let spec = ModelSpec::preset(model, 7).ok_or_else(|| mien::Error::new(format!("unknown model {model}")))?;
        let net = Network::build(gpu, &spec, [1, 48, 48], 7, batch, BuildOptions::default())?;
        net.init(gpu, 1)?;
        self.fill(&net)?;
        let mut opt = Optimizer::new(gpu, "adam", OptimizerConfig::adam(), &net.arena, &net.grads)?;
        // Warm-up step, then as many steps per repetition as fit the target time.
        let t0 = Instant::now();
        {
            let d = opt.step(gpu, 1e-3);
            gpu.run(net.train_dispatches().chain(std::iter::once(d)))?;
        }
        let first = t0.elapsed().as_secs_f64();
        let inner = ((self.target_s / first).floor() as usize).clamp(1, 32);
        let mut samples = Vec::new();
        let cpu0 = mien::gpu::timing::process_cpu_seconds();
        for _ in 0..self.reps {
            let t = Instant::now();
            let mut last = None;
            for _ in 0..inner {
                let d = opt.step(gpu, 1e-3);
                last = Some(gpu.submit(net.train_dispatches().chain(std::iter::once(d))));
            }
            gpu.wait(last)?;
            samples.push(t.elapsed().as_secs_f64() / inner as f64);
        }
        // Process CPU time per step: on a CPU driver the robust cost figure under load.
        let cpu_ms = cpu0.zip(mien::gpu::timing::process_cpu_seconds()).map(|(a, b)| (b - a) * 1e3 / (self.reps * inner) as f64);
        let s = mien::gpu::timing::median(&samples);
        let min = samples.iter().cloned().fold(f64::INFINITY, f64::min);
        let row = Row {
            group: "step",
            name,
            ms: s * 1e3,
            min_ms: min * 1e3,
            gpu_ms: None,
            cpu_ms,
            gflops: None,
            gbps: None,
            images_per_s: Some(batch as f64 / s),
            peak_bytes: None,
            reps: samples.len(),
            inner,
            load: load_average(),
        };
        print_row(&row);
        self.rows.push(row);
        Ok(())
    }

    /// Inference forward + softmax at `batch`: images/s.
    fn infer(&mut self, model: &str, batch: usize) -> Result<()> {
        let name = format!("infer {model} b{batch}");
        if !self.wanted(&name) {
            return Ok(());
        }
        let gpu = self.gpu;
        let spec = ModelSpec::preset(model, 7).ok_or_else(|| mien::Error::new(format!("unknown model {model}")))?;
        let net = Network::build(gpu, &spec, [1, 48, 48], 7, batch, BuildOptions::default())?;
        net.init(gpu, 1)?;
        self.fill(&net)?;
        let ds: Vec<&Dispatch> = net.infer_dispatches().collect();
        let t = time_dispatches(gpu, &ds, self.reps, self.target_s)?;
        let row = Row {
            group: "infer",
            name,
            ms: t.seconds * 1e3,
            min_ms: t.min * 1e3,
            gpu_ms: None,
            cpu_ms: None,
            gflops: None,
            gbps: None,
            images_per_s: Some(batch as f64 / t.seconds),
            peak_bytes: None,
            reps: t.reps,
            inner: t.inner,
            load: load_average(),
        };
        print_row(&row);
        self.rows.push(row);
        Ok(())
    }

    /// Peak bytes mien allocates for a network and its Adam state at `batch` (everything
    /// else dropped first; recording allocates lazily-created scratch too).
    fn memory(&mut self, model: &str, batch: usize) -> Result<()> {
        let name = format!("memory {model} b{batch}");
        if !self.wanted(&name) {
            return Ok(());
        }
        let gpu = self.gpu;
        let spec = ModelSpec::preset(model, 7).ok_or_else(|| mien::Error::new(format!("unknown model {model}")))?;
        gpu.mem().reset_peak();
        let live0 = gpu.mem().live();
        let net = Network::build(gpu, &spec, [1, 48, 48], 7, batch, BuildOptions::default())?;
        let opt = Optimizer::new(gpu, "adam", OptimizerConfig::adam(), &net.arena, &net.grads)?;
        let peak = gpu.mem().peak() - live0;
        drop((opt, net));
        let row = Row {
            group: "memory",
            name,
            ms: 0.0,
            min_ms: 0.0,
            gpu_ms: None,
            cpu_ms: None,
            gflops: None,
            gbps: None,
            images_per_s: None,
            peak_bytes: Some(peak),
            reps: 1,
            inner: 1,
            load: load_average(),
        };
        print_row(&row);
        self.rows.push(row);
        Ok(())
    }
}

fn print_row(r: &Row) {
    let mut s = format!("{:<58}", r.name);
    if let Some(p) = r.peak_bytes {
        s += &format!("{:>10.1} MiB", p as f64 / (1024.0 * 1024.0));
    } else {
        s += &format!("{:>11.3} ms", r.ms);
        if let Some(g) = r.gpu_ms {
            s += &format!(" (gpu {g:.3} ms)");
        }
        if let Some(c) = r.cpu_ms {
            s += &format!(" (cpu {c:.1} ms)");
        }
        if let Some(g) = r.gflops {
            s += &format!("{g:>9.2} GFLOP/s");
        }
        if let Some(g) = r.gbps {
            s += &format!("{g:>9.2} GB/s");
        }
        if let Some(i) = r.images_per_s {
            s += &format!("{i:>9.1} img/s");
        }
        s += &format!("   [{}x{}]", r.reps, r.inner);
    }
    if let Some(l) = r.load {
        s += &format!("  load {l:.2}");
    }
    println!("{s}");
}

fn main() -> Result<()> {
    // Warnings, and the variant each dense layer uses (RUST_LOG overrides).
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn,mien::nn::dense=info")).init();
    let args = Args::parse();
    let gpu = Gpu::new()?;
    if let Some(m) = args.autotune {
        gpu.autotune().set_mode(m);
    }
    println!("{}", gpu.describe());
    let threads = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    println!("cpu threads: {threads}; load average at start: {:?}", load_average());
    let reps = args.reps.unwrap_or(if args.quick { 3 } else { 5 });
    let target_s = if args.quick { 0.15 } else { 0.4 };
    let mut ctx = Ctx { gpu: &gpu, args: &args, reps, target_s, rows: Vec::new(), rng: Rng::new(0x5EED) };

    println!("\n(a) kernels, seed-cnn layer shapes (median ms per call)");
    let n = args.kernel_batch;
    for (ci, co, hw) in [(1, 64, 48), (64, 64, 48), (64, 128, 24), (128, 128, 24), (128, 128, 12)] {
        ctx.conv(n, ci, co, hw)?;
    }
    for (i, o) in [(4608, 512), (2304, 600), (600, 600), (512, 256), (256, 7)] {
        ctx.dense(n, i, o)?;
    }
    ctx.elementwise(n)?;

    println!("\n(b) training steps (forward, loss, backward, Adam) and inference");
    // A case the adapter cannot run (a buffer over its binding limit) is reported and
    // skipped, not fatal.
    let skip = |what: &str, r: Result<()>| {
        if let Err(e) = r {
            println!("{what:<58} not run: {e}");
        }
    };
    for model in &args.models {
        for &b in &args.batch {
            skip(&format!("step {model} b{b}"), ctx.step(model, b));
        }
    }
    for model in &args.models {
        // A batch over the adapter's binding limit (seed-cnn at 256 on lavapipe): a quarter.
        if let Err(e) = ctx.infer(model, args.infer_batch) {
            skip(&format!("infer {model} b{}", args.infer_batch), Err(e));
            skip(&format!("infer {model} b{}", args.infer_batch / 4), ctx.infer(model, args.infer_batch / 4));
        }
    }

    println!("\n(c) peak GPU memory allocated by mien (network + Adam state + packed conv weights and partials)");
    for model in &args.models {
        skip(&format!("memory {model} b128"), ctx.memory(model, 128));
    }

    if let Some(path) = &args.json {
        let info = gpu.info();
        let report = Report {
            adapter: info.name.clone(),
            driver: format!("{} {}", info.driver, info.driver_info),
            describe: gpu.describe(),
            cpu_threads: threads,
            quick: args.quick,
            rows: ctx.rows,
        };
        let text = serde_json::to_string_pretty(&report).map_err(|e| mien::Error::new(format!("json: {e}")))?;
        std::fs::write(path, text).map_err(|e| mien::Error::new(format!("{}: {e}", path.display())))?;
        println!("\nwrote {}", path.display());
    }
    Ok(())
}
