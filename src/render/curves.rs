//! Training curves (the reports' accuracy / loss figure) and the DNN-vs-CNN comparison.
//! plotters draws axes, grid and lines; all text goes through `text::draw_text` (plotters'
//! own text spacing is off, see text.rs), so tick labels, axis names, captions and legends
//! are placed here from the chart's pixel mapping.

use super::text::{draw_text, Anchor};
use super::{draw_err, fit_text, render_png, text_width, FONT, TAB10};
use crate::{bail, Result};
use plotters::coord::ranged1d::{DefaultFormatting, KeyPointHint};
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, VPos};
use serde::{Deserialize, Serialize};
use std::path::Path;

/// One epoch of a training history: a row of `history.csv` (written and read by
/// `train::history`, in this field order) and a point of every curve. Defined here, below
/// `train`, so that plotting needs nothing from the training loop.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EpochRecord {
    /// 1-based, as Keras prints it.
    pub epoch: usize,
    pub train_loss: f64,
    pub train_acc: f64,
    pub val_loss: Option<f64>,
    pub val_acc: Option<f64>,
    pub lr: f64,
    /// Wall-clock seconds of the epoch's training steps and validation.
    pub seconds: f64,
    /// What changed before this epoch, e.g. `resumed: --epochs 4 -> 10` (empty when
    /// nothing did; files written before the column existed read as empty).
    #[serde(default)]
    pub note: String,
    /// Mixed precision: training steps of this epoch skipped because their gradients
    /// overflowed (nn::loss_scale); 0 in f32 and in files from before the column.
    #[serde(default)]
    pub skipped_steps: u64,
    /// Mixed precision: the loss scale at the end of the epoch (empty in f32).
    #[serde(default)]
    pub loss_scale: Option<f64>,
}

type Area<'a> = DrawingArea<BitMapBackend<'a>, Shift>;

/// One line of a panel: (epoch, value) points, finite values only.
struct Series {
    label: String,
    color: RGBColor,
    points: Vec<(f64, f64)>,
    /// Where the line breaks: indices into `points` that start a new piece (after a NaN
    /// or infinite value, e.g. a diverged loss). Epochs without a value (None: validation
    /// not run) do not break the line.
    breaks: Vec<usize>,
}

impl Series {
    fn new(
        label: impl Into<String>,
        color: RGBColor,
        pts: impl Iterator<Item = (usize, Option<f64>)>,
    ) -> Self {
        let (mut points, mut breaks) = (Vec::new(), Vec::new());
        for (e, v) in pts {
            match v {
                Some(v) if v.is_finite() => points.push((e as f64, v)),
                Some(_) => breaks.push(points.len()),
                None => {}
            }
        }
        Series {
            label: label.into(),
            color,
            points,
            breaks,
        }
    }

    /// The line's pieces between breaks.
    fn pieces(&self) -> impl Iterator<Item = &[(f64, f64)]> {
        let mut cuts = vec![0];
        cuts.extend(self.breaks.iter().copied());
        cuts.push(self.points.len());
        cuts.dedup();
        let pts = &self.points;
        (0..cuts.len() - 1)
            .map(move |i| &pts[cuts[i]..cuts[i + 1]])
            .filter(|p| !p.is_empty())
    }
}

const GRID: RGBColor = RGBColor(228, 228, 228);
const AXIS: RGBColor = RGBColor(60, 60, 60);
const INK: RGBColor = RGBColor(25, 25, 25);
const TICK_FONT: f64 = 13.0;
const DESC_FONT: f64 = 15.0;
const CAPTION_FONT: f64 = 17.0;

/// An f64 axis with ticks exactly where we say (nice numbers, integer epochs, one per
/// bar). plotters' `with_key_points` on f64 loses the mesh, hence this small Ranged.
struct TickAxis {
    lo: f64,
    hi: f64,
    ticks: Vec<f64>,
}

impl Ranged for TickAxis {
    type ValueType = f64;
    type FormatOption = DefaultFormatting;

    fn map(&self, v: &f64, limit: (i32, i32)) -> i32 {
        let t = (v - self.lo) / (self.hi - self.lo);
        limit.0 + (t * (limit.1 - limit.0) as f64).round() as i32
    }

