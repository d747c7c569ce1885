//! The wasm-bindgen surface. Errors cross as JS `Error`s whose `name` and `code` are stable
//! (`WebGpuUnavailable`, `DeviceLost`, …) so that callers can branch on them.

mod embedding_model;
mod encoder_model;
mod http;
mod speech_model;
mod text_model;

use std::rc::Rc;

use wasm_bindgen::prelude::*;

use crate::formats::{DType, TensorTable};
use crate::models::{ReadError, read_table_ranged};
use crate::store::idb::IdbStore;
use crate::store::{StoredFile, file_key};
use crate::gpu::{GpuContext, GpuError};

#[wasm_bindgen(start)]
fn start() {
    console_error_panic_hook::set_once();
}

/// Test hook: destroys the GPU device in use at the `n`-th compute dispatch from now, mid-pass
/// (0 disarms); the next call of any pipeline on it meets `DeviceLost`. Not for production use.
#[wasm_bindgen(js_name = testLoseDeviceAfter)]
pub fn test_lose_device_after(dispatches: u32) {
    crate::gpu::context::lose_device_after(u64::from(dispatches));
}

/// Test switch: while on, every GPU kernel is dispatched over half its grid, a GPU that computes
/// garbage without an error (a text model's self-check then fails: 'auto' loads on the CPU,
/// 'webgpu' refuses). Not for production use.
#[wasm_bindgen(js_name = testBreakKernels)]
pub fn test_break_kernels(on: bool) {
    crate::gpu::context::break_kernels(on);
}

/// Benchmark switch: while on, every GPU dispatch runs on its own and its time is added to its
/// kernel's total (`gpuProfile`). It serialises the GPU: for finding where a pass spends its time.
#[wasm_bindgen(js_name = profileGpu)]
pub fn profile_gpu(on: bool) {
    crate::gpu::context::profile(on);
}

/// The totals since `profileGpu(true)` or the last call: `{ [entryPoint]: { dispatches, ms } }`.
#[wasm_bindgen(js_name = gpuProfile)]
pub fn gpu_profile() -> Result<JsValue, JsValue> {
    to_js(&crate::gpu::context::take_profile())
}

/// A JS `Error` with `name` = `code` = the error's stable code.
pub(crate) fn js_error(code: &str, message: &str) -> JsValue {
    let err = js_sys::Error::new(message);
    err.set_name(code);
    let _ = js_sys::Reflect::set(&err, &JsValue::from_str("code"), &JsValue::from_str(code));
    err.into()
}

/// A model error as the JS error its code says (`BadModelFile` for what is wrong in the files).
pub(crate) fn model_error(e: crate::models::ModelError) -> JsValue {
    match e {
        crate::models::ModelError::Gpu(g) => g.into(),
        other => js_error(other.code(), &other.to_string()),
    }
}

impl From<GpuError> for JsValue {
    fn from(e: GpuError) -> Self {
        js_error(e.code(), &e.to_string())
    }
}

/// The GPU for `device` ("webgpu", "cpu" or "auto": WebGPU when a hardware adapter and device
/// can be had, else the CPU — a software adapter counts as none for "auto"), and why there is
/// none when "auto" falls back. The GPU's matrix products use f16 where it has shader-f16
/// (`preferred_precision`; `TextModel.setPrecision` opts out).
pub(crate) async fn choose_device(device: &str) -> Result<(Option<crate::gpu::GpuContext>, Option<String>), JsValue> {
    let runtime = |ctx: GpuContext| -> Result<GpuContext, GpuError> {
        ctx.set_precision(ctx.preferred_precision())?;
        Ok(ctx)
    };
    match device {
        "webgpu" => Ok((Some(runtime(crate::gpu::GpuContext::new().await?)?), None)),
        "cpu" => Ok((None, None)),
        "auto" => match crate::gpu::GpuContext::new().await.and_then(runtime) {
            Ok(ctx) if ctx.report.is_software() => Ok((None, Some(software_adapter(&ctx.report)))),
            Ok(ctx) => Ok((Some(ctx), None)),
            Err(e) if e.code() == "WebGpuUnavailable" => Ok((None, Some(e.to_string()))),
            Err(e) => Err(e.into()),
        },
        other => Err(js_error("Usage", &format!("device {other:?} (auto, webgpu or cpu)"))),
    }
}


/// Why "auto" leaves a software adapter for the CPU backend.
pub(crate) fn software_adapter(report: &crate::gpu::context::AdapterReport) -> String {
    format!("the WebGPU adapter ({}) emulates a GPU on the CPU: the CPU backend is faster; device: 'webgpu' uses it anyway", report.label())
}

/// The tensor table of `path` in the store, and the file to read tensors from.
pub(crate) async fn stored_table<'a>(store: &'a IdbStore, repo: &str, commit: &str, path: &str) -> Result<(TensorTable, StoredFile<'a, IdbStore>), JsValue> {
    let store_error = |e: crate::store::StoreError| js_error(e.code(), &e.to_string());
    let mut file = StoredFile::open(store, &file_key(repo, commit, path)).await.map_err(store_error)?;
    let size = file.size();
    let prefix = file.read(0..size.min(1 << 20)).await.map_err(store_error)?;
    let table = read_table_ranged(&mut file, prefix, size, path).await.map_err(|e| js_error("BadModelFile", &e.to_string()))?;
    Ok((table, file))
}

