// A hub emulator with no dependencies: the Hugging Face hub and its CDN on two origins (two ports),
// answering the way the real ones do, plus faults on request.
//
//   node scripts/hub-server.mjs [--port 8788] [--cdn-port 0] [--host 127.0.0.1] [--big-mb 200]
//                               [--pkg www/pkg] [--mirror DIR]
//
// `--port 0` takes a free port; the first line printed names both origins. `--pkg DIR` also serves
// a blank page at /__page/ and DIR under /__page/pkg/ on the hub's origin (tests/e2e/store.test.mjs).
// `startHub(options)` does the same from a test and returns `{ hub, cdn, stats, close }`.
//
// The hub (facts from huggingface_hub, huggingface.js, transformers.js and captured responses):
// - `GET /api/models/{repo}/revision/{rev}`: `{ id, sha, siblings: [{ rfilename, size, blobId,
//   lfs?: { sha256, size, pointerSize } }] }`.
// - `GET /{repo}/resolve/{rev}/{path}`: an LFS file is a 302 to the CDN's origin with a signed
//   query (`X-Amz-Expires`, `Expires`, `Signature`; the hub hands out the same URL for `reuse`
//   seconds) and `X-Repo-Commit`, `X-Linked-Etag: "<sha256>"`, `X-Linked-Size`, `X-Xet-Hash`; a small
//   file a 307 to a relative `/api/resolve-cache/models/{repo}/{commit}/{path}` that answers 200/206
//   with `ETag: "<git sha1>"`.
// - CORS: `Access-Control-Allow-Origin` echoes the page's origin; only X-Repo-Commit,
//   X-Error-Code, X-Error-Message, ETag, Link, Accept-Ranges, Content-Range, X-Linked-Size,
//   X-Linked-ETag, X-Xet-Hash are exposed (not Retry-After); preflights are answered.
// - Errors carry `X-Error-Code` and `X-Error-Message`: RepoNotFound (401 without a token, 404 with
//   one), RevisionNotFound, EntryNotFound (404), GatedRepo (401 anonymous, 403 not approved); 429
//   with `RateLimit` headers.
// The CDN (headers as cas-bridge.xethub.hf.co sends them): `Access-Control-Allow-Origin: *`, exposes
// Accept-Ranges, Content-Range, Content-Type, Content-Disposition, ETag, X-Cache; a preflight allows
// only Content-Range, Content-Type, Content-Disposition, ETag (so `If-Range` or `Authorization` are
// refused); `ETag: "<xet hash>"` (not the SHA-256); 206 for a single Range, 416 when unsatisfiable;
// an expired or wrong signature is a 403 with an XML body.
//
// Repos: every `owner/name` exists with the same seeded files (generated in memory, never on disk):
// config.json (small, not LFS), medium.bin (40 MiB + 777 B, LFS) and big.bin (--big-mb MB, LFS);
// `main` or the commit (derived from the repo id) resolve, and tags `vN…` to commits of their own
// (the same files). A name starting with `missing` does not
// exist; the owner `gated` (or a name starting with `gated`) needs the token `hf_granted` (any
// other token is a user not approved). `--mirror DIR` serves DIR/{owner}/{name}/... as repos too
// (real models for page tests).
//
// Faults: prefix any URL with /f/SPEC/ (the client's endpoint becomes http://host:port/f/SPEC),
// SPEC being comma-separated items. The body faults act where the bytes are served (the CDN, or
// the resolve cache for small files); the prefix travels along the redirects.
//   drop=F       destroy the connection once the body reaches byte F*size (absolute offset)
//   stall=MS     with drop: wait MS ms before destroying it
//   once=ID      apply the body faults only to the first body request carrying this ID
//   norange      ignore Range (always 200, whole file)
//   gzip         the CDN compresses on the fly and ignores Range (200, Content-Encoding: gzip)
//   misalign     answer a Range request with a 206 that starts 4096 bytes early
//   r416         answer a Range request with 416 Range Not Satisfiable
//   short=F      end the body cleanly (chunked, no Content-Length, no error) at byte F*size
//   v2           the files changed: other seed, other ETag, the API reports the new sha256
//   status=N     the hub answers every request with HTTP N (429 with RateLimit and Retry-After: 7)
//   wait=S       with fail=429: the Retry-After in seconds (default 1)
//   fail=N       answer body requests with HTTP N (429 with Retry-After); with once=ID, the first only
//   slow=N       send N bytes every 10 ms
//   html         answer body requests with an HTML page (200, text/html)
//   etag=X       serve the same bytes under another ETag
//   badsha       the API reports a wrong sha256
//   badblob      the API reports a wrong blobId (git SHA-1; checked for small non-LFS files)
//   flip         flip one bit in the middle of the body (the API keeps the true sha256)
//   expire=S     signed URLs expire S seconds after they are issued (default 3600)
//   reuse=S      the hub hands out the same signed URL for S seconds (default min(300, expire/2))
//   nopreflight  the CDN refuses every preflight (403, no CORS headers)
// GET /__stats (either origin) answers {requests, bodyBytes} per once=ID (and "all"), per file
// under files["owner/name/path"], and `hub` / `cdn`: requests, preflights, requests carrying
// `Authorization`, the `Origin`s seen, expired or refused signatures.

