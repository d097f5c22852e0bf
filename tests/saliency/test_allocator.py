"""The saliency stage's allocator setting (see soxai/saliency/allocator.py)."""

import subprocess
import sys

import pytest

CHILD = """
import json, sys
from soxai.saliency import allocator
with allocator.bounded_heap() as fixed:
    held = allocator._applied
print(json.dumps([fixed, held, allocator._applied]))
"""


def _run(env_extra):
    import os

    env = {k: v for k, v in os.environ.items() if k not in ("MALLOC_MMAP_THRESHOLD_", "SOXAI_GLIBC_DEFAULTS")}
    done = subprocess.run([sys.executable, "-c", CHILD], capture_output=True, text=True, env={**env, **env_extra})
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc only")
def test_threshold_is_fixed_by_default_on_glibc():
    import platform

    if platform.libc_ver()[0] != "glibc":
        pytest.skip("not glibc")
    assert _run({}) == "[true, true, false]"  # fixed inside the block, relaxed after it


def test_opt_out_and_user_setting_are_respected():
    assert _run({"SOXAI_GLIBC_DEFAULTS": "1"}) == "[false, false, false]"
    assert _run({"MALLOC_MMAP_THRESHOLD_": "65536"}) == "[false, false, false]"
