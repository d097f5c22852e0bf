"""One writer at a time on a run directory: an OS file lock (``flock``) on ``RUN/run.lock``.

Whoever runs stages on a run directory (``soxai run``/``explain``/``retrain``, the flows, ``run_in_process``)
holds the lock for the whole run; a second writer is refused at once with the holder's PID and command.
Readers (``soxai report`` of a finished run, ``concepts``, ``compare``, a monitor reading its reference run)
never take it: every artifact is replaced atomically, so a reader sees whole files.

The kernel releases a ``flock`` when its holder dies, however it dies, so a crash never leaves a run
directory locked; the file itself stays (it is never replaced: the lock lives on its inode) and its text,
the last holder's PID and command, is only what the refusal quotes. The lock is re-entrant within one
process: the CLI takes it before writing ``config.yaml`` and the flow it starts takes it again, and
Prefect's task threads and Dask's shard workers write under the lock their parent holds.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import os
import shlex
import socket
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

from soxai.errors import SoxaiError

LOCK_NAME = "run.lock"

_held: dict[Path, tuple[int, int]] = {}  # lock path -> (fd, depth) for the locks this process holds
_guard = threading.Lock()


class RunDirLocked(SoxaiError):
    """Another process is writing to the run directory."""


def lock_path(root: str | Path) -> Path:
    return Path(root).resolve() / LOCK_NAME


def holder(root: str | Path) -> str:
    """What the lock file says about its (last) holder: 'PID 123, `soxai run ...`, since ...'."""
    try:
        text = lock_path(root).read_text().strip()
    except OSError:
        return ""
    return text


@contextlib.contextmanager
def writer_lock(root: str | Path) -> Iterator[None]:
    """Hold the run directory's writer lock for the body; raise :class:`RunDirLocked` at once if another
    process holds it. Creates the run directory if needed."""
    path = lock_path(root)
    with _guard:
        if path in _held:
            fd, depth = _held[path]
            _held[path] = (fd, depth + 1)
            acquired = False
        else:
            acquired = True
    if acquired:
        fd = _acquire(path)
        with _guard:
            _held[path] = (fd, 1)
    try:
        yield
    finally:
        with _guard:
            fd, depth = _held[path]
            if depth > 1:
                _held[path] = (fd, depth - 1)
            else:
                del _held[path]
                os.close(fd)  # closing the last descriptor releases the flock


def _acquire(path: Path) -> int:
    if path.parent.exists() and not path.parent.is_dir():
        raise SoxaiError(f"run directory {path.parent} exists and is not a directory; choose another --run-dir")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    except OSError as exc:
        raise SoxaiError(f"cannot open the run directory's lock file {path}: {exc.strerror}; check that "
                         f"{path.parent} is a writable folder, or choose another --run-dir") from exc
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        who = holder(path.parent) or "another process (it wrote no details)"
        raise RunDirLocked(
            f"run directory {path.parent} is in use by {who}. Two writers would interleave their files: wait "
            f"for it to finish, stop it (kill the PID), or use another --run-dir. Reading it (soxai report, "
            f"concepts, compare) needs no lock.") from None
    command = shlex.join([Path(sys.argv[0]).name, *sys.argv[1:]]) if sys.argv and sys.argv[0] else "python"
    since = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    text = f"PID {os.getpid()} on {socket.gethostname()}, `{command}`, since {since}\n"
    # rewritten in place, never replaced: a new inode would be a new, free lock
    os.ftruncate(fd, 0)
    os.pwrite(fd, text.encode(), 0)
    return fd


def is_held_here(root: str | Path) -> bool:
    """Whether this process holds the run directory's writer lock."""
    return lock_path(root) in _held
