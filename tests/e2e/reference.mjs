// llama.cpp's greedy reference for the real SmolLM2-135M-Instruct Q4_1 (tests/fixtures/smollm2/,
// made by scripts/fixtures/make_llamacpp_reference.py and make_llamacpp_chat_reference.py), and
// the rule tests/models.rs applies to it: hugrt's greedy ids are compared with llama.cpp's only
// before llama.cpp's first near-tie (a step whose top-2 logit margin is below NEAR_TIE nats,
// where llama.cpp's 8-bit activations and exact f32 math may pick either token).
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';

export const NEAR_TIE = 0.3;
const load = (name) => JSON.parse(readFileSync(new URL(`../fixtures/smollm2/${name}`, import.meta.url), 'utf8'));
const greedy = load('llamacpp_greedy.json');
const chat = load('llamacpp_chat.json');
assert.equal(chat.sha256, greedy.sha256, 'both references come from the same GGUF');

// { promptIds, ids, margins, endId, clear, complete }: clear is the number of steps before the
// first near-tie; complete says the answer ended (endId) and every step, the end's too, is clear.
function reference(r) {
  const near = r.margins.findIndex((m) => m < NEAR_TIE);
  const clear = near < 0 ? r.margins.length : near;
  const endId = r.end_id ?? null;
  return { promptIds: r.prompt_ids, ids: r.ids, margins: r.margins, endId, clear, complete: endId !== null && clear > r.ids.length };
}

/** llama.cpp's greedy continuation of a plain prompt (no template, no BOS). */
export function continuation(prompt) {
  const r = greedy.prompts.find((p) => p.prompt === prompt);
  assert.ok(r, `no llama.cpp reference for ${JSON.stringify(prompt)}`);
  return reference(r);
}

/** llama.cpp's greedy answer to one user message through the GGUF's chat template. */
export function chatAnswer(content) {
  const r = chat.chat.find((c) => c.messages.length === 1 && c.messages[0].role === 'user' && c.messages[0].content === content);
  assert.ok(r, `no llama.cpp chat reference for ${JSON.stringify(content)}`);
  return reference(r);
}

/** The text of reference ids, from llama.cpp's pieces. */
export function text(ids) {
  return ids.map((id) => {
    assert.ok(Object.hasOwn(chat.pieces, String(id)), `no llama.cpp piece for id ${id}`);
    return chat.pieces[id];
  }).join('');
}
