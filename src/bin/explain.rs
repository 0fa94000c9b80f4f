//! `cargo run --release --bin explain -- --run DIR`: what a trained run looks at, as one
//! HTML report in DIR/report/ (model summary, training curves, confusion matrix, a
//! per-class gallery of saliency / SmoothGrad / Integrated Gradients / Grad-CAM /
//! Grad-CAM++ / LIME / occlusion, filter ascent grids for every conv layer, filter outputs
//! for one image, and the DNN-vs-CNN comparison when other runs are given).

use clap::Parser;
use mien::explain::report::{escape, Report};
use mien::explain::lime::{self, LimeOptions};
use mien::explain::Model;
use mien::render::{gray_to_rgb, upscale_nearest};
use image::RgbImage;
use mien::train::{self, history, TrainConfig};
use mien::{Error, Gpu, Result};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(Parser, Debug)]
#[command(version, about = "Explain a trained run: saliency, Grad-CAM, LIME, occlusion, filters, one HTML report.")]
struct Args {
    /// Run directory (default runs/latest).
    #[arg(long, default_value = "runs/latest")]
    run: PathBuf,
    /// Other runs to compare with (e.g. the seed-dnn run beside a seed-cnn run).
    #[arg(long, num_args = 1..)]
    compare: Vec<PathBuf>,
    /// Report directory (default <run>/report).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Validation image indices for the gallery (default: the first of each class).
    #[arg(long, value_delimiter = ',')]
    images: Vec<usize>,
    /// LIME perturbed samples per image.
    #[arg(long, default_value_t = 1000)]
    lime_samples: usize,
    /// Filter ascent steps.
    #[arg(long, default_value_t = 128)]
    ascent_steps: usize,
    /// SmoothGrad samples and Integrated Gradients steps.
    #[arg(long, default_value_t = 32)]
    samples: usize,
    #[arg(long, default_value_t = 1)]
    seed: u64,
}

fn copy_into(report: &Report, src: &Path, name: &str) -> Result<bool> {
    if !src.exists() {
        return Ok(false);
    }
    std::fs::copy(src, report.file(name)).map_err(|e| Error::new(format!("{}: {e}", src.display())))?;
    Ok(true)
}

fn read_config(run: &Path) -> Result<TrainConfig> {
    let path = run.join("config.json");
    let text = std::fs::read_to_string(&path).map_err(|e| Error::new(format!("{}: {e}", path.display())))?;
    serde_json::from_str(&text).map_err(|e| Error::new(format!("{}: {e}", path.display())))
}

/// Overview table, model summary, curves and confusion matrix of the run.
fn run_sections(report: &mut Report, gpu: &Gpu, run: &Path, model: &Model, cfg: &TrainConfig) -> Result<()> {
    let hist = history::read(&run.join("history.csv")).unwrap_or_default();
    let best = hist.iter().filter_map(|r| r.val_acc.map(|a| (r.epoch, a))).fold((0, 0.0), |b, x| if x.1 > b.1 { x } else { b });
    let (t, nt) = model.net.param_counts();
    let rows = vec![
        vec!["run".into(), run.display().to_string()],
        vec!["model".into(), model.info.model.name.clone()],
        vec!["parameters".into(), format!("{} ({t} trainable, {nt} non-trainable)", t + nt)],
        vec!["data".into(), cfg.data.as_ref().map_or("built-in synthetic faces".into(), |p| p.display().to_string())],
        vec!["classes".into(), model.info.class_names.join(", ")],
        vec!["epochs".into(), hist.len().to_string()],
        vec!["best validation accuracy".into(), format!("{:.4} (epoch {})", best.1, best.0)],
        vec!["seconds per epoch".into(), format!("{:.1}", hist.iter().map(|r| r.seconds).sum::<f64>() / hist.len().max(1) as f64)],
        vec!["adapter".into(), format!("{} ({:?})", gpu.info().name, gpu.info().backend)],
    ];
    report.section("Overview", Report::table(&["", ""], &rows));
    report.section("Model", Report::pre(&model.net.summary()));
    let mut body = String::new();
    if copy_into(report, &run.join("curves.png"), "curves.png")? {
        body += &Report::figure("curves.png", "accuracy and loss per epoch, train (blue) vs validation (orange)");
    }
    if copy_into(report, &run.join("confusion.png"), "confusion.png")? {
        body += &Report::figure("confusion.png", "row-normalized confusion matrix of the best checkpoint on the validation data");
    }
    report.section("Training", body);
    Ok(())
}

/// The DNN-vs-CNN (or any) comparison of this run with others.
fn comparison_section(report: &mut Report, runs: &[PathBuf]) -> Result<()> {
    let mut rows = Vec::new();
    let mut series = Vec::new();
    for run in runs {
        let hist = history::read(&run.join("history.csv"))?;
        let name = std::fs::read_to_string(run.join("model.json"))
            .ok()
            .and_then(|t| serde_json::from_str::<mien::nn::spec::ModelSpec>(&t).ok())
            .map_or_else(|| run.display().to_string(), |m| m.name);
        let best = hist.iter().filter_map(|r| r.val_acc).fold(0.0, f64::max);
        let secs = hist.iter().map(|r| r.seconds).sum::<f64>() / hist.len().max(1) as f64;
        rows.push(vec![name.clone(), run.display().to_string(), format!("{best:.4}"), format!("{secs:.1}"), hist.len().to_string()]);
        series.push((name, hist));
    }
    let refs: Vec<(&str, &[train::EpochRecord])> = series.iter().map(|(n, h)| (n.as_str(), h.as_slice())).collect();
    mien::render::plot_comparison(&refs, &report.file("comparison.png"))?;
    let mut body = Report::table(&["model", "run", "best val acc", "s / epoch", "epochs"], &rows);
    body += &Report::figure("comparison.png", "validation accuracy per epoch, and seconds per epoch");
    report.section("Comparison", body);
    Ok(())
}

