"""Memory the gateway gives back: a large buffer freed goes back to the system at once.

glibc's allocator raises its mmap threshold each time a large block is freed (up to 32 MiB);
blocks that size then come from the heap, and heap memory freed between live blocks is kept by
the process. Each worker connection that once sent a frame of a few hundred KiB would so keep
about that much resident memory long after the frame is gone (measured with
bench/idle_workers.py --burst: ~640 KiB per idle worker after 900 KB frames, 32 KiB with this).
A fixed threshold keeps every block of 128 KiB or more in a mapping of its own, unmapped when
it is freed; smaller ones, nearly all of the gateway's, are unaffected.
"""

from __future__ import annotations

import ctypes
import sys

M_MMAP_THRESHOLD = -3  # glibc's mallopt parameter
LARGE_BLOCK_BYTES = 128 * 1024


def return_large_blocks() -> bool:
    """Fix glibc's mmap threshold for this process; False where that is not possible (not
    Linux, or a C library without `mallopt`)."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return bool(mallopt(M_MMAP_THRESHOLD, LARGE_BLOCK_BYTES))
