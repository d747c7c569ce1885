#!/usr/bin/env python3
"""Lays out a CTranslate2 Whisper model (faster-whisper's `model.bin`, `config.json`,
`tokenizer.json`) as the hub repository `openai/whisper-*` it was converted from: `config.json`,
`generation_config.json`, `preprocessor_config.json`, `model.safetensors` with transformers' tensor
names, `tokenizer.json` (with the timestamp tokens) and `tokenizer_config.json`.

Standard library only (the main job runs it on a fresh machine, as scripts/models.sh does the
other unpacking). Usage: convert_whisper_ct2.py CT2_DIR OUT_DIR

The CTranslate2 file (format version 6): u32 version, the spec's name, u32 revision, u32 count,
then per variable a name, u8 rank, u32 dims, u8 dtype, u32 byte count and the bytes; then the
aliases. Strings are a u16 length (with the trailing NUL) and the bytes. Weights are copied as they
are (F16 stays F16); the fused projections are cut into the hub's by rows (row-major, so a row
range is a byte range).
"""

import json
import os
import struct
import sys

# CTranslate2's DataType enum, as (safetensors name, bytes per element).
DTYPES = {0: ("F32", 4), 1: ("I8", 1), 2: ("I16", 2), 3: ("I32", 4), 4: ("F16", 2), 5: ("BF16", 2)}


def read_ct2(path):
    with open(path, "rb") as f:
        data = f.read()
    at = 0

    def take(fmt):
        nonlocal at
        size = struct.calcsize(fmt)
        if at + size > len(data):
            raise SystemExit(f"{path}: truncated at byte {at}")
        out = struct.unpack_from(fmt, data, at)
        at += size
        return out

    def string():
        nonlocal at
        (n,) = take("<H")
        s = data[at : at + n].rstrip(b"\0").decode()
        at += n
        return s

    (version,) = take("<I")
    if version != 6:
        raise SystemExit(f"{path}: CTranslate2 format version {version}, this reads 6")
    spec = string()
    take("<I")  # spec revision
    if spec != "WhisperSpec":
        raise SystemExit(f"{path}: a {spec}, not a WhisperSpec")
    (count,) = take("<I")
    variables = {}
    for _ in range(count):
        name = string()
        (rank,) = take("<B")
        dims = list(take("<" + "I" * rank))
        (dtype,) = take("<B")
        (nbytes,) = take("<I")
        if dtype not in DTYPES:
            raise SystemExit(f"{path}: {name} has dtype {dtype}")
        variables[name] = (DTYPES[dtype], dims, data[at : at + nbytes])
        at += nbytes
    return variables


def rows(var, start, stop):
    """Rows start..stop of a matrix or vector variable."""
    (dtype, size), dims, raw = var
    per_row = size
    for d in dims[1:]:
        per_row *= d
    return ((dtype, size), [stop - start] + dims[1:], raw[start * per_row : stop * per_row])


def scalar(var):
    (dtype, _), _, raw = var
    return struct.unpack({"I8": "<b", "I16": "<h", "I32": "<i", "F32": "<f"}[dtype], raw)[0]


