// A consumer of the package's declarations (js/index.d.ts), type-checked with `tsc --strict` by
// tests/e2e/types.test.mjs: the documented API type-checks, and misuse does not (@ts-expect-error).
import { type LabelScore, pipeline, cache, capabilities, env, HugrtError, Aborted, QuotaExceeded, type Progress, type GenerateResult, type ChatCompletionChunk } from 'hugrt';

export async function demo(signal: AbortSignal): Promise<string> {
  env.endpoint = 'http://127.0.0.1:8080';
  const onProgress = (p: Progress): void => {
    if (p.status === 'download') console.log(p.fileLoaded / p.fileTotal);
    else console.log(p.status, p.loaded);
  };
  const chat = await pipeline('text-generation', 'HuggingFaceTB/SmolLM2-135M-Instruct', { file: 'x.gguf', context: 512, signal, onProgress });
  const r: GenerateResult = await chat.generate('Hi', { maxTokens: 8, temperature: 0.7, topP: 0.9, seed: 1, stop: ['.'] });
  const reason: 'stop' | 'length' = r.finishReason;
  let text = '';
  for await (const piece of chat.stream([{ role: 'user', content: 'Hi' }], { maxTokens: 4 })) text += piece;
  const chunks = await chat.chat.completions.create({ messages: [{ role: 'user', content: 'Hi' }], stream: true });
  for await (const c of chunks) {
    const chunk: ChatCompletionChunk = c;
    text += chunk.choices[0]?.delta.content ?? '';
  }
  const full = await chat.chat.completions.create({ messages: [{ role: 'user', content: 'Hi' }], max_tokens: 4 });
  text += full.choices[0]?.message.content ?? '';
  const schema = { type: 'object', properties: { name: { type: 'string' } }, required: ['name'] };
  const json = await chat.chat.completions.create({ messages: [{ role: 'user', content: 'Hi' }], logprobs: true, top_logprobs: 2, frequency_penalty: 0.5,
    response_format: { type: 'json_schema', json_schema: { name: 'person', schema, strict: true } } });
  const lp: number = json.choices[0]?.logprobs?.content[0]?.top_logprobs[0]?.logprob ?? 0;
  const regex = await chat.generate('x', { responseFormat: { type: 'regex', pattern: '[0-9]+' }, logprobs: true, onText: (piece, entries) => console.log(piece, entries?.length) });
  text += `${lp}${regex.logprobs?.[0]?.token}${regex.maskMs?.median}`;
  const tools = [{ type: 'function' as const, function: { name: 'get_weather', parameters: { type: 'object' } } }];
  const called = await chat.chat.completions.create({ messages: [{ role: 'user', content: 'Weather?' }], tools, tool_choice: 'required' });
  const calls = called.choices[0]?.message.tool_calls ?? [];
  const back = await chat.chat.completions.create({ messages: [{ role: 'user', content: 'Weather?' }, { role: 'assistant', content: null, tool_calls: calls },
    { role: 'tool', tool_call_id: calls[0]?.id ?? '', content: '{"t": 21}' }], tools });
  text += `${back.choices[0]?.finish_reason}${await chat.applyChatTemplate([{ role: 'user', content: 'x' }], { tools })}`;
  // transformers.js's call style.
  const [gen] = await chat('Once', { max_new_tokens: 4, do_sample: false });
  text += gen?.generated_text ?? '';
  const tensor = await (await pipeline('feature-extraction', 'x', { dtype: 'fp32', progress_callback: (e) => console.log(e.status) }))(['a'], { pooling: 'mean', normalize: true });
  const rows: number[][] = tensor.tolist();
  text += `${rows.length}${tensor.dims[1]}`;
  // @ts-expect-error: top_k is a number
  await (await pipeline('fill-mask', 'x'))('a [MASK]', { top_k: '5' });
  // @ts-expect-error: a regex format needs its pattern
  await chat.generate('x', { responseFormat: { type: 'regex' } });
  const embed = await pipeline('feature-extraction', 'sentence-transformers/all-MiniLM-L6-v2');
  const { data, dims }: { data: Float32Array; dims: [number, number] } = await embed.embed(['a', 'b']);
  const caps = await capabilities();
  const device: 'webgpu' | 'cpu' = caps.device;
  const revisions = await cache.list();
  const freed: number = await cache.delete(revisions[0]?.repo ?? '', revisions[0]?.commit ?? '');
  try {
    await chat.generate('x');
  } catch (err) {
    if (err instanceof Aborted || err instanceof QuotaExceeded) console.log(err.code);
    else if (err instanceof HugrtError) console.log(err.code, err.detail);
  }
  chat.dispose();
  embed.dispose();
  // @ts-expect-error: an unknown task
  await pipeline('text-to-sql', 'x');
  // @ts-expect-error: maxTokens is a number
  await chat.generate('x', { maxTokens: '8' });
  // @ts-expect-error: no such device
  await pipeline('text-generation', 'x', { device: 'tpu' });
  const vision = await pipeline('image-classification', 'google/vit-base-patch16-224');
  const top: LabelScore[] = await vision.classify(new Blob([]), { topK: 3 });
  const tops: LabelScore[][] = await vision.classify(['a.png', 'b.png']);
  const clip = await pipeline('zero-shot-image-classification', 'openai/clip-vit-base-patch32');
  const zs: LabelScore[] = await clip.classify('cat.jpg', ['cat', 'dog'], { hypothesisTemplate: 'a photo of a {}' });
  const sound = await pipeline('audio-classification', 'MIT/ast-finetuned-audioset-10-10-0.4593');
  const heard: LabelScore[] = await sound.classify(new Float32Array(16000), { samplingRate: 16000 });
  const mlm = await pipeline('fill-mask', 'google-bert/bert-base-uncased');
  const filled = await mlm.fill('Paris is the [MASK] of France.');
  const sentiment = await pipeline('text-classification', 'distilbert/distilbert-base-uncased-finetuned-sst-2-english');
  const [best]: LabelScore[] = await sentiment.classify('great!');
  const arch: string = sound.info.architecture;
  // @ts-expect-error: zero-shot needs labels
  await clip.classify('cat.jpg');
  // @ts-expect-error: fill-mask takes text
  await mlm.fill(new Float32Array(4));
  return `${reason}${text}${data.length}${dims[1]}${device}${freed}${top.length}${tops.length}${zs.length}${heard.length}${JSON.stringify(filled)}${best?.label}${arch}`;
}
