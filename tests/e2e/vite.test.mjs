// End to end: the npm package as a consumer gets it. `npm pack` of www/pkg is installed into a
// small app (tests/e2e/vite-app), bundled by Vite, served with the local hub mirror and opened in
// Chromium: it loads SmolLM2 through pipeline() (main thread, then in a Worker) and generates
// llama.cpp's greedy tokens (tests/e2e/reference.mjs). (The spaces in www/ are the plain static-page case.)
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { cpSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { openBrowser, ARTIFACTS, serveWithModels } from './browser.mjs';
import { continuation, text } from './reference.mjs';

// The app generates 2 tokens after "The capital of France is": llama.cpp's greedy ones, which
// must come before its first near-tie.
const REF = continuation('The capital of France is');
assert.ok(REF.clear >= 4, `llama.cpp has a near-tie at step ${REF.clear}`);

let server, browser, url, app;

before(async () => {
  app = mkdtempSync(join(tmpdir(), 'hugrt-vite-'));
  cpSync('tests/e2e/vite-app', app, { recursive: true });
  writeFileSync(join(app, 'package.json'), JSON.stringify({ name: 'vite-app', private: true, type: 'module' }));
  execFileSync('npm', ['pack', '--pack-destination', app], { cwd: 'www/pkg', stdio: 'pipe' });
  const tarball = readdirSync(app).find((f) => f.endsWith('.tgz'));
  execFileSync('npm', ['install', '--offline', '--ignore-scripts', '--no-audit', '--no-fund', `./${tarball}`], { cwd: app, stdio: 'pipe' });
  execFileSync(resolve('node_modules/.bin/vite'), ['build', '--logLevel', 'error'], { cwd: app, stdio: 'pipe' });
  ({ server, url } = await serveWithModels(join(app, 'dist')));
  browser = await openBrowser();
});

after(async () => {
  await browser?.close();
  server?.close();
  if (app) rmSync(app, { recursive: true, force: true });
});

for (const mode of ['main thread', 'worker']) {
  test(`a Vite-built app generates with the package (${mode})`, { timeout: 300_000 }, async () => {
    const page = await browser.newPage();
    const problems = [];
    page.on('pageerror', (err) => problems.push(`pageerror: ${err.message}`));
    await page.goto(`${url}${mode === 'worker' ? '?worker' : ''}`);
    await page.waitForFunction(() => document.body.dataset.status === 'done', null, { timeout: 290_000 });
    const result = await page.evaluate(() => window.result);
    await page.screenshot({ path: `${ARTIFACTS}/vite-${mode === 'worker' ? 'worker' : 'main'}.png` });
    assert.equal(result.error, undefined);
    assert.deepEqual(result.ids, REF.ids.slice(0, 2));
    assert.equal(result.text, text(REF.ids.slice(0, 2)));
    assert.equal(result.worker, mode === 'worker');
    assert.equal(result.capabilities.webgpu, true);
    assert.equal(result.errorClasses, true);
    assert.deepEqual(problems, []);
    await page.close();
  });
}
