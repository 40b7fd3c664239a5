// End-to-end check of the gateway with the Vercel AI SDK (`ai`), through both of its OpenAI
// providers: `@ai-sdk/openai-compatible` (chat completions) and `@ai-sdk/openai` (the Responses
// API, its default for `openai(model)`).
//
// Environment: NEXUS_BASE_URL (e.g. http://127.0.0.1:8080/v1), NEXUS_API_KEY, NEXUS_MODEL.
// Its steps run as tests/js/e2e_steps.mjs says; the summary names the `ai` version.
// Run by tests/clients/test_ai_sdk.py against a real gateway and the real SmolLM2 worker.
// The model is tiny: the steps check what the SDK parsed, not how good the answers are.

import assert from "node:assert/strict";
import { readFileSync } from "node:fs";

import { createOpenAI } from "@ai-sdk/openai";
import { createOpenAICompatible } from "@ai-sdk/openai-compatible";
import {
  APICallError, embedMany, generateObject, generateText, streamText, tool,
} from "ai";
import { z } from "zod";

import { assertNonEmptyString, required, runSteps, step } from "../../js/e2e_steps.mjs";

const SCRIPT = "ai_sdk_e2e";
const baseURL = required(SCRIPT, "NEXUS_BASE_URL");
const apiKey = required(SCRIPT, "NEXUS_API_KEY");
const modelId = required(SCRIPT, "NEXUS_MODEL");

// Chat completions; structured outputs on, so a schema is sent as response_format json_schema.
const compatible = createOpenAICompatible({
  name: "nexus", baseURL, apiKey, includeUsage: true, supportsStructuredOutputs: true,
});
// OpenAI's own provider: `openai(id)` is its Responses model.
const openai = createOpenAI({ baseURL, apiKey });

// No retries: a failure shows as it happened. Greedy decoding, so a run is repeatable.
const SETTINGS = { maxRetries: 0, temperature: 0, seed: 7 };
const WEATHER_QUESTION = "What is the weather in Paris?";
const weatherTool = () => tool({
  description: "The current weather in a city.",
  inputSchema: z.object({ city: z.string() }),
});
// A forced call is `<tool_call>{"name": ..., "arguments": {...}}</tool_call>`: ~30 tokens.
const TOOL_CALL_MAX_TOKENS = 60;
const PERSON = z.object({
  name: z.string().max(24),
  age: z.number().int(),
});
const PERSON_PROMPT = "Invent a person: give a name and an age.";

async function generate(model) {
  const result = await generateText({
    model, ...SETTINGS, prompt: "Say hello.", maxOutputTokens: 12,
  });
  assertNonEmptyString(result.text, "text");
  assert.ok(["stop", "length"].includes(result.finishReason), result.finishReason);
  assert.ok(result.usage.inputTokens > 0, `usage.inputTokens: ${JSON.stringify(result.usage)}`);
  assert.ok(result.usage.outputTokens > 0, `usage.outputTokens: ${JSON.stringify(result.usage)}`);
  return { text: result.text, usage: result.usage };
}

async function stream(model) {
  const result = streamText({
    model, ...SETTINGS, prompt: "Count from one to five.", maxOutputTokens: 16,
    onError: () => {}, // the error is thrown again by the awaits below
  });
  const deltas = [];
  for await (const delta of result.textStream) deltas.push(delta);
  assert.ok(deltas.length >= 3, `expected several text deltas, got ${JSON.stringify(deltas)}`);
  const text = await result.text;
  assert.equal(text, deltas.join(""), "the text should be the joined deltas");
  assertNonEmptyString(text, "the streamed text");
  assert.ok(["stop", "length"].includes(await result.finishReason), await result.finishReason);
  const usage = await result.usage;
  assert.ok(usage.outputTokens > 0, `usage.outputTokens: ${JSON.stringify(usage)}`);
  return { deltas: deltas.length, text, usage };
}