import { createServer } from 'node:http';
import { createHash, createHmac, randomBytes } from 'node:crypto';
import { createGzip } from 'node:zlib';
import { readFile } from 'node:fs/promises';
import { join, normalize, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import { mirrorRepo } from './serve.mjs';

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

const sha1 = (...parts) => parts.reduce((h, p) => h.update(p), createHash('sha1')).digest('hex');
const sha256 = (data) => createHash('sha256').update(data).digest('hex');
const gitBlob = (data) => sha1(`blob ${data.length}\0`, data);

/** A file as the emulator keeps it: bytes (loaded on demand for mirrored files) and digests. */
function entry(name, size, digests, load) {
  const lfs = size > 1 << 20;
  return { name, size, lfs, ...digests, xet: sha256(`xet:${digests.sha256}`), load };
}

function seededFiles(bigMb, version) {
  const s = version === 2 ? 1000 : 0;
  const files = {
    'config.json': Buffer.from(JSON.stringify({ model_type: 'test', version, hidden_size: 8 }) + '\n'),
    'medium.bin': seeded(40 * 1024 * 1024 + 777, 7 + s),
    'big.bin': seeded(bigMb * 1000 * 1000, 11 + s),
  };
  return Object.fromEntries(Object.entries(files).map(([name, data]) =>
    [name, entry(name, data.length, { sha256: sha256(data), blobId: gitBlob(data) }, async () => data)]));
}

function parseFaults(spec) {
  const f = {};
  for (const item of (spec || '').split(',').filter(Boolean)) {
    const [k, v] = item.split('=');
    f[k] = v === undefined ? true : v;
  }
  return f;
}

const HUB_EXPOSE = 'X-Repo-Commit, X-Error-Code, X-Error-Message, ETag, Link, Accept-Ranges, Content-Range, X-Linked-Size, X-Linked-ETag, X-Xet-Hash';
const CDN_CORS = {
  'Access-Control-Allow-Origin': '*',
  'Access-Control-Expose-Headers': 'Accept-Ranges, Content-Range, Content-Type, Content-Disposition, ETag, X-Cache',
};
const CDN_PREFLIGHT = {
  ...CDN_CORS,
  'Access-Control-Allow-Headers': 'Content-Range, Content-Type, Content-Disposition, ETag',
  'Access-Control-Allow-Methods': 'GET, HEAD',
  'Access-Control-Max-Age': '3000',
};

/** The hub's CORS headers for `req`: the page's origin echoed. */
function hubCors(req) {
  return { 'Access-Control-Allow-Origin': req.headers.origin ?? '*', Vary: 'Origin', 'Access-Control-Expose-Headers': HUB_EXPOSE };
}

const newCounter = () => ({ requests: 0, preflights: 0, authorization: 0, origins: [], expired: 0, refused: 0 });

/**
 * Starts the hub and its CDN. Options: `port`, `cdnPort` (0: free ports), `host`, `bigMb`, `pkg`,
 * `mirror`. Resolves to `{ hub, cdn, stats, close }` (`hub`, `cdn`: origins without a slash).
 */
export async function startHub({ port = 0, cdnPort = 0, host = '127.0.0.1', bigMb = 200, pkg, mirror } = {}) {
  const seededByVersion = { 1: seededFiles(bigMb, 1), 2: seededFiles(bigMb, 2) };
  const secret = randomBytes(16);
  const usedOnce = new Set();
  const stats = { all: { requests: 0, bodyBytes: 0 }, files: {}, hub: newCounter(), cdn: newCounter() };
  const blobs = new Map(); // sha256 -> { repo, file }: what a signed CDN URL may serve
  const issued = new Map(); // prefix|repo|sha256 -> { url, at }: the hub reuses signed URLs
  const mirrored = new Map(); // repo -> Promise<{ sha, files } | null>
  const tagged = new Map(); // commit -> repo, for the commits that tags resolved to

  /** The commit `rev` names in `r` (`main`, the repo's commit, or a tag `vN…` with its own commit). */
  function commitOf(repo, r, rev) {
    if (rev === 'main' || rev === r.sha) return r.sha;
    if (tagged.get(rev) === repo) return rev;
    if (!/^v\d+(\.\d+)*$/.test(rev)) return null;
    const commit = sha1(`${repo}@${rev}`);
    tagged.set(commit, repo);
    return commit;
  }
  let cdnOrigin = '';

  /** `{ sha, files: { name: entry } }` of a repo, or null when it does not exist. */
  async function repoOf(repo, version) {
    if (/^missing/.test(repo.split('/').pop())) return null;
    if (mirror) {
      if (!mirrored.has(repo)) {
        mirrored.set(repo, mirrorRepo(mirror, repo).then((r) => r && {
          sha: r.sha,
          files: Object.fromEntries(r.siblings.map((s) => [s.rfilename, entry(s.rfilename, s.size,
            { sha256: s.lfs?.sha256 ?? s.etag.slice(1, -1), blobId: s.blobId }, () => readFile(s.file))])),
        }).catch(() => null));
      }
      const r = await mirrored.get(repo);
      if (r) return r;
    }
    return { sha: sha1(repo), files: seededByVersion[version] };
  }

  const gated = (repo) => repo.startsWith('gated/') || /^gated/.test(repo.split('/').pop());
  const tokenOf = (req) => /^Bearer (.+)$/.exec(req.headers.authorization ?? '')?.[1];

  /** The hub's refusal for `repo` (as `[status, code, message]`), or null when access is granted. */
  function refusal(req, repo, exists) {
    const token = tokenOf(req);
    if (!exists) return [token ? 404 : 401, 'RepoNotFound', 'Repository not found'];
    if (!gated(repo)) return null;
    if (!token) return [401, 'GatedRepo', `Access to model ${repo} is restricted. You must have access to it and be authenticated to access it. Please log in.`];
    if (token !== 'hf_granted') return [403, 'GatedRepo', `Access to model ${repo} is restricted and you are not in the authorized list. Visit https://huggingface.co/${repo} to ask for access.`];
    return null;
  }

  function hubError(req, res, [status, code, message], extra = {}) {
    res.writeHead(status, { ...hubCors(req), 'Content-Type': 'application/json', 'X-Error-Code': code, 'X-Error-Message': message, ...extra });
    res.end(JSON.stringify({ error: message }));
  }

  function count(counter, req) {
    counter.requests++;
    if (req.headers.authorization) counter.authorization++;
    const origin = req.headers.origin ?? '(none)';
    if (!counter.origins.includes(origin)) counter.origins.push(origin);
  }

  /** Serves `file`'s bytes (Range, faults) for a body request; `headers` carry CORS and ETag. */
  async function serveBody(req, res, repo, file, faults, headers) {
    const perFile = (stats.files[`${repo}/${file.name}`] ??= { requests: 0, bodyBytes: 0 });
    perFile.requests++;
    const st = [stats.all, perFile, (stats[faults.once ?? 'all'] ??= { requests: 0, bodyBytes: 0 })];
    if (faults.once) {
      st[2].requests++;
      const keep = { v2: faults.v2, etag: faults.etag, expire: faults.expire, reuse: faults.reuse, nopreflight: faults.nopreflight };
      if (usedOnce.has(faults.once)) faults = keep; else usedOnce.add(faults.once);
    }
    stats.all.requests++;
    const plain = (status, body, extra = {}) => { res.writeHead(status, { ...headers, 'Content-Type': 'text/plain', ...extra }); res.end(body); };
    if (faults.fail) {
      const status = Number(faults.fail);
      return plain(status, `fault ${status}`, status === 429 ? { 'Retry-After': faults.wait ?? '1' } : {});
    }
    if (faults.html) return plain(200, '<!doctype html><title>Sign in</title><p>Please log in', { 'Content-Type': 'text/html; charset=utf-8' });
    const data = await file.load();
    const total = data.length;
    const h = { ...headers, 'Content-Type': 'application/octet-stream', 'Accept-Ranges': 'bytes', ...(faults.etag ? { ETag: `"${faults.etag}"` } : {}) };
    if (faults.gzip) {
      res.writeHead(200, { ...h, 'Content-Encoding': 'gzip' });
      if (req.method === 'HEAD') return res.end();
      const gz = createGzip({ level: 1 });
      gz.pipe(res);
      return void sendBody(gz, res.socket, data, 0, faults, st);
    }
    const range = req.headers.range?.match(/^bytes=(\d+)-(\d*)$/);
    if (range && faults.r416) return plain(416, '', { 'Content-Range': `bytes */${total}` });
    if (range && !faults.norange) {
      let start = Number(range[1]);
      if (start >= total) return plain(416, '', { 'Content-Range': `bytes */${total}` });
      if (faults.misalign) start = Math.max(0, start - 4096);
      res.writeHead(206, { ...h, 'Content-Range': `bytes ${start}-${total - 1}/${total}`, ...(faults.short ? {} : { 'Content-Length': String(total - start) }) });
      if (req.method === 'HEAD') return res.end();
      return void sendBody(res, res.socket, data, start, faults, st);
    }
    res.writeHead(200, { ...h, ...(faults.short ? {} : { 'Content-Length': String(total) }) });
    if (req.method === 'HEAD') return res.end();
    sendBody(res, res.socket, data, 0, faults, st);
  }

  /** Writes `data` from `start` to `out` (the response, or a gzip stream into it) with the faults. */
  async function sendBody(out, socket, data, start, faults, st) {
    const total = data.length;
    const dropAt = faults.drop !== undefined ? Math.floor(Number(faults.drop) * total) : Infinity;
    const endAt = faults.short !== undefined ? Math.floor(Number(faults.short) * total) : total;
    const step = faults.slow ? Number(faults.slow) : 256 * 1024;
    let pos = start;
    while (pos < endAt) {
      if (out.destroyed) return;
      let end = Math.min(endAt, pos + step);
      if (pos < dropAt && end > dropAt) end = dropAt;
      if (pos >= dropAt) {
        if (faults.stall) await new Promise((r) => setTimeout(r, Number(faults.stall)));
        socket?.destroy();
        return;
      }
      let piece = data.subarray(pos, end);
      if (faults.flip) {
        const mid = Math.floor(total / 2);
        if (mid >= pos && mid < end) { piece = Buffer.from(piece); piece[mid - pos] ^= 1; }
      }
      for (const s of new Set(st)) s.bodyBytes += piece.length;
      const ok = out.write(piece);
      pos = end;
      if (faults.slow) await new Promise((r) => setTimeout(r, 10));
      else if (!ok) await new Promise((r) => out.once('drain', r));
    }
    out.end();
  }

  /** The signed CDN URL for a file (the same one for `reuse` seconds). */
  function signedUrl(prefix, repo, file, faults) {
    const expire = Number(faults.expire ?? 3600);
    const reuse = Number(faults.reuse ?? Math.min(300, expire / 2));
    const key = `${prefix}|${repo}|${file.sha256}`;
    const now = Date.now();
    const last = issued.get(key);
    if (last && now - last.at < reuse * 1000) return last.url;
    const path = `${prefix}/xet-bridge-us/${sha256(repo).slice(0, 24)}/${file.xet}`;
    const expires = Math.floor(now / 1000) + expire;
    const url = `${cdnOrigin}${path}?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Expires=${expire}&Expires=${expires}` +
      `&Signature=${createHmac('sha256', secret).update(`${path}:${expires}`).digest('hex')}` +
      `&response-content-disposition=${encodeURIComponent(`inline; filename="${file.name.split('/').pop()}"`)}`;
    issued.set(key, { url, at: now });
    blobs.set(file.xet, { repo, file });
    return url;
  }

  const statsJson = (res, cors) => { res.writeHead(200, { ...cors, 'Content-Type': 'application/json' }); res.end(JSON.stringify(stats)); };

  async function handleHub(req, res) {
    const url = new URL(req.url, 'http://x');
    let path = decodeURIComponent(url.pathname);
    if (req.method === 'OPTIONS') {
      stats.hub.preflights++;
      res.writeHead(204, { ...hubCors(req), 'Access-Control-Allow-Headers': req.headers['access-control-request-headers'] ?? '',
        'Access-Control-Allow-Methods': 'GET, HEAD, OPTIONS', 'Access-Control-Max-Age': '600' });
      return res.end();
    }
    if (path === '/__stats') return statsJson(res, hubCors(req));
    if (pkg && path.startsWith('/__page/')) return servePage(path.slice('/__page/'.length), res);
    count(stats.hub, req);
    const m = path.match(/^\/f\/([^/]+)(\/.*)$/);
    const prefix = m ? `/f/${m[1]}` : '';
    const faults = parseFaults(m?.[1]);
    if (m) path = m[2];
    const version = faults.v2 ? 2 : 1;
    const cors = hubCors(req);
    if (faults.status) {
      const status = Number(faults.status);
      const extra = status === 429 ? { 'Retry-After': '7', RateLimit: '"api";r=0;t=7', 'RateLimit-Policy': '"fixed window";"api";q=1000;w=300' } : {};
      res.writeHead(status, { ...cors, 'Content-Type': 'text/plain', ...extra });
      return res.end(`fault ${status}`);
    }
    const api = path.match(/^\/api\/models\/([\w.-]+\/[\w.-]+)\/revision\/(.+)$/);
    if (api) {
      const [, repo, rev] = api;
      const r = await repoOf(repo, version);
      const no = refusal(req, repo, !!r);
      if (no) return hubError(req, res, no);
      const sha = commitOf(repo, r, rev);
      if (!sha) return hubError(req, res, [404, 'RevisionNotFound', `Invalid rev id: ${rev}`]);
      const siblings = Object.values(r.files).map((f) => ({
        rfilename: f.name,
        size: f.size,
        blobId: faults.badblob ? 'f'.repeat(40) : f.blobId,
        ...(f.lfs ? { lfs: { sha256: faults.badsha ? '0'.repeat(64) : f.sha256, size: f.size, pointerSize: 134 } } : {}),
      }));
      res.writeHead(200, { ...cors, 'Content-Type': 'application/json', 'X-Repo-Commit': sha });
      return res.end(JSON.stringify({ id: repo, modelId: repo, sha, siblings }));
    }
    const resolve = path.match(/^\/([\w.-]+\/[\w.-]+)\/resolve\/([^/]+)\/(.+)$/);
    const cached = path.match(/^\/api\/resolve-cache\/models\/([\w.-]+\/[\w.-]+)\/([0-9a-f]{40})\/(.+)$/);
    const hit = resolve ?? cached;
    if (!hit) { res.writeHead(404, { ...cors, 'Content-Type': 'text/plain' }); return res.end('Not found'); }
    const [, repo, rev, name] = hit;
    const r = await repoOf(repo, version);
    const no = refusal(req, repo, !!r);
    if (no) return hubError(req, res, no);
    const sha = commitOf(repo, r, rev);
    if (!sha) return hubError(req, res, [404, 'RevisionNotFound', `Invalid rev id: ${rev}`]);
    const file = r.files[name];
    if (!file) return hubError(req, res, [404, 'EntryNotFound', `${name} does not exist on "${rev}"`]);
    stats.hub.resolves = (stats.hub.resolves ?? 0) + (resolve ? 1 : 0);
    if (cached) return serveBody(req, res, repo, file, faults, { ...cors, ETag: `"${file.blobId}"`, 'X-Repo-Commit': sha });
    if (file.lfs) {
      res.writeHead(302, { ...cors, Location: signedUrl(prefix, repo, file, faults), 'X-Repo-Commit': sha,
        'X-Linked-Etag': `"${file.sha256}"`, 'X-Linked-Size': String(file.size), 'X-Xet-Hash': file.xet, 'Content-Type': 'text/plain' });
      return res.end('Found');
    }
    res.writeHead(307, { ...cors, Location: `${prefix}/api/resolve-cache/models/${repo}/${sha}/${name}`, 'X-Repo-Commit': sha,
      ETag: `"${file.blobId}"`, 'Content-Type': 'text/plain' });
    res.end('Temporary Redirect');
  }

  async function handleCdn(req, res) {
    const url = new URL(req.url, 'http://x');
    let path = decodeURIComponent(url.pathname);
    if (path === '/__stats') return statsJson(res, CDN_CORS);
    const m = path.match(/^\/f\/([^/]+)(\/.*)$/);
    const faults = parseFaults(m?.[1]);
    if (req.method === 'OPTIONS') {
      stats.cdn.preflights++;
      if (faults.nopreflight) { res.writeHead(403, { 'Content-Type': 'text/plain' }); return res.end('Forbidden'); }
      res.writeHead(200, CDN_PREFLIGHT);
      return res.end();
    }
    count(stats.cdn, req);
    const xml = (code, message) => {
      res.writeHead(403, { ...CDN_CORS, 'Content-Type': 'application/xml' });
      res.end(`<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>${code}</Code><Message>${message}</Message></Error>`);
    };
    const expires = Number(url.searchParams.get('Expires'));
    const signature = createHmac('sha256', secret).update(`${path}:${expires}`).digest('hex');
    if (url.searchParams.get('Signature') !== signature) { stats.cdn.refused++; return xml('SignatureDoesNotMatch', 'The request signature we calculated does not match the signature you provided.'); }
    if (Date.now() / 1000 > expires) { stats.cdn.expired++; return xml('AccessDenied', 'Request has expired'); }
    const blob = blobs.get(path.split('/').pop());
    if (!blob) { res.writeHead(404, { ...CDN_CORS, 'Content-Type': 'text/plain' }); return res.end('Not found'); }
    serveBody(req, res, blob.repo, blob.file, faults, { ...CDN_CORS, ETag: `"${blob.file.xet}"`, 'X-Cache': 'Miss from cloudfront', 'Cache-Control': 'public, max-age=31536000' });
  }

  async function servePage(rel, res) {
    const PAGE_MIME = { '.js': 'text/javascript', '.wasm': 'application/wasm', '.json': 'application/json', '.ts': 'text/plain' };
    const send = (status, body, type) => { res.writeHead(status, { 'Content-Type': type }); res.end(body); };
    if (rel === '' || rel === 'index.html') return send(200, '<!doctype html><meta charset="utf-8"><title>hugrt store test</title>', 'text/html');
    const file = normalize(join(pkg, rel.replace(/^pkg\//, '')));
    if (!rel.startsWith('pkg/') || !file.startsWith(normalize(pkg) + sep)) return send(404, 'Not found', 'text/plain');
    try {
      send(200, await readFile(file), PAGE_MIME[file.slice(file.lastIndexOf('.'))] ?? 'application/octet-stream');
    } catch {
      send(404, 'Not found', 'text/plain');
    }
  }

  const guard = (handler) => (req, res) => handler(req, res).catch((err) => {
    if (!res.headersSent) res.writeHead(500, { 'Content-Type': 'text/plain' });
    res.end(String(err));
  });
  const listen = (server, p) => new Promise((ok, fail) => {
    server.once('error', fail);
    server.listen(p, host, () => ok(`http://${host}:${server.address().port}`));
  });
  const cdnServer = createServer(guard(handleCdn));
  cdnOrigin = await listen(cdnServer, cdnPort);
  const hubServer = createServer(guard(handleHub));
  const hubOrigin = await listen(hubServer, port);
  return {
    hub: hubOrigin,
    cdn: cdnOrigin,
    stats,
    close: () => { hubServer.close(); cdnServer.close(); hubServer.closeAllConnections?.(); cdnServer.closeAllConnections?.(); },
  };
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const arg = (name, fallback) => {
    const i = process.argv.indexOf(`--${name}`);
    return i > 0 ? process.argv[i + 1] : fallback;
  };
  const bigMb = Number(arg('big-mb', 200));
  const { hub, cdn } = await startHub({
    port: Number(arg('port', 8788)), cdnPort: Number(arg('cdn-port', 0)), host: arg('host', '127.0.0.1'),
    bigMb, pkg: arg('pkg', undefined), mirror: arg('mirror', undefined),
  });
  console.log(`hub-server on ${hub}/ (cdn ${cdn}/, big.bin ${bigMb} MB)`);
}
