"""Test-session settings: quiet progress bars, a numba cache, Prefect isolated in a temp home."""

import os
import tempfile

os.environ.setdefault("SOXAI_PROGRESS", "0")
os.environ.setdefault("NUMBA_CACHE_DIR", os.path.join(tempfile.gettempdir(), "soxai-numba-cache"))
