"""Prefect's temporary server, started as a flow command's first step instead of after its imports.

With no API URL configured, Prefect 3 starts a temporary server (uvicorn on SQLite in PREFECT_HOME) when the
first flow runs: after the command has imported soxai, torch and Prefect, and only then does it import the
server (about 4 s) and wait for it (7-11 s). :func:`start` launches the same server, with the command line and
environment of Prefect's own ``SubprocessASGIServer``, before the command reads its config; on a second core it
is ready while the command imports and opens its run directory. :func:`serving` then points the flow at it.

Nothing is changed where it could matter. A server named in the environment or the active Prefect profile,
ephemeral mode turned off there, or a Dask run starts nothing; one named in ``prefect.toml`` or ``.env`` (known only
once Prefect is imported) stops the early server unused; and Prefect does what it did before. A server that dies or
does not answer within Prefect's own start-up timeout is stopped, and Prefect starts its own as before.

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
import threading
import time
import tomllib
import urllib.request
from collections.abc import Iterator
from pathlib import Path

# what Prefect's SubprocessASGIServer adds to the environment of its uvicorn process (Prefect 3.8)
SERVER_ENV = {"PREFECT_UI_ENABLED": "0", "PREFECT__SERVER_EPHEMERAL": "1", "PREFECT__SERVER_FINAL": "1"}


class EarlyServer:
    """A temporary Prefect server process on ``port`` (127.0.0.1), started by :func:`start`."""

    def __init__(self, process: subprocess.Popen, port: int):
        self.process, self.port = process, port
        self.answered = False

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api"

    def ready(self, timeout: float) -> bool:
        """Wait until the server answers /health (True), or has exited or not answered in ``timeout`` s (False)."""
        import http.client

        direct = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # 127.0.0.1, never through a proxy
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                return False
            try:
                with direct.open(f"{self.api_url}/health", timeout=2) as response:
                    if response.status == 200:
                        if not _holds_port(self.process.pid, self.port):  # another server took the port first
                            return False
                        self.answered = True
                        return True
            except (OSError, http.client.HTTPException):  # not listening yet (URLError, timeouts: OSErrors)
                pass
            time.sleep(0.1)
        return False

    def stop(self, timeout: float = 5.0) -> None:
        """Terminate a server that has answered (SIGTERM: uvicorn shuts down cleanly), killing it after ``timeout``
        s; kill one that has not: it has served nothing, and uvicorn acts on SIGTERM only once it has started
        (about 10 s on 2 cores), so a command ending early (a config error, a locked run directory) waited 5 s."""
        if self.process.poll() is None and not self.answered:
            self.process.kill()
            self.process.wait()
        elif self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def _holds_port(pid: int, port: int) -> bool:
    """Whether process ``pid`` holds the socket listening on 127.0.0.1:``port`` (Linux: /proc; True where that
    cannot be read). The port was free when it was drawn and uvicorn binds it seconds later: had another server
    taken it meanwhile, uvicorn would exit, and the flow would have run on that server until it stopped."""
    try:
        with open("/proc/net/tcp") as table:
            rows = [line.split() for line in table.readlines()[1:]]
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError:  # not Linux, or /proc not readable here
        return True
    where = f"{int.from_bytes(socket.inet_aton('127.0.0.1'), sys.byteorder):08X}:{port:04X}"  # /proc's byte order
    listening = {f"socket:[{row[9]}]" for row in rows if len(row) > 9 and row[1] == where and row[3] == "0A"}
    held = set()
    for fd in fds:
        with contextlib.suppress(OSError):  # closed meanwhile
            held.add(os.readlink(f"/proc/{pid}/fd/{fd}"))
    return bool(listening & held)


def _linux_child_setup() -> dict:
    """Popen's arguments on Linux: the server in a session of its own, so that a terminal's Ctrl-C reaches the
    command, which reports the crash to the server before stopping it (Prefect's own server, in the command's
    process group, stopped first); and PR_SET_PDEATHSIG, so that a command killed outright (kill -9, a hang-up)
    takes its server along. Elsewhere neither: the server stays in the command's group, as Prefect's does."""
    if not sys.platform.startswith("linux"):
        return {}
    try:
        import ctypes

        prctl = ctypes.CDLL(None, use_errno=True).prctl  # looked up here: the child only calls it
    except (OSError, AttributeError):
        return {}
    parent = os.getpid()

    def in_child() -> None:  # between fork and exec
        prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
        if os.getppid() != parent:  # the command died before that: nothing would end this server
            os._exit(1)

    return {"preexec_fn": in_child, "start_new_session": True}


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


_OFF = ("0", "false", "no", "off")


def _named_without_prefect() -> bool:
    """Whether the environment or the active Prefect profile (``prefect config set``) names a server or turns
    ephemeral mode off, read without importing Prefect. ``prefect.toml`` and ``.env`` are left to :func:`serving`,
    which stops the early server unused where they name one."""
    env = os.environ
    if env.get("PREFECT_API_URL"):
        return True
    if any(env.get(name, "").strip().lower() in _OFF
           for name in ("PREFECT_SERVER_EPHEMERAL_ENABLED", "PREFECT_SERVER_ALLOW_EPHEMERAL_MODE")):
        return True
    try:
        home = Path(env.get("PREFECT_HOME") or Path.home() / ".prefect").expanduser()
        profiles = tomllib.loads(Path(env.get("PREFECT_PROFILES_PATH") or home / "profiles.toml").expanduser()
                                 .read_text())
        chosen = profiles.get("profiles", {}).get(env.get("PREFECT_PROFILE") or profiles.get("active"), {})
        off = str(chosen.get("PREFECT_SERVER_EPHEMERAL_ENABLED", "")).strip().lower() in _OFF
        return bool(chosen.get("PREFECT_API_URL")) or off
    except (OSError, ValueError, RuntimeError, AttributeError, TypeError):  # no file, not TOML, not Prefect's
        return False  # layout: Prefect's own reading decides, once imported (serving)


def _named_in(settings) -> bool:
    """Whether Prefect's ``settings`` name a server or turn ephemeral mode off: no temporary server then."""
    return bool(settings.api.url) or not settings.server.ephemeral.enabled