    fn key_points<Hint: KeyPointHint>(&self, hint: Hint) -> Vec<f64> {
        if hint.weight().allow_light_points() {
            Vec::new()
        } else {
            self.ticks.clone()
        }
    }

    fn range(&self) -> std::ops::Range<f64> {
        self.lo..self.hi
    }
}

/// Ticks at multiples of a 1-2-2.5-5 step covering [lo, hi], at most `max_ticks`, with the
/// step (for formatting). `min_step` 1 keeps epoch ticks on integers.
fn nice_ticks(lo: f64, hi: f64, max_ticks: usize, min_step: f64) -> (Vec<f64>, f64) {
    let span = (hi - lo).max(1e-12);
    let raw = span / max_ticks.max(1) as f64;
    let mag = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 2.5, 5.0, 10.0]
        .iter()
        .map(|m| m * mag)
        .filter(|s| min_step < 1.0 || s.fract() == 0.0)
        .find(|&s| span / s <= max_ticks as f64)
        .unwrap_or(10.0 * mag)
        .max(min_step);
    let first = (lo / step - 1e-9).ceil() * step;
    let ticks = (0..)
        .map(|i| first + i as f64 * step)
        .take_while(|&t| t <= hi + 1e-9 * step)
        .collect();
    (ticks, step)
}

/// Tick label text with as many decimals as the step needs ("0.35", "1.5", "20").
fn tick_label(v: f64, step: f64) -> String {
    let decimals = if step >= 1.0 {
        usize::from(step.fract().abs() > 1e-9)
    } else {
        (-(step.log10()).floor() as usize + 1).min(6)
    };
    let decimals = if step < 1.0 && (step * 10f64.powi(decimals as i32 - 1)).fract().abs() < 1e-9 {
        decimals - 1
    } else {
        decimals
    };
    format!("{v:.decimals$}")
}

/// Padded data range: 5% of the span each side, at least `min_span` wide; clamped to
/// `bounds` (accuracy stays in [0, 1], loss above 0).
fn padded(values: impl Iterator<Item = f64>, min_span: f64, bounds: (f64, f64)) -> (f64, f64) {
    let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
    for v in values {
        lo = lo.min(v);
        hi = hi.max(v);
    }
    if !lo.is_finite() {
        return (
            bounds.0,
            if bounds.1.is_finite() {
                bounds.1
            } else {
                bounds.0 + 1.0
            },
        );
    }
    let mid = 0.5 * (lo + hi);
    let half = (0.5 * (hi - lo)).max(0.5 * min_span) * 1.1;
    let (mut lo, mut hi) = (mid - half, mid + half);
    if lo < bounds.0 {
        hi += bounds.0 - lo;
        lo = bounds.0;
    }
    if hi > bounds.1 {
        lo = (lo - (hi - bounds.1)).max(bounds.0);
        hi = bounds.1;
    }
    (lo, hi)
}

/// Epoch range of a set of series: their min..max, widened to at least 2 epochs, plus a
/// small margin so end markers are not cut.
fn x_range_of<'a>(series: impl Iterator<Item = &'a Series>) -> (f64, f64) {
    let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
    for s in series {
        for &(x, _) in &s.points {
            lo = lo.min(x);
            hi = hi.max(x);
        }
    }
    if !lo.is_finite() {
        return (0.0, 1.0);
    }
    if hi - lo < 2.0 {
        let mid = 0.5 * (lo + hi);
        lo = mid - 1.0;
        hi = mid + 1.0;
    }
    let pad = 0.03 * (hi - lo);
    (lo - pad, hi + pad)
}

/// Where a legend goes inside the plotting area.
#[derive(Clone, Copy)]
enum Corner {
    LowerRight,
    UpperRight,
}

/// Axes of one panel: x and y tick labels with their formatting.
struct Axes {
    x: TickAxis,
    x_labels: Vec<String>,
    y: TickAxis,
    y_step: f64,
    x_desc: String,
    y_desc: String,
    /// Vertical grid lines at the x ticks (off for bars).
    x_grid: bool,
}

