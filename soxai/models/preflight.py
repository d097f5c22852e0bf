"""The model section, checked before any stage writes: a mistake in it costs seconds, not a training run.

What is checked, and when:

- before the first stage (:func:`check_model_setup`, called by :func:`soxai.runs.run_in_process` and the flows):
  ``model.factory`` imports and builds (or ``model.name`` builds), ``model.layer`` names a module of the built
  model, ``model.checkpoint`` exists, loads with ``weights_only=True`` and holds only finite numbers. Where the
  config alone fixes the data's shape and classes (the built-in sources), the checkpoint must also fit the model
  and a probe forward pass must give one score per class;
- right after the data stage, before training (:func:`check_model_config` with the data's ``info.json``, from the
  model stage): the same with the data's real shape and classes.

The one other file a config names that no stage before the bias stage reads, ``bias.overrides``, is checked here
too (it exists, it is YAML with drop/keep lists), when the bias stage is to run.

Building a model is cheap next to the data stage; the probe is one tiny batch of zeros.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from soxai.errors import ConfigError

if TYPE_CHECKING:
    from torch import nn

    from soxai.config import Config
    from soxai.run_dir import RunDir

#: the stages that build the configured model; a run of other stages only needs nothing from model.*
MODEL_STAGES = ("model", "train")
# channels of the built-in sources' images (their side is data.image_size, their classes fixed: see expected_input)
_BUILT_IN = {"cells": 1, "digits": 1, "mnist": 1}
_TEN_CLASSES = ("digits", "mnist")


def check_model_setup(cfg: Config, run: RunDir | None = None, stages: Iterable[str] = MODEL_STAGES) -> None:
    """Check the model section before ``stages`` run, if any of them builds the model.

    The data's shape and classes come from the run's ``data/info.json`` where the data stage is not among
    ``stages`` (a retrain of an existing run), else from what the config says about the data.

    Raises
    ------
    ConfigError
        Naming the key (model.factory, model.name, model.layer, model.checkpoint) and the fix.
    """
    stages = tuple(stages)
    if "bias" in stages and cfg.bias.overrides:
        check_overrides_file(cfg.bias.overrides)
    if not set(stages) & set(MODEL_STAGES):
        return
    info = None
    if run is not None and "data" not in stages and run.data_info.is_file():
        from soxai.run_dir import read_json

        info = read_json(run.data_info)
    check_model_config(cfg, info)


class _AnyConcept(frozenset):
    """Every concept id: before the concepts stage there are no ids to check a person's overrides against."""

    def __contains__(self, item: object) -> bool:
        return True


def check_overrides_file(path: str) -> None:
    """``bias.overrides`` exists and has the right shape (YAML, drop/keep lists of ints); the ids are checked
    against the concepts by the bias stage. A missing file used to cost the whole run up to that stage."""
    from soxai.bias.decide import read_overrides

    read_overrides(path, _AnyConcept())


def expected_input(cfg: Config) -> tuple[int | None, int | None, int | None]:
    """(channels, image side, number of classes) the config fixes before the data is read; None where unknown."""
    data = cfg.data
    if data.source in _BUILT_IN:
        n_classes = 10 if data.source in _TEN_CLASSES else data.n_classes
        return _BUILT_IN[data.source], data.image_size, n_classes
    channels = {"grayscale": 1, "rgb": 3}.get(data.color) if data.source == "image_folder" else None
    size = data.crop if data.source == "image_folder" else None
    n_classes = cfg.model.num_classes
    if n_classes is None and data.source == "image_folder" and data.root:
        n_classes = _folder_classes(Path(data.root))
    # a manifest's classes come from its label column, parsed and checked row by row in the data stage; the check
    # right after it (before training) compares them with the checkpoint
    return channels, size, n_classes


def _folder_classes(root: Path) -> int | None:
    """The number of classes of an image folder, from its folder names alone (the image_folder source's rule:
    the class folders under the split folders, sorted by name); None where the folder is not laid out so."""
    from soxai.data.image_folder import is_split_name

    if not root.is_dir():
        return None
    names = {c.name for split in root.iterdir() if split.is_dir() and is_split_name(split.name)
             for c in split.iterdir() if c.is_dir() and not c.name.startswith(".")}
    return len(names) if len(names) >= 2 else None


