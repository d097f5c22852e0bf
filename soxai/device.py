"""The torch device a stage runs on, by its configured name."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import TYPE_CHECKING

from soxai.errors import ConfigError

if TYPE_CHECKING:
    import torch


def resolve_device(name: str) -> torch.device:
    """The torch device named by ``saliency.device``.

    Parameters
    ----------
    name : {"auto", "cpu", "cuda"}
        ``auto`` is CUDA when a GPU is visible, else CPU.

    Returns
    -------
    torch.device

    Raises
    ------
    ConfigError
        On an unknown name, or ``cuda`` on a machine where torch sees no GPU.
    """
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cpu":
        return torch.device("cpu")
    if name == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(
                f"device='cuda' but torch {torch.__version__} sees no CUDA GPU on this machine; "
                f"set saliency.device=auto to use a GPU when there is one and the CPU otherwise"
            )
        return torch.device("cuda")
    raise ConfigError(f"unknown device {name!r}; choose one of ['auto', 'cpu', 'cuda']")


@contextlib.contextmanager
def torch_threads(n: int | None = None) -> Iterator[None]:
    """Run the block on ``n`` torch threads (None: as they are), then give torch back the thread count it had, also
    when the block changed it or failed. The float sums of a model can depend on the thread count."""
    import torch

    before = torch.get_num_threads()
    if n is not None:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        if torch.get_num_threads() != before:
            torch.set_num_threads(before)
