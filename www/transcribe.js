// "Transcribe": pipeline('automatic-speech-recognition') (Whisper). Files go to the engine as they
// are (WAV decoded in Rust; other containers by the browser's decodeAudioData), recordings as the
// AudioBuffer the browser decodes; long audio in 30 s windows. The transcript is shown as it is
// decoded (onText), then its timed chunks, the real-time factor and the device. Text is set as
// text, never as HTML. `?autorun` loads the default model and transcribes the sample (the
// end-to-end test uses it; `&device=cpu` picks the device).
import { pipeline } from './pkg/index.js';
import { DEFAULTS, $, el, progressView, showError } from './spaces.js';

const params = new URLSearchParams(location.search);
let model = null;
let abort = null;

async function load() {
  model?.dispose();
  model = null;
  document.body.dataset.status = 'loading';
  try {
    model = await pipeline('automatic-speech-recognition', $('repo').value, { endpoint: DEFAULTS.endpoint, device: $('device').value, worker: $('worker').checked, onProgress: progressView('status') });
    const i = model.info;
    $('status').textContent = `Whisper (${i.multilingual ? 'multilingual' : 'English-only'}) on ${i.adapter} (${i.device})${i.fallbackReason ? `: ${i.fallbackReason}` : ''}${i.worker ? ', in a Worker' : ''}`;
    $('language').disabled = $('task').disabled = !i.multilingual;
    document.body.dataset.status = 'ready';
  } catch (err) {
    showError('status', err);
  }
}

const seconds = (t) => (t === null || t === undefined ? '…' : `${t.toFixed(2)} s`);

async function transcribe(audio, what) {
  if (!model) return;
  $('clip').textContent = what;
  $('transcript').textContent = '';
  $('chunks').tBodies[0].replaceChildren();
  document.body.dataset.status = 'running';
  abort = new AbortController();
  $('stop').disabled = false;
  try {
    const options = { returnTimestamps: $('timestamps').checked, signal: abort.signal, onText: (text) => { $('transcript').textContent = text; } };
    if (model.info.multilingual) {
      if ($('language').value.trim()) options.language = $('language').value.trim();
      options.task = $('task').value;
    }
    const result = await model.transcribe(audio, options);
    $('transcript').textContent = result.text;
    $('chunks').tBodies[0].replaceChildren(...(result.chunks ?? []).map((c) => {
      const tr = el('tr');
      tr.append(el('td', seconds(c.timestamp[0])), el('td', seconds(c.timestamp[1])), el('td', c.text));
      return tr;
    }));
    const t = result.timings;
    $('stats').textContent = `${t.audio_s.toFixed(1)} s of audio in ${(t.total_ms / 1000).toFixed(1)} s: ${t.real_time_factor.toFixed(2)}× real time on ${model.info.adapter} (${model.info.device}); ${t.tokens} tokens${result.language ? `; language ${result.language}` : ''}.`;
    window.transcribeResult = result;
    document.body.dataset.status = 'done';
  } catch (err) {
    showError('stats', err);
  } finally {
    $('stop').disabled = true;
  }
}

let recording = null;
async function record() {
  if (recording) return recording.stop();
  try {
    const stream = await navigator.mediaDevices.getUserMedia({ audio: true });
    const recorder = new MediaRecorder(stream);
    const parts = [];
    recorder.ondataavailable = (e) => parts.push(e.data);
    const stopped = new Promise((r) => { recorder.onstop = r; });
    recorder.start();
    recording = recorder;
    $('record').textContent = 'Stop recording';
    $('clip').textContent = 'recording…';
    await stopped;
    recording = null;
    $('record').textContent = 'Record from the microphone';
    for (const t of stream.getTracks()) t.stop();
    const ctx = new AudioContext();
    const buffer = await ctx.decodeAudioData(await new Blob(parts).arrayBuffer());
    await ctx.close();
    await transcribe(buffer, `a ${buffer.duration.toFixed(1)} s recording at ${buffer.sampleRate} Hz`);
  } catch (err) {
    recording = null;
    showError('stats', err);
  }
}

const sample = async () => new Uint8Array(await (await fetch('samples/fox.wav')).arrayBuffer());

$('repo').value = DEFAULTS.transcribe.repo;
if (params.has('device')) $('device').value = params.get('device');
$('load').addEventListener('click', load);
$('record').addEventListener('click', record);
$('stop').addEventListener('click', () => abort?.abort());
$('file').addEventListener('change', (e) => e.target.files[0] && transcribe(e.target.files[0], e.target.files[0].name));
$('drop').addEventListener('dragover', (e) => e.preventDefault());
$('drop').addEventListener('drop', (e) => { e.preventDefault(); const f = e.dataTransfer.files[0]; if (f) transcribe(f, f.name); });
$('sample').addEventListener('click', async () => transcribe(await sample(), 'the sample: espeak-ng reading "The quick brown fox jumps over the lazy dog."'));
if (params.has('autorun')) {
  $('timestamps').checked = true;
  await load();
  await transcribe(await sample(), 'the sample: espeak-ng reading "The quick brown fox jumps over the lazy dog."');
}
