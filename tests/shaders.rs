//! Needs no GPU: every file in shaders/, as compiled (the file followed by
//! shaders/prelude.wgsl), parses and validates with naga, and every entry point translates
//! to SPIR-V (Vulkan), MSL (Metal) and HLSL (DX12), so a Metal or DX12 break shows on a
//! Linux machine without those drivers.
//!
//! The cooperative-matrix kernels (`*_coop`, two builds of one body: src/gpu/shaders.rs)
//! validate with naga's COOPERATIVE_MATRIX and SHADER_FLOAT16 capabilities (the real build)
//! or SHADER_FLOAT16 alone (`*_coop_emulated`). The real build translates to SPIR-V and MSL
//! 2.4 (naga's HLSL writer has no cooperative matrices; DX12 never gets the feature), and,
//! as wgpu's Vulkan backend would compile it, for every block shape the host may pick.

#[path = "kernels/coop_common.rs"]
mod coop_common;

use mien::gpu::shaders::{ALL, CONV2D_COOP, DENSE_COOP, PRELUDE};
use naga::back::{hlsl, msl, spv};
use naga::valid::{Capabilities, ValidationFlags, Validator};

/// Shaders that use subgroup operations (`*_subgroup.wgsl`) validate with naga's SUBGROUP
/// capability and translate for MSL 2.4 (simd_* functions) and HLSL shader model 6.0 (Wave*
/// intrinsics); the cooperative-matrix builds (`coop`, `f16`) their capabilities; every
/// other shader must need no capability at all.
fn validate(name: &str, src: &str, subgroups: bool, coop: bool, f16: bool) -> (naga::Module, naga::valid::ModuleInfo) {
    let module = naga::front::wgsl::parse_str(src).unwrap_or_else(|e| panic!("{name}.wgsl: {}", e.emit_to_string(src)));
    let mut validator = if subgroups {
        let mut v = Validator::new(ValidationFlags::all(), Capabilities::SUBGROUP);
        v.subgroup_stages(naga::valid::ShaderStages::COMPUTE).subgroup_operations(naga::valid::SubgroupOperationSet::all());
        v
    } else if coop {
        Validator::new(ValidationFlags::all(), Capabilities::COOPERATIVE_MATRIX | Capabilities::SHADER_FLOAT16)
    } else if f16 {
        Validator::new(ValidationFlags::all(), Capabilities::SHADER_FLOAT16)
    } else {
        Validator::new(ValidationFlags::all(), Capabilities::empty())
    };
    let info = validator
        .validate(&module)
        .unwrap_or_else(|e| panic!("{name}.wgsl: {}", e.emit_to_string(src)));
    (module, info)
}

#[test]
fn every_shader_file_is_registered() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("shaders");
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "wgsl") {
            let stem = path.file_stem().unwrap().to_str().unwrap().to_string();
            let text = std::fs::read_to_string(&path).unwrap();
            if stem == "prelude" {
                assert_eq!(PRELUDE, text, "prelude: compiled-in source is stale");
                continue;
            }
            let shader = ALL.iter().find(|s| s.name == stem).unwrap_or_else(|| panic!("{} is not listed in src/gpu/shaders.rs", path.display()));
            assert_eq!(shader.file, text, "{stem}: compiled-in source is stale");
            if !shader.needs_coop() {
                assert_eq!(shader.source, format!("{text}\n{PRELUDE}"), "{stem}: not compiled as the file followed by the prelude");
                continue;
            }
            // Both builds: a coop prelude, the GEMM core, this body, the prelude.
            let part = |f: &str| std::fs::read_to_string(dir.join("coop").join(f)).unwrap();
            let gemm = part("gemm.wgsl");
            assert_eq!(shader.source, format!("{}{gemm}{text}\n{PRELUDE}", part("real.wgsl")), "{stem}: compiled-in real build is stale");
            let emulated = ALL.iter().find(|s| s.name == format!("{stem}_emulated")).unwrap_or_else(|| panic!("{stem}: no emulated build in src/gpu/shaders.rs"));
            assert_eq!(emulated.source, format!("{}{gemm}{text}\n{PRELUDE}", part("emulated.wgsl")), "{stem}: compiled-in emulated build is stale");
        }
    }
}

/// The prelude needs no capability (it is part of every shader, subgroup or not), adds no
/// binding or entry point (it must not change a file's layout), and each of its helpers is
/// used by some shader.
#[test]
fn the_prelude_is_plain_helpers_that_shaders_use() {
    let src = format!("const WG: u32 = 64u;\n{PRELUDE}");
    let (module, _) = validate("prelude", &src, false, false, false);
    assert!(module.entry_points.is_empty(), "the prelude declares entry points");
    assert!(module.global_variables.is_empty(), "the prelude declares bindings or workgroup variables");
    assert!(!module.functions.is_empty(), "the prelude declares no helper");
    for (_, f) in module.functions.iter() {
        let name = f.name.as_deref().expect("named function");
        let users: Vec<&str> = ALL.iter().filter(|s| s.file.contains(&format!("{name}("))).map(|s| s.name).collect();
        assert!(!users.is_empty(), "prelude helper {name} is used by no shader");
        for s in ALL {
            assert!(!s.file.contains(&format!("fn {name}(")), "{}.wgsl defines {name}, which the prelude already provides", s.name);
        }
    }
}

