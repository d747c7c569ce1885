// Semantic search: pipeline('feature-extraction') embeds a bundled corpus once, then each query;
// results are ranked by cosine similarity (the embeddings are L2-normalised: a dot product).
// `?autorun` searches at once (the end-to-end test uses it; `?q=TEXT` sets the query, `?n=N` uses
// the first N sentences of the corpus).
import { pipeline } from './pkg/index.js';
import { DEFAULTS, $, el, progressView, showError } from './spaces.js';

let embedder = null;
let corpus = [];
let vectors = null;

const dot = (a, b) => a.reduce((s, v, i) => s + v * b[i], 0);
const rows = ({ data, dims: [n, d] }) => Array.from({ length: n }, (_, i) => data.subarray(i * d, (i + 1) * d));

async function start() {
  try {
    const n = Number(new URLSearchParams(location.search).get('n') ?? Infinity);
    corpus = (await (await fetch('search-corpus.json')).json()).slice(0, n);
    embedder = await pipeline('feature-extraction', DEFAULTS.embed.repo, { endpoint: DEFAULTS.endpoint, onProgress: progressView('status') });
    const t0 = performance.now();
    vectors = rows(await embedder.embed(corpus));
    const ms = performance.now() - t0;
    $('status').textContent = `${corpus.length} sentences embedded in ${ms.toFixed(0)} ms (${(corpus.length / (ms / 1000)).toFixed(1)} sentences/s) on ${embedder.info.adapter ?? 'WebGPU'}.`;
    $('search').disabled = false;
    document.body.dataset.status = 'ready';
  } catch (err) {
    showError('status', err);
  }
}

async function search(event) {
  event?.preventDefault();
  if (!embedder) return;
  const t0 = performance.now();
  const [q] = rows(await embedder.embed($('query').value));
  const ranked = corpus.map((text, i) => ({ text, score: dot(q, vectors[i]) })).sort((a, b) => b.score - a.score);
  $('results').tBodies[0].replaceChildren(...ranked.slice(0, 5).map(({ text, score }) => {
    const tr = el('tr');
    tr.append(el('td', score.toFixed(3)), el('td', text));
    return tr;
  }));
  $('stats').textContent = `query embedded and ranked in ${(performance.now() - t0).toFixed(0)} ms.`;
  window.searchResult = ranked;
  document.body.dataset.status = 'done';
}

$('search-form').addEventListener('submit', search);
const params = new URLSearchParams(location.search);
if (params.has('q')) $('query').value = params.get('q');
await start();
if (params.has('autorun') && embedder) await search();
