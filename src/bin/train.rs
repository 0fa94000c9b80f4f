//! `cargo run --release --bin train`: train a model on FER2013 (any of its layouts) or, with
//! no --data, on the built-in synthetic faces. Writes runs/<name>/ (checkpoints, history,
//! curves, confusion matrix, summary) and points runs/latest at it.

use clap::parser::ValueSource;
use clap::{ArgMatches, CommandFactory, FromArgMatches, Parser};
use mien::nn::augment::AugmentConfig;
use mien::nn::precision::PrecisionChoice;
use mien::train::{self, LrScale, OptimizerChoice, Schedule, TrainConfig};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(Parser, Debug)]
#[command(version, about = "Train a facial-expression CNN on the GPU (WGSL kernels via wgpu).")]
struct Args {
    /// FER2013 data: fer2013.csv (emotion,pixels,Usage), train.csv (label,feature) or an
    /// image folder ROOT/<class>/*.png. Default: the built-in synthetic faces.
    #[arg(long)]
    data: Option<PathBuf>,
    /// Model: a preset (small, seed-cnn, seed-dnn, tiny-cnn) or a TOML / JSON model file.
    #[arg(long, default_value = "small")]
    model: String,
    #[arg(long, default_value_t = 10)]
    epochs: usize,
    #[arg(long, default_value_t = 64)]
    batch: usize,
    /// Learning rate (the schedule's starting value) at batch 64; see --lr-scale.
    #[arg(long, default_value_t = 2e-3)]
    lr: f64,
    /// How the learning rate follows --batch: sqrt (lr * sqrt(batch / 64), the rule for
    /// Adam), linear (lr * batch / 64, for SGD) or none (--lr at any batch, as Keras).
    #[arg(long, value_enum, default_value_t = LrScale::Sqrt)]
    lr_scale: LrScale,
    #[arg(long, value_enum, default_value_t = OptimizerChoice::Adam)]
    optimizer: OptimizerChoice,
    /// SGD momentum.
    #[arg(long, default_value_t = 0.9)]
    momentum: f32,
    /// Nesterov momentum (SGD).
    #[arg(long)]
    nesterov: bool,
    /// L2 weight decay added to the gradient (see --decoupled-weight-decay).
    #[arg(long, default_value_t = 0.0)]
    weight_decay: f32,
    /// AdamW-style decoupled weight decay instead of L2.
    #[arg(long)]
    decoupled_weight_decay: bool,
    /// Learning-rate schedule: constant, step:EVERY:GAMMA, cosine[:MIN_LR],
    /// plateau[:PATIENCE[:FACTOR]] (reduce on validation-loss plateau).
    #[arg(long, default_value = "cosine")]
    schedule: String,
    /// Stop when validation accuracy has not improved for this many epochs.
    #[arg(long)]
    early_stopping: Option<usize>,
    /// Seed for initialization, shuffling, dropout, augmentation and the synthetic data.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// GPU augmentation: none, reports (rotation 10 deg, shifts 0.1, zoom 0.1, flip), or
    /// a list like rotation=15,shift=0.1,zoom=0.2,flip=true,fill=nearest.
    #[arg(long, default_value = "none")]
    augment: String,
    /// BatchNorm inference statistics: population (exact mean and variance of each BN
    /// input over 1024 training images, recomputed before each validation and checkpoint),
    /// population:N, population:all, or momentum (Keras: running averages of the steps).
    #[arg(long, default_value = "population")]
    bn_stats: String,
    /// GEMM precision: f32, mixed (f16 operands with f32 sums in convolutions and dense
    /// layers, dynamic loss scaling; slow where the adapter has no cooperative matrices) or
    /// auto (mixed where the adapter has cooperative matrices, else f32). The run records
    /// which one ran in config.json and summary.txt.
    #[arg(long, value_enum, default_value_t = PrecisionChoice::Auto)]
    precision: PrecisionChoice,
    /// Validation fraction when the data has no PublicTest / validation part.
    #[arg(long, default_value_t = 0.1)]
    val_split: f64,
    /// Number of training images of the built-in dataset (validation: a quarter of it).
    #[arg(long, default_value_t = 8000)]
    synthetic: usize,
    /// Side images are resized to (image folders); CSV files keep their own size.
    #[arg(long, default_value_t = 48)]
    image_size: usize,
    /// Run directory. Default: runs/<model>-<date>-<time>.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Continue the run in DIR exactly where it stopped, with the settings it was started
    /// with. A flag given with --resume changes that setting from then on (recorded in
    /// config.json and the history); flags defining the data, model or optimizer cannot change.
    #[arg(long, value_name = "DIR", conflicts_with = "out")]
    resume: Option<PathBuf>,
    /// No progress bar or per-epoch lines.
    #[arg(long)]
    quiet: bool,
    /// Kernel-variant autotuning: on (cached per adapter), off (built-in defaults) or
    /// refresh (time again). Default: $MIEN_AUTOTUNE, else on.
    #[arg(long, value_name = "on|off|refresh")]
    autotune: Option<mien::gpu::autotune::Mode>,
}

