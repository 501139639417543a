"""The C allocator of a serving process: few malloc arenas, so resident memory stops creeping.

glibc gives each thread that allocates under contention an arena of its own (up to 8 per core), and
memory freed in one arena is not reused by another; a server whose threadpool, materialiser and
encoder threads all build answers grows its resident memory for many minutes under steady load. With
two arenas the 100k-article soak (scripts/bench_soak.py, docs/bench.json "soak") stays flat.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging

log = logging.getLogger(__name__)

M_ARENA_MAX = -8  # glibc's mallopt parameter number


def limit_malloc_arenas(arenas: int) -> bool:
    """Cap glibc's malloc arenas (call before the serving threads start); False where it cannot (not glibc,
    or 0 = leave the default)."""
    if arenas <= 0:
        return False
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name) if name else None
        done = bool(libc is not None and libc.mallopt(M_ARENA_MAX, arenas))
    except (OSError, AttributeError):
        done = False
    if done:
        log.info("malloc arenas capped at %d", arenas)
    return done
