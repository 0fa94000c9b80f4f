//! `cargo run --release --bin bench`: kernel and training-step throughput of mien on this
//! machine's adapter.
//!
//! (a) every distinct layer of seed-cnn and seed-dnn at `--kernel-batch`, taken from a built
//!     network, forward and backward as the network records them, and every conv / dense
//!     kernel variant forced per pass: time, GFLOP/s (conv, dense) or GB/s (the others);
//! (b) whole training steps (forward, loss, backward, Adam) in images/s for small, seed-cnn
//!     and seed-dnn at each `--batch`, and inference images/s at `--infer-batch`;
//! (c) peak bytes of GPU memory mien allocates per model (network + optimizer) at batch 128.
//! (b) and (c) run once per `--precision` (f32, mixed; rows of mixed runs end in "mixed").
//! Fixed seed; warm-up excluded; medians of `--reps` repetitions.

use clap::Parser;
use mien::gpu::timing::{gpu_time, load_average, process_cpu_seconds, time_dispatches};
use mien::gpu::{Dispatch, Gpu};
use mien::nn::conv2d::{Conv2d, ConvKernels, ConvPass, ConvVariant};
use mien::nn::dense::{Dense, DenseKernels, DenseVariant};
use mien::nn::fuse;
use mien::nn::layer::{Io, Mode};
use mien::nn::network::{BuildOptions, Layer, Network};
use mien::nn::optim::OptimizerConfig;
use mien::nn::precision::{Precision, PrecisionChoice};
use mien::nn::spec::ModelSpec;
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
    /// Fewer repetitions; on CPU adapters skip seed-cnn training above batch 64.
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
    /// Models whose layers (a) times.
    #[arg(long, value_delimiter = ',', default_values_t = vec!["seed-cnn".to_string(), "seed-dnn".to_string()])]
    kernel_models: Vec<String>,
    /// Kernel-variant autotuning: on (cached per adapter), off (built-in defaults) or
    /// refresh (time again). Default: $MIEN_AUTOTUNE, else on.
    #[arg(long, value_name = "on|off|refresh")]
    autotune: Option<mien::gpu::autotune::Mode>,
    /// Precisions of the step, inference and memory benchmarks: f32, mixed, auto (mixed
    /// where the adapter has cooperative matrices), or a list (f32,mixed).
    #[arg(long, value_enum, value_delimiter = ',', default_values_t = vec![PrecisionChoice::Auto])]
    precision: Vec<PrecisionChoice>,
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

impl Row {
    /// A row of `group` with the timing fields of `t` (ms per call) and nothing else set.
    fn timed(group: &'static str, name: String, seconds: f64, min: f64, reps: usize, inner: usize) -> Row {
        Row {
            group,
            name,
            ms: seconds * 1e3,
            min_ms: min * 1e3,
            gpu_ms: None,
            cpu_ms: None,
            gflops: None,
            gbps: None,
            images_per_s: None,
            peak_bytes: None,
            reps,
            inner,
            load: load_average(),
        }
    }
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

    fn push(&mut self, row: Row) {
        print_row(&row);
        self.rows.push(row);
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
        self.push(Row {
            gpu_ms,
            cpu_ms,
            gflops: (flops > 0.0).then(|| flops / secs * 1e-9),
            gbps: (bytes > 0.0).then(|| bytes / secs * 1e-9),
            ..Row::timed("kernel", name, t.seconds, t.min, t.reps, t.inner)
        });
        Ok(())
    }

