//! Superpixels for LIME: SLIC (Achanta et al. 2012) on a grayscale image, on the CPU (one
//! small picture, preprocessing). Every segment is 4-connected and the ids are 0..count.
//!
//! Distance of pixel (y, x, I) to a centre (cy, cx, cI):
//! `D^2 = (I - cI)^2 + ((y - cy)^2 + (x - cx)^2) / S^2 * m^2`, with S the grid step
//! `sqrt(H*W / segments)` and m the compactness, in intensity units of an image in [0, 1]:
//! a spatial distance of S weighs as much as an intensity difference of m. Larger m gives
//! squarer segments, smaller m follows edges more closely. (scikit-image's `slic` with its
//! default compactness 10 on Lab colour corresponds to m = 0.1 on [0, 1] gray.)

use crate::{ensure, Result};
use std::collections::{HashMap, VecDeque};

/// SLIC settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SlicOptions {
    /// Approximate number of segments (the grid of initial centres); the result may have a
    /// few more or fewer (grid rounding, connectivity).
    pub segments: usize,
    /// m above: intensity units per grid step.
    pub compactness: f64,
    /// k-means iterations.
    pub iterations: usize,
    /// Connected pieces smaller than `min_size_factor * S^2` pixels are merged into the
    /// neighbour they share the longest border with.
    pub min_size_factor: f64,
    /// Gaussian pre-smoothing of the intensities (pixels; 0 = none), as scikit-image's
    /// `sigma`.
    pub sigma: f64,
}

impl Default for SlicOptions {
    fn default() -> Self {
        SlicOptions { segments: 40, compactness: 0.1, iterations: 10, min_size_factor: 0.25, sigma: 0.0 }
    }
}

/// A segmentation of an `h x w` image: `labels[y * w + x]` in `0..count`, every id used.
#[derive(Debug, Clone, PartialEq)]
pub struct Segmentation {
    pub labels: Vec<u32>,
    pub count: usize,
    pub h: usize,
    pub w: usize,
}

impl Segmentation {
    /// Check a segmentation made elsewhere (e.g. quickshift in Python): `h * w` labels,
    /// ids `0..count` each used at least once.
    pub fn from_labels(labels: Vec<u32>, h: usize, w: usize) -> Result<Segmentation> {
        ensure!(h > 0 && w > 0, "segmentation: image size {h}x{w} must be positive");
        ensure!(labels.len() == h * w, "segmentation: {} labels for an {h}x{w} image ({} pixels)", labels.len(), h * w);
        let count = *labels.iter().max().unwrap() as usize + 1;
        let mut used = vec![false; count];
        labels.iter().for_each(|&l| used[l as usize] = true);
        if let Some(missing) = used.iter().position(|u| !u) {
            crate::bail!("segmentation: ids must be 0..{count} with every id used; id {missing} has no pixel");
        }
        Ok(Segmentation { labels, count, h, w })
    }

    /// Pixels per segment.
    pub fn sizes(&self) -> Vec<usize> {
        let mut s = vec![0; self.count];
        self.labels.iter().for_each(|&l| s[l as usize] += 1);
        s
    }

    /// Number of 4-connected pieces of segment `id` (1 for every segment SLIC returns).
    pub fn pieces(&self, id: u32) -> usize {
        let (h, w) = (self.h, self.w);
        let mut seen = vec![false; h * w];
        let mut pieces = 0;
        for start in 0..h * w {
            if self.labels[start] != id || seen[start] {
                continue;
            }
            pieces += 1;
            flood(&self.labels, h, w, start, &mut seen, |_| {});
        }
        pieces
    }
}

/// Visit the 4-connected region of `labels[start]`'s value containing `start`.
fn flood(labels: &[u32], h: usize, w: usize, start: usize, seen: &mut [bool], mut visit: impl FnMut(usize)) {
    let id = labels[start];
    let mut queue = VecDeque::from([start]);
    seen[start] = true;
    while let Some(p) = queue.pop_front() {
        visit(p);
        for q in neighbours(p, h, w).into_iter().flatten() {
            if !seen[q] && labels[q] == id {
                seen[q] = true;
                queue.push_back(q);
            }
        }
    }
}

fn neighbours(p: usize, h: usize, w: usize) -> [Option<usize>; 4] {
    let (y, x) = (p / w, p % w);
    [
        (y > 0).then(|| p - w),
        (y + 1 < h).then(|| p + w),
        (x > 0).then(|| p - 1),
        (x + 1 < w).then(|| p + 1),
    ]
}

