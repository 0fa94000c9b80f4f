//! The one GPU context: adapter and device, the pipeline registry, labelled buffers,
//! upload / readback, and "record many dispatches, submit once".
//!
//! Every layer builds its `Dispatch`es once (pipeline + bind group + workgroup counts) and a
//! training step replays them into one encoder (`Gpu::submit`). Nothing here is created per
//! step.

pub mod autotune;
pub mod coop;
mod dispatch;
pub mod shaders;
mod tensor;
pub mod timing;

pub use dispatch::Dispatch;
pub use shaders::Shader;
pub use tensor::Tensor;

use crate::{bail, ensure, Error, Result};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// Bytes of GPU memory mien's tensors hold now and at most (not uniforms, not staging),
/// and how many buffers (tensors and uniforms) were ever created.
#[derive(Default, Debug)]
pub struct MemStats {
    live: AtomicU64,
    peak: AtomicU64,
    created: AtomicU64,
}

impl MemStats {
    fn add(&self, bytes: u64) {
        let now = self.live.fetch_add(bytes, Ordering::Relaxed) + bytes;
        self.peak.fetch_max(now, Ordering::Relaxed);
    }
    fn sub(&self, bytes: u64) {
        self.live.fetch_sub(bytes, Ordering::Relaxed);
    }
    pub fn live(&self) -> u64 {
        self.live.load(Ordering::Relaxed)
    }
    pub fn peak(&self) -> u64 {
        self.peak.load(Ordering::Relaxed)
    }
    pub fn reset_peak(&self) {
        self.peak.store(self.live(), Ordering::Relaxed);
    }
    /// Tensors and uniform buffers created so far (tests: recording dispatches creates none).
    pub fn buffers_created(&self) -> u64 {
        self.created.load(Ordering::Relaxed)
    }
}

pub struct Gpu {
    pub device: wgpu::Device,
    pub queue: wgpu::Queue,
    pub adapter: wgpu::Adapter,
    info: wgpu::AdapterInfo,
    limits: wgpu::Limits,
    modules: Mutex<HashMap<&'static str, wgpu::ShaderModule>>,
    pipelines: Mutex<HashMap<String, wgpu::ComputePipeline>>,
    mem: Arc<MemStats>,
    autotune: autotune::Autotune,
    /// The buffer `scratch` hands out views of (the largest requested so far), while any
    /// view of it lives.
    scratch: Mutex<Option<tensor::WeakTensor>>,
}

/// The message a user sees when wgpu finds no adapter at all.
pub const NO_ADAPTER_HELP: &str = "no GPU adapter found. mien needs a Vulkan, Metal or DX12 \
device (or GL via WGPU_BACKEND=gl). On a machine without a GPU install Mesa's CPU Vulkan \
driver (lavapipe): `apt-get install mesa-vulkan-drivers` on Debian/Ubuntu.";

/// The message a page shows when the browser offers no WebGPU adapter.
pub const NO_WEBGPU_HELP: &str = "this browser offers no WebGPU adapter, and mien needs WebGPU. Use a browser with \
WebGPU enabled (Chrome/Edge 113+, Firefox 141+ on Windows, Safari 26); Chromium on Linux needs \
--enable-unsafe-webgpu (with --enable-features=Vulkan).";

/// Backends named by `WGPU_BACKEND` (comma-separated: vulkan, metal, dx12, gl), or None
/// when it is unset: then the primary ones are tried, and GL only where they find no adapter
/// (probing GL loads EGL drivers, which log errors on machines without a display).
fn backends_from_env() -> Result<Option<wgpu::Backends>> {
    let Ok(list) = std::env::var("WGPU_BACKEND") else {
        return Ok(None);
    };
    let mut b = wgpu::Backends::empty();
    for name in list.split(',').map(|s| s.trim().to_lowercase()) {
        b |= match name.as_str() {
            "vulkan" | "vk" => wgpu::Backends::VULKAN,
            "metal" | "mtl" => wgpu::Backends::METAL,
            "dx12" | "d3d12" => wgpu::Backends::DX12,
            "gl" | "gles" | "opengl" => wgpu::Backends::GL,
            "" => continue,
            other => bail!(
                "WGPU_BACKEND={list:?}: unknown backend {other:?}; expected vulkan, metal, dx12 or gl"
            ),
        };
    }
    ensure!(!b.is_empty(), "WGPU_BACKEND is set but names no backend; expected vulkan, metal, dx12 or gl");
    Ok(Some(b))
}

