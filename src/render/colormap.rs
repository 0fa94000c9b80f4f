//! Colormaps: a value t in [0, 1] to an RGB colour. Viridis, inferno and Blues are
//! matplotlib's, sampled at 9 evenly spaced stops and interpolated linearly (visually
//! indistinguishable from the 256-entry tables at these image sizes); jet is matplotlib's
//! piecewise-linear definition.

/// Which colours a heat map uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Colormap {
    /// Blue -> cyan -> yellow -> red (the classic saliency / Grad-CAM look).
    Jet,
    /// Dark purple -> teal -> yellow, perceptually uniform.
    Viridis,
    /// Black -> purple -> orange -> pale yellow, perceptually uniform.
    Inferno,
    /// White -> dark blue (confusion matrices, like sklearn's default).
    Blues,
    /// Black -> white.
    Gray,
}

const VIRIDIS: [[u8; 3]; 9] = [
    [68, 1, 84],
    [72, 40, 120],
    [62, 73, 137],
    [49, 104, 142],
    [38, 130, 142],
    [31, 158, 137],
    [53, 183, 121],
    [110, 206, 88],
    [253, 231, 37],
];

const INFERNO: [[u8; 3]; 9] = [
    [0, 0, 4],
    [31, 12, 72],
    [85, 15, 109],
    [136, 34, 106],
    [186, 54, 85],
    [227, 89, 51],
    [249, 140, 10],
    [249, 201, 50],
    [252, 255, 164],
];

const BLUES: [[u8; 3]; 9] = [
    [247, 251, 255],
    [222, 235, 247],
    [198, 219, 239],
    [158, 202, 225],
    [107, 174, 214],
    [66, 146, 198],
    [33, 113, 181],
    [8, 81, 156],
    [8, 48, 107],
];

impl Colormap {
    /// Colour of `t`, clamped to [0, 1]; NaN maps like 0.
    pub fn rgb(self, t: f32) -> [u8; 3] {
        let t = if t.is_nan() { 0.0 } else { t.clamp(0.0, 1.0) };
        match self {
            Colormap::Viridis => table(&VIRIDIS, t),
            Colormap::Inferno => table(&INFERNO, t),
            Colormap::Blues => table(&BLUES, t),
            Colormap::Gray => {
                let v = to_u8(t);
                [v, v, v]
            }
            Colormap::Jet => {
                // matplotlib's _jet_data: (x, value) breakpoints per channel.
                let r = piecewise(
                    &[(0.0, 0.0), (0.35, 0.0), (0.66, 1.0), (0.89, 1.0), (1.0, 0.5)],
                    t,
                );
                let g = piecewise(
                    &[
                        (0.0, 0.0),
                        (0.125, 0.0),
                        (0.375, 1.0),
                        (0.64, 1.0),
                        (0.91, 0.0),
                        (1.0, 0.0),
                    ],
                    t,
                );
                let b = piecewise(
                    &[(0.0, 0.5), (0.11, 1.0), (0.34, 1.0), (0.65, 0.0), (1.0, 0.0)],
                    t,
                );
                [to_u8(r), to_u8(g), to_u8(b)]
            }
        }
    }

    /// Relative luminance of the colour of `t` in [0, 1] (to pick black or white text on it).
    pub fn luminance(self, t: f32) -> f32 {
        let [r, g, b] = self.rgb(t);
        (0.2126 * r as f32 + 0.7152 * g as f32 + 0.0722 * b as f32) / 255.0
    }
}

fn to_u8(v: f32) -> u8 {
    (v.clamp(0.0, 1.0) * 255.0).round() as u8
}

/// Linear interpolation in an evenly spaced table of stops.
fn table(stops: &[[u8; 3]], t: f32) -> [u8; 3] {
    let x = t * (stops.len() - 1) as f32;
    let i = (x.floor() as usize).min(stops.len() - 2);
    let f = x - i as f32;
    let mut out = [0u8; 3];
    for c in 0..3 {
        let a = stops[i][c] as f32;
        let b = stops[i + 1][c] as f32;
        out[c] = (a + (b - a) * f).round() as u8;
    }
    out
}

/// Piecewise-linear function through `(x, y)` points sorted by x, x from 0 to 1.
fn piecewise(points: &[(f32, f32)], t: f32) -> f32 {
    for w in points.windows(2) {
        let ((x0, y0), (x1, y1)) = (w[0], w[1]);
        if t <= x1 {
            return y0 + (y1 - y0) * (t - x0) / (x1 - x0);
        }
    }
    points[points.len() - 1].1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints() {
        assert_eq!(Colormap::Viridis.rgb(0.0), [68, 1, 84]);
        assert_eq!(Colormap::Viridis.rgb(1.0), [253, 231, 37]);
        assert_eq!(Colormap::Jet.rgb(0.0), [0, 0, 128]);
        assert_eq!(Colormap::Jet.rgb(1.0), [128, 0, 0]);
        assert_eq!(Colormap::Gray.rgb(2.0), [255, 255, 255]);
        assert_eq!(Colormap::Blues.rgb(f32::NAN), [247, 251, 255]);
    }

    #[test]
    fn luminance_orders_blues() {
        assert!(Colormap::Blues.luminance(0.0) > 0.9);
        assert!(Colormap::Blues.luminance(1.0) < 0.25);
    }
}
