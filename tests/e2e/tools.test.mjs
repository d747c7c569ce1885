// End to end: tool calls through chat.completions.create in Chromium, on a tiny random
// Qwen2.5-style checkpoint with Qwen2.5-Instruct's chat template (tests/fixtures/tools, served by
// the local hub mirror): the call's arguments validate against the tool's schema (Ajv), the
// conversation with the call and the tool's answer renders as transformers' apply_chat_template
// renders it (tests/fixtures/tools/expected.json), streaming gives OpenAI's tool_calls deltas, and
// what cannot be done is a typed error.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import Ajv from 'ajv';
import { servedSpacesAndBrowser } from './browser.mjs';

const EXPECTED = JSON.parse(readFileSync('tests/fixtures/tools/expected.json', 'utf8'));
const spaces = servedSpacesAndBrowser();

test('tool calls: constrained to the schema, rendered back as transformers does, streamed, typed errors', { timeout: 600_000 }, async () => {
  const page = await spaces.browser.newPage();
  const problems = [];
  page.on('pageerror', (err) => problems.push(`pageerror: ${err.message}`));
  await page.goto(`${spaces.url}search-corpus.json`);
  const out = await page.evaluate(async (expected) => {
    const { pipeline } = await import('./pkg/index.js');
    const chat = await pipeline('text-generation', 'hugrt-test/tiny-qwen2.5-tools', { endpoint: location.origin, device: 'cpu', context: 1024 });
    const { tools, first, conversation } = expected;
    const ask = (extra) => chat.chat.completions.create({ messages: first, tools, max_tokens: 120, parallel_tool_calls: false, ...extra });
    const r = {};
    const required = await ask({ tool_choice: 'required' });
    r.required = required.choices[0];
    const named = await ask({ tool_choice: { type: 'function', function: { name: 'lookup' } }, temperature: 1, seed: 3 });
    r.named = named.choices[0];
    // The fixture's conversation as OpenAI sends it back (arguments as a JSON string, no content).
    const openai = conversation.map((m) => (m.tool_calls
      ? { ...m, content: null, tool_calls: m.tool_calls.map((c) => ({ ...c, function: { ...c.function, arguments: JSON.stringify(c.function.arguments) } })) } : m));
    r.rendered = await chat.applyChatTemplate(openai, { tools });
    r.renderedPlain = await chat.applyChatTemplate(openai);
    // The model's own call fed back with an answer, then a text turn (tool_choice none).
    const call = required.choices[0].message.tool_calls[0];
    const followUp = await chat.chat.completions.create({ messages: [...first, required.choices[0].message, { role: 'tool', tool_call_id: call.id, content: '{"temperature": 21}' }],
      tools, tool_choice: 'none', max_tokens: 8 });
    r.followUp = followUp.choices[0];
    const chunks = [];
    for await (const c of await ask({ tool_choice: 'required', stream: true, temperature: 1, seed: 9 })) chunks.push(c);
    r.chunks = chunks.map((c) => c.choices[0]);
    const code = async (request, model = chat) => { try { await model.chat.completions.create({ messages: first, max_tokens: 4, ...request }); return 'none'; } catch (e) { return e.code; } };
    r.unknownTool = await code({ tools, tool_choice: { type: 'function', function: { name: 'nope' } } });
    r.badChoice = await code({ tools, tool_choice: 'sometimes' });
    r.toolsAndFormat = await code({ tools, response_format: { type: 'json_object' } });
    const chatml = await pipeline('text-generation', 'hugrt-test/tiny-qwen2', { endpoint: location.origin, device: 'cpu' });
    r.noToolTemplate = await code({ tools }, chatml);
    chat.dispose(); chatml.dispose();
    return r;
  }, EXPECTED);
  console.log(JSON.stringify({ required: out.required, named: out.named, followUp: out.followUp }, null, 1));
  const schemas = Object.fromEntries(EXPECTED.tools.map((t) => [t.function.name, new Ajv({ strict: false }).compile(t.function.parameters)]));
  for (const [name, choice, only] of [['required', out.required, null], ['named', out.named, 'lookup']]) {
    assert.equal(choice.finish_reason, 'tool_calls', name);
    assert.equal(choice.message.content, null);
    assert.equal(choice.message.tool_calls.length, 1, 'parallel_tool_calls: false');
    for (const c of choice.message.tool_calls) {
      assert.equal(c.type, 'function');
      assert.match(c.id, /^call_/);
      if (only) assert.equal(c.function.name, only);
      const validate = schemas[c.function.name];
      assert.ok(validate, `unknown tool ${c.function.name}`);
      assert.ok(validate(JSON.parse(c.function.arguments)), `${name}: ${c.function.arguments}: ${JSON.stringify(validate.errors)}`);
    }
  }
  assert.equal(out.rendered, EXPECTED.with_tools, "transformers' apply_chat_template(conversation, tools=tools)");
  assert.equal(out.renderedPlain, EXPECTED.without_tools);
  assert.ok(['stop', 'length'].includes(out.followUp.finish_reason) && typeof out.followUp.message.content === 'string', JSON.stringify(out.followUp));
  // Streamed: the role first, then one tool_calls delta, then finish_reason tool_calls.
  assert.deepEqual(out.chunks[0].delta, { role: 'assistant', content: '' });
  const deltas = out.chunks.filter((c) => c.delta.tool_calls);
  assert.equal(deltas.length, 1);
  const streamed = deltas[0].delta.tool_calls[0];
  assert.equal(streamed.index, 0);
  assert.ok(schemas[streamed.function.name](JSON.parse(streamed.function.arguments)), streamed.function.arguments);
  assert.equal(out.chunks.at(-1).finish_reason, 'tool_calls');
  assert.deepEqual({ unknownTool: out.unknownTool, badChoice: out.badChoice, toolsAndFormat: out.toolsAndFormat, noToolTemplate: out.noToolTemplate },
    { unknownTool: 'Usage', badChoice: 'Usage', toolsAndFormat: 'Usage', noToolTemplate: 'Unsupported' });
  assert.deepEqual(problems, []);
  await page.close();
});