/// Separable Gaussian blur of an `h x w` plane (edge pixels repeated). `sigma <= 0`: copy.
pub fn gaussian_blur(img: &[f64], h: usize, w: usize, sigma: f64) -> Vec<f64> {
    if sigma <= 0.0 {
        return img.to_vec();
    }
    let r = (3.0 * sigma).ceil() as isize;
    let k: Vec<f64> = (-r..=r).map(|d| (-(d * d) as f64 / (2.0 * sigma * sigma)).exp()).collect();
    let norm: f64 = k.iter().sum();
    let clamp = |v: isize, n: usize| v.clamp(0, n as isize - 1) as usize;
    let mut tmp = vec![0.0; h * w];
    for y in 0..h {
        for x in 0..w {
            tmp[y * w + x] = (-r..=r).map(|d| k[(d + r) as usize] * img[y * w + clamp(x as isize + d, w)]).sum::<f64>() / norm;
        }
    }
    let mut out = vec![0.0; h * w];
    for y in 0..h {
        for x in 0..w {
            out[y * w + x] = (-r..=r).map(|d| k[(d + r) as usize] * tmp[clamp(y as isize + d, h) * w + x]).sum::<f64>() / norm;
        }
    }
    out
}

/// SLIC superpixels of a gray `h x w` image (row-major, values nominally in [0, 1]).
/// Errors: empty or mis-sized image, 0 segments or more segments than pixels, a
/// non-positive or non-finite compactness.
pub fn slic(gray: &[f32], h: usize, w: usize, opts: &SlicOptions) -> Result<Segmentation> {
    ensure!(h > 0 && w > 0, "slic: image size {h}x{w} must be positive");
    ensure!(gray.len() == h * w, "slic: {} values for an {h}x{w} image ({} pixels)", gray.len(), h * w);
    let n = h * w;
    ensure!(opts.segments >= 1 && opts.segments <= n, "slic: {} segments requested for an {h}x{w} image: need 1..={n}", opts.segments);
    ensure!(opts.compactness.is_finite() && opts.compactness > 0.0, "slic: compactness {} must be positive", opts.compactness);
    ensure!(opts.min_size_factor.is_finite() && opts.min_size_factor >= 0.0, "slic: min_size_factor {} must be >= 0", opts.min_size_factor);
    let img = gaussian_blur(&gray.iter().map(|&v| if v.is_finite() { v as f64 } else { 0.0 }).collect::<Vec<_>>(), h, w, opts.sigma);

    // Initial centres on a regular grid of about `segments` cells.
    let step = (n as f64 / opts.segments as f64).sqrt();
    let ny = ((h as f64 / step).round() as usize).clamp(1, h);
    let nx = ((w as f64 / step).round() as usize).clamp(1, w);
    let grad = |y: usize, x: usize| {
        let at = |yy: usize, xx: usize| img[yy.min(h - 1) * w + xx.min(w - 1)];
        let gx = at(y, x + 1) - at(y, x.saturating_sub(1));
        let gy = at(y + 1, x) - at(y.saturating_sub(1), x);
        gx * gx + gy * gy
    };
    // (y, x, intensity)
    let mut centres: Vec<[f64; 3]> = Vec::with_capacity(ny * nx);
    for iy in 0..ny {
        for ix in 0..nx {
            // The cell's centre (continuous), kept unless a pixel of the 3x3 neighbourhood of
            // its nearest pixel has a strictly lower gradient: do not start on an edge.
            let (fy, fx) = ((iy as f64 + 0.5) * h as f64 / ny as f64 - 0.5, (ix as f64 + 0.5) * w as f64 / nx as f64 - 0.5);
            let (y0, x0) = ((fy.round() as usize).min(h - 1), (fx.round() as usize).min(w - 1));
            let mut best = (grad(y0, x0), fy, fx);
            for y in y0.saturating_sub(1)..=(y0 + 1).min(h - 1) {
                for x in x0.saturating_sub(1)..=(x0 + 1).min(w - 1) {
                    let g = grad(y, x);
                    if g < best.0 {
                        best = (g, y as f64, x as f64);
                    }
                }
            }
            let at = (best.1.round() as usize).min(h - 1) * w + (best.2.round() as usize).min(w - 1);
            centres.push([best.1, best.2, img[at]]);
        }
    }

    let spatial = (opts.compactness / step).powi(2);
    let radius = step.ceil() as isize + 1;
    let mut labels = vec![0u32; n];
    let mut dist = vec![f64::INFINITY; n];
    for _ in 0..opts.iterations.max(1) {
        dist.fill(f64::INFINITY);
        for (ci, c) in centres.iter().enumerate() {
            let (cy, cx) = (c[0].round() as isize, c[1].round() as isize);
            for y in (cy - radius).max(0)..=(cy + radius).min(h as isize - 1) {
                for x in (cx - radius).max(0)..=(cx + radius).min(w as isize - 1) {
                    let p = y as usize * w + x as usize;
                    let (dy, dx, di) = (y as f64 - c[0], x as f64 - c[1], img[p] - c[2]);
                    let d = di * di + (dy * dy + dx * dx) * spatial;
                    if d < dist[p] {
                        dist[p] = d;
                        labels[p] = ci as u32;
                    }
                }
            }
        }
        // Pixels no window reached (only possible on degenerate grids): nearest centre.
        for p in 0..n {
            if dist[p].is_infinite() {
                let (y, x) = ((p / w) as f64, (p % w) as f64);
                let nearest = centres
                    .iter()
                    .enumerate()
                    .min_by(|a, b| ((a.1[0] - y).powi(2) + (a.1[1] - x).powi(2)).total_cmp(&((b.1[0] - y).powi(2) + (b.1[1] - x).powi(2))))
                    .unwrap()
                    .0;
                labels[p] = nearest as u32;
            }
        }
        let mut sums = vec![[0.0f64; 4]; centres.len()];
        for p in 0..n {
            let s = &mut sums[labels[p] as usize];
            s[0] += (p / w) as f64;
            s[1] += (p % w) as f64;
            s[2] += img[p];
            s[3] += 1.0;
        }
        for (c, s) in centres.iter_mut().zip(&sums) {
            if s[3] > 0.0 {
                *c = [s[0] / s[3], s[1] / s[3], s[2] / s[3]];
            }
        }
    }
    let min_size = ((opts.min_size_factor * step * step).round() as usize).max(1);
    Ok(enforce_connectivity(&labels, h, w, min_size))
}

