//! The CPU fallback's benchmark in the browser (not part of the package's API): a wasm module
//! exporting `bench(bytes, promptTokens, decodeTokens)`, which loads a GGUF Llama held in memory
//! on the CPU backend and times load, prefill and decode on the page's thread (one thread: wasm32
//! without threads). Built and driven by scripts/bench-cpu-browser.sh (www/cpu-bench.html).
//! Natively it is an empty library: `hugrt bench model --device cpu` is the native benchmark.

#[cfg(target_arch = "wasm32")]
mod web {
    use hugrt::cpu::backend::Cpu;
    use hugrt::models::Decoder;
    use wasm_bindgen::prelude::*;

    fn now_ms() -> f64 {
        js_sys::Reflect::get(&js_sys::global(), &"performance".into())
            .ok()
            .and_then(|p| p.dyn_into::<web_sys::Performance>().ok())
            .map_or(0.0, |p| p.now())
    }

    /// JSON `{loadS, prefillTokPerS, decodeTokPerS, weightBytesPerToken, simd128}`.
    #[wasm_bindgen]
    pub async fn bench(bytes: Vec<u8>, prompt_tokens: u32, decode_tokens: u32) -> Result<String, JsValue> {
        let err = |e: String| JsValue::from(js_sys::Error::new(&e));
        let t0 = now_ms();
        let table = hugrt::formats::read_table(&bytes, bytes.len() as u64, "model.gguf").map_err(|e| err(e.to_string()))?;
        let context = prompt_tokens + decode_tokens + 1;
        let mut model = Decoder::load(Cpu, None, &table, Some(context), &mut bytes.as_slice()).await.map_err(|e| err(e.to_string()))?;
        drop(bytes);
        let load_s = (now_ms() - t0) / 1e3;
        let vocab = model.vocab();
        let prompt: Vec<u32> = (0..prompt_tokens).map(|i| (i * 7919 + 13) % vocab).collect();
        let t1 = now_ms();
        let mut next = model.next_token(&prompt).await.map_err(|e| err(e.to_string()))?;
        let prefill_s = (now_ms() - t1) / 1e3;
        let t2 = now_ms();
        for _ in 0..decode_tokens {
            next = model.next_token(&[next]).await.map_err(|e| err(e.to_string()))?;
        }
        let decode_s = (now_ms() - t2) / 1e3 / f64::from(decode_tokens.max(1));
        Ok(serde_json::json!({
            "loadS": load_s, "promptTokens": prompt_tokens, "decodeTokens": decode_tokens,
            "prefillTokPerS": f64::from(prompt_tokens) / prefill_s, "decodeTokPerS": 1.0 / decode_s,
            "weightBytesPerToken": model.info()["weightBytes"], "simd128": cfg!(target_feature = "simd128"),
        })
        .to_string())
    }

    /// JSON `{tokens, ms, gflopPerS}`: candle's f32 matmul on the dense layers' shapes of
    /// all-MiniLM-L6-v2 (6 layers of (tokens × 384)·(384 × 1152), ·(384 × 384), ·(384 × 1536),
    /// (tokens × 1536)·(1536 × 384)) on random operands, `reps` times: how fast the CPU
    /// encoder's matmuls are in this browser.
    #[wasm_bindgen(js_name = benchMatmul)]
    pub fn bench_matmul(tokens: usize, reps: u32) -> Result<String, JsValue> {
        let (h, i) = (384, 1536);
        let shapes: Vec<(usize, usize, usize)> = (0..6).flat_map(|_| [(tokens, h, 3 * h), (tokens, h, h), (tokens, h, i), (tokens, i, h)]).collect();
        let (ms, gflops) = hugrt::cpu::time_matmuls(&shapes, reps).map_err(|e| JsValue::from(js_sys::Error::new(&e.to_string())))?;
        Ok(serde_json::json!({ "tokens": tokens, "ms": ms, "gflopPerS": gflops }).to_string())
    }
}
