//! The native side: blocking waits, the terminal progress bar, the binaries' `main`.

/// Drive `f` to completion on this thread (readbacks complete inside their blocking
/// device poll, so this never waits on anything but the GPU).
pub fn block_on<F: std::future::Future>(f: F) -> F::Output {
    pollster::block_on(f)
}

/// Training progress: indicatif's bar with images/s and ETA (hidden when not wanted).
pub struct Progress(indicatif::ProgressBar);

impl Progress {
    pub fn new(visible: bool, images: u64, epoch: usize, epochs: usize) -> Progress {
        if !visible {
            return Progress(indicatif::ProgressBar::hidden());
        }
        let bar = indicatif::ProgressBar::new(images);
        let style = indicatif::ProgressStyle::with_template("epoch {prefix} [{bar:30}] {pos}/{len} images {per_sec} ETA {eta} {msg}")
            .expect("progress template")
            .progress_chars("=> ");
        bar.set_style(style);
        bar.set_prefix(format!("{epoch}/{epochs}"));
        Progress(bar)
    }
    pub fn inc(&self, n: u64) {
        self.0.inc(n)
    }
    pub fn set_message(&self, msg: String) {
        self.0.set_message(msg)
    }
    pub fn finish_and_clear(&self) {
        self.0.finish_and_clear()
    }
}

/// The `main` of mien's binaries: logging on (warnings by default, `RUST_LOG` to change),
/// run `f`, print an error as `error: ...` and exit non-zero.
pub fn cli_main(f: impl FnOnce() -> crate::Result<()>) -> std::process::ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();
    match f() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// Register a font with plotters' ab_glyph text (the PNG pictures' bundled DejaVu Sans);
/// false when the bytes are not a font.
pub fn register_font(name: &str, style: plotters::style::FontStyle, bytes: &'static [u8]) -> bool {
    plotters::style::register_font(name, style, bytes).is_ok()
}