def check_model_config(cfg: Config, info: dict[str, Any] | None = None) -> None:
    """Build the configured model and check ``model.layer`` and ``model.checkpoint`` against it.

    Parameters
    ----------
    cfg : the run's config
    info : the data stage's ``info.json`` (``image_shape`` (C, H, W), ``n_classes``), or None before the data stage:
        then the shape and classes the config fixes (:func:`expected_input`); what depends on unknown ones
        (the checkpoint's fit, the probe forward pass) waits for the check after the data stage.
    """
    from soxai.models.registry import build_model

    if info is not None:
        channels, size, _ = info["image_shape"]
        known: tuple[int | None, int | None, int | None] = (channels, size, info["n_classes"])
    else:
        known = expected_input(cfg)
    certain = all(v is not None for v in known)
    if cfg.model.factory is not None:
        from soxai.models.factory import resolve_factory

        resolve_factory(cfg.model.factory)  # an import failure does not depend on the data
    state = _checkpoint_state(cfg.model.checkpoint) if cfg.model.checkpoint else None
    if certain:
        model = build_model(cfg.model, known[0], known[2], known[1], cfg.seed)  # with the probe forward pass
    else:
        model = _build_with_guesses(cfg, known)
        if model is None:
            return  # it may need the data's real shape or classes: the check after the data stage says
    if cfg.model.layer is not None:
        from soxai.models.layers import resolve_layer

        resolve_layer(model, cfg.model.layer)
    if state is not None and not certain and known[2] is not None:
        _check_checkpoint_classes(cfg, known, model, state)
    if state is not None and certain:
        from soxai.models.registry import state_dict_mismatch

        mismatch = state_dict_mismatch(model, state)
        if mismatch:
            raise ConfigError(
                f"model.checkpoint {cfg.model.checkpoint} does not match the model "
                f"({_what(cfg)}, {known[0]}-channel {known[1]}x{known[1]} images, {known[2]} classes): {mismatch}. "
                "Build the architecture the checkpoint was saved from (model.factory / model.kwargs / model.name, "
                "model.channels) or point model.checkpoint at that model's state dict"
            )


def _check_checkpoint_classes(cfg: Config, known: tuple[int | None, int | None, int | None], model: nn.Module,
                              state: dict[str, Any]) -> None:
    """Where only the number of classes is known (an image folder's class folders), compare the checkpoint's
    tensors that depend on it (those whose shape changes when the model is built for one class more) with the model.
    """
    n_classes = known[2]
    other = _build_with_guesses(cfg, (known[0], known[1], n_classes + 1))
    if other is None:
        return
    mine, theirs = model.state_dict(), other.state_dict()
    wrong = [f"{k} {tuple(state[k].shape)} vs {tuple(v.shape)}" for k, v in mine.items()
             if k in theirs and tuple(theirs[k].shape) != tuple(v.shape) and k in state
             and tuple(state[k].shape) != tuple(v.shape)]
    if wrong:
        raise ConfigError(
            f"model.checkpoint {cfg.model.checkpoint} was saved for another number of classes than the {n_classes} "
            f"class folders of data.root {cfg.data.root} ({', '.join(wrong[:4])} in file vs model); point "
            "model.checkpoint at a model trained on these classes, or lay the folder out with the classes it was "
            "trained on"
        )


def _what(cfg: Config) -> str:
    return f"model.factory={cfg.model.factory!r}" if cfg.model.factory else f"model.name={cfg.model.name!r}"


def _build_with_guesses(cfg: Config, known: tuple[int | None, int | None, int | None]) -> nn.Module | None:
    """The model built for 3 channels, 32 pixels and 2 classes where the data has not said; None if that fails.

    Layer names do not depend on these sizes; a failure might (a factory that insists on 10 classes), so it
    is not reported here but by the check with the data's real shape.
    """
    import torch

    from soxai.models.factory import call_factory
    from soxai.models.registry import MODELS

    channels, size, n_classes = known[0] or 3, known[1] or 32, known[2] or 2
    torch.manual_seed(cfg.seed)
    try:
        if cfg.model.factory is not None:
            return call_factory(cfg.model.factory, dict(cfg.model.kwargs), in_channels=channels, num_classes=n_classes)
        return MODELS[cfg.model.name](cfg.model, channels, n_classes, size)
    except ConfigError as exc:
        if "model.kwargs sets" in str(exc):  # a refused keyword, whatever the data
            raise
        return None
    except Exception:  # noqa: BLE001 — see the docstring
        return None


def _checkpoint_state(checkpoint: str) -> dict[str, Any]:
    """The checkpoint's state dict, checked to exist, load with ``weights_only=True`` and hold finite numbers."""
    from soxai.models.registry import nonfinite_tensors, read_checkpoint_state

    path = Path(checkpoint)
    if not path.is_file():
        where = "is a folder, not a file" if path.is_dir() else "does not exist"
        raise ConfigError(
            f"model.checkpoint {path} {where}; point it at a state dict saved with "
            "torch.save(model.state_dict(), path) (or a safetensors file), or set model.checkpoint: null to train "
            "the baseline"
        )
    state, _ = read_checkpoint_state(path)
    bad = nonfinite_tensors(state)
    if bad:
        raise ConfigError(
            f"model.checkpoint {path}: {len(bad)} of its {len(state)} tensors hold NaN or infinite values "
            f"({', '.join(bad[:5])}{', ...' if len(bad) > 5 else ''}); such a model predicts nothing and every "
            "explanation of it is NaN. Point model.checkpoint at the weights saved before training diverged, or "
            "set model.checkpoint: null to train the baseline"
        )
    return state
