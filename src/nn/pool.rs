//! 2-D max and average pooling, any window / stride / padding. Kernels: shaders/pool.wgsl.
//! Reference: src/reference/pool.rs.
//!
//! Max pooling saves the winner of each window (argmax, u32 `h*W + w` inside the (n, c)
//! plane) for the backward pass. Padded positions never win a max; an average divides by
//! the number of in-bounds elements of its window (Keras 'same' average pooling). Global
//! average pooling is `Avg` with `window == (H, W)`, `Padding::Valid`.

use super::layer::{Io, LayerOp, Mode};
use super::{nchw, resolve_padding, u32_of, Padding};
use crate::gpu::{shaders::POOL, Dispatch, Gpu, Tensor};
use crate::{bail, ensure, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PoolKind {
    Max,
    Avg,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PoolConfig {
    pub kind: PoolKind,
    /// (rows, columns)
    pub window: (usize, usize),
    /// (rows, columns)
    pub stride: (usize, usize),
    pub padding: Padding,
}

/// Mirror of `Params` in shaders/pool.wgsl.
#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    n_out: u32,
    n_in: u32,
    h: u32,
    w: u32,
    oh: u32,
    ow: u32,
    kh: u32,
    kw: u32,
    sh: u32,
    sw: u32,
    pt: u32,
    pl: u32,
}

const WG: u32 = 256;

pub struct Pool2d {
    pub name: String,
    pub cfg: PoolConfig,
    /// [N, C, H, W]
    pub input_shape: [usize; 4],
    /// [N, C, OH, OW]
    pub output_shape: [usize; 4],
    params: wgpu::Buffer,
}

/// Check that every window along one axis holds at least one input element: the first
/// window must reach past the leading padding and the last must start before the trailing
/// padding (windows in between then do too, the input being contiguous).
fn check_axis(name: &str, axis: &str, len: usize, k: usize, stride: usize, before: usize, out: usize) -> Result<()> {
    ensure!(
        before < k && (out - 1) * stride < before + len,
        "layer {name}: padding leaves a pooling window with no input element along {axis} \
         (input {len}, window {k}, stride {stride}, leading padding {before}, {out} outputs); \
         padding must be smaller than the window"
    );
    Ok(())
}

impl Pool2d {
    /// `input_shape` is `[N, C, H, W]`. Errors (naming the layer) on a zero window or
    /// stride, a window larger than the padded input, or padding that leaves a window empty.
    pub fn new(gpu: &Gpu, name: &str, cfg: PoolConfig, input_shape: &[usize]) -> Result<Self> {
        let [n, c, h, w] = nchw(name, input_shape)?;
        let (pt, pl, oh, ow) = resolve_padding(name, cfg.padding, h, w, cfg.window, cfg.stride)?;
        check_axis(name, "H", h, cfg.window.0, cfg.stride.0, pt, oh)?;
        check_axis(name, "W", w, cfg.window.1, cfg.stride.1, pl, ow)?;
        let u = |what: &str, v: usize| u32_of(name, what, v);
        let p = Params {
            n_out: u("output elements", n * c * oh * ow)?,
            n_in: u("input elements", n * c * h * w)?,
            h: h as u32,
            w: w as u32,
            oh: oh as u32,
            ow: ow as u32,
            kh: u("window height", cfg.window.0)?,
            kw: u("window width", cfg.window.1)?,
            sh: u("stride", cfg.stride.0)?,
            sw: u("stride", cfg.stride.1)?,
            pt: pt as u32,
            pl: pl as u32,
        };
        let params = gpu.uniform(&format!("{name} params"), &p);
        Ok(Pool2d { name: name.to_string(), cfg, input_shape: [n, c, h, w], output_shape: [n, c, oh, ow], params })
    }

    fn n_in(&self) -> usize {
        self.input_shape.iter().product()
    }
    fn n_out(&self) -> usize {
        self.output_shape.iter().product()
    }

    /// 2x2 stride-2 windows with no padding over an even H and W: every input element in
    /// exactly one window, so the max_pool2 kernels (a window per invocation, vec2 rows) apply.
    pub fn pairs(&self) -> bool {
        let [_, _, h, w] = self.input_shape;
        let [_, _, oh, ow] = self.output_shape;
        self.cfg.window == (2, 2) && self.cfg.stride == (2, 2) && h % 2 == 0 && w % 2 == 0 && (oh, ow) == (h / 2, w / 2)
    }

    /// The argmax tensor for Max (required, [N, C, OH, OW] elements), none for Avg.
    fn argmax<'a>(&self, argmax: Option<&'a Tensor>) -> Result<Option<&'a Tensor>> {
        match (self.cfg.kind, argmax) {
            (PoolKind::Max, Some(a)) => {
                a.expect_len(&self.name, "argmax", self.n_out())?;
                Ok(Some(a))
            }
            (PoolKind::Max, None) => bail!("layer {}: max pooling needs an argmax tensor of shape {:?} (u32)", self.name, self.output_shape),
            (PoolKind::Avg, Some(_)) => bail!("layer {}: average pooling takes no argmax tensor", self.name),
            (PoolKind::Avg, None) => Ok(None),
        }
    }

    fn dispatch(&self, gpu: &Gpu, entry: &str, n: usize, bindings: &[(u32, &Tensor)]) -> Result<Dispatch> {
        let label = format!("{} {entry}", self.name);
        let mut b: Vec<(u32, wgpu::BindingResource)> = vec![(0, self.params.as_entire_binding())];
        b.extend(bindings.iter().map(|(i, t)| (*i, t.binding())));
        let groups = gpu.groups_1d(&label, n as u64, WG)?;
        Dispatch::new(gpu, &label, &POOL, entry, &[], &b, groups)
    }

    /// y = pool(x); for Max also argmax (u32, the winner's `h*W + w` in its plane).
    /// `argmax` is required for Max and refused for Avg. Overwrites y and argmax.
    pub fn forward(&self, gpu: &Gpu, x: &Tensor, y: &Tensor, argmax: Option<&Tensor>) -> Result<Dispatch> {
        x.expect_shape(&self.name, "input", &self.input_shape)?;
        y.expect_len(&self.name, "output", self.n_out())?;
        match self.argmax(argmax)? {
            Some(a) if self.pairs() => self.dispatch(gpu, "max_pool2_forward", self.n_out(), &[(7, x), (2, y), (3, a)]),
            Some(a) => self.dispatch(gpu, "max_pool_forward", self.n_out(), &[(1, x), (2, y), (3, a)]),
            None => self.dispatch(gpu, "avg_pool_forward", self.n_out(), &[(1, x), (2, y)]),
        }
    }

    /// dx from dy (and, for Max, the forward's argmax). Overwrites dx.
    pub fn backward(&self, gpu: &Gpu, dx: &Tensor, dy: &Tensor, argmax: Option<&Tensor>) -> Result<Dispatch> {
        dx.expect_len(&self.name, "input gradient", self.n_in())?;
        dy.expect_len(&self.name, "output gradient", self.n_out())?;
        match self.argmax(argmax)? {
            Some(a) if self.pairs() => self.dispatch(gpu, "max_pool2_backward", self.n_out(), &[(8, dx), (5, dy), (6, a)]),
            Some(a) => self.dispatch(gpu, "max_pool_backward", self.n_in(), &[(4, dx), (5, dy), (6, a)]),
            None => self.dispatch(gpu, "avg_pool_backward", self.n_in(), &[(4, dx), (5, dy)]),
        }
    }
}