def hub_tensors(v):
    """transformers' names for the CTranslate2 variables."""
    out = {}
    d = v["encoder/conv1/weight"][1][0]
    layers = lambda side: sorted({int(k.split("/")[1][6:]) for k in v if k.startswith(side + "/layer_") and k.split("/")[1][6:].isdigit()})

    def norm(dst, src):
        out[dst + ".weight"] = v[src + "/gamma"]
        out[dst + ".bias"] = v[src + "/beta"]

    def linear(dst, src, part=None):
        w, b = v[src + "/weight"], v.get(src + "/bias")
        if part is not None:
            w = rows(w, part * d, (part + 1) * d)
            b = rows(b, part * d, (part + 1) * d) if b else None
        out[dst + ".weight"] = w
        if b is not None:
            out[dst + ".bias"] = b

    def k_without_bias(dst, src, part):
        # Whisper's k_proj has no bias: CTranslate2 stores zeros in its part of the fused bias.
        linear(dst, src, part)
        bias = out.pop(dst + ".bias")
        if any(bias[2]):
            raise SystemExit(f"{src}: a non-zero bias for k_proj")

    for name in ("conv1", "conv2"):
        linear(f"model.encoder.{name}", f"encoder/{name}")
    out["model.encoder.embed_positions.weight"] = v["encoder/position_encodings/encodings"]
    def self_attention_and_ffn(src, dst):
        for part, proj in enumerate(("q", "k", "v")):
            (k_without_bias if proj == "k" else linear)(f"{dst}.self_attn.{proj}_proj", f"{src}/self_attention/linear_0", part)
        linear(f"{dst}.self_attn.out_proj", f"{src}/self_attention/linear_1")
        norm(f"{dst}.self_attn_layer_norm", f"{src}/self_attention/layer_norm")
        linear(f"{dst}.fc1", f"{src}/ffn/linear_0")
        linear(f"{dst}.fc2", f"{src}/ffn/linear_1")
        norm(f"{dst}.final_layer_norm", f"{src}/ffn/layer_norm")

    for i in layers("encoder"):
        self_attention_and_ffn(f"encoder/layer_{i}", f"model.encoder.layers.{i}")
    norm("model.encoder.layer_norm", "encoder/layer_norm")
    out["model.decoder.embed_tokens.weight"] = v["decoder/embeddings/weight"]
    out["model.decoder.embed_positions.weight"] = v["decoder/position_encodings/encodings"]
    for i in layers("decoder"):
        src, dst = f"decoder/layer_{i}", f"model.decoder.layers.{i}"
        self_attention_and_ffn(src, dst)
        linear(f"{dst}.encoder_attn.q_proj", f"{src}/attention/linear_0")
        k_without_bias(f"{dst}.encoder_attn.k_proj", f"{src}/attention/linear_1", 0)
        linear(f"{dst}.encoder_attn.v_proj", f"{src}/attention/linear_1", 1)
        linear(f"{dst}.encoder_attn.out_proj", f"{src}/attention/linear_2")
        norm(f"{dst}.encoder_attn_layer_norm", f"{src}/attention/layer_norm")
    norm("model.decoder.layer_norm", "decoder/layer_norm")
    return out, len(layers("encoder")), len(layers("decoder"))


def write_safetensors(path, tensors):
    header, offset = {}, 0
    for name in sorted(tensors):
        (dtype, _), dims, raw = tensors[name]
        header[name] = {"dtype": dtype, "shape": dims, "data_offsets": [offset, offset + len(raw)]}
        offset += len(raw)
    header["__metadata__"] = {"format": "pt"}
    blob = json.dumps(header, separators=(",", ":")).encode()
    blob += b" " * (-len(blob) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(blob)))
        f.write(blob)
        for name in sorted(tensors):
            f.write(tensors[name][2])


