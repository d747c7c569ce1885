//! Adapter and device creation, capability detection, and device-loss tracking.
//!
//! We request the adapter's own limits (not wgpu's conservative defaults): SwiftShader offers 1 GiB
//! storage bindings only when asked, and a 4096×4097 f32 matrix already needs 64 MiB. Optional
//! features (shader-f16, subgroups, timestamp queries) are requested when present and reported,
//! so kernels choose their variant at run time, never by a cargo feature.
//!
//! `Precision` says how the matrix products multiply: in f32 (the default of `GpuContext::new`,
//! exact enough for the model tests' 2e-5 bounds) or with f16 block products where the device
//! has shader-f16 (`preferred_precision`, what the CLI and the JS API ask for unless told not to).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

use serde::Serialize;

use super::error::GpuError;
use super::pipelines::PipelineCache;
use super::shaders::ShaderId;

/// Features we use when the adapter has them.
const OPTIONAL_FEATURES: wgpu::Features = wgpu::Features::SHADER_F16
    .union(wgpu::Features::SUBGROUP)
    .union(wgpu::Features::TIMESTAMP_QUERY);

/// The limits that matter to our kernels, as granted to the device.
#[derive(Clone, Debug, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct LimitsReport {
    pub max_storage_buffer_binding_size: u64,
    pub max_buffer_size: u64,
    pub max_storage_buffers_per_shader_stage: u32,
    pub max_compute_workgroup_size_x: u32,
    pub max_compute_invocations_per_workgroup: u32,
    pub max_compute_workgroup_storage_size: u32,
    pub max_compute_workgroups_per_dimension: u32,
}

impl From<&wgpu::Limits> for LimitsReport {
    fn from(l: &wgpu::Limits) -> Self {
        Self {
            max_storage_buffer_binding_size: l.max_storage_buffer_binding_size,
            max_buffer_size: l.max_buffer_size,
            max_storage_buffers_per_shader_stage: l.max_storage_buffers_per_shader_stage,
            max_compute_workgroup_size_x: l.max_compute_workgroup_size_x,
            max_compute_invocations_per_workgroup: l.max_compute_invocations_per_workgroup,
            max_compute_workgroup_storage_size: l.max_compute_workgroup_storage_size,
            max_compute_workgroups_per_dimension: l.max_compute_workgroups_per_dimension,
        }
    }
}

/// How the matrix products (`ops::matvec`) multiply.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    /// Weights decoded and multiplied in f32: the reference-grade path, on every device.
    F32,
    /// Activations staged as f16 (scaled per 32 values), weight blocks decoded to f16 and the
    /// products within a block summed in f16; blocks accumulated in f32. Needs shader-f16.
    F16,
}

impl Precision {
    /// "f32" or "f16"; "auto" is not a precision but a request for `preferred_precision`.
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "f32" => Some(Precision::F32),
            "f16" => Some(Precision::F16),
            _ => None,
        }
    }
}

/// What the adapter is and what the device got: shown on the page and printed by tests.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AdapterReport {
    /// "vulkan", "metal", "webgpu", …
    pub backend: String,
    /// Adapter name natively ("llvmpipe (LLVM 15.0.6, 256 bits)"); `adapter.info.description`
    /// or `device` in the browser (often empty there).
    pub name: String,
    /// Vendor: a PCI id natively, `adapter.info.vendor` in the browser ("google").
    pub vendor: String,
    /// `adapter.info.architecture` in the browser ("swiftshader"); the driver natively.
    pub architecture: String,
    /// "Cpu", "DiscreteGpu", … natively; "fallback" or "" in the browser.
    pub device_type: String,
    pub shader_f16: bool,
    pub subgroups: bool,
    pub timestamp_query: bool,
    pub limits: LimitsReport,
}

impl AdapterReport {
    /// A name for people: the adapter's name, else its architecture, else its vendor (browsers
    /// often leave the name empty: "swiftshader" is the architecture there).
    pub fn label(&self) -> String {
        [&self.name, &self.architecture, &self.vendor].into_iter().find(|s| !s.is_empty()).cloned().unwrap_or_default()
    }