/// Mesa's Vulkan device-select layer connects to a Wayland display to find the default GPU,
/// and libwayland prints `error: XDG_RUNTIME_DIR is invalid or not set` (twice) where there
/// is none. Where that connection cannot succeed (no usable XDG_RUNTIME_DIR) and the user
/// has not asked the layer to pick a device (MESA_VK_DEVICE_SELECT, DRI_PRIME), the layer
/// has nothing to do: disable it (its manifest's NODEVICE_SELECT=1). mien picks the adapter
/// itself (high-performance preference).
fn quiet_mesa_device_select() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(quiet_mesa_device_select_now);
}

fn quiet_mesa_device_select_now() {
    let set = |k: &str| std::env::var_os(k).is_some_and(|v| !v.is_empty());
    let runtime_dir_ok = std::env::var_os("XDG_RUNTIME_DIR").is_some_and(|d| std::path::Path::new(&d).is_dir());
    if runtime_dir_ok || set("WAYLAND_DISPLAY") || set("MESA_VK_DEVICE_SELECT") || set("DRI_PRIME") || std::env::var_os("NODEVICE_SELECT").is_some() {
        return;
    }
    // Once, before this process's first Vulkan call (every Gpu::new passes the Once first);
    // the loader reads it when creating an instance.
    std::env::set_var("NODEVICE_SELECT", "1");
}

async fn request_adapter(backends: wgpu::Backends) -> std::result::Result<wgpu::Adapter, wgpu::RequestAdapterError> {
    let mut desc = wgpu::InstanceDescriptor::new_without_display_handle();
    desc.backends = backends;
    let instance = wgpu::Instance::new(desc);
    let options = wgpu::RequestAdapterOptions {
        power_preference: wgpu::PowerPreference::HighPerformance,
        force_fallback_adapter: false,
        compatible_surface: None,
        apply_limit_buckets: false,
    };
    instance.request_adapter(&options).await
}

impl Gpu {
    /// Open the best adapter of the backends `WGPU_BACKEND` allows (by default the primary
    /// ones, Vulkan, Metal, DX12, and GL only where they find none), with every limit the
    /// adapter offers (big storage buffers matter for batch 512 at 48x48x64).
    pub fn new() -> Result<Gpu> {
        crate::platform::block_on(Self::new_async())
    }

    /// `new`, awaitable: the form a browser page uses. There the only backend is the
    /// browser's WebGPU (`WGPU_BACKEND` does not exist), and no adapter means the browser
    /// has no WebGPU (`NO_WEBGPU_HELP`).
    pub async fn new_async() -> Result<Gpu> {
        let adapter = if cfg!(target_arch = "wasm32") {
            request_adapter(wgpu::Backends::BROWSER_WEBGPU).await.map_err(|e| Error::new(format!("{NO_WEBGPU_HELP} (wgpu: {e})")))?
        } else {
            quiet_mesa_device_select();
            let chosen = backends_from_env()?;
            let primary = wgpu::Backends::PRIMARY - wgpu::Backends::BROWSER_WEBGPU;
            let tried = chosen.unwrap_or(primary | wgpu::Backends::GL);
            let found = match chosen {
                Some(b) => request_adapter(b).await,
                None => match request_adapter(primary).await {
                    Ok(a) => Ok(a),
                    Err(_) => {
                        log::warn!("no Vulkan, Metal or DX12 adapter; trying GL");
                        request_adapter(wgpu::Backends::GL).await
                    }
                },
            };
            found.map_err(|e| Error::new(format!("{NO_ADAPTER_HELP} (wgpu: {e}; backends tried: {tried:?})")))?
        };
        let info = adapter.get_info();
        let autotune = autotune::Autotune::from_env(&info)?;
        let limits = adapter.limits();
        let wanted = wgpu::Features::TIMESTAMP_QUERY | wgpu::Features::TIMESTAMP_QUERY_INSIDE_ENCODERS | wgpu::Features::SUBGROUP | wgpu::Features::SHADER_F16;
        let features = adapter.features() & wanted;
        let request = |features: wgpu::Features, experimental: wgpu::ExperimentalFeatures| {
            adapter.request_device(&wgpu::DeviceDescriptor {
                label: Some("mien"),
                required_features: features,
                required_limits: limits.clone(),
                experimental_features: experimental,
                memory_hints: wgpu::MemoryHints::Performance,
                trace: wgpu::Trace::Off,
            })
        };
        // Cooperative matrices where the adapter offers a configuration mien's kernels are
        // written for (coop::usable); MIEN_COOP=0 leaves them off. If the device refuses them,
        // open it without (the coop variants then report themselves unavailable).
        let coop = coop::wanted(&adapter, features)?;
        let opened = if coop {
            // SAFETY: wgpu gates every EXPERIMENTAL_* feature behind this token because its
            // implementation may still have bugs that cause undefined behaviour from safe
            // calls. mien uses cooperative matrices only in its own kernels
            // (shaders/coop/real.wgsl), which validate with naga offline (tests/shaders.rs)
            // and are checked against the f64 reference wherever they run.
            let experimental = unsafe { wgpu::ExperimentalFeatures::enabled() };
            match request(features | wgpu::Features::EXPERIMENTAL_COOPERATIVE_MATRIX, experimental).await {
                Ok(d) => Ok(d),
                Err(e) => {
                    log::warn!("adapter {:?} offers cooperative matrices but the device refused them ({e}); opening it without", info.name);
                    request(features, wgpu::ExperimentalFeatures::disabled()).await
                }
            }
        } else {
            request(features, wgpu::ExperimentalFeatures::disabled()).await
        };
        let (device, queue) = opened.map_err(|e| Error::new(format!("could not open device on adapter {:?}: {e}", info.name)))?;
        Ok(Gpu {
            device,
            queue,
            adapter,
            info,
            limits,
            modules: Mutex::new(HashMap::new()),
            pipelines: Mutex::new(HashMap::new()),
            mem: Arc::new(MemStats::default()),
            autotune,
            scratch: Mutex::new(None),
        })
    }

