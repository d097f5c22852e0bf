"""The torch device a stage runs on, by its configured name."""

from __future__ import annotations

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
