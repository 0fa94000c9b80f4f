//! f64 reference for shaders/occlusion.wgsl (occluded copies) and the map the host builds
//! from the probability drops.

/// Patch grid of an `h x w` image: (NY, NX) positions per column / row for a square patch
/// of `size` moved by `stride`, the last row / column clamped inside the image.
pub fn grid(h: usize, w: usize, size: usize, stride: usize) -> (usize, usize) {
    ((h - size).div_ceil(stride) + 1, (w - size).div_ceil(stride) + 1)
}

/// Top-left corner of position `pos` (row-major over the grid).
pub fn origin(pos: usize, nx: usize, h: usize, w: usize, size: usize, stride: usize) -> (usize, usize) {
    let (py, px) = (pos / nx, pos % nx);
    ((py * stride).min(h - size), (px * stride).min(w - size))
}

/// occlusion_patch: x [M, C, H, W] -> out [rows, C, H, W], row j holding copy
/// min(first + j, total - 1): image r / P with patch position r % P set to `fill`.
#[allow(clippy::too_many_arguments)]
pub fn patch(x: &[f64], chw: [usize; 3], size: usize, stride: usize, fill: f64, rows: usize, first: usize, total: usize) -> Vec<f64> {
    let [c, h, w] = chw;
    let len = c * h * w;
    let (ny, nx) = grid(h, w, size, stride);
    let positions = ny * nx;
    let mut out = vec![0.0; rows * len];
    for j in 0..rows {
        let r = (first + j).min(total - 1);
        let (i, pos) = (r / positions, r % positions);
        let (y0, x0) = origin(pos, nx, h, w, size, stride);
        for q in 0..len {
            let (y, xx) = ((q % (h * w)) / w, q % w);
            let inside = (y0..y0 + size).contains(&y) && (x0..x0 + size).contains(&xx);
            out[j * len + q] = if inside { fill } else { x[i * len + q] };
        }
    }
    out
}

/// The sensitivity map [h * w] of one image from its drops [P]: each pixel averages the
/// drops of the patches that cover it.
pub fn map(drops: &[f64], h: usize, w: usize, size: usize, stride: usize) -> Vec<f64> {
    let (_, nx) = grid(h, w, size, stride);
    let mut sum = vec![0.0; h * w];
    let mut count = vec![0usize; h * w];
    for (pos, &d) in drops.iter().enumerate() {
        let (y0, x0) = origin(pos, nx, h, w, size, stride);
        for y in y0..y0 + size {
            for x in x0..x0 + size {
                sum[y * w + x] += d;
                count[y * w + x] += 1;
            }
        }
    }
    sum.iter().zip(&count).map(|(s, &n)| if n > 0 { s / n as f64 } else { 0.0 }).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patches_cover_the_image_with_the_last_clamped() {
        // 7 wide, patch 3, stride 3: corners 0, 3 and 4 (clamped from 6).
        assert_eq!(grid(7, 7, 3, 3), (3, 3));
        assert_eq!(origin(2, 3, 7, 7, 3, 3), (0, 4));
        assert_eq!(origin(8, 3, 7, 7, 3, 3), (4, 4));
        assert_eq!(grid(5, 9, 5, 2), (1, 3));
        // Every pixel is covered.
        let m = map(&[1.0; 9], 7, 7, 3, 3);
        assert!(m.iter().all(|&v| v == 1.0));
        // Drops average over covering patches: only position 0 dropped.
        let mut d = vec![0.0; 9];
        d[0] = 1.0;
        let m = map(&d, 7, 7, 3, 3);
        assert_eq!((m[0], m[2 * 7 + 2], m[3 * 7 + 3]), (1.0, 1.0, 0.0));
    }

    #[test]
    fn patch_fills_only_the_square() {
        let x: Vec<f64> = (0..2 * 5 * 4).map(|v| v as f64).collect();
        let out = patch(&x, [2, 5, 4], 2, 2, -1.0, 1, 1, 6);
        // Copy 1: position 1 of a 3x2 grid (ny = ceil(3/2)+1 = 3, nx = 2): corner (0, 2).
        for c in 0..2 {
            for y in 0..5 {
                for xx in 0..4 {
                    let q = c * 20 + y * 4 + xx;
                    let want = if y < 2 && xx >= 2 { -1.0 } else { x[q] };
                    assert_eq!(out[q], want, "c {c} y {y} x {xx}");
                }
            }
        }
    }
}
