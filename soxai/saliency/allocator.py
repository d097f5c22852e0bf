"""Keep the saliency stage's memory bounded by batch size under glibc's allocator.

glibc raises its mmap threshold each time a large block allocated by mmap is freed (up to 32 MiB on
64-bit). After the first batches torch's per-batch buffers (a few MiB each) then come from the heap,
which grows by fragmentation for a while before it levels off: the stage's resident memory ends up
~1.2x higher on a 10x larger dataset although no data piles up (docs/BENCHMARKS.md). Fixing the
threshold at glibc's initial 128 KiB (`mallopt(M_MMAP_THRESHOLD, 131072)`, the same as the environment
variable ``MALLOC_MMAP_THRESHOLD_=131072``) gives such buffers back to the system when they are freed,
so resident memory follows the live data.

The setting is process-wide and stays for the rest of the process (glibc has no way back to the
dynamic threshold). It is a no-op off glibc (macOS, musl) and when ``SOXAI_GLIBC_DEFAULTS=1`` is set,
which the benchmark uses to measure the difference.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os

log = logging.getLogger(__name__)

M_MMAP_THRESHOLD = -3  # from glibc's malloc.h
THRESHOLD = 128 * 1024
ENV_KEEP_DEFAULTS = "SOXAI_GLIBC_DEFAULTS"

_applied = False


def fix_mmap_threshold() -> bool:
    """Fix glibc's mmap threshold at 128 KiB for this process; True if it is (now or already) fixed."""
    global _applied
    if _applied:
        return True
    if os.environ.get(ENV_KEEP_DEFAULTS) == "1" or "MALLOC_MMAP_THRESHOLD_" in os.environ:
        return False  # the user (or the benchmark) chose the allocator's settings
    name = ctypes.util.find_library("c")
    if not name:
        return False
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    _applied = bool(mallopt(M_MMAP_THRESHOLD, THRESHOLD))
    if _applied:
        log.debug("glibc mmap threshold fixed at %d bytes", THRESHOLD)
    return _applied
