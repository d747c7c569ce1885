// The npm package as published: its manifest lists what it ships (README, LICENSE, the engine, the
// Worker), every `exports` target exists, what index.js exports is declared in index.d.ts; and it
// works from a CDN: a page on one origin imports it from another (CORS, as a CDN serves it), loads
// a model from the page's own hub mirror, and runs it on the main thread and in Worker mode (a
// cross-origin Worker script is not allowed: the package starts it through a same-origin blob).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { openBrowser } from './browser.mjs';
import { startServer } from '../../scripts/serve.mjs';

const PKG = resolve('www/pkg');

test('the manifest ships what it declares, and every export is typed', async () => {
  const manifest = JSON.parse(readFileSync(join(PKG, 'package.json'), 'utf8'));
  assert.equal(manifest.license, 'Apache-2.0');
  assert.ok(manifest.repository?.url, 'a repository');
  const [packed] = JSON.parse(execFileSync('npm', ['pack', '--dry-run', '--json', '--ignore-scripts'], { cwd: PKG, encoding: 'utf8' }));
  const shipped = new Set(packed.files.map((f) => f.path));
  for (const f of [...manifest.files, 'package.json']) assert.ok(shipped.has(f), `${f} is in the tarball (${[...shipped]})`);
  assert.ok(readFileSync(join(PKG, 'LICENSE'), 'utf8').includes('Apache License'));
  assert.match(readFileSync(join(PKG, 'README.md'), 'utf8'), /npm install hugrt/);
  const targets = Object.values(manifest.exports).flatMap((t) => (typeof t === 'string' ? [t] : Object.values(t)));
  for (const t of targets) assert.ok(existsSync(join(PKG, t)) && shipped.has(t.replace(/^\.\//, '')), `export target ${t}`);
  // What index.js exports at run time is declared in index.d.ts, and the reverse for values.
  const runtime = Object.keys(await import(join(PKG, 'index.js'))).sort();
  const dts = readFileSync(join(PKG, 'index.d.ts'), 'utf8');
  const declared = [...dts.matchAll(/^export (?:declare )?(?:class|function|const|let) (\w+)/gm)].map((m) => m[1]);
  const declaredValues = [...new Set(declared)].sort();
  assert.deepEqual(runtime.filter((n) => !declaredValues.includes(n)), [], 'exported by index.js, not declared');
  assert.deepEqual(declaredValues.filter((n) => !runtime.includes(n)), [], 'declared, not exported by index.js');
});

test('from a CDN on another origin: main thread and Worker mode', { timeout: 600_000 }, async () => {
  const models = execFileSync('bash', ['scripts/models.sh'], { encoding: 'utf8' }).trim();
  const cdn = await startServer({ root: PKG, cors: true });
  const site = mkdtempSync(join(tmpdir(), 'hugrt-site-'));
  writeFileSync(join(site, 'index.html'), '<!doctype html><meta charset="utf-8"><link rel="icon" href="data:,"><title>a site using hugrt from a CDN</title>');
  const csp = `default-src 'self'; img-src 'self' data:; script-src 'self' ${cdn.url} 'wasm-unsafe-eval'; connect-src 'self' ${cdn.url}; worker-src 'self' blob:`;
  const page = await startServer({ root: site, models, mirror: `${dirname(models)}/mirror`, csp });
  const browser = await openBrowser();
  try {
    const tab = await browser.newPage();
    const problems = [];
    tab.on('pageerror', (err) => problems.push(`pageerror: ${err.message}`));
    tab.on('console', (m) => m.type() === 'error' && problems.push(`console: ${m.text()}`));
    await tab.goto(page.url);
    const out = await tab.evaluate(async (cdnUrl) => {
      const { pipeline } = await import(`${cdnUrl}index.js`);
      const r = { pageOrigin: location.origin };
      for (const worker of [false, true]) {
        const cls = await pipeline('text-classification', 'hugrt-test/tiny-bert-cls', { endpoint: location.origin, device: 'cpu', worker });
        r[worker ? 'worker' : 'main'] = { scores: await cls.classify('a good film', { topK: 3 }), worker: cls.info.worker === true };
        cls.dispose();
      }
      return r;
    }, cdn.url);
    assert.notEqual(new URL(cdn.url).origin, out.pageOrigin, 'two origins');
    assert.equal(out.main.scores.length, 3);
    assert.equal(out.worker.worker, true, 'Worker mode');
    assert.deepEqual(out.worker.scores, out.main.scores, 'the Worker answers as the main thread');
    assert.deepEqual(problems, []);
  } finally {
    await browser.close();
    cdn.server.close();
    page.server.close();
  }
});
