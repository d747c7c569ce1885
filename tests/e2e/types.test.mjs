// The package's TypeScript declarations: a consumer (tests/types/consumer.ts) type-checks with
// `tsc --strict`, misuse is rejected (its @ts-expect-error lines must be errors), and the public
// declarations never say `any`.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';

test('the declarations type-check a strict consumer and reject misuse', () => {
  const r = spawnSync('node_modules/.bin/tsc', ['-p', 'tests/types/tsconfig.json'], { encoding: 'utf8' });
  assert.equal(r.status, 0, r.stdout + r.stderr);
});

test('the public declarations have no any', () => {
  const dts = readFileSync('js/index.d.ts', 'utf8').replace(/\/\/.*$/gm, '').replace(/\/\*[\s\S]*?\*\//g, '');
  assert.doesNotMatch(dts, /\bany\b/);
});
