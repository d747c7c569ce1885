// A static file server for www/, with no dependencies, and byte ranges (models are fetched
// tensor by tensor). `--models DIR` also serves DIR under /models/. Used by the main job
// (`scripts/serve.sh`) and by the end-to-end tests (`startServer`).
//
// `--mirror DIR` serves DIR as a local hub mirror in the hub's URL layout, on the same origin
// (the spaces' endpoint is the page's origin): DIR/{owner}/{name}/{files} answers
// `/api/models/{owner}/{name}/revision/{rev}` (commit, files with size, git blob id and, above
// 1 MB, the LFS SHA-256) and `/{owner}/{name}/resolve/{commit}/{path}` (Range, If-Range, ETag).
//
//   node scripts/serve.mjs [--root www] [--models DIR] [--mirror DIR] [--port 8080] [--host 127.0.0.1]

import { createServer } from 'node:http';
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { readdir, stat } from 'node:fs/promises';
import { extname, join, normalize, resolve, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import { spacesCsp } from './spaces.mjs';

const MIME = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.mjs': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.json': 'application/json',
  '.wasm': 'application/wasm',
  '.png': 'image/png',
  '.svg': 'image/svg+xml',
  '.ts': 'text/plain; charset=utf-8',
};

// The spaces run no inline script and fetch only from this origin (scripts/spaces.mjs).
const CSP = spacesCsp();

const LFS_ABOVE = 1 << 20;
const digests = new Map(); // "file:size:mtime" -> { sha256, blobId }

async function digest(file, info) {
  const key = `${file}:${info.size}:${info.mtimeMs}`;
  if (!digests.has(key)) {
    const sha256 = createHash('sha256');
    const blob = createHash('sha1').update(`blob ${info.size}\0`);
    for await (const piece of createReadStream(file)) { sha256.update(piece); blob.update(piece); }
    digests.set(key, { sha256: sha256.digest('hex'), blobId: blob.digest('hex') });
  }
  return digests.get(key);
}

async function listFiles(dir, prefix = '') {
  const out = [];
  for (const entry of await readdir(dir, { withFileTypes: true })) {
    if (entry.name.startsWith('.')) continue;
    const path = join(dir, entry.name);
    const info = await stat(path); // follows symlinks
    if (info.isDirectory()) out.push(...await listFiles(path, `${prefix}${entry.name}/`));
    else if (info.isFile()) out.push({ rfilename: `${prefix}${entry.name}`, file: path, info });
  }
  return out.sort((a, b) => a.rfilename.localeCompare(b.rfilename));
}

/** The mirror's answer for a repo: its commit (from the files' names, sizes and digests) and files. */
export async function mirrorRepo(mirror, repo) {
  const dir = resolve(mirror, repo);
  if (!dir.startsWith(resolve(mirror) + sep)) return null;
  const files = await listFiles(dir).catch(() => null);
  if (!files?.length) return null;
  const commit = createHash('sha1');
  const siblings = [];
  for (const f of files) {
    const d = await digest(f.file, f.info);
    commit.update(`${f.rfilename}\0${d.blobId}\0`);
    siblings.push({ rfilename: f.rfilename, size: f.info.size, blobId: d.blobId,
      ...(f.info.size > LFS_ABOVE ? { lfs: { sha256: d.sha256, size: f.info.size } } : {}), file: f.file, etag: `"${d.sha256}"` });
  }
  return { id: repo, sha: commit.digest('hex'), siblings };
}

async function serveMirror(mirror, path, req, res) {
  const api = path.match(/^\/api\/models\/([\w.-]+\/[\w.-]+)\/revision\/([^/]+)$/);
  if (api) {
    const repo = await mirrorRepo(mirror, api[1]);
    if (!repo) return res.writeHead(404, { 'content-type': 'text/plain' }).end('Repository not found');
    if (api[2] !== 'main' && api[2] !== repo.sha) return res.writeHead(404, { 'content-type': 'text/plain' }).end('Revision not found');
    const siblings = repo.siblings.map(({ file, etag, ...s }) => s);
    return res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ id: repo.id, modelId: repo.id, sha: repo.sha, siblings }));
  }
  const m = path.match(/^\/([\w.-]+\/[\w.-]+)\/resolve\/([0-9a-f]{40})\/(.+)$/);
  const repo = m && await mirrorRepo(mirror, m[1]);
  const entry = repo && repo.sha === m[2] && repo.siblings.find((s) => s.rfilename === m[3]);
  return entry || null;
}

