// End to end, the spaces as deployed to a static host (scripts/spaces.mjs build): the policy and
// the endpoint come from the build, the page's origin serves only files (no mirror, no headers of
// ours), and the models come from the hub emulator (scripts/hub-server.mjs) on a second origin,
// whose LFS files are redirected to its CDN on a third. The chat space loads SmolLM2 through the
// redirect and answers with llama.cpp's tokens; a build whose policy leaves out the CDN is refused
// at the redirect by the browser's CSP, a typed NetworkError.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { openBrowser, ARTIFACTS } from './browser.mjs';
import { chatAnswer } from './reference.mjs';
import { startHub } from '../../scripts/hub-server.mjs';
import { startServer } from '../../scripts/serve.mjs';
import { buildSpaces, spacesCsp } from '../../scripts/spaces.mjs';

const QUESTION = 'What is the capital of France? Answer in one sentence.';
const REF = chatAnswer(QUESTION);
const MAX = 4;
let hub, browser, dir;

before(async () => {
  const models = execFileSync('bash', ['scripts/models.sh'], { encoding: 'utf8' }).trim();
  hub = await startHub({ mirror: `${dirname(models)}/mirror`, bigMb: 1 });
  browser = await openBrowser();
  dir = await mkdtemp(join(tmpdir(), 'hugrt-deploy-'));
});

after(async () => {
  await browser?.close();
  hub?.close();
  if (dir) await rm(dir, { recursive: true, force: true });
});

/** Builds the spaces with `connect` allowed, serves the build as a static host does, runs the chat space. */
async function deployAndChat(name, connect) {
  const { out } = await buildSpaces({ out: join(dir, name), endpoint: hub.hub, connect });
  const site = await startServer({ root: out, csp: null });
  const context = await browser.newContext();
  await context.addInitScript(() => {
    window.violations = [];
    document.addEventListener('securitypolicyviolation', (e) => window.violations.push({ blocked: e.blockedURI, directive: e.violatedDirective }));
  });
  const page = await context.newPage();
  const problems = [];
  page.on('pageerror', (err) => problems.push(`pageerror: ${err.message}`));
  try {
    await page.goto(`${site.url}chat.html?autorun&max=${MAX}&say=${encodeURIComponent(QUESTION)}`);
    await page.waitForFunction(() => ['done', 'error'].includes(document.body.dataset.status), null, { timeout: 400_000 });
    await page.screenshot({ path: `${ARTIFACTS}/deploy-${name}.png`, fullPage: true });
    const r = await page.evaluate(() => ({
      status: document.body.dataset.status, text: document.getElementById('status').textContent, ids: window.chatResult?.ids,
      csp: document.querySelector('meta[http-equiv="Content-Security-Policy"]')?.content,
      endpoint: document.querySelector('meta[name="hugrt-endpoint"]')?.content, violations: window.violations,
    }));
    return { ...r, problems, site: site.hub, origin: new URL(site.url).origin };
  } finally {
    await context.close();
    site.server.close();
  }
}

test('the deployed chat space loads from the hub on another origin through its CDN and answers', { timeout: 600_000 }, async () => {
  const before = structuredClone(hub.stats);
  const r = await deployAndChat('ok', [hub.hub, hub.cdn]);
  console.log(`status: ${r.text}`);
  assert.equal(r.status, 'done', r.text);
  assert.deepEqual(r.ids, REF.ids.slice(0, MAX), "llama.cpp's greedy tokens");
  assert.equal(r.csp, spacesCsp({ connect: [hub.hub, hub.cdn], header: false }), 'the policy from scripts/spaces.mjs');
  assert.equal(r.endpoint, hub.hub);
  assert.deepEqual(r.violations, []);
  assert.deepEqual(r.problems, []);
  assert.ok(hub.stats.cdn.requests > before.cdn.requests, 'the GGUF came from the CDN after the redirect');
  assert.equal(hub.stats.cdn.authorization, before.cdn.authorization);
  assert.ok(hub.stats.hub.origins.includes(r.origin), 'the hub saw the page origin (a cross-origin page)');
  assert.deepEqual(r.site.requests, [], 'the static host was asked for no hub path');
});

test("a build whose policy leaves out the CDN is refused at the redirect: a typed NetworkError, the policy's report", { timeout: 300_000 }, async () => {
  const cdnBefore = hub.stats.cdn.requests;
  const r = await deployAndChat('no-cdn', [hub.hub]);
  console.log(`status: ${r.text}`);
  assert.equal(r.status, 'error');
  assert.match(r.text, /^NetworkError: /);
  // The report names the URL as asked (the hub's resolve URL), not where it was redirected.
  assert.ok(r.violations.length > 0 && r.violations.every((v) => v.blocked.startsWith(`${hub.hub}/`) && v.blocked.includes('/resolve/') && v.directive === 'connect-src'), JSON.stringify(r.violations));
  assert.equal(hub.stats.cdn.requests, cdnBefore, 'the browser never reached the CDN');
});
