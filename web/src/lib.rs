//! mien in a browser tab: wasm-bindgen glue between web/app.js and the library. Every GPU
//! step is the library's own (the same WGSL kernels, `Network`, explanation code); this
//! file only turns JS values into mien calls and results into JSON / typed arrays, and
//! awaits the `_async` forms (the browser cannot block on a readback).
//!
//! JS sees one `Session` (the adapter and device, a loaded model, a training run). Methods
//! that read from the GPU return Promises; errors are rejected with mien's message (which
//! names the limit, layer or file), so the page shows it instead of a blank panel.

use mien::data::{self, Dataset};
use mien::explain::ascent::{self, AscentOptions};
use mien::explain::gallery::{self, GalleryOptions};
use mien::explain::gradcam::{self, GradCamOptions};
use mien::explain::saliency::{self, SmoothGradOptions, Target};
use mien::explain::Model;
use mien::nn::checkpoint;
use mien::nn::network::{BuildOptions, Network};
use mien::nn::optim::Optimizer;
use mien::nn::spec::ModelSpec;
use mien::rng::Rng;
use mien::train::TrainConfig;
use mien::{Gpu, Tensor};
use serde_json::json;
use std::cell::RefCell;
use std::rc::Rc;
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::future_to_promise;
use web_time::Instant;

/// Images per batch of the explanation model (SmoothGrad's noisy copies, the gallery's
/// images, filter ascent's filters run this many at a time).
const EXPLAIN_BATCH: usize = 16;

fn err(e: mien::Error) -> JsValue {
    JsValue::from_str(&e.to_string())
}

fn f32s(v: &[f32]) -> JsValue {
    js_sys::Float32Array::from(v).into()
}

/// A loaded checkpoint, built twice: at batch 1 (prediction, saliency, Grad-CAM of the
/// Predict panel: one image, no padding) and at `EXPLAIN_BATCH` (SmoothGrad's copies, the
/// gallery, filter ascent).
struct Loaded {
    one: Rc<Model>,
    many: Rc<Model>,
}

struct State {
    gpu: Gpu,
    model: RefCell<Option<Loaded>>,
    trainer: RefCell<Option<Rc<RefCell<Trainer>>>>,
}

/// The page's handle on mien: one adapter and device for the tab's lifetime.
#[wasm_bindgen]
pub struct Session {
    state: Rc<State>,
}

#[wasm_bindgen(start)]
pub fn start() {
    std::panic::set_hook(Box::new(|info| {
        web_sys::console::error_1(&JsValue::from_str(&format!("mien panicked: {info}")));
    }));
}

/// Whether `navigator.gpu` exists at all (the page's first check; no adapter request).
#[wasm_bindgen]
pub fn has_webgpu() -> bool {
    let gpu = js_sys::Reflect::get(&js_sys::global(), &"navigator".into())
        .ok()
        .and_then(|n| js_sys::Reflect::get(&n, &"gpu".into()).ok());
    gpu.is_some_and(|g| !g.is_undefined() && !g.is_null())
}

/// The message for a browser without WebGPU (the library's wording).
#[wasm_bindgen]
pub fn no_webgpu_message() -> String {
    mien::gpu::NO_WEBGPU_HELP.to_string()
}

#[wasm_bindgen]
impl Session {
    /// Open the browser's WebGPU adapter with every limit it offers (rejects with the
    /// no-WebGPU message when there is none).
    pub fn open() -> js_sys::Promise {
        future_to_promise(async {
            if !has_webgpu() {
                return Err(JsValue::from_str(mien::gpu::NO_WEBGPU_HELP));
            }
            let gpu = Gpu::new_async().await.map_err(err)?;
            // The autotuner times candidates with blocking waits, which a page cannot do:
            // the layers take their built-in defaults (subgroup kernels where the adapter
            // offers subgroups of at least 8 lanes, else the plain ones).
            gpu.autotune().set_mode(mien::gpu::autotune::Mode::Off);
            Ok(Session { state: Rc::new(State { gpu, model: RefCell::new(None), trainer: RefCell::new(None) }) }.into())
        })
    }

