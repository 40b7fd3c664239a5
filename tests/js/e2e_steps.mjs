// The step runner of the Node.js end-to-end scripts (tests/js/openai_e2e.mjs,
// tests/clients/js/ai_sdk_e2e.mjs); it needs no package.
//
// A script reads its settings with `required`, declares its steps with `step`, then calls
// `runSteps`: every step runs in order (a failed one does not stop the later ones), each is
// reported on stderr as it ends, and one JSON summary line goes to stdout:
// {"ok", "node", ...versions, "steps": [{"name", "ok", "ms", ...}]}. The process exits 0 when
// every step passed; otherwise it lists the failures on stderr and exits 1.

import assert from "node:assert/strict";
import process from "node:process";

const steps = [];

/** An environment variable the script cannot run without (exit 2 when it is not set). */
export function required(script, name) {
  const value = process.env[name];
  if (!value) {
    console.error(`${script}: the environment variable ${name} is not set`);
    process.exit(2);
  }
  return value;
}

export function assertNonEmptyString(value, what) {
  assert.equal(typeof value, "string", `${what} should be a string, got ${typeof value}`);
  assert.ok(value.length > 0, `${what} should not be empty`);
}

/** Declare a step; `run` returns details for the summary (or nothing). */
export function step(name, run) {
  steps.push({ name, run });
}

/** Run the declared steps; `describe` turns an error into one message. */
export async function runSteps(script, describe, versions) {
  const results = [];
  for (const [i, { name, run }] of steps.entries()) {
    const started = performance.now();
    try {
      const details = await run();
      const ms = Math.round(performance.now() - started);
      results.push({ name, ok: true, ms, ...details });
      console.error(`${script}: step ${i + 1} (${name}) passed in ${ms} ms`);
    } catch (error) {
      const message = describe(error);
      results.push({ name, ok: false, ms: Math.round(performance.now() - started), error: message });
      console.error(`${script}: step ${i + 1} (${name}) failed: ${message}`);
    }
  }
  const failed = results.filter((r) => !r.ok);
  console.log(JSON.stringify({ ok: failed.length === 0, node: process.version, ...versions,
    steps: results }));
  if (failed.length) {
    console.error(`${script}: ${failed.length} of ${results.length} steps failed: `
      + failed.map((r) => r.name).join(", "));
    process.exit(1);
  }
}
