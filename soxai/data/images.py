"""Opening user image files safely: every way a file can be unreadable becomes one exception to catch.

PIL refuses an image whose header claims more than twice ``Image.MAX_IMAGE_PIXELS`` pixels with
``DecompressionBombError`` (not an ``OSError``) and only *warns* between one and two times the limit;
a crafted 30000x30000 PNG header would otherwise end in a raw traceback, or in an attempt to decode
gigabytes. Both sources (``manifest_source``, ``image_folder``) open files through :func:`open_image`
and catch :func:`unreadable_errors`, so each file is named in a clear message.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


def unreadable_errors() -> tuple[type[BaseException], ...]:
    """The exceptions that mean "this file cannot be read as an image" (for ``except``)."""
    from PIL import Image

    return (OSError, ValueError, SyntaxError, Image.DecompressionBombError, Image.DecompressionBombWarning)


def describe_error(exc: BaseException) -> str:
    """A reader's complaint in words; the decompression-bomb guard says what to do about it."""
    from PIL import Image

    if isinstance(exc, (Image.DecompressionBombError, Image.DecompressionBombWarning)):
        return (f"its header claims more pixels than PIL's safety limit ({exc}); a genuine image that large "
                "must be downscaled before it is listed")
    return str(exc)


@contextmanager
def open_image(path: str | Path) -> Iterator[Any]:
    """``PIL.Image.open(path)`` with the decompression-bomb warning raised as an error.

    Raises
    ------
    one of :func:`unreadable_errors`
        When the file is missing, not an image, truncated, or claims too many pixels.
    """
    from PIL import Image

    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        with Image.open(path) as im:
            yield im


def read_header(path: str | Path) -> tuple[tuple[int, int], str]:
    """``((width, height), mode)`` of an image file, without decoding its pixels; a PNG's chunks are read to the
    end and their checksums checked (``Image.verify``), so a truncated or corrupted PNG fails here, not in training.

    Raises
    ------
    one of :func:`unreadable_errors`
    """
    with open_image(path) as im:
        size, mode = im.size, im.mode
        im.verify()
    return size, mode


def is_utf8_name(name: str) -> bool:
    """Whether a file name (as ``os.fsdecode`` gives it: undecodable bytes as surrogates) is UTF-8 text."""
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def readable_name(name: str) -> str:
    """A file name that may hold undecodable bytes, printable: those bytes as ``\\xNN``."""
    return name.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
