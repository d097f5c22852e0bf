"""The Dask scheduler address is checked before a run writes anything (soxai.scaleout); the refusals are in the
catalogue (tests/catalogue/test_catalogue_rundir.py, dask-address-*)."""

import socket

import pytest

from soxai.errors import ConfigError
from soxai.scaleout import check_dask_address


def test_check_dask_address__a_listening_port_passes_with_or_without_the_scheme():
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        assert check_dask_address(f"tcp://127.0.0.1:{port}") == f"tcp://127.0.0.1:{port}"
        assert check_dask_address(f"127.0.0.1:{port}") == f"127.0.0.1:{port}"


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
