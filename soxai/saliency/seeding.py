"""Per-image seeding of the stochastic methods (smoothgrad, vargrad, gradient_shap).

captum draws the noise or the baselines of a whole batch at offsets that depend on a sample's position
in the batch; these helpers run one image at a time with freshly seeded generators, so that a map does
not depend on the batch it was computed in.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch
    from torch import Tensor


def per_image_seeded(x: Tensor, seed: int, attribute_one: Callable[[int], Tensor]) -> Tensor:
    """``cat([attribute_one(i) for i in images])``, with the RNGs seeded anew before every image.

    Both generators captum draws from are seeded: torch's on the device of ``x`` (noise) and NumPy's
    global one (GradientShap picks baselines and path points with ``np.random``). The caller's
    states of both are restored afterwards.
    """
    import numpy as np
    import torch

    fork_devices = []
    if x.device.type == "cuda":
        fork_devices = [x.device.index if x.device.index is not None else torch.cuda.current_device()]
    numpy_state = np.random.get_state()
    maps = []
    try:
        with torch.random.fork_rng(devices=fork_devices, device_type="cuda"):
            for i in range(x.shape[0]):
                seed_device_rng(x.device, seed)
                np.random.seed(seed)
                maps.append(attribute_one(i))
    finally:
        np.random.set_state(numpy_state)
    return torch.cat(maps)


def seed_device_rng(device: torch.device, seed: int) -> None:
    """Seed only the generator that draws on ``device``; other devices' streams are not touched."""
    import torch

    if device.type == "cuda":
        with torch.cuda.device(device):
            torch.cuda.manual_seed(seed)
    else:
        torch.random.default_generator.manual_seed(seed)


def standard_noise(n: int, shape: tuple[int, ...], seed: int) -> Tensor:
    """``n`` standard-normal images from their own CPU generator: the same on every device and call."""
    import torch

    return torch.randn(n, *shape, generator=torch.Generator().manual_seed(seed))
