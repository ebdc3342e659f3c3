"""Keep XLA:CPU's per-step scratch memory resident between training steps (glibc hosts).

XLA:CPU allocates one temporary buffer for each execution of a compiled program (its
`memory_analysis().temp_size_in_bytes`) with malloc, and frees it when the execution ends. glibc serves
every request above its mmap threshold, which it never raises past 32 MiB on 64-bit hosts, with fresh
pages from mmap and gives them back with munmap on free. So a train step with more than 32 MiB of
scratch page-faults on every 4 KiB of it, and waits for the kernel to zero it, on every step. The
strided/dilated/grouped test net (48 MiB of scratch at batch 64) trained 1.27x faster per step with mmap
switched off for large requests and heap trimming at its maximum, so that the buffer comes from a heap
that stays mapped (docs/performance.md, item 7). Below the threshold glibc already reuses heap memory,
and LeNet at batch 64 (24 MiB) was more often slower than faster with the setting, so it is applied only
above it.

The setting is process-wide and cannot be undone, so only `netspec train` applies it, on the CPU backend;
it shows in run.json (`host_malloc`). NETSPEC_MALLOC=glibc leaves glibc's defaults (for comparisons).
"""

from __future__ import annotations

import ctypes
import os
import sys
from collections.abc import Mapping

# glibc's DEFAULT_MMAP_THRESHOLD_MAX on 64-bit hosts: 4 MiB * sizeof(long).
MMAP_THRESHOLD_MAX = 32 * 2**20
_M_TRIM_THRESHOLD, _M_MMAP_MAX = -1, -4  # mallopt parameters, from glibc's malloc.h
_TRIM_MAX = 2**31 - 1  # mallopt takes an int
ENV = "NETSPEC_MALLOC"


def wants_resident_scratch(backend: str, temp_bytes: int, environ: Mapping[str, str]) -> bool:
    """Whether a step with `temp_bytes` of scratch on `backend` pays glibc's fresh-mmap cost every step."""
    return (backend == "cpu" and temp_bytes > MMAP_THRESHOLD_MAX and sys.platform.startswith("linux")
            and environ.get(ENV, "") != "glibc")


def keep_scratch_resident() -> dict[str, int] | None:
    """Make glibc serve large requests from a heap it does not trim. Returns the parameters set, or None
    where the C library is not glibc or refused them."""
    try:
        libc = ctypes.CDLL(None)
        libc.gnu_get_libc_version  # noqa: B018 - only glibc has it; musl's mallopt is a no-op
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return None
    if mallopt(_M_MMAP_MAX, 0) != 1 or mallopt(_M_TRIM_THRESHOLD, _TRIM_MAX) != 1:
        return None
    return {"M_MMAP_MAX": 0, "M_TRIM_THRESHOLD": _TRIM_MAX}


def tune_for_step(backend: str, temp_bytes: int, environ: Mapping[str, str] = os.environ) -> dict[str, int] | None:
    """Apply `keep_scratch_resident` when `wants_resident_scratch`; what was set, for run.json."""
    return keep_scratch_resident() if wants_resident_scratch(backend, temp_bytes, environ) else None
