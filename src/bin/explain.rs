//! `cargo run --release --bin explain -- --run DIR`: what a trained run looks at, as one
//! HTML report in DIR/report/ (model summary, training curves, confusion matrix, a
//! per-class gallery of saliency / SmoothGrad / Integrated Gradients / Grad-CAM /
//! Grad-CAM++ / LIME / occlusion, filter ascent grids for every conv layer, filter outputs
//! for one image, a faithfulness table of every gallery method (deletion / insertion AUC
//! against a random order, randomization check, pointing game on the built-in faces), and
//! the DNN-vs-CNN comparison when other runs are given). `--metrics` prints the
//! faithfulness scores as JSON instead of writing the report.

use clap::Parser;
use mien::explain::report::Report;
use mien::explain::ascent::{self, AscentOptions};
use mien::explain::filter_outputs;
use mien::explain::lime::{self, LimeOptions};
use mien::explain::gallery::{self, GalleryOptions};
use mien::explain::faithfulness::{self, CurveOptions, MethodMaps, Scores};
use mien::explain::Model;
use mien::nn::precision::PrecisionChoice;
use mien::render::{gray_to_rgb, heatmap_clipped, mask_top_fraction, overlay, upscale_nearest, Colormap};
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
    #[arg(long, default_value_t = 64)]
    ascent_steps: usize,
    /// SmoothGrad samples and Integrated Gradients steps.
    #[arg(long, default_value_t = 32)]
    samples: usize,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Print the faithfulness scores of every gallery method as JSON (stdout) instead of
    /// writing the report.
    #[arg(long)]
    metrics: bool,
    /// Validation images the faithfulness scores average over (the first ones).
    #[arg(long, default_value_t = 32)]
    metrics_images: usize,
    /// Points of the deletion / insertion curves after the first.
    #[arg(long, default_value_t = 32)]
    curve_steps: usize,
    /// Kernel-variant autotuning: on (cached per adapter), off (built-in defaults) or
    /// refresh (time again). Default: $MIEN_AUTOTUNE, else on.
    #[arg(long, value_name = "on|off|refresh")]
    autotune: Option<mien::gpu::autotune::Mode>,
    /// GEMM precision of the explanations' networks: f32, mixed (f16 operands with f32
    /// sums in every pass, input gradients included) or auto (mixed where the adapter has
    /// cooperative matrices, else f32). Default auto.
    #[arg(long, value_enum, default_value_t = PrecisionChoice::Auto)]
    precision: PrecisionChoice,
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
        vec!["training precision".into(), training_precision(cfg, &hist)],
        vec!["explanations' precision".into(), model.net.precision.describe(gpu)],
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

/// "f32", or "mixed (loss scale 65536 at the end, 3 steps skipped)".
fn training_precision(cfg: &TrainConfig, hist: &[history::EpochRecord]) -> String {
    let skipped: u64 = hist.iter().map(|r| r.skipped_steps).sum();
    match hist.last().and_then(|r| r.loss_scale) {
        Some(scale) => format!("{} (loss scale {scale} at the end, {skipped} steps skipped)", cfg.precision),
        None => cfg.precision.to_string(),
    }
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
    let run = args.run.clone();
    // The run's files and data first: a missing run or malformed data is reported before
    // the GPU is set up.
    Model::checkpoint_file(&run)?;
    let cfg = read_config(&run)?;
    let data = train::load_data(&cfg)?;
    let gpu = Gpu::new()?;
    if let Some(m) = args.autotune {
        gpu.autotune().set_mode(m);
    }
    let model = Model::load_with(&gpu, &run, 32, args.precision.pick(&gpu))?;
    if args.metrics {
        let scores = metrics(&gpu, &model, &data.val, &args)?;
        println!("{}", serde_json::to_string_pretty(&scores).expect("scores serialize"));
        return Ok(());
    }
    let out = args.out.clone().unwrap_or_else(|| run.join("report"));
    let title = format!("mien report: {} on {}", model.info.model.name, cfg.data.as_ref().map_or("built-in synthetic faces".into(), |p| p.display().to_string()));
    let mut report = Report::new(&out, &title)?;
    run_sections(&mut report, &gpu, &run, &model, &cfg)?;
    let gallery = gallery_indices(&data.val, &args.images, model.classes())?;
    explain_sections(&mut report, &gpu, &model, &data.val, &gallery, &args)?;
    let scores = metrics(&gpu, &model, &data.val, &args)?;
    report.section("Faithfulness", mien::explain::report::faithfulness_table(&scores));
    if !args.compare.is_empty() {
        let runs: Vec<PathBuf> = std::iter::once(run.clone()).chain(args.compare.iter().cloned()).collect();
        comparison_section(&mut report, &runs)?;
    }
    let path = report.write()?;
    println!("report written to {}", path.display());
    Ok(())
}

