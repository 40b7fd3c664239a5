"""Helpers of the reliability suite: scripted workers (TEST DOUBLES, no model) in processes of
their own, so that they can be killed like real ones, and a process's resident memory."""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import ROOT, clean_environ


def rss_bytes(pid: int) -> int:
    """Resident memory of process `pid` (Linux)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


@pytest.fixture
def scripted_workers() -> Iterator[list[subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for process in started:
        process.kill()
        process.wait(10)


def start_scripted_worker(url: str, *flags: str) -> subprocess.Popen[bytes]:
    """`python -m tests.scripted_worker` joining the gateway at `url`."""
    return subprocess.Popen(
        [sys.executable, "-m", "tests.scripted_worker", "--gateway", url, *flags],
        cwd=ROOT, env=clean_environ(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )


async def wait_for_scripted(url: str, count: int, timeout: float = 30) -> None:
    """Until the gateway at `url` lists `count` workers for scripted-model (asynchronously:
    the gateway may run in this event loop)."""
    deadline = time.monotonic() + timeout
    async with httpx.AsyncClient(base_url=url, timeout=2) as http:
        while True:
            with contextlib.suppress(httpx.HTTPError):
                listing = (await http.get("/v1/models")).json()["data"]
                if sum(m["workers"] for m in listing if m["id"] == "scripted-model") == count:
                    return
            assert time.monotonic() < deadline, f"{count} scripted workers not online"
            await asyncio.sleep(0.1)
