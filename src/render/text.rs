//! Correct glyph placement for plotters' ab_glyph text.
//!
//! plotters 0.3.7 draws each glyph of a string from its pixel bounding box but forgets the
//! glyph's left side bearing, so letters with a wide bearing ("i", "l", "t") sit too far
//! left and words read "vali dation". [`draw_text`] draws text one glyph at a time through
//! plotters, each placed by its bearing, with advances and kerning read from the bundled
//! font's own tables (hhea, hmtx, cmap format 4, loca/glyf headers, kern format 0), and
//! anchors on the font's ascent-descent box (plotters' own box is too short, so centred
//! text sat high). All text of this module's pictures goes through it.

use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use plotters::style::FontTransform;
use std::sync::OnceLock;

/// Per-glyph metrics of one TrueType font, in font units.
pub(crate) struct Metrics {
    /// ascent - descent (hhea): ab_glyph scales so that this spans `size` pixels.
    height: f32,
    ascent: f32,
    /// cmap format 4 segments: (start, end, id_delta, id_range_offset position or 0).
    segments: Vec<(u16, u16, i16, usize)>,
    data: &'static [u8],
    advance: Vec<u16>,
    /// Glyph bounding box left (xMin) and top (yMax) from the glyf headers.
    x_min: Vec<i16>,
    y_max: Vec<i16>,
    /// Kerning pairs (left << 16 | right) -> value, sorted by key.
    kern: Vec<(u32, i16)>,
}

fn u16_at(d: &[u8], o: usize) -> u16 {
    u16::from_be_bytes([d[o], d[o + 1]])
}
fn i16_at(d: &[u8], o: usize) -> i16 {
    i16::from_be_bytes([d[o], d[o + 1]])
}
fn u32_at(d: &[u8], o: usize) -> u32 {
    u32::from_be_bytes([d[o], d[o + 1], d[o + 2], d[o + 3]])
}

impl Metrics {
    /// Parse the tables this module needs; None if the font lacks one (not for the bundled
    /// font, whose parse is checked by a unit test).
    pub(crate) fn parse(d: &'static [u8]) -> Option<Metrics> {
        let n_tables = u16_at(d, 4) as usize;
        let table = |tag: &[u8; 4]| {
            (0..n_tables)
                .map(|i| 12 + 16 * i)
                .find(|&r| &d[r..r + 4] == tag)
                .map(|r| u32_at(d, r + 8) as usize)
        };
        let (head, hhea, hmtx, cmap, loca, glyf, maxp) = (
            table(b"head")?,
            table(b"hhea")?,
            table(b"hmtx")?,
            table(b"cmap")?,
            table(b"loca")?,
            table(b"glyf")?,
            table(b"maxp")?,
        );
        let ascent = i16_at(d, hhea + 4) as f32;
        let descent = i16_at(d, hhea + 6) as f32;
        let n_hmetrics = u16_at(d, hhea + 34) as usize;
        let n_glyphs = u16_at(d, maxp + 4) as usize;
        let long_loca = i16_at(d, head + 50) == 1;
        let mut advance = Vec::with_capacity(n_glyphs);
        let (mut x_min, mut y_max) = (Vec::with_capacity(n_glyphs), Vec::with_capacity(n_glyphs));
        for g in 0..n_glyphs {
            advance.push(u16_at(d, hmtx + 4 * g.min(n_hmetrics - 1)));
            let (start, end) = if long_loca {
                (
                    u32_at(d, loca + 4 * g) as usize,
                    u32_at(d, loca + 4 * g + 4) as usize,
                )
            } else {
                (
                    2 * u16_at(d, loca + 2 * g) as usize,
                    2 * u16_at(d, loca + 2 * g + 2) as usize,
                )
            };
            if end > start {
                x_min.push(i16_at(d, glyf + start + 2));
                y_max.push(i16_at(d, glyf + start + 8));
            } else {
                x_min.push(0);
                y_max.push(0);
            }
        }
        // cmap: the Windows Unicode BMP subtable (3, 1), format 4.
        let n_sub = u16_at(d, cmap + 2) as usize;
        let sub = (0..n_sub)
            .map(|i| cmap + 4 + 8 * i)
            .find(|&r| u16_at(d, r) == 3 && u16_at(d, r + 2) == 1)
            .map(|r| cmap + u32_at(d, r + 4) as usize)?;
        if u16_at(d, sub) != 4 {
            return None;
        }
        let seg_count = u16_at(d, sub + 6) as usize / 2;
        let ends = sub + 14;
        let starts = ends + 2 * seg_count + 2;
        let deltas = starts + 2 * seg_count;
        let ranges = deltas + 2 * seg_count;
        let segments = (0..seg_count)
            .map(|i| {
                let ro = u16_at(d, ranges + 2 * i) as usize;
                let pos = if ro == 0 { 0 } else { ranges + 2 * i + ro };
                (
                    u16_at(d, starts + 2 * i),
                    u16_at(d, ends + 2 * i),
                    i16_at(d, deltas + 2 * i),
                    pos,
                )
            })
            .collect();
        // kern: version 0, horizontal format 0 subtables.
        let mut kern = Vec::new();
        if let Some(k) = table(b"kern") {
            if u16_at(d, k) == 0 {
                let mut s = k + 4;
                for _ in 0..u16_at(d, k + 2) {
                    let (len, coverage) = (u16_at(d, s + 2) as usize, u16_at(d, s + 4));
                    if coverage == 1 {
                        let n = u16_at(d, s + 6) as usize;
                        for p in 0..n {
                            let e = s + 14 + 6 * p;
                            kern.push((u32_at(d, e), i16_at(d, e + 4)));
                        }
                    }
                    s += len;
                }
            }
        }
        kern.sort_by_key(|&(key, _)| key);
        Some(Metrics {
            height: ascent - descent,
            ascent,
            segments,
            data: d,
            advance,
            x_min,
            y_max,
            kern,
        })
    }

