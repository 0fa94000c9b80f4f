//! Image utilities for the explanations. Inputs: a gray image `&[f32]` of length `h * w`
//! (row-major, values in [0, 1]); a per-pixel map (saliency, Grad-CAM, ...) `&[f32]` of
//! the same length; outputs: `RgbImage` of width `w`, height `h`. Length mismatches are
//! bugs in the caller and panic with the shapes.

use super::Colormap;
use image::{imageops, Rgb, RgbImage};

fn check_len(what: &str, len: usize, h: usize, w: usize) {
    assert_eq!(len, h * w, "{what}: length {len} is not h*w = {h}*{w}");
}

fn to_u8(v: f32) -> u8 {
    if v.is_nan() {
        0
    } else {
        (v.clamp(0.0, 1.0) * 255.0).round() as u8
    }
}

/// Gray `[h * w]` in [0, 1] (clamped) -> RGB image `w x h`.
pub fn gray_to_rgb(img: &[f32], h: usize, w: usize) -> RgbImage {
    check_len("gray_to_rgb", img.len(), h, w);
    RgbImage::from_fn(w as u32, h as u32, |x, y| {
        let v = to_u8(img[y as usize * w + x as usize]);
        Rgb([v, v, v])
    })
}

/// Value at percentile `p` (0..=100, nearest rank) of sorted finite values.
fn percentile(sorted: &[f32], p: f32) -> f32 {
    let rank = ((p / 100.0) * (sorted.len() - 1) as f32).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

/// Map `values` to [0, 1]. Without clipping: (v - min) / (max - min). With
/// `clip_percentile = Some(p)` (e.g. 99): the range is the (100-p)-th .. p-th percentile
/// and values outside it saturate, so a few extreme pixels do not wash out the map.
/// A constant map and non-finite values give 0.
pub fn normalize(values: &[f32], clip_percentile: Option<f32>) -> Vec<f32> {
    let mut finite: Vec<f32> = values.iter().copied().filter(|v| v.is_finite()).collect();
    if finite.is_empty() {
        return vec![0.0; values.len()];
    }
    finite.sort_by(|a, b| a.total_cmp(b));
    let (lo, hi) = match clip_percentile {
        Some(p) => {
            let p = p.clamp(50.0, 100.0);
            (percentile(&finite, 100.0 - p), percentile(&finite, p))
        }
        None => (finite[0], finite[finite.len() - 1]),
    };
    let span = hi - lo;
    values
        .iter()
        .map(|&v| {
            if !v.is_finite() || span <= 0.0 {
                0.0
            } else {
                ((v - lo) / span).clamp(0.0, 1.0)
            }
        })
        .collect()
}

/// Per-pixel map `[h * w]` -> colours, min-max normalized.
pub fn heatmap(values: &[f32], h: usize, w: usize, colormap: Colormap) -> RgbImage {
    heatmap_clipped(values, h, w, colormap, None)
}

/// Per-pixel map `[h * w]` -> colours, normalized by [`normalize`] with
/// `clip_percentile` (e.g. `Some(99.0)` for gradients with a few huge pixels).
pub fn heatmap_clipped(
    values: &[f32],
    h: usize,
    w: usize,
    colormap: Colormap,
    clip_percentile: Option<f32>,
) -> RgbImage {
    check_len("heatmap", values.len(), h, w);
    let t = normalize(values, clip_percentile);
    RgbImage::from_fn(w as u32, h as u32, |x, y| {
        Rgb(colormap.rgb(t[y as usize * w + x as usize]))
    })
}

/// `(1 - alpha) * base + alpha * heat` per channel. alpha 0 gives `base`, 1 gives `heat`.
/// A `heat` of another size (e.g. a coarse Grad-CAM) is resized bilinearly to `base`'s.
pub fn overlay(base: &RgbImage, heat: &RgbImage, alpha: f32) -> RgbImage {
    let alpha = alpha.clamp(0.0, 1.0);
    let resized;
    let heat = if heat.dimensions() == base.dimensions() {
        heat
    } else {
        resized = imageops::resize(heat, base.width(), base.height(), imageops::FilterType::Triangle);
        &resized
    };
    let mut out = base.clone();
    for (o, hp) in out.pixels_mut().zip(heat.pixels()) {
        for c in 0..3 {
            let v = (1.0 - alpha) * o[c] as f32 + alpha * hp[c] as f32;
            o[c] = v.round().clamp(0.0, 255.0) as u8;
        }
    }
    out
}

/// Bilinear resize of a map `[h * w]` to `[new_h * new_w]` (pixel centres aligned, as
/// OpenCV / PyTorch `align_corners=False`): upsample a coarse Grad-CAM before colouring.
pub fn resize_bilinear(values: &[f32], h: usize, w: usize, new_h: usize, new_w: usize) -> Vec<f32> {
    check_len("resize_bilinear", values.len(), h, w);
    let src = |len: usize, new_len: usize, i: usize| -> (usize, usize, f32) {
        let x = ((i as f32 + 0.5) * len as f32 / new_len as f32 - 0.5).clamp(0.0, (len - 1) as f32);
        let i0 = x.floor() as usize;
        let i1 = (i0 + 1).min(len - 1);
        (i0, i1, x - i0 as f32)
    };
    let mut out = Vec::with_capacity(new_h * new_w);
    for y in 0..new_h {
        let (y0, y1, fy) = src(h, new_h, y);
        for x in 0..new_w {
            let (x0, x1, fx) = src(w, new_w, x);
            let top = values[y0 * w + x0] * (1.0 - fx) + values[y0 * w + x1] * fx;
            let bot = values[y1 * w + x0] * (1.0 - fx) + values[y1 * w + x1] * fx;
            out.push(top * (1.0 - fy) + bot * fy);
        }
    }
    out
}

/// Each pixel becomes a `factor x factor` block (crisp pixels for 48x48 faces).
pub fn upscale_nearest(img: &RgbImage, factor: u32) -> RgbImage {
    let factor = factor.max(1);
    RgbImage::from_fn(img.width() * factor, img.height() * factor, |x, y| {
        *img.get_pixel(x / factor, y / factor)
    })
}

/// Gray level masked pixels are washed towards.
const MASK_GRAY: f32 = 205.0;

/// Keep the `round(fraction * h * w)` most salient pixels of `img` unchanged (ties: lower
/// index first) and grey out the rest: their luminance at a quarter contrast, washed
/// towards light gray, so the kept pixels stand out while the face stays recognisable (the
/// reports' "mask out low heat" pictures). `saliency` is `[h * w]` for an image of height
/// h, width w; NaN counts as least salient.
pub fn mask_top_fraction(img: &RgbImage, saliency: &[f32], fraction: f32) -> RgbImage {
    let (w, h) = (img.width() as usize, img.height() as usize);
    check_len("mask_top_fraction saliency", saliency.len(), h, w);
    let n = h * w;
    let k = ((fraction.clamp(0.0, 1.0) * n as f32).round() as usize).min(n);
    let mut order: Vec<usize> = (0..n).collect();
    let key = |i: usize| {
        if saliency[i].is_nan() {
            f32::NEG_INFINITY
        } else {
            saliency[i]
        }
    };
    order.sort_by(|&a, &b| key(b).total_cmp(&key(a)).then(a.cmp(&b)));
    let mut keep = vec![false; n];
    for &i in &order[..k] {
        keep[i] = true;
    }
    let mut out = img.clone();
    for (i, p) in out.pixels_mut().enumerate() {
        if !keep[i] {
            let lum = 0.299 * p[0] as f32 + 0.587 * p[1] as f32 + 0.114 * p[2] as f32;
            let v = (0.25 * lum + 0.75 * MASK_GRAY).round() as u8;
            *p = Rgb([v, v, v]);
        }
    }
    out
}

/// Boundaries around supporting / opposing superpixels.
const BOUNDARY: [u8; 3] = [255, 225, 0];

/// LIME picture at the image's own size: see [`outline_segments_scaled`].
pub fn outline_segments(
    gray: &[f32],
    segments: &[u32],
    h: usize,
    w: usize,
    positive: &[u32],
    negative: &[u32],
) -> RgbImage {
    outline_segments_scaled(gray, segments, h, w, positive, negative, 1)
}

/// LIME picture: the gray face `[h * w]` upscaled by `scale` (nearest), superpixels
/// (`segments[h * w]`, one id per pixel) listed in `positive` tinted green (they support
/// the class), in `negative` tinted red (they oppose it); boundaries `max(1, scale / 2)`
/// output pixels wide, yellow around tinted superpixels and faintly lighter between the
/// others. Drawing at `scale` 3-4 keeps boundaries thin next to 48x48 detail.
pub fn outline_segments_scaled(
    gray: &[f32],
    segments: &[u32],
    h: usize,
    w: usize,
    positive: &[u32],
    negative: &[u32],
    scale: u32,
) -> RgbImage {
    check_len("outline_segments gray", gray.len(), h, w);
    check_len("outline_segments segments", segments.len(), h, w);
    let s = scale.max(1) as usize;
    let (ow, oh) = (w * s, h * s);
    let thick = (s / 2).max(1);
    let seg_at = |x: usize, y: usize| segments[(y / s) * w + x / s];
    let marked = |id: u32| positive.contains(&id) || negative.contains(&id);
    RgbImage::from_fn(ow as u32, oh as u32, |x, y| {
        let (x, y) = (x as usize, y as usize);
        let id = seg_at(x, y);
        // Boundary: a pixel up to `thick` to the right or below (at output resolution)
        // belongs to another segment.
        let other = (1..=thick).find_map(|d| {
            if x + d < ow && seg_at(x + d, y) != id {
                Some(seg_at(x + d, y))
            } else if y + d < oh && seg_at(x, y + d) != id {
                Some(seg_at(x, y + d))
            } else {
                None
            }
        });
        let g = gray[(y / s) * w + x / s];
        let g = if g.is_nan() { 0.0 } else { g.clamp(0.0, 1.0) };
        if let Some(o) = other {
            if marked(id) || marked(o) {
                return Rgb(BOUNDARY);
            }
            let v = to_u8(g + (1.0 - g) * 0.35);
            return Rgb([v, v, v]);
        }
        // LIME's look: raise one channel, darken the other two, keep the face's shading.
        let hi = g * 0.45 + 0.55;
        let lo = g * 0.7;
        if positive.contains(&id) {
            Rgb([to_u8(lo), to_u8(hi), to_u8(lo)])
        } else if negative.contains(&id) {
            Rgb([to_u8(hi), to_u8(lo), to_u8(lo)])
        } else {
            let v = to_u8(g);
            Rgb([v, v, v])
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalize_clips_outliers() {
        let mut v: Vec<f32> = (0..100).map(|i| i as f32).collect();
        v[99] = 1e6;
        let n = normalize(&v, Some(98.0));
        assert_eq!(n[99], 1.0);
        assert!(n[50] > 0.4 && n[50] < 0.6, "{}", n[50]);
        let plain = normalize(&v, None);
        assert!(plain[50] < 1e-3);
    }

    #[test]
    fn constant_and_nan() {
        assert_eq!(normalize(&[2.0, 2.0], None), vec![0.0, 0.0]);
        assert_eq!(normalize(&[f32::NAN, 1.0, 3.0], None), vec![0.0, 0.0, 1.0]);
    }

    #[test]
    fn bilinear_constant_and_ramp() {
        let r = resize_bilinear(&[1.0; 4], 2, 2, 5, 7);
        assert!(r.iter().all(|&v| (v - 1.0).abs() < 1e-6));
        let r = resize_bilinear(&[0.0, 1.0], 1, 2, 1, 4);
        assert_eq!(r, vec![0.0, 0.25, 0.75, 1.0]);
    }
}
