//! The kernel-variant autotuner: cache round trip, corrupt cache, off mode, a dense layer
//! whose variants the autotuner picks still matches the f64 reference, and a conv layer
//! takes the family cached under its key.

use mien::gpu::autotune::{Autotune, Mode};
use mien::gpu::Gpu;
use mien::nn::dense::{Dense, DenseKernels, DenseVariant};
use mien::reference::{assert_close, dense as r, f64s};
use mien::rng::Rng;
use std::cell::Cell;
use std::path::PathBuf;

/// A fresh directory for one test's cache file.
fn tmp_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("mien-autotune-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// A fake measurement: "b" is fastest; counts calls.
fn fake(calls: &Cell<usize>) -> impl FnMut(&str, f64) -> mien::Result<f64> + '_ {
    move |v, _best| {
        calls.set(calls.get() + 1);
        Ok(match v {
            "a" => 3e-3,
            "b" => 1e-3,
            _ => 2e-3,
        })
    }
}

#[test]
fn cache_round_trips_and_refresh_retimes() {
    let path = tmp_dir("roundtrip").join("autotune.json");
    let calls = Cell::new(0);
    let t = Autotune::new("dev A", Mode::On, Some(path.clone()));
    assert_eq!(t.choose("job 1", &["a", "b", "c"], "a", fake(&calls)), "b");
    assert_eq!(calls.get(), 3);
    assert!(path.exists());
    // A second tuner (a new process) reads the answer without timing.
    let t2 = Autotune::new("dev A", Mode::On, Some(path.clone()));
    assert_eq!(t2.choose("job 1", &["a", "b", "c"], "a", fake(&calls)), "b");
    assert_eq!(calls.get(), 3);
    let e = t2.cached("job 1").unwrap();
    assert_eq!(e.choice, "b");
    assert_eq!(e.ms.len(), 3);
    // Another device or another key is timed; both answers stay in the file.
    let t3 = Autotune::new("dev B", Mode::On, Some(path.clone()));
    assert_eq!(t3.choose("job 1", &["a", "c"], "a", fake(&calls)), "c");
    assert_eq!(calls.get(), 5);
    assert_eq!(Autotune::new("dev A", Mode::On, Some(path.clone())).cached("job 1").unwrap().choice, "b");
    assert_eq!(Autotune::new("dev B", Mode::On, Some(path.clone())).cached("job 1").unwrap().choice, "c");
    // A cached choice that is no longer a candidate is timed again.
    assert_eq!(t2.choose("job 1", &["a", "c"], "a", fake(&calls)), "c");
    assert_eq!(calls.get(), 7);
    // Refresh times even when cached.
    let t4 = Autotune::new("dev A", Mode::Refresh, Some(path.clone()));
    assert_eq!(t4.choose("job 1", &["a", "b"], "a", fake(&calls)), "b");
    assert_eq!(calls.get(), 9);
    // ... once per process.
    assert_eq!(t4.choose("job 1", &["a", "b"], "a", fake(&calls)), "b");
    assert_eq!(calls.get(), 9);
    // A candidate that fails is skipped ...
    let t5 = Autotune::new("dev C", Mode::On, Some(path.clone()));
    let pick = t5.choose("job 2", &["a", "b"], "a", |v, _| if v == "b" { Err(mien::Error::new("no")) } else { Ok(1.0) });
    assert_eq!(pick, "a");
    // ... and recorded, so a new process does not time it again.
    let t6 = Autotune::new("dev C", Mode::On, Some(path.clone()));
    assert_eq!(t6.choose("job 2", &["a", "b"], "a", |v, _| panic!("{v} timed again")), "a");
    assert_eq!(t6.cached("job 2").unwrap().failed, ["b"]);
    // A variant added since an answer was made (a newer mien) is timed against the others.
    let t7 = Autotune::new("dev A", Mode::On, Some(path));
    calls.set(0);
    assert_eq!(t7.choose("job 1", &["a", "b"], "a", fake(&calls)), "b");
    assert_eq!(calls.get(), 0, "the refreshed answer among a and b stands");
    assert_eq!(t7.choose("job 1", &["a", "b", "d"], "a", fake(&calls)), "b");
    assert_eq!(calls.get(), 3, "d is new: all three are timed");
    assert_eq!(t7.cached("job 1").unwrap().ms.len(), 3);
}