/**
 * Starts serving `root`; resolves to `{ server, url }` once listening. `csp`: the pages' policy
 * (default: the spaces' own, same origin only; none when falsy, as a static host); `cors`: answer any origin (as a CDN serving the
 * package does: `Access-Control-Allow-Origin: *`, resources shareable cross-origin).
 */
export function startServer({ root, models, mirror, port = 0, host = '127.0.0.1', csp = CSP, cors = false }) {
  // The mirror's switch and log for tests: `offline` drops its requests unanswered (as when the
  // network is gone); `requests` lists the paths asked of it.
  const hub = { offline: false, requests: [] };
  const server = createServer(async (req, res) => {
    try {
      let path = decodeURIComponent(new URL(req.url, 'http://x').pathname);
      let mirrored = null;
      if (mirror && (path.startsWith('/api/models/') || path.includes('/resolve/'))) {
        hub.requests.push(path);
        if (hub.offline) return void req.socket.destroy();
        mirrored = await serveMirror(mirror, path, req, res);
        if (res.headersSent) return; // an API answer
        if (!mirrored) return void res.writeHead(404, { 'content-type': 'text/plain' }).end('Entry not found');
      }
      let base = resolve(root);
      if (models && path.startsWith('/models/')) {
        base = resolve(models);
        path = path.slice('/models'.length);
      }
      let file = mirrored ? mirrored.file : normalize(join(base, path));
      if (!mirrored && file !== base && !file.startsWith(base + sep)) {
        res.writeHead(403).end('forbidden');
        return;
      }
      let info = await stat(file).catch(() => null);
      if (info?.isDirectory()) {
        file = join(file, 'index.html');
        info = await stat(file).catch(() => null);
      }
      if (!info?.isFile()) {
        res.writeHead(404, { 'content-type': 'text/plain' }).end('not found');
        return;
      }
      const headers = {
        'content-type': MIME[extname(file)] ?? 'application/octet-stream',
        'cross-origin-opener-policy': 'same-origin',
        'cross-origin-embedder-policy': 'require-corp',
        'cache-control': 'no-cache',
        'accept-ranges': 'bytes',
      };
      if (csp) headers['content-security-policy'] = csp;
      if (mirrored) headers.etag = mirrored.etag;
      if (cors) Object.assign(headers, { 'access-control-allow-origin': '*', 'cross-origin-resource-policy': 'cross-origin' });
      const ifRange = req.headers['if-range'];
      const range = (!ifRange || ifRange === headers.etag) ? /^bytes=(\d+)-(\d*)$/.exec(req.headers.range ?? '') : null;
      let status = 200, start = 0, end = info.size - 1;
      if (range) {
        start = Number(range[1]);
        end = range[2] === '' ? info.size - 1 : Math.min(Number(range[2]), info.size - 1);
        if (start > end || start >= info.size) {
          res.writeHead(416, { 'content-range': `bytes */${info.size}` }).end();
          return;
        }
        status = 206;
        headers['content-range'] = `bytes ${start}-${end}/${info.size}`;
      }
      headers['content-length'] = end - start + 1;
      res.writeHead(status, headers);
      if (req.method === 'HEAD' || info.size === 0) res.end();
      else createReadStream(file, { start, end }).pipe(res);
    } catch (err) {
      res.writeHead(400, { 'content-type': 'text/plain' }).end(String(err));
    }
  });
  return new Promise((ok, fail) => {
    server.once('error', fail);
    server.listen(port, host, () => ok({ server, url: `http://${host}:${server.address().port}/`, hub }));
  });
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const arg = (name, fallback) => {
    const i = process.argv.indexOf(`--${name}`);
    return i > 0 ? process.argv[i + 1] : fallback;
  };
  const { url } = await startServer({
    root: arg('root', 'www'),
    models: arg('models', undefined),
    mirror: arg('mirror', undefined),
    port: Number(arg('port', process.env.PORT ?? 8080)),
    host: arg('host', '127.0.0.1'),
  });
  console.log(`serving ${arg('root', 'www')} at ${url}`);
}
