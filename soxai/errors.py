"""Exceptions raised for problems a user can fix.

Every message says what was expected, what came, and how to fix it.
"""


class SoxaiError(Exception):
    """Base class of every error soxai raises on purpose."""


class ConfigError(SoxaiError):
    """The configuration is malformed: unknown key, bad value, unreadable file."""


class DataError(SoxaiError):
    """The input data is unusable: bad manifest rows, unreadable images, bad labels."""


class StageError(SoxaiError):
    """A stage cannot run: a missing upstream artifact, a degenerate result."""


class DamagedFileError(StageError, ValueError):
    """A file soxai wrote (JSON) that cannot be read back: damaged or replaced. A ValueError too, so code that
    treats an unreadable stage.json as an incomplete stage keeps doing so."""


def describe_error(exc: BaseException, where: str | None = None) -> str:
    """One line for a failure that reached the command line: the problem, the file it concerns, the fix.

    Parameters
    ----------
    exc : the exception.
    where : the folder or file the command was writing or reading (the run directory, a config), named
        when the exception itself names no file.
    """
    import errno

    if isinstance(exc, SoxaiError):
        return str(exc)
    path = getattr(exc, "filename", None) or where or "?"
    if isinstance(exc, UnicodeDecodeError):
        return (f"{where or 'a file'} is not UTF-8 text (byte {exc.object[exc.start:exc.start + 1]!r} at position "
                f"{exc.start}); save it as UTF-8")
    if isinstance(exc, PermissionError):
        return (f"permission denied on {path}; make it readable and writable for this user "
                f"(ls -ld {path}; chmod u+rw), or choose another --run-dir")
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return (f"no space left on the disk of {path} ({exc.strerror}); free space there (df -h {path}) or choose "
                f"a --run-dir on another disk")
    if isinstance(exc, OSError) and exc.errno == errno.EROFS:
        return f"{path} is on a read-only file system; choose a --run-dir on a writable one"
    if isinstance(exc, OSError):
        named = "" if getattr(exc, "filename", None) else f" ({path})"
        return f"{exc}{named}; check that the path exists and can be reached, then run again"
    if type(exc).__name__.startswith("Arrow"):  # pyarrow's ArrowInvalid & co, not imported here
        return (f"a Parquet file under {where or 'the run directory'} cannot be read ({exc}); it is damaged or "
                f"not Parquet: `soxai run --run-dir RUN` recomputes the stage whose output changed")
    return (f"unexpected {type(exc).__name__}: {exc}; this is a bug in soxai or a library under it - please "
            f"report it with the log file")


def is_bug(exc: BaseException) -> bool:
    """Whether describe_error has no better word for it than "unexpected": nothing the user did (exit code 1)."""
    return not (isinstance(exc, (SoxaiError, OSError, UnicodeError)) or type(exc).__name__.startswith("Arrow"))


def is_permanent(exc: BaseException) -> bool:
    """Whether running the same step again cannot change the outcome: soxai's own errors, a bad encoding, a
    permission, a full disk or quota, a read-only file system. A lost file system or worker is not."""
    import errno

    if isinstance(exc, (SoxaiError, UnicodeError, PermissionError)):
        return True
    return isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES,
                                                      errno.EPERM)