/// Caption on top, axes with grid, tick labels and axis names; returns the chart for the
/// caller's series. Area pixels outside the plotting rectangle hold the text.
fn draw_axes<'a>(
    area: &Area<'a>,
    path: &Path,
    caption: &str,
    axes: Axes,
) -> Result<ChartContext<'a, BitMapBackend<'a>, Cartesian2d<TickAxis, TickAxis>>> {
    let err = draw_err(path);
    let (aw, _) = area.dim_in_pixel();
    let caption = fit_text(caption, CAPTION_FONT, aw.saturating_sub(20));
    draw_text(
        area,
        &caption,
        (aw as i32 / 2, 22),
        CAPTION_FONT,
        &INK,
        Anchor::CENTER,
    )
    .map_err(&err)?;
    let y_ticks = axes.y.ticks.clone();
    let x_ticks = axes.x.ticks.clone();
    let y_labels: Vec<String> = y_ticks.iter().map(|&v| tick_label(v, axes.y_step)).collect();
    let y_label_w = y_labels
        .iter()
        .map(|l| text_width(l, TICK_FONT))
        .max()
        .unwrap_or(0) as i32;
    let mut chart = ChartBuilder::on(area)
        .margin(12)
        .margin_top(44)
        .margin_right(22)
        .x_label_area_size(52)
        .y_label_area_size((y_label_w + 40) as u32)
        .build_cartesian_2d(axes.x, axes.y)
        .map_err(&err)?;
    let hidden = (FONT, TICK_FONT).into_font().color(&TRANSPARENT);
    let mut mesh = chart.configure_mesh();
    if !axes.x_grid {
        mesh.disable_x_mesh();
    }
    mesh.bold_line_style(GRID.stroke_width(1))
        .light_line_style(TRANSPARENT)
        .axis_style(AXIS.stroke_width(1))
        .label_style(hidden)
        .draw()
        .map_err(&err)?;
    let base = area.get_base_pixel();
    let rel = |(x, y): (i32, i32)| (x - base.0, y - base.1);
    let (y_lo, x_lo) = (chart.y_range().start, chart.x_range().start);
    for (t, label) in x_ticks.iter().zip(&axes.x_labels) {
        let p = rel(chart.backend_coord(&(*t, y_lo)));
        draw_text(
            area,
            label,
            (p.0, p.1 + 9),
            TICK_FONT,
            &INK,
            Anchor::new(HPos::Center, VPos::Top),
        )
        .map_err(&err)?;
    }
    for (t, label) in y_ticks.iter().zip(&y_labels) {
        let p = rel(chart.backend_coord(&(x_lo, *t)));
        draw_text(
            area,
            label,
            (p.0 - 9, p.1),
            TICK_FONT,
            &INK,
            Anchor::new(HPos::Right, VPos::Center),
        )
        .map_err(&err)?;
    }
    let (xr, yr) = chart.plotting_area().get_pixel_range();
    let (x_mid, y_mid) = ((xr.start + xr.end) / 2 - base.0, (yr.start + yr.end) / 2 - base.1);
    let bottom = yr.end - base.1;
    draw_text(
        area,
        &axes.x_desc,
        (x_mid, bottom + 32),
        DESC_FONT,
        &INK,
        Anchor::new(HPos::Center, VPos::Top),
    )
    .map_err(&err)?;
    let left = xr.start - base.0 - 9 - y_label_w - 10;
    draw_text(
        area,
        &axes.y_desc,
        (left, y_mid),
        DESC_FONT,
        &INK,
        Anchor::vertical(HPos::Center, VPos::Bottom),
    )
    .map_err(&err)?;
    Ok(chart)
}

