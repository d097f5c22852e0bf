"""A finished smoke run shared by every test of the session that asks for ``smoke_run_dir``."""

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def smoke_run_dir(tmp_path_factory) -> Path:
    """The run directory of one in-process smoke run (soxai.testing.smoke), made once per session."""
    from soxai.testing.smoke import FAST, make_smoke_run

    # the same root in every conftest that defines this fixture: make_smoke_run's cache runs it once
    return make_smoke_run(tmp_path_factory.getbasetemp() / "soxai-smoke", FAST)
