//! f64 reference for shaders/loss_scale.wgsl: the dynamic loss-scale rule (PyTorch
//! GradScaler's): a step whose gradients hold an inf or NaN is skipped and the scale halved;
//! after `interval` finite steps in a row the scale doubles. Bounds as the shader's:
//! [2^-24, 2^24].

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Scaler {
    /// The factor the next backward pass multiplies the loss gradient by.
    pub scale: f64,
    /// Steps applied (Adam's t) and skipped.
    pub applied: u64,
    pub skipped: u64,
    /// Finite steps since the scale last changed.
    pub good: u64,
    pub interval: u64,
}

impl Scaler {
    pub fn new(scale: f64, interval: u64) -> Scaler {
        Scaler { scale, applied: 0, skipped: 0, good: 0, interval }
    }

    /// One step whose (scaled) gradients are all finite or not: returns the factor the
    /// optimizer multiplies them by (1 / the scale they carry), or None for a skipped step.
    pub fn step(&mut self, finite: bool) -> Option<f64> {
        let unscale = 1.0 / self.scale;
        if !finite {
            self.scale = (self.scale * 0.5).max(2f64.powi(-24));
            self.good = 0;
            self.skipped += 1;
            return None;
        }
        self.applied += 1;
        self.good += 1;
        if self.good >= self.interval {
            self.scale = (self.scale * 2.0).min(2f64.powi(24));
            self.good = 0;
        }
        Some(unscale)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overflow_halves_and_skips_growth_doubles_after_interval() {
        let mut s = Scaler::new(8.0, 3);
        assert_eq!(s.step(false), None);
        assert_eq!((s.scale, s.skipped, s.applied), (4.0, 1, 0));
        assert_eq!(s.step(true), Some(0.25));
        assert_eq!(s.step(true), Some(0.25));
        assert_eq!(s.scale, 4.0, "two finite steps: not yet");
        assert_eq!(s.step(true), Some(0.25));
        assert_eq!((s.scale, s.good, s.applied), (8.0, 0, 3), "the third finite step doubles");
        // An overflow resets the run of finite steps.
        s.step(true);
        s.step(false);
        assert_eq!((s.scale, s.good, s.skipped), (4.0, 0, 2));
    }

    #[test]
    fn scale_stays_within_bounds() {
        let mut s = Scaler::new(1.0, 1);
        for _ in 0..100 {
            s.step(false);
        }
        assert_eq!(s.scale, 2f64.powi(-24));
        for _ in 0..100 {
            s.step(true);
        }
        assert_eq!(s.scale, 2f64.powi(24));
    }
}
