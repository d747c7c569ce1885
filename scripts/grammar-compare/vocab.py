"""Writes SmolLM2's token bytes (its GGUF vocabulary, byte-level BPE decoded with GPT-2's table) as
JSON hex strings, for the grammar engine comparison (main.rs). Usage: python vocab.py MODEL.gguf OUT.json"""
import json
import sys

from gguf import GGUFReader


def byte_table():
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(0xA1, 0xAC + 1)) + list(range(0xAE, 0xFF + 1))
    chars, n = {}, 0
    for b in range(256):
        if b in printable:
            chars[chr(b)] = b
        else:
            chars[chr(256 + n)] = b
            n += 1
    return chars


reader = GGUFReader(sys.argv[1])
field = reader.fields["tokenizer.ggml.tokens"]
types = reader.fields["tokenizer.ggml.token_type"]
table = byte_table()
out = []
for i, idx in enumerate(field.data):
    piece = bytes(field.parts[idx]).decode("utf-8")
    kind = int(types.parts[types.data[i]][0])
    if kind == 3:  # control: never text
        out.append("")
        continue
    out.append(bytes(table[c] for c in piece).hex() if all(c in table for c in piece) else "")
eos = int(reader.fields["tokenizer.ggml.eos_token_id"].parts[-1][0])
json.dump({"eos": eos, "tokens": out}, open(sys.argv[2], "w"))
