"""A stop of ``soxai schedule`` pauses its deployment whenever it comes, also while the deployment is being
created (before Prefect's runner installs its own SIGTERM handler). Prefect's Runner is replaced by a fake
here, in a subprocess: without the fix a SIGTERM then kills the process and nothing is paused."""

import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

SCRIPT = textwrap.dedent("""
    import signal, sys, time
    import prefect.runner
    from flows import schedule

    WHEN = sys.argv[1]

    class FakeRunner:
        def __init__(self, **kwargs):
            pass

        def add_flow(self, flow, **kwargs):
            if WHEN == "creating":  # the stop comes before the server has answered with the id
                signal.raise_signal(signal.SIGTERM)
                time.sleep(5)
            return "the-id"

        async def start(self):
            signal.signal(signal.SIGTERM, self.handle_sigterm)  # as Prefect's Runner.start does
            signal.raise_signal(signal.SIGTERM)
            time.sleep(5)

        def handle_sigterm(self, *args):  # Prefect's: schedules a stop that is never awaited
            print("prefect's handler ran")

    prefect.runner.Runner = FakeRunner
    schedule.pause_deployment = lambda which: print(f"paused {which}")
    schedule.serve(schedule.DeploymentSpec(flow=None, flow_name="soxai-scheduled-pipeline", name="nightly",
                                           cron="0 3 * * *", parameters={}))
    print("serve returned")
""")


@pytest.mark.parametrize("when, paused", [("creating", "soxai-scheduled-pipeline/nightly"), ("serving", "the-id")])
def test_schedule__sigterm_pauses_whenever_it_comes(when, paused):
    res = subprocess.run([sys.executable, "-c", SCRIPT, when], cwd=REPO, capture_output=True, text=True, timeout=120,
                         preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))
    assert res.returncode == 0, (res.returncode, res.stdout, res.stderr[-3000:])
    assert res.stdout.splitlines() == [f"paused {paused}", "serve returned"], res.stdout + res.stderr[-3000:]
