//! ReLU, LeakyReLU(alpha), PReLU (per-channel learned slope). Kernels: shaders/activation.wgsl.
//! Reference: src/reference/activation.rs.

use super::{accumulate_constant, nc_s, u32_of};
use crate::gpu::{shaders::ACTIVATION, Dispatch, Gpu, Tensor};
use crate::{bail, Result};

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Kind {
    Relu,
    LeakyRelu(f32),
    /// Slope learned per channel: a parameter of shape [C].
    PRelu,
}

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    n: u32,
    c: u32,
    s: u32,
    alpha: f32,
}

const WG: u32 = 256;

pub struct Activation {
    pub name: String,
    pub kind: Kind,
    /// Input (= output) shape, batch first.
    pub shape: Vec<usize>,
    c: usize,
    params: wgpu::Buffer,
}

impl Activation {
    /// `shape` is `[N, C, ...]` (or `[N, F]` after a dense layer).
    pub fn new(gpu: &Gpu, name: &str, kind: Kind, shape: &[usize]) -> Result<Self> {
        let (n, c, s) = nc_s(name, shape)?;
        let alpha = if let Kind::LeakyRelu(a) = kind { a } else { 0.0 };
        let p = Params { n: u32_of(name, "elements", n * c * s)?, c: u32_of(name, "channels", c)?, s: s as u32, alpha };
        let params = gpu.uniform(&format!("{name} params"), &p);
        Ok(Activation { name: name.to_string(), kind, shape: shape.to_vec(), c, params })
    }

    /// Shape of PReLU's slope parameter, `[C]`; `None` for parameter-free kinds.
    pub fn param_shape(&self) -> Option<Vec<usize>> {
        (self.kind == Kind::PRelu).then(|| vec![self.c])
    }

    fn len(&self) -> usize {
        self.shape.iter().product()
    }

    fn alpha<'a>(&self, alpha: Option<&'a Tensor>) -> Result<Option<&'a Tensor>> {
        match (self.kind, alpha) {
            (Kind::PRelu, Some(a)) => {
                a.expect_shape(&self.name, "alpha", &[self.c])?;
                Ok(Some(a))
            }
            (Kind::PRelu, None) => bail!("layer {}: PReLU needs its alpha parameter [{}]", self.name, self.c),
            (_, _) => Ok(None),
        }
    }

    fn elementwise(&self, gpu: &Gpu, entry: &str, bindings: &[(u32, &Tensor)]) -> Result<Dispatch> {
        let label = format!("{} {entry}", self.name);
        let mut b: Vec<(u32, wgpu::BindingResource)> = vec![(0, self.params.as_entire_binding())];
        b.extend(bindings.iter().map(|(i, t)| (*i, t.binding())));
        let groups = gpu.groups_1d(&label, self.len() as u64, WG)?;
        Dispatch::new(gpu, &label, &ACTIVATION, entry, &[], &b, groups)
    }

    /// y = act(x). Overwrites y.
    pub fn forward(&self, gpu: &Gpu, x: &Tensor, alpha: Option<&Tensor>, y: &Tensor) -> Result<Dispatch> {
        x.expect_shape(&self.name, "input", &self.shape)?;
        y.expect_len(&self.name, "output", self.len())?;
        match (self.kind, self.alpha(alpha)?) {
            (Kind::Relu, _) => self.elementwise(gpu, "relu_forward", &[(1, x), (2, y)]),
            (Kind::LeakyRelu(_), _) => self.elementwise(gpu, "leaky_relu_forward", &[(1, x), (2, y)]),
            (Kind::PRelu, Some(a)) => self.elementwise(gpu, "prelu_forward", &[(1, x), (2, y), (3, a)]),
            (Kind::PRelu, None) => unreachable!("checked by alpha()"),
        }
    }

    /// dx = dy * act'(x). Overwrites dx.
    pub fn backward_input(&self, gpu: &Gpu, dx: &Tensor, dy: &Tensor, x: &Tensor, alpha: Option<&Tensor>) -> Result<Dispatch> {
        dx.expect_len(&self.name, "input gradient", self.len())?;
        dy.expect_len(&self.name, "output gradient", self.len())?;
        x.expect_len(&self.name, "saved input", self.len())?;
        match (self.kind, self.alpha(alpha)?) {
            (Kind::Relu, _) => self.elementwise(gpu, "relu_backward", &[(4, dx), (5, dy), (1, x)]),
            (Kind::LeakyRelu(_), _) => self.elementwise(gpu, "leaky_relu_backward", &[(4, dx), (5, dy), (1, x)]),
            (Kind::PRelu, Some(a)) => self.elementwise(gpu, "prelu_backward_input", &[(4, dx), (5, dy), (1, x), (3, a)]),
            (Kind::PRelu, None) => unreachable!("checked by alpha()"),
        }
    }

    /// PReLU only: dalpha[c] = sum of dy * x over x <= 0 in channel c. Overwrites dalpha, or
    /// adds to it when `accumulate` (batch chunks).
    pub fn backward_alpha(&self, gpu: &Gpu, dalpha: &Tensor, dy: &Tensor, x: &Tensor, accumulate: bool) -> Result<Dispatch> {
        if self.kind != Kind::PRelu {
            bail!("layer {}: {:?} has no parameters to differentiate", self.name, self.kind);
        }
        dalpha.expect_shape(&self.name, "alpha gradient", &[self.c])?;
        dy.expect_len(&self.name, "output gradient", self.len())?;
        x.expect_len(&self.name, "saved input", self.len())?;
        let label = format!("{} prelu_backward_alpha", self.name);
        let b = [(0, self.params.as_entire_binding()), (6, dalpha.binding()), (5, dy.binding()), (1, x.binding())];
        let groups = [u32_of(&self.name, "channels", self.c)?, 1, 1];
        Dispatch::new(gpu, &label, &ACTIVATION, "prelu_backward_alpha", &[accumulate_constant(accumulate)], &b, groups)
    }
}
