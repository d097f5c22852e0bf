"""Prefect's temporary server, started as a flow command's first step instead of after its imports.

With no API URL configured, Prefect 3 starts a temporary server (uvicorn on SQLite in PREFECT_HOME) when the
first flow runs: after the command has imported soxai, torch and Prefect, and only then does it import the
server (about 4 s) and wait for it (7-11 s). :func:`start` launches the same server, with the command line and
environment of Prefect's own ``SubprocessASGIServer``, before the command reads its config; on a second core it
is ready while the command imports and opens its run directory. :func:`serving` then points the flow at it.

Nothing is changed where it could matter: an API URL in the environment starts nothing; one in a Prefect
profile, ``prefect.toml`` or ``.env`` (known only once Prefect is imported), ephemeral mode turned off, or a
Dask run stop the early server unused, and Prefect does what it did before. A server that dies or does not
answer within Prefect's own start-up timeout is stopped, and Prefect starts its own as before.

This module imports nothing of Prefect until :func:`serving`, so that :func:`start` costs milliseconds.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

# what Prefect's SubprocessASGIServer adds to the environment of its uvicorn process (Prefect 3.8)
SERVER_ENV = {"PREFECT_UI_ENABLED": "0", "PREFECT__SERVER_EPHEMERAL": "1", "PREFECT__SERVER_FINAL": "1"}


class EarlyServer:
    """A temporary Prefect server process on ``port`` (127.0.0.1), started by :func:`start`."""

    def __init__(self, process: subprocess.Popen, port: int):
        self.process, self.port = process, port

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api"

    def ready(self, timeout: float) -> bool:
        """Wait until the server answers /health (True), or has exited or not answered in ``timeout`` s (False)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                return False
            try:
                with urllib.request.urlopen(f"{self.api_url}/health", timeout=2) as response:
                    if response.status == 200:
                        return True
            except OSError:  # not listening yet (URLError and socket timeouts are OSErrors)
                pass
            time.sleep(0.1)
        return False

    def stop(self, timeout: float = 5.0) -> None:
        """Terminate the server (SIGTERM: uvicorn shuts down cleanly), killing it after ``timeout`` s."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def _die_with_parent() -> None:  # runs in the child between fork and exec
    with contextlib.suppress(Exception):
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG (Linux): a kill -9 of
        # the command takes its server along; elsewhere the server outlives such a kill, as Prefect's own does


def _free_port() -> int:
    with contextlib.closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def server_command(port: int) -> list[str]:
    """Prefect's own command for its temporary server (SubprocessASGIServer._run_uvicorn_command)."""
    spec = importlib.util.find_spec("prefect")  # the top-level package is found, not imported
    if spec is None or spec.origin is None:
        raise ModuleNotFoundError("prefect")
    app_dir = str(Path(spec.origin).parent.parent)
    return [sys.executable, "-m", "uvicorn", "--app-dir", app_dir, "--factory", "prefect.server.api.server:create_app",
            "--host", "127.0.0.1", "--port", str(port), "--log-level", "error", "--lifespan", "on"]


def _settings_env() -> dict[str, str] | None:
    """The environment of Prefect's server process, as SubprocessASGIServer builds it; None where a server is
    named (or ephemeral mode is off) where that is known without importing Prefect: in the environment, or in
    Prefect's settings where Prefect is imported already (a second command in one process, tests)."""
    if os.environ.get("PREFECT_API_URL"):
        return None
    if "prefect.settings" not in sys.modules:
        return {**os.environ, **SERVER_ENV}
    from prefect.settings import get_current_settings

    settings = get_current_settings()
    if settings.api.url or not settings.server.ephemeral.enabled:
        return None
    return {**os.environ, **SERVER_ENV, **settings.to_environment_variables(exclude_unset=True)}


def start(command: list[str] | None = None) -> EarlyServer | None:
    """Launch the temporary server now, unless a server is named already (:func:`_settings_env`); None where it is
    not launched (Prefect then starts its own, as before). ``command`` replaces Prefect's (tests)."""
    env = _settings_env()
    if env is None:
        return None
    try:
        port = _free_port()
        argv = command or server_command(port)
        popen = {"preexec_fn": _die_with_parent} if sys.platform.startswith("linux") else {}
        # a session of its own: a Ctrl-C at the terminal reaches the command, which reports the crash to this
        # server before stopping it, and not the server first
        process = subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL, start_new_session=True, **popen)
    except (OSError, ModuleNotFoundError):
        return None
    return EarlyServer(process, port)


def _drain_prefect() -> None:
    """Send the logs and events Prefect still holds, before their server stops (as prefect_test_harness does)."""
    from prefect.events.worker import EventsWorker
    from prefect.logging.handlers import APILogWorker

    with contextlib.suppress(RuntimeError):  # a worker that never started
        APILogWorker.drain_all()
    EventsWorker.drain_all()


@contextlib.contextmanager
def serving(server: EarlyServer | None, use: bool = True) -> Iterator[str | None]:
    """Run the block's flows on ``server`` (yields its API URL), or leave Prefect to choose as before (yields
    None): where there is no server, ``use`` is false (a Dask run), Prefect's settings name an API URL or turn
    ephemeral mode off, or the server did not come up in Prefect's start-up timeout. The server is stopped at the
    block's end, after Prefect has sent it what it holds.

    As with Prefect's own temporary server, a flow run prints no "View at" link: this server serves no UI."""
    if server is None:
        yield None
        return
    try:
        from prefect.logging import get_logger
        from prefect.settings import PREFECT_API_URL, PREFECT_UI_URL, get_current_settings, temporary_settings

        settings = get_current_settings()
        wanted = use and not settings.api.url and settings.server.ephemeral.enabled
        if not (wanted and server.ready(settings.server.ephemeral.startup_timeout_seconds)):
            server.stop()
            yield None
            return
        get_logger().info("Prefect's temporary server on %s, started with the command", server.api_url)
        with temporary_settings(updates={PREFECT_API_URL: server.api_url, PREFECT_UI_URL: ""}):
            try:
                yield server.api_url
            finally:
                _drain_prefect()
    finally:
        server.stop()
