"""How every written sentence names a class: by the name the data stage recorded, the label code where it has none."""

from __future__ import annotations

from collections.abc import Sequence


def class_text(label: int, class_names: Sequence[str] = ()) -> str:
    """'class round' where ``class_names`` names ``label`` (as ``soxai concepts`` shows it), else 'class 0'."""
    k = int(label)
    return f"class {class_names[k]}" if 0 <= k < len(class_names) else f"class {k}"