    /// The adapter, its features and the limits mien checks, as JSON.
    pub fn adapter(&self) -> String {
        let g = &self.state.gpu;
        let i = g.info();
        let l = g.limits();
        let f = g.device.features();
        json!({
            "name": i.name,
            "backend": format!("{:?}", i.backend),
            "device_type": format!("{:?}", i.device_type),
            "driver": i.driver,
            "driver_info": i.driver_info,
            "subgroups": g.subgroup_min_size().map(|_| [i.subgroup_min_size, i.subgroup_max_size]),
            "timestamps": f.contains(wgpu_features::TIMESTAMP_QUERY),
            "f16": g.has_f16(),
            "limits": {
                "max_storage_buffer_binding_size": l.max_storage_buffer_binding_size,
                "max_buffer_size": l.max_buffer_size,
                "max_compute_workgroups_per_dimension": l.max_compute_workgroups_per_dimension,
                "max_compute_invocations_per_workgroup": l.max_compute_invocations_per_workgroup,
                "max_compute_workgroup_storage_size": l.max_compute_workgroup_storage_size,
                "max_storage_buffers_per_shader_stage": l.max_storage_buffers_per_shader_stage,
            },
            "describe": g.describe(),
        })
        .to_string()
    }

    /// Load a checkpoint's bytes (a dropped best.safetensors, or an exported run's
    /// model.safetensors) for the Predict and Explain panels. Returns its summary as JSON;
    /// a model the adapter cannot hold is refused with the limit it exceeds.
    pub fn load_model(&self, name: &str, bytes: &[u8]) -> Result<String, JsValue> {
        let many = Model::from_bytes(&self.state.gpu, name, bytes, EXPLAIN_BATCH).map_err(err)?;
        let one = Model::from_bytes(&self.state.gpu, name, bytes, 1).map_err(err)?;
        let summary = model_summary(&many);
        *self.state.model.borrow_mut() = Some(Loaded { one: Rc::new(one), many: Rc::new(many) });
        Ok(summary)
    }

    /// Class probabilities of one image ([C*H*W] in [0, 1]) as a Float32Array.
    pub fn predict(&self, pixels: Vec<f32>) -> js_sys::Promise {
        let st = self.state.clone();
        future_to_promise(async move {
            let model = st.model()?.0;
            check_pixels(&model, &pixels)?;
            let p = model.probabilities_async(&st.gpu, &pixels).await.map_err(err)?;
            Ok(f32s(&p))
        })
    }

    /// The Predict panel's overlays for one image and class: saliency, SmoothGrad (25
    /// copies, sigma 0.15) and Grad-CAM maps [H*W] as JSON.
    pub fn overlays(&self, pixels: Vec<f32>, class: u32) -> js_sys::Promise {
        let st = self.state.clone();
        future_to_promise(async move {
            let (model, many) = st.model()?;
            check_pixels(&model, &pixels)?;
            let gpu = &st.gpu;
            let target = Target::Class(class as usize);
            let t0 = Instant::now();
            let sal = saliency::vanilla_async(gpu, &model, &pixels, &target).await.map_err(err)?;
            let t1 = Instant::now();
            let smooth = saliency::smoothgrad_async(gpu, &many, &pixels, &SmoothGradOptions { target: target.clone(), ..Default::default() }).await.map_err(err)?;
            let t2 = Instant::now();
            let cam = gradcam::gradcam_async(gpu, &model, &pixels, &GradCamOptions { target, ..Default::default() }).await.map_err(err)?;
            let t3 = Instant::now();
            let ms = |a: Instant, b: Instant| (b - a).as_secs_f64() * 1e3;
            Ok(JsValue::from_str(
                &json!({
                    "saliency": sal.maps,
                    "smoothgrad": smooth.maps,
                    "gradcam": cam.maps,
                    "ms": { "saliency": ms(t0, t1), "smoothgrad": ms(t1, t2), "gradcam": ms(t2, t3) },
                })
                .to_string(),
            ))
        })
    }

