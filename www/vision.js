// "What's in this picture": pipeline('image-classification') (ViT) or
// pipeline('zero-shot-image-classification') (CLIP, with the labels typed in). The image is
// decoded and pre-processed in the engine (Rust), as natively. Results are set as text.
// `?mode=clip` picks CLIP; `?autorun` loads the default model and classifies the sample picture
// (the end-to-end test uses it); `?device=cpu` picks the CPU fallback.
import { pipeline } from './pkg/index.js';
import { DEFAULTS, $, el, progressView, showError } from './spaces.js';

const params = new URLSearchParams(location.search);
let model = null;
let image = null; // what the pipeline is given: a Blob, or the preview canvas

const mode = () => document.querySelector('input[name="mode"]:checked').value;
const defaults = () => (mode() === 'clip' ? DEFAULTS.zeroShot : DEFAULTS.vision);

function syncMode() {
  $('repo').value = defaults().repo;
  $('labels-row').hidden = mode() !== 'clip';
  $('notice').textContent = defaults().random ? 'The default model has random weights (a test checkpoint): its answers are arbitrary. Type a hub repo to use a real one.' : '';
}

async function load() {
  model?.dispose();
  model = null;
  document.body.dataset.status = 'loading';
  try {
    const task = mode() === 'clip' ? 'zero-shot-image-classification' : 'image-classification';
    model = await pipeline(task, $('repo').value, { endpoint: DEFAULTS.endpoint, device: $('device').value, onProgress: progressView('status') });
    $('status').textContent = `${model.info.architecture} on ${model.info.adapter} (${model.info.device})${model.info.fallbackReason ? `: ${model.info.fallbackReason}` : ''}`;
    document.body.dataset.status = 'ready';
  } catch (err) {
    showError('status', err);
  }
}

/** A sample picture drawn on the preview canvas: sky, sun, a house. */
function drawSample() {
  const c = $('preview'), g = c.getContext('2d');
  g.fillStyle = '#7ec8f0'; g.fillRect(0, 0, c.width, c.height);
  g.fillStyle = '#3c9a3c'; g.fillRect(0, 160, c.width, 64);
  g.fillStyle = '#f5d142'; g.beginPath(); g.arc(180, 45, 25, 0, 2 * Math.PI); g.fill();
  g.fillStyle = '#b5523b'; g.fillRect(60, 110, 90, 70);
  g.fillStyle = '#6b3a2a'; g.beginPath(); g.moveTo(50, 112); g.lineTo(105, 70); g.lineTo(160, 112); g.fill();
  image = c;
}

async function showFile(file) {
  image = file;
  const bitmap = await createImageBitmap(file);
  const c = $('preview'), g = c.getContext('2d');
  const s = Math.min(c.width / bitmap.width, c.height / bitmap.height);
  g.clearRect(0, 0, c.width, c.height);
  g.drawImage(bitmap, 0, 0, bitmap.width * s, bitmap.height * s);
  bitmap.close();
  await classify();
}

async function classify() {
  if (!model || !image) return;
  document.body.dataset.status = 'running';
  try {
    const t0 = performance.now();
    const result = mode() === 'clip'
      ? await model.classify(image, $('labels').value.split(',').map((l) => l.trim()).filter(Boolean))
      : await model.classify(image, { topK: 5 });
    const ms = performance.now() - t0;
    $('results').tBodies[0].replaceChildren(...result.map(({ label, score }) => {
      const tr = el('tr');
      tr.append(el('td', label), el('td', score.toFixed(4)));
      return tr;
    }));
    $('stats').textContent = `classified in ${ms.toFixed(0)} ms on ${model.info.adapter}.`;
    window.visionResult = result;
    document.body.dataset.status = 'done';
  } catch (err) {
    showError('stats', err);
  }
}

for (const r of document.querySelectorAll('input[name="mode"]')) r.addEventListener('change', syncMode);
$('load').addEventListener('click', load);
$('sample').addEventListener('click', async () => { drawSample(); await classify(); });
$('file').addEventListener('change', (e) => e.target.files[0] && showFile(e.target.files[0]));
$('drop').addEventListener('dragover', (e) => e.preventDefault());
$('drop').addEventListener('drop', (e) => { e.preventDefault(); const f = e.dataTransfer.files[0]; if (f) showFile(f); });
if (params.get('mode') === 'clip') document.querySelector('input[value="clip"]').checked = true;
if (params.has('device')) $('device').value = params.get('device');
syncMode();
drawSample();
if (params.has('autorun')) {
  await load();
  await classify();
}
