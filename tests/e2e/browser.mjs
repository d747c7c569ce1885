// Headless Chromium for the end-to-end tests: Debian's chromium driven by playwright-core (no
// browser is ever downloaded), with WebGPU on SwiftShader. Fails loudly when either is missing.
import { before, after } from 'node:test';
import { chromium } from 'playwright-core';
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { startServer } from '../../scripts/serve.mjs';

export const ARTIFACTS = resolve('artifacts/e2e');
export const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
export const CHROMIUM_ARGS = [
  '--headless', '--no-sandbox', '--enable-unsafe-webgpu', '--use-webgpu-adapter=swiftshader',
  '--disable-quic', '--no-first-run', '--disable-background-networking',
  '--disable-component-update', '--disable-sync',
];

export async function openBrowser() {
  if (!existsSync(CHROMIUM)) throw new Error(`no Chromium at ${CHROMIUM}: run scripts/setup.sh`);
  return chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS });
}

/**
 * Serves `root` (the spaces by default) with the real models (scripts/models.sh fetches them
 * once) under /models/ and as a local hub mirror on the same origin; resolves to `{ server, url }`.
 */
export function serveWithModels(root = 'www') {
  const models = execFileSync('bash', ['scripts/models.sh'], { encoding: 'utf8' }).trim();
  return startServer({ root, models, mirror: `${dirname(models)}/mirror` });
}

/**
 * Registers a test file's `before`/`after` hooks: the spaces served with the models
 * (`serveWithModels`) and a browser. Returns `{ browser, url }`, filled in before the tests run.
 */
export function servedSpacesAndBrowser() {
  const spaces = {};
  before(async () => {
    ({ server: spaces.server, url: spaces.url, hub: spaces.hub } = await serveWithModels());
    spaces.browser = await openBrowser();
  });
  after(async () => {
    await spaces.browser?.close();
    spaces.server?.close();
  });
  return spaces;
}