/// Split every label into its 4-connected pieces, merge pieces smaller than `min_size`
/// into the neighbouring piece they share the longest border with (ties: the lower piece
/// index), and number the result 0.. in raster order of first appearance.
fn enforce_connectivity(labels: &[u32], h: usize, w: usize, min_size: usize) -> Segmentation {
    let n = h * w;
    let mut comp = vec![usize::MAX; n];
    let mut pixels: Vec<Vec<usize>> = Vec::new();
    let mut seen = vec![false; n];
    for start in 0..n {
        if seen[start] {
            continue;
        }
        let id = pixels.len();
        let mut list = Vec::new();
        flood(labels, h, w, start, &mut seen, |p| list.push(p));
        list.iter().for_each(|&p| comp[p] = id);
        pixels.push(list);
    }
    // Union-find over pieces; `pixels[root]` holds every pixel of the merged piece.
    let mut parent: Vec<usize> = (0..pixels.len()).collect();
    fn root(parent: &mut [usize], mut i: usize) -> usize {
        while parent[i] != i {
            parent[i] = parent[parent[i]];
            i = parent[i];
        }
        i
    }
    loop {
        let small = (0..pixels.len())
            .filter(|&i| parent[i] == i && pixels[i].len() < min_size)
            .min_by_key(|&i| (pixels[i].len(), i));
        let Some(r) = small else { break };
        let mut border: HashMap<usize, usize> = HashMap::new();
        for &p in &pixels[r] {
            for q in neighbours(p, h, w).into_iter().flatten() {
                let rq = root(&mut parent, comp[q]);
                if rq != r {
                    *border.entry(rq).or_default() += 1;
                }
            }
        }
        let Some((&into, _)) = border.iter().max_by(|a, b| a.1.cmp(b.1).then(b.0.cmp(a.0))) else { break };
        let moved = std::mem::take(&mut pixels[r]);
        pixels[into].extend(moved);
        parent[r] = into;
    }
    let mut ids: HashMap<usize, u32> = HashMap::new();
    let mut out = vec![0u32; n];
    for p in 0..n {
        let r = root(&mut parent, comp[p]);
        let next = ids.len() as u32;
        out[p] = *ids.entry(r).or_insert(next);
    }
    Segmentation { labels: out, count: ids.len(), h, w }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connectivity_splits_and_merges() {
        // Label 0 in two pieces (left column, right column), a 1-pixel island of 2.
        #[rustfmt::skip]
        let labels = vec![
            0, 1, 1, 0,
            0, 1, 2, 0,
            0, 1, 1, 0,
        ];
        let s = enforce_connectivity(&labels, 3, 4, 2);
        assert_eq!(s.count, 3);
        assert_eq!(s.labels, vec![0, 1, 1, 2, 0, 1, 1, 2, 0, 1, 1, 2]);
    }

    #[test]
    fn flat_image_gives_a_grid() {
        let s = slic(&vec![0.5; 12 * 12], 12, 12, &SlicOptions { segments: 9, ..Default::default() }).unwrap();
        assert_eq!(s.count, 9);
        assert!(s.sizes().iter().all(|&z| z == 16), "{:?}", s.sizes());
    }

    #[test]
    fn bad_options_are_errors() {
        let g = vec![0.0; 16];
        assert!(slic(&g, 4, 4, &SlicOptions { segments: 17, ..Default::default() }).unwrap_err().0.contains("17 segments"));
        assert!(slic(&g, 4, 4, &SlicOptions { segments: 0, ..Default::default() }).is_err());
        assert!(slic(&g, 4, 4, &SlicOptions { segments: 4, compactness: 0.0, ..Default::default() }).unwrap_err().0.contains("compactness"));
        assert!(slic(&g[..15], 4, 4, &SlicOptions { segments: 4, ..Default::default() }).unwrap_err().0.contains("15 values"));
        assert!(Segmentation::from_labels(vec![0, 2, 2, 0], 2, 2).unwrap_err().0.contains("id 1"));
    }
}
