"""The README is true: its configuration reference is the one the settings model generates,
pyproject installs every package, and the API walk-through runs word for word.

The walk-through's commands are read from the README and run as written, in this checkout's
`.venv` (the one the README's set-up command makes). Only the machine around them differs: a
fresh data dir and config path, and a free port in place of 8080, which may be taken here.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest

from nexus_app.config_reference import render
from tests.support.asgi import free_port
from tests.support.gateways import ROOT
from tests.support.node_packages import JS_DIR, install_pinned
from tests.support.processes import clean_environ, wait_for_workers
from tests.support.readme import code_blocks

README = (ROOT / "README.md").read_text()


def section(title: str) -> str:
    """The README's `## title` section, up to the next `## ` heading."""
    return README.split(f"\n## {title}\n", 1)[1].split("\n## ", 1)[0]


def test_the_configuration_reference_is_current() -> None:
    assert render() in README, (
        "the README's configuration reference is stale: "
        "run `python -m nexus_app.config_reference --write README.md`"
    )


def test_pyproject_installs_every_package() -> None:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    listed = set(pyproject["tool"]["setuptools"]["packages"])
    on_disk = {".".join(init.parent.relative_to(ROOT).parts)
               for init in (ROOT / "nexus_app").rglob("__init__.py")}
    assert listed == on_disk | {"nexus_app.assets"}


@pytest.fixture
def background() -> Iterator[list[subprocess.Popen]]:
    """Long-running README commands, stopped (with their process groups) after the test."""
    started: list[subprocess.Popen] = []
    yield started
    for process in started:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=60)


@pytest.mark.slow
def test_the_api_walkthrough_runs_as_written(tmp_path: Path, background: list) -> None:
    if not (ROOT / ".venv" / "bin" / "activate").is_file():
        pytest.skip("the README's commands activate .venv, made by its set-up command")
    port = free_port()
    text = section("Try the API on one machine").replace("127.0.0.1:8080", f"127.0.0.1:{port}")
    gateway, worker, client = code_blocks(text, "bash")
    python_examples = code_blocks(text, "python")
    (node_example,) = code_blocks(text, "js")
    env = {**clean_environ(), "NEXUS_DATA_DIR": str(tmp_path / "data"),
           "NEXUS_CONFIG": str(tmp_path / "config.toml"), "NEXUS_PORT": str(port),
           "NEXUS_GATEWAY_URL": f"http://127.0.0.1:{port}"}

    for command in (gateway, worker):  # the worker retries until the gateway is up
        background.append(subprocess.Popen(["bash", "-c", command], cwd=ROOT, env=env,
                                           start_new_session=True))
    wait_for_workers(f"http://127.0.0.1:{port}", 1, timeout=120)

    script = "\n".join([
        "set -e", client,
        "python - <<'PY'", *python_examples, "PY",
        f"cd {JS_DIR}",
        "node --input-type=module <<'JS'" if shutil.which("node") else "cat >/dev/null <<'JS'",
        node_example, "JS",
    ])
    if shutil.which("node"):
        install_pinned(JS_DIR)
    done = subprocess.run(["bash", "-c", script], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=300)
    report = f"stdout:\n{done.stdout}\nstderr:\n{done.stderr}"
    assert done.returncode == 0, report
    out = done.stdout
    assert "minted 100.000000 test NEXUS" in out, report
    assert "deposit of 25.000000 NEXUS credited" in out, report
    assert '"object":"chat.completion"' in out, report
    assert "data: [DONE]" in out and '"usage":{' in out, report
    assert '"object":"embedding"' in out, report
    assert "paid:" in out, report  # the claim of the worker's earnings
    assert '"city"' in out, report  # the forced function call's arguments
