// A test hub with no dependencies: the hub's URL layout and revision API, Range/If-Range/ETag,
// CORS for the wasm-bindgen-test page (another port), and faults on request.
//
//   node scripts/hub-server.mjs [--port 8788] [--host 127.0.0.1] [--big-mb 200] [--pkg www/pkg]
//
// `--port 0` takes a free port (the first line printed names it). `--pkg DIR` also serves a blank
// page at /__page/ and DIR under /__page/pkg/, so that browser pages can load the npm package from
// the hub's own origin (the end-to-end store tests: tests/e2e/store.test.mjs).
//
// Every repo `owner/name` exists and holds the same seeded files (generated in memory, never on
// disk): config.json (small, not LFS), medium.bin (40 MiB + 777 B) and big.bin (--big-mb MB).
// The revision `main` (or the commit itself) resolves to a commit derived from the repo id.
//
// Faults: prefix any URL with /f/SPEC/ (the client's endpoint becomes http://host:port/f/SPEC),
// SPEC being comma-separated items:
//   drop=F       destroy the connection once the body reaches byte F*size (absolute offset)
//   once=ID      apply the fault only to the first file request carrying this ID
//   norange      ignore Range (always 200, whole file)
//   misalign     answer a Range request with a 206 that starts 4096 bytes early
//   r416         answer a Range request with 416 Range Not Satisfiable
//   short=F      end the body cleanly (chunked, no Content-Length, no error) at byte F*size
//   v2           the files changed: other seed, other ETag, the API reports the new sha256
//   status=N     answer every request with HTTP N (401, 404, 429 with Retry-After, 500, ...)
//   wait=S       with fail=429: the Retry-After in seconds (default 1)
//   fail=N       answer file requests with HTTP N (429 with Retry-After: 1); with once=ID, the
//                first only
//   slow=N       send N bytes every 10 ms
//   html         answer file requests with an HTML page (200, text/html)
//   etag=X       serve the same bytes under another ETag (If-Range then fails)
//   badsha       the API reports a wrong sha256
//   badblob      the API reports a wrong blobId (git SHA-1; checked for small non-LFS files)
//   flip         flip one bit in the middle of the body (the API keeps the true sha256)
// GET /__stats answers {requests, bodyBytes} per once=ID (and "all"), and per file under
// files["owner/name/path"] (every request for that file, faults or not).

import { createServer } from 'node:http';
import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { join, normalize, sep } from 'node:path';

const args = Object.fromEntries(process.argv.slice(2).join(' ').split('--').filter(Boolean).map((a) => a.trim().split(/\s+/)));
const PORT = Number(args.port ?? 8788);
const HOST = args.host ?? '127.0.0.1';
const BIG_MB = Number(args['big-mb'] ?? 200);
const PKG = args.pkg;

function seeded(size, seed) {
  const buf = Buffer.alloc(size);
  const words = new Uint32Array(buf.buffer, buf.byteOffset, Math.floor(size / 4));
  let x = seed >>> 0 || 1;
  for (let i = 0; i < words.length; i++) {
    x ^= x << 13; x >>>= 0; x ^= x >>> 17; x ^= x << 5; x >>>= 0;
    words[i] = x;
  }
  for (let i = words.length * 4; i < size; i++) buf[i] = (i * 31 + seed) & 255;
  return buf;
}

function makeFiles(version) {
  const s = version === 2 ? 1000 : 0;
  const files = {
    'config.json': Buffer.from(JSON.stringify({ model_type: 'test', version, hidden_size: 8 }) + '\n'),
    'medium.bin': seeded(40 * 1024 * 1024 + 777, 7 + s),
    'big.bin': seeded(BIG_MB * 1000 * 1000, 11 + s),
  };
  const out = {};
  for (const [name, data] of Object.entries(files)) {
    const sha256 = createHash('sha256').update(data).digest('hex');
    out[name] = { data, sha256, etag: `"${sha256.slice(0, 16)}-v${version}"`, lfs: name.endsWith('.bin') };
  }
  return out;
}

