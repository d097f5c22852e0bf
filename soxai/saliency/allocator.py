"""Keep the saliency stage's memory bounded by batch size under glibc's allocator.

glibc raises its mmap threshold each time a large block allocated by mmap is freed (up to 32 MiB on
64-bit). After the first batches torch's per-batch buffers (a few MiB each) then come from the heap,
which grows by fragmentation for a while before it levels off: the stage's resident memory ends up
~1.2x higher on a 10x larger dataset although no data piles up (docs/BENCHMARKS.md). Fixing the
threshold at glibc's initial 128 KiB (`mallopt(M_MMAP_THRESHOLD, 131072)`, the same as the environment
variable ``MALLOC_MMAP_THRESHOLD_=131072``) gives such buffers back to the system when they are freed,
so resident memory follows the live data.

The setting is process-wide, so the stage holds it only while it runs (`bounded_heap`): with every
buffer over 128 KiB mapped and unmapped, training ran 1.6x slower. glibc has no way back to its
dynamic threshold; on leaving, the thresholds are set to where glibc's own adjustment takes them for
large buffers (mmap 32 MiB, trim 64 MiB). A no-op off glibc (macOS, musl) and when
``SOXAI_GLIBC_DEFAULTS=1`` is set, which the benchmark uses to measure the difference.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import logging
import os
from collections.abc import Iterator

log = logging.getLogger(__name__)

M_TRIM_THRESHOLD = -1  # from glibc's malloc.h
M_MMAP_THRESHOLD = -3
THRESHOLD = 128 * 1024
RELAXED_MMAP, RELAXED_TRIM = 32 * 1024 * 1024, 64 * 1024 * 1024  # glibc's dynamic maximum for 64-bit
ENV_KEEP_DEFAULTS = "SOXAI_GLIBC_DEFAULTS"

_applied = False


def _mallopt():
    if os.environ.get(ENV_KEEP_DEFAULTS) == "1" or "MALLOC_MMAP_THRESHOLD_" in os.environ:
        return None  # the user (or the benchmark) chose the allocator's settings
    name = ctypes.util.find_library("c")
    if not name:
        return None
    try:
        mallopt = ctypes.CDLL(name).mallopt
    except (OSError, AttributeError):  # not glibc
        return None
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    return mallopt


def fix_mmap_threshold() -> bool:
    """Fix glibc's mmap threshold at 128 KiB for this process; True if it is (now or already) fixed."""
    global _applied
    if _applied:
        return True
    mallopt = _mallopt()
    _applied = bool(mallopt and mallopt(M_MMAP_THRESHOLD, THRESHOLD))
    if _applied:
        log.debug("glibc mmap threshold fixed at %d bytes", THRESHOLD)
    return _applied


def relax_mmap_threshold() -> bool:
    """Undo `fix_mmap_threshold` as far as glibc allows; True if it was fixed and is now relaxed."""
    global _applied
    if not _applied:
        return False
    mallopt = _mallopt()
    relaxed = bool(mallopt and mallopt(M_MMAP_THRESHOLD, RELAXED_MMAP) and mallopt(M_TRIM_THRESHOLD, RELAXED_TRIM))
    _applied = not relaxed
    return relaxed


@contextlib.contextmanager
def bounded_heap() -> Iterator[bool]:
    """Hold the 128 KiB mmap threshold for the block (yields whether it holds), relax it after."""
    fixed = fix_mmap_threshold()
    try:
        yield fixed
    finally:
        if fixed:
            relax_mmap_threshold()