    pub fn info(&self) -> &wgpu::AdapterInfo {
        &self.info
    }
    pub fn limits(&self) -> &wgpu::Limits {
        &self.limits
    }
    pub fn mem(&self) -> &MemStats {
        &self.mem
    }

    /// The kernel-variant autotuner of this device (mode from `MIEN_AUTOTUNE`; the
    /// binaries' `--autotune` calls `gpu.autotune().set_mode`).
    pub fn autotune(&self) -> &autotune::Autotune {
        &self.autotune
    }

    /// The smallest subgroup size of the device when it has subgroup operations (wgpu's
    /// SUBGROUP feature, requested whenever the adapter offers it), else None. Kernels that
    /// broadcast within a subgroup need at least 8 lanes (lavapipe: exactly 8).
    pub fn subgroup_min_size(&self) -> Option<u32> {
        self.device.features().contains(wgpu::Features::SUBGROUP).then_some(self.info.subgroup_min_size)
    }

    /// Whether shaders may use f16 (wgpu's SHADER_F16, requested whenever the adapter offers
    /// it): both builds of the cooperative-matrix kernels need it.
    pub fn has_f16(&self) -> bool {
        self.device.features().contains(wgpu::Features::SHADER_F16)
    }

    /// The cooperative-matrix configurations this device can run (empty unless wgpu's
    /// EXPERIMENTAL_COOPERATIVE_MATRIX was granted): the adapter's
    /// `cooperative_matrix_properties()` that WGSL can spell (square 8 or 16, float types,
    /// f16 only with SHADER_F16), best first (f16 -> f32, 16 before 8).
    pub fn coop_configs(&self) -> Vec<coop::CoopConfig> {
        if !self.device.features().contains(wgpu::Features::EXPERIMENTAL_COOPERATIVE_MATRIX) {
            return Vec::new();
        }
        coop::usable(&self.adapter.cooperative_matrix_properties(), self.has_f16())
    }

    /// Whether the real (hardware) build of the `*_coop` kernels runs here: cooperative
    /// matrices with the 16x16x16 f16 -> f32 configuration they are written for, f16, and
    /// subgroup sizes that are powers of two (the workgroup is built on the largest).
    pub fn has_coop(&self) -> bool {
        self.has_f16() && self.info.subgroup_max_size.is_power_of_two() && self.coop_configs().contains(&coop::CoopConfig::KERNELS)
    }

