//! f64 reference for shaders/lime.wgsl (`explain::lime::Perturbation`): a selection, so
//! the GPU must match it bit for bit (tests/lime.rs).

/// `lime_perturb`: images [B, C, H, W] from `image` and `fill` [C, H, W], `segments`
/// [H, W] superpixel ids and `masks` [B, K] (nonzero = on).
pub fn perturb(image: &[f64], fill: &[f64], segments: &[u32], masks: &[u32], k: usize) -> Vec<f64> {
    let (chw, hw) = (image.len(), segments.len());
    let b = masks.len() / k;
    (0..b * chw)
        .map(|i| {
            let (bi, r) = (i / chw, i % chw);
            if masks[bi * k + segments[r % hw] as usize] != 0 {
                image[r]
            } else {
                fill[r]
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn perturb_selects_image_or_fill() {
        let img = [1.0, 2.0, 3.0, 4.0];
        let fill = [-1.0, -2.0, -3.0, -4.0];
        let seg = [0, 1, 1, 0];
        let out = perturb(&img, &fill, &seg, &[1, 0, 0, 1], 2);
        assert_eq!(out, vec![1.0, -2.0, -3.0, 4.0, -1.0, 2.0, 3.0, -4.0]);
    }
}
