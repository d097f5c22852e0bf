"""Flow tasks retry only on I/O errors (a file system, a lost worker), never on a bad config."""

import pytest


@pytest.mark.parametrize(("exc", "retried"), [(OSError("disk gone"), True), (FileNotFoundError("x"), True),
                                              (ValueError("bad value"), False)])
def test_retry_on_io_error__only_os_errors(exc, retried):
    from prefect.states import Failed

    from flows.pipeline import _retry_on_io_error
    from soxai.errors import StageError

    assert _retry_on_io_error(None, None, Failed(data=exc)) is retried
    assert _retry_on_io_error(None, None, Failed(data=StageError("no"))) is False
