// End-to-end check of the gateway with the official `openai` package for Node.
//
// Environment: NEXUS_BASE_URL (e.g. http://127.0.0.1:8080/v1), NEXUS_API_KEY, NEXUS_MODEL.
// Its steps run as tests/js/e2e_steps.mjs says; the summary names the `openai` version.
// Run by tests/clients/test_openai_node.py against a real gateway and the real SmolLM2 worker.

import assert from "node:assert/strict";

import OpenAI from "openai";
import { VERSION } from "openai/version";

import { assertNonEmptyString, required, runSteps, step } from "./e2e_steps.mjs";

const SCRIPT = "openai_e2e";
const baseURL = required(SCRIPT, "NEXUS_BASE_URL");
const apiKey = required(SCRIPT, "NEXUS_API_KEY");
const model = required(SCRIPT, "NEXUS_MODEL");

// No retries: a failure shows as it happened. The model is small but the CPU may be shared.
const client = new OpenAI({ baseURL, apiKey, maxRetries: 0, timeout: 120_000 });

const WEATHER_PARAMETERS = {
  type: "object",
  properties: { city: { type: "string" } },
  required: ["city"],
};
const CHAT_TOOLS = [{
  type: "function",
  function: {
    name: "get_weather",
    description: "The current weather in a city.",
    parameters: WEATHER_PARAMETERS,
  },
}];
const RESPONSES_TOOLS = [{
  type: "function",
  name: "get_weather",
  description: "The current weather in a city.",
  parameters: WEATHER_PARAMETERS,
  strict: false,
}];
const WEATHER_QUESTION = "What is the weather in Paris?";
// SmolLM2-135M ends this reply by itself (9 tokens, greedy): a response that reaches
// max_output_tokens is "incomplete" (and its stream ends with response.incomplete), as OpenAI's.
const GREETING = { input: "Hi!", instructions: "Answer in a few words.", max_output_tokens: 48 };
const TOOL_RESULT = '{"temp_c": 21}';
// A forced call is `<tool_call>{"name": ..., "arguments": {...}}</tool_call>`: ~30 tokens.
// The grammar ends the reply there, so this bound is not reached.
const TOOL_CALL_MAX_TOKENS = 60;

const isObject = (value) => typeof value === "object" && value !== null && !Array.isArray(value);

function parseJsonObject(text, what) {
  let parsed;
  try {
    parsed = JSON.parse(text);
  } catch (error) {
    assert.fail(`${what} is not JSON (${error.message}): ${JSON.stringify(text)}`);
  }
  assert.ok(isObject(parsed), `${what} should be a JSON object: ${text}`);
  return parsed;
}

/** Consecutive repeats of one event type collapsed into one: a, b, b, c -> a, b, c. */
function collapseRepeats(types) {
  return types.filter((type, i) => i === 0 || type !== types[i - 1]);
}

// 1. The model list
step("models.list", async () => {
  const ids = [];
  for await (const item of client.models.list()) ids.push(item.id);
  assert.ok(ids.includes(model), `${model} is not in /v1/models: ${JSON.stringify(ids)}`);
  return { models: ids.length };
});

// 2. A chat completion
step("chat.completions", async () => {
  const completion = await client.chat.completions.create({
    model,
    messages: [{ role: "user", content: "Say hello." }],
    max_tokens: 12,
    temperature: 0,
  });
  assert.equal(completion.object, "chat.completion");
  assertNonEmptyString(completion.id, "id");
  const [choice] = completion.choices;
  assert.equal(choice.message.role, "assistant");
  assertNonEmptyString(choice.message.content, "message.content");
  assert.ok(["stop", "length"].includes(choice.finish_reason), choice.finish_reason);
  assert.ok(completion.usage.completion_tokens > 0, "usage.completion_tokens should be > 0");
  assert.ok(completion.usage.prompt_tokens > 0, "usage.prompt_tokens should be > 0");
  return { text: choice.message.content, usage: completion.usage };
});

// 3. A streamed chat completion, with usage in the last chunk
step("chat.completions.stream", async () => {
  const stream = await client.chat.completions.create({
    model,
    messages: [{ role: "user", content: "Count from one to five." }],
    max_tokens: 12,
    temperature: 0,
    stream: true,
    stream_options: { include_usage: true },
  });
  const chunks = [];
  for await (const chunk of stream) chunks.push(chunk);
  assert.ok(chunks.length >= 3, `expected several chunks, got ${chunks.length}`);
  for (const chunk of chunks) assert.equal(chunk.object, "chat.completion.chunk");
  const text = chunks.map((c) => c.choices[0]?.delta?.content ?? "").join("");
  assertNonEmptyString(text, "the streamed text");
  const finishes = chunks.map((c) => c.choices[0]?.finish_reason).filter(Boolean);
  assert.equal(finishes.length, 1, `one finish_reason expected: ${JSON.stringify(finishes)}`);
  assert.ok(["stop", "length"].includes(finishes[0]), finishes[0]);
  const last = chunks.at(-1);
  assert.ok(last.usage, "the last chunk should carry usage");
  assert.deepEqual(last.choices, [], "the usage chunk should have no choices");
  assert.ok(last.usage.completion_tokens > 0, "usage.completion_tokens should be > 0");
  return { chunks: chunks.length, text, usage: last.usage };
});