def main(src, dst):
    v = read_ct2(os.path.join(src, "model.bin"))
    ct2 = json.load(open(os.path.join(src, "config.json")))
    tokenizer = json.load(open(os.path.join(src, "tokenizer.json")))
    tensors, enc_layers, dec_layers = hub_tensors(v)
    vocab, d_model = v["decoder/embeddings/weight"][1]
    n_mels = v["encoder/conv1/weight"][1][1]
    ffn = v["encoder/layer_0/ffn/linear_0/weight"][1][0]
    ids = {t["content"]: t["id"] for t in tokenizer["added_tokens"]}
    # The timestamp tokens <|0.00|> … <|30.00|> follow <|notimestamps|> (transformers adds them to
    # the tokenizer as the hub's files have them).
    no_ts = ids["<|notimestamps|>"]
    have = {t["id"] for t in tokenizer["added_tokens"]}
    for i in range(vocab - no_ts - 1):
        if no_ts + 1 + i not in have:
            tokenizer["added_tokens"].append({"id": no_ts + 1 + i, "content": f"<|{i * 0.02:.2f}|>", "single_word": False, "lstrip": False, "rstrip": False, "normalized": False, "special": False})
    multilingual = vocab >= 51865
    eos, sot = ids["<|endoftext|>"], ids["<|startoftranscript|>"]
    lang_to_id = {t: i for t, i in ids.items() if i in set(ct2.get("lang_ids", []))} if multilingual else None
    config = {
        "architectures": ["WhisperForConditionalGeneration"],
        "model_type": "whisper",
        "activation_function": "gelu",
        "d_model": d_model,
        "encoder_layers": enc_layers,
        "decoder_layers": dec_layers,
        "num_hidden_layers": enc_layers,
        "encoder_attention_heads": scalar(v["encoder/num_heads"]),
        "decoder_attention_heads": scalar(v["decoder/num_heads"]),
        "encoder_ffn_dim": ffn,
        "decoder_ffn_dim": ffn,
        "num_mel_bins": n_mels,
        "vocab_size": vocab,
        "max_source_positions": v["encoder/position_encodings/encodings"][1][0],
        "max_target_positions": v["decoder/position_encodings/encodings"][1][0],
        "scale_embedding": False,
        "tie_word_embeddings": True,
        "bos_token_id": sot if not multilingual else eos,
        "eos_token_id": eos,
        "pad_token_id": eos,
        "decoder_start_token_id": sot,
        "begin_suppress_tokens": ct2["suppress_ids_begin"],
        "suppress_tokens": ct2["suppress_ids"],
        "is_encoder_decoder": True,
        "use_cache": True,
        "torch_dtype": "float16",
    }
    generation = {
        "alignment_heads": ct2.get("alignment_heads", []),
        "begin_suppress_tokens": ct2["suppress_ids_begin"],
        "suppress_tokens": ct2["suppress_ids"],
        "bos_token_id": config["bos_token_id"],
        "decoder_start_token_id": sot,
        "eos_token_id": eos,
        "pad_token_id": eos,
        "is_multilingual": multilingual,
        "max_initial_timestamp_index": 50,
        "max_length": config["max_target_positions"],
        "no_timestamps_token_id": no_ts,
        "prev_sot_token_id": ids["<|startofprev|>"],
        "return_timestamps": False,
    }
    if multilingual:
        generation["lang_to_id"] = lang_to_id
        generation["task_to_id"] = {"transcribe": ids["<|transcribe|>"], "translate": ids["<|translate|>"]}
    preprocessor = {
        "chunk_length": 30,
        "feature_extractor_type": "WhisperFeatureExtractor",
        "feature_size": n_mels,
        "hop_length": 160,
        "n_fft": 400,
        "n_samples": 480000,
        "nb_max_frames": 3000,
        "padding_side": "right",
        "padding_value": 0.0,
        "processor_class": "WhisperProcessor",
        "return_attention_mask": False,
        "sampling_rate": 16000,
    }
    tokenizer_config = {
        "tokenizer_class": "WhisperTokenizer",
        "bos_token": "<|endoftext|>",
        "eos_token": "<|endoftext|>",
        "pad_token": "<|endoftext|>",
        "unk_token": "<|endoftext|>",
        "model_max_length": 1024,
        "errors": "replace",
    }
    os.makedirs(dst, exist_ok=True)
    write_safetensors(os.path.join(dst, "model.safetensors"), tensors)
    for name, value in (("config.json", config), ("generation_config.json", generation), ("preprocessor_config.json", preprocessor), ("tokenizer.json", tokenizer), ("tokenizer_config.json", tokenizer_config)):
        with open(os.path.join(dst, name), "w") as f:
            json.dump(value, f, indent=2 if name != "tokenizer.json" else None, ensure_ascii=False)
            f.write("\n")
    print(f"{dst}: {len(tensors)} tensors, {enc_layers}+{dec_layers} layers, d_model {d_model}, vocab {vocab}", file=sys.stderr)


if __name__ == "__main__":
    if len(sys.argv) != 3:
        raise SystemExit(__doc__)
    main(sys.argv[1], sys.argv[2])
