"""The Vercel AI SDK for Node (`ai` with `@ai-sdk/openai-compatible` and `@ai-sdk/openai`), run
by tests/clients/js/ai_sdk_e2e.mjs against a real gateway subprocess and the real SmolLM2 worker:
generateText, streamText, a forced tool (also streamed), generateObject with a zod schema and
embedMany, on chat completions and on the Responses API, each parsed by the SDK itself."""

from __future__ import annotations

import json
import os
import subprocess

import pytest

from tests.clients.conftest import CREDIT
from tests.support.node_packages import AI_SDK_DIR, install_pinned, require_node
from tests.support.processes import clean_environ

SCRIPT = AI_SDK_DIR / "ai_sdk_e2e.mjs"
STEPS = [
    "compatible.generateText", "compatible.streamText", "compatible.tool",
    "compatible.tool.stream", "compatible.generateObject", "compatible.embedMany",
    "openai.generateText", "openai.streamText", "openai.tool", "openai.generateObject",
    "openai.embedMany",
]


@pytest.mark.slow
def test_the_vercel_ai_sdk_against_the_real_worker(network) -> None:
    node = require_node()
    install_pinned(AI_SDK_DIR)

    env = clean_environ()
    env.update({"NEXUS_BASE_URL": network.base_url, "NEXUS_API_KEY": network.api_key,
                "NEXUS_MODEL": network.model})
    for name in ("OPENAI_BASE_URL", "OPENAI_API_KEY", "AI_GATEWAY_API_KEY"):
        env.pop(name, None)  # the script passes its own; keep stray settings out
    try:
        run = subprocess.run(
            [node, str(SCRIPT)], cwd=AI_SDK_DIR, env=env, capture_output=True, text=True,
            timeout=int(os.environ.get("NEXUS_NODE_E2E_TIMEOUT", "600")), check=False,
        )
    except subprocess.TimeoutExpired as timeout:  # the steps that ended are on its stderr
        pytest.fail(f"{SCRIPT.name} ran past {timeout.timeout} s:\n{timeout.stderr or ''}")
    report = f"stdout:\n{run.stdout}\nstderr:\n{run.stderr}"
    lines = run.stdout.strip().splitlines()
    assert lines, report
    summary = json.loads(lines[-1])
    print(json.dumps(summary, indent=1))  # shown with -s, or with the report of a failure
    assert [step["name"] for step in summary["steps"]] == STEPS, report
    failed = [f"{step['name']}: {step['error']}" for step in summary["steps"] if not step["ok"]]
    assert not failed, "\n".join(failed)
    assert run.returncode == 0 and summary["ok"] is True, report
    pinned = json.loads((AI_SDK_DIR / "package.json").read_text())["dependencies"]
    assert summary["ai"] == pinned["ai"]
    steps = {step["name"]: step for step in summary["steps"]}
    assert steps["compatible.embedMany"]["dimensions"] == [576, 576, 576]
    assert steps["openai.embedMany"]["dimensions"] == [576, 576, 576]
    assert steps["compatible.streamText"]["deltas"] >= 3

    network.gateway.assert_paid_from(network.wallet, CREDIT)
