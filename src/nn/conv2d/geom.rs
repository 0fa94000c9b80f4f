//! The resolved geometry of one convolution: the layer's shapes, stride and padding in one
//! plain value, shared by the kernel variants and the f64 reference (src/reference/conv2d.rs).
//!
//! Input position of output (oy, ox) through tap (ky, kx): iy = oy * stride_h + ky - pad_top
//! (likewise ix); bottom / right padding only shrink or grow OH / OW.

use crate::nn::{resolve_padding, u32_of, Padding};
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

/// The geometry head every convolution uniform starts with (shaders/conv2d.wgsl `Params`,
/// conv2d_tiled.wgsl and conv2d_coop.wgsl `P`: the same 13 u32 fields in this order), each
/// value checked to fit a u32 with an error naming the layer.
#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
pub struct GeomUniform {
    pub n: u32,
    pub ci: u32,
    pub h: u32,
    pub w: u32,
    pub co: u32,
    pub kh: u32,
    pub kw: u32,
    pub sh: u32,
    pub sw: u32,
    pub pt: u32,
    pub pl: u32,
    pub oh: u32,
    pub ow: u32,
}

impl ConvGeom {
    /// This geometry as the uniform head of layer `name`'s kernels.
    pub fn uniform(&self, name: &str) -> Result<GeomUniform> {
        let u = |what: &str, v: usize| u32_of(name, what, v);
        Ok(GeomUniform {
            n: u("batch", self.n)?,
            ci: u("in_channels", self.cin)?,
            h: u("height", self.h)?,
            w: u("width", self.w)?,
            co: u("out_channels", self.cout)?,
            kh: u("kernel height", self.kh)?,
            kw: u("kernel width", self.kw)?,
            sh: u("stride", self.stride_h)?,
            sw: u("stride", self.stride_w)?,
            pt: u("padding", self.pad_top)?,
            pl: u("padding", self.pad_left)?,
            oh: u("output height", self.oh)?,
            ow: u("output width", self.ow)?,
        })
    }
}

/// The uniform of the implicit-GEMM kernels (conv2d_tiled.wgsl and conv2d_coop.wgsl `P`):
/// the geometry, the GEMM (gm rows, gn columns, gk depth) of one pass, the weight
/// gradient's depth split (kchunk per split, `splits` of them), the weight count and
/// whether the forward adds a bias (the tiled kernels add it in a pass of their own: 0).
#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
pub struct GemmUniform {
    pub geom: GeomUniform,
    pub gm: u32,
    pub gn: u32,
    pub gk: u32,
    pub kchunk: u32,
    pub splits: u32,
    pub nw: u32,
    pub bias: u32,
}

impl GemmUniform {
    pub fn new(name: &str, g: &ConvGeom, gemm: [usize; 3], kchunk: usize, splits: usize, bias: bool) -> Result<GemmUniform> {
        let u = |what: &str, v: usize| u32_of(name, what, v);
        Ok(GemmUniform {
            geom: g.uniform(name)?,
            gm: u("GEMM rows", gemm[0])?,
            gn: u("GEMM columns", gemm[1])?,
            gk: u("GEMM depth", gemm[2])?,
            kchunk: u("GEMM depth per split", kchunk)?,
            splits: u("weight-gradient splits", splits)?,
            nw: u("weight elements", g.w_len())?,
            bias: bias as u32,
        })
    }
}
