"""Test-session settings (quiet progress bars, a numba cache) and the runs tests share: a tiny run through the
pruned manifest, and a finished smoke run."""

import os
import signal
import tempfile

os.environ.setdefault("SOXAI_PROGRESS", "0")
os.environ.setdefault("NUMBA_CACHE_DIR", os.path.join(tempfile.gettempdir(), "soxai-numba-cache"))
if "PYTEST_XDIST_WORKER" in os.environ:
    # `make test` runs the suite in pytest-xdist workers, one per core it names: each worker's torch (and the
    # subprocesses it starts, which inherit this) takes its share of the cores instead of every core each, which
    # oversubscribed them. Set before torch is imported anywhere in the worker; a value the caller set stays.
    _workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    _cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    os.environ.setdefault("OMP_NUM_THREADS", str(max(1, _cores // max(1, _workers))))
    # and a Prefect home of its own: a test that starts a Prefect server without one (the early server's) would
    # otherwise share ~/.prefect's database with the other worker's, both creating or migrating it at once
    if "PREFECT_HOME" not in os.environ:
        import atexit
        import shutil

        os.environ["PREFECT_HOME"] = tempfile.mkdtemp(prefix=f"soxai-prefect-{os.environ['PYTEST_XDIST_WORKER']}-")
        atexit.register(shutil.rmtree, os.environ["PREFECT_HOME"], ignore_errors=True)


import pytest  # noqa: E402


@pytest.fixture(autouse=True)
def _environment_restored():
    """Each test leaves os.environ as it found it. A Dask LocalCluster with worker processes sets OMP_NUM_THREADS=1
    (and more) in this process before it spawns them; left there, a later test's subprocess ran torch on one thread
    while this process ran on all, and the e2e test of identical concepts across two runs failed."""
    saved = dict(os.environ)
    yield
    if os.environ != saved:
        os.environ.clear()
        os.environ.update(saved)


# Ctrl-C as at a terminal: Python's own SIGINT handler. A shell that starts a command in the background without job
# control (`nohup bash -c '...' &`) starts it with SIGINT ignored, and Python then keeps it ignored: two fresh-clone CI
# runs on 2026-12-08 failed tests/run/test_early_server.py's Ctrl-C tests so, in whichever xdist worker had not run
# tests/notebooks first (nbclient installs Python's handler again, which had hidden it in other runs).
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)


@pytest.fixture(autouse=True)
def _signal_handlers_restored(request):
    """Each test leaves SIGINT's and SIGTERM's handlers as it found them: a test that changes them is named in a
    warning and the handlers are put back."""
    import warnings

    saved = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    yield
    for sig, handler in saved.items():
        if signal.getsignal(sig) is not handler:
            warnings.warn(f"{request.node.nodeid} left {sig.name}'s handler changed "
                          f"({signal.getsignal(sig)!r}); put back", stacklevel=1)
            signal.signal(sig, handler)


# The tiny fixture keeps the pooled maps (the default before 2026-12-06): its 2-epoch model's channel relevance
# is close to noise, and its tests are about the stages, not the features. The default (channels+pooled) runs
# end to end in the smoke run (soxai.testing.smoke; tests/e2e, tests/concepts/test_assign.py).
TINY = ["data.n_train_per_class=40", "data.n_val_per_class=5", "data.n_test_per_class=10", "train.epochs=2",
        "concepts.min_cluster_size=8", "retrain.seeds=[0, 1, 2]", "embed.features=pooled",
        # its 2-epoch baseline sits near chance (val 0.40 against the bar 0.383 of soxai.train.health): the
        # stages are tested, not the model, so a run on another machine that lands at chance must not stop
        "train.allow_chance_baseline=true"]


@pytest.fixture(scope="session")
def tiny_explained(tmp_path_factory):
    """(config, RunDir) of a tiny cells run through the pruned manifest, run without Prefect.

    Tests that change it must work on a copy (shutil.copytree(run.root, ...)).
    """
    from pathlib import Path

    from flows.pipeline import EXPLAIN_STAGES, RUNNERS
    from soxai.config import load_config
    from soxai.runs import init_run

    cfg = load_config(Path(__file__).resolve().parents[1] / "configs" / "smoke.yaml", TINY)
    run = init_run(cfg, tmp_path_factory.mktemp("tiny") / "run")
    for stage in EXPLAIN_STAGES:
        RUNNERS[stage](cfg, run)
    return cfg, run


@pytest.fixture(scope="session")
def smoke_run_dir(tmp_path_factory):
    """The run directory of one in-process smoke run (soxai.testing.smoke), made once per session."""
    from soxai.testing.smoke import FAST, make_smoke_run

    # the same root in every conftest that defines this fixture: make_smoke_run's cache runs it once
    return make_smoke_run(tmp_path_factory.getbasetemp() / "soxai-smoke", FAST)


def _no_flow_heartbeats():
    """Prefect's current settings without flow-run heartbeats, as a context manager.

    A flow run's heartbeat thread sleeps in 1-s steps and the run ends by joining it, so every flow run took up to
    a second longer: about 0.9 s for a short one, 80 s over the catalogue's cases. Heartbeats let a long-lived
    server mark a crashed run; no test reads them. Enter it where the harness's environment is already set: the
    settings it makes current are read from the environment then, and Prefect's logging is set up from them."""
    from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings

    return temporary_settings(updates={PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None})


@pytest.fixture(scope="session")
def no_flow_heartbeats():
    """:func:`_no_flow_heartbeats`, for the fixtures that start a Prefect test server."""
    return _no_flow_heartbeats


@pytest.fixture(scope="module")
def prefect_harness(tmp_path_factory, request, no_flow_heartbeats):
    """A Prefect test server for the module's flows (its own PREFECT_HOME, logs of the "soxai" logger shipped). The
    environment is restored afterwards: Dask's nanny sets OMP_NUM_THREADS=1 (and more) in this process before it
    spawns a worker, and later tests' subprocesses would run torch on another thread count."""
    name = request.module.__name__.rsplit(".", 1)[-1]
    env = {"PREFECT_HOME": str(tmp_path_factory.mktemp(f"prefect-home-{name}")),
           "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "90", "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
           "DO_NOT_TRACK": "1", "PREFECT_LOGGING_EXTRA_LOGGERS": "soxai"}
    saved = dict(os.environ)
    os.environ.update(env)
    from prefect.testing.utilities import prefect_test_harness

    try:
        with no_flow_heartbeats(), prefect_test_harness(server_startup_timeout=90):
            yield
    finally:
        os.environ.clear()
        os.environ.update(saved)
