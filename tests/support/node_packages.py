"""Node.js test dependencies: a folder's package.json pins exact versions, and `npm ci`
installs them unless node_modules already holds them."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parents[1]
JS_DIR = TESTS / "js"  # the openai npm package and the Solana SDKs, pinned
AI_SDK_DIR = TESTS / "clients" / "js"  # the Vercel AI SDK, pinned


def require_node() -> str:
    """The `node` executable; skips the test when node or npm is not on PATH."""
    node = shutil.which("node")
    if node is None or shutil.which("npm") is None:
        pytest.skip("node and npm are needed on PATH to run the Node.js clients")
    return node


def install_pinned(folder: Path) -> None:
    """`npm ci` in `folder` unless node_modules holds every pinned version already."""
    pinned = json.loads((folder / "package.json").read_text())["dependencies"]
    assert all(version[0].isdigit() for version in pinned.values()), f"not exact: {pinned}"

    def installed(name: str) -> str | None:
        path = folder / "node_modules" / name / "package.json"
        return json.loads(path.read_text())["version"] if path.is_file() else None

    if all(installed(name) == version for name, version in pinned.items()):
        return
    npm = shutil.which("npm")
    assert npm is not None
    run = subprocess.run(
        [npm, "ci", "--no-audit", "--no-fund"], cwd=folder, capture_output=True, text=True,
        timeout=300, check=False,
    )
    assert run.returncode == 0, f"npm ci failed:\n{run.stdout}\n{run.stderr}"
