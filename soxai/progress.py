"""Progress bars for long work (rich), with a rate column; quiet when output is not a terminal."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator


@contextlib.contextmanager
def progress(description: str, total: int, unit: str = "samples") -> Iterator[Callable[[int], None]]:
    """Yield ``advance(n)``; shows a bar with ``unit``/s while the block runs.

    Set ``SOXAI_PROGRESS=0`` to silence it (tests, logs).
    """
    if os.environ.get("SOXAI_PROGRESS", "1") == "0":
        yield lambda n: None
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

        def advance(n: int) -> None:
            bar.advance(task, n)
            speed = bar.tasks[0].speed
            if speed:
                bar.update(task, rate=rate_text(speed, unit))

        yield advance


def rate_text(speed: float, unit: str) -> str:
    """'1,234 samples/s'; below one per second, the seconds per unit ('3.1 s/epoch'), not '0 epochs/s'."""
    if speed >= 1:
        return f"{speed:,.0f} {unit}/s"
    singular = unit[:-1] if unit.endswith("s") else unit
    return f"{1 / speed:,.1f} s/{singular}"
