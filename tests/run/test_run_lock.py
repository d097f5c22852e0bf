"""One writer at a time: the run directory's flock, tested with a second process."""

import os
import signal
import subprocess
import sys
import textwrap

import pytest

from soxai.run_lock import RunDirLocked, is_held_here, lock_path, writer_lock

HOLDER = textwrap.dedent("""
    import sys, time
    from soxai.run_lock import writer_lock
    with writer_lock(sys.argv[1]):
        print("held", flush=True)
        sys.stdin.read()  # until the test closes stdin (or kills us)
""")


@pytest.fixture
def other_writer(tmp_path):
    """A second process holding the writer lock of tmp_path/run."""
    root = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(root), "--extra-arg"], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.stdout.readline().strip() == "held"
    yield root, proc
    if proc.poll() is None:
        proc.kill()
    proc.wait()


def test_writer_lock__second_writer_refused_with_holder_pid_and_command(other_writer):
    root, proc = other_writer
    with pytest.raises(RunDirLocked) as err:
        with writer_lock(root):
            pass
    message = str(err.value)
    assert f"PID {proc.pid}" in message and "--extra-arg" in message
    assert str(root) in message and "another --run-dir" in message


def test_run_in_process__second_writer_refused_before_writing(other_writer):
    from soxai.config import load_config
    from soxai.runs import run_in_process

    root, _ = other_writer
    with pytest.raises(RunDirLocked):
        run_in_process(load_config(None, []), root)
    assert sorted(p.name for p in root.iterdir()) == ["run.lock"]  # no config.yaml, no run.json


def test_cli_run__second_writer_refused_at_once(other_writer):
    from typer.testing import CliRunner

    from soxai.cli import app

    root, proc = other_writer
    res = CliRunner().invoke(app, ["run", "--run-dir", str(root)])
    assert res.exit_code == 2 and f"PID {proc.pid}" in res.output and "in use by" in res.output
    assert not (root / "config.yaml").exists()


def test_cli_retrain__second_writer_refused(other_writer, tmp_path):
    from typer.testing import CliRunner

    from soxai.cli import app
    from soxai.config import load_config

    root, proc = other_writer
    (root / "config.yaml").write_text(load_config(None, []).to_yaml())
    res = CliRunner().invoke(app, ["retrain", str(root)])
    assert res.exit_code == 2 and f"PID {proc.pid}" in res.output


def test_writer_lock__released_when_holder_is_killed(other_writer):
    root, proc = other_writer
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    with writer_lock(root):  # the kernel released the dead process's lock; the stale text does not matter
        assert is_held_here(root)
    assert f"PID {os.getpid()}" in lock_path(root).read_text()


def test_writer_lock__reentrant_within_a_process_and_released_after(tmp_path):
    with writer_lock(tmp_path), writer_lock(tmp_path):
        assert is_held_here(tmp_path)
    assert not is_held_here(tmp_path)
    probe = subprocess.run([sys.executable, "-c", HOLDER, str(tmp_path)], input="", capture_output=True, text=True)
    assert probe.returncode == 0 and probe.stdout.strip() == "held"


def test_writer_lock__run_dir_that_is_a_file_is_refused(tmp_path):
    from soxai.errors import SoxaiError

    (tmp_path / "f").write_text("x")
    with pytest.raises(SoxaiError, match="is not a directory"):
        with writer_lock(tmp_path / "f"):
            pass
