//! ReLU, LeakyReLU(alpha), PReLU (per-channel learned slope). Kernels: shaders/activation.wgsl.
//! Reference: src/reference/activation.rs.

use super::layer::{Init, Io, LayerOp, Mode, ParamDecl};
use super::spec::LayerSpec;
use super::{accumulate_constant, nc_s, u32_of};
use crate::gpu::{shaders::ACTIVATION, Dispatch, Gpu, Tensor};
use crate::{bail, Result};

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Kind {
    Relu,
    LeakyRelu(f32),
    /// Slope learned per channel: a parameter of shape [C].
    PRelu,
    /// Slope learned per element of a sample (Keras' PReLU default): a parameter [C, S].
    PReluPerElement,
}

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    n: u32,
    c: u32,
    s: u32,
    alpha: f32,
    div: u32,
    _pad: [u32; 3],
}

impl Kind {
    /// The activation a layer spec asks for, or None for other layers: the one place the
    /// spec's activation variants map to kernels (spec.rs builds, reference/network.rs checks
    /// through it).
    pub fn of(spec: &LayerSpec) -> Option<Kind> {
        Some(match spec {
            LayerSpec::Relu => Kind::Relu,
            LayerSpec::LeakyRelu { alpha } => Kind::LeakyRelu(*alpha),
            LayerSpec::Prelu { per_channel: true } => Kind::PRelu,
            LayerSpec::Prelu { per_channel: false } => Kind::PReluPerElement,
            _ => return None,
        })
    }
}

const WG: u32 = 256;

pub struct Activation {
    pub name: String,
    pub kind: Kind,
    /// Input (= output) shape, batch first.
    pub shape: Vec<usize>,
    c: usize,
    s: usize,
    params: wgpu::Buffer,
}

impl Activation {
    /// `shape` is `[N, C, ...]` (or `[N, F]` after a dense layer).
    pub fn new(gpu: &Gpu, name: &str, kind: Kind, shape: &[usize]) -> Result<Self> {
        let (n, c, s) = nc_s(name, shape)?;
        let alpha = if let Kind::LeakyRelu(a) = kind { a } else { 0.0 };
        let div = if kind == Kind::PReluPerElement { 1 } else { s as u32 };
        let p = Params { n: u32_of(name, "elements", n * c * s)?, c: u32_of(name, "channels", c)?, s: s as u32, alpha, div, _pad: [0; 3] };
        let params = gpu.uniform(&format!("{name} params"), &p);
        Ok(Activation { name: name.to_string(), kind, shape: shape.to_vec(), c, s, params })
    }

    /// Shape of PReLU's slope parameter, `[C]` or `[C, ...spatial]`; `None` for
    /// parameter-free kinds.
    pub fn param_shape(&self) -> Option<Vec<usize>> {
        match self.kind {
            Kind::PRelu => Some(vec![self.c]),
            Kind::PReluPerElement => Some(self.shape[1..].to_vec()),
            _ => None,
        }
    }

    fn len(&self) -> usize {
        self.shape.iter().product()
    }

