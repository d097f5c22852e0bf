"""Prefect's temporary server started as a flow command's first step (flows/server.py): used where Prefect would
start its own, left alone where a server is named, stopped however the command ends."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from flows import server

REPO = Path(__file__).resolve().parents[2]
# a stand-in for the server where only its process matters: it never answers /health
SLEEPER = [sys.executable, "-c", "import time; time.sleep(120)"]


def _gone(pid: int, within: float = 10.0) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.1)
    return False


@pytest.fixture
def no_server_named(monkeypatch):
    monkeypatch.delenv("PREFECT_API_URL", raising=False)


@pytest.mark.slow
def test_serving__a_flow_runs_on_the_early_server_which_stops_after_the_block(no_server_named):
    from prefect import flow
    from prefect.client.orchestration import get_client
    from prefect.settings import (
        PREFECT_API_URL,
        PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS,
        PREFECT_UI_URL,
        temporary_settings,
    )

    @flow(name="early-server-probe")
    def probe() -> int:
        return 7

    early = server.start()
    assert early is not None and early.process.poll() is None
    # a fresh database's migration can take longer than the default 20 s on a busy host (the CLI sets 90)
    with temporary_settings(updates={PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS: 90}), \
            server.serving(early) as url:
        assert url == early.api_url == PREFECT_API_URL.value()
        assert PREFECT_UI_URL.value() == ""  # no "View at" link to a server without a UI
        with get_client(sync_client=True) as client:
            before = {run.id for run in client.read_flow_runs()}
            assert probe() == 7
            runs = [run for run in client.read_flow_runs() if run.id not in before]
        assert [(run.flow_id is not None, run.state.name) for run in runs] == [(True, "Completed")]
    assert early.process.poll() is not None  # stopped at the block's end
    assert PREFECT_API_URL.value() is None  # and the settings are Prefect's own again


def test_start__the_server_gets_prefects_current_settings(no_server_named, tmp_path):
    from prefect.settings import PREFECT_HOME, temporary_settings

    seen = tmp_path / "home.txt"
    show = [sys.executable, "-c", "import os, sys; open(sys.argv[1], 'w').write(os.environ['PREFECT_HOME'] + "
            "os.environ['PREFECT__SERVER_EPHEMERAL'])", str(seen)]
    with temporary_settings(updates={PREFECT_HOME: str(tmp_path / "home")}):
        early = server.start(show)
    assert early.process.wait(timeout=30) == 0
    assert seen.read_text() == str(tmp_path / "home") + "1"  # as SubprocessASGIServer passes them


def test_start__nothing_where_the_environment_names_a_server(monkeypatch):
    monkeypatch.setenv("PREFECT_API_URL", "http://127.0.0.1:9/api")
    assert server.start(SLEEPER) is None


def test_start__nothing_where_prefects_settings_name_a_server(no_server_named):
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings(updates={PREFECT_API_URL: "http://127.0.0.1:9/api"}):
        assert server.start(SLEEPER) is None


def test_serving__stops_the_early_server_unused_where_it_is_not_wanted(no_server_named):
    from prefect.settings import PREFECT_API_URL, temporary_settings

    for use, named in [(False, None), (True, "http://127.0.0.1:9/api")]:
        early = server.start(SLEEPER)
        with temporary_settings(updates={PREFECT_API_URL: named}), server.serving(early, use=use) as url:
            assert url is None
            assert early.process.poll() is not None  # stopped before the flow, not after it
            assert PREFECT_API_URL.value() == named


def test_serving__a_server_that_dies_leaves_prefect_to_start_its_own(no_server_named):
    from prefect.settings import PREFECT_API_URL

    early = server.start([sys.executable, "-c", "raise SystemExit(1)"])
    began = time.monotonic()
    with server.serving(early) as url:
        assert url is None and PREFECT_API_URL.value() is None
    assert time.monotonic() - began < 10  # not Prefect's whole start-up timeout
    assert early.process.returncode == 1


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
def test_start__the_server_ends_with_a_killed_command(tmp_path):
    code = ("import os, signal, sys; from flows import server; "
            f"early = server.start({SLEEPER!r}); print(early.process.pid, flush=True); "
            "os.kill(os.getpid(), signal.SIGKILL)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                          env={**os.environ, "PYTHONPATH": str(REPO)}, cwd=REPO)
    assert done.returncode == -signal.SIGKILL
    assert _gone(int(done.stdout.split()[0]))
