"""Flow tasks retry only on I/O errors a retry can change (a file system, a lost worker), never on a bad config,
a permission, a full disk or a bad encoding."""

import errno

import pytest


@pytest.mark.parametrize(("exc", "retried"), [
    (OSError("disk gone"), True), (FileNotFoundError("x"), True), (ConnectionResetError("worker lost"), True),
    (ValueError("bad value"), False)])
def test_retry_on_io_error__only_os_errors(exc, retried):
    from prefect.states import Failed

    from flows.pipeline import _retry_on_io_error
    from soxai.errors import StageError

    assert _retry_on_io_error(None, None, Failed(data=exc)) is retried
    assert _retry_on_io_error(None, None, Failed(data=StageError("no"))) is False


@pytest.mark.parametrize("exc", [
    PermissionError(errno.EACCES, "Permission denied", "/run/model"),
    OSError(errno.ENOSPC, "No space left on device", "/run/model/baseline.pt"),
    OSError(errno.EDQUOT, "Disk quota exceeded"), OSError(errno.EROFS, "Read-only file system"),
    UnicodeDecodeError("utf-8", b"\xff", 0, 1, "invalid start byte")], ids=lambda e: type(e).__name__ + str(
        getattr(e, "errno", "")))
def test_retry_on_io_error__not_for_what_a_retry_cannot_change(exc):
    from prefect.states import Failed

    from flows.pipeline import _retry_on_io_error
    from soxai.errors import ConfigError

    assert _retry_on_io_error(None, None, Failed(data=exc)) is False
    assert _retry_on_io_error(None, None, Failed(data=ConfigError("bad key"))) is False