// 4. A forced tool call, then the turn with the tool's result
step("chat.tools", async () => {
  const messages = [{ role: "user", content: WEATHER_QUESTION }];
  const first = await client.chat.completions.create({
    model,
    messages,
    tools: CHAT_TOOLS,
    tool_choice: { type: "function", function: { name: "get_weather" } },
    max_tokens: TOOL_CALL_MAX_TOKENS,
    temperature: 0,
  });
  const [choice] = first.choices;
  assert.equal(choice.finish_reason, "tool_calls");
  const calls = choice.message.tool_calls;
  assert.ok(Array.isArray(calls), `message.tool_calls should be an array: ${JSON.stringify(calls)}`);
  assert.equal(calls.length, 1, `one tool call expected: ${JSON.stringify(calls)}`);
  const [call] = calls;
  assertNonEmptyString(call.id, "tool_calls[0].id");
  assert.equal(call.type, "function");
  assert.equal(call.function.name, "get_weather");
  const args = parseJsonObject(call.function.arguments, "tool_calls[0].function.arguments");

  const second = await client.chat.completions.create({
    model,
    messages: [
      ...messages,
      { role: "assistant", content: null, tool_calls: calls },
      { role: "tool", tool_call_id: call.id, content: TOOL_RESULT },
    ],
    tools: CHAT_TOOLS,
    tool_choice: "none",
    max_tokens: 16,
    temperature: 0,
  });
  const [reply] = second.choices;
  assert.ok(["stop", "length"].includes(reply.finish_reason),
    `the follow-up should be text, finish_reason ${reply.finish_reason}`);
  assert.equal(typeof reply.message.content, "string", "the follow-up content should be text");
  assert.ok(!reply.message.tool_calls?.length, "the follow-up should not call a tool");
  return { arguments: args, reply: reply.message.content };
});

// 5. The same forced tool call, streamed as OpenAI tool-call deltas
step("chat.tools.stream", async () => {
  const stream = await client.chat.completions.create({
    model,
    messages: [{ role: "user", content: WEATHER_QUESTION }],
    tools: CHAT_TOOLS,
    tool_choice: { type: "function", function: { name: "get_weather" } },
    max_tokens: TOOL_CALL_MAX_TOKENS,
    temperature: 0,
    stream: true,
  });
  const calls = new Map(); // index -> the call joined from its deltas
  let deltas = 0;
  let finishReason = null;
  for await (const chunk of stream) {
    const [choice] = chunk.choices;
    if (!choice) continue;
    for (const delta of choice.delta?.tool_calls ?? []) {
      deltas += 1;
      assert.equal(typeof delta.index, "number", `a tool-call delta without index: ${JSON.stringify(delta)}`);
      const call = calls.get(delta.index) ?? { id: "", type: "", name: "", arguments: "" };
      call.id ||= delta.id ?? "";
      call.type ||= delta.type ?? "";
      call.name += delta.function?.name ?? "";
      call.arguments += delta.function?.arguments ?? "";
      calls.set(delta.index, call);
    }
    if (choice.finish_reason) finishReason = choice.finish_reason;
  }
  assert.equal(finishReason, "tool_calls");
  assert.equal(calls.size, 1, `one streamed tool call expected: ${JSON.stringify([...calls])}`);
  const [call] = calls.values();
  assertNonEmptyString(call.id, "the streamed call's id");
  assert.equal(call.type, "function");
  assert.equal(call.name, "get_weather");
  const args = parseJsonObject(call.arguments, "the joined streamed arguments");
  return { deltas, arguments: args };
});

// 6. A legacy text completion
step("completions", async () => {
  const completion = await client.completions.create({
    model,
    prompt: "The three primary colours are",
    max_tokens: 8,
    temperature: 0,
  });
  assert.equal(completion.object, "text_completion");
  const [choice] = completion.choices;
  assert.equal(typeof choice.text, "string");
  assert.ok(["stop", "length"].includes(choice.finish_reason), choice.finish_reason);
  assert.ok(completion.usage.completion_tokens > 0, "usage.completion_tokens should be > 0");
  return { text: choice.text };
});

// 7. Embeddings (the package asks for base64 and decodes the vectors)
step("embeddings", async () => {
  const result = await client.embeddings.create({ model, input: ["red", "green"] });
  assert.equal(result.object, "list");
  assert.equal(result.data.length, 2);
  result.data.forEach((item, i) => {
    assert.equal(item.object, "embedding");
    assert.equal(item.index, i);
    assert.equal(item.embedding.length, 576, `vector ${i} has ${item.embedding.length} dims`);
    assert.ok(item.embedding.every(Number.isFinite), `vector ${i} holds a non-finite number`);
  });
  assert.notDeepEqual(result.data[0].embedding, result.data[1].embedding);
  assert.ok(result.usage.prompt_tokens > 0, "usage.prompt_tokens should be > 0");
  return { dimensions: result.data.map((d) => d.embedding.length) };
});