def _settings_env() -> dict[str, str] | None:
    """The environment of Prefect's server process, as SubprocessASGIServer builds it; None where a server is
    named or ephemeral mode is off, as far as that is known without importing Prefect (:func:`_named_without_
    prefect`), or from Prefect's settings where Prefect is imported already (a second command in one process)."""
    if _named_without_prefect():
        return None
    if "prefect.settings" not in sys.modules:
        return {**os.environ, **SERVER_ENV}
    from prefect.settings import get_current_settings

    settings = get_current_settings()
    if _named_in(settings):
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
        process = subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL, **_linux_child_setup())
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
    block's end, after Prefect has sent it what it holds. A Ctrl-C in the block raises wherever the main thread is
    (:func:`interrupts_raise`).

    As with Prefect's own temporary server, a flow run prints no "View at" link: this server serves no UI."""
    with interrupts_raise(), _serving(server, use) as url:
        yield url


@contextlib.contextmanager
def interrupts_raise() -> Iterator[None]:
    """For the block, Ctrl-C (SIGINT) raises KeyboardInterrupt wherever the main thread is.

    Python's default handler does that too, but ``asyncio.run()`` in the main thread swaps it for one that only
    cancels the loop's task: a coroutine that takes the cancellation and returns (a client that retries its
    request) loses the Ctrl-C. asyncio leaves any other handler alone. Nothing changes outside the main thread or
    where the caller set a handler. (A CI run of the Ctrl-C test once lost a Ctrl-C in the model stage; whether by
    this path is not known: docs/RELIABILITY.md.)"""
    if threading.current_thread() is not threading.main_thread() \
            or signal.getsignal(signal.SIGINT) is not signal.default_int_handler:
        yield
        return
    signal.signal(signal.SIGINT, _raise_interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, signal.default_int_handler)


def _raise_interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


@contextlib.contextmanager
def _serving(server: EarlyServer | None, use: bool) -> Iterator[str | None]:
    if server is None:
        yield None
        return
    try:
        from prefect.logging import get_logger
        from prefect.settings import PREFECT_API_URL, PREFECT_UI_URL, get_current_settings, temporary_settings

        settings = get_current_settings()
        if not (use and not _named_in(settings) and server.ready(settings.server.ephemeral.startup_timeout_seconds)):
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
