//! The resolved geometry of one convolution: the layer's shapes, stride and padding in one
//! plain value, shared by the kernel variants and the f64 reference (src/reference/conv2d.rs).
//!
//! Input position of output (oy, ox) through tap (ky, kx): iy = oy * stride_h + ky - pad_top
//! (likewise ix); bottom / right padding only shrink or grow OH / OW.

use crate::nn::{resolve_padding, Padding};
use crate::Result;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConvGeom {
    pub n: usize,
    pub cin: usize,
    pub h: usize,
    pub w: usize,
    pub cout: usize,
    pub kh: usize,
    pub kw: usize,
    pub stride_h: usize,
    pub stride_w: usize,
    pub pad_top: usize,
    pub pad_left: usize,
    pub oh: usize,
    pub ow: usize,
}

impl ConvGeom {
    /// Resolve `padding` for input `[n, cin, h, w]`, `cout` filters of `kernel`, `stride`.
    pub fn new(x_shape: [usize; 4], cout: usize, kernel: (usize, usize), stride: (usize, usize), padding: Padding) -> Result<ConvGeom> {
        Self::for_layer("conv2d", x_shape, cout, kernel, stride, padding)
    }

    /// `new`, with errors naming `layer`.
    pub fn for_layer(layer: &str, x_shape: [usize; 4], cout: usize, kernel: (usize, usize), stride: (usize, usize), padding: Padding) -> Result<ConvGeom> {
        let [n, cin, h, w] = x_shape;
        let (pad_top, pad_left, oh, ow) = resolve_padding(layer, padding, h, w, kernel, stride)?;
        Ok(ConvGeom { n, cin, h, w, cout, kh: kernel.0, kw: kernel.1, stride_h: stride.0, stride_w: stride.1, pad_top, pad_left, oh, ow })
    }

    /// [N, Cin, H, W].
    pub fn input_shape(&self) -> [usize; 4] {
        [self.n, self.cin, self.h, self.w]
    }
    /// [N, Cout, OH, OW].
    pub fn output_shape(&self) -> [usize; 4] {
        [self.n, self.cout, self.oh, self.ow]
    }
    pub fn x_len(&self) -> usize {
        self.n * self.cin * self.h * self.w
    }
    pub fn w_len(&self) -> usize {
        self.cout * self.cin * self.kh * self.kw
    }
    pub fn y_len(&self) -> usize {
        self.n * self.cout * self.oh * self.ow
    }
}