/// The layer interface: max pooling asks the memory plan for its argmax indices (one u32
/// per output element, written by the forward, read by the backward).
impl LayerOp for Pool2d {
    fn out_shape(&self) -> Vec<usize> {
        self.output_shape.to_vec()
    }
    fn extra_slots(&self) -> Vec<(&'static str, Vec<usize>)> {
        match self.cfg.kind {
            PoolKind::Max => vec![("argmax", self.output_shape.to_vec())],
            PoolKind::Avg => vec![],
        }
    }
    fn forward(&self, gpu: &Gpu, io: &Io, _: Mode) -> Result<Vec<Dispatch>> {
        Ok(vec![Pool2d::forward(self, gpu, io.x, io.y, io.extra.first())?])
    }
    fn backward(&self, gpu: &Gpu, io: &Io) -> Result<Vec<Dispatch>> {
        Ok(match io.dx {
            Some(dx) => vec![Pool2d::backward(self, gpu, dx, io.dy(), io.extra.first())?],
            None => vec![],
        })
    }
    fn input_grad(&self, gpu: &Gpu, io: &Io) -> Result<Vec<Dispatch>> {
        Ok(vec![Pool2d::backward(self, gpu, io.dx.expect("input gradient"), io.dy(), io.extra.first())?])
    }
    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}