    fn glyph(&self, c: char) -> u16 {
        let c = c as u32;
        if c > 0xFFFF {
            return 0;
        }
        let c = c as u16;
        for &(start, end, delta, pos) in &self.segments {
            if end >= c {
                if start > c {
                    return 0;
                }
                if pos == 0 {
                    return c.wrapping_add(delta as u16);
                }
                let g = u16_at(self.data, pos + 2 * (c - start) as usize);
                return if g == 0 { 0 } else { g.wrapping_add(delta as u16) };
            }
        }
        0
    }

    fn kerning(&self, left: u16, right: u16) -> f32 {
        let key = (left as u32) << 16 | right as u32;
        match self.kern.binary_search_by_key(&key, |&(k, _)| k) {
            Ok(i) => self.kern[i].1 as f32,
            Err(_) => 0.0,
        }
    }

    /// Pen x (pixels, from the string's start) of each char, and the total advance.
    fn layout(&self, text: &str, size: f32) -> (Vec<(char, f32, u16)>, f32) {
        let s = size / self.height;
        let mut pen = 0.0f32;
        let mut prev: Option<u16> = None;
        let mut out = Vec::with_capacity(text.len());
        for c in text.chars() {
            let g = self.glyph(c);
            if let Some(p) = prev {
                pen += self.kerning(p, g) * s;
            }
            out.push((c, pen, g));
            pen += self.advance.get(g as usize).copied().unwrap_or(0) as f32 * s;
            prev = Some(g);
        }
        (out, pen)
    }

    /// (width, height) in pixels of `text` at `size`: total advance by the ascent-descent box.
    pub(crate) fn size_of(&self, text: &str, size: f32) -> (u32, u32) {
        let (_, w) = self.layout(text, size);
        (w.ceil() as u32, size.ceil() as u32)
    }
}

/// The bundled font's metrics.
pub(crate) fn metrics() -> &'static Metrics {
    static M: OnceLock<Metrics> = OnceLock::new();
    M.get_or_init(|| {
        Metrics::parse(super::DEJAVU_SANS).expect("bundled DejaVuSans.ttf has hhea/hmtx/cmap/glyf")
    })
}

