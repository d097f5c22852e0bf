"""The scale-out settings checked before a run writes anything: a Dask scheduler address that is malformed or that
nothing answers at would otherwise be found at the saliency stage, after the data stage and training (and, for an
unreachable host, after Dask's own 30 s timeout), or end in a RecursionError from deep inside the Dask runner."""

from __future__ import annotations

import socket
from urllib.parse import urlsplit

from soxai.errors import ConfigError

SCHEMES = ("tcp", "tls")  # what a Dask scheduler listens on for `Client(address)` in this setup
DEFAULT_PORT = 8786
TIMEOUT_S = 5.0


def check_dask_address(address: str, timeout: float = TIMEOUT_S) -> str:
    """``address`` if it has the form ``tcp://host:port`` and a TCP connection to it opens within ``timeout``.

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
        raise ConfigError(f"--dask-address {address!r} is not a scheduler address ({exc}); {form}") from None
    if parts.scheme not in SCHEMES or not host or port is None:
        raise ConfigError(f"--dask-address {address!r} is not a scheduler address; {form}")
    try:
        with socket.create_connection((host, port), timeout=timeout):
            pass
    except OSError as exc:
        why = f"no answer within {timeout:.0f} s" if isinstance(exc, TimeoutError) else (exc.strerror or str(exc))
        raise ConfigError(
            f"no Dask scheduler answers at {address} ({why}); check that the scheduler is "
            f"running there (`dask scheduler` prints its address), that host {host} and port {port} are right and "
            "that no firewall blocks the port; or use --dask for a local cluster"
        ) from None
    return address