#[test]
fn corrupt_cache_is_rebuilt_not_fatal() {
    let path = tmp_dir("corrupt").join("autotune.json");
    std::fs::write(&path, "{ this is not json").unwrap();
    let calls = Cell::new(0);
    let t = Autotune::new("dev A", Mode::On, Some(path.clone()));
    assert_eq!(t.choose("job", &["a", "b"], "a", fake(&calls)), "b");
    assert_eq!(calls.get(), 2);
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.contains("\"choice\": \"b\""), "{text}");
    // Valid JSON of the wrong shape too.
    std::fs::write(&path, "[1, 2, 3]").unwrap();
    let t = Autotune::new("dev A", Mode::On, Some(path.clone()));
    assert_eq!(t.choose("job", &["a", "b"], "a", fake(&calls)), "b");
    assert_eq!(calls.get(), 4);
}

#[test]
fn off_mode_never_times_nor_writes() {
    let dir = tmp_dir("off");
    let path = dir.join("autotune.json");
    let calls = Cell::new(0);
    let t = Autotune::new("dev A", Mode::Off, Some(path.clone()));
    assert_eq!(t.choose("job", &["a", "b"], "a", fake(&calls)), "a");
    assert_eq!(calls.get(), 0);
    assert!(!path.exists());
    assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 0);
    // A single candidate is never timed either.
    let t = Autotune::new("dev A", Mode::On, Some(path.clone()));
    assert_eq!(t.choose("job", &["b"], "b", fake(&calls)), "b");
    assert_eq!(calls.get(), 0);
    assert!(!path.exists());
}

#[test]
fn modes_parse() {
    assert_eq!("on".parse::<Mode>().unwrap(), Mode::On);
    assert_eq!("OFF".parse::<Mode>().unwrap(), Mode::Off);
    assert_eq!("refresh".parse::<Mode>().unwrap(), Mode::Refresh);
    let e = "sometimes".parse::<Mode>().unwrap_err().to_string();
    assert!(e.contains("sometimes") && e.contains("refresh"), "{e}");
}

