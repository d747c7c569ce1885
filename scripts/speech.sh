#!/usr/bin/env bash
# Speaks the clips of tests/fixtures/whisper/speech.json with espeak-ng and resamples them with sox
# to 16 kHz mono 16-bit WAV files in tests/fixtures/whisper/speech/NAME.wav, where they are
# committed: another espeak-ng or sox speaks other bytes (Debian 12's deb12u2 espeak-ng does), so
# the tests read the committed files, never a fresh synthesis. Run only to remake a clip: delete
# its file, run this, then rerun scripts/fixtures/make_whisper_speech_reference.py (the reference
# records each file's SHA-256, which the tests check). Prints the folder.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OUT="$ROOT/tests/fixtures/whisper/speech"
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