    /// Every distinct layer of `model` at batch `n`, taken from a built network: its
    /// training forward and backward as the network records them, and for conv and dense
    /// layers each pass again with every kernel variant the adapter supports, forced. Conv
    /// and dense rows give GFLOP/s; the others GB/s counting each tensor a pass binds once
    /// (forward x and y; backward dy, dx and, where read, x): the least traffic it can move.
    fn layers(&mut self, model: &str, n: usize) -> Result<()> {
        let gpu = self.gpu;
        let spec = ModelSpec::preset(model, 7).ok_or_else(|| mien::Error::new(format!("unknown model {model}")))?;
        // Every tensor in its own buffer, so one layer's passes can be replayed alone.
        let net = Network::build(gpu, &spec, [1, 48, 48], 7, n, BuildOptions { input_grad: false, reuse: false, fuse: false, fuse_stats: false, fuse_pool: false, precision: Precision::F32 })?;
        net.init(gpu, 1)?;
        self.fill(&net)?;
        // One whole step first: argmax indices, saved statistics and gradients are valid.
        gpu.run(net.train_dispatches())?;
        let mut seen = std::collections::HashSet::new();
        for (i, layer) in net.layers.iter().enumerate() {
            let tag = layer_tag(layer, n);
            // Layers of one kind and shape run the same kernels: time the first.
            let shape_key = format!("{} {:?}->{:?}", layer.spec.kind_name(), layer.in_shape, layer.out_shape);
            if layer.op.is_view() || !seen.insert(shape_key) || !self.wanted(&tag) {
                continue;
            }
            let io = net.io(i, i > 0);
            let [x, y] = [io.x.len(), io.y.len()].map(|v| (v * 4) as f64);
            let flops = gemm_flops(layer);
            let (fb, bb) = if flops > 0.0 { (0.0, 0.0) } else { (x + y, y + x + if layer.op.backward_reads_input() { x } else { 0.0 }) };
            self.kernel(format!("{tag} forward"), &layer.op.forward(gpu, &io, Mode::Train)?, flops, fb)?;
            self.kernel(format!("{tag} backward"), &layer.op.backward(gpu, &io)?, if io.dx.is_some() { 2.0 * flops } else { flops }, bb)?;
            // A BatchNorm and the activation after it as training fusion runs them (one
            // forward pass over x and y, one backward over dy, x and dx: fuse.rs).
            if let Some(next) = net.layers.get(i + 1).filter(|next| fuse::fusable(layer.op.as_ref(), next.op.as_ref())) {
                let tag = format!("{}+{}", layer.name, layer_tag(next, n));
                self.kernel(format!("{tag} fused forward"), &fuse::train_forward(&net, gpu, i)?, 0.0, fb)?;
                self.kernel(format!("{tag} fused backward"), &fuse::train_backward(&net, gpu, i, i > 0)?, 0.0, bb)?;
            }
            if let Some(conv) = layer.op.as_any().downcast_ref::<Conv2d>() {
                self.conv_variants(conv, &io, flops)?;
            }
            if let Some(dense) = layer.op.as_any().downcast_ref::<Dense>() {
                self.dense_variants(dense, &io, flops)?;
            }
        }
        Ok(())
    }

    /// Each pass of `conv` with every variant that supports it (the others as chosen).
    fn conv_variants(&mut self, conv: &Conv2d, io: &Io, flops: f64) -> Result<()> {
        let gpu = self.gpu;
        let tag = format!("  {}", conv.name);
        println!("{}: uses {}", conv.name, conv.describe_variants());
        let (w, b) = (io.value(0), io.maybe_value(1));
        let scratch = gpu.tensor("bench dx", &conv.input_shape)?;
        let dx = io.dx.unwrap_or(&scratch);
        for (k, pass) in ConvPass::ALL.into_iter().enumerate() {
            for v in ConvVariant::ALL.into_iter().filter(|&v| conv.supports(gpu, pass, v)) {
                let mut variants = conv.variants();
                variants[k] = v;
                let twin = Conv2d::new_with(gpu, &conv.name, conv.cfg, &conv.input_shape, ConvKernels::General)?.with_variants(gpu, variants)?;
                let ds = match pass {
                    ConvPass::Forward => twin.forward_dispatches(gpu, io.x, w, b, io.y)?,
                    ConvPass::BackwardInput => twin.backward_input_dispatches(gpu, dx, io.dy(), w)?,
                    ConvPass::BackwardWeight => twin.backward_weight(gpu, io.grad(0), io.dy(), io.x, false)?,
                };
                self.kernel(format!("{tag} {} {}", pass.name(), v.name()), &ds, flops, 0.0)?;
            }
        }
        Ok(())
    }

