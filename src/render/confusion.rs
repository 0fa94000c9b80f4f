//! Confusion matrix: counting, row normalization, a PNG in the style of sklearn's
//! ConfusionMatrixDisplay (Blues, true label rows, predicted label columns, colorbar),
//! and a CSV of the counts.

use super::text::{draw_text, Anchor};
use super::{draw_err, fit_text, render_png, text_width, write_atomic, Colormap};
use crate::{ensure, Error, Result};
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, VPos};
use std::path::Path;

/// counts[t][p] = number of samples of true class t predicted as p; `classes x classes`.
/// Labels must be < `classes` and the slices equally long (panics otherwise: a bug).
pub fn confusion_matrix(truth: &[u32], pred: &[u32], classes: usize) -> Vec<Vec<u64>> {
    assert_eq!(
        truth.len(),
        pred.len(),
        "confusion_matrix: {} labels vs {} predictions",
        truth.len(),
        pred.len()
    );
    let mut counts = vec![vec![0u64; classes]; classes];
    for (&t, &p) in truth.iter().zip(pred) {
        assert!(
            (t as usize) < classes && (p as usize) < classes,
            "confusion_matrix: label {t} / prediction {p} out of range for {classes} classes"
        );
        counts[t as usize][p as usize] += 1;
    }
    counts
}

/// Each row divided by its sum (recall on the diagonal); a row with no samples is zeros.
pub fn row_normalize(counts: &[Vec<u64>]) -> Vec<Vec<f64>> {
    counts
        .iter()
        .map(|row| {
            let sum: u64 = row.iter().sum();
            row.iter()
                .map(|&c| if sum == 0 { 0.0 } else { c as f64 / sum as f64 })
                .collect()
        })
        .collect()
}

fn check_square(counts: &[Vec<u64>], class_names: &[String], path: &Path) -> Result<()> {
    let k = counts.len();
    ensure!(k > 0, "confusion matrix for {}: no classes", path.display());
    ensure!(
        counts.iter().all(|r| r.len() == k),
        "confusion matrix for {}: counts are not {k}x{k}",
        path.display()
    );
    ensure!(
        class_names.len() == k,
        "confusion matrix for {}: {} class names for {k} classes",
        path.display(),
        class_names.len()
    );
    Ok(())
}

/// CSV of the counts: header `true\predicted,<names...>`, then one row per true class.
pub fn write_confusion_csv(counts: &[Vec<u64>], class_names: &[String], path: &Path) -> Result<()> {
    check_square(counts, class_names, path)?;
    let err = |e: csv::Error| Error::new(format!("writing {}: {e}", path.display()));
    let mut w = csv::Writer::from_writer(Vec::new());
    let header = std::iter::once("true\\predicted".to_string()).chain(class_names.iter().cloned());
    w.write_record(header).map_err(err)?;
    for (name, row) in class_names.iter().zip(counts) {
        let rec = std::iter::once(name.clone()).chain(row.iter().map(|c| c.to_string()));
        w.write_record(rec).map_err(err)?;
    }
    let bytes = w
        .into_inner()
        .map_err(|e| Error::new(format!("writing {}: {e}", path.display())))?;
    write_atomic(path, &bytes)
}

const TICK_SIZE: f64 = 14.0;

