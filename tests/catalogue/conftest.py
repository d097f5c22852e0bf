"""The catalogue's fixtures: a finished tiny run made once per session (copied by each case that needs it), a Prefect
test server started only when a case runs a flow, and ``check_case``, which drives one case through the CLI."""

import contextlib
import io
import logging
import os
import sys
from pathlib import Path
from unittest import mock

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _catalogue import Case, Ctx, check  # noqa: E402

# the tiny run of tests/conftest.py (TINY), retrained with two variants on two seeds: every artifact in ~8 s
FINISHED = ["data.n_train_per_class=40", "data.n_val_per_class=5", "data.n_test_per_class=10", "train.epochs=2",
            "concepts.min_cluster_size=8", "embed.features=pooled", "train.allow_chance_baseline=true",
            "retrain.seeds=[0, 1]", "retrain.variants=[baseline, pruned]"]


@contextlib.contextmanager
def _prefect_console(stream):
    """Prefect's console handlers write to ``stream`` for the body: they keep the stream they were made with, which
    for the first command is the CliRunner's, closed when it returns."""
    handlers = [h for h in logging.getLogger().handlers + logging.getLogger("prefect").handlers
                if type(h).__name__ == "PrefectConsoleHandler"]
    for handler in handlers:
        handler.stream = handler.console.file = stream
    try:
        yield
    finally:
        for handler in handlers:
            handler.stream = handler.console.file = sys.__stderr__


@pytest.fixture(scope="session")
def finished_run(tmp_path_factory) -> Path:
    from soxai.testing.smoke import make_smoke_run

    return make_smoke_run(tmp_path_factory.mktemp("catalogue-finished"), FINISHED)


@pytest.fixture(scope="session")
def prefect_server(tmp_path_factory, no_flow_heartbeats):
    """A Prefect test server for the cases that run a flow, and the environment those cases run with.

    The environment is set only while the server starts and while a flow case's command runs (``check_case``),
    never left in ``os.environ``: later tests start Prefect servers and ``soxai schedule`` processes of their own,
    which inherit the environment (with log shipping off, the e2e schedule test found no stage log lines)."""
    env = {"PREFECT_HOME": str(tmp_path_factory.mktemp("prefect-home")),
           "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "90", "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
           "DO_NOT_TRACK": "1", "PREFECT_LOGGING_EXTRA_LOGGERS": "soxai",
           # the console shows what a user sees; shipping each log line to the test server too only costs time
           "PREFECT_LOGGING_TO_API_ENABLED": "false"}
    from prefect.testing.utilities import prefect_test_harness

    stack = contextlib.ExitStack()
    with mock.patch.dict(os.environ, env):
        stack.enter_context(no_flow_heartbeats())  # its settings read from this environment
        with _prefect_console(io.StringIO()):  # made here, at the import, not in the first command's CliRunner
            import flows.pipeline  # noqa: F401
        stack.enter_context(prefect_test_harness(server_startup_timeout=90))
    try:
        yield env
    finally:
        with mock.patch.dict(os.environ, env):
            stack.close()


@pytest.fixture
def check_case(request, tmp_path):
    """``check_case(case)``: build the case's inputs under a fresh folder, run soxai on them, assert its promises."""

    def run(case: Case) -> Ctx:
        from typer.testing import CliRunner

        from soxai.cli import app

        ctx = Ctx(tmp_path / "case", request.getfixturevalue("finished_run") if case.finished else None)
        ctx.tmp.mkdir()
        env = request.getfixturevalue("prefect_server") if case.flow else {}

        def invoke(args: list[str]) -> tuple[int, str]:
            prefect_log = io.StringIO()
            with mock.patch.dict(os.environ, env), _prefect_console(prefect_log):
                res = CliRunner().invoke(app, args, catch_exceptions=True)
            out = prefect_log.getvalue() + res.output
            if res.exception is not None and not isinstance(res.exception, SystemExit):
                import traceback

                out += "\n" + "".join(traceback.format_exception(res.exception))
            return res.exit_code, out

        try:
            check(case, ctx, invoke)
        finally:
            for proc in ctx.processes:
                proc.kill()
                proc.wait()
        return ctx

    return run