    /// The Explain panel's gallery: every method's maps for each image ([n, C*H*W]) and
    /// the class each is explained for (its prediction), as JSON
    /// {classes, methods: [{name, maps: [n*H*W]}]}.
    pub fn gallery(&self, pixels: Vec<f32>, samples: usize, lime_samples: usize) -> js_sys::Promise {
        let st = self.state.clone();
        future_to_promise(async move {
            let model = st.model()?.1;
            let gpu = &st.gpu;
            let n = saliency::image_count(&model, &pixels).map_err(err)?;
            let preds = saliency::predicted_async(gpu, &model, &pixels).await.map_err(err)?;
            let opts = GalleryOptions { samples, lime_samples, seed: 1 };
            let maps = if lime_samples > 0 {
                gallery::maps_with_lime_async(gpu, &model, &pixels, &preds, &opts).await
            } else {
                gallery::maps_async(gpu, &model, &pixels, &preds, &opts).await
            }
            .map_err(err)?;
            let methods: Vec<_> = maps.iter().map(|(name, m)| json!({ "name": name, "maps": m })).collect();
            Ok(JsValue::from_str(&json!({ "n": n, "classes": preds, "methods": methods }).to_string()))
        })
    }

    /// Filter ascent for conv layer `layer` (a name; empty: the first conv): images
    /// [filters.len() * C*H*W] as JSON {layer, filters, images, activation}.
    pub fn ascent(&self, layer: String, filters: Vec<u32>, steps: usize) -> js_sys::Promise {
        let st = self.state.clone();
        future_to_promise(async move {
            let model = st.model()?.1;
            let li = if layer.is_empty() { ascent::default_layer(&model).map_err(err)? } else { model.layer_index(&layer).map_err(err)? };
            let name = model.net.layers[li].name.clone();
            let filters: Vec<usize> = filters.iter().map(|&f| f as usize).collect();
            let opts = AscentOptions { steps, ..Default::default() };
            let a = ascent::filter_ascent_async(&st.gpu, &model, &name, Some(&filters), &opts).await.map_err(err)?;
            Ok(JsValue::from_str(&json!({ "layer": a.layer, "filters": a.filters, "images": a.images, "activation": a.activation, "chw": a.chw }).to_string()))
        })
    }

    /// Start a training run of `preset` on `images` built-in synthetic faces (90% train,
    /// the rest validation) at `batch`, Adam at `lr` (0: the default 2e-3 at batch 64,
    /// square-root scaled). Refused with the limit's name when it does not fit.
    pub fn train_start(&self, preset: &str, batch: usize, images: usize, lr: f64, seed: u32) -> Result<String, JsValue> {
        *self.state.trainer.borrow_mut() = None;
        let t = Trainer::new(&self.state.gpu, preset, batch, images, lr, seed as u64).map_err(err)?;
        let summary = json!({ "model": t.spec.name, "batch": t.batch, "train": t.train.len(), "val": t.val.len(), "lr": t.lr, "params": t.net.param_counts().0, "summary": t.net.summary() }).to_string();
        *self.state.trainer.borrow_mut() = Some(Rc::new(RefCell::new(t)));
        Ok(summary)
    }

    /// `steps` training steps (one submission each), then one readback of their losses:
    /// JSON {step, epoch, loss, acc, images_per_s, ms} (loss and accuracy: means over the
    /// steps).
    // The run stays borrowed across the GPU's await on purpose: a second call meanwhile gets
    // an error (try_borrow), not a run changed under the first.
    #[allow(clippy::await_holding_refcell_ref)]
    pub fn train_steps(&self, steps: usize) -> js_sys::Promise {
        let st = self.state.clone();
        future_to_promise(async move {
            let t = st.trainer()?;
            let mut t = t.try_borrow_mut().map_err(|_| JsValue::from_str("a training call is already running"))?;
            let r = t.steps(&st.gpu, steps).await.map_err(err)?;
            Ok(JsValue::from_str(&r.to_string()))
        })
    }

    /// Validation loss and accuracy of the run's network now (inference mode).
    // The run stays borrowed across the GPU's await on purpose: a second call meanwhile gets
    // an error (try_borrow), not a run changed under the first.
    #[allow(clippy::await_holding_refcell_ref)]
    pub fn train_validate(&self) -> js_sys::Promise {
        let st = self.state.clone();
        future_to_promise(async move {
            let t = st.trainer()?;
            let t = t.try_borrow().map_err(|_| JsValue::from_str("a training call is running"))?;
            let (loss, acc) = t.validate(&st.gpu).await.map_err(err)?;
            Ok(JsValue::from_str(&json!({ "val_loss": loss, "val_acc": acc }).to_string()))
        })
    }

