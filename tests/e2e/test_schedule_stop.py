"""A stop of ``soxai schedule`` pauses its deployment whenever it comes, also while the deployment is being
created (before Prefect's runner installs its own SIGTERM handler; Prefect creates it in a thread of its own while
the main thread waits). Prefect's Runner is replaced by a fake here, in a subprocess: before the fix a SIGTERM then
killed the process and nothing was paused."""

import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

SCRIPT = textwrap.dedent("""
    import asyncio, signal, sys, threading, time
    from concurrent.futures import Future
    import prefect.runner
    from flows import schedule

    WHEN = sys.argv[1]

    class FakeRunner:
        def __init__(self, **kwargs):
            pass

        def add_flow(self, flow, **kwargs):
            created = Future()

            def create():  # as Prefect does it: in its loop thread, the main thread waiting on the result
                if WHEN in ("creating", "twice"):
                    signal.raise_signal(signal.SIGTERM)
                    if WHEN == "twice":
                        signal.raise_signal(signal.SIGINT)
                time.sleep(0.5)
                created.set_result("the-id")

            threading.Thread(target=create).start()
            return created.result()

        async def start(self):
            signal.signal(signal.SIGTERM, self.handle_sigterm)  # as Prefect's Runner.start does
            signal.raise_signal(signal.SIGTERM)
            await asyncio.sleep(5)

        def handle_sigterm(self, *args):  # Prefect's: schedules a stop that is never awaited
            print("prefect's handler ran")

    prefect.runner.Runner = FakeRunner
    schedule.pause_deployment = lambda which: print(f"paused {which}")
    schedule.serve(schedule.DeploymentSpec(flow=None, flow_name="soxai-scheduled-pipeline", name="nightly",
                                           cron="0 3 * * *", parameters={}))
    print("serve returned")
""")


@pytest.mark.parametrize("when", ["creating", "serving"])
def test_schedule__sigterm_pauses_whenever_it_comes(when):
    res = subprocess.run([sys.executable, "-c", SCRIPT, when], cwd=REPO, capture_output=True, text=True, timeout=120,
                         preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))
    assert res.returncode == 0, (res.returncode, res.stdout, res.stderr[-3000:])
    lines = res.stdout.splitlines()
    assert lines[-2:] == ["paused the-id", "serve returned"], res.stdout + res.stderr[-3000:]
    assert ("stopping once the deployment is created" in res.stdout) == (when == "creating")


def test_schedule__a_second_stop_while_creating_quits_at_once():
    res = subprocess.run([sys.executable, "-c", SCRIPT, "twice"], cwd=REPO, capture_output=True, text=True,
                         timeout=120)
    # the stop is not held back: the command returns without waiting for the creation, and without a pause
    assert res.returncode == 0 and "paused" not in res.stdout, res.stdout + res.stderr[-3000:]
    assert "stop again to quit now" in res.stdout and res.stdout.splitlines()[-1] == "serve returned"
