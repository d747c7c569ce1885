#!/usr/bin/env bash
# Speaks the clips of tests/fixtures/whisper/speech.json with espeak-ng and resamples them with sox
# to 16 kHz mono 16-bit WAV files in ~/.cache/hugrt/speech/NAME.wav (once; a clip whose file
# exists is kept). Prints the folder. The Whisper tests compare these files' SHA-256 with the ones
# the reference was made from (scripts/fixtures/make_whisper_speech_reference.py).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OUT="${HUGRT_CACHE:-$HOME/.cache/hugrt}/speech"
mkdir -p "$OUT"
python3 - "$ROOT/tests/fixtures/whisper/speech.json" "$OUT" <<'PY'
import json, os, subprocess, sys
spec = json.load(open(sys.argv[1]))
for name, text in spec["clips"].items():
    out = os.path.join(sys.argv[2], name + ".wav")
    if os.path.exists(out):
        continue
    raw = out + ".espeak.wav"
    subprocess.run(["espeak-ng", "-v", spec["voice"], "-w", raw, text], check=True)
    subprocess.run(["sox", raw, "-r", "16000", "-c", "1", "-b", "16", out + ".part.wav"], check=True)
    os.remove(raw)
    os.replace(out + ".part.wav", out)
PY
echo "$OUT"