    /// Each pass of `dense` with every variant the adapter supports.
    fn dense_variants(&mut self, dense: &Dense, io: &Io, flops: f64) -> Result<()> {
        let gpu = self.gpu;
        let tag = format!("  {}", dense.name);
        println!("{}: uses {}", dense.name, dense.describe_variants());
        let (w, b) = (io.value(0), io.maybe_value(1));
        let scratch = gpu.tensor("bench dx", &[dense.batch, dense.in_features])?;
        let dx = io.dx.unwrap_or(&scratch);
        for v in DenseVariant::ALL.into_iter().filter(|&v| dense.supports(gpu, v)) {
            let twin = Dense::new_with(gpu, &dense.name, dense.in_features, dense.out_features, dense.bias, &[dense.batch, dense.in_features], DenseKernels::Only(v))?;
            let vn = v.name();
            self.kernel(format!("{tag} forward {vn}"), &twin.forward_dispatches(gpu, io.x, w, b, io.y)?, flops, 0.0)?;
            self.kernel(format!("{tag} backward_input {vn}"), &twin.backward_input_dispatches(gpu, dx, io.dy(), w)?, flops, 0.0)?;
            self.kernel(format!("{tag} backward_weight {vn}"), &twin.backward_weight_dispatches(gpu, io.grad(0), io.dy(), io.x, false)?, flops, 0.0)?;
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
    fn step(&mut self, model: &str, batch: usize, precision: Precision) -> Result<()> {
        let name = format!("step {model} b{batch}{}", precision.key_suffix());
        if !self.wanted(&name) {
            return Ok(());
        }
        let cpu = self.gpu.info().device_type == wgpu::DeviceType::Cpu;
        if self.args.quick && cpu && model == "seed-cnn" && batch > 64 {
            println!("{name:<58} skipped (--quick)");
            return Ok(());
        }
        let gpu = self.gpu;
        let spec = ModelSpec::preset(model, 7).ok_or_else(|| mien::Error::new(format!("unknown model {model}")))?;
        let net = Network::build(gpu, &spec, [1, 48, 48], 7, batch, BuildOptions::default().with_precision(precision))?;
        net.init(gpu, 1)?;
        self.fill(&net)?;
        let mut opt = net.optimizer(gpu, "adam", OptimizerConfig::adam())?;
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
        self.push(Row { cpu_ms, images_per_s: Some(batch as f64 / s), ..Row::timed("step", name, s, min, samples.len(), inner) });
        Ok(())
    }

    /// Inference forward + softmax at `batch`: images/s.
    fn infer(&mut self, model: &str, batch: usize, precision: Precision) -> Result<()> {
        let name = format!("infer {model} b{batch}{}", precision.key_suffix());
        if !self.wanted(&name) {
            return Ok(());
        }
        let gpu = self.gpu;
        let spec = ModelSpec::preset(model, 7).ok_or_else(|| mien::Error::new(format!("unknown model {model}")))?;
        let net = Network::build(gpu, &spec, [1, 48, 48], 7, batch, BuildOptions::default().with_precision(precision))?;
        net.init(gpu, 1)?;
        self.fill(&net)?;
        let ds: Vec<&Dispatch> = net.infer_dispatches().collect();
        let t = time_dispatches(gpu, &ds, self.reps, self.target_s)?;
        self.push(Row { images_per_s: Some(batch as f64 / t.seconds), ..Row::timed("infer", name, t.seconds, t.min, t.reps, t.inner) });
        Ok(())
    }

    /// Peak bytes mien allocates for a network and its Adam state at `batch` (everything
    /// else dropped first; recording allocates lazily-created scratch too).
    fn memory(&mut self, model: &str, batch: usize, precision: Precision) -> Result<()> {
        let name = format!("memory {model} b{batch}{}", precision.key_suffix());
        if !self.wanted(&name) {
            return Ok(());
        }
        let gpu = self.gpu;
        let spec = ModelSpec::preset(model, 7).ok_or_else(|| mien::Error::new(format!("unknown model {model}")))?;
        gpu.mem().reset_peak();
        let live0 = gpu.mem().live();
        let net = Network::build(gpu, &spec, [1, 48, 48], 7, batch, BuildOptions::default().with_precision(precision))?;
        let opt = net.optimizer(gpu, "adam", OptimizerConfig::adam())?;
        let peak = gpu.mem().peak() - live0;
        drop((opt, net));
        self.push(Row { peak_bytes: Some(peak), ..Row::timed("memory", name, 0.0, 0.0, 1, 1) });
        Ok(())
    }
}

/// "conv2d_2 64x48x48->64x48x48 b64": the layer's name and per-sample shapes.
fn layer_tag(layer: &Layer, n: usize) -> String {
    let dims = |s: &[usize]| s[1..].iter().map(|d| d.to_string()).collect::<Vec<_>>().join("x");
    format!("{} {}->{} b{n}", layer.name, dims(&layer.in_shape), dims(&layer.out_shape))
}

/// Multiply-adds x 2 of one GEMM pass of a conv or dense layer (0 for other layers).
fn gemm_flops(layer: &Layer) -> f64 {
    if let Some(c) = layer.op.as_any().downcast_ref::<Conv2d>() {
        let [n, co, oh, ow] = c.output_shape;
        let (kh, kw) = c.cfg.kernel;
        return 2.0 * (n * co * oh * ow * c.cfg.in_channels * kh * kw) as f64;
    }
    if let Some(d) = layer.op.as_any().downcast_ref::<Dense>() {
        return 2.0 * (d.batch * d.in_features * d.out_features) as f64;
    }
    0.0
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
    println!("training fusion (BatchNorm + activation, src/nn/fuse.rs): {}", if fuse::enabled_by_env() { "on" } else { "off (MIEN_FUSE=0)" });
    let reps = args.reps.unwrap_or(if args.quick { 3 } else { 5 });
    let target_s = if args.quick { 0.15 } else { 0.4 };
    let mut ctx = Ctx { gpu: &gpu, args: &args, reps, target_s, rows: Vec::new(), rng: Rng::new(0x5EED) };

    println!("\n(a) layers of seed-cnn and seed-dnn (median ms per call; backward = parameter and input gradients)");
    for model in &args.kernel_models {
        ctx.layers(model, args.kernel_batch)?;
    }

    println!("\n(b) training steps (forward, loss, backward, Adam) and inference");
    // A case the adapter cannot run (a buffer over its binding limit) is reported and
    // skipped, not fatal.
    let skip = |what: &str, r: Result<()>| {
        if let Err(e) = r {
            println!("{what:<58} not run: {e}");
        }
    };
    let mut precisions: Vec<Precision> = args.precision.iter().map(|c| c.pick(&gpu)).collect();
    precisions.dedup();
    for &p in &precisions {
        println!("precision {p}: {}", p.describe(&gpu));
    }
    for &p in &precisions {
        for model in &args.models {
            for &b in &args.batch {
                skip(&format!("step {model} b{b}{}", p.key_suffix()), ctx.step(model, b, p));
            }
        }
        for model in &args.models {
            // A batch over the adapter's binding limit (seed-cnn at 256 on lavapipe): a quarter.
            if let Err(e) = ctx.infer(model, args.infer_batch, p) {
                skip(&format!("infer {model} b{}{}", args.infer_batch, p.key_suffix()), Err(e));
                skip(&format!("infer {model} b{}{}", args.infer_batch / 4, p.key_suffix()), ctx.infer(model, args.infer_batch / 4, p));
            }
        }
    }

    println!("\n(c) peak GPU memory allocated by mien (network + Adam state + packed conv weights and partials)");
    for &p in &precisions {
        for model in &args.models {
            skip(&format!("memory {model} b128{}", p.key_suffix()), ctx.memory(model, 128, p));
        }
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
