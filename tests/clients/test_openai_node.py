"""The gateway driven by the official `openai` package for Node (tests/js/openai_e2e.mjs), against
a real gateway subprocess and the real SmolLM2 worker: models, chat (plain, streamed, tool calls),
completions, embeddings and the Responses API, parsed by the SDK itself."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess

import pytest

from tests.support.node_packages import JS_DIR, install_pinned, require_node
from tests.support.processes import MODEL_ID, clean_environ, wait_for_workers

SCRIPT = JS_DIR / "openai_e2e.mjs"
STEPS = [
    "models.list", "chat.completions", "chat.completions.stream", "chat.tools",
    "chat.tools.stream", "completions", "embeddings", "responses", "responses.stream",
    "responses.tools",
]


@pytest.mark.slow
def test_the_openai_node_package_against_the_real_worker(gateway_process,
                                                          worker_process) -> None:
    node = require_node()
    install_pinned(JS_DIR)

    gateway = gateway_process()
    wallet, key = asyncio.run(gateway.funded_key(10_000_000))
    wait_for_workers(gateway.url, 1, timeout=120, process=worker_process(gateway.url))

    env = clean_environ()
    env.update({"NEXUS_BASE_URL": gateway.url + "/v1", "NEXUS_API_KEY": key,
                "NEXUS_MODEL": MODEL_ID})
    env.pop("OPENAI_BASE_URL", None)  # the script passes baseURL; keep stray settings out
    env.pop("OPENAI_API_KEY", None)
    run = subprocess.run(
        [node, str(SCRIPT)], cwd=JS_DIR, env=env, capture_output=True, text=True,
        timeout=int(os.environ.get("NEXUS_NODE_E2E_TIMEOUT", "300")), check=False,
    )
    report = f"stdout:\n{run.stdout}\nstderr:\n{run.stderr}"
    assert run.returncode == 0, report
    lines = run.stdout.strip().splitlines()
    assert lines, report
    summary = json.loads(lines[-1])
    assert summary["ok"] is True, report
    assert summary["openai"].split(".")[0].isdigit(), summary
    assert [step["name"] for step in summary["steps"]] == STEPS, summary
    assert all(step["ok"] for step in summary["steps"]), summary
    steps = {step["name"]: step for step in summary["steps"]}
    assert steps["embeddings"]["dimensions"] == [576, 576]
    assert steps["responses"]["id"].startswith("resp_")

    gateway.assert_paid_from(wallet, 10_000_000)
