"""One error, one screen: a failure ends with one message naming the problem, the file and the fix; the
traceback goes to RUN/logs/error-*.log (path printed), to the terminal only with --verbose."""

import errno
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

REPO = Path(__file__).resolve().parents[2]
SMALL = ["data.n_train_per_class=20", "data.n_val_per_class=5", "data.n_test_per_class=5", "train.epochs=1"]

# `soxai` with the data stage replaced by one that raises the exception named on the command line: an error
# raised inside a stage, whatever validation before work catches now or later
INJECT = """
import errno, os, sys
from soxai import cli
from soxai.errors import ConfigError
cli._prefect_env()
import flows.pipeline as pipeline
ERRORS = {
    "config": ConfigError("saliency.method 'gradcam++' is unknown; set saliency.method to one of [...]"),
    "permission": PermissionError(errno.EACCES, "Permission denied", sys.argv[-1] + "/data/samples.parquet"),
    "disk-full": OSError(errno.ENOSPC, "No space left on device", sys.argv[-1] + "/data/samples.parquet"),
}
kind = sys.argv.pop(1)
calls = []
def failing(cfg, run):
    calls.append(1)
    print(f"data stage called {len(calls)} time(s)", flush=True)
    raise ERRORS[kind]
pipeline.RUNNERS["data"] = failing
sys.argv[0] = "soxai"
cli.main()
"""


# (kind, extra arguments) of each failing `soxai run`; the module's fixture runs them two at a time
FAILING = {"config": ("config",), "verbose": ("config", "--verbose"), "permission": ("permission",),
           "disk-full": ("disk-full",)}


@pytest.fixture(scope="module")
def failing_runs(tmp_path_factory) -> dict[str, tuple[subprocess.CompletedProcess, Path]]:
    """Each of FAILING as a `soxai run` of its own process, with Prefect's temporary server as a user gets it.

    Two at a time (a run is 20 s of one core, most of it imports and the server's start), each of a pair with a
    PREFECT_HOME of its own so that two servers never share a SQLite file; the second pair reuses the first's
    homes, whose databases are made by then (a fresh one costs 10 s more). name -> (the process, its run dir)."""
    overrides = [a for o in SMALL for a in ("--set", o)]
    # the PREFECT_HOME of each process of a pair (the temporary servers take their ports from the system:
    # flows/server.py)
    slots = [tmp_path_factory.mktemp("prefect-home-a"), tmp_path_factory.mktemp("prefect-home-b")]
    names, done = list(FAILING), {}
    for first in range(0, len(names), len(slots)):
        started = {}
        try:
            for name, home in zip(names[first:first + len(slots)], slots, strict=False):
                kind, *extra = FAILING[name]
                run_dir = tmp_path_factory.mktemp(f"failing-{name}") / "run"
                env = {**os.environ, "OMP_NUM_THREADS": "1", "SOXAI_PROGRESS": "0", "PYTHONPATH": str(REPO),
                       "PREFECT_HOME": str(home)}
                env.pop("PREFECT_API_URL", None)
                args = [sys.executable, "-c", INJECT, kind, "run", *overrides, *extra, "--run-dir", str(run_dir)]
                started[name] = (subprocess.Popen(args, cwd=REPO, env=env, stdout=subprocess.PIPE,
                                                  stderr=subprocess.PIPE, text=True), run_dir)
            for name, (proc, run_dir) in started.items():
                out, err = proc.communicate(timeout=240)
                done[name] = (subprocess.CompletedProcess(proc.args, proc.returncode, out, err), run_dir)
        finally:
            for proc, _ in started.values():
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
    return done


@pytest.mark.slow
def test_cli_run__config_error_inside_a_stage_fits_one_screen_and_logs_the_traceback(failing_runs):
    res, run_dir = failing_runs["config"]
    out = res.stdout + res.stderr
    assert res.returncode == 2, out
    assert len(out.splitlines()) <= 15, out  # was 102 lines: Prefect's traceback before soxai's error line
    assert "Traceback" not in out and "Encountered exception" not in out
    assert "Flow run" in out and "Beginning flow run" in out  # Prefect's INFO lines stay
    assert "temporary server on http://127.0.0.1:" in out and "started with the command" in out  # flows/server.py
    assert "Starting temporary server" not in out  # Prefect's own start: the early one was not used
    assert "Error logging to API" not in out  # the logs reached the server before it stopped
    error = [line for line in res.stderr.splitlines() if line.startswith("error:")]
    assert error == ["error: saliency.method 'gradcam++' is unknown; set saliency.method to one of [...]"]
    logs = list((run_dir / "logs").glob("error-*.log"))
    assert len(logs) == 1 and f"traceback: {logs[0]}" in res.stderr
    text = logs[0].read_text()
    assert "Traceback (most recent call last)" in text and "ConfigError: saliency.method" in text
    assert "in failing" in text  # down to the frame that raised


