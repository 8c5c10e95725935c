"""Handing freed heap back to the system, for a service that runs all day.

glibc gives each thread that allocates its own arena (up to 8 per core) and returns freed
memory from them only when the top of an arena is free. The engine's worker threads, ONNX
Runtime's and the event loop's free windows, features and tensors in all of them, so RSS
creeps up although Python's own allocations stay flat (measured: 2.9 MB of Python growth in
9 minutes against ~1.8 MB/min of RSS, and `malloc_trim` gave back 50-75 MB). Two arenas and a
periodic trim return that; they did not make RSS flat (the 2-hour soak of 4 sessions still grew
about 2.3 MB a minute, part of it each session's transcript). Elsewhere than glibc both are
no-ops.
"""

from __future__ import annotations

import ctypes
import logging
import platform

logger = logging.getLogger(__name__)

M_ARENA_MAX = -8  # mallopt parameter (malloc.h)


def _glibc() -> ctypes.CDLL | None:
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return None
    try:
        return ctypes.CDLL("libc.so.6")
    except OSError:
        return None


class HeapReleaser:
    """Limits glibc's arenas once, then trims the heap when asked."""

    def __init__(self, arenas: int = 2) -> None:
        self._libc = _glibc()
        if self._libc is not None and arenas > 0 and not self._libc.mallopt(M_ARENA_MAX, arenas):
            logger.debug("mallopt(M_ARENA_MAX, %d) refused", arenas)

    def release(self) -> None:
        """Return free heap pages to the system (a few milliseconds)."""
        if self._libc is not None:
            self._libc.malloc_trim(0)
