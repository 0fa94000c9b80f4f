//! Zero padding as a layer (Keras ZeroPadding2D). Kernels: shaders/pad.wgsl.
//! Reference: src/reference/pad.rs.

use super::layer::{Io, LayerOp, Mode};
use super::{nchw, u32_of};
use crate::gpu::{shaders::PAD, Dispatch, Gpu, Tensor};
use crate::Result;

/// Mirror of `Params` in shaders/pad.wgsl.
#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    n_out: u32,
    n_in: u32,
    h: u32,
    w: u32,
    oh: u32,
    ow: u32,
    pt: u32,
    pl: u32,
}

const WG: u32 = 256;

pub struct Pad2d {
    pub name: String,
    /// (top, bottom, left, right)
    pub pads: (usize, usize, usize, usize),
    /// [N, C, H, W]
    pub input_shape: [usize; 4],
    /// [N, C, H + top + bottom, W + left + right]
    pub output_shape: [usize; 4],
    params: wgpu::Buffer,
}

impl Pad2d {
    /// `input_shape` is `[N, C, H, W]`; `pads` is (top, bottom, left, right).
    pub fn new(gpu: &Gpu, name: &str, pads: (usize, usize, usize, usize), input_shape: &[usize]) -> Result<Self> {
        let [n, c, h, w] = nchw(name, input_shape)?;
        let (top, bottom, left, right) = pads;
        let (oh, ow) = (h + top + bottom, w + left + right);
        let p = Params {
            n_out: u32_of(name, "output elements", n * c * oh * ow)?,
            n_in: u32_of(name, "input elements", n * c * h * w)?,
            h: h as u32,
            w: w as u32,
            oh: oh as u32,
            ow: ow as u32,
            pt: top as u32,
            pl: left as u32,
        };
        let params = gpu.uniform(&format!("{name} params"), &p);
        Ok(Pad2d { name: name.to_string(), pads, input_shape: [n, c, h, w], output_shape: [n, c, oh, ow], params })
    }

    fn dispatch(&self, gpu: &Gpu, entry: &str, n: usize, bindings: &[(u32, &Tensor)]) -> Result<Dispatch> {
        let label = format!("{} {entry}", self.name);
        let mut b: Vec<(u32, wgpu::BindingResource)> = vec![(0, self.params.as_entire_binding())];
        b.extend(bindings.iter().map(|(i, t)| (*i, t.binding())));
        let groups = gpu.groups_1d(&label, n as u64, WG)?;
        Dispatch::new(gpu, &label, &PAD, entry, &[], &b, groups)
    }

    /// y = x surrounded by zeros. Overwrites y (border included).
    pub fn forward(&self, gpu: &Gpu, x: &Tensor, y: &Tensor) -> Result<Dispatch> {
        x.expect_shape(&self.name, "input", &self.input_shape)?;
        y.expect_shape(&self.name, "output", &self.output_shape)?;
        self.dispatch(gpu, "pad_forward", self.output_shape.iter().product(), &[(1, x), (2, y)])
    }

    /// dx = dy cropped to the input's rows and columns. Overwrites dx.
    pub fn backward(&self, gpu: &Gpu, dx: &Tensor, dy: &Tensor) -> Result<Dispatch> {
        dx.expect_shape(&self.name, "input gradient", &self.input_shape)?;
        dy.expect_shape(&self.name, "output gradient", &self.output_shape)?;
        self.dispatch(gpu, "pad_backward", self.input_shape.iter().product(), &[(3, dx), (4, dy)])
    }
}

/// The layer interface: no parameters; the backward crops dy.
impl LayerOp for Pad2d {
    fn out_shape(&self) -> Vec<usize> {
        self.output_shape.to_vec()
    }
    fn forward(&self, gpu: &Gpu, io: &Io, _: Mode) -> Result<Vec<Dispatch>> {
        Ok(vec![Pad2d::forward(self, gpu, io.x, io.y)?])
    }
    fn backward(&self, gpu: &Gpu, io: &Io) -> Result<Vec<Dispatch>> {
        Ok(match io.dx {
            Some(dx) => vec![Pad2d::backward(self, gpu, dx, io.dy())?],
            None => vec![],
        })
    }
    fn input_grad(&self, gpu: &Gpu, io: &Io) -> Result<Vec<Dispatch>> {
        Ok(vec![Pad2d::backward(self, gpu, io.dx.expect("input gradient"), io.dy())?])
    }
    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}
