// "What's this sound": pipeline('audio-classification') (AST). A WAV file goes to the engine as
// bytes (decoded, resampled to 16 kHz and turned into Kaldi log-mel filter banks in Rust); a
// recording is decoded by the browser into an AudioBuffer first. Results are set as text.
// `?autorun` loads the default model and classifies the sample chirp (the end-to-end test uses it).
import { pipeline } from './pkg/index.js';
import { DEFAULTS, $, el, progressView, showError } from './spaces.js';

const params = new URLSearchParams(location.search);
let model = null;

async function load() {
  model?.dispose();
  model = null;
  document.body.dataset.status = 'loading';
  try {
    model = await pipeline('audio-classification', $('repo').value, { endpoint: DEFAULTS.endpoint, device: $('device').value, onProgress: progressView('status') });
    $('status').textContent = `${model.info.architecture} on ${model.info.adapter} (${model.info.device}); labels: ${model.info.labels?.length ?? '?'}`;
    document.body.dataset.status = 'ready';
  } catch (err) {
    showError('status', err);
  }
}

/** A 1.5 s chirp from 200 Hz to 4 kHz at 44.1 kHz (resampled by the engine). */
function chirp() {
  const rate = 44100, n = Math.round(1.5 * rate), samples = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    const t = i / rate;
    samples[i] = 0.5 * Math.sin(2 * Math.PI * (200 * t + ((4000 - 200) / (2 * 1.5)) * t * t));
  }
  return { samples, rate };
}

async function classify(audio, what, options = {}) {
  if (!model) return;
  $('clip').textContent = what;
  document.body.dataset.status = 'running';
  try {
    const t0 = performance.now();
    const result = await model.classify(audio, { topK: 5, ...options });
    $('results').tBodies[0].replaceChildren(...result.map(({ label, score }) => {
      const tr = el('tr');
      tr.append(el('td', label), el('td', score.toFixed(4)));
      return tr;
    }));
    $('stats').textContent = `classified in ${(performance.now() - t0).toFixed(0)} ms on ${model.info.adapter}.`;
    window.soundResult = result;
    document.body.dataset.status = 'done';
  } catch (err) {
    showError('stats', err);
  }
}

async function record() {
  try {
    const stream = await navigator.mediaDevices.getUserMedia({ audio: true });
    const recorder = new MediaRecorder(stream);
    const parts = [];
    recorder.ondataavailable = (e) => parts.push(e.data);
    const stopped = new Promise((r) => { recorder.onstop = r; });
    recorder.start();
    $('clip').textContent = 'recording…';
    await new Promise((r) => setTimeout(r, 3000));
    recorder.stop();
    await stopped;
    for (const t of stream.getTracks()) t.stop();
    const ctx = new AudioContext();
    const buffer = await ctx.decodeAudioData(await new Blob(parts).arrayBuffer());
    await ctx.close();
    await classify(buffer, `a ${buffer.duration.toFixed(1)} s recording at ${buffer.sampleRate} Hz`);
  } catch (err) {
    showError('stats', err);
  }
}

$('repo').value = DEFAULTS.sound.repo;
$('notice').textContent = DEFAULTS.sound.random ? 'The default model has random weights (a test checkpoint): its answers are arbitrary. Type a hub repo (MIT/ast-finetuned-audioset-10-10-0.4593) to use the real one.' : '';
if (params.has('device')) $('device').value = params.get('device');
$('load').addEventListener('click', load);
$('record').addEventListener('click', record);
$('file').addEventListener('change', (e) => e.target.files[0] && classify(e.target.files[0], e.target.files[0].name));
$('drop').addEventListener('dragover', (e) => e.preventDefault());
$('drop').addEventListener('drop', (e) => { e.preventDefault(); const f = e.dataTransfer.files[0]; if (f) classify(f, f.name); });
$('sample').addEventListener('click', () => { const { samples, rate } = chirp(); return classify(samples, 'a chirp, 1.5 s at 44.1 kHz', { samplingRate: rate }); });
if (params.has('autorun')) {
  await load();
  const { samples, rate } = chirp();
  await classify(samples, 'a chirp, 1.5 s at 44.1 kHz', { samplingRate: rate });
}