/// Where a piece of text sits relative to its anchor point.
#[derive(Clone, Copy)]
pub(crate) struct Anchor {
    pub h: HPos,
    pub v: VPos,
    /// Rotated 90° counter-clockwise (reads bottom to top), like a y-axis label.
    pub vertical: bool,
}

impl Anchor {
    pub const CENTER: Anchor = Anchor {
        h: HPos::Center,
        v: VPos::Center,
        vertical: false,
    };
    pub const fn new(h: HPos, v: VPos) -> Anchor {
        Anchor {
            h,
            v,
            vertical: false,
        }
    }
    pub const fn vertical(h: HPos, v: VPos) -> Anchor {
        Anchor { h, v, vertical: true }
    }
}

/// Draw `text` with its `anchor` at `pos` (pixels of `area`) in the bundled font at
/// `size` pixels (ascent-descent box height). Anchor box: the string's advance width by
/// the font's ascent-descent height, so VPos::Center centres mixed-case text.
pub(crate) fn draw_text<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    text: &str,
    pos: (i32, i32),
    size: f64,
    color: &RGBColor,
    anchor: Anchor,
) -> Result<(), DrawingAreaErrorKind<DB::ErrorType>> {
    super::ensure_fonts();
    let m = metrics();
    let size = size as f32;
    let s = size / m.height;
    let (glyphs, width) = m.layout(text, size);
    let (width, height) = (width.round() as i32, size.round() as i32);
    // Top-left of the box relative to the anchor, in the text's own (unrotated) frame.
    let dx = match anchor.h {
        HPos::Left => 0,
        HPos::Right => -width,
        HPos::Center => -width / 2,
    };
    let dy = match anchor.v {
        VPos::Top => 0,
        VPos::Center => -height / 2,
        VPos::Bottom => -height,
    };
    let baseline = (m.ascent * s).round() as i32;
    let font = (super::FONT, size as f64).into_font();
    let font = if anchor.vertical {
        font.transform(FontTransform::Rotate270)
    } else {
        font
    };
    let style = TextStyle::from(font)
        .color(color)
        .pos(Pos::new(HPos::Left, VPos::Top));
    for (c, pen, g) in glyphs {
        if c.is_whitespace() {
            continue;
        }
        let g = g as usize;
        // plotters draws a lone glyph from its pixel bounds (left bearing lost) shifted
        // down by trunc(size / 2 + bounds top); undo both to put it on the baseline.
        let min_x = (m.x_min.get(g).copied().unwrap_or(0) as f32 * s).floor() as i32;
        let min_y = (-(m.y_max.get(g).copied().unwrap_or(0) as f32) * s).floor() as i32;
        let y_shift = (size / 2.0 + min_y as f32) as i32;
        let ox = dx + pen.round() as i32 + min_x;
        let oy = dy + baseline + min_y - y_shift;
        // Rotate270 maps (x, y) to (y, -x); plotters applies it to the glyph's pixels.
        let (px, py) = if anchor.vertical {
            (pos.0 + oy, pos.1 - ox)
        } else {
            (pos.0 + ox, pos.1 + oy)
        };
        area.draw(&Text::new(c.to_string(), (px, py), style.clone()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bundled_font_metrics() {
        let m = metrics();
        assert_eq!(m.height, 2384.0);
        // 'A' is glyph 36 in DejaVu Sans; unmapped chars give glyph 0.
        assert_eq!(m.glyph('A'), 36);
        assert_eq!(m.glyph('\u{10FFFF}'), 0);
        assert!(m.glyph('→') != 0 && m.glyph('…') != 0 && m.glyph('×') != 0);
        assert!(!m.kern.is_empty());
        // Same total advance as ab_glyph's (plotters' estimate, without kerning pairs).
        let (w, _) = m.size_of("HHHHHHHHHH", 100.0);
        let plotters_w = {
            super::super::ensure_fonts();
            (super::super::FONT, 100.0)
                .into_font()
                .box_size("HHHHHHHHHH")
                .unwrap()
                .0
        };
        assert!((w as i64 - plotters_w as i64).abs() <= 1, "{w} vs {plotters_w}");
    }
}