    /// The run's checkpoint as safetensors bytes (Uint8Array): the native tools read it
    /// (`explain --checkpoint`, `predict`).
    // The run stays borrowed across the GPU's await on purpose: a second call meanwhile gets
    // an error (try_borrow), not a run changed under the first.
    #[allow(clippy::await_holding_refcell_ref)]
    pub fn train_checkpoint(&self) -> js_sys::Promise {
        let st = self.state.clone();
        future_to_promise(async move {
            let t = st.trainer()?;
            let t = t.try_borrow().map_err(|_| JsValue::from_str("a training call is running"))?;
            let bytes = t.checkpoint(&st.gpu).await.map_err(err)?;
            Ok(js_sys::Uint8Array::from(&bytes[..]).into())
        })
    }

    /// The run's settings as the native tools' config.json (a TrainConfig: model, batch,
    /// learning rate, seed, the synthetic data), to save beside the checkpoint as
    /// `best.safetensors` so that `explain --run DIR` finds both.
    pub fn train_config(&self) -> Result<String, JsValue> {
        let t = self.state.trainer()?;
        let t = t.try_borrow().map_err(|_| JsValue::from_str("a training call is running"))?;
        let cfg = TrainConfig {
            model: t.spec.name.clone(),
            epochs: t.epoch.max(1),
            batch: t.batch,
            lr: t.lr,
            lr_scale: mien::train::LrScale::None,
            seed: t.seed,
            synthetic: t.train.len() + t.val.len(),
            image_size: 48,
            ..TrainConfig::default()
        };
        serde_json::to_string_pretty(&cfg).map_err(|e| JsValue::from_str(&e.to_string()))
    }

    /// Built-in synthetic faces [n, 1, 48, 48] (one per class, cycling) and their labels, as
    /// JSON {images, labels, classes}: pictures for the Explain panel and the tests.
    pub fn synthetic_faces(&self, n: usize, seed: u32) -> String {
        let ds = data::synthetic(n, seed as u64, (48, 48));
        json!({ "images": ds.images, "labels": ds.labels, "classes": ds.class_names }).to_string()
    }
}

impl State {
    /// The loaded model at batch 1 and at `EXPLAIN_BATCH`.
    fn model(&self) -> Result<(Rc<Model>, Rc<Model>), JsValue> {
        self.model.borrow().as_ref().map(|m| (m.one.clone(), m.many.clone())).ok_or_else(|| JsValue::from_str("no model loaded: load an exported run or drop a best.safetensors first"))
    }
    fn trainer(&self) -> Result<Rc<RefCell<Trainer>>, JsValue> {
        self.trainer.borrow().clone().ok_or_else(|| JsValue::from_str("no training run: start one first"))
    }
}

fn check_pixels(model: &Model, pixels: &[f32]) -> Result<(), JsValue> {
    let [c, h, w] = model.info.input_chw;
    if pixels.len() != model.image_len() {
        return Err(JsValue::from_str(&format!("{} values for a model that takes one {c}x{h}x{w} image ({} values)", pixels.len(), model.image_len())));
    }
    Ok(())
}

fn model_summary(model: &Model) -> String {
    let convs: Vec<_> = model.conv_layers().iter().map(|&i| json!({ "name": model.net.layers[i].name, "filters": ascent::filter_count(model, i) })).collect();
    json!({
        "name": model.checkpoint.display().to_string(),
        "model": model.info.model.name,
        "input": model.info.input_chw,
        "classes": model.info.class_names,
        "epoch": model.info.epoch,
        "params": model.net.param_counts().0,
        "convs": convs,
        "summary": model.net.summary(),
    })
    .to_string()
}

/// The features mien reads (re-exported so this crate needs no wgpu dependency of its own).
mod wgpu_features {
    pub const TIMESTAMP_QUERY: mien::wgpu::Features = mien::wgpu::Features::TIMESTAMP_QUERY;
}