/// Legend box in a corner of the plotting area: line (+ marker) + label per series.
fn draw_legend(
    area: &Area,
    chart_px: (std::ops::Range<i32>, std::ops::Range<i32>),
    entries: &[(&str, RGBColor)],
    markers: bool,
    corner: Corner,
    path: &Path,
) -> Result<()> {
    if entries.is_empty() {
        return Ok(());
    }
    let err = draw_err(path);
    let base = area.get_base_pixel();
    let (xr, yr) = chart_px;
    let size = 14.0;
    let row = 22;
    let text_w = entries
        .iter()
        .map(|(l, _)| text_width(l, size))
        .max()
        .unwrap_or(0) as i32;
    let (w, h) = (12 + 26 + 8 + text_w + 12, 8 + row * entries.len() as i32 + 6);
    let x0 = xr.end - base.0 - 12 - w;
    let y0 = match corner {
        Corner::UpperRight => yr.start - base.1 + 12,
        Corner::LowerRight => yr.end - base.1 - 12 - h,
    };
    area.draw(&Rectangle::new(
        [(x0, y0), (x0 + w, y0 + h)],
        WHITE.mix(0.9).filled(),
    ))
    .map_err(&err)?;
    area.draw(&Rectangle::new(
        [(x0, y0), (x0 + w, y0 + h)],
        RGBColor(205, 205, 205).stroke_width(1),
    ))
    .map_err(&err)?;
    for (i, (label, color)) in entries.iter().enumerate() {
        let cy = y0 + 8 + row * i as i32 + row / 2 - 1;
        let lx = x0 + 12;
        area.draw(&PathElement::new(
            vec![(lx, cy), (lx + 26, cy)],
            color.stroke_width(2),
        ))
        .map_err(&err)?;
        if markers {
            area.draw(&Circle::new((lx + 13, cy), 3, color.filled()))
                .map_err(&err)?;
        }
        draw_text(
            area,
            label,
            (lx + 34, cy),
            size,
            &INK,
            Anchor::new(HPos::Left, VPos::Center),
        )
        .map_err(&err)?;
    }
    Ok(())
}

/// One line panel: caption, axes, series (line + markers while they do not crowd), legend.
#[allow(clippy::too_many_arguments)]
fn line_panel(
    area: &Area,
    path: &Path,
    caption: &str,
    y_desc: &str,
    series: &[Series],
    x_range: (f64, f64),
    y_range: (f64, f64),
    corner: Corner,
) -> Result<()> {
    let err = draw_err(path);
    let (x_ticks, _) = nice_ticks(x_range.0, x_range.1, 10, 1.0);
    let (y_ticks, y_step) = nice_ticks(y_range.0, y_range.1, 8, 0.0);
    let axes = Axes {
        x_labels: x_ticks.iter().map(|t| format!("{}", t.round() as i64)).collect(),
        x: TickAxis {
            lo: x_range.0,
            hi: x_range.1,
            ticks: x_ticks,
        },
        y: TickAxis {
            lo: y_range.0,
            hi: y_range.1,
            ticks: y_ticks,
        },
        y_step,
        x_desc: "epoch".into(),
        y_desc: y_desc.into(),
        x_grid: true,
    };
    let mut chart = draw_axes(area, path, caption, axes)?;
    let n_max = series.iter().map(|s| s.points.len()).max().unwrap_or(0);
    let marker = match n_max {
        0..=3 => 5,
        4..=40 => 3,
        _ => 0,
    };
    for s in series {
        for piece in s.pieces() {
            // A lone point (between two NaNs) still gets a marker.
            let m = if piece.len() == 1 { marker.max(3) } else { marker };
            chart
                .draw_series(LineSeries::new(piece.iter().copied(), s.color.stroke_width(2)).point_size(m))
                .map_err(&err)?;
        }
    }
    let entries: Vec<(&str, RGBColor)> = series
        .iter()
        .filter(|s| !s.points.is_empty())
        .map(|s| (s.label.as_str(), s.color))
        .collect();
    draw_legend(
        area,
        chart.plotting_area().get_pixel_range(),
        &entries,
        marker > 0,
        corner,
        path,
    )
}

