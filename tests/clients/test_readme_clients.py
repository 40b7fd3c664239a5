"""The README's "Clients that are tested" examples run as written against a real gateway
subprocess and the real SmolLM2 worker: the LangChain and Agents SDK ones with this Python, the
Vercel AI SDK one with node in tests/clients/js (its pinned packages). Only the port and the key
differ from what a reader runs."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.support.gateways import ROOT
from tests.support.node_packages import AI_SDK_DIR, install_pinned, require_node
from tests.support.processes import clean_environ
from tests.support.readme import code_blocks

README = (ROOT / "README.md").read_text()
TITLE = "Clients that are tested"


def section() -> str:
    return README.split(f"\n## {TITLE}\n", 1)[1].split("\n## ", 1)[0]


def run_example(network, command: list[str], code: str, **kwargs) -> str:
    """Runs one example with NEXUS_KEY set and the gateway's port in place of 8080; its stdout."""
    env = {**clean_environ(), "NEXUS_KEY": network.api_key}
    for name in ("OPENAI_BASE_URL", "OPENAI_API_KEY"):
        env.pop(name, None)
    code = code.replace("http://127.0.0.1:8080/v1", network.base_url)
    run = subprocess.run(command, input=code, env=env, capture_output=True, text=True,
                         timeout=300, check=False, **kwargs)
    assert run.returncode == 0, f"{code}\nstdout:\n{run.stdout}\nstderr:\n{run.stderr}"
    return run.stdout


def test_the_section_has_one_example_per_client() -> None:
    text = section()
    assert len(code_blocks(text, "python")) == 2 and len(code_blocks(text, "js")) == 1
    for client in ("langchain-openai", "openai-agents", "@ai-sdk/openai-compatible"):
        assert client in text
    assert "http://127.0.0.1:8080/v1" in text


@pytest.mark.slow
def test_the_langchain_example(network) -> None:
    langchain, _ = code_blocks(section(), "python")
    lines = run_example(network, [sys.executable, "-"], langchain).splitlines()
    assert lines[-1] == "576", lines
    assert "".join(lines[:-1]).strip(), lines


@pytest.mark.slow
def test_the_agents_sdk_example(network) -> None:
    _, agents = code_blocks(section(), "python")
    assert run_example(network, [sys.executable, "-"], agents).strip()


@pytest.mark.slow
def test_the_vercel_ai_sdk_example(network) -> None:
    node = require_node()
    install_pinned(AI_SDK_DIR)
    (example,) = code_blocks(section(), "js")
    # ES module code on stdin resolves its imports from the working directory
    lines = run_example(network, [node, "--input-type=module"], example,
                        cwd=AI_SDK_DIR).splitlines()
    assert lines[-1] == "2 576", lines
    assert "".join(lines[:-1]).strip(), lines
