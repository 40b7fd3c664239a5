"""The Vercel AI SDK for Node (`ai` with `@ai-sdk/openai-compatible` and `@ai-sdk/openai`), run
by tests/clients/js/ai_sdk_e2e.mjs against a real gateway subprocess and the real SmolLM2 worker:
generateText, streamText, a forced tool (also streamed), generateObject with a zod schema and
embedMany, on chat completions and on the Responses API, each parsed by the SDK itself."""

from __future__ import annotations

import json
import os
import shutil
import subprocess

import pytest

from tests.clients.conftest import CREDIT
from tests.conftest import ROOT, clean_environ

JS_DIR = ROOT / "tests" / "clients" / "js"
SCRIPT = JS_DIR / "ai_sdk_e2e.mjs"
STEPS = [
    "compatible.generateText", "compatible.streamText", "compatible.tool",
    "compatible.tool.stream", "compatible.generateObject", "compatible.embedMany",
    "openai.generateText", "openai.streamText", "openai.tool", "openai.generateObject",
    "openai.embedMany",
]
PACKAGES = ["ai", "@ai-sdk/openai-compatible", "@ai-sdk/openai", "zod"]


def install_js_dependencies() -> None:
    """`npm ci` in tests/clients/js unless node_modules already holds the pinned versions."""
    pinned = json.loads((JS_DIR / "package.json").read_text())["dependencies"]
    assert sorted(pinned) == sorted(PACKAGES), pinned
    assert all(version[0].isdigit() for version in pinned.values()), f"not exact: {pinned}"

    def installed(name: str) -> str | None:
        path = JS_DIR / "node_modules" / name / "package.json"
        return json.loads(path.read_text())["version"] if path.is_file() else None

    if all(installed(name) == version for name, version in pinned.items()):
        return
    npm = shutil.which("npm")
    assert npm is not None
    run = subprocess.run(
        [npm, "ci", "--no-audit", "--no-fund"], cwd=JS_DIR, capture_output=True, text=True,
        timeout=300, check=False,
    )
    assert run.returncode == 0, f"npm ci failed:\n{run.stdout}\n{run.stderr}"


@pytest.mark.slow
def test_the_vercel_ai_sdk_against_the_real_worker(network) -> None:
    node = shutil.which("node")
    if node is None or shutil.which("npm") is None:
        pytest.skip("node and npm are needed on PATH to run tests/clients/js/ai_sdk_e2e.mjs")
    install_js_dependencies()

    env = clean_environ()
    env.update({"NEXUS_BASE_URL": network.base_url, "NEXUS_API_KEY": network.api_key,
                "NEXUS_MODEL": network.model})
    for name in ("OPENAI_BASE_URL", "OPENAI_API_KEY", "AI_GATEWAY_API_KEY"):
        env.pop(name, None)  # the script passes its own; keep stray settings out
    try:
        run = subprocess.run(
            [node, str(SCRIPT)], cwd=JS_DIR, env=env, capture_output=True, text=True,
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
    assert summary["ai"] == json.loads((JS_DIR / "package.json").read_text())["dependencies"]["ai"]
    steps = {step["name"]: step for step in summary["steps"]}
    assert steps["compatible.embedMany"]["dimensions"] == [576, 576, 576]
    assert steps["openai.embedMany"]["dimensions"] == [576, 576, 576]
    assert steps["compatible.streamText"]["deltas"] >= 3

    network.gateway.assert_paid_from(network.wallet, CREDIT)