/// The reports' figure: accuracy (left) and loss (right) per epoch, train in blue and
/// validation in orange, with legend, axis labels and grid, `title` on top. Validation
/// lines are left out where `val_*` is None; non-finite values are skipped. 1280x520 PNG.
pub fn plot_curves(history: &[EpochRecord], title: &str, path: &Path) -> Result<()> {
    if history.is_empty() {
        bail!("plot_curves {}: empty history", path.display());
    }
    let acc = [
        Series::new(
            "train",
            TAB10[0],
            history.iter().map(|r| (r.epoch, Some(r.train_acc))),
        ),
        Series::new(
            "validation",
            TAB10[1],
            history.iter().map(|r| (r.epoch, r.val_acc)),
        ),
    ];
    let loss = [
        Series::new(
            "train",
            TAB10[0],
            history.iter().map(|r| (r.epoch, Some(r.train_loss))),
        ),
        Series::new(
            "validation",
            TAB10[1],
            history.iter().map(|r| (r.epoch, r.val_loss)),
        ),
    ];
    let x_range = x_range_of(acc.iter().chain(loss.iter()));
    let acc_y = padded(
        acc.iter().flat_map(|s| s.points.iter().map(|p| p.1)),
        0.05,
        (0.0, 1.0),
    );
    let loss_y = padded(
        loss.iter().flat_map(|s| s.points.iter().map(|p| p.1)),
        0.1,
        (0.0, f64::INFINITY),
    );
    // Best validation accuracy, or last train accuracy without validation, in the caption.
    let acc_caption = match acc[1]
        .points
        .iter()
        .copied()
        .reduce(|a, b| if b.1 > a.1 { b } else { a })
    {
        Some((e, v)) => format!("accuracy (best validation {v:.3} at epoch {})", e as i64),
        None => match acc[0].points.last() {
            Some(&(e, v)) => format!("accuracy (train {v:.3} at epoch {})", e as i64),
            None => "accuracy".to_string(),
        },
    };
    render_png(1280, 520, path, |root| {
        let err = draw_err(path);
        let title = fit_text(title, 22.0, 1240);
        draw_text(root, &title, (640, 24), 22.0, &INK, Anchor::CENTER).map_err(&err)?;
        let body = root.margin(40, 0, 0, 0);
        let (left, right) = body.split_horizontally(640);
        line_panel(
            &left,
            path,
            &acc_caption,
            "accuracy",
            &acc,
            x_range,
            acc_y,
            Corner::LowerRight,
        )?;
        line_panel(
            &right,
            path,
            "loss",
            "loss",
            &loss,
            x_range,
            loss_y,
            Corner::UpperRight,
        )
    })
}

