//! Filter ascent: the input pattern each filter of a layer responds to most, found by
//! gradient ascent on the GPU (all filters of the layer as one batch), and the filter
//! outputs (activation maps) of that layer and of every conv block for one face.
//!
//! ```text
//! cargo run --release --bin train                 # a trained run in runs/latest first
//! cargo run --release --example filter_ascent     # first conv layer, every filter
//! cargo run --release --example filter_ascent -- --layer conv2d_2 --filters 0-7,12 --steps 256
//! ```
//!
//! Writes into `--out` (default `<run>/filter_ascent`): `<layer>.png` (labelled grid,
//! "filter 12  act 3.41": the filter's mean activation for its image), `<layer>.npy` (the
//! raw f32 images, shape (filters, H, W), `numpy.load` reads it), `<layer>.csv` (filter,
//! start and final mean activation), `<layer>_outputs.png` (that layer's activation maps for
//! a built-in synthetic face) and `conv_outputs.png` (every conv block's maps, stacked).

use clap::Parser;
use mien::explain::ascent::{self, AscentOptions};
use mien::explain::filter_outputs;
use mien::explain::Model;
use mien::Gpu;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

#[derive(Parser)]
#[command(about = "Filter ascent and filter outputs of a trained mien run")]
struct Args {
    /// Trained run directory (best.safetensors or last.safetensors).
    #[arg(long, default_value = "runs/latest")]
    run: PathBuf,
    /// Layer name (default: the first conv layer). A wrong name lists the valid ones.
    #[arg(long)]
    layer: Option<String>,
    /// Filter indices: "0,1,5", "0-7" or "0-3,9" (default: every filter of the layer).
    #[arg(long)]
    filters: Option<String>,
    /// Gradient steps per octave.
    #[arg(long, default_value_t = AscentOptions::default().steps)]
    steps: usize,
    /// Step size (RMS pixel change per step with gradient normalization).
    #[arg(long, default_value_t = AscentOptions::default().lr)]
    lr: f32,
    #[arg(long, default_value_t = AscentOptions::default().seed)]
    seed: u64,
    /// L2 decay towards gray.
    #[arg(long, default_value_t = AscentOptions::default().decay)]
    decay: f32,
    /// Random roll of up to this many pixels per step (0: none).
    #[arg(long, default_value_t = AscentOptions::default().jitter)]
    jitter: usize,
    /// Gaussian blur every this many steps (0: never).
    #[arg(long, default_value_t = AscentOptions::default().blur_every)]
    blur_every: usize,
    #[arg(long, default_value_t = AscentOptions::default().blur_sigma)]
    blur_sigma: f32,
    /// Total-variation weight.
    #[arg(long, default_value_t = AscentOptions::default().tv)]
    tv: f32,
    /// Resolutions, smallest first, each `--octave-scale` times larger.
    #[arg(long, default_value_t = AscentOptions::default().octaves)]
    octaves: usize,
    #[arg(long, default_value_t = AscentOptions::default().octave_scale)]
    octave_scale: f32,
    /// Do not divide the gradient by its RMS.
    #[arg(long)]
    no_normalize: bool,
    /// Let pixels leave [0, 1].
    #[arg(long)]
    no_clamp: bool,
    /// At most this many filters per GPU batch.
    #[arg(long)]
    max_batch: Option<usize>,
    /// Show each image as is instead of stretching its contrast to its own min..max.
    #[arg(long)]
    raw: bool,
    /// Grid columns (0: about square).
    #[arg(long, default_value_t = 0)]
    cols: usize,
    /// Pixel upscaling of each grid cell.
    #[arg(long, default_value_t = 2)]
    scale: u32,
    /// Which built-in synthetic face the filter outputs show.
    #[arg(long, default_value_t = 0)]
    face: usize,
    /// Output directory (default: <run>/filter_ascent).
    #[arg(long)]
    out: Option<PathBuf>,
}

fn run(args: Args) -> mien::Result<()> {
    let gpu = Gpu::new()?;
    let filters = args.filters.as_deref().map(ascent::parse_filters).transpose()?;
    let opts = AscentOptions {
        steps: args.steps,
        lr: args.lr,
        decay: args.decay,
        jitter: args.jitter,
        blur_every: args.blur_every,
        blur_sigma: args.blur_sigma,
        tv: args.tv,
        octaves: args.octaves,
        octave_scale: args.octave_scale,
        normalize: !args.no_normalize,
        clamp: if args.no_clamp { None } else { Some((0.0, 1.0)) },
        seed: args.seed,
        max_batch: args.max_batch,
        ..AscentOptions::default()
    };
    let t0 = Instant::now();
    let result = ascent::filter_ascent_run(&gpu, &args.run, args.layer.as_deref(), filters.as_deref(), &opts)?;
    let secs = t0.elapsed().as_secs_f64();
    let out = args.out.clone().unwrap_or_else(|| args.run.join("filter_ascent"));
    let layer = &result.layer;
    let grid = out.join(format!("{layer}.png"));
    result.save_grid(&grid, args.cols, args.scale, !args.raw)?;
    result.save_npy(&out.join(format!("{layer}.npy")))?;
    result.save_csv(&out.join(format!("{layer}.csv")))?;
    let gain: f32 = result.activation.iter().zip(&result.start_activation).map(|(a, s)| a - s).sum::<f32>() / result.filters.len() as f32;
    println!(
        "{layer}: {} filters, {} steps x {} octave(s) in {secs:.1} s on {}; mean activation gain {gain:.3}",
        result.filters.len(),
        opts.steps,
        opts.octaves,
        gpu.info().name
    );
    println!("wrote {} (and {layer}.npy: raw f32 images (filters, H, W); {layer}.csv)", grid.display());

    // Filter outputs for one synthetic face: this layer, then every conv block.
    let model = Model::load(&gpu, &args.run, 1)?;
    let li = model.layer_index(layer)?;
    if ascent::is_affine_stationary(&model, li) {
        let block = &model.net.layers[model.block_output(li)].name;
        println!(
            "note: {layer} is linear in the image and the same at every position, so its mean activation rewards only \
             overall brightness: the images come out uniform. Its activation shows patterns: --layer {block}"
        );
    }
    let (h, w) = model.hw();
    let faces = mien::data::synthetic(args.face + 1, args.seed, (h, w));
    let image = faces.image(args.face);
    let outs = filter_outputs::filter_outputs(&gpu, &model, image, layer)?;
    let path = out.join(format!("{layer}_outputs.png"));
    filter_outputs::save_filter_outputs(image, (h, w), &outs, 0, args.scale, &path)?;
    println!("wrote {} (activation maps of {layer} for a synthetic {} face)", path.display(), faces.class_names[faces.labels[args.face] as usize]);
    let all = filter_outputs::conv_outputs(&gpu, &model, image)?;
    let path = out.join("conv_outputs.png");
    filter_outputs::save_conv_outputs(image, (h, w), &all, 17, args.scale, &path)?;
    println!("wrote {} (every conv block: {})", path.display(), all.iter().map(|o| o.layer.as_str()).collect::<Vec<_>>().join(", "));
    Ok(())
}

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();
    match run(Args::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