/// The weights of a hub checkpoint in the store, read as one file: its `model.safetensors`, or
/// the shards its `model.safetensors.index.json` maps (each shard's table checked against the
/// index, then joined).
pub(crate) async fn stored_weights<'a>(store: &'a IdbStore, repo: &str, commit: &str) -> Result<(TensorTable, crate::models::Shards<StoredFile<'a, IdbStore>>), JsValue> {
    let read_error = |e: ReadError| js_error(e.code, &e.message);
    let Some(index) = stored_small_file(store, repo, commit, "model.safetensors.index.json").await.map_err(read_error)? else {
        let (table, file) = stored_table(store, repo, commit, "model.safetensors").await?;
        let len = file.size();
        return Ok((table, crate::models::Shards::new([(file, len)])));
    };
    let bad = |m: String| js_error("BadModelFile", &format!("{repo}/model.safetensors.index.json: {m}"));
    let index = crate::formats::index::ShardIndex::parse(&String::from_utf8_lossy(&index)).map_err(|e| bad(e.to_string()))?;
    let (mut tables, mut files) = (Vec::new(), Vec::new());
    for name in &index.shards {
        let (table, file) = stored_table(store, repo, commit, name).await?;
        let len = file.size();
        tables.push((name.clone(), table, len));
        files.push((file, len));
    }
    let table = index.join(tables).map_err(|e| bad(e.to_string()))?;
    Ok((table, crate::models::Shards::new(files)))
}

/// A small file of the store, whole.
pub(crate) async fn stored_bytes(store: &IdbStore, repo: &str, commit: &str, path: &str) -> Result<Vec<u8>, JsValue> {
    match stored_small_file(store, repo, commit, path).await {
        Ok(Some(bytes)) => Ok(bytes),
        Ok(None) => Err(js_error("NotFound", &format!("{repo}/{path} is not in the store"))),
        Err(e) => Err(js_error(e.code, &e.message)),
    }
}

/// A small file of a repo in the store (a config, a tokenizer, a sentence-transformers module's
/// file): `None` when it was not downloaded (the repo has none); a failing store or a file too big
/// for one read is an error, not a missing file.
pub(crate) async fn stored_small_file(store: &IdbStore, repo: &str, commit: &str, path: &str) -> Result<Option<Vec<u8>>, ReadError> {
    let store_error = |e: crate::store::StoreError| ReadError::new(e.code(), e.to_string());
    let mut file = match StoredFile::open(store, &file_key(repo, commit, path)).await {
        Ok(f) => f,
        Err(crate::store::StoreError::NotFound { .. }) => return Ok(None),
        Err(e) => return Err(store_error(e)),
    };
    if file.size() > 64 << 20 {
        return Err(ReadError::new("BadModelFile", format!("{path} is {} bytes; a config, tokenizer or module file is expected to be small", file.size())));
    }
    file.read(0..file.size()).await.map(Some).map_err(store_error)
}

pub(crate) fn to_js<T: serde::Serialize + ?Sized>(value: &T) -> Result<JsValue, JsValue> {
    value
        .serialize(&serde_wasm_bindgen::Serializer::json_compatible())
        .map_err(|e| js_error("Internal", &e.to_string()))
}

/// A WebGPU device with its capability report.
#[wasm_bindgen]
pub struct Gpu {
    ctx: Rc<GpuContext>,
}

#[wasm_bindgen]
impl Gpu {
    /// Requests an adapter and a device; rejects with `WebGpuUnavailable` when there is none.
    pub async fn create() -> Result<Gpu, JsValue> {
        Ok(Gpu { ctx: Rc::new(GpuContext::new().await?) })
    }

    /// `{ backend, name, vendor, architecture, deviceType, shaderF16, subgroups, timestampQuery,
    /// limits: { maxStorageBufferBindingSize, … } }`
    pub fn report(&self) -> Result<JsValue, JsValue> {
        to_js(&self.ctx.report)
    }

    /// Why `device: 'auto'` would not use this adapter (a software one), or undefined.
    #[wasm_bindgen(js_name = autoFallbackReason)]
    pub fn auto_fallback_reason(&self) -> Option<String> {
        self.ctx.report.is_software().then(|| software_adapter(&self.ctx.report))
    }

    /// Runs a seeded random `rows × cols` matvec with weights of `dtype` ("F32", "Q4_K", …) and
    /// compares it with the CPU reference: resolves to `{ len, passed, maxAbsErr, worstRatio, …,
    /// precision, maxRelErr }` (`precision`: the path taken, "f32" or "f16").
    #[wasm_bindgen(js_name = matvecCheck)]
    pub fn matvec_check(&self, dtype: String, rows: u32, cols: u32, seed: u32) -> js_sys::Promise {
        let ctx = self.ctx.clone();
        wasm_bindgen_futures::future_to_promise(async move {
            let dtype = DType::from_name(&dtype).ok_or_else(|| js_error("Unsupported", &format!("unknown dtype {dtype:?}")))?;
            let report =
                crate::gpu::ops::matvec::check_against_reference(&ctx, dtype, rows as usize, cols as usize, 1, u64::from(seed), None).await?;
            to_js(&report)
        })
    }

    /// Kernel micro-benchmarks on this device: resolves to `{ rows: [{ kernel, shape, ms, gbPerS,
    /// gflopPerS, ofCopyBandwidth }], table }`.
    #[wasm_bindgen(js_name = benchKernels)]
    pub fn bench_kernels(&self, quick: bool) -> js_sys::Promise {
        let ctx = self.ctx.clone();
        wasm_bindgen_futures::future_to_promise(async move {
            let rows = crate::gpu::bench::bench_kernels(&ctx, quick).await?;
            let table = crate::gpu::bench::table(&rows);
            to_js(&serde_json::json!({ "rows": rows, "table": table }))
        })
    }
}