/// Several runs side by side (the DNN vs CNN comparison): validation accuracy per epoch
/// (train accuracy, labelled so, for a run without validation) on the left; mean seconds
/// per epoch per run as bars on the right, each labelled with its time and its ratio to
/// the fastest run. 1280x520 PNG.
pub fn plot_comparison(runs: &[(&str, &[EpochRecord])], path: &Path) -> Result<()> {
    if runs.is_empty() {
        bail!("plot_comparison {}: no runs", path.display());
    }
    if let Some((name, _)) = runs.iter().find(|(_, h)| h.is_empty()) {
        bail!(
            "plot_comparison {}: run {name:?} has an empty history",
            path.display()
        );
    }
    let series: Vec<Series> = runs
        .iter()
        .enumerate()
        .map(|(i, (name, h))| {
            let color = TAB10[i % TAB10.len()];
            if h.iter().any(|r| r.val_acc.is_some()) {
                Series::new(*name, color, h.iter().map(|r| (r.epoch, r.val_acc)))
            } else {
                Series::new(
                    format!("{name} (train)"),
                    color,
                    h.iter().map(|r| (r.epoch, Some(r.train_acc))),
                )
            }
        })
        .collect();
    // Mean seconds per epoch over finite, non-negative values.
    let secs: Vec<f64> = runs
        .iter()
        .map(|(_, h)| {
            let v: Vec<f64> = h
                .iter()
                .map(|r| r.seconds)
                .filter(|s| s.is_finite() && *s >= 0.0)
                .collect();
            if v.is_empty() {
                0.0
            } else {
                v.iter().sum::<f64>() / v.len() as f64
            }
        })
        .collect();
    let fastest = secs
        .iter()
        .copied()
        .filter(|&s| s > 0.0)
        .fold(f64::INFINITY, f64::min);
    let x_range = x_range_of(series.iter());
    let acc_y = padded(
        series.iter().flat_map(|s| s.points.iter().map(|p| p.1)),
        0.05,
        (0.0, 1.0),
    );
    render_png(1280, 520, path, |root| {
        let err = draw_err(path);
        let (left, right) = root.split_horizontally(800);
        line_panel(
            &left,
            path,
            "validation accuracy",
            "accuracy",
            &series,
            x_range,
            acc_y,
            Corner::LowerRight,
        )?;
        // Bars: one slot per run, names under them.
        let n = runs.len();
        let y_max = secs.iter().copied().fold(0.0, f64::max).max(1e-9) * 1.2;
        let (y_ticks, y_step) = nice_ticks(0.0, y_max, 7, 0.0);
        let slot_px = (480 - 120) / n as u32;
        let axes = Axes {
            x_labels: runs
                .iter()
                .map(|(name, _)| fit_text(name, TICK_FONT, slot_px.saturating_sub(6)))
                .collect(),
            x: TickAxis {
                lo: -0.5,
                hi: n as f64 - 0.5,
                ticks: (0..n).map(|i| i as f64).collect(),
            },
            y: TickAxis {
                lo: 0.0,
                hi: y_max,
                ticks: y_ticks,
            },
            y_step,
            x_desc: "run".into(),
            y_desc: "seconds per epoch".into(),
            x_grid: false,
        };
        let mut chart = draw_axes(&right, path, "time per epoch (mean)", axes)?;
        chart
            .draw_series(secs.iter().enumerate().map(|(i, &s)| {
                let c = TAB10[i % TAB10.len()];
                Rectangle::new([(i as f64 - 0.3, 0.0), (i as f64 + 0.3, s)], c.filled())
            }))
            .map_err(&err)?;
        let base = right.get_base_pixel();
        for (i, &s) in secs.iter().enumerate() {
            let ratio = if fastest.is_finite() && s > 0.0 {
                format!(" ({:.1}×)", s / fastest)
            } else {
                String::new()
            };
            let txt = if s >= 100.0 {
                format!("{s:.0} s{ratio}")
            } else if s >= 1.0 {
                format!("{s:.1} s{ratio}")
            } else {
                format!("{s:.3} s{ratio}")
            };
            let txt = fit_text(&txt, 14.0, slot_px);
            let p = chart.backend_coord(&(i as f64, s));
            draw_text(
                &right,
                &txt,
                (p.0 - base.0, p.1 - base.1 - 5),
                14.0,
                &INK,
                Anchor::new(HPos::Center, VPos::Bottom),
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
    fn ticks() {
        assert_eq!(nice_ticks(0.9, 3.1, 10, 1.0).0, vec![1.0, 2.0, 3.0]);
        let (t, step) = nice_ticks(-2.0, 101.0, 10, 1.0);
        assert!(t.len() <= 11 && t.contains(&40.0) && step == 20.0, "{t:?}");
        assert_eq!(nice_ticks(0.0, 25.0, 10, 1.0).1, 5.0, "no 2.5-epoch ticks");
        let (t, step) = nice_ticks(0.27, 0.83, 8, 0.0);
        assert_eq!(step, 0.1);
        assert_eq!(tick_label(t[0], step), "0.3");
        assert_eq!(tick_label(0.35, 0.05), "0.35");
        assert_eq!(tick_label(0.25, 0.25), "0.25");
        assert_eq!(tick_label(40.0, 20.0), "40");
        assert_eq!(tick_label(7.5, 2.5), "7.5");
    }

    #[test]
    fn nan_breaks_the_line_but_none_does_not() {
        let v = [Some(1.0), None, Some(2.0), Some(f64::NAN), Some(3.0), Some(4.0)];
        let s = Series::new("x", TAB10[0], v.iter().enumerate().map(|(e, v)| (e, *v)));
        let pieces: Vec<Vec<(f64, f64)>> = s.pieces().map(|p| p.to_vec()).collect();
        assert_eq!(
            pieces,
            vec![vec![(0.0, 1.0), (2.0, 2.0)], vec![(4.0, 3.0), (5.0, 4.0)]]
        );
    }

    #[test]
    fn accuracy_range_stays_in_unit_interval() {
        let (lo, hi) = padded([0.98, 1.0].into_iter(), 0.05, (0.0, 1.0));
        assert!(lo >= 0.0 && hi <= 1.0 && hi - lo >= 0.05, "{lo} {hi}");
        assert_eq!(padded(std::iter::empty(), 0.05, (0.0, 1.0)), (0.0, 1.0));
        assert_eq!(padded(std::iter::empty(), 0.1, (0.0, f64::INFINITY)), (0.0, 1.0));
    }
}
