//! The Gpu context itself: adapter description, limits turned into errors, 2-D dispatch
//! layout, tensor views.

use crate::common::{up, zeros};
use crate::gpu;
use mien::nn::network::{BuildOptions, Network};
use mien::nn::spec::{LayerSpec, ModelSpec, Pair, PaddingName, PaddingSpec};

#[test]
fn describe_names_adapter_backend_and_limits() {
    let gpu = gpu!();
    let d = gpu.describe();
    assert!(d.contains(&gpu.info().name) && d.contains("max_storage_buffer_binding_size"), "{d}");
}

#[test]
fn dispatches_past_the_per_dimension_limit_are_laid_out_in_2d_or_refused() {
    let gpu = gpu!();
    let max = gpu.limits().max_compute_workgroups_per_dimension as u64;
    assert_eq!(gpu.groups_1d("l", 1, 256).unwrap(), [1, 1, 1]);
    assert_eq!(gpu.groups_1d("l", 257, 256).unwrap(), [2, 1, 1]);
    let [x, y, z] = gpu.groups_1d("l", max * 256 + 1, 256).unwrap();
    assert_eq!((x as u64, y, z), (max, 2, 1));
    let e = gpu.groups_1d("conv2d_9 forward", max * max * 256 + 1, 256).unwrap_err().to_string();
    assert!(e.contains("conv2d_9 forward") && e.contains("max_compute_workgroups_per_dimension"), "{e}");
}

#[test]
fn a_tensor_over_the_binding_limit_is_an_error_naming_it_and_the_limit() {
    let gpu = gpu!();
    let max = gpu.limits().max_storage_buffer_binding_size as usize;
    let e = gpu.tensor("dense_1.weight", &[max / 4 + 1]).unwrap_err().to_string();
    assert!(e.contains("dense_1.weight") && e.contains("max_storage_buffer_binding_size"), "{e}");
}

/// The reports' first layer at batch 512: 512 x 64 x 48 x 48 floats (302 MB). Where the
/// adapter can bind that (real GPUs) the network builds; where it cannot (lavapipe binds at
/// most 128 MiB) the error names the layer's tensor and the limit. Only shapes are built
/// in the failing case; nothing big is allocated before the check.
#[test]
fn batch_512_at_48x48x64_builds_or_names_the_limit() {
    let gpu = gpu!();
    let spec = ModelSpec {
        name: "wide".into(),
        layers: vec![
            LayerSpec::Conv2d { filters: 64, kernel: Pair::Square(3), stride: Pair::Square(1), padding: PaddingSpec::Named(PaddingName::Same), bias: true },
            LayerSpec::Relu,
            LayerSpec::MaxPool { size: Pair::Square(48), stride: None, padding: PaddingSpec::Named(PaddingName::Valid) },
            LayerSpec::Flatten,
            LayerSpec::Dense { units: 7, bias: true },
        ],
    };
    let bytes = 512u64 * 64 * 48 * 48 * 4;
    match Network::build(gpu, &spec, [1, 48, 48], 7, 512, BuildOptions::default()) {
        Ok(net) => assert!(bytes <= gpu.limits().max_storage_buffer_binding_size, "built {}", net.spec.name),
        Err(e) => {
            let e = e.to_string();
            assert!(bytes > gpu.limits().max_storage_buffer_binding_size, "unexpected: {e}");
            assert!(e.contains("conv2d_1") && e.contains("max_storage_buffer_binding_size"), "{e}");
        }
    }
}

#[test]
fn views_check_bounds_and_alignment() {
    let gpu = gpu!();
    let t = zeros(gpu, "arena", &[1024]);
    let align = gpu.limits().min_storage_buffer_offset_alignment as usize / 4;
    assert!(t.view("ok", align, &[4]).is_ok());
    let e = t.view("p", 1020, &[8]).unwrap_err().to_string();
    assert!(e.contains("outside arena"), "{e}");
    if align > 1 {
        let e = t.view("q", 1, &[4]).unwrap_err().to_string();
        assert!(e.contains("min_storage_buffer_offset_alignment"), "{e}");
    }
    assert!(t.reshape(&[32, 32]).is_ok());
    assert!(t.reshape(&[33, 32]).is_err());
}

#[test]
fn upload_read_round_trip_and_length_checks() {
    let gpu = gpu!();
    let data: Vec<f32> = (0..37).map(|i| i as f32 * 0.5 - 3.0).collect();
    let t = up(gpu, "x", &[37], &data);
    assert_eq!(gpu.read(&t).unwrap(), data);
    let e = gpu.write(&t, &[1.0f32; 36]).unwrap_err().to_string();
    assert!(e.contains("x") && e.contains("36") && e.contains("37"), "{e}");
}

/// `Gpu::scratch`: views of one shared buffer while it is large enough, a new buffer for a
/// larger request, and the memory freed with the last view. Its own device: other tests
/// take scratch concurrently.
#[test]
fn scratch_is_one_buffer_shared_until_a_larger_request_and_freed_with_its_views() {
    let _ = gpu!();
    let gpu = mien::Gpu::new().unwrap();
    let live0 = gpu.mem().live();
    let a = gpu.scratch("a partials", &[4, 25]).unwrap();
    let b = gpu.scratch("b partials", &[60]).unwrap();
    assert!(a.same_buffer(&b), "a request that fits shares the buffer");
    assert_eq!((b.shape(), b.label()), (&[60usize][..], "b partials"));
    assert_eq!(gpu.mem().live() - live0, 400, "one buffer of the first request's 100 values");
    let c = gpu.scratch("c partials", &[2, 100]).unwrap();
    assert!(!c.same_buffer(&a), "a larger request gets a larger buffer");
    let d = gpu.scratch("d partials", &[150]).unwrap();
    assert!(d.same_buffer(&c));
    assert_eq!(gpu.mem().live() - live0, 400 + 800);
    drop((a, b));
    assert_eq!(gpu.mem().live() - live0, 800, "the first buffer went with its last view");
    drop((c, d));
    assert_eq!(gpu.mem().live(), live0);
    let e = gpu.scratch("e", &[10]).unwrap();
    assert_eq!(gpu.mem().live() - live0, 40, "nothing left over: a fresh buffer");
    drop(e);
}
