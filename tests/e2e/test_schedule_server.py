"""`soxai schedule` against a real `prefect server start` on loopback: the deployment, its cron schedule,
a triggered run of the smoke config served to completion, what the UI shows for it, --list and --delete."""

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
pytestmark = [pytest.mark.e2e, pytest.mark.slow]
CRON = "0 3 * * *"
# The smoke config made tiny: the test is about scheduling and serving, not about the findings.
SMALL = ("data.n_train_per_class=40", "data.n_val_per_class=5", "data.n_test_per_class=10", "train.epochs=2",
         "concepts.min_cluster_size=8", "retrain.variants=[baseline, pruned]")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _stop(proc: subprocess.Popen, sig=signal.SIGTERM) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, sig)  # its own session: the server's or runner's children go too
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)


@pytest.fixture(scope="module")
def prefect_server(tmp_path_factory):
    """A `prefect server start` on 127.0.0.1 with its own home and SQLite file; stopped afterwards."""
    import httpx

    home = tmp_path_factory.mktemp("prefect-server")
    port = _free_port()
    env = {**os.environ, "PREFECT_HOME": str(home), "PREFECT_API_DATABASE_CONNECTION_URL":
           f"sqlite+aiosqlite:///{home}/prefect.db", "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
           "DO_NOT_TRACK": "1", "PREFECT_UI_ENABLED": "false", "PYTHONPATH": str(REPO),
           # a busy 2-core machine: SQLite writes from the server and the runner queue behind each other
           "PREFECT_SERVER_DATABASE_TIMEOUT": "60", "PREFECT_SERVER_DATABASE_CONNECTION_TIMEOUT": "30"}
    env.pop("PREFECT_API_URL", None)
    log = open(home / "server.log", "w")
    proc = subprocess.Popen([str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(port)],
                            env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}/api"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"prefect server did not start: {(home / 'server.log').read_text()[-3000:]}")
            time.sleep(0.5)
        yield url, {**env, "PREFECT_API_URL": url}
    finally:
        _stop(proc)
        log.close()


def _call(method: str, url: str, body: dict | None = None):
    """One API call, retried while the server answers 503: it sends that for errors a client may retry
    (a locked SQLite file under load), as Prefect's own client retries them."""
    import httpx

    for attempt in range(8):
        res = httpx.request(method, url, json=body, timeout=30)
        if res.status_code != 503:
            break
        time.sleep(min(2 ** attempt, 15))
    res.raise_for_status()
    return res.json()


def _post(url: str, path: str, body: dict | None = None):
    return _call("POST", f"{url}{path}", body or {})


def _get(url: str, path: str):
    return _call("GET", f"{url}{path}")


def _serve(env, tmp_path, name: str, extra: list[str], preexec_fn=None):
    """`soxai schedule` of the smoke config on the cron, in a session of its own, its output in serve.log."""
    log = open(tmp_path / "serve.log", "w")
    serve = subprocess.Popen(
        [str(BIN / "soxai"), "schedule", "configs/smoke.yaml", "--cron", CRON, "--name", name,
         "--runs-dir", str(tmp_path / "runs"), *extra],
        env=env, cwd=REPO, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, preexec_fn=preexec_fn)
    return serve, log


def _soxai(env, *args, timeout=120):
    return subprocess.run([str(BIN / "soxai"), *args], env=env, cwd=REPO, capture_output=True, text=True,
                          timeout=timeout)


