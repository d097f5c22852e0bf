"""``soxai schedule``: register a flow of flows/deploy.py as a deployment on a cron schedule and serve it.

Serving runs each scheduled flow run in a subprocess of the serving process, against the API that
``PREFECT_API_URL`` names (a ``prefect server start``), or Prefect's embedded server when it is unset.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from soxai.errors import ConfigError, SoxaiError


@dataclass(frozen=True)
class DeploymentSpec:
    flow: Any
    flow_name: str
    name: str
    cron: str
    parameters: dict[str, Any]

    @property
    def api(self) -> str:
        url = os.environ.get("PREFECT_API_URL")
        return f"server {url}" if url else "Prefect's embedded server"


def deployment_spec(kind: str, config: Path, cron: str, name: str | None, runs_dir: Path,
                    reference: Path | None = None, overrides: list[str] | None = None) -> DeploymentSpec:
    """Check everything a scheduled run would need now, not at 03:00: the flow, the cron, the config."""
    from prefect.client.schemas.schedules import CronSchedule

    from flows.deploy import DEPLOYABLE
    from soxai.config import load_config

    if kind not in DEPLOYABLE or kind == "retrain":
        raise ConfigError(f"unknown flow {kind!r} to schedule; choose pipeline, explain or monitor "
                          "(retrain works on one run directory: `soxai retrain RUN_DIR`)")
    try:
        CronSchedule(cron=cron)
    except ValueError as exc:
        raise ConfigError(f"--cron {cron!r} is not a valid cron expression ({exc}); "
                          "write five fields, e.g. \"0 3 * * *\" for 03:00 every day") from exc
    overrides = list(overrides or [])
    config = Path(config).resolve()
    params: dict[str, Any] = {"runs_dir": str(Path(runs_dir).resolve()), "overrides": overrides}
    if kind == "monitor":
        from soxai.monitor.runner import monitor_config
        from soxai.run_dir import RunDir

        if reference is None:
            raise ConfigError("scheduling the monitor needs --reference RUN_DIR (the run whose concepts it checks)")
        monitor_config(RunDir(reference), config, overrides)  # fails now on a bad reference or config
        params.update(reference_dir=str(Path(reference).resolve()), config_path=str(config))
    else:
        load_config(config, overrides)  # fails now on a bad config
        params["config_path"] = str(config)
    flow = DEPLOYABLE[kind]
    return DeploymentSpec(flow, flow.name, name or config.stem, cron, params)


def serve(spec: DeploymentSpec) -> None:
    """Create (or update) the deployment and run its scheduled runs until Ctrl-C or SIGTERM; blocks. Either
    signal pauses the deployment, so that the server stops queueing runs nobody will start.

    ``Flow.serve`` promises the pause but does not keep it in Prefect 3: its SIGTERM handler calls the
    runner's ``stop()`` inside the event loop, which only makes an ``astop`` coroutine that is never awaited,
    and the runner's own pause can be cancelled with it. Here SIGTERM is delivered as SIGINT (the one stop
    asyncio handles cleanly), and the pause is a call of its own once the runner has ended.
    """
    import asyncio
    import signal

    from prefect.runner import Runner

    # a process started as a background job of a script (`soxai schedule ... &` without job control, nohup in a
    # subshell) inherits SIGINT ignored: Ctrl-C, and SIGTERM delivered as SIGINT below, would then do nothing, the
    # process would run on and the deployment stay active. While the deployment is being created, a stop is only
    # remembered: Prefect creates it in its own loop thread, and an interrupted wait would leave that creation
    # running, the deployment active and its id unknown (a SIGTERM there used to kill the process outright).
    stops: list[int] = []
    signal.signal(signal.SIGINT, _remember(stops))
    signal.signal(signal.SIGTERM, _remember(stops))
    deployment_id = None
    try:
        runner = Runner(name=spec.name, pause_on_shutdown=False)
        deployment_id = runner.add_flow(
            spec.flow, name=spec.name, cron=spec.cron, parameters=spec.parameters, paused=False,
            description=f"soxai {spec.flow_name} of {spec.parameters.get('config_path')}")
        signal.signal(signal.SIGINT, signal.default_int_handler)  # Ctrl-C raises KeyboardInterrupt again
        signal.signal(signal.SIGTERM, _sigterm_as_sigint)
        if stops:  # stopped while the deployment was being created
            return
        # Runner.start installs self.handle_sigterm as the SIGTERM handler: an instance attribute replaces it
        runner.handle_sigterm = _sigterm_as_sigint
        asyncio.run(runner.start())
    except KeyboardInterrupt:
        pass
    finally:
        if deployment_id is not None:  # None: creating it failed, and that error is what the user sees
            pause_deployment(deployment_id)


def _remember(stops: list[int]):
    """A signal handler that records a stop and says so; a second stop raises KeyboardInterrupt (a server that
    hangs must not hold the command)."""
    def handler(signum, frame) -> None:
        stops.append(signum)
        if len(stops) > 1:
            raise KeyboardInterrupt
        print("stopping once the deployment is created, to pause it (stop again to quit now, leaving it active)",
              flush=True)
    return handler


def _sigterm_as_sigint(signum, frame) -> None:
    import signal

    signal.raise_signal(signal.SIGINT)


def pause_deployment(deployment_id) -> None:
    """Pause a deployment (its schedules stop making runs); a failure is printed, never raised: the stop ends."""
    import sys

    from prefect.client.orchestration import get_client

    try:
        with get_client(sync_client=True) as client:
            # the server's pause endpoint, not client.pause_deployment (a PATCH of `paused`): it also deletes
            # the runs its scheduler had queued ahead, which nobody would start
            client.request("POST", "/deployments/{id}/pause_deployment",
                           path_params={"id": deployment_id}).raise_for_status()
    except Exception as exc:  # the server may be gone too
        print(f"warning: could not pause deployment {deployment_id} ({exc}); pause it with "
              f"`prefect deployment pause` or delete it with `soxai schedule --delete`", file=sys.stderr)
        return
    print(f"paused deployment {deployment_id}; serving it again (`soxai schedule`, same name) resumes it")


def list_deployments() -> list[str]:
    """One line per deployment: flow/name, schedules (cron, active or paused), parameters' config."""
    from prefect.client.orchestration import get_client

    lines = []
    with get_client(sync_client=True) as client:
        flows = {f.id: f.name for f in client.read_flows()}
        for dep in client.read_deployments():
            crons = [f"{getattr(s.schedule, 'cron', s.schedule)} ({'active' if s.active else 'inactive'})"
                     for s in dep.schedules]
            status = "paused" if dep.paused else "ready"
            lines.append(f"{flows.get(dep.flow_id, '?')}/{dep.name}\t{', '.join(crons) or 'no schedule'}\t"
                         f"{status}\t{dep.parameters.get('config_path', dep.parameters.get('run_dir', ''))}")
    return lines or ["no deployments"]


def delete_deployment(name: str) -> str:
    """Delete a deployment given as flow/name, or as a name that only one deployment has."""
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        flows = {f.id: f.name for f in client.read_flows()}
        found = [d for d in client.read_deployments()
                 if f"{flows.get(d.flow_id)}/{d.name}" == name or d.name == name]
        if len(found) != 1:
            known = sorted(f"{flows.get(d.flow_id)}/{d.name}" for d in client.read_deployments())
            raise SoxaiError(f"{'no' if not found else 'more than one'} deployment named {name!r}; "
                             f"known: {known or 'none'} (see `soxai schedule --list`)")
        client.delete_deployment(found[0].id)
        return f"{flows.get(found[0].flow_id)}/{found[0].name}"