    /// Adapter name, backend, device type, driver and the limits mien cares about.
    pub fn describe(&self) -> String {
        let i = &self.info;
        let l = &self.limits;
        let coop: Vec<String> = self.coop_configs().iter().map(|c| c.to_string()).collect();
        format!(
            "adapter: {} ({:?}, {:?})\ndriver: {} {}\nf16: {} subgroups: {:?} cooperative matrices: {}\nlimits: max_storage_buffer_binding_size={} max_buffer_size={} \
             max_compute_workgroups_per_dimension={} max_compute_invocations_per_workgroup={} \
             max_compute_workgroup_storage_size={} max_storage_buffers_per_shader_stage={}",
            i.name,
            i.backend,
            i.device_type,
            i.driver,
            i.driver_info,
            self.has_f16(),
            self.subgroup_min_size().map(|_| (i.subgroup_min_size, i.subgroup_max_size)),
            if coop.is_empty() { "none".to_string() } else { coop.join(", ") },
            l.max_storage_buffer_binding_size,
            l.max_buffer_size,
            l.max_compute_workgroups_per_dimension,
            l.max_compute_invocations_per_workgroup,
            l.max_compute_workgroup_storage_size,
            l.max_storage_buffers_per_shader_stage,
        )
    }

    /// The compute pipeline for `shader`'s entry point `entry`, created once per process
    /// (per set of override constants) and cached.
    pub fn pipeline(&self, shader: &Shader, entry: &str, constants: &[(&str, f64)]) -> wgpu::ComputePipeline {
        let key = format!("{}::{entry}{constants:?}", shader.name);
        if let Some(p) = self.pipelines.lock().unwrap().get(&key) {
            return p.clone();
        }
        let module = self.module(shader);
        let p = self.device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
            label: Some(&key),
            layout: None,
            module: &module,
            entry_point: Some(entry),
            compilation_options: wgpu::PipelineCompilationOptions { constants, zero_initialize_workgroup_memory: false },
            cache: None,
        });
        self.pipelines.lock().unwrap().insert(key, p.clone());
        p
    }

    fn module(&self, shader: &Shader) -> wgpu::ShaderModule {
        let mut modules = self.modules.lock().unwrap();
        modules
            .entry(shader.name)
            .or_insert_with(|| {
                self.device.create_shader_module(wgpu::ShaderModuleDescriptor {
                    label: Some(shader.name),
                    source: wgpu::ShaderSource::Wgsl(shader.source.into()),
                })
            })
            .clone()
    }

    /// Refuse a buffer the device cannot bind, naming the tensor and the limit.
    pub fn check_binding_size(&self, label: &str, bytes: u64) -> Result<()> {
        let max_bind = self.limits.max_storage_buffer_binding_size;
        let max_buf = self.limits.max_buffer_size;
        ensure!(bytes > 0, "{label}: a tensor must hold at least one element");
        ensure!(
            bytes <= max_bind && bytes <= max_buf,
            "{label}: needs {bytes} bytes, over this adapter's limit (max_storage_buffer_binding_size={max_bind}, \
             max_buffer_size={max_buf}); use a smaller batch or layer"
        );
        Ok(())
    }

    /// Refuse a tensor of `shape` (4-byte elements) the device cannot bind, counting bytes
    /// in u64: a product of usizes wraps on 32-bit targets (wasm32 in a browser).
    pub fn check_shape(&self, label: &str, shape: &[usize]) -> Result<()> {
        let bytes = shape.iter().try_fold(4u64, |b, &d| b.checked_mul(d as u64)).unwrap_or(u64::MAX);
        self.check_binding_size(label, bytes)
    }

    /// A zero-filled f32 (or u32) tensor of `shape`.
    pub fn tensor(&self, label: &str, shape: &[usize]) -> Result<Tensor> {
        self.tensor_with_usage(label, shape, wgpu::BufferUsages::empty())
    }

    /// A tensor of `shape` for values that one pass writes and its next dispatch consumes
    /// (depth-split partial sums and their reduce), sharing one buffer with every other such
    /// tensor: the queue runs dispatches in order, with barriers between them, so passes of
    /// different layers never overlap. The shared buffer is the largest request so far; a
    /// larger request allocates a new one (views handed out before keep the old one alive),
    /// and the buffer is freed with the last view. Never use it for values that must survive
    /// another layer's pass.
    pub fn scratch(&self, label: &str, shape: &[usize]) -> Result<Tensor> {
        let n: usize = shape.iter().product();
        let mut shared = self.scratch.lock().unwrap();
        let buffer = match shared.as_ref().and_then(|w| w.upgrade()) {
            Some(t) if t.len() >= n => t,
            _ => {
                let t = self.tensor("scratch (partial sums, shared by every layer)", &[n])?;
                *shared = Some(t.downgrade());
                t
            }
        };
        buffer.view(label, 0, shape)
    }

    /// `tensor` whose buffer also has `usage` (e.g. UNIFORM: operands repacked by a kernel
    /// and read back through <= 64 KiB uniform windows of it). Counted in `mem()` like any
    /// tensor.
    pub fn tensor_with_usage(&self, label: &str, shape: &[usize], usage: wgpu::BufferUsages) -> Result<Tensor> {
        self.check_shape(label, shape)?;
        let n: usize = shape.iter().product();
        let bytes = (n * 4) as u64;
        let buffer = self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some(label),
            size: bytes,
            usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC | wgpu::BufferUsages::COPY_DST | usage,
            mapped_at_creation: false,
        });
        self.mem.created.fetch_add(1, Ordering::Relaxed);
        Ok(Tensor::new(buffer, bytes, shape, label, self.limits.min_storage_buffer_offset_alignment, self.mem.clone()))
    }

    /// A tensor holding `data` (f32 or u32 / i32: any 4-byte plain type).
    pub fn upload<T: bytemuck::Pod>(&self, label: &str, shape: &[usize], data: &[T]) -> Result<Tensor> {
        let t = self.tensor(label, shape)?;
        self.write(&t, data)?;
        Ok(t)
    }

    /// Overwrite a tensor's contents (queued; ordered before the next submit).
    pub fn write<T: bytemuck::Pod>(&self, t: &Tensor, data: &[T]) -> Result<()> {
        ensure!(std::mem::size_of::<T>() == 4, "{}: tensors hold 4-byte elements", t.label());
        ensure!(
            data.len() == t.len(),
            "{}: writing {} values into a tensor of shape {:?} ({} values)",
            t.label(),
            data.len(),
            t.shape(),
            t.len()
        );
        self.queue.write_buffer(t.buffer(), t.offset(), bytemuck::cast_slice(data));
        Ok(())
    }

    /// A uniform buffer holding `value` (a `#[repr(C)]` mirror of a WGSL uniform struct).
    pub fn uniform<T: bytemuck::Pod>(&self, label: &str, value: &T) -> wgpu::Buffer {
        let bytes = bytemuck::bytes_of(value);
        // Uniform bindings must be a multiple of 16 bytes on some backends: pad.
        let size = (bytes.len() as u64).div_ceil(16) * 16;
        let buffer = self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some(label),
            size,
            usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        self.queue.write_buffer(&buffer, 0, bytes);
        self.mem.created.fetch_add(1, Ordering::Relaxed);
        buffer
    }

    /// Workgroup counts for `invocations` threads in workgroups of `wg`, laid out in 2-D when
    /// one dimension would exceed `max_compute_workgroups_per_dimension`. A kernel recovers
    /// its linear index as `gid.x + gid.y * (num_workgroups.x * wg)` and returns past `n`.
    pub fn groups_1d(&self, label: &str, invocations: u64, wg: u32) -> Result<[u32; 3]> {
        let max = self.limits.max_compute_workgroups_per_dimension as u64;
        let groups = invocations.div_ceil(wg as u64).max(1);
        if groups <= max {
            return Ok([groups as u32, 1, 1]);
        }
        let y = groups.div_ceil(max);
        ensure!(
            y <= max,
            "{label}: {invocations} invocations need {groups} workgroups of {wg}, over this adapter's \
             max_compute_workgroups_per_dimension={max} even in 2-D; use a smaller batch"
        );
        Ok([max as u32, y as u32, 1])
    }

    /// Check explicit workgroup counts against the device limit.
    pub fn check_groups(&self, label: &str, groups: [u32; 3]) -> Result<[u32; 3]> {
        let max = self.limits.max_compute_workgroups_per_dimension;
        ensure!(
            groups.iter().all(|&g| g <= max),
            "{label}: dispatch of {groups:?} workgroups exceeds max_compute_workgroups_per_dimension={max}; \
             use a smaller batch"
        );
        Ok(groups)
    }

    /// Record `dispatches` into one encoder and one compute pass, and submit once.
    pub fn submit<'a>(&self, dispatches: impl IntoIterator<Item = &'a Dispatch>) -> wgpu::SubmissionIndex {
        self.submit_with(dispatches, |_| {})
    }

    /// Like `submit`, then `after` records more commands (copies) into the same encoder.
    pub fn submit_with<'a>(
        &self,
        dispatches: impl IntoIterator<Item = &'a Dispatch>,
        after: impl FnOnce(&mut wgpu::CommandEncoder),
    ) -> wgpu::SubmissionIndex {
        self.submit_timestamped(dispatches, None, after)
    }

    /// `submit_with`, the compute pass's start and end written to queries `index` and
    /// `index + 1` of `timestamps` when given (a device with TIMESTAMP_QUERY; the browser
    /// page times its training steps this way).
    pub fn submit_timestamped<'a>(
        &self,
        dispatches: impl IntoIterator<Item = &'a Dispatch>,
        timestamps: Option<(&wgpu::QuerySet, u32)>,
        after: impl FnOnce(&mut wgpu::CommandEncoder),
    ) -> wgpu::SubmissionIndex {
        let mut encoder = self.device.create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some("mien step") });
        {
            let timestamp_writes = timestamps.map(|(query_set, i)| wgpu::ComputePassTimestampWrites {
                query_set,
                beginning_of_pass_write_index: Some(i),
                end_of_pass_write_index: Some(i + 1),
            });
            let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor { label: Some("mien step"), timestamp_writes });
            for d in dispatches {
                d.encode(&mut pass);
            }
        }
        after(&mut encoder);
        self.queue.submit(Some(encoder.finish()))
    }

    /// Submit and block until the GPU is done (tests, benchmarks).
    pub fn run<'a>(&self, dispatches: impl IntoIterator<Item = &'a Dispatch>) -> Result<()> {
        let idx = self.submit(dispatches);
        self.wait(Some(idx))
    }

    /// Block until submission `idx` (or everything) has finished.
    pub fn wait(&self, idx: Option<wgpu::SubmissionIndex>) -> Result<()> {
        self.device
            .poll(wgpu::PollType::Wait { submission_index: idx, timeout: None })
            .map(|_| ())
            .map_err(|e| Error::new(format!("waiting for the GPU failed: {e}")))
    }

    /// Copy a tensor back to the host as f32 (blocks natively; see `read_async`).
    pub fn read(&self, t: &Tensor) -> Result<Vec<f32>> {
        crate::platform::block_on(self.read_pod(t))
    }

    /// Copy a tensor back to the host as u32 (argmax indices, flags).
    pub fn read_u32(&self, t: &Tensor) -> Result<Vec<u32>> {
        crate::platform::block_on(self.read_pod(t))
    }

    /// `read`, awaitable: the copy is mapped with `map_async` and the future resolves in
    /// the callback (natively inside `wait`'s blocking poll, in a browser when WebGPU's
    /// mapAsync promise resolves).
    pub async fn read_async(&self, t: &Tensor) -> Result<Vec<f32>> {
        self.read_pod(t).await
    }

    pub async fn read_u32_async(&self, t: &Tensor) -> Result<Vec<u32>> {
        self.read_pod(t).await
    }

    async fn read_pod<T: bytemuck::Pod>(&self, t: &Tensor) -> Result<Vec<T>> {
        let bytes = t.bytes();
        let staging = self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some(&format!("{} readback", t.label())),
            size: bytes,
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        let mut encoder = self.device.create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some("readback") });
        encoder.copy_buffer_to_buffer(t.buffer(), t.offset(), &staging, 0, bytes);
        let idx = self.queue.submit(Some(encoder.finish()));
        let (tx, rx) = crate::platform::oneshot();
        staging.map_async(wgpu::MapMode::Read, .., move |r| tx.send(r));
        self.wait(Some(idx))?;
        rx.await
            .ok_or_else(|| Error::new(format!("{}: readback callback never ran", t.label())))?
            .map_err(|e| Error::new(format!("{}: mapping the readback buffer failed: {e}", t.label())))?;
        let view = staging
            .get_mapped_range(..)
            .map_err(|e| Error::new(format!("{}: readback range: {e}", t.label())))?;
        let out = bytemuck::cast_slice::<u8, T>(&view).to_vec();
        drop(view);
        staging.unmap();
        Ok(out)
    }
}