/// The faithfulness scores of every gallery method (LIME included) on the first
/// `--metrics-images` validation images, explaining their predicted classes.
fn metrics(gpu: &Gpu, model: &Model, val: &mien::data::Dataset, args: &Args) -> Result<Scores> {
    let n = args.metrics_images.min(val.len());
    if n == 0 {
        return Err(Error::new("--metrics-images 0, or no validation images: nothing to score"));
    }
    let (h, w) = model.hw();
    let images = &val.images[..n * model.image_len()];
    let preds = train::argmax_rows(&model.probabilities(gpu, images)?, model.classes());
    let random_model = faithfulness::randomized(gpu, model, args.seed ^ 0x5EED_0F4A)?;
    let trained = method_maps(gpu, model, images, &preds, args)?;
    let randomized = method_maps(gpu, &random_model, images, &preds, args)?;
    let methods: Vec<MethodMaps> =
        trained.iter().zip(&randomized).map(|((name, t), (_, r))| MethodMaps { name, trained: t, randomized: r }).collect();
    let masks = val.masks.as_ref().map(|m| &m[..n * h * w]);
    let opts = CurveOptions { steps: args.curve_steps, seed: args.seed, ..Default::default() };
    faithfulness::score(gpu, model, images, &preds, &methods, masks, &opts)
}

/// Maps [n, h*w] of every gallery method, LIME's painted from its superpixel coefficients.
fn method_maps(gpu: &Gpu, model: &Model, images: &[f32], preds: &[u32], args: &Args) -> Result<Vec<(&'static str, Vec<f32>)>> {
    gallery::maps_with_lime(gpu, model, images, preds, &gallery_options(args))
}

