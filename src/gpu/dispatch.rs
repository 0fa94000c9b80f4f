//! One recorded compute dispatch: pipeline, bind group and workgroup counts, built once and
//! replayed every step.

use super::{Gpu, Shader};
use crate::Result;

pub struct Dispatch {
    pub label: String,
    pipeline: wgpu::ComputePipeline,
    bind_group: wgpu::BindGroup,
    groups: [u32; 3],
}

/// One binding of a dispatch: binding index and resource.
pub type Binding<'a> = (u32, wgpu::BindingResource<'a>);

impl Dispatch {
    /// Build a dispatch of `shader::entry` over `groups` workgroups (from `Gpu::groups_1d` or
    /// a kernel's own 2-D/3-D grid). `bindings` lists exactly the bindings the entry point
    /// uses (group 0); the layout is the pipeline's own (derived from the shader).
    pub fn new(
        gpu: &Gpu,
        label: &str,
        shader: &Shader,
        entry: &str,
        constants: &[(&str, f64)],
        bindings: &[Binding<'_>],
        groups: [u32; 3],
    ) -> Result<Dispatch> {
        let groups = gpu.check_groups(label, groups)?;
        let pipeline = gpu.pipeline(shader, entry, constants);
        let layout = pipeline.get_bind_group_layout(0);
        let entries: Vec<wgpu::BindGroupEntry> =
            bindings.iter().map(|(b, r)| wgpu::BindGroupEntry { binding: *b, resource: r.clone() }).collect();
        let bind_group = gpu.device.create_bind_group(&wgpu::BindGroupDescriptor { label: Some(label), layout: &layout, entries: &entries });
        Ok(Dispatch { label: label.to_string(), pipeline, bind_group, groups })
    }

    pub fn groups(&self) -> [u32; 3] {
        self.groups
    }

    pub fn encode(&self, pass: &mut wgpu::ComputePass<'_>) {
        pass.set_pipeline(&self.pipeline);
        pass.set_bind_group(0, &self.bind_group, &[]);
        pass.dispatch_workgroups(self.groups[0], self.groups[1], self.groups[2]);
    }
}
