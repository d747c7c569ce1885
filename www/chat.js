// The chat space: pipeline('text-generation') with the model's chat template, streamed answers,
// a stop button and tokens/s. Answers are shown as text nodes (a model's "<img onerror>" stays text).
// `?autorun` loads the default model and asks a fixed question (the end-to-end test uses it);
// `?say=TEXT` sets the question.
import { pipeline } from './pkg/index.js';
import { DEFAULTS, $, el, appendText, progressView, showError } from './spaces.js';

let chat = null;
let messages = [];
let stopper = null;

async function load(event) {
  event?.preventDefault();
  $('load').disabled = true;
  document.body.dataset.status = 'loading';
  try {
    chat?.dispose();
    chat = null;
    const t0 = performance.now();
    chat = await pipeline('text-generation', $('repo').value, {
      endpoint: DEFAULTS.endpoint, file: $('file').value || undefined, context: 2048,
      worker: $('worker').checked, onProgress: progressView('status'),
    });
    $('status').textContent = `Loaded ${chat.info.repo} (${chat.info.file}, commit ${chat.info.commit.slice(0, 8)}) in ` +
      `${((performance.now() - t0) / 1000).toFixed(1)} s on ${chat.info.adapter || 'WebGPU'}${chat.info.worker ? ', in a Worker' : ''}.`;
    $('send').disabled = false;
    document.body.dataset.status = 'ready';
  } catch (err) {
    showError('status', err);
  } finally {
    $('load').disabled = false;
  }
}

async function send(event) {
  event?.preventDefault();
  const text = $('prompt').value.trim();
  if (!chat || !text) return;
  messages.push({ role: 'user', content: text });
  $('conversation').append(el('li', text, 'user'));
  const answer = el('li', '', 'assistant');
  $('conversation').append(answer);
  $('prompt').value = '';
  $('send').disabled = true;
  $('stop').disabled = false;
  document.body.dataset.status = 'generating';
  stopper = new AbortController();
  try {
    const stream = chat.stream(messages, { maxTokens: Number($('max').value), temperature: Number($('temperature').value), signal: stopper.signal });
    for await (const piece of stream) appendText(answer, piece);
    const r = await stream.result;
    messages.push({ role: 'assistant', content: r.text });
    $('stats').textContent = `${r.usage.promptTokens} prompt tokens (${r.usage.cachedTokens} from cache) at ${r.tokensPerSecond.prefill.toFixed(1)} tok/s; ` +
      `${r.usage.completionTokens} generated at ${r.tokensPerSecond.decode.toFixed(2)} tok/s; finish: ${r.finishReason}.`;
    window.chatResult = r;
    window.chatPipeline = chat; // for the end-to-end test
    document.body.dataset.status = 'done';
  } catch (err) {
    messages.pop();
    if (err.code === 'Aborted') {
      answer.append(el('em', ' [stopped]'));
      document.body.dataset.status = 'stopped';
    } else {
      showError('stats', err);
    }
  } finally {
    $('send').disabled = false;
    $('stop').disabled = true;
  }
}

$('repo').value = DEFAULTS.chat.repo;
$('file').value = DEFAULTS.chat.file;
$('load-form').addEventListener('submit', load);
$('chat-form').addEventListener('submit', send);
$('stop').addEventListener('click', () => stopper?.abort());
$('reset').addEventListener('click', () => { messages = []; $('conversation').replaceChildren(); });

const params = new URLSearchParams(location.search);
if (params.has('worker')) $('worker').checked = true;
if (params.has('autorun')) {
  await load();
  if (chat) {
    $('max').value = params.get('max') ?? '24';
    $('prompt').value = params.get('say') ?? 'What is the capital of France?';
    await send();
  }
}