fn gallery_options(args: &Args) -> GalleryOptions {
    GalleryOptions { samples: args.samples, lime_samples: args.lime_samples, seed: args.seed }
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

/// Heat map of `map` [h*w] over the gray image, upscaled.
fn overlay_map(img: &[f32], map: &[f32], h: usize, w: usize) -> RgbImage {
    let heat = heatmap_clipped(map, h, w, Colormap::Jet, Some(99.0));
    upscale_nearest(&overlay(&gray_to_rgb(img, h, w), &heat, 0.55), SCALE)
}

/// Per-image maps [n, h*w] of every gallery method but LIME, in column order.
fn gallery_maps(gpu: &Gpu, model: &Model, images: &[f32], preds: &[u32], args: &Args) -> Result<Vec<(&'static str, Vec<f32>)>> {
    gallery::maps(gpu, model, images, preds, &gallery_options(args))
}

fn explain_sections(report: &mut Report, gpu: &Gpu, model: &Model, val: &mien::data::Dataset, gallery: &[usize], args: &Args) -> Result<()> {
    let (h, w) = model.hw();
    let images: Vec<f32> = gallery.iter().flat_map(|&i| val.image(i).to_vec()).collect();
    let probs = model.probabilities(gpu, &images)?;
    let preds = train::argmax_rows(&probs, model.classes());
    let names = &model.info.class_names;
    let maps = gallery_maps(gpu, model, &images, &preds, args)?;
    let lime_opts = LimeOptions { samples: args.lime_samples, seed: args.seed, ..Default::default() };
    let mut cells = Vec::new();
    let mut labels = Vec::new();
    for (k, &i) in gallery.iter().enumerate() {
        let img = &images[k * h * w..(k + 1) * h * w];
        let (truth, pred) = (val.labels[i] as usize, preds[k] as usize);
        let rgb = gray_to_rgb(img, h, w);
        cells.push(upscale_nearest(&rgb, SCALE));
        labels.push(format!("{} -> {} ({:.2})", names[truth], names[pred], probs[k * model.classes() + pred]));
        for (name, m) in &maps {
            cells.push(overlay_map(img, &m[k * h * w..(k + 1) * h * w], h, w));
            labels.push(name.to_string());
        }
        // The reports' masked image: only the top 10% salient pixels kept.
        cells.push(upscale_nearest(&mask_top_fraction(&rgb, &maps[0].1[k * h * w..(k + 1) * h * w], 0.1), SCALE));
        labels.push("top 10% saliency".into());
        let e = lime::explain(gpu, model, img, &lime::Classes::List(vec![pred]), &lime_opts)?;
        let min = e.class(pred).map_or(0.0, |c| c.coefficients.iter().fold(0.0f64, |m, v| m.max(v.abs())) * lime::ROW_MIN_RELATIVE);
        cells.push(e.render(pred, 5, min, SCALE)?);
        labels.push("LIME".into());
    }
    let cols = maps.len() + 3;
    mien::render::grid(&cells, cols, &labels, 1, &report.file("gallery.png"))?;
    let mut body = String::from("<p class=\"note\">One validation image per class (true -> predicted, probability). Every map explains the predicted class: \
        vanilla gradient |d score / d pixel|, SmoothGrad, Integrated Gradients (white baseline), Grad-CAM (LayerCAM weighting fused over the \
        conv blocks that keep at least half the input's side), Grad-CAM++ at the deepest of those blocks, \
        occlusion (drop in probability under a sliding gray patch), the image keeping only its top 10% salient pixels, and LIME \
        (green superpixels support the class, red oppose it).</p>\n");
    body += &Report::figure("gallery.png", "per-class gallery");
    if let Some(first) = gallery.first() {
        let (row, _) = lime::class_row(gpu, model, val.image(*first), &lime_opts, 5, SCALE)?;
        mien::render::save_png(&row, &report.file("lime_classes.png"))?;
        body += &Report::figure("lime_classes.png", &format!("LIME for each class of the first image (true class {})", names[val.labels[*first] as usize]));
    }
    report.section("Gallery", body);
    filter_sections(report, gpu, model, val.image(gallery.first().copied().unwrap_or(0)), args)
}

/// Filter ascent grids for every conv block and the filter outputs for one image.
fn filter_sections(report: &mut Report, gpu: &Gpu, model: &Model, image: &[f32], args: &Args) -> Result<()> {
    let opts = AscentOptions { steps: args.ascent_steps, seed: args.seed, precision: model.net.precision, ..Default::default() };
    let mut body = String::from("<p class=\"note\">Gradient ascent on the input from gray noise to maximize each filter's mean activation \
        (L2 decay, jitter, blur, total variation), all filters of a layer as one GPU batch. Labels give the final activation.</p>\n");
    for conv in model.conv_layers() {
        let layer = model.net.layers[model.block_output(conv)].name.clone();
        let a = ascent::filter_ascent_run(gpu, &args.run, Some(&layer), None, &opts)?;
        let file = format!("ascent_{layer}.png");
        a.save_grid(&report.file(&file), 8, 2, true)?;
        body += &Report::figure(&file, &format!("{layer} (after {}): {} filters", model.net.layers[conv].name, a.filters.len()));
    }
    report.section("Filter ascent", body);
    let outs = filter_outputs::conv_outputs(gpu, model, image)?;
    filter_outputs::save_conv_outputs(image, model.hw(), &outs, 16, 2, &report.file("filter_outputs.png"))?;
    report.section("Filter outputs", Report::figure("filter_outputs.png", "activations of every filter of each conv block for the first gallery image"));
    Ok(())
}

fn main() -> ExitCode {
    mien::platform::cli_main(|| run(Args::parse()))
}
