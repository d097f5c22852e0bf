"""How every written sentence names a class: by the name the data stage recorded, the label code where it has none."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from soxai.run_dir import RunDir


def class_text(label: int, class_names: Sequence[str] = ()) -> str:
    """'class round' where ``class_names`` names ``label`` (as ``soxai concepts`` shows it), else 'class 0'.

    A name of digits other than the code itself would read as another class's code (folders 1, 2, 10 sort as text to
    codes 0, 1, 2, so label 1 is named '10'): it is quoted with the code, "class '10' (label 1)". An empty name gives
    the code.
    """
    k = int(label)
    name = str(class_names[k]).strip() if 0 <= k < len(class_names) else ""
    if not name or name == str(k):
        return f"class {k}"
    return f"class {name!r} (label {k})" if name.isdigit() else f"class {name}"


def read_class_names(run: RunDir) -> tuple[str, ...]:
    """The class names the data stage recorded for ``run`` (data/info.json); () where it has not run or named none."""
    from soxai.run_dir import read_json

    if not run.data_info.is_file():
        return ()
    return tuple(str(n) for n in read_json(run.data_info).get("class_names") or ())