/// sklearn-like picture: cell colour = row-normalized fraction (Blues, 0..1), cell text
/// "0.65" over "(123)" (white on dark cells), class names on both axes (true rows,
/// predicted columns; column names turn vertical when they do not fit), colorbar on the
/// right, `title` with overall accuracy and sample count under it. Size grows with the
/// number of classes (about 800x730 for 7).
pub fn plot_confusion(counts: &[Vec<u64>], class_names: &[String], title: &str, path: &Path) -> Result<()> {
    check_square(counts, class_names, path)?;
    let k = counts.len();
    let frac = row_normalize(counts);
    let total: u64 = counts.iter().flatten().sum();
    let correct: u64 = (0..k).map(|i| counts[i][i]).sum();
    let subtitle = if total == 0 {
        "no samples".to_string()
    } else {
        format!(
            "accuracy {:.1}%  ({correct} / {total})",
            100.0 * correct as f64 / total as f64
        )
    };

    // Layout in pixels.
    let cell = (600 / k as i32).clamp(44, 92);
    let names: Vec<String> = class_names.iter().map(|n| fit_text(n, TICK_SIZE, 150)).collect();
    let name_w = names
        .iter()
        .map(|n| text_width(n, TICK_SIZE) as i32)
        .max()
        .unwrap_or(0);
    let cols_fit = names.iter().all(|n| (text_width(n, TICK_SIZE) as i32) < cell - 4);
    let (left, top) = (16 + 26 + name_w + 14, 16 + 30 + 22 + 14);
    let m = cell * k as i32;
    let x_ticks_h = if cols_fit { 26 } else { name_w + 14 };
    let (bar_x, bar_w) = (left + m + 28, 22);
    let width = (bar_x + bar_w + 8 + 40 + 16) as u32;
    let height = (top + m + x_ticks_h + 30 + 16) as u32;
    let cell_font = (cell as f64 * 0.21).clamp(9.0, 17.0);

    render_png(width, height, path, |root| {
        let err = draw_err(path);
        let ink = RGBColor(20, 20, 20);
        let centre = Anchor::CENTER;
        let mid_x = left + m / 2;
        // Title and accuracy line, centred over the whole picture.
        let title = fit_text(title, 20.0, width - 20);
        draw_text(root, &title, (width as i32 / 2, 16 + 13), 20.0, &ink, centre).map_err(&err)?;
        draw_text(
            root,
            &subtitle,
            (width as i32 / 2, 16 + 30 + 10),
            15.0,
            &ink,
            centre,
        )
        .map_err(&err)?;
        // Cells: colour by row fraction, "fraction" over "(count)".
        for (t, row) in frac.iter().enumerate() {
            for (p, &f) in row.iter().enumerate() {
                let (x0, y0) = (left + p as i32 * cell, top + t as i32 * cell);
                let [r, g, b] = Colormap::Blues.rgb(f as f32);
                root.draw(&Rectangle::new(
                    [(x0, y0), (x0 + cell, y0 + cell)],
                    RGBColor(r, g, b).filled(),
                ))
                .map_err(&err)?;
                let fg = if Colormap::Blues.luminance(f as f32) < 0.5 {
                    WHITE
                } else {
                    ink
                };
                let (cx, cy) = (x0 + cell / 2, y0 + cell / 2);
                let gap = (cell_font * 0.55) as i32;
                draw_text(root, &format!("{f:.2}"), (cx, cy - gap), cell_font, &fg, centre).map_err(&err)?;
                let count = format!("({})", counts[t][p]);
                let count = fit_text(&count, cell_font * 0.8, (cell - 4) as u32);
                draw_text(root, &count, (cx, cy + gap), cell_font * 0.8, &fg, centre).map_err(&err)?;
            }
        }
        root.draw(&Rectangle::new(
            [(left, top), (left + m, top + m)],
            ink.stroke_width(1),
        ))
        .map_err(&err)?;
        // Tick marks and class names: rows (true) on the left, columns (predicted) below.
        for (i, name) in names.iter().enumerate() {
            let c = i as i32 * cell + cell / 2;
            root.draw(&PathElement::new(vec![(left - 5, top + c), (left, top + c)], ink))
                .map_err(&err)?;
            root.draw(&PathElement::new(
                vec![(left + c, top + m), (left + c, top + m + 5)],
                ink,
            ))
            .map_err(&err)?;
            draw_text(
                root,
                name,
                (left - 9, top + c),
                TICK_SIZE,
                &ink,
                Anchor::new(HPos::Right, VPos::Center),
            )
            .map_err(&err)?;
            let below = if cols_fit {
                Anchor::new(HPos::Center, VPos::Top)
            } else {
                // Vertical, reading bottom to top, ending just under the tick.
                Anchor::vertical(HPos::Right, VPos::Center)
            };
            draw_text(root, name, (left + c, top + m + 8), TICK_SIZE, &ink, below).map_err(&err)?;
        }
        // Axis descriptions.
        draw_text(
            root,
            "Predicted label",
            (mid_x, top + m + x_ticks_h + 14),
            16.0,
            &ink,
            centre,
        )
        .map_err(&err)?;
        draw_text(
            root,
            "True label",
            (16 + 10, top + m / 2),
            16.0,
            &ink,
            Anchor::vertical(HPos::Center, VPos::Center),
        )
        .map_err(&err)?;
        // Colorbar: fraction 0 at the bottom, 1 at the top, ticks every 0.2.
        for y in 0..m {
            let f = 1.0 - (y as f32 + 0.5) / m as f32;
            let [r, g, b] = Colormap::Blues.rgb(f);
            root.draw(&Rectangle::new(
                [(bar_x, top + y), (bar_x + bar_w, top + y + 1)],
                RGBColor(r, g, b).filled(),
            ))
            .map_err(&err)?;
        }
        root.draw(&Rectangle::new(
            [(bar_x, top), (bar_x + bar_w, top + m)],
            ink.stroke_width(1),
        ))
        .map_err(&err)?;
        for i in 0..=5 {
            let y = top + m - (i * m) / 5;
            root.draw(&PathElement::new(
                vec![(bar_x + bar_w, y), (bar_x + bar_w + 4, y)],
                ink,
            ))
            .map_err(&err)?;
            let label = format!("{:.1}", i as f64 / 5.0);
            draw_text(
                root,
                &label,
                (bar_x + bar_w + 7, y),
                13.0,
                &ink,
                Anchor::new(HPos::Left, VPos::Center),
            )
            .map_err(&err)?;
        }
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_and_rows() {
        let c = confusion_matrix(&[0, 0, 1, 2, 2, 2], &[0, 1, 1, 2, 0, 2], 3);
        assert_eq!(c, vec![vec![1, 1, 0], vec![0, 1, 0], vec![1, 0, 2]]);
        let n = row_normalize(&c);
        assert_eq!(n[0], vec![0.5, 0.5, 0.0]);
        assert!((n[2][2] - 2.0 / 3.0).abs() < 1e-12);
        assert_eq!(row_normalize(&[vec![0, 0], vec![0, 3]])[0], vec![0.0, 0.0]);
    }
}
