"""The data stage: built-in generators (cells, digits) and user manifests, as one :class:`Dataset`.

Importing this package loads nothing heavy; the names below resolve on first use.
"""

from __future__ import annotations

from typing import Any

__all__ = ["DATA_SOURCES", "Dataset", "build_dataset", "validate_dataset"]


def __getattr__(name: str) -> Any:
    # Lazy so that `import soxai.data.config` (read by the CLI) does not pull in numpy and pandas.
    # The registry sits above the sources (soxai.data.sources), the Dataset below them (soxai.data.dataset).
    if name in ("DATA_SOURCES", "build_dataset"):
        from soxai.data import sources

        return getattr(sources, name)
    if name in __all__:
        from soxai.data import dataset

        return getattr(dataset, name)
    raise AttributeError(f"module 'soxai.data' has no attribute {name!r}")
