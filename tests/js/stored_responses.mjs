// Stored Responses through the official `openai` npm package: create with store, continue with
// previous_response_id, retrieve, list the input items, delete (then retrieving is a 404).
// Prints one JSON line; NEXUS_BASE_URL, NEXUS_API_KEY and NEXUS_MODEL name the gateway.
import assert from "node:assert/strict";
import OpenAI from "openai";

const client = new OpenAI({ baseURL: process.env.NEXUS_BASE_URL, apiKey: process.env.NEXUS_API_KEY });
const model = process.env.NEXUS_MODEL;

const first = await client.responses.create({ model, input: "My name is Ada.", store: true, max_output_tokens: 30 });
assert.equal(first.store, true);
const second = await client.responses.create({
  model, input: "What is my name?", store: true, previous_response_id: first.id, max_output_tokens: 30,
});
assert.equal(second.previous_response_id, first.id);
const retrieved = await client.responses.retrieve(first.id);
assert.equal(retrieved.id, first.id);
assert.equal(retrieved.output_text, first.output_text);
const items = [];
for await (const item of client.responses.inputItems.list(first.id)) items.push(item);
assert.equal(items.length, 1);
assert.equal(items[0].content[0].text, "My name is Ada.");
await client.responses.delete(first.id);
let status = 0;
try {
  await client.responses.retrieve(first.id);
} catch (error) {
  status = error.status;
}
assert.equal(status, 404);
console.log(JSON.stringify({ ok: true, first: first.id, second: second.id }));
