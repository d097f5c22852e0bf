"""Where a run executes (the ``runner`` config section) and the check of a Dask scheduler address before a run writes
anything: an address that is malformed or that nothing answers at would otherwise be found at the first stage that
runs on the cluster, after the data stage and training (and, for an unreachable host, after Dask's own 30 s timeout),
or end in a RecursionError from deep inside the Dask runner."""

from __future__ import annotations

import socket
from urllib.parse import urlsplit

from pydantic import Field, model_validator

from soxai._base import Section
from soxai.errors import ConfigError

SCHEMES = ("tcp", "tls")  # what a Dask scheduler listens on for `Client(address)` in this setup
DEFAULT_PORT = 8786
TIMEOUT_S = 5.0


class RunnerConfig(Section):
    """Where the stages run: in this process (the default), on a local Dask cluster, or on a running one.

    Where a run executes never changes what it computes: this section is in no stage's fingerprint nor the
    manifest's ``config_hash``, and every result is the same with any setting (same seeds). ``soxai run --dask``
    sets ``local_workers: 2``, ``--dask-address ADDRESS`` sets ``address``.
    """

    address: str | None = Field(
        None, description="a running Dask scheduler, tcp://HOST:PORT (`dask scheduler` prints it); its workers need "
        "soxai installed and the run directory on a shared file system. Checked before anything is written. "
        "Saliency shards, the per-concept bias tests and each retrained model (variant x seed, asking for a worker "
        "resource GPU=1 where workers offer one) then run as tasks of its workers; the report stays here"
    )
    local_workers: int = Field(
        0, ge=0, le=256, description="0: every stage in this process, one after another (unless `address` is set); "
        "N: the same tasks on a local Dask cluster of N worker processes, one thread each"
    )

    @model_validator(mode="after")
    def _one_cluster(self) -> RunnerConfig:
        if self.address is not None and self.local_workers:
            raise ValueError(
                f"runner.address ({self.address}) and runner.local_workers ({self.local_workers}) both name a "
                "cluster; set runner.local_workers: 0 to use the scheduler, or runner.address: null for a local one"
            )
        return self

    @property
    def on_dask(self) -> bool:
        """Whether the run goes to a Dask cluster (a running one or a local one)."""
        return self.address is not None or self.local_workers > 0


def check_dask_address(address: str, timeout: float = TIMEOUT_S, source: str = "--dask-address") -> str:
    """``address`` if it has the form ``tcp://host:port``, a TCP connection to it opens within ``timeout`` and what
    answers there is a Dask scheduler (its identity, asked the way a Dask client does).

    ``source`` names where the address came from in the messages (the option, or ``runner.address``).

    Raises
    ------
    ConfigError
        Naming the address, what is wrong with it and what to check.
    """
    form = f"write it as tcp://HOST:PORT (a Dask scheduler listens on port {DEFAULT_PORT} by default)"
    try:
        parts = urlsplit(address if "://" in address else f"tcp://{address}")
        host, port = parts.hostname, parts.port
    except ValueError as exc:  # a port that is not a number, or out of range
        raise ConfigError(f"{source} {address!r} is not a scheduler address ({exc}); {form}") from None
    if parts.scheme not in SCHEMES or not host or port is None:
        raise ConfigError(f"{source} {address!r} is not a scheduler address; {form}")
    try:
        with socket.create_connection((host, port), timeout=timeout):
            pass
    except OSError as exc:
        why = f"no answer within {timeout:.0f} s" if isinstance(exc, TimeoutError) else (exc.strerror or str(exc))
        raise ConfigError(
            f"no Dask scheduler answers at {address} ({why}); check that the scheduler is "
            f"running there (`dask scheduler` prints its address), that host {host} and port {port} are right and "
            "that no firewall blocks the port; or use --dask (runner.local_workers) for a local cluster"
        ) from None
    who = _identity(address if "://" in address else f"tcp://{address}", timeout)
    if who != "Scheduler":
        raise ConfigError(
            f"something answers at {address}, but it is not a Dask scheduler ({who}); give the address that "
            "`dask scheduler` prints as 'Scheduler at:' (port 8786 by default; 8787 is its dashboard)"
        )
    return address


def _identity(address: str, timeout: float) -> str:
    """What answers Dask's identity request at ``address``: "Scheduler", another Dask type, or why nothing did.

    A TCP connection alone let the dashboard's port pass, and the run then hung at "Connecting to an existing Dask
    cluster" after the data stage and training. Run in a thread of its own: the caller may be inside an event loop.
    """
    import asyncio
    from concurrent.futures import ThreadPoolExecutor

    async def ask() -> str:
        from distributed.comm import connect

        comm = await connect(address, timeout=timeout)
        try:
            await comm.write({"op": "identity", "reply": True})
            reply = await asyncio.wait_for(comm.read(), timeout)
        finally:
            await comm.close()
        return str(reply.get("type", "no type in its reply")) if isinstance(reply, dict) else "an unexpected reply"

    def run() -> str:
        try:
            return asyncio.run(asyncio.wait_for(ask(), 2 * timeout))  # connect's own handshake waits unbounded
        except OSError as exc:  # TimeoutError among them
            return f"no Dask handshake within {timeout:.0f} s: {type(exc).__name__}"
        except Exception as exc:  # a protocol error from whatever listens there
            return f"no Dask handshake: {type(exc).__name__}"

    with ThreadPoolExecutor(1) as pool:
        return pool.submit(run).result()


def with_flags(runner: RunnerConfig, dask: bool = False, address: str | None = None) -> RunnerConfig:
    """The runner section after the command line's ``--dask`` (a local cluster of 2 workers, or the config's own
    ``local_workers``) and ``--dask-address`` (wins over both); ``runner`` as it is without them."""
    if address:
        return RunnerConfig(address=address)
    if dask:
        return RunnerConfig(local_workers=runner.local_workers or 2)
    return runner


# Dask's nanny sets MALLOC_TRIM_THRESHOLD_=65536 in every worker process it spawns (distributed.yaml,
# ``distributed.nanny.pre-spawn-environ``), to hand freed memory back to the system sooner. Setting that variable
# turns off glibc's dynamic mmap threshold: every allocation of 128 KiB or more (a batch's activations, a tensor's
# gradient) is then its own mmap/munmap, with its pages faulted in afresh. Measured (bench/dask_worker_overhead.py,
# 150 SGD steps of a small CNN on one thread, docs/BENCHMARKS.md): 5.0 s in a plain spawned process, 12.7 s in one
# started with the variable, 14.8 s on a Dask worker as Dask starts it, 5.8 s on one started without it; 12x the
# minor page faults and 7-8 s of system time against 0.6 s. Training a model as a worker task took 2-3x as long as
# in one process, and a 2-worker cluster was slower than one process.
MALLOC_KEY = "distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_"


def keep_malloc_defaults() -> None:
    """Start the workers of local clusters made after this call in this process with glibc's own malloc tuning:
    Dask's ``MALLOC_TRIM_THRESHOLD_`` is left out of their environment (see :data:`MALLOC_KEY`). Its other
    pre-spawn variables (one OpenMP / MKL / OpenBLAS thread per worker) stay. Workers started elsewhere (``dask
    worker``) need the same in their Dask config: docs/SCALEOUT.md."""
    import dask

    dask.config.set({MALLOC_KEY: None})
