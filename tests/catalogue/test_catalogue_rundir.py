"""Catalogue: a run directory that cannot take a run (a file, another writer's, damaged), `soxai schedule` given
what it cannot serve, and a Dask scheduler address that is wrong, each refused before anything is written."""

import pytest
from _catalogue import NOTHING, RUN_UNCHANGED, SMALL, Case, config, hold_lock, params, run_args, write

SET = [a for o in SMALL for a in ("--set", o)]


def _finished(*args: str, prepare=None):
    """``soxai ARGS`` on a copy of the finished run ("{run}", "{tmp}" in ARGS) after ``prepare(ctx, run)``."""

    def build(ctx):
        run = ctx.copy_finished()
        if prepare is not None:
            prepare(ctx, run)
        return [a.format(run=run, tmp=ctx.tmp) for a in args]

    return build


def _schedule(*extra: str, cfg_text: str = ""):
    def build(ctx):
        cfg = config(ctx, cfg_text)
        return ["schedule", str(cfg), "--runs-dir", str(ctx.run), *[e.format(tmp=ctx.tmp) for e in extra]]

    return build


def _dask(address: str):
    return lambda ctx: run_args(config(ctx, ""), ctx, "--dask-address", address)


CASES = [
    Case("run-dir-is-a-file", lambda ctx: ["run", *SET, "--run-dir", str(write(ctx.tmp / "afile", "x"))],
         ("afile", "not a directory")),
    Case("run-dir-under-a-file", lambda ctx: ["run", *SET, "--run-dir", str(write(ctx.tmp / "afile", "x") / "run")],
         ("afile",)),
    Case("run-while-another-writes", _finished("run", "--run-dir", "{run}", prepare=lambda ctx, r: hold_lock(ctx, r)),
         ("is in use by PID", "wait for it to finish"), leaves=RUN_UNCHANGED, finished=True),
    Case("explain-while-another-writes", lambda ctx: _finished(
        "explain", str(config(ctx, "")), "--run-dir", "{run}", prepare=lambda c, r: hold_lock(c, r))(ctx),
        ("is in use by PID",), leaves=RUN_UNCHANGED, finished=True),
    Case("resume-damaged-config", _finished("run", "--run-dir", "{run}",
                                            prepare=lambda ctx, r: write(r / "config.yaml", "train: [1, 2\n")),
         ("config.yaml", "not valid YAML"), leaves=RUN_UNCHANGED, finished=True),
    Case("resume-config-with-unknown-key", _finished("run", "--run-dir", "{run}", prepare=lambda ctx, r: write(
        r / "config.yaml", (r / "config.yaml").read_text() + "extra_section: 1\n")),
        ("extra_section",), leaves=RUN_UNCHANGED, finished=True),
    Case("resume-damaged-run-json", _finished("run", "--run-dir", "{run}",
                                              prepare=lambda ctx, r: write(r / "run.json", '{"status": "compl')),
         ("run.json", "cannot be read as JSON"), leaves=RUN_UNCHANGED, finished=True),
    Case("run-into-a-folder-that-is-not-a-run", lambda ctx: ["run", *SET, "--run-dir", str(
        write(ctx.run / "notes.txt", "mine").parent)], ("not a soxai run directory", "notes.txt"),
        leaves=RUN_UNCHANGED),
    # soxai schedule
    Case("schedule-without-cron", _schedule(), ("--cron",)),
    Case("schedule-bad-cron", _schedule("--cron", "61 * * * *"), ("--cron", "not a valid cron")),
    Case("schedule-unknown-flow", _schedule("--cron", "0 3 * * *", "--flow", "nightly"), ("nightly", "pipeline")),
    Case("schedule-retrain-flow", _schedule("--cron", "0 3 * * *", "--flow", "retrain"), ("soxai retrain RUN_DIR",)),
    Case("schedule-monitor-without-reference", _schedule("--cron", "0 3 * * *", "--flow", "monitor"),
         ("--reference",)),
    Case("schedule-monitor-reference-not-a-run", _schedule("--cron", "0 3 * * *", "--flow", "monitor",
                                                           "--reference", "{tmp}/images"),
         ("images does not exist", "pass the folder `soxai run` printed")),
    Case("schedule-monitor-reference-without-concepts", _schedule("--cron", "0 3 * * *", "--flow", "monitor",
                                                                  "--reference", "{tmp}"), ("has no concepts",)),
    Case("schedule-bad-config", _schedule("--cron", "0 3 * * *", cfg_text="train: {epoks: 3}"), ("epoks",)),
    Case("schedule-missing-config", lambda ctx: ["schedule", str(ctx.tmp / "nope.yaml"), "--cron", "0 3 * * *",
                                                 "--runs-dir", str(ctx.run)], ("nope.yaml", "does not exist")),
    Case("schedule-delete-unknown", lambda ctx: ["schedule", "--delete", "no-such-deployment"],
         ("no deployment named", "--list"), flow=True),
    # a Dask scheduler address
    Case("dask-address-refused", _dask("tcp://127.0.0.1:9"), ("no Dask scheduler answers at tcp://127.0.0.1:9",)),
    Case("dask-address-malformed", _dask("nonsense"), ("--dask-address 'nonsense'", "tcp://HOST:PORT")),
    Case("dask-address-port-not-a-number", _dask("tcp://127.0.0.1:http"), ("tcp://127.0.0.1:http", "tcp://HOST:PORT")),
    Case("dask-address-unknown-scheme", _dask("udp://127.0.0.1:8786"), ("udp://127.0.0.1:8786", "tcp://HOST:PORT")),
]


@pytest.mark.parametrize("case", params(CASES))
def test_run_dir_schedule_dask__refused_before_anything_is_written(case, check_case):
    assert case.leaves in (NOTHING, RUN_UNCHANGED)
    check_case(case)
