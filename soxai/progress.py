"""Progress bars for long work (rich), with a rate column; quiet when output is not a terminal."""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Iterator


@contextlib.contextmanager
def progress(description: str, total: int, unit: str = "samples") -> Iterator[Callable[..., None]]:
    """Yield ``advance(n, timed=True)``; shows a bar with ``unit``/s while the block runs.

    ``timed=False``: the units moved the bar without being worked on (a model reused from an earlier run), so they
    are left out of the rate, which is the timed units over the time since the block began (shown once there is one).
    Set ``SOXAI_PROGRESS=0`` to silence it (tests, logs).
    """
    if os.environ.get("SOXAI_PROGRESS", "1") == "0":
        yield lambda n, timed=True: None
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    columns = (
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]}"),
        TimeElapsedColumn(),
    )
    with Progress(*columns, transient=False) as bar:
        task = bar.add_task(description, total=total, rate="")
        start, worked = time.monotonic(), 0

        def advance(n: int, timed: bool = True) -> None:
            nonlocal worked
            bar.advance(task, n)
            worked += n if timed else 0
            elapsed = time.monotonic() - start
            if worked and elapsed > 0:
                bar.update(task, rate=rate_text(worked / elapsed, unit))

        yield advance


def rate_text(speed: float, unit: str) -> str:
    """'1,234 samples/s'; below one per second, the seconds per unit ('3.1 s/epoch'), not '0 epochs/s'."""
    if speed >= 1:
        return f"{speed:,.0f} {unit}/s"
    singular = unit[:-1] if unit.endswith("s") else unit
    return f"{1 / speed:,.1f} s/{singular}"
