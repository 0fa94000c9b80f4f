//! Pictures, CPU only: training curves, confusion matrices, heat maps and labelled image
//! grids for the explanations. Plots are drawn with plotters into an RGB buffer and
//! written with [`save_png`], which writes atomically (temp file + rename) so a killed run
//! never leaves half a PNG.
//!
//! Text is rasterized by plotters' ab_glyph support with the bundled DejaVu Sans
//! (`data/fonts/DejaVuSans.ttf`), registered once as "sans-serif" by [`ensure_fonts`]; no
//! system font library is needed. Glyphs are placed by `text.rs` from the font's own
//! metrics (plotters 0.3.7 drops each glyph's left bearing, so its own strings look
//! unevenly spaced); plotters draws only lines, boxes and markers.
//!
//! Image conventions: a gray image is `&[f32]` of length `h * w`, row-major, values in
//! [0, 1]; pictures are `image::RgbImage` (width `w`, height `h`).

mod colormap;
mod confusion;
mod curves;
mod grid;
mod images;
mod png;
mod text;

pub use colormap::Colormap;
pub use confusion::{confusion_matrix, plot_confusion, row_normalize, write_confusion_csv};
pub use curves::{plot_comparison, plot_curves, EpochRecord};
pub use grid::{grid, grid_image};
pub use images::{
    gray_to_rgb, heatmap, heatmap_clipped, mask_top_fraction, normalize, outline_segments,
    outline_segments_scaled, overlay, resize_bilinear, upscale_nearest,
};
pub use png::{save_png, write_atomic};

use crate::Error;
use crate::platform::register_font;
use plotters::style::FontStyle;
use std::fmt::Display;
use std::path::Path;
use std::sync::Once;

/// DejaVu Sans, shipped in the repository (license in data/fonts/DejaVuSans-LICENSE.txt).
static DEJAVU_SANS: &[u8] = include_bytes!("../../data/fonts/DejaVuSans.ttf");
static FONTS: Once = Once::new();

/// The font family every picture uses.
pub(crate) const FONT: &str = "sans-serif";

/// Register the bundled font as "sans-serif" (Normal and Bold: the same file) once per
/// process. Every drawing function calls this; calling it again is free.
pub fn ensure_fonts() {
    FONTS.call_once(|| {
        for style in [FontStyle::Normal, FontStyle::Bold] {
            // The font is compiled in: failing to parse it is a bug, not a user error.
            if !register_font(FONT, style, DEJAVU_SANS) {
                panic!("bundled data/fonts/DejaVuSans.ttf is not a valid font");
            }
        }
    });
}

/// Turn a plotters drawing error into an Error naming the picture being drawn.
pub(crate) fn draw_err<E: Display>(path: &Path) -> impl Fn(E) -> Error + '_ {
    move |e| Error::new(format!("drawing {}: {e}", path.display()))
}

/// matplotlib's default cycle ("tab10"): train is blue, validation orange, as in Keras
/// history plots.
pub(crate) const TAB10: [plotters::style::RGBColor; 10] = {
    use plotters::style::RGBColor as C;
    [
        C(31, 119, 180),
        C(255, 127, 14),
        C(44, 160, 44),
        C(214, 39, 40),
        C(148, 103, 189),
        C(140, 86, 75),
        C(227, 119, 194),
        C(127, 127, 127),
        C(188, 189, 34),
        C(23, 190, 207),
    ]
};

/// Width in pixels of `text` drawn in the bundled font at `size`.
pub(crate) fn text_width(text: &str, size: f64) -> u32 {
    text::metrics().size_of(text, size as f32).0
}

/// `text` if it fits in `max_w` pixels at `size`, else its longest prefix followed by "…"
/// that fits (an empty string when not even "…" fits).
pub(crate) fn fit_text(text: &str, size: f64, max_w: u32) -> String {
    if text_width(text, size) <= max_w {
        return text.to_string();
    }
    let chars: Vec<char> = text.chars().collect();
    for n in (0..chars.len()).rev() {
        let s: String = chars[..n].iter().collect::<String>().trim_end().to_string() + "…";
        if text_width(&s, size) <= max_w {
            return s;
        }
    }
    String::new()
}

/// Draw a `w x h` picture with plotters into an RGB buffer (white background) and save it
/// as PNG at `path`. `draw` gets the root drawing area.
pub(crate) fn render_png<F>(w: u32, h: u32, path: &Path, draw: F) -> crate::Result<()>
where
    F: FnOnce(
        &plotters::drawing::DrawingArea<plotters::backend::BitMapBackend<'_>, plotters::coord::Shift>,
    ) -> crate::Result<()>,
{
    use plotters::prelude::*;
    ensure_fonts();
    let mut buf = vec![255u8; (w * h * 3) as usize];
    {
        let root = BitMapBackend::with_buffer(&mut buf, (w, h)).into_drawing_area();
        draw(&root)?;
        root.present().map_err(draw_err(path))?;
    }
    let img = image::RgbImage::from_raw(w, h, buf).expect("buffer is w*h*3 bytes");
    save_png(&img, path)
}
