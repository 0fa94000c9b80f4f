//! `cargo run --release --bin predict -- --run DIR --data test.csv`: class predictions of a
//! trained run (or, with --ensemble, the average of several runs' probabilities) as a
//! Kaggle submission `id,label`; with labelled data also accuracy and the confusion matrix.

use clap::{Parser, ValueEnum};
use mien::data::Dataset;
use mien::nn::checkpoint;
use mien::nn::network::{BuildOptions, Network};
use mien::nn::precision::{Precision, PrecisionChoice};
use mien::train;
use mien::{ensure, Error, Gpu, Result};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Part {
    /// test.csv, fer2013 PrivateTest rows, a test/ folder; else the validation part, else training.
    Auto,
    Train,
    Val,
    Test,
}

#[derive(Parser, Debug)]
#[command(version, about = "Predict expressions with trained runs (Kaggle submission, accuracy, confusion matrix).")]
struct Args {
    /// Run directory (default runs/latest).
    #[arg(long, default_value = "runs/latest")]
    run: PathBuf,
    /// More run directories whose probabilities are averaged with --run's (an ensemble).
    #[arg(long, num_args = 1..)]
    ensemble: Vec<PathBuf>,
    /// Which checkpoint of each run: best or last.
    #[arg(long, default_value = "best")]
    checkpoint: String,
    /// FER2013 CSV (test.csv, train.csv, fer2013.csv) or image folder.
    #[arg(long)]
    data: PathBuf,
    /// Which part of --data to predict.
    #[arg(long, value_enum, default_value_t = Part::Auto)]
    part: Part,
    /// Submission file (id,label). Default: <run>/submission.csv.
    #[arg(long)]
    out: Option<PathBuf>,
    #[arg(long, default_value_t = 256)]
    batch: usize,
    /// Also write every image's class probabilities (id,<class>...) to this CSV (the web
    /// page's test compares its own against these).
    #[arg(long)]
    probabilities: Option<PathBuf>,
    /// Kernel-variant autotuning: on (cached per adapter), off (built-in defaults) or
    /// refresh (time again). Default: $MIEN_AUTOTUNE, else on.
    #[arg(long, value_name = "on|off|refresh")]
    autotune: Option<mien::gpu::autotune::Mode>,
    /// GEMM precision: f32, mixed (f16 operands with f32 sums) or auto (mixed where the
    /// adapter has cooperative matrices, else f32).
    #[arg(long, value_enum, default_value_t = PrecisionChoice::Auto)]
    precision: PrecisionChoice,
}

fn pick(loaded: &mien::data::Loaded, part: Part, path: &Path) -> Result<Dataset> {
    let found = match part {
        Part::Auto => loaded.test.as_ref().or(loaded.val.as_ref()).or(loaded.train.as_ref()),
        Part::Train => loaded.train.as_ref(),
        Part::Val => loaded.val.as_ref(),
        Part::Test => loaded.test.as_ref(),
    };
    found.cloned().ok_or_else(|| Error::new(format!("{}: has no {part:?} part", path.display())))
}

/// Probabilities [n, classes] of one run's checkpoint on `data`.
fn probabilities(gpu: &Gpu, run: &Path, which: &str, data: &Dataset, batch: usize, precision: Precision) -> Result<(Vec<f32>, Vec<String>)> {
    let file = run.join(format!("{which}.safetensors"));
    ensure!(
        file.exists(),
        "{}: no checkpoint; train a model first (cargo run --release --bin train) or pass --run DIR",
        file.display()
    );
    let (_, info) = checkpoint::read(&file)?;
    ensure!(
        info.input_chw == [1, data.h, data.w],
        "{}: the model takes {:?} images, the data has 1x{}x{}",
        file.display(),
        info.input_chw,
        data.h,
        data.w
    );
    let classes = info.class_names.len();
    let net = Network::build(gpu, &info.model, info.input_chw, classes, batch.min(data.len()), BuildOptions::default().with_precision(precision))?;
    checkpoint::load(gpu, &file, &net, None)?;
    let tail = train::tail_network(gpu, &net, data.len())?;
    let ev = train::evaluate(gpu, &net, tail.as_ref(), data)?;
    Ok((ev.probabilities, info.class_names))
}