/// A training run in the tab: the library's Network and Optimizer, one submission per step
/// (forward, loss, backward, Adam), the steps' loss statistics copied into one buffer read
/// once per `steps` call.
struct Trainer {
    spec: ModelSpec,
    net: Network,
    opt: Optimizer,
    train: Dataset,
    val: Dataset,
    batch: usize,
    lr: f64,
    seed: u64,
    order: Vec<usize>,
    pos: usize,
    epoch: usize,
    step: u64,
    stats: Tensor,
    class_names: Vec<String>,
    /// Where the device has TIMESTAMP_QUERY: two queries per step around its compute pass
    /// and the buffer they resolve into (read with the losses).
    timestamps: Option<(mien::wgpu::QuerySet, Tensor)>,
}

/// Most steps one `train_steps` call records (the size of the statistics buffer).
const MAX_STEPS_PER_CALL: usize = 256;

impl Trainer {
    fn new(gpu: &Gpu, preset: &str, batch: usize, images: usize, lr: f64, seed: u64) -> mien::Result<Trainer> {
        mien::ensure!(batch >= 1, "batch must be at least 1");
        let class_names = data::fer2013_class_names();
        let classes = class_names.len();
        let spec = ModelSpec::resolve(preset, classes)?;
        // The network first: a model or batch over the adapter's limits is refused before
        // any data is drawn.
        let net = Network::build(gpu, &spec, [1, 48, 48], classes, batch, BuildOptions::default())?;
        let n_val = (images / 10).max(1);
        mien::ensure!(images >= n_val + batch, "{images} images leave fewer than one batch of {batch} for training (10% are validation)");
        let all = data::synthetic(images, seed, (48, 48));
        let (train, val) = split(&all, images - n_val);
        let cfg = TrainConfig { model: preset.to_string(), batch, seed, ..TrainConfig::default() };
        let lr = if lr > 0.0 { lr } else { cfg.base_lr(batch) };
        let opt = Optimizer::new(gpu, "optimizer", cfg.optimizer_config(), &net.arena, &net.grads)?;
        net.init(gpu, seed)?;
        let stats = gpu.tensor("step stats", &[MAX_STEPS_PER_CALL, 2])?;
        let order: Vec<usize> = (0..train.len()).collect();
        let timestamps = if gpu.device.features().contains(mien::wgpu::Features::TIMESTAMP_QUERY) {
            let set = gpu.device.create_query_set(&mien::wgpu::QuerySetDescriptor {
                label: Some("step timestamps"),
                ty: mien::wgpu::QueryType::Timestamp,
                count: 2 * MAX_STEPS_PER_CALL as u32,
            });
            // u64 timestamps as pairs of u32.
            let resolved = gpu.tensor_with_usage("step timestamps", &[MAX_STEPS_PER_CALL * 4], mien::wgpu::BufferUsages::QUERY_RESOLVE)?;
            Some((set, resolved))
        } else {
            None
        };
        let mut t = Trainer { spec, net, opt, train, val, batch, lr, seed, order, pos: 0, epoch: 0, step: 0, stats, class_names, timestamps };
        t.shuffle();
        Ok(t)
    }

    fn shuffle(&mut self) {
        Rng::new(self.seed ^ (self.epoch as u64 + 1).wrapping_mul(0xA24B_AED4_963E_E407)).shuffle(&mut self.order);
    }

