//! `cargo run --release --bin export -- --run DIR --web OUT`: what the web page needs to
//! load a trained run: `OUT/model.safetensors` (the run's best checkpoint, else last, as
//! is: the tensors and the model description travel in its metadata) and
//! `OUT/model.json` (a summary the page lists before fetching the weights). Serve OUT
//! next to the page (`web/dist/models/NAME`) or drop the .safetensors on the page.

use clap::Parser;
use mien::explain::Model;
use mien::nn::checkpoint;
use mien::Result;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser, Debug)]
#[command(version, about = "Export a trained run for the web page (model.safetensors + model.json).")]
struct Args {
    /// Run directory (default runs/latest).
    #[arg(long, default_value = "runs/latest")]
    run: PathBuf,
    /// Output folder (created).
    #[arg(long)]
    web: PathBuf,
}

fn run(args: Args) -> Result<()> {
    let file = Model::checkpoint_file(&args.run)?;
    let (bytes, info) = checkpoint::read(&file)?;
    let summary = serde_json::json!({
        "format": 1,
        "model": info.model.name,
        "input": info.input_chw,
        "classes": info.class_names,
        "epoch": info.epoch,
        "checkpoint": "model.safetensors",
        "source": file.display().to_string(),
        "bytes": bytes.len(),
    });
    checkpoint::write_atomic(&args.web.join("model.safetensors"), &bytes)?;
    checkpoint::write_atomic(&args.web.join("model.json"), serde_json::to_string_pretty(&summary).expect("json").as_bytes())?;
    println!("exported {} ({}, {} bytes) to {}", file.display(), info.model.name, bytes.len(), args.web.display());
    Ok(())
}

fn main() -> ExitCode {
    mien::platform::cli_main(|| run(Args::parse()))
}
