//! Labelled image grids (filters, activations, saliency rows, "Happy → Sad" examples).

use super::text::{draw_text, Anchor};
use super::{ensure_fonts, fit_text, save_png, upscale_nearest};
use crate::{bail, Error, Result};
use image::{imageops, Rgb, RgbImage};
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, VPos};
use std::path::Path;

const PAD: u32 = 8;

/// Grid of equally sized `cells`, `cols` per row (the last row may be partial), each
/// upscaled `cell_scale`x (nearest, crisp pixels) and with its label centred under it.
/// `labels` may be empty or shorter than `cells` (cells without a label); a label may hold
/// several lines separated by '\n'; lines wider than the cell are cut with "…".
/// White background, 8-pixel gutters. Width: `cols * (cell_w * scale + 8) + 8`.
pub fn grid_image(cells: &[RgbImage], cols: usize, labels: &[String], cell_scale: u32) -> Result<RgbImage> {
    if cells.is_empty() {
        bail!("grid: no cells");
    }
    if cols == 0 {
        bail!("grid: 0 columns");
    }
    if labels.len() > cells.len() {
        bail!("grid: {} labels for {} cells", labels.len(), cells.len());
    }
    let (cw, ch) = cells[0].dimensions();
    if let Some((i, c)) = cells.iter().enumerate().find(|(_, c)| c.dimensions() != (cw, ch)) {
        bail!(
            "grid: cell {i} is {}x{}, cell 0 is {cw}x{ch} (cells must have one size)",
            c.width(),
            c.height()
        );
    }
    let scale = cell_scale.max(1);
    let (sw, sh) = (cw * scale, ch * scale);
    let cols = cols.min(cells.len()) as u32;
    let rows = (cells.len() as u32).div_ceil(cols);
    // Label band under each cell: as many lines as the longest label.
    let font = (sw as f64 / 11.0).clamp(11.0, 15.0);
    let line_h = (font * 1.3).ceil() as u32;
    let lines = labels
        .iter()
        .map(|l| if l.is_empty() { 0 } else { l.lines().count() as u32 })
        .max()
        .unwrap_or(0);
    let band = if lines == 0 { 0 } else { lines * line_h + 4 };
    let (pitch_x, pitch_y) = (sw + PAD, sh + band + PAD);
    let (width, height) = (cols * pitch_x + PAD, rows * pitch_y + PAD);

    let mut canvas = RgbImage::from_pixel(width, height, Rgb([255, 255, 255]));
    let origin = |i: usize| {
        let (r, c) = (i as u32 / cols, i as u32 % cols);
        (PAD + c * pitch_x, PAD + r * pitch_y)
    };
    for (i, cell) in cells.iter().enumerate() {
        let (x, y) = origin(i);
        let big = if scale == 1 {
            cell.clone()
        } else {
            upscale_nearest(cell, scale)
        };
        imageops::replace(&mut canvas, &big, x as i64, y as i64);
    }
    if band == 0 {
        return Ok(canvas);
    }
    // Text through plotters (ab_glyph + bundled font) straight onto the RGB buffer.
    ensure_fonts();
    let mut buf = canvas.into_raw();
    {
        let root = BitMapBackend::with_buffer(&mut buf, (width, height)).into_drawing_area();
        let ink = RGBColor(20, 20, 20);
        for (i, label) in labels.iter().enumerate() {
            let (x, y) = origin(i);
            for (j, line) in label.lines().enumerate() {
                let text = fit_text(line, font, sw + PAD - 2);
                let pos = ((x + sw / 2) as i32, (y + sh + 3 + j as u32 * line_h) as i32);
                draw_text(
                    &root,
                    &text,
                    pos,
                    font,
                    &ink,
                    Anchor::new(HPos::Center, VPos::Top),
                )
                .map_err(|e| Error::new(format!("grid: drawing label {label:?}: {e}")))?;
            }
        }
        root.present().map_err(|e| Error::new(format!("grid: {e}")))?;
    }
    Ok(RgbImage::from_raw(width, height, buf).expect("buffer is width*height*3 bytes"))
}

/// [`grid_image`] saved as a PNG at `path` (atomically, parent directories created).
pub fn grid(cells: &[RgbImage], cols: usize, labels: &[String], cell_scale: u32, path: &Path) -> Result<()> {
    let img = grid_image(cells, cols, labels, cell_scale).map_err(|e| e.context(path.display()))?;
    save_png(&img, path)
}