    async fn steps(&mut self, gpu: &Gpu, steps: usize) -> mien::Result<serde_json::Value> {
        let steps = steps.clamp(1, MAX_STEPS_PER_CALL);
        let b = self.batch;
        let t0 = Instant::now();
        let (mut images, mut labels) = (Vec::with_capacity(b * 48 * 48), Vec::with_capacity(b));
        for i in 0..steps {
            if self.pos + b > self.order.len() {
                self.epoch += 1;
                self.pos = 0;
                self.shuffle();
            }
            images.clear();
            labels.clear();
            for &j in &self.order[self.pos..self.pos + b] {
                images.extend_from_slice(self.train.image(j));
                labels.push(self.train.label(j).unwrap_or(0));
            }
            self.pos += b;
            self.net.set_batch(gpu, &images, &labels)?;
            self.net.set_dropout_seed(gpu, Rng::new(self.seed ^ self.step.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 2).next_u32());
            self.step += 1;
            let stats = self.net.stats().clone();
            let dst = self.stats.clone();
            let update = self.opt.step(gpu, self.lr as f32);
            let ts = self.timestamps.as_ref().map(|(set, _)| (set, 2 * i as u32));
            let resolve = (i + 1 == steps).then_some(()).and(self.timestamps.as_ref());
            gpu.submit_timestamped(self.net.train_dispatches().chain(std::iter::once(update)), ts, |enc| {
                stats.copy_to(enc, &dst, i * 2);
                if let Some((set, out)) = resolve {
                    enc.resolve_query_set(set, 0..2 * steps as u32, out.buffer(), out.offset());
                }
            });
        }
        let s = gpu.read_async(&self.stats).await?;
        // GPU time of each step's compute pass (median), where timestamps are offered.
        let gpu_ms = match &self.timestamps {
            Some((_, out)) => {
                let raw = gpu.read_u32_async(out).await?;
                let period = gpu.queue.get_timestamp_period() as f64;
                let mut ms: Vec<f64> = (0..steps)
                    .filter_map(|i| {
                        let t = |k: usize| raw[2 * k] as u64 | (raw[2 * k + 1] as u64) << 32;
                        let (a, b) = (t(2 * i), t(2 * i + 1));
                        (b > a).then(|| (b - a) as f64 * period * 1e-6)
                    })
                    .collect();
                ms.sort_by(|a, b| a.partial_cmp(b).unwrap());
                ms.get(ms.len() / 2).copied()
            }
            None => None,
        };
        let secs = t0.elapsed().as_secs_f64();
        let s = &s[..steps * 2];
        let loss = s.chunks(2).map(|v| v[0] as f64).sum::<f64>() / steps as f64;
        let acc = s.chunks(2).map(|v| v[1] as f64).sum::<f64>() / (steps * b) as f64;
        mien::ensure!(loss.is_finite(), "training stopped: the loss became {loss} at step {}; try a smaller learning rate (now {:e})", self.step, self.lr);
        Ok(json!({
            "step": self.step,
            "epoch": self.epoch as f64 + self.pos as f64 / self.order.len() as f64,
            "loss": loss,
            "acc": acc,
            "images_per_s": (steps * b) as f64 / secs,
            "ms": secs * 1e3,
            "gpu_ms_per_step": gpu_ms,
        }))
    }

    async fn validate(&self, gpu: &Gpu) -> mien::Result<(f64, f64)> {
        let b = self.batch;
        let (mut loss, mut correct, mut seen) = (0.0f64, 0.0f64, 0usize);
        let mut start = 0;
        // Whole batches only (the network's batch is fixed); at least one.
        while start + b <= self.val.len().max(b) {
            let idx: Vec<usize> = (start..start + b).map(|i| i % self.val.len()).collect();
            let images: Vec<f32> = idx.iter().flat_map(|&i| self.val.image(i).to_vec()).collect();
            let labels: Vec<u32> = idx.iter().map(|&i| self.val.label(i).unwrap_or(0)).collect();
            self.net.set_batch(gpu, &images, &labels)?;
            gpu.run(self.net.eval_dispatches())?;
            let (l, c) = self.net.read_stats_async(gpu).await?;
            loss += l as f64 * b as f64;
            correct += c as f64;
            seen += b;
            start += b;
        }
        Ok((loss / seen as f64, correct / seen as f64))
    }

    async fn checkpoint(&self, gpu: &Gpu) -> mien::Result<Vec<u8>> {
        checkpoint::to_bytes_async(gpu, &self.net, None, &self.class_names, self.epoch, &[]).await
    }
}

/// The first `n` items of `ds` and the rest.
fn split(ds: &Dataset, n: usize) -> (Dataset, Dataset) {
    (ds.subset(&(0..n).collect::<Vec<_>>()), ds.subset(&(n..ds.len()).collect::<Vec<_>>()))
}