    /// Whether the adapter emulates a GPU on the CPU: the browser's fallback adapter
    /// (`isFallbackAdapter`), a CPU device type, or a known software rasterizer (SwiftShader,
    /// llvmpipe/lavapipe, WARP). On such an adapter the CPU backend is the faster device (measured
    /// here: SmolLM2 decodes at 0.3 tok/s on SwiftShader against 20+ on the CPU backend).
    pub fn is_software(&self) -> bool {
        let names = [&self.name, &self.architecture, &self.vendor].map(|s| s.to_lowercase());
        self.device_type == "fallback" || self.device_type == "Cpu" || names.iter().any(|n| ["swiftshader", "llvmpipe", "lavapipe", "microsoft basic render"].iter().any(|soft| n.contains(soft)))
    }
}

/// Test hook: the device of whichever context records the `n`-th compute dispatch from now is
/// destroyed right there, mid-pass (0 disarms). The recovery tests use it to lose a device in the
/// middle of a generation, an embedding or a transcription.
pub fn lose_device_after(n: u64) {
    LOSE_DEVICE_IN.with(|left| left.set(n));
}

/// One kernel entry point's share of a profile.
#[derive(Clone, Copy, Debug, Default, serde::Serialize)]
pub struct KernelTime {
    pub dispatches: u64,
    pub ms: f64,
}

/// GPU time per kernel entry point, gathered while `profile(true)`.
pub type Profile = std::collections::BTreeMap<&'static str, KernelTime>;

/// Profiling switch (this thread's): while on, each dispatch is submitted on its own and waited
/// for, and its wall time added to its entry point's total (`take_profile`). It serialises the
/// GPU, so totals show where a pass spends its time, not how fast it runs. For benchmarks.
pub fn profile(on: bool) {
    PROFILE.with(|p| *p.borrow_mut() = on.then(Profile::new));
}

/// The totals gathered since `profile(true)` (empty when off), and a fresh start.
pub fn take_profile() -> Profile {
    PROFILE.with(|p| p.borrow_mut().as_mut().map(std::mem::take).unwrap_or_default())
}

pub(crate) fn profiling() -> bool {
    PROFILE.with(|p| p.borrow().is_some())
}

pub(crate) fn add_to_profile(entry_point: &'static str, ms: f64) {
    PROFILE.with(|p| {
        if let Some(totals) = p.borrow_mut().as_mut() {
            let t = totals.entry(entry_point).or_default();
            t.dispatches += 1;
            t.ms += ms;
        }
    });
}

