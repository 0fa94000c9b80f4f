//! Shared by the kernel tests: one GPU per test binary, seeded inputs, GPU <-> f64 helpers.

#![allow(dead_code)]

use mien::gpu::Gpu;
use mien::rng::Rng;
use mien::Tensor;
use std::sync::OnceLock;

static GPU: OnceLock<Option<Gpu>> = OnceLock::new();

/// The test GPU. Fails loudly when there is no adapter (how to get one is in the message),
/// unless MIEN_ALLOW_NO_GPU=1, which CI never sets. With MIEN_EXPECT_ADAPTER=<substring>
/// (CI sets `llvmpipe`) the adapter's name must contain it, and with
/// MIEN_EXPECT_BACKEND=<name> (CI sets `vulkan`: Mesa's GL driver is also called llvmpipe,
/// and a machine without lavapipe would otherwise pass on GL) its backend must be that one.
pub fn gpu() -> Option<&'static Gpu> {
    GPU.get_or_init(|| match Gpu::new() {
        Ok(gpu) => {
            eprintln!("{}", gpu.describe());
            if let Ok(want) = std::env::var("MIEN_EXPECT_ADAPTER") {
                let name = &gpu.info().name;
                assert!(name.to_lowercase().contains(&want.to_lowercase()), "MIEN_EXPECT_ADAPTER={want:?} but the adapter is {name:?}");
            }
            if let Ok(want) = std::env::var("MIEN_EXPECT_BACKEND") {
                let backend = gpu.info().backend.to_string();
                assert!(backend.eq_ignore_ascii_case(&want), "MIEN_EXPECT_BACKEND={want:?} but the adapter {:?} runs on {backend:?} (is Mesa's Vulkan driver, mesa-vulkan-drivers, installed?)", gpu.info().name);
            }
            Some(gpu)
        }
        Err(e) if std::env::var("MIEN_ALLOW_NO_GPU").as_deref() == Ok("1") => {
            eprintln!("MIEN_ALLOW_NO_GPU=1: skipping GPU test: {e}");
            None
        }
        Err(e) => panic!("{e}\n(set MIEN_ALLOW_NO_GPU=1 to skip GPU tests on purpose)"),
    })
    .as_ref()
}

/// `let gpu = gpu!();` at the top of a GPU test.
#[macro_export]
macro_rules! gpu {
    () => {
        match $crate::common::gpu() {
            Some(g) => g,
            None => return,
        }
    };
}

/// `n` uniform values in [-1, 1) as f32 (what the GPU gets) and the same values as f64.
pub fn rand(rng: &mut Rng, n: usize) -> (Vec<f32>, Vec<f64>) {
    let v = rng.vec_f32(n, -1.0, 1.0);
    let w = mien::reference::f64s(&v);
    (v, w)
}

/// Upload `data` with `shape`.
pub fn up(gpu: &Gpu, label: &str, shape: &[usize], data: &[f32]) -> Tensor {
    gpu.upload(label, shape, data).unwrap()
}

/// A zeroed tensor.
pub fn zeros(gpu: &Gpu, label: &str, shape: &[usize]) -> Tensor {
    gpu.tensor(label, shape).unwrap()
}

pub fn read(gpu: &Gpu, t: &Tensor) -> Vec<f32> {
    gpu.read(t).unwrap()
}

/// Tolerances for f32 kernels vs the f64 reference (no looser than 1e-4 unless a test says why).
pub const ATOL: f64 = 1e-4;
pub const RTOL: f64 = 1e-4;

/// The CI-sized training setup shared by the training, explanation and LIME tests: the
/// `small` preset on clean `side`x`side` synthetic faces (no background, occluders,
/// lighting or noise: they make the full set slow to learn), 1600 training images (seed 5),
/// 300 validation images (seed 6), 8 epochs of Adam 3e-3 with a cosine schedule.
pub fn clean_faces(side: usize) -> (mien::train::TrainConfig, mien::train::TrainData) {
    use mien::train::{Schedule, TrainConfig, TrainData};
    let opts = mien::data::SynthOptions { hw: (side, side), background: false, occluders: false, lighting: false, noise: false, ..Default::default() };
    let cfg = TrainConfig {
        model: "small".into(),
        epochs: 8,
        batch: 32,
        lr: 3e-3,
        lr_scale: mien::train::LrScale::None,
        schedule: Schedule::Cosine { min_lr: 1e-4 },
        seed: 7,
        val_split: 0.2,
        synthetic: 1600,
        image_size: side,
        ..Default::default()
    };
    let train = mien::data::synthetic_with(1600, 5, &opts);
    let data = TrainData { val: mien::data::synthetic_with(300, 6, &opts), class_names: train.class_names.clone(), train };
    (cfg, data)
}
