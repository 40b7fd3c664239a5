"""Files only this user may read: the data dir holds the ledger, the local chain and keys.

New: the data dir is created 0700, databases and keys 0600. Existing: a database or key of
ours that others can read is tightened to 0600, and the data dir to 0700 when this user owns
it (a log line says so); the home directory and a filesystem root are never changed, only
warned about. A treasury keypair others can read is refused, as ssh refuses such a key: the
operator must look at who may have copied it, then `chmod 600` it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import stat
from pathlib import Path

log = logging.getLogger(__name__)

PRIVATE_DIR = 0o700
PRIVATE_FILE = 0o600
_OTHERS = 0o077  # any permission for group or others
_POSIX = os.name == "posix"


class InsecureFile(Exception):
    """A secret file that other users can read; the message says which and how to fix it."""


def _loose(path: Path) -> int | None:
    """`path`'s permission bits when group or others have any and this user owns it."""
    info = path.stat()
    mode = stat.S_IMODE(info.st_mode)
    if not _POSIX or not mode & _OTHERS or info.st_uid != os.getuid():
        return None
    return mode


def private_dir(path: Path) -> None:
    """Create `path` (and its parents) with mode 0700, or tighten it to 0700 if it is ours."""
    path.mkdir(parents=True, exist_ok=True, mode=PRIVATE_DIR)
    mode = _loose(path)
    if mode is None:
        return
    resolved = path.resolve()
    if resolved in (Path(os.path.expanduser("~")).resolve(), Path(resolved.anchor)):
        log.warning("data dir %s can be read by other users (mode %04o); it holds the ledger "
                    "and keys: use a folder of its own", path, mode)
        return
    path.chmod(PRIVATE_DIR)
    log.info("data dir %s: mode %04o tightened to 0700", path, mode)


def private_file(path: Path) -> None:
    """Create `path` empty with mode 0600 if absent; tighten it (and SQLite's -wal and -shm
    files beside it) to 0600 if others can read it. An empty file is a valid empty SQLite
    database, and SQLite gives its -wal and -shm files the database's mode."""
    private_dir(path.parent)
    with contextlib.suppress(FileExistsError):
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_FILE))
    for each in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
        if each.exists() and (mode := _loose(each)) is not None:
            each.chmod(PRIVATE_FILE)
            log.info("%s: mode %04o tightened to 0600", each, mode)


def require_private(path: Path, what: str) -> None:
    """Raise `InsecureFile` if group or others have any permission on the existing `path`."""
    if not _POSIX or not path.exists():
        return
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & _OTHERS:
        raise InsecureFile(
            f"the {what} {path} is accessible by other users (mode {mode:04o}); refusing to "
            f"use it. Check who could have copied it, then run: chmod 600 {path}"
        )