thread_local! {
    static PROFILE: std::cell::RefCell<Option<Profile>> = const { std::cell::RefCell::new(None) };
    /// The test switch of [`break_kernels`] (per thread: native tests run side by side).
    static KERNELS_BROKEN: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
    /// Dispatches left before the test hook destroys the device (0: off); see [`lose_device_after`].
    static LOSE_DEVICE_IN: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

/// Test switch: while on, every kernel this thread records is dispatched over half its grid (the
/// x dimension), a GPU computing garbage without any error, for the self-check's tests.
pub fn break_kernels(on: bool) {
    KERNELS_BROKEN.with(|k| k.set(on));
}

pub(crate) fn kernels_broken() -> bool {
    KERNELS_BROKEN.with(std::cell::Cell::get)
}

/// One wgpu device and queue, with the state every op needs.
pub struct GpuContext {
    pub device: wgpu::Device,
    pub queue: wgpu::Queue,
    pub features: wgpu::Features,
    pub limits: wgpu::Limits,
    pub report: AdapterReport,
    pub(crate) pipelines: PipelineCache,
    /// Activation and scratch buffers for reuse.
    pub pool: super::pool::BufferPool,
    /// Set by the device-lost callback; checked before work is encoded.
    lost: Arc<Mutex<Option<String>>>,
    /// Errors that no error scope caught; tests assert this stays empty.
    uncaptured: Arc<Mutex<Vec<String>>>,
    /// `Precision::F16` when set (only ever with shader-f16); an atomic so that a shared context
    /// (`Rc` in the browser) can be switched between runs.
    f16_products: AtomicBool,
    /// The adapter's smallest subgroup (0 without subgroups).
    subgroup_min_size: u32,
    /// Lanes the CPU adapters' kernels share loads between through subgroups (0, 4 or 8;
    /// `set_subgroup_sharing`).
    subgroup_sharing: AtomicU32,
    /// Compute dispatches recorded so far (`Gpu` reports them per pass).
    dispatches: std::sync::atomic::AtomicU64,
    /// A small storage buffer bound where a kernel's optional input is absent (a product without
    /// a bias): WebGPU wants every binding of a layout filled.
    pub placeholder: wgpu::Buffer,
    dispatch_cache: Mutex<DispatchCache>,
    /// Uniform buffers, bind groups and pooled buffers created so far (`objects_created`).
    created: std::sync::atomic::AtomicU64,
}

/// Uniform buffers by their bytes and bind groups by their module and buffers: a pass that
/// repeats the dispatches of the one before (a decode step: same params, same pooled buffers in
/// the same order) creates no wgpu object. Both are immutable once made, so reuse is safe
/// anywhere; the cache is emptied when it grows past `DISPATCH_CACHE_ENTRIES` and when a model's
/// backend is dropped (its bind groups hold its buffers alive).
#[derive(Default)]
struct DispatchCache {
    uniforms: HashMap<Vec<u8>, wgpu::Buffer>,
    bind_groups: HashMap<(ShaderId, Vec<wgpu::Buffer>), wgpu::BindGroup>,
}

const DISPATCH_CACHE_ENTRIES: usize = 4096;

/// The lanes the sharing kernels (matmul_blocked_subgroups.wgsl, attention_subgroups.wgsl) share
/// a load between: a subgroup's first 4 or 8 (lavapipe's subgroups have 8, SwiftShader's 4).
const SHARED_LANES: [u32; 2] = [4, 8];

/// The most lanes an adapter whose subgroups have at least `min_size` invocations shares
/// between, 0 where it has none to share.
fn shared_lanes_for(min_size: u32) -> u32 {
    SHARED_LANES.into_iter().filter(|&n| n <= min_size).max().unwrap_or(0)
}

impl GpuContext {
    /// Finds an adapter and creates a device with the adapter's limits and our optional features.
    /// Natively, `WGPU_BACKEND` and `WGPU_ADAPTER_NAME` select the adapter.
    pub async fn new() -> Result<Self, GpuError> {
        #[cfg(target_arch = "wasm32")]
        let web_info = web::adapter_info().await?;

        let instance = wgpu::Instance::new(wgpu::InstanceDescriptor::new_without_display_handle_from_env());
        let adapter = wgpu::util::initialize_adapter_from_env_or_default(&instance, None)
            .await
            .map_err(|e| GpuError::NoAdapter { detail: e.to_string() })?;

        let features = adapter.features() & OPTIONAL_FEATURES;
        let limits = adapter.limits();
        let (device, queue) = adapter
            .request_device(&wgpu::DeviceDescriptor {
                label: Some("hugrt"),
                required_features: features,
                required_limits: limits.clone(),
                experimental_features: wgpu::ExperimentalFeatures::disabled(),
                memory_hints: wgpu::MemoryHints::Performance,
                trace: wgpu::Trace::Off,
            })
            .await
            .map_err(|e| GpuError::RequestDevice { detail: e.to_string() })?;

        let lost = Arc::new(Mutex::new(None));
        let lost_flag = lost.clone();
        device.set_device_lost_callback(move |reason, message| {
            if let Ok(mut slot) = lost_flag.lock() {
                *slot = Some(format!("{reason:?}: {message}"));
            }
        });
        let uncaptured = Arc::new(Mutex::new(Vec::new()));
        let sink = uncaptured.clone();
        device.on_uncaptured_error(Arc::new(move |err: wgpu::Error| {
            if let Ok(mut errors) = sink.lock() {
                errors.push(err.to_string());
            }
        }));

        let info = adapter.get_info();
        let subgroup_min_size = if features.contains(wgpu::Features::SUBGROUP) { info.subgroup_min_size } else { 0 };
        let granted = device.limits();
        #[cfg_attr(not(target_arch = "wasm32"), allow(unused_mut))]
        let mut report = AdapterReport {
            backend: format!("{:?}", info.backend).to_lowercase(),
            name: info.name.clone(),
            vendor: format!("{:#06x}", info.vendor),
            architecture: info.driver.clone(),
            device_type: format!("{:?}", info.device_type),
            shader_f16: features.contains(wgpu::Features::SHADER_F16),
            subgroups: features.contains(wgpu::Features::SUBGROUP),
            timestamp_query: features.contains(wgpu::Features::TIMESTAMP_QUERY),
            limits: LimitsReport::from(&granted),
        };
        #[cfg(target_arch = "wasm32")]
        web_info.fill(&mut report);

        let placeholder = device.create_buffer(&wgpu::BufferDescriptor { label: Some("placeholder"), size: 16, usage: wgpu::BufferUsages::STORAGE, mapped_at_creation: false });
        Ok(Self {
            placeholder,
            dispatch_cache: Default::default(),
            created: Default::default(),
            device,
            queue,
            features,
            limits: granted,
            report,
            pipelines: PipelineCache::default(),
            pool: Default::default(),
            lost,
            uncaptured,
            f16_products: AtomicBool::new(false),
            subgroup_min_size,
            subgroup_sharing: AtomicU32::new(shared_lanes_for(subgroup_min_size)),
            dispatches: Default::default(),
        }
        .with_precision_from_env())
    }

    /// Natively, `HUGRT_PRECISION=f16|f32|auto` sets the starting precision (so a whole test run
    /// can be repeated on the f16 path); unset or unknown, it is f32. Ignored in the browser.
    fn with_precision_from_env(self) -> Self {
        #[cfg(not(target_arch = "wasm32"))]
        if let Ok(name) = std::env::var("HUGRT_PRECISION") {
            let p = if name == "auto" { Some(self.preferred_precision()) } else { Precision::from_name(&name) };
            if let Some(p) = p {
                // F16 on a device without shader-f16 stays F32, as "auto" would.
                let _ = self.set_precision(p);
            }
        }
        self
    }

    /// F16 where the device has shader-f16, else F32: what the runtime uses unless told otherwise.
    pub fn preferred_precision(&self) -> Precision {
        if self.features.contains(wgpu::Features::SHADER_F16) { Precision::F16 } else { Precision::F32 }
    }

    /// The precision the matrix products use now.
    pub fn precision(&self) -> Precision {
        if self.f16_products.load(Ordering::Relaxed) { Precision::F16 } else { Precision::F32 }
    }

    /// The uniform buffer holding `params`: made once per distinct value (`DispatchCache`).
    pub(crate) fn cached_uniform<T: bytemuck::Pod>(&self, what: &'static str, params: &T) -> wgpu::Buffer {
        let bytes = bytemuck::bytes_of(params);
        let Ok(mut cache) = self.dispatch_cache.lock() else { return self.uniform(what, params) };
        if let Some(b) = cache.uniforms.get(bytes) {
            return b.clone();
        }
        if cache.uniforms.len() >= DISPATCH_CACHE_ENTRIES {
            cache.uniforms.clear();
        }
        self.count_created();
        let b = self.uniform(what, params);
        cache.uniforms.insert(bytes.to_vec(), b.clone());
        b
    }

    /// The bind group of `buffers` (binding 0, 1, …) for a pipeline of `shader`: made once per
    /// distinct set (`DispatchCache`).
    pub(crate) fn cached_bind_group(&self, shader: ShaderId, label: &str, layout: &wgpu::BindGroupLayout, buffers: &[&wgpu::Buffer]) -> wgpu::BindGroup {
        let make = || {
            let entries: Vec<wgpu::BindGroupEntry> = buffers.iter().enumerate().map(|(i, b)| wgpu::BindGroupEntry { binding: i as u32, resource: b.as_entire_binding() }).collect();
            self.device.create_bind_group(&wgpu::BindGroupDescriptor { label: Some(label), layout, entries: &entries })
        };
        let key = (shader, buffers.iter().map(|&b| b.clone()).collect::<Vec<_>>());
        let Ok(mut cache) = self.dispatch_cache.lock() else { return make() };
        if let Some(g) = cache.bind_groups.get(&key) {
            return g.clone();
        }
        if cache.bind_groups.len() >= DISPATCH_CACHE_ENTRIES {
            cache.bind_groups.clear();
        }
        self.count_created();
        let g = make();
        cache.bind_groups.insert(key, g.clone());
        g
    }

    /// Empties the dispatch cache, letting go of the buffers its bind groups hold.
    pub fn clear_dispatch_cache(&self) {
        if let Ok(mut cache) = self.dispatch_cache.lock() {
            *cache = DispatchCache::default();
        }
    }

    pub(crate) fn count_created(&self) {
        self.created.fetch_add(1, Ordering::Relaxed);
    }

    /// Uniform buffers, bind groups and pooled buffers created on this context so far: a test
    /// asserts that decode steps after the first add none.
    pub fn objects_created(&self) -> u64 {
        self.created.load(Ordering::Relaxed)
    }

    /// Chooses the matrix products' precision for work encoded from now on; F16 on a device
    /// without shader-f16 is `MissingFeature` and changes nothing.
    pub fn set_precision(&self, precision: Precision) -> Result<(), GpuError> {
        if precision == Precision::F16 && !self.features.contains(wgpu::Features::SHADER_F16) {
            return Err(GpuError::MissingFeature { op: "set_precision", feature: "shader-f16" });
        }
        self.f16_products.store(precision == Precision::F16, Ordering::Relaxed);
        Ok(())
    }

    /// Between how many lanes of a subgroup the kernels of CPU adapters share what all of them
    /// read (matmul_blocked.wgsl's block of X, attention_queries' keys and values): 8 or 4, the
    /// most the adapter's smallest subgroup allows, 0 (every invocation loads) without subgroups.
    pub fn subgroup_sharing(&self) -> u32 {
        self.subgroup_sharing.load(Ordering::Relaxed)
    }

    /// Sets those lanes (0, 4 or 8; tests run each the adapter allows); more lanes than the
    /// adapter's smallest subgroup is `MissingFeature`, another count `Shape`, and neither changes
    /// anything.
    pub fn set_subgroup_sharing(&self, lanes: u32) -> Result<(), GpuError> {
        if lanes != 0 && !SHARED_LANES.contains(&lanes) {
            return Err(GpuError::Shape { op: "set_subgroup_sharing", detail: format!("{lanes} lanes: 0, 4 or 8") });
        }
        if lanes > self.subgroup_min_size {
            return Err(GpuError::MissingFeature { op: "set_subgroup_sharing", feature: "subgroups of that many invocations" });
        }
        self.subgroup_sharing.store(lanes, Ordering::Relaxed);
        Ok(())
    }

    /// Compute dispatches recorded on this context so far.
    pub fn dispatches(&self) -> u64 {
        self.dispatches.load(Ordering::Relaxed)
    }

    pub(crate) fn count_dispatch(&self) {
        self.dispatches.fetch_add(1, Ordering::Relaxed);
        // The test hook: the device dies at the dispatch it was armed for, mid-pass.
        let left = LOSE_DEVICE_IN.with(|left| left.replace(left.get().saturating_sub(1)));
        if left == 1 {
            self.lose("destroyed by the test hook (lose_device_after)");
        }
    }

    /// Destroys the device (as a driver reset or `device.destroy()` would lose it) and marks it
    /// lost at once; every later op is a `DeviceLost` error.
    pub fn lose(&self, reason: &str) {
        if let Ok(mut slot) = self.lost.lock() {
            slot.get_or_insert_with(|| reason.to_string());
        }
        self.device.destroy();
    }

    /// `Err(DeviceLost)` once the device is gone; ops call this before encoding work.
    pub fn check_alive(&self) -> Result<(), GpuError> {
        match self.lost.lock().ok().and_then(|slot| slot.clone()) {
            Some(reason) => Err(GpuError::DeviceLost { reason }),
            None => Ok(()),
        }
    }

    /// Errors that escaped every error scope since the last call.
    pub fn take_uncaptured_errors(&self) -> Vec<String> {
        self.uncaptured.lock().map(|mut e| std::mem::take(&mut *e)).unwrap_or_default()
    }

    /// Runs `f` inside validation and out-of-memory error scopes, turning what they catch into
    /// a typed error naming `op`.
    pub async fn scoped<T>(&self, op: &str, f: impl FnOnce() -> T) -> Result<T, GpuError> {
        self.check_alive()?;
        let oom = self.device.push_error_scope(wgpu::ErrorFilter::OutOfMemory);
        let validation = self.device.push_error_scope(wgpu::ErrorFilter::Validation);
        let value = f();
        let validation_error = validation.pop().await;
        let oom_error = oom.pop().await;
        if let Some(err) = oom_error.or(validation_error) {
            return Err(GpuError::from_scope(op, err));
        }
        self.check_alive()?;
        Ok(value)
    }
}

/// The browser's own adapter description: wgpu's `get_info()` is nearly empty on the web.
#[cfg(target_arch = "wasm32")]
mod web {
    use js_sys::{Object, Reflect};
    use wasm_bindgen::{JsCast, JsValue};
    use wasm_bindgen_futures::JsFuture;

    use super::{AdapterReport, GpuError};

    pub struct WebAdapterInfo {
        vendor: String,
        architecture: String,
        description: String,
        is_fallback: bool,
    }

    fn get(obj: &JsValue, key: &str) -> JsValue {
        Reflect::get(obj, &JsValue::from_str(key)).unwrap_or(JsValue::UNDEFINED)
    }

    fn get_string(obj: &JsValue, key: &str) -> String {
        get(obj, key).as_string().unwrap_or_default()
    }

    /// `navigator.gpu.requestAdapter()` and its `info`; `WebGpuUnavailable` when `navigator.gpu`
    /// is missing, `NoAdapter` when the request yields null.
    pub async fn adapter_info() -> Result<WebAdapterInfo, GpuError> {
        let navigator = get(&js_sys::global(), "navigator");
        let gpu = get(&navigator, "gpu");
        if gpu.is_undefined() || gpu.is_null() {
            return Err(GpuError::WebGpuUnavailable);
        }
        let request = get(&gpu, "requestAdapter")
            .dyn_into::<js_sys::Function>()
            .map_err(|_| GpuError::WebGpuUnavailable)?;
        let promise = request
            .call1(&gpu, &Object::new())
            .map_err(|e| GpuError::NoAdapter { detail: format!("{e:?}") })?;
        let adapter = JsFuture::from(js_sys::Promise::from(promise))
            .await
            .map_err(|e| GpuError::NoAdapter { detail: format!("{e:?}") })?;
        if adapter.is_null() || adapter.is_undefined() {
            return Err(GpuError::NoAdapter { detail: "navigator.gpu.requestAdapter() returned null".into() });
        }
        let info = get(&adapter, "info");
        Ok(WebAdapterInfo {
            vendor: get_string(&info, "vendor"),
            architecture: get_string(&info, "architecture"),
            description: {
                let d = get_string(&info, "description");
                if d.is_empty() { get_string(&info, "device") } else { d }
            },
            is_fallback: get(&info, "isFallbackAdapter").as_bool().unwrap_or(false)
                || get(&adapter, "isFallbackAdapter").as_bool().unwrap_or(false),
        })
    }

    impl WebAdapterInfo {
        pub fn fill(self, report: &mut AdapterReport) {
            report.backend = "webgpu".into();
            report.vendor = self.vendor;
            report.architecture = self.architecture;
            report.name = self.description;
            report.device_type = if self.is_fallback { "fallback".into() } else { String::new() };
        }
    }
}