fn run(args: Args) -> Result<()> {
    let gpu = Gpu::new()?;
    if let Some(m) = args.autotune {
        gpu.autotune().set_mode(m);
    }
    let precision = args.precision.pick(&gpu);
    let runs: Vec<PathBuf> = std::iter::once(args.run.clone()).chain(args.ensemble.iter().cloned()).collect();
    let (_, first) = checkpoint::read(&runs[0].join(format!("{}.safetensors", args.checkpoint)))
        .map_err(|e| Error::new(format!("{e}\n(train a model first: cargo run --release --bin train)")))?;
    let loaded = mien::data::load(&args.data, (first.input_chw[1], first.input_chw[2]))?;
    let data = pick(&loaded, args.part, &args.data)?;
    let mut sum: Vec<f32> = Vec::new();
    let mut names = Vec::new();
    for run in &runs {
        let (p, class_names) = probabilities(&gpu, run, &args.checkpoint, &data, args.batch, precision)?;
        ensure!(names.is_empty() || names == class_names, "{}: its classes {class_names:?} differ from {names:?}", run.display());
        names = class_names;
        if sum.is_empty() {
            sum = p;
        } else {
            sum.iter_mut().zip(&p).for_each(|(s, v)| *s += v);
        }
    }
    let classes = names.len();
    let pred = train::argmax_rows(&sum, classes);
    let out = args.out.clone().unwrap_or_else(|| args.run.join("submission.csv"));
    let mut csv = String::from("id,label\n");
    for (id, p) in data.ids.iter().zip(&pred) {
        csv += &format!("{id},{p}\n");
    }
    checkpoint::write_atomic(&out, csv.as_bytes())?;
    if let Some(path) = &args.probabilities {
        let scale = 1.0 / runs.len() as f32;
        let mut text = format!("id,{}\n", names.join(","));
        for (id, row) in data.ids.iter().zip(sum.chunks(classes)) {
            let cols: Vec<String> = row.iter().map(|p| (p * scale).to_string()).collect();
            text += &format!("{id},{}\n", cols.join(","));
        }
        checkpoint::write_atomic(path, text.as_bytes())?;
    }
    println!("{} predictions ({} model{}) written to {}", pred.len(), runs.len(), if runs.len() > 1 { "s" } else { "" }, out.display());
    if data.labelled {
        ensure!(
            data.class_names == names,
            "{}: the data's classes {:?} differ from the model's {names:?}",
            args.data.display(),
            data.class_names
        );
        let correct = pred.iter().zip(&data.labels).filter(|(p, l)| p == l).count();
        println!("accuracy {:.4} ({correct}/{})", correct as f64 / data.len() as f64, data.len());
        let m = train::confusion(&data.labels, &pred, classes);
        print!("{}", confusion_text(&m, &names));
        let dir = out.parent().unwrap_or(Path::new("."));
        let title = format!("{} model{} on {}", runs.len(), if runs.len() > 1 { "s" } else { "" }, args.data.display());
        mien::render::plot_confusion(&m, &names, &title, &dir.join("predict_confusion.png"))?;
        mien::render::write_confusion_csv(&m, &names, &dir.join("predict_confusion.csv"))?;
    }
    Ok(())
}

/// The confusion matrix as a text table: rows true, columns predicted.
fn confusion_text(m: &[Vec<u64>], names: &[String]) -> String {
    let short: Vec<String> = names.iter().map(|n| n.chars().take(8).collect()).collect();
    let mut s = format!("{:>10}", "true\\pred");
    for n in &short {
        s += &format!("{n:>9}");
    }
    s += "\n";
    for (row, n) in m.iter().zip(&short) {
        s += &format!("{n:>10}");
        for c in row {
            s += &format!("{c:>9}");
        }
        s += "\n";
    }
    s
}

fn main() -> ExitCode {
    mien::platform::cli_main(|| run(Args::parse()))
}
