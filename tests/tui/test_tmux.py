"""The real `nexus-app` in a real terminal (tmux), driven as a new user would drive it."""

from __future__ import annotations

import shutil

import pytest

from tests.support import tmux_new_user

pytestmark = pytest.mark.slow


@pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed")
def test_a_new_user_in_a_real_terminal() -> None:
    assert tmux_new_user.main([]) == 0