    fn alpha<'a>(&self, alpha: Option<&'a Tensor>) -> Result<Option<&'a Tensor>> {
        match (self.param_shape(), alpha) {
            (Some(shape), Some(a)) => {
                a.expect_shape(&self.name, "alpha", &shape)?;
                Ok(Some(a))
            }
            (Some(shape), None) => bail!("layer {}: PReLU needs its alpha parameter {shape:?}", self.name),
            (None, _) => Ok(None),
        }
    }

    /// Whether the vec4 kernels apply: every 4 consecutive elements share one slope index
    /// pattern (see shaders/activation.wgsl).
    fn vec4(&self) -> bool {
        let n = self.len();
        n.is_multiple_of(4)
            && match self.kind {
                Kind::PReluPerElement => (self.c * self.s).is_multiple_of(4),
                _ => self.s.is_multiple_of(4) || self.param_shape().is_none(),
            }
    }

    /// One invocation per element, or per 4 with the vec4 kernel (`entry` + "4", each
    /// binding moved to its vec4 twin; the slope bound as both `alpha` and `alpha4`).
    fn elementwise(&self, gpu: &Gpu, entry: &str, bindings: &[(u32, &Tensor)]) -> Result<Dispatch> {
        let v4 = self.vec4();
        let entry = if v4 { format!("{entry}4") } else { entry.to_string() };
        let label = format!("{} {entry}", self.name);
        let mut b: Vec<(u32, wgpu::BindingResource)> = vec![(0, self.params.as_entire_binding())];
        // Per-channel slopes ([C], maybe < 16 bytes) are read as `alpha` only: `alpha4` gets
        // a stand-in (the input) to satisfy the layout.
        let stand_in = bindings.iter().find(|(i, _)| *i == 1).map(|(_, t)| *t);
        for (i, t) in bindings {
            match (v4, *i) {
                (false, i) => b.push((i, t.binding())),
                (true, 3) => {
                    let a4 = if self.kind == Kind::PReluPerElement { *t } else { stand_in.unwrap_or(t) };
                    b.extend([(3, t.binding()), (9, a4.binding())]);
                }
                (true, i) => b.push((i + 6, t.binding())),
            }
        }
        let groups = gpu.groups_1d(&label, (if v4 { self.len() / 4 } else { self.len() }) as u64, WG)?;
        Dispatch::new(gpu, &label, &ACTIVATION, &entry, &[], &b, groups)
    }

    /// y = act(x). Overwrites y.
    pub fn forward(&self, gpu: &Gpu, x: &Tensor, alpha: Option<&Tensor>, y: &Tensor) -> Result<Dispatch> {
        x.expect_shape(&self.name, "input", &self.shape)?;
        y.expect_len(&self.name, "output", self.len())?;
        match (self.kind, self.alpha(alpha)?) {
            (Kind::Relu, _) => self.elementwise(gpu, "relu_forward", &[(1, x), (2, y)]),
            (Kind::LeakyRelu(_), _) => self.elementwise(gpu, "leaky_relu_forward", &[(1, x), (2, y)]),
            (_, Some(a)) => self.elementwise(gpu, "prelu_forward", &[(1, x), (2, y), (3, a)]),
            (_, None) => unreachable!("checked by alpha()"),
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
            (_, Some(a)) => self.elementwise(gpu, "prelu_backward_input", &[(4, dx), (5, dy), (1, x), (3, a)]),
            (_, None) => unreachable!("checked by alpha()"),
        }
    }

    /// PReLU only: dalpha = sum of dy * x over x <= 0, per channel (one workgroup each) or
    /// per element (one invocation each, looping over the batch). Overwrites dalpha, or adds
    /// to it when `accumulate` (batch chunks).
    pub fn backward_alpha(&self, gpu: &Gpu, dalpha: &Tensor, dy: &Tensor, x: &Tensor, accumulate: bool) -> Result<Dispatch> {
        let Some(shape) = self.param_shape() else {
            bail!("layer {}: {:?} has no parameters to differentiate", self.name, self.kind);
        };
        dalpha.expect_shape(&self.name, "alpha gradient", &shape)?;
        dy.expect_len(&self.name, "output gradient", self.len())?;
        x.expect_len(&self.name, "saved input", self.len())?;
        let v4 = self.vec4();
        let (entry, groups) = if self.kind == Kind::PRelu {
            ("prelu_backward_alpha", [u32_of(&self.name, "channels", self.c)?, 1, 1])
        } else if v4 {
            ("prelu_backward_alpha_elementwise4", gpu.groups_1d(&self.name, (self.c * self.s / 4) as u64, WG)?)
        } else {
            ("prelu_backward_alpha_elementwise", gpu.groups_1d(&self.name, (self.c * self.s) as u64, WG)?)
        };
        let label = format!("{} {entry}", self.name);
        let b = if entry.ends_with('4') {
            [(0, self.params.as_entire_binding()), (12, dalpha.binding()), (11, dy.binding()), (7, x.binding())]
        } else {
            [(0, self.params.as_entire_binding()), (6, dalpha.binding()), (5, dy.binding()), (1, x.binding())]
        };
        Dispatch::new(gpu, &label, &ACTIVATION, entry, &[accumulate_constant(accumulate)], &b, groups)
    }
}

/// The layer interface: PReLU's slope (`param_shape`, 0.25) is its one parameter.
impl LayerOp for Activation {
    fn out_shape(&self) -> Vec<usize> {
        self.shape.clone()
    }
    fn params(&self) -> Vec<ParamDecl> {
        self.param_shape().map(|s| vec![ParamDecl::new("alpha", s, Init::Const(0.25))]).unwrap_or_default()
    }
    fn backward_reads_input(&self) -> bool {
        true
    }
    fn forward(&self, gpu: &Gpu, io: &Io, _: Mode) -> Result<Vec<Dispatch>> {
        Ok(vec![Activation::forward(self, gpu, io.x, io.maybe_value(0), io.y)?])
    }
    fn backward(&self, gpu: &Gpu, io: &Io) -> Result<Vec<Dispatch>> {
        let mut out = Vec::new();
        if let Some(p) = io.params.first() {
            out.push(self.backward_alpha(gpu, &p.grad, io.dy(), io.x, false)?);
        }
        if let Some(dx) = io.dx {
            out.push(self.backward_input(gpu, dx, io.dy(), io.x, io.maybe_value(0))?);
        }
        Ok(out)
    }
    fn input_grad(&self, gpu: &Gpu, io: &Io) -> Result<Vec<Dispatch>> {
        Ok(vec![self.backward_input(gpu, io.dx.expect("input gradient"), io.dy(), io.x, io.maybe_value(0))?])
    }
    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}