def test_schedule__real_server_serves_a_cron_deployment_of_the_smoke_config(prefect_server, tmp_path):
    url, env = prefect_server
    env = {**env, "PREFECT_RUNNER_POLL_FREQUENCY": "2", "SOXAI_PROGRESS": "0"}
    overrides = [a for o in SMALL for a in ("--set", o)]
    serve, log = _serve(env, tmp_path, "nightly", overrides)
    try:
        # the deployment and its schedule, found through the API
        deadline, found = time.monotonic() + 120, []
        while not found:
            assert serve.poll() is None, (tmp_path / "serve.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "the deployment never appeared"
            time.sleep(1)
            found = [d for d in _post(url, "/deployments/filter") if d["name"] == "nightly"]
        dep = found[0]
        assert [s["schedule"]["cron"] for s in dep["schedules"]] == [CRON]
        assert dep["parameters"]["config_path"] == str(REPO / "configs" / "smoke.yaml")
        flow = _get(url, f"/flows/{dep['flow_id']}")
        assert flow["name"] == "soxai-scheduled-pipeline"

        # trigger a run now; the serving process picks it up and runs it
        run = _post(url, f"/deployments/{dep['id']}/create_flow_run", {})
        deadline = time.monotonic() + 400
        while True:
            state = _get(url, f"/flow_runs/{run['id']}")
            if state["state_type"] in ("COMPLETED", "FAILED", "CRASHED", "CANCELLED"):
                break
            assert time.monotonic() < deadline, (tmp_path / "serve.log").read_text()[-3000:]
            time.sleep(2)
        assert state["state_type"] == "COMPLETED", (tmp_path / "serve.log").read_text()[-5000:]

        # the flow run is named after the run id, whose directory holds a completed run
        run_dir = tmp_path / "runs" / state["name"]
        info = json.loads((run_dir / "run.json").read_text())
        assert info["run_id"] == state["name"] and info["status"] == "completed"
        assert (run_dir / "report" / "report.html").is_file()

        # each stage a task run with a duration; the artifacts; the library's log lines
        tasks = _post(url, "/task_runs/filter", {"flow_runs": {"id": {"any_": [run["id"]]}}})
        by_name = {t["name"]: t for t in tasks}
        stages = ["data", "model", "saliency", "embed", "concepts", "bias", "manifest", "train", "compare", "report"]
        assert all(by_name[s]["state_type"] == "COMPLETED" and by_name[s]["total_run_time"] > 0 for s in stages)
        arts = _post(url, "/artifacts/filter", {"artifacts": {"flow_run_id": {"any_": [run["id"]]}}})
        kinds = {a["key"]: a for a in arts}
        assert kinds["soxai-summary"]["type"] == "markdown" and "concepts found" in kinds["soxai-summary"]["data"]
        assert "report.html" in kinds["soxai-summary"]["data"]
        assert kinds["soxai-concepts"]["type"] == "table"
        logs, page = [], None
        while page is None or len(page) == 200:  # every log line of the run, 200 at a time (the API's page)
            page = _post(url, "/logs/filter", {"logs": {"flow_run_id": {"any_": [run["id"]]}}, "limit": 200,
                                               "offset": len(logs)})
            logs += page
        assert any("stage saliency: done" in entry["message"] for entry in logs)

        listed = _soxai(env, "schedule", "--list")
        assert listed.returncode == 0 and "soxai-scheduled-pipeline/nightly" in listed.stdout
        assert CRON in listed.stdout
    finally:
        _stop(serve, signal.SIGINT)
        log.close()

    deleted = _soxai(env, "schedule", "--delete", "nightly")
    assert deleted.returncode == 0, deleted.stderr
    assert not [d for d in _post(url, "/deployments/filter") if d["name"] == "nightly"]
    missing = _soxai(env, "schedule", "--delete", "nightly")
    assert missing.returncode == 2 and "no deployment named" in missing.stderr


def test_schedule__bad_cron_fails_before_serving(prefect_server):
    _, env = prefect_server
    res = _soxai(env, "schedule", "configs/smoke.yaml", "--cron", "every night")
    assert res.returncode == 2 and "not a valid cron expression" in res.stderr


def test_prefect_yaml__deploys_a_deployment_per_flow(prefect_server):
    url, env = prefect_server
    pool = subprocess.run([str(BIN / "prefect"), "work-pool", "create", "soxai-local", "--type", "process"],
                          env=env, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert pool.returncode == 0, pool.stdout + pool.stderr
    res = subprocess.run([str(BIN / "prefect"), "--no-prompt", "deploy", "--all"], env=env, cwd=REPO,
                         capture_output=True, text=True, timeout=180)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    # only the deployments prefect.yaml declares: the module's server may also hold the schedule test's
    expected = {"pipeline-nightly", "explain", "retrain", "monitor"}
    deps = {d["name"]: d for d in _post(url, "/deployments/filter") if d["name"] in expected}
    flows = {d["name"]: _get(url, f"/flows/{d['flow_id']}")["name"] for d in deps.values()}
    assert flows == {"pipeline-nightly": "soxai-scheduled-pipeline", "explain": "soxai-scheduled-explain",
                     "retrain": "soxai-scheduled-retrain", "monitor": "soxai-scheduled-monitor"}
    assert [s["schedule"]["cron"] for s in deps["pipeline-nightly"]["schedules"]] == [CRON]
    assert all(d["work_pool_name"] == "soxai-local" for d in deps.values())
    # a worker's run forwards the library's logs: the env job variable, and the process environment the
    # process worker would start a run of a deployment with (pool template + the deployment's variables)
    assert {n: d["job_variables"].get("env") for n, d in deps.items()} == {
        n: {"PREFECT_LOGGING_EXTRA_LOGGERS": "soxai"} for n in expected}
    assert _worker_env(url, deps["explain"]["id"])["PREFECT_LOGGING_EXTRA_LOGGERS"] == "soxai"


def _worker_env(url: str, deployment_id: str) -> dict:
    """The environment a `prefect worker` of the process pool would give a run of the deployment (no worker
    runs: the flow run stays scheduled)."""
    import asyncio

    from prefect.client.orchestration import PrefectClient
    from prefect.workers.process import ProcessJobConfiguration

    flow_run_id = _post(url, f"/deployments/{deployment_id}/create_flow_run", {})["id"]

    async def resolve():
        async with PrefectClient(url) as client:
            job = await ProcessJobConfiguration.resolve_for_flow_run(
                await client.read_flow_run(flow_run_id), client=client,
                work_pool=await client.read_work_pool("soxai-local"), worker_name="test")
        return job.env

    return asyncio.run(resolve())


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_schedule__a_stop_pauses_the_deployment(prefect_server, tmp_path, sig):
    url, env = prefect_server
    name = f"stop-{sig.name.lower()}"
    # started with SIGINT ignored, as a script's background job (`soxai schedule ... &`) inherits it: the stop must
    # work all the same
    serve, log = _serve(env, tmp_path, name, [],
                        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))
    try:
        deadline, found = time.monotonic() + 120, []
        while not found:
            assert serve.poll() is None, (tmp_path / "serve.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "the deployment never appeared"
            time.sleep(1)
            found = [d for d in _post(url, "/deployments/filter") if d["name"] == name]
        assert found[0]["paused"] is False
        # the server's scheduler queues the next 03:00 runs ahead; the stop must take them back too
        deadline, queued = time.monotonic() + 60, []
        while not queued:
            assert time.monotonic() < deadline, "the scheduler queued no run"
            time.sleep(1)
            queued = _scheduled_runs(url, found[0]["id"])
        os.killpg(serve.pid, sig)  # as a terminal's Ctrl-C (SIGINT) or systemd's stop (SIGTERM) sends it
        serve.wait(60)
    finally:
        _stop(serve, signal.SIGKILL)
        log.close()
    out = (tmp_path / "serve.log").read_text()
    assert "never awaited" not in out, out[-3000:]
    dep = _get(url, f"/deployments/{found[0]['id']}")
    assert dep["paused"] is True, out[-3000:]
    assert _scheduled_runs(url, dep["id"]) == []
    listed = _soxai(env, "schedule", "--list")
    assert f"soxai-scheduled-pipeline/{name}" in listed.stdout
    assert [line for line in listed.stdout.splitlines() if f"/{name}\t" in line][0].split("\t")[2] == "paused"
    _soxai(env, "schedule", "--delete", name)


def _scheduled_runs(url: str, deployment_id: str) -> list:
    return _post(url, "/flow_runs/filter", {"deployments": {"id": {"any_": [deployment_id]}},
                                            "flow_runs": {"state": {"type": {"any_": ["SCHEDULED"]}}}})