// 8. A response (the Responses API)
step("responses", async () => {
  const response = await client.responses.create({
    model,
    ...GREETING,
    temperature: 0,
    metadata: { suite: "node" },
  });
  assert.equal(response.object, "response");
  assert.ok(response.id?.startsWith("resp_"), `id should start with resp_: ${response.id}`);
  assert.equal(response.status, "completed", `status ${response.status} (incomplete_details `
    + `${JSON.stringify(response.incomplete_details)}, text ${JSON.stringify(response.output_text)})`);
  assert.ok(response.output.length >= 1, "output should hold an item");
  const [message] = response.output;
  assert.equal(message.type, "message");
  assert.equal(message.role, "assistant");
  assert.equal(message.content[0]?.type, "output_text");
  assertNonEmptyString(response.output_text, "output_text");
  assert.ok(response.usage.input_tokens > 0, "usage.input_tokens should be > 0");
  assert.ok(response.usage.output_tokens > 0, "usage.output_tokens should be > 0");
  assert.equal(response.metadata?.suite, "node");
  return { id: response.id, text: response.output_text, usage: response.usage };
});

// 9. A streamed response: the events in their order
step("responses.stream", async () => {
  const stream = await client.responses.create({
    model,
    ...GREETING,
    temperature: 0,
    stream: true,
  });
  const events = [];
  for await (const event of stream) events.push(event);
  const types = events.map((e) => e.type);
  const expected = [
    "response.created",
    "response.in_progress",
    "response.output_item.added",
    "response.content_part.added",
    "response.output_text.delta",
    "response.output_text.done",
    "response.content_part.done",
    "response.output_item.done",
    "response.completed",
  ];
  assert.deepEqual(collapseRepeats(types), expected,
    `the event types in order: ${JSON.stringify(types)}`);
  const text = events.filter((e) => e.type === "response.output_text.delta")
    .map((e) => e.delta).join("");
  const done = events.find((e) => e.type === "response.output_text.done");
  assert.equal(done.text, text, "output_text.done should hold the joined deltas");
  const completed = events.at(-1);
  assert.equal(completed.response.status, "completed",
    `incomplete_details ${JSON.stringify(completed.response.incomplete_details)}`);
  assert.ok(completed.response.usage.output_tokens > 0,
    "the completed response's usage.output_tokens should be > 0");
  return {
    events: events.length,
    deltas: types.filter((t) => t === "response.output_text.delta").length,
    text,
  };
});

// 10. A forced function call with the Responses API, then the turn with its output
step("responses.tools", async () => {
  const question = { role: "user", content: WEATHER_QUESTION };
  const first = await client.responses.create({
    model,
    input: [question],
    tools: RESPONSES_TOOLS,
    tool_choice: { type: "function", name: "get_weather" },
    max_output_tokens: TOOL_CALL_MAX_TOKENS,
    temperature: 0,
  });
  assert.equal(first.status, "completed",
    `incomplete_details ${JSON.stringify(first.incomplete_details)}`);
  const call = first.output.find((item) => item.type === "function_call");
  assert.ok(call, `no function_call item in output: ${JSON.stringify(first.output)}`);
  assert.equal(call.name, "get_weather");
  assertNonEmptyString(call.call_id, "function_call.call_id");
  const args = parseJsonObject(call.arguments, "function_call.arguments");

  const second = await client.responses.create({
    model,
    input: [
      question,
      call,
      { type: "function_call_output", call_id: call.call_id, output: TOOL_RESULT },
    ],
    tools: RESPONSES_TOOLS,
    max_output_tokens: 16,
    temperature: 0,
  });
  const message = second.output.find((item) => item.type === "message");
  assert.ok(message, `no message item in the follow-up: ${JSON.stringify(second.output)}`);
  const text = message.content.filter((p) => p.type === "output_text").map((p) => p.text).join("");
  assert.equal(typeof text, "string");
  assert.equal(typeof second.output_text, "string");
  assert.ok(["completed", "incomplete"].includes(second.status), second.status);
  return { arguments: args, call_id: call.call_id, reply: second.output_text };
});

function describe(error) {
  if (error instanceof OpenAI.APIError) {
    const body = error.error === undefined ? "" : ` ${JSON.stringify(error.error)}`;
    return `${error.constructor.name} (HTTP ${error.status ?? "-"}): ${error.message}${body}`;
  }
  if (error instanceof assert.AssertionError) return `AssertionError: ${error.message}`;
  return error?.stack ?? String(error);
}

await runSteps(SCRIPT, describe, { openai: VERSION });
