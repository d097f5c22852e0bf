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
