"""The README read by the tests that run its examples."""

from __future__ import annotations

import re


def code_blocks(text: str, language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)\n```", text, re.S)
