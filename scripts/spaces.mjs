// The spaces' site settings in one place: the Content-Security-Policy every page gets, and the
// hub endpoint the pages load models from.
//
// - `scripts/serve.mjs` (the main job, the tests) sends `spacesCsp()` as a header; the pages load
//   from the local hub mirror on their own origin (no `hugrt-endpoint` meta: `location.origin`).
// - `buildSpaces()` writes a static copy of www/ for any static host (GitHub Pages, a bucket, a
//   Space): each page gets the policy and the endpoint as <meta> tags, since a static host sends no
//   headers of ours. Its `connect` lists the hub's origin and the CDN origins its downloads are
//   redirected to (a CSP checks every redirect hop).
//
//   node scripts/spaces.mjs build --out dist/spaces [--endpoint https://huggingface.co]
//                                 [--connect "https://huggingface.co https://*.hf.co ..."]

import { cp, readdir, readFile, writeFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

/** The public hub, and where it redirects downloads: cdn-lfs*.huggingface.co, cdn-lfs*.hf.co,
 *  cas-bridge.xethub.hf.co, us.aws.cdn.hf.co (a `*.` source matches any depth of subdomain). */
export const HUGGINGFACE = {
  endpoint: 'https://huggingface.co',
  connect: ['https://huggingface.co', 'https://*.huggingface.co', 'https://*.hf.co'],
};

/**
 * The policy of every space: scripts and wasm from the site only, no inline script, models from
 * the site and `connect` (the hub and its CDN), images and media from the site, `data:` and the
 * `blob:` URLs of files the user picks. `header`: also the directives a <meta> cannot carry.
 */
export function spacesCsp({ connect = [], header = true } = {}) {
  return [
    "default-src 'self'",
    "script-src 'self' 'wasm-unsafe-eval'",
    "style-src 'self'",
    "img-src 'self' data: blob:",
    "media-src 'self' blob:",
    ['connect-src', "'self'", ...connect].join(' '),
    "worker-src 'self'",
    "object-src 'none'",
    "base-uri 'none'",
    ...(header ? ["frame-ancestors 'none'"] : []),
  ].join('; ');
}

const attr = (v) => v.replace(/&/g, '&amp;').replace(/"/g, '&quot;');

/**
 * Writes www/ (`root`, with its built package) to `out` for a static host: every page's <head>
 * gets the policy (`connect` allowed) and `<meta name="hugrt-endpoint">` (read by www/spaces.js).
 */
export async function buildSpaces({ out, endpoint = HUGGINGFACE.endpoint, connect = HUGGINGFACE.connect, root = 'www' }) {
  await rm(out, { recursive: true, force: true });
  await cp(root, out, { recursive: true, dereference: true });
  const tags = `<meta charset="utf-8">\n  <meta http-equiv="Content-Security-Policy" content="${attr(spacesCsp({ connect, header: false }))}">\n` +
    `  <meta name="hugrt-endpoint" content="${attr(endpoint)}">`;
  const pages = (await readdir(out)).filter((f) => f.endsWith('.html'));
  for (const page of pages) {
    const file = join(out, page);
    const html = await readFile(file, 'utf8');
    if (!html.includes('<meta charset="utf-8">')) throw new Error(`${page}: no <meta charset="utf-8"> to put the policy after`);
    await writeFile(file, html.replace('<meta charset="utf-8">', tags));
  }
  return { out, pages };
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const arg = (name, fallback) => {
    const i = process.argv.indexOf(`--${name}`);
    return i > 0 ? process.argv[i + 1] : fallback;
  };
  if (process.argv[2] !== 'build' || !arg('out')) {
    console.error('usage: node scripts/spaces.mjs build --out DIR [--endpoint URL] [--connect "ORIGIN ..."]');
    process.exit(2);
  }
  const endpoint = arg('endpoint', HUGGINGFACE.endpoint);
  const connect = arg('connect') ? arg('connect').split(/\s+/).filter(Boolean) : endpoint === HUGGINGFACE.endpoint ? HUGGINGFACE.connect : [new URL(endpoint).origin];
  const { out, pages } = await buildSpaces({ out: arg('out'), endpoint, connect });
  console.log(`${pages.length} pages in ${out}, endpoint ${endpoint}, connect-src 'self' ${connect.join(' ')}`);
}
