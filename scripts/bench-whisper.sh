#!/usr/bin/env bash
# Whisper's real-time factor (seconds of audio per second of compute) for whisper-tiny.en on the
# espeak-ng clips of tests/fixtures/whisper/speech: hugrt natively (release CLI, CPU backend and the native GPU:
# lavapipe without one), hugrt in headless Chromium (CPU, WebGPU on SwiftShader), and transformers
# (PyTorch on the CPU, greedy, this machine's cores) when a Python with torch and transformers is
# given as REF_PYTHON (default /root/venv-ref/bin/python, skipped when absent). One JSON line per run.
#   bash scripts/bench-whisper.sh [--quick]     # --quick: the GPUs on the 3 s clip only
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/setup.sh"
bash scripts/models.sh >/dev/null
SPEECH=tests/fixtures/whisper/speech
MODEL="$HOME/.cache/hugrt/models/whisper-tiny.en"
CLIPS=(fox library history)
GPU_CLIPS=("${CLIPS[@]}")
[ "${1:-}" = "--quick" ] && GPU_CLIPS=(fox)
cargo build --release --bin hugrt >&2
BIN="$CARGO_TARGET_DIR/release/hugrt"
for device in cpu gpu; do
  clips=("${CLIPS[@]}"); [ "$device" = gpu ] && clips=("${GPU_CLIPS[@]}")
  for clip in "${clips[@]}"; do
    "$BIN" transcribe --model "$MODEL" --audio "$SPEECH/$clip.wav" --device "$device" --json |
      python3 -c "import json, sys; r = json.load(sys.stdin); t = r['timings']; print(json.dumps({'where': 'native', 'clip': sys.argv[1], 'device': r['device'] + ' (' + r['adapter'] + ')', 'audioS': round(t['audio_s'], 1), 'realTimeFactor': round(t['real_time_factor'], 3), 'encodeMs': round(t['encode_ms']), 'decodeMs': round(t['decode_ms']), 'tokens': t['tokens'], 'text': r['text']}))" "$clip"
  done
done
bash scripts/build-pkg.sh >&2
browser_runs=()
for clip in "${CLIPS[@]}"; do browser_runs+=("cpu:$clip"); done
for clip in "${GPU_CLIPS[@]}"; do browser_runs+=("webgpu:$clip"); done
node scripts/bench-whisper-browser.mjs "${browser_runs[@]}"
REF_PYTHON="${REF_PYTHON:-/root/venv-ref/bin/python}"
if [ -x "$REF_PYTHON" ]; then
  "$REF_PYTHON" - "$MODEL" "$SPEECH" "${CLIPS[@]}" <<'PY' 2>/dev/null
import json, os, sys, time, wave
import numpy as np, torch
from transformers import WhisperFeatureExtractor, WhisperForConditionalGeneration, WhisperTokenizerFast, pipeline
model_dir, speech, clips = sys.argv[1], sys.argv[2], sys.argv[3:]
torch.set_num_threads(os.cpu_count())
model = WhisperForConditionalGeneration.from_pretrained(model_dir, torch_dtype=torch.float32).eval()
asr = pipeline("automatic-speech-recognition", model=model, tokenizer=WhisperTokenizerFast.from_pretrained(model_dir), feature_extractor=WhisperFeatureExtractor.from_pretrained(model_dir), device="cpu")
asr(np.zeros(16000, dtype=np.float32), generate_kwargs={"num_beams": 1})  # warm-up
for clip in clips:
    with wave.open(f"{speech}/{clip}.wav") as w:
        audio = np.frombuffer(w.readframes(w.getnframes()), dtype=np.int16).astype(np.float32) / 32768
    t0 = time.perf_counter()
    r = asr(audio, chunk_length_s=30, generate_kwargs={"num_beams": 1}) if len(audio) > 480000 else asr(audio, generate_kwargs={"num_beams": 1})
    took = time.perf_counter() - t0
    print(json.dumps({"where": "transformers", "clip": clip, "device": f"PyTorch {torch.__version__} CPU, {torch.get_num_threads()} threads", "audioS": round(len(audio) / 16000, 1), "realTimeFactor": round(len(audio) / 16000 / took, 3), "text": r["text"]}))
PY
else
  echo "transformers: skipped (no $REF_PYTHON; set REF_PYTHON to a Python with torch and transformers)" >&2
fi