async function forcedTool(model) {
  const result = await generateText({
    model, ...SETTINGS, prompt: WEATHER_QUESTION, maxOutputTokens: TOOL_CALL_MAX_TOKENS,
    tools: { get_weather: weatherTool() },
    toolChoice: { type: "tool", toolName: "get_weather" },
  });
  assert.equal(result.finishReason, "tool-calls");
  assert.equal(result.toolCalls.length, 1, `one tool call expected: ${JSON.stringify(result.toolCalls)}`);
  const [call] = result.toolCalls;
  assert.equal(call.toolName, "get_weather");
  assert.ok(!call.invalid, `the SDK could not parse the call: ${JSON.stringify(call)}`);
  assertNonEmptyString(call.toolCallId, "toolCallId");
  assert.equal(typeof call.input.city, "string", `input: ${JSON.stringify(call.input)}`);
  return { input: call.input };
}

async function streamedTool(model) {
  const result = streamText({
    model, ...SETTINGS, prompt: WEATHER_QUESTION, maxOutputTokens: TOOL_CALL_MAX_TOKENS,
    tools: { get_weather: weatherTool() },
    toolChoice: { type: "tool", toolName: "get_weather" },
    onError: () => {},
  });
  const parts = [];
  for await (const part of result.fullStream) {
    if (part.type === "error") throw part.error;
    parts.push(part);
  }
  const calls = parts.filter((p) => p.type === "tool-call");
  assert.equal(calls.length, 1, `one tool-call part expected: ${JSON.stringify(parts)}`);
  const [call] = calls;
  assert.equal(call.toolName, "get_weather");
  assert.ok(!call.invalid, `the SDK could not parse the call: ${JSON.stringify(call)}`);
  assert.equal(typeof call.input.city, "string", `input: ${JSON.stringify(call.input)}`);
  assert.equal(await result.finishReason, "tool-calls");
  return {
    inputDeltas: parts.filter((p) => p.type === "tool-input-delta").length,
    input: call.input,
  };
}

async function structured(model) {
  const result = await generateObject({
    model, ...SETTINGS, schema: PERSON, schemaName: "person", prompt: PERSON_PROMPT,
    maxOutputTokens: 64,
  });
  // generateObject has already validated the JSON against the zod schema; check it again.
  const person = PERSON.parse(result.object);
  assert.ok(["stop", "length"].includes(result.finishReason), result.finishReason);
  return { object: person };
}

async function embed(model) {
  const values = ["red", "green", "blue"];
  const result = await embedMany({ model, values, maxRetries: 0 });
  assert.equal(result.embeddings.length, values.length);
  for (const [i, vector] of result.embeddings.entries()) {
    assert.equal(vector.length, 576, `vector ${i} has ${vector.length} dims`);
    assert.ok(vector.every(Number.isFinite), `vector ${i} holds a non-finite number`);
  }
  assert.notDeepEqual(result.embeddings[0], result.embeddings[1]);
  return { dimensions: result.embeddings.map((v) => v.length) };
}

// Chat completions, through @ai-sdk/openai-compatible
step("compatible.generateText", () => generate(compatible(modelId)));
step("compatible.streamText", () => stream(compatible(modelId)));
step("compatible.tool", () => forcedTool(compatible(modelId)));
step("compatible.tool.stream", () => streamedTool(compatible(modelId)));
step("compatible.generateObject", () => structured(compatible(modelId)));
step("compatible.embedMany", () => embed(compatible.embeddingModel(modelId)));
// The Responses API, through @ai-sdk/openai
step("openai.generateText", () => generate(openai(modelId)));
step("openai.streamText", () => stream(openai(modelId)));
step("openai.tool", () => forcedTool(openai(modelId)));
step("openai.generateObject", () => structured(openai(modelId)));
step("openai.embedMany", () => embed(openai.embedding(modelId)));

function describe(error) {
  if (APICallError.isInstance(error)) {
    return `APICallError (HTTP ${error.statusCode ?? "-"}) ${error.url}: ${error.message}\n`
      + `  request: ${JSON.stringify(error.requestBodyValues)}\n  response: ${error.responseBody}`;
  }
  if (error instanceof assert.AssertionError) return `AssertionError: ${error.message}`;
  const extra = error?.text === undefined ? "" : `\n  text: ${JSON.stringify(error.text)}`;
  return `${error?.name ?? "Error"}: ${error?.message ?? String(error)}${extra}`;
}

const { version } = JSON.parse(readFileSync(new URL("./node_modules/ai/package.json",
  import.meta.url), "utf8"));
await runSteps(SCRIPT, describe, { ai: version });