#[test]
fn every_shader_validates_and_translates_to_spirv_msl_hlsl() {
    for shader in ALL {
        let subgroups = shader.needs_subgroups();
        let (module, info) = validate(shader.name, shader.source, subgroups, shader.needs_coop(), shader.needs_f16());
        for ep in &module.entry_points {
            assert_eq!(ep.stage, naga::ShaderStage::Compute, "{}::{} is not a compute entry point", shader.name, ep.name);
            let what = format!("{}::{}", shader.name, ep.name);
            // Resolve `override` constants to their defaults, as a pipeline without
            // constants would (every override in shaders/ must have a default).
            let (module, info) = naga::back::pipeline_constants::process_overrides(
                &module,
                &info,
                Some((naga::ShaderStage::Compute, &ep.name)),
                &naga::back::PipelineConstants::default(),
            )
            .unwrap_or_else(|e| panic!("{what}: overrides: {e}"));
            let (module, info) = (module.as_ref(), info.as_ref());

            let pipeline = spv::PipelineOptions { shader_stage: naga::ShaderStage::Compute, entry_point: ep.name.clone() };
            spv::write_vec(module, info, &spv::Options::default(), Some(&pipeline)).unwrap_or_else(|e| panic!("{what} -> SPIR-V: {e}"));

            let pipeline = msl::PipelineOptions {
                entry_point: Some((naga::ShaderStage::Compute, ep.name.clone())),
                ..Default::default()
            };
            let options = msl::Options { lang_version: if subgroups || shader.needs_coop() { (2, 4) } else { msl::Options::default().lang_version }, ..Default::default() };
            msl::write_string(module, info, &options, &pipeline).unwrap_or_else(|e| panic!("{what} -> MSL: {e}"));

            if shader.needs_coop() {
                continue;
            }
            let mut out = String::new();
            let model = if shader.needs_f16() {
                hlsl::ShaderModel::V6_2
            } else if subgroups {
                hlsl::ShaderModel::V6_0
            } else {
                hlsl::Options::default().shader_model
            };
            let options = hlsl::Options { shader_model: model, ..Default::default() };
            let pipeline = hlsl::PipelineOptions { entry_point: Some((naga::ShaderStage::Compute, ep.name.clone())) };
            let mut writer = hlsl::Writer::new(&mut out, &options, &pipeline);
            writer.write(module, info, None).unwrap_or_else(|e| panic!("{what} -> HLSL: {e}"));
        }
    }
}

/// The real cooperative-matrix builds as wgpu's Vulkan backend compiles them (SPIR-V 1.6 with
/// the device's capabilities, bounds checks, loop bounding) for every block shape the host
/// may pick, with subgroups of 32 and 64: what an NVIDIA GPU runs is what was checked here.
#[test]
fn cooperative_matrix_builds_compile_for_every_block_shape() {
    coop_common::validate_real_build(&CONV2D_COOP, &["conv2d_coop_forward", "conv2d_coop_backward_input", "conv2d_coop_backward_weight", "conv2d_coop_reduce"], &[("ACCUMULATE", 1.0)]);
    for pass in [0.0, 1.0, 2.0] {
        coop_common::validate_real_build(&DENSE_COOP, &["dense_coop_gemm", "dense_coop_reduce"], &[("ACCUMULATE", 1.0), ("PASS", pass)]);
    }
}

/// Storage buffers an entry point statically uses (what WebGPU's
/// max_storage_buffers_per_shader_stage counts).
fn storage_buffers(module: &naga::Module, info: &naga::valid::ModuleInfo, ep: usize) -> u32 {
    let used = info.get_entry_point(ep);
    module.global_variables.iter().filter(|(h, g)| matches!(g.space, naga::AddressSpace::Storage { .. }) && !used[*h].is_empty()).count() as u32
}

/// The fused training kernels bind `fuse::TRAIN_STORAGE_BUFFERS` storage buffers at most
/// (networks fall back to the unfused kernels on adapters that allow fewer, as browsers do),
/// and every other kernel stays within 10, which the page needs on SwiftShader.
#[test]
fn storage_buffers_per_kernel_fit_the_limits_mien_assumes() {
    let mut fused_max = 0;
    for shader in ALL {
        let (module, info) = validate(shader.name, shader.source, shader.needs_subgroups(), shader.needs_coop(), shader.needs_f16());
        for (k, ep) in module.entry_points.iter().enumerate() {
            let n = storage_buffers(&module, &info, k);
            if shader.name == "batchnorm" && ep.name.contains("_act") {
                fused_max = fused_max.max(n);
            } else {
                assert!(n <= 10, "{}::{} binds {n} storage buffers", shader.name, ep.name);
            }
        }
    }
    assert_eq!(fused_max, mien::nn::fuse::TRAIN_STORAGE_BUFFERS);
}