fn config(args: &Args) -> mien::Result<TrainConfig> {
    Ok(TrainConfig {
        model: args.model.clone(),
        epochs: args.epochs,
        batch: args.batch,
        lr: args.lr,
        lr_scale: args.lr_scale,
        optimizer: args.optimizer,
        momentum: args.momentum,
        nesterov: args.nesterov,
        weight_decay: args.weight_decay,
        decoupled_weight_decay: args.decoupled_weight_decay,
        schedule: args.schedule.parse::<Schedule>()?,
        early_stopping: args.early_stopping,
        seed: args.seed,
        augment: args.augment.parse::<AugmentConfig>()?,
        val_split: args.val_split,
        data: args.data.clone(),
        synthetic: args.synthetic,
        image_size: args.image_size,
        bn_stats: args.bn_stats.parse()?,
        precision: args.precision,
        changes: Vec::new(),
    })
}

/// The run's saved settings with the flags given explicitly on this command line.
fn resumed_config(dir: &Path, args: &Args, matches: &ArgMatches) -> mien::Result<TrainConfig> {
    let saved = serde_json::to_value(train::resume::read_config(dir)?).expect("config serializes");
    let flags = serde_json::to_value(config(args)?).expect("config serializes");
    let (serde_json::Value::Object(mut saved), serde_json::Value::Object(flags)) = (saved, flags) else {
        unreachable!("a TrainConfig serializes to an object")
    };
    for (key, value) in flags {
        // TrainConfig's fields are named as the flags' ids.
        if matches.try_get_raw(&key).is_ok() && matches.value_source(&key) == Some(ValueSource::CommandLine) {
            saved.insert(key, value);
        }
    }
    serde_json::from_value(serde_json::Value::Object(saved)).map_err(|e| mien::Error::new(format!("{}: {e}", dir.join("config.json").display())))
}

fn run(args: Args, matches: &ArgMatches) -> mien::Result<()> {
    let (cfg, dir, resume) = match &args.resume {
        Some(dir) => {
            let cfg = resumed_config(dir, &args, matches)?;
            train::resume::check_settings(dir, &cfg)?;
            (cfg, dir.clone(), true)
        }
        None => {
            let cfg = config(&args)?;
            let dir = args.out.clone().unwrap_or_else(|| PathBuf::from("runs").join(train::run_name(&cfg.model)));
            (cfg, dir, false)
        }
    };
    cfg.validate()?;
    // The data first: a malformed file is reported before the GPU is set up.
    let data = train::load_data(&cfg)?;
    let gpu = mien::Gpu::new()?;
    if let Some(m) = args.autotune {
        gpu.autotune().set_mode(m);
    }
    if !args.quiet {
        eprintln!("{}", gpu.describe());
        eprintln!(
            "data: {} ({} training, {} validation images of {}x{}, {} classes: {})",
            cfg.data.as_ref().map_or("built-in synthetic faces".into(), |p| p.display().to_string()),
            data.train.len(),
            data.val.len(),
            data.train.h,
            data.train.w,
            data.class_names.len(),
            data.class_names.join(", ")
        );
    }
    let outcome = train::run(&gpu, &cfg, &data, &dir, resume, !args.quiet)?;
    train::mark_latest(&dir)?;
    println!(
        "run {}: best validation accuracy {:.4} at epoch {} ({} epochs{})",
        outcome.dir.display(),
        outcome.best_val_acc,
        outcome.best_epoch,
        outcome.history.len(),
        match outcome.stop {
            train::Stop::Finished => String::new(),
            train::Stop::EarlyStopped { .. } => ", stopped early".into(),
        }
    );
    Ok(())
}

fn main() -> ExitCode {
    mien::platform::cli_main(|| {
        let matches = Args::command().get_matches();
        let args = Args::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
        run(args, &matches)
    })
}
