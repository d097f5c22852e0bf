"""The Dask scheduler address is checked before a run writes anything (soxai.scaleout); the refusals are in the
catalogue (tests/catalogue/test_catalogue_rundir.py, dask-address-*)."""

import socket
import time

import pytest

from soxai.errors import ConfigError
from soxai.scaleout import check_dask_address


def test_check_dask_address__a_scheduler_passes_with_or_without_the_scheme():
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(n_workers=0, processes=False, protocol="tcp", dashboard_address=None) as cluster:
        address = cluster.scheduler_address
        assert check_dask_address(address) == address
        assert check_dask_address(address.removeprefix("tcp://")) == address.removeprefix("tcp://")


def test_check_dask_address__a_port_that_is_not_a_scheduler_is_refused_within_the_timeout():
    # the dashboard's port, or anything else that accepts a connection and never speaks Dask's protocol
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        t0 = time.monotonic()
        with pytest.raises(ConfigError, match=rf"something answers at tcp://127.0.0.1:{port}, but it is not a Dask "
                                              "scheduler .*Scheduler at:"):
            check_dask_address(f"tcp://127.0.0.1:{port}", timeout=1)
        assert time.monotonic() - t0 < 10


def test_check_dask_address__a_closed_port_names_the_address_and_what_to_check():
    with socket.socket() as probe:  # a port that was free a moment ago: nothing listens there
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(ConfigError, match=rf"no Dask scheduler answers at tcp://127.0.0.1:{port} .*dask scheduler"):
        check_dask_address(f"tcp://127.0.0.1:{port}", timeout=2)


@pytest.mark.parametrize("address", ["tcp://", "tcp://host", "http://host:8786", "tcp://host:99999"])
def test_check_dask_address__not_an_address_is_refused_before_connecting(address):
    with pytest.raises(ConfigError, match="tcp://HOST:PORT"):
        check_dask_address(address)