fn run(args: Args) -> Result<()> {
    let gpu = Gpu::new()?;
    let run = args.run.clone();
    let model = Model::load(&gpu, &run, 32)?;
    let cfg = read_config(&run)?;
    let out = args.out.clone().unwrap_or_else(|| run.join("report"));
    let title = format!("mien report: {} on {}", model.info.model.name, cfg.data.as_ref().map_or("built-in synthetic faces".into(), |p| p.display().to_string()));
    let mut report = Report::new(&out, &title)?;
    run_sections(&mut report, &gpu, &run, &model, &cfg)?;
    let data = train::load_data(&cfg)?;
    let gallery = gallery_indices(&data.val, &args.images, model.classes())?;
    explain_sections(&mut report, &gpu, &model, &data.val, &gallery, &args)?;
    if !args.compare.is_empty() {
        let runs: Vec<PathBuf> = std::iter::once(run.clone()).chain(args.compare.iter().cloned()).collect();
        comparison_section(&mut report, &runs)?;
    }
    let path = report.write()?;
    println!("report written to {}", path.display());
    Ok(())
}

/// The gallery's images: given indices, or the first validation image of each class.
fn gallery_indices(val: &mien::data::Dataset, given: &[usize], classes: usize) -> Result<Vec<usize>> {
    if !given.is_empty() {
        if let Some(&bad) = given.iter().find(|&&i| i >= val.len()) {
            return Err(Error::new(format!("--images {bad}: the validation set has {} images", val.len())));
        }
        return Ok(given.to_vec());
    }
    Ok((0..classes as u32).filter_map(|c| val.labels.iter().position(|&l| l == c)).collect())
}

/// Pixel scale of gallery cells (48x48 images become 144x144).
const SCALE: u32 = 3;

/// One gallery column: a method's picture for one image and predicted class.
type Method<'a> = (&'static str, Box<dyn Fn(&[f32], usize) -> Result<RgbImage> + 'a>);

fn explain_sections(report: &mut Report, gpu: &Gpu, model: &Model, val: &mien::data::Dataset, gallery: &[usize], args: &Args) -> Result<()> {
    let (h, w) = model.hw();
    let images: Vec<f32> = gallery.iter().flat_map(|&i| val.image(i).to_vec()).collect();
    let probs = model.probabilities(gpu, &images)?;
    let preds = train::argmax_rows(&probs, model.classes());
    let names = &model.info.class_names;
    let lime_opts = LimeOptions { samples: args.lime_samples, seed: args.seed, ..Default::default() };
    let methods: Vec<Method> = vec![(
        "LIME",
        Box::new(|img: &[f32], class: usize| {
            let e = lime::explain(gpu, model, img, &lime::Classes::List(vec![class]), &lime_opts)?;
            let c = e.class(class).expect("explained class");
            let min = c.coefficients.iter().fold(0.0f64, |m, v| m.max(v.abs())) * lime::ROW_MIN_RELATIVE;
            e.render(class, 5, min, SCALE)
        }),
    )];
    let mut cells = Vec::new();
    let mut labels = Vec::new();
    for (k, &i) in gallery.iter().enumerate() {
        let img = &images[k * h * w..(k + 1) * h * w];
        let (truth, pred) = (val.labels[i] as usize, preds[k] as usize);
        cells.push(upscale_nearest(&gray_to_rgb(img, h, w), SCALE));
        labels.push(format!("{} -> {} ({:.2})", names[truth], names[pred], probs[k * model.classes() + pred]));
        for (name, f) in &methods {
            cells.push(f(img, pred)?);
            labels.push(name.to_string());
        }
    }
    mien::render::grid(&cells, 1 + methods.len(), &labels, 1, &report.file("gallery.png"))?;
    let cols: Vec<&str> = std::iter::once("image (true -> predicted)").chain(methods.iter().map(|(n, _)| *n)).collect();
    let mut body = format!("<p class=\"note\">One validation image per class; columns: {}. Maps explain the predicted class.</p>\n", escape(&cols.join(", ")));
    body += &Report::figure("gallery.png", "per-class gallery");
    // LIME for every class of the first gallery image, as in the reports (green supports, red opposes).
    if let Some(first) = gallery.first() {
        let (row, _) = lime::class_row(gpu, model, val.image(*first), &lime_opts, 5, SCALE)?;
        mien::render::save_png(&row, &report.file("lime_classes.png"))?;
        body += &Report::figure("lime_classes.png", &format!("LIME for each class of the first image (true class {})", names[val.labels[*first] as usize]));
    }
    report.section("Gallery", body);
    Ok(())
}

fn main() -> ExitCode {
    mien::error::cli_main(|| run(Args::parse()))
}