/// A dense layer big enough to be tuned: the autotuner times the variants, caches them,
/// and the chosen dispatch lists match the reference; a second layer of the same shape
/// takes the cached answer; with the autotuner off the layer uses its default.
#[test]
fn tuned_dense_layer_matches_reference() {
    let gpu = match Gpu::new() {
        Ok(g) => g,
        Err(e) if std::env::var("MIEN_ALLOW_NO_GPU").as_deref() == Ok("1") => return eprintln!("skipping: {e}"),
        Err(e) => panic!("{e}"),
    };
    let path = tmp_dir("dense").join("autotune.json");
    gpu.autotune().set_path(Some(path.clone()));
    gpu.autotune().set_mode(Mode::On);
    let (n, inf, outf) = (16usize, 516usize, 1030usize);
    assert!(2 * n * inf * outf >= mien::nn::dense::TUNE_MIN_FLOP);
    let layer = Dense::new(&gpu, "fc", inf, outf, true, &[n, inf]).unwrap();
    let text = std::fs::read_to_string(&path).unwrap();
    for pass in ["forward", "backward_input", "backward_weight"] {
        let key = format!("dense {pass} {n}x{inf}->{outf}");
        let e = gpu.autotune().cached(&key).unwrap_or_else(|| panic!("{key} not cached: {text}"));
        assert!(DenseVariant::from_name(&e.choice).is_some(), "{e:?}");
    }
    let again = Dense::new(&gpu, "fc", inf, outf, true, &[n, inf]).unwrap();
    assert_eq!(again.variants(), layer.variants());

    let mut rng = Rng::new(7);
    let (x, w, b, dy) = (rng.vec_f32(n * inf, -1.0, 1.0), rng.vec_f32(outf * inf, -1.0, 1.0), rng.vec_f32(outf, -1.0, 1.0), rng.vec_f32(n * outf, -1.0, 1.0));
    let tx = gpu.upload("x", &[n, inf], &x).unwrap();
    let tw = gpu.upload("w", &[outf, inf], &w).unwrap();
    let tb = gpu.upload("b", &[outf], &b).unwrap();
    let tdy = gpu.upload("dy", &[n, outf], &dy).unwrap();
    let ty = gpu.tensor("y", &[n, outf]).unwrap();
    let tdx = gpu.tensor("dx", &[n, inf]).unwrap();
    let tdw = gpu.tensor("dw", &[outf, inf]).unwrap();
    let mut steps = layer.forward_dispatches(&gpu, &tx, &tw, Some(&tb), &ty).unwrap();
    steps.extend(layer.backward_input_dispatches(&gpu, &tdx, &tdy, &tw).unwrap());
    steps.extend(layer.backward_weight_dispatches(&gpu, &tdw, &tdy, &tx, false).unwrap());
    gpu.run(&steps).unwrap();
    let (x64, w64, b64, dy64) = (f64s(&x), f64s(&w), f64s(&b), f64s(&dy));
    // f32 sums of up to 1030 terms: atol scaled by sqrt(len / 64) as in tests/kernels/dense.rs.
    let atol = |len: usize| 1e-4 * (len as f64 / 64.0).sqrt().max(1.0);
    let what = layer.describe_variants();
    assert_close(&format!("forward ({what})"), &gpu.read(&ty).unwrap(), &r::forward(&x64, &w64, Some(&b64), n, inf, outf), atol(inf), 1e-4);
    assert_close(&format!("dx ({what})"), &gpu.read(&tdx).unwrap(), &r::backward_input(&dy64, &w64, n, inf, outf), atol(outf), 1e-4);
    assert_close(&format!("dW ({what})"), &gpu.read(&tdw).unwrap(), &r::backward_weight(&dy64, &x64, n, inf, outf), atol(n), 1e-4);

    // Off: the default variant, no file touched.
    let off_path = tmp_dir("dense-off").join("autotune.json");
    gpu.autotune().set_path(Some(off_path.clone()));
    gpu.autotune().set_mode(Mode::Off);
    let off = Dense::new_with(&gpu, "fc", inf, outf, true, &[n, inf], DenseKernels::Auto).unwrap();
    assert_eq!(off.variants(), [off.default_variant(&gpu); 3]);
    assert!(!off_path.exists());
}

/// A conv layer big enough to be tuned takes the family cached under its key, untimed: the
/// key format and the names "fast" / "tiled" are what existing cache files hold.
#[test]
fn conv_layer_uses_the_cached_family() {
    use mien::nn::conv2d::{Conv2d, Conv2dConfig, ConvKernels, ConvVariant};
    let gpu = match Gpu::new() {
        Ok(g) => g,
        Err(e) if std::env::var("MIEN_ALLOW_NO_GPU").as_deref() == Ok("1") => return eprintln!("skipping: {e}"),
        Err(e) => panic!("{e}"),
    };
    let path = tmp_dir("conv").join("autotune.json");
    let key = "conv 4x32x32x32->32 k3x3 s1x1 p1x1";
    let (cfg, shape) = (Conv2dConfig::same(32, 32, (3, 3)), [4, 32, 32, 32]);
    gpu.autotune().set_mode(Mode::On);
    for (choice, want) in [("tiled", [ConvVariant::Tiled; 3]), ("fast", Conv2d::new_with(&gpu, "fast", cfg, &shape, ConvKernels::Fast).unwrap().variants())] {
        let file = serde_json::json!({ "version": 1, "devices": { gpu.autotune().device(): { key: { "choice": choice, "ms": {} } } } });
        std::fs::write(&path, file.to_string()).unwrap();
        gpu.autotune().set_path(Some(path.clone()));
        let layer = Conv2d::new_with(&gpu, "conv", cfg, &shape, ConvKernels::Auto).unwrap();
        assert_eq!(layer.variants(), want, "cached {choice}");
        assert_eq!(gpu.autotune().cached(key).unwrap().ms.len(), 0, "{choice} was timed");
    }
}