const FILES = { 1: makeFiles(1), 2: makeFiles(2) };
const usedOnce = new Set();
const stats = { all: { requests: 0, bodyBytes: 0 }, files: {} };

// The commit does not depend on the version: `v2` models a file changed under a pinned URL.
const commitOf = (repo) => createHash('sha1').update(repo).digest('hex');

function parseFaults(spec) {
  const f = {};
  for (const item of (spec || '').split(',').filter(Boolean)) {
    const [k, v] = item.split('=');
    f[k] = v === undefined ? true : v;
  }
  return f;
}

const CORS = {
  'Access-Control-Allow-Origin': '*',
  'Access-Control-Allow-Headers': 'Range, If-Range, Authorization, Content-Type',
  'Access-Control-Allow-Methods': 'GET, HEAD, OPTIONS',
  'Access-Control-Expose-Headers': 'Content-Range, ETag, Content-Length, Accept-Ranges, Retry-After, Content-Type',
  'Access-Control-Max-Age': '600',
};

function send(res, status, body, headers = {}) {
  res.writeHead(status, { ...CORS, 'Content-Type': 'text/plain', ...headers });
  res.end(body);
}

async function sendBody(res, data, start, faults, st) {
  const total = data.length;
  const dropAt = faults.drop !== undefined ? Math.floor(Number(faults.drop) * total) : Infinity;
  const endAt = faults.short !== undefined ? Math.floor(Number(faults.short) * total) : total;
  const step = faults.slow ? Number(faults.slow) : 256 * 1024;
  let pos = start;
  while (pos < endAt) {
    if (res.destroyed) return;
    let end = Math.min(endAt, pos + step);
    if (pos < dropAt && end > dropAt) end = dropAt;
    if (pos >= dropAt) { res.socket?.destroy(); return; }
    let piece = data.subarray(pos, end);
    if (faults.flip) {
      const mid = Math.floor(total / 2);
      if (mid >= pos && mid < end) { piece = Buffer.from(piece); piece[mid - pos] ^= 1; }
    }
    for (const s of new Set(st)) s.bodyBytes += piece.length;
    const ok = res.write(piece);
    pos = end;
    if (faults.slow) await new Promise((r) => setTimeout(r, 10));
    else if (!ok) await new Promise((r) => res.once('drain', r));
  }
  res.end();
}

