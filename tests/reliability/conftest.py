"""Fixtures of the reliability suite: scripted workers (TEST DOUBLES, no model) in processes of
their own, killed at the end of the test."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator

import pytest


@pytest.fixture
def scripted_workers() -> Iterator[list[subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for process in started:
        process.kill()
        process.wait(10)
