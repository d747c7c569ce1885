// The playground: load any GGUF text model by repo/revision/file or quant, on a chosen device,
// with every generation setting; shows load phases, prefill/decode tok/s, the cache (with
// delete and clear) and the capability report. Output is set as text.
import { pipeline, cache, capabilities } from './pkg/index.js';
import { DEFAULTS, $, el, appendText, mb, progressView, showError } from './spaces.js';

let model = null;
let stopper = null;

function table(id, rows) {
  $(id).replaceChildren(...rows.map(([k, v]) => {
    const tr = el('tr');
    tr.append(el('th', k), el('td', typeof v === 'object' ? JSON.stringify(v) : String(v)));
    return tr;
  }));
}

async function showCache() {
  const [revisions, estimate] = await Promise.all([cache.list(), cache.estimate()]);
  $('estimate').textContent = `This origin uses ${mb(estimate.usage)} of ${mb(estimate.quota)}.`;
  $('cache').tBodies[0].replaceChildren(...revisions.map((r) => {
    const tr = el('tr');
    const del = el('button', 'Delete');
    del.type = 'button';
    del.addEventListener('click', async () => {
      del.disabled = true;
      if (model?.info.repo === r.repo && model?.info.commit === r.commit) { model.dispose(); model = null; $('run').disabled = true; }
      await cache.delete(r.repo, r.commit).catch((e) => showError('status', e));
      await showCache();
    });
    const td = el('td');
    td.append(del);
    tr.append(el('td', r.repo), el('td', r.commit.slice(0, 10)), el('td', r.files.join(', ')), el('td', mb(r.bytes)),
      el('td', new Date(r.lastUsed).toLocaleString()), td);
    return tr;
  }));
  document.body.dataset.cache = String(revisions.length);
}

async function load(event) {
  event?.preventDefault();
  $('load').disabled = true;
  document.body.dataset.status = 'loading';
  try {
    model?.dispose();
    model = null;
    const t0 = performance.now();
    model = await pipeline('text-generation', $('repo').value.trim(), {
      endpoint: DEFAULTS.endpoint, revision: $('revision').value.trim() || 'main', file: $('file').value.trim() || undefined,
      quant: $('quant').value.trim() || undefined, device: $('device').value, context: Number($('context').value),
      worker: $('worker').checked, onProgress: progressView('status'),
    });
    $('status').textContent = `Loaded in ${((performance.now() - t0) / 1000).toFixed(1)} s.`;
    table('model-info', Object.entries(model.info));
    $('run').disabled = false;
    document.body.dataset.status = 'ready';
  } catch (err) {
    showError('status', err);
  } finally {
    $('load').disabled = false;
    await showCache();
  }
}

async function run(event) {
  event?.preventDefault();
  if (!model) return;
  const num = (id) => Number($(id).value);
  const options = {
    maxTokens: num('maxTokens'), temperature: num('temperature'), topK: num('topK'), topP: num('topP'), minP: num('minP'),
    repetitionPenalty: num('repetitionPenalty'), seed: num('seed'), stop: $('stop').value.split('\n').filter(Boolean),
  };
  const text = $('prompt').value;
  const prompt = $('as-chat').checked ? [{ role: 'user', content: text }] : text;
  $('output').replaceChildren();
  $('run').disabled = true;
  $('stop-run').disabled = false;
  stopper = new AbortController();
  document.body.dataset.status = 'generating';
  try {
    const stream = model.stream(prompt, { ...options, signal: stopper.signal });
    for await (const piece of stream) appendText($('output'), piece);
    const r = await stream.result;
    $('stats').textContent = `prefill ${r.tokensPerSecond.prefill.toFixed(1)} tok/s (${r.usage.promptTokens} tokens, ${r.usage.cachedTokens} cached); ` +
      `decode ${r.tokensPerSecond.decode.toFixed(2)} tok/s (${r.usage.completionTokens} tokens); finish: ${r.finishReason}.`;
    document.body.dataset.status = 'done';
  } catch (err) {
    showError('stats', err);
  } finally {
    $('run').disabled = false;
    $('stop-run').disabled = true;
  }
}

// Fill-mask (BERT's masked-LM head): the pipeline is loaded on first use and kept per repo.
let masker = null;
async function fillMask(event) {
  event?.preventDefault();
  try {
    const repo = $('mask-repo').value;
    if (masker?.info.repo !== repo) {
      masker?.dispose();
      masker = null;
      masker = await pipeline('fill-mask', repo, { endpoint: DEFAULTS.endpoint, onProgress: progressView('mask-status') });
    }
    const t0 = performance.now();
    const result = await masker.fill($('mask-text').value, { topK: 5 });
    const first = Array.isArray(result[0]) ? result[0] : result;
    $('mask-results').tBodies[0].replaceChildren(...first.map(({ score, token_str, sequence }) => {
      const tr = el('tr');
      tr.append(el('td', score.toFixed(4)), el('td', token_str), el('td', sequence));
      return tr;
    }));
    $('mask-status').textContent = `filled in ${(performance.now() - t0).toFixed(0)} ms on ${masker.info.adapter}.`;
    window.fillMaskResult = result;
    document.body.dataset.status = 'done';
  } catch (err) {
    showError('mask-status', err);
  }
}
$('mask-repo').value = DEFAULTS.fillMask.repo;
$('mask-notice').textContent = DEFAULTS.fillMask.random ? 'The default is a tiny random-weight BERT (a test checkpoint): its fillers are arbitrary. Try google-bert/bert-base-uncased from the hub.' : '';
$('mask-form').addEventListener('submit', fillMask);

$('repo').value = DEFAULTS.chat.repo;
$('file').value = DEFAULTS.chat.file;
$('load-form').addEventListener('submit', load);
$('run-form').addEventListener('submit', run);
$('stop-run').addEventListener('click', () => stopper?.abort());
$('clear').addEventListener('click', async () => { model?.dispose(); model = null; await cache.clear(); await showCache(); });
capabilities().then((c) => table('capabilities', Object.entries(c))).catch((e) => showError('status', e));
await showCache().catch((e) => showError('status', e));
document.body.dataset.status = 'idle-ready';