function handle(req, res) {
  if (req.method === 'OPTIONS') return send(res, 204, '');
  let url = new URL(req.url, `http://${req.headers.host}`);
  let path = decodeURIComponent(url.pathname);
  if (path === '/__stats') return send(res, 200, JSON.stringify(stats), { 'Content-Type': 'application/json' });
  if (PKG && path.startsWith('/__page/')) return servePage(path.slice('/__page/'.length), res);
  let faults = {};
  const m = path.match(/^\/f\/([^/]+)(\/.*)$/);
  if (m) { faults = parseFaults(m[1]); path = m[2]; }
  const version = faults.v2 ? 2 : 1;
  const files = FILES[version];
  if (faults.status) {
    const status = Number(faults.status);
    return send(res, status, `fault ${status}`, status === 429 ? { 'Retry-After': '7' } : {});
  }
  const api = path.match(/^\/api\/models\/([\w.-]+\/[\w.-]+)\/revision\/(.+)$/);
  if (api) {
    const [, repo, rev] = api;
    const sha = commitOf(repo);
    if (rev !== 'main' && rev !== sha) return send(res, 404, 'Revision not found');
    const siblings = Object.entries(files).map(([name, f]) => ({
      rfilename: name,
      size: f.data.length,
      blobId: faults.badblob ? 'f'.repeat(40) : createHash('sha1').update(`blob ${f.data.length}\0`).update(f.data).digest('hex'),
      ...(f.lfs ? { lfs: { sha256: faults.badsha ? '0'.repeat(64) : f.sha256, size: f.data.length, pointerSize: 134 } } : {}),
    }));
    return send(res, 200, JSON.stringify({ id: repo, modelId: repo, sha, siblings }), { 'Content-Type': 'application/json' });
  }
  const file = path.match(/^\/([\w.-]+\/[\w.-]+)\/resolve\/([0-9a-f]{40})\/(.+)$/);
  if (!file) return send(res, 404, 'Not found');
  const [, repo, commit, name] = file;
  const f = files[name];
  if (!f || commit !== commitOf(repo)) return send(res, 404, 'Entry not found');
  const perFile = (stats.files[`${repo}/${name}`] ??= { requests: 0, bodyBytes: 0 });
  perFile.requests++;
  const st = [stats.all, perFile, (stats[faults.once ?? 'all'] ??= { requests: 0, bodyBytes: 0 })];
  if (faults.once) {
    st[2].requests++;
    if (usedOnce.has(faults.once)) faults = { v2: faults.v2, etag: faults.etag }; else usedOnce.add(faults.once);
  }
  stats.all.requests++;
  if (faults.fail) {
    const status = Number(faults.fail);
    return send(res, status, `fault ${status}`, status === 429 ? { 'Retry-After': faults.wait ?? '1' } : {});
  }
  if (faults.html) return send(res, 200, '<!doctype html><title>Sign in</title><p>Please log in', { 'Content-Type': 'text/html; charset=utf-8' });
  const total = f.data.length;
  const etag = faults.etag ? `"${faults.etag}"` : f.etag;
  const headers = { ...CORS, 'Content-Type': 'application/octet-stream', ETag: etag, 'Accept-Ranges': 'bytes' };
  const range = req.headers.range?.match(/^bytes=(\d+)-(\d*)$/);
  const ifRange = req.headers['if-range'];
  if (range && faults.r416) return send(res, 416, '', { 'Content-Range': `bytes */${total}` });
  if (range && !faults.norange && (!ifRange || ifRange === etag)) {
    let start = Number(range[1]);
    if (start >= total) return send(res, 416, '', { 'Content-Range': `bytes */${total}` });
    if (faults.misalign) start = Math.max(0, start - 4096);
    res.writeHead(206, { ...headers, 'Content-Range': `bytes ${start}-${total - 1}/${total}`, ...(faults.short ? {} : { 'Content-Length': String(total - start) }) });
    if (req.method === 'HEAD') return res.end();
    return void sendBody(res, f.data, start, faults, st);
  }
  res.writeHead(200, { ...headers, ...(faults.short ? {} : { 'Content-Length': String(total) }) });
  if (req.method === 'HEAD') return res.end();
  sendBody(res, f.data, 0, faults, st);
}

const PAGE_MIME = { '.js': 'text/javascript', '.wasm': 'application/wasm', '.json': 'application/json', '.ts': 'text/plain' };

async function servePage(rel, res) {
  if (rel === '' || rel === 'index.html') return send(res, 200, '<!doctype html><meta charset="utf-8"><title>hugrt store test</title>', { 'Content-Type': 'text/html' });
  const file = normalize(join(PKG, rel.replace(/^pkg\//, '')));
  if (!rel.startsWith('pkg/') || !file.startsWith(normalize(PKG) + sep)) return send(res, 404, 'Not found');
  try {
    const body = await readFile(file);
    send(res, 200, body, { 'Content-Type': PAGE_MIME[file.slice(file.lastIndexOf('.'))] ?? 'application/octet-stream' });
  } catch {
    send(res, 404, 'Not found');
  }
}

const server = createServer(handle).listen(PORT, HOST, () => {
  console.log(`hub-server on http://${HOST}:${server.address().port}/ (big.bin ${BIG_MB} MB)`);
});
