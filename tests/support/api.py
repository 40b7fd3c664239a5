"""What every test of the HTTP API checks: a scripted chat request and the OpenAI error shape."""

from __future__ import annotations

import httpx

CHAT = {"model": "scripted-model", "messages": [{"role": "user", "content": "hi"}]}


def assert_openai_error(response: httpx.Response, status: int, code: str | None = None) -> dict:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "code", "param"}
    assert error["message"] and "Traceback" not in error["message"]
    if code:
        assert error["code"] == code
    return error