@pytest.mark.slow
def test_cli_run__verbose_prints_the_traceback(failing_runs):
    res, _ = failing_runs["verbose"]
    assert res.returncode == 2
    assert res.stderr.count("Traceback (most recent call last)") == 1 and "in failing" in res.stderr  # once
    assert "error: saliency.method 'gradcam++' is unknown" in res.stderr
    assert res.stderr.index("in failing") < res.stderr.index("error: saliency.method")  # the message ends it


@pytest.mark.slow
@pytest.mark.parametrize(("kind", "says"), [("permission", "permission denied on"),
                                            ("disk-full", "no space left on the disk of")])
def test_cli_run__os_error_inside_a_stage_names_the_path_and_is_not_retried(failing_runs, kind, says):
    res, run_dir = failing_runs[kind]
    out = res.stdout + res.stderr
    assert res.returncode == 2, out
    assert f"error: {says} {run_dir / 'data' / 'samples.parquet'}" in res.stderr
    assert "data stage called 1 time(s)" in out and "2 time(s)" not in out  # a retry cannot change it
    assert "Traceback" not in out and len(out.splitlines()) <= 15, out


def test_cli_run__non_utf8_config_names_the_file(tmp_path):
    from soxai.cli import app

    config = tmp_path / "bad.yaml"
    config.write_bytes(b"data:\n  source: \xff\xfe\n")
    res = CliRunner().invoke(app, ["run", str(config), "--run-dir", str(tmp_path / "run")])
    assert res.exit_code == 2, res.output
    assert f"error: {config} is not UTF-8 text" in res.output and "save it as UTF-8" in res.output
    assert "Traceback" not in res.output
    assert not (tmp_path / "run").exists()  # nothing written: it failed before the run directory


@pytest.mark.parametrize(("exc", "says"), [
    (PermissionError(errno.EACCES, "Permission denied", "/r/model"), "permission denied on /r/model;"),
    (OSError(errno.ENOSPC, "No space left on device"), "no space left on the disk of /r ("),
    (OSError(errno.EROFS, "Read-only file system", "/r"), "/r is on a read-only file system;"),
    (KeyError("x"), "unexpected KeyError"),
])
def test_describe_error__names_the_path_and_the_fix(exc, says):
    from soxai.errors import describe_error

    assert says in describe_error(exc, "/r")


def test_write_error_log__unwritable_run_dir_falls_back_to_a_temporary_folder(tmp_path, monkeypatch):
    from soxai import cli

    monkeypatch.setenv("TMPDIR", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", None)
    run = tmp_path / "run"
    run.mkdir()
    (run / "logs").write_text("a file where the folder would be")
    log = cli._write_error_log("Traceback: x", run)
    assert log is not None and log.parent == tmp_path / "tmp" / "soxai-logs" and "Traceback: x" in log.read_text()
    assert cli._write_error_log("y", tmp_path / "missing").parent == tmp_path / "tmp" / "soxai-logs"
    assert not (tmp_path / "missing").exists()  # never creates a run directory


def test_no_prefect_traceback__strips_prefect_tracebacks_only():
    from soxai.cli import _NoPrefectTraceback

    try:
        raise ValueError("boom")
    except ValueError:
        exc_info = sys.exc_info()

    def record(name, msg):
        return logging.LogRecord(name, logging.ERROR, __file__, 1, msg, (), exc_info)

    quiet = _NoPrefectTraceback()
    task = record("prefect.task_runs", "Task run failed with exception: ValueError('boom')")
    assert quiet.filter(task) and task.exc_info is None
    assert not quiet.filter(record("prefect.flow_runs", "Encountered exception during execution: %r"))
    ours = record("soxai", "stage data: failed")
    assert quiet.filter(ours) and ours.exc_info is not None


def test_cli_concepts_list__damaged_parquet_is_one_message_and_a_log(tmp_path, monkeypatch):
    from soxai.cli import app

    monkeypatch.setenv("TMPDIR", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", None)
    run = tmp_path / "run"
    for name in ("data/samples.parquet", "concepts/concepts.parquet", "concepts/assignments.parquet"):
        (run / name).parent.mkdir(parents=True, exist_ok=True)
        (run / name).write_text("sample_id,label\n1,0\n")  # CSV written over a stage's parquet (issue 24, item 1)
    (run / "data" / "info.json").write_text("{}")
    res = CliRunner().invoke(app, ["concepts", "list", str(run)])
    assert res.exit_code == 2, res.output
    assert f"error: a Parquet file under {run} cannot be read" in res.output and "recomputes the stage" in res.output
    assert "Traceback" not in res.output
    logs = list((tmp_path / "tmp" / "soxai-logs").glob("error-*.log"))
    assert len(logs) == 1 and "Traceback" in logs[0].read_text()
    assert not (run / "logs").exists()  # a reading command writes nothing into the run directory


def test_cli_report__verbose_prints_the_traceback_before_the_error(tmp_path):
    from soxai.cli import app

    res = CliRunner().invoke(app, ["report", str(tmp_path / "missing"), "--verbose"])
    assert res.exit_code == 2
    assert "Traceback (most recent call last)" in res.output
    assert res.output.rstrip().splitlines()[-1].startswith("error: ")
