// Every error code the engine can throw to JS has an error class and is in index.d.ts's ErrorCode
// union. The engine's codes are read from the Rust sources the wasm build compiles: `js_error("X",
// …)` calls, `ReadError::new("X", …)`, and the string literals of every `fn code(&self)` (GPU,
// store, hub, model, generation, preprocessing errors); the CLI's own codes are left out. Then
// `toHugrtError` is run on each: the class for the code, `code` its family, `detail` the code.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';

const ROOT = new URL('../../', import.meta.url).pathname;

function rustFiles(dir) {
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) return name === 'cli' ? [] : rustFiles(path);
    return name.endsWith('.rs') && name !== 'main.rs' ? [path] : [];
  });
}

/** The body of each `fn code(&self) -> &'static str { … }` in `src` (braces balanced). */
function codeFnBodies(src) {
  const bodies = [];
  for (const m of src.matchAll(/fn code\(&self\) -> &'static str \{/g)) {
    let depth = 1, i = m.index + m[0].length;
    const start = i;
    while (depth > 0 && i < src.length) {
      if (src[i] === '{') depth++;
      if (src[i] === '}') depth--;
      i++;
    }
    bodies.push(src.slice(start, i - 1));
  }
  return bodies;
}

function engineCodes() {
  const codes = new Set();
  for (const file of rustFiles(join(ROOT, 'src'))) {
    const src = readFileSync(file, 'utf8');
    for (const m of src.matchAll(/js_error\(\s*"([A-Za-z]+)"/g)) codes.add(m[1]);
    for (const m of src.matchAll(/ReadError::new\(\s*"([A-Za-z]+)"/g)) codes.add(m[1]);
    for (const body of codeFnBodies(src)) for (const m of body.matchAll(/"([A-Z][A-Za-z]+)"/g)) codes.add(m[1]);
  }
  return [...codes].sort();
}

test('every engine error code has a JS class and is in the ErrorCode union', async () => {
  const codes = engineCodes();
  // The sources were read: the codes every build has are among them.
  for (const known of ['BadModelFile', 'NetworkError', 'DeviceLost', 'ContextFull', 'BadInput', 'StoreCorrupt', 'QuotaExceeded']) {
    assert.ok(codes.includes(known), `${known} found in the Rust sources (found ${codes})`);
  }
  const dts = readFileSync(join(ROOT, 'js/index.d.ts'), 'utf8');
  const union = dts.match(/export type ErrorFamily =([^;]*);/)[1] + dts.match(/export type ErrorDetail =([^;]*);/)[1];
  const declared = new Set([...union.matchAll(/'([A-Za-z]+)'/g)].map((m) => m[1]));
  const hugrt = await import(join(ROOT, 'www/pkg/index.js'));
  for (const code of codes) {
    assert.ok(declared.has(code), `${code} is in index.d.ts's ErrorCode union`);
    assert.match(dts, new RegExp(`export class \\w+ extends \\w+ \\{ readonly (code|detail): '${code}'`), `index.d.ts declares a class for ${code}`);
    const err = hugrt.toHugrtError({ code, message: `a ${code}` });
    assert.ok(err instanceof hugrt.HugrtError, code);
    assert.notEqual(err.constructor, hugrt.HugrtError, `${code} has its own class, not the bare HugrtError`);
    assert.ok((err.code === code && err.detail === undefined) || err.detail === code, `${code}: code ${err.code}, detail ${err.detail}`);
    assert.equal(err.message, `a ${code}`);
    const exported = Object.values(hugrt).includes(err.constructor);
    assert.ok(exported, `${code}'s class is exported`);
  }
});
