"""A seeded training loop and per-split evaluation (kernels: arrays in, model / numbers out)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import numpy as np

from soxai.errors import ConfigError
from soxai.train.config import TrainConfig

# The retraining loop's own version, part of every retrained model's fingerprint (the train stage's): a change that
# trains other weights from the same recipe and seed retrains resumed runs' models.
#   1 (2026-12-08): the train stage's built-in architectures train in the channels-last memory format on a CPU
#     (``channels_last``); the model stage's model, which the explain stages audit, trains as before.
TRAIN_LOGIC = 1

if TYPE_CHECKING:
    import torch
    from torch import nn


def train_model(
    model: nn.Module,
    images: np.ndarray,
    rows: np.ndarray,
    labels: np.ndarray,
    cfg: TrainConfig,
    seed: int,
    device: torch.device,
    on_epoch: Callable[[int, float], None] | None = None,
    val: tuple[np.ndarray, np.ndarray] | None = None,
    sample_weights: np.ndarray | None = None,
    val_score: Callable[[nn.Module], float] | None = None,
    channels_last: bool = False,
) -> nn.Module:
    """Train ``model`` in place on ``images[rows]`` with ``labels``, by the recipe ``cfg``.

    The recipe: ``cfg.optimizer`` at ``cfg.lr`` with ``cfg.weight_decay``, the per-epoch schedule
    ``cfg.schedule``, the augmentations ``cfg.augment`` (drawn from a generator seeded by ``seed``, in
    the main process, so the result does not depend on ``cfg.num_workers``), mixed precision when
    ``cfg.amp`` and ``device`` is CUDA, and early stopping on ``val`` when ``cfg.patience`` is set
    (the weights of the best val epoch are kept). Batches are read by a DataLoader with
    ``cfg.num_workers`` spawned workers, one batch of images in memory per worker.

    Parameters
    ----------
    images : array of shape (n_total, C, H, W), float32 (a memmap, or lazily decoded image files)
    rows : int array of shape (n,) — which images are in the training set
    labels : int array of shape (n,) — their labels
    seed : seeds the shuffling and augmentations (weights are seeded when the model is built)
    on_epoch : called with (epoch, mean loss) after each epoch, e.g. to advance a progress bar
    val : (rows, labels) of the validation samples, for early stopping; ignored when ``cfg.patience`` is None
    sample_weights : float array of shape (n,), or None. None: each epoch visits every sample once, in a
        seeded random order. Given: each epoch draws n samples with replacement, sample i with probability
        proportional to its weight (``weighted_epoch_order``) — as many batches as an unweighted epoch, so
        a reweighted model takes the baseline's number of steps; deterministic by ``seed``
    val_score : called with the model (in eval mode) after every epoch; when given, the weights of the epoch
        with the highest score are kept (the first of equal ones), e.g. a reweighted model's group-balanced
        accuracy on the validation split (``soxai.train.selection``). With ``cfg.patience`` it replaces the
        validation accuracy as what early stopping watches.
    channels_last : train in the channels-last memory format on a CPU (:func:`_in_memory_format`; the same recipe in
        another float order, :data:`TRAIN_LOGIC`); the model is handed back in the default format.

    Raises
    ------
    ConfigError
        If ``cfg.patience`` is set and ``val`` is empty.
    """
    import torch
    from torch import nn

    rng = np.random.default_rng(seed)
    rows, y_all = np.asarray(rows, dtype=np.int64), np.asarray(labels, dtype=np.int64)
    _check_train_inputs(cfg, val, sample_weights, len(y_all))
    layout = torch.channels_last if channels_last and device.type == "cpu" else None
    model.to(device).train()
    with _in_memory_format(model, layout):
        opt = make_optimizer(model, cfg)
        scheduler = make_scheduler(opt, cfg)
        scaler = torch.amp.GradScaler("cuda") if cfg.amp and device.type == "cuda" else None
        loss_fn = nn.CrossEntropyLoss()
        torch.manual_seed(seed)
        aug_gen, order = torch.Generator().manual_seed(seed), EpochBatches(cfg.batch_size)
        loader = batch_loader(images, rows, y_all, order, cfg.num_workers, pin=device.type == "cuda")
        best = _BestEpoch()
        for epoch in range(cfg.epochs):
            order.set_order(rng.permutation(len(y_all)) if sample_weights is None
                            else weighted_epoch_order(sample_weights, rng))
            mean_loss = _train_epoch(model, loader, opt, loss_fn, scaler, cfg, aug_gen, device, layout)
            if scheduler is not None:
                scheduler.step()
            if on_epoch is not None:
                on_epoch(epoch, mean_loss)
            if val_score is not None or (cfg.patience is not None and val is not None):
                best.offer(model, _epoch_score(model, images, val, device, val_score))
                if cfg.patience is not None and best.stale >= cfg.patience:
                    break
        if best.state is not None:
            model.load_state_dict(best.state)
    model.eval()
    return model


@contextlib.contextmanager
def _in_memory_format(model: nn.Module, layout: Any) -> Iterator[None]:
    """``model``'s 4-d weights in the memory format ``layout`` inside the block (None: as they are), in the default
    format after it.

    Channels-last (train logic 1, the train stage's models on a CPU): the demo's model trained in 0.56x the time on a
    2-core machine, the same recipe in another float order (bench/train_layout.py). A model that reshapes with
    ``view`` may refuse the format, so only the built-in architectures ask for it (soxai.train.fit).
    """
    import torch

    if layout is None:
        yield
        return
    model.to(memory_format=layout)
    try:
        yield
    finally:
        model.to(memory_format=torch.contiguous_format)


class _BestEpoch:
    """The weights of the epoch with the highest score so far (the first of equal ones), and how many epochs
    have passed since it."""

    def __init__(self) -> None:
        self.score, self.state, self.stale = -float("inf"), None, 0

    def offer(self, model: nn.Module, score: float) -> None:
        import copy

        if score > self.score:
            self.score, self.stale = score, 0
            self.state = copy.deepcopy({k: v.detach().cpu() for k, v in model.state_dict().items()})
        else:
            self.stale += 1


def _epoch_score(model: nn.Module, images: Any, val: tuple[np.ndarray, np.ndarray] | None, device: torch.device,
                 val_score: Callable[[nn.Module], float] | None) -> float:
    """``val_score(model)`` in eval mode, or the accuracy on ``val``."""
    model.eval()
    if val_score is not None:
        return float(val_score(model))
    pred = predict_logits(model, images, np.asarray(val[0]), device, num_workers=0).argmax(axis=1)
    return float((pred == np.asarray(val[1])).mean())


def _check_train_inputs(cfg: TrainConfig, val: tuple[np.ndarray, np.ndarray] | None,
                        sample_weights: np.ndarray | None, n: int) -> None:
    if cfg.patience is not None and (val is None or len(val[0]) == 0):
        raise ConfigError(
            f"train.patience={cfg.patience} stops early on the 'val' split, but the data has no val samples; "
            "add a val split or set train.patience=null"
        )
    if sample_weights is not None and len(sample_weights) != n:
        raise ValueError(f"sample_weights has {len(sample_weights)} values for {n} training samples")


def _train_epoch(model: nn.Module, loader, opt, loss_fn, scaler, cfg: TrainConfig, aug_gen, device,
                 layout=None) -> float:
    """One pass over ``loader``'s batches (augmented, mixed precision when ``scaler``, in the memory format
    ``layout`` when given); the mean loss."""
    import torch

    total, count = 0.0, 0
    model.train()
    for xb, yb in loader:
        if cfg.augment:
            xb = augment_batch(xb, cfg.augment, cfg.crop_padding, aug_gen)
        xb, yb = xb.to(device, non_blocking=True), yb.to(device, non_blocking=True)
        if layout is not None:
            xb = xb.contiguous(memory_format=layout)
        opt.zero_grad(set_to_none=True)
        if scaler is not None:
            with torch.autocast("cuda", dtype=torch.float16):
                loss = loss_fn(model(xb), yb)
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()
        else:
            loss = loss_fn(model(xb), yb)
            loss.backward()
            opt.step()
        total += float(loss.detach()) * len(yb)
        count += len(yb)
    return total / max(count, 1)


def weighted_epoch_order(weights: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One epoch of a weighted sampler: n positions drawn with replacement, position i with probability
    ``weights[i] / weights.sum()``.

    Parameters
    ----------
    weights : float array of shape (n,), non-negative, not all zero

    Returns
    -------
    int array of shape (n,)
    """
    w = np.asarray(weights, dtype=np.float64)
    if len(w) == 0:
        return np.zeros(0, dtype=np.int64)
    if not np.all(np.isfinite(w)) or (w < 0).any() or w.sum() <= 0:
        raise ValueError("sample weights must be finite, non-negative and not all zero")
    return rng.choice(len(w), size=len(w), replace=True, p=w / w.sum())


def make_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    """The optimizer ``cfg.optimizer`` over every parameter of ``model``."""
    import torch

    params = model.parameters()
    if cfg.optimizer == "adam":
        return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    raise ConfigError(f"unknown train.optimizer {cfg.optimizer!r}; choose adam, adamw or sgd")


def make_scheduler(opt: torch.optim.Optimizer, cfg: TrainConfig) -> Any:
    """The per-epoch learning-rate schedule ``cfg.schedule``; None for a constant rate."""
    import torch

    if cfg.schedule == "none":
        return None
    if cfg.schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=cfg.epochs)
    if cfg.schedule == "step":
        return torch.optim.lr_scheduler.StepLR(opt, step_size=cfg.step_epochs, gamma=cfg.step_gamma)
    raise ConfigError(f"unknown train.schedule {cfg.schedule!r}; choose none, cosine or step")


def augment_batch(x: torch.Tensor, kinds: tuple[str, ...], padding: int, gen: torch.Generator) -> torch.Tensor:
    """Random flips / crops of a batch, each sample drawn on its own from ``gen``.

    Parameters
    ----------
    x : tensor of shape (n, C, H, W)
    kinds : any of "hflip", "vflip" (each sample flipped with probability 1/2), "crop" (zero-pad by
        ``padding`` on each side, then cut an H x W window at a random offset)

    Returns
    -------
    tensor of shape (n, C, H, W), a new tensor (``x`` is left alone)
    """
    import torch
    import torch.nn.functional as F

    n, _, h, w = x.shape
    x = x.clone()
    if "hflip" in kinds:
        flip = torch.rand(n, generator=gen) < 0.5
        x[flip] = x[flip].flip(-1)
    if "vflip" in kinds:
        flip = torch.rand(n, generator=gen) < 0.5
        x[flip] = x[flip].flip(-2)
    if "crop" in kinds:
        padded = F.pad(x, (padding, padding, padding, padding))
        offsets = torch.randint(0, 2 * padding + 1, (n, 2), generator=gen).tolist()
        x = torch.stack([padded[i, :, dy : dy + h, dx : dx + w] for i, (dy, dx) in enumerate(offsets)])
    return x


class EpochBatches:
    """The DataLoader's sampler: yields lists of positions, one list per batch, of the current epoch's order."""

    def __init__(self, batch_size: int) -> None:
        self.batch_size = batch_size
        self.batches: list[list[int]] = []

    def set_order(self, order: np.ndarray) -> None:
        """Batch ``order`` (positions, shape (n,)) into consecutive lists of ``batch_size``."""
        order = np.asarray(order, dtype=np.int64)
        self.batches = [order[i : i + self.batch_size].tolist() for i in range(0, len(order), self.batch_size)]

    def __iter__(self) -> Iterator[list[int]]:
        return iter(self.batches)

    def __len__(self) -> int:
        return len(self.batches)


class BatchReader:
    """A map-style dataset whose items are whole batches: ``reader[positions] = (x, y)``.

    ``x`` is ``images[rows[positions]]`` as a float32 tensor of shape (len(positions), C, H, W) and
    ``y`` the int64 labels. A memory-mapped ``images`` is not pickled into worker processes (that
    would copy the whole array): each worker reopens the file.
    """

    def __init__(self, images: Any, rows: np.ndarray, labels: np.ndarray) -> None:
        self.images, self.rows, self.labels = images, rows, labels

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, positions: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        import torch

        pos = np.asarray(positions, dtype=np.int64)
        x = np.array(self.images[self.rows[pos]], dtype=np.float32)
        return torch.from_numpy(x), torch.from_numpy(self.labels[pos].copy())

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        images = state["images"]
        if isinstance(images, np.memmap) and getattr(images, "filename", None):
            state["images"] = ("npy", str(images.filename))
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        images = state["images"]
        if isinstance(images, tuple) and images[0] == "npy":
            state["images"] = np.load(images[1], mmap_mode="r", allow_pickle=False)
        self.__dict__.update(state)


def batch_loader(images: Any, rows: np.ndarray, labels: np.ndarray, sampler: Any, num_workers: int,
                 pin: bool = False) -> Any:
    """A DataLoader over ``BatchReader(images, rows, labels)`` driven by ``sampler`` (lists of positions).

    Workers are spawned, never forked: a forked worker inherits the threads of its parent (Prefect's
    among them) and can hang or die; spawned ones start clean and reopen memory maps themselves.
    """
    from torch.utils.data import DataLoader

    return DataLoader(
        BatchReader(images, rows, labels), sampler=sampler, batch_size=None, num_workers=num_workers,
        multiprocessing_context="spawn" if num_workers else None, persistent_workers=num_workers > 0,
        pin_memory=pin,
    )


def predict_logits(
    model: nn.Module, images: np.ndarray, rows: np.ndarray, device: torch.device, batch_size: int = 512,
    num_workers: int = 0,
) -> np.ndarray:
    """Logits of shape (len(rows), n_classes) for ``images[rows]``, read by ``num_workers`` workers."""
    import torch

    model.to(device).eval()
    rows = np.asarray(rows, dtype=np.int64)
    sampler = EpochBatches(batch_size)
    sampler.set_order(np.arange(len(rows)))
    loader = batch_loader(images, rows, np.zeros(len(rows), dtype=np.int64), sampler, num_workers,
                          pin=device.type == "cuda")
    out = []
    with torch.no_grad():
        for xb, _ in loader:
            out.append(model(xb.to(device)).float().cpu().numpy())
    if not out:
        return np.zeros((0, 0), dtype=np.float32)
    return np.concatenate(out)


def accuracy_metrics(
    pred: np.ndarray, labels: np.ndarray, groups: np.ndarray | None = None
) -> dict[str, Any]:
    """Accuracy, per-class accuracy and (with groups) worst-group accuracy.

    A group is a (label, group) pair, as in the worst-group literature: the worst group is the
    (class, artifact/clean) cell with the lowest accuracy among cells that have samples.
    """
    pred = np.asarray(pred)
    labels = np.asarray(labels)
    correct = pred == labels
    out: dict[str, Any] = {"n": int(len(labels)), "accuracy": float(correct.mean()) if len(labels) else float("nan")}
    out["per_class_accuracy"] = {
        str(int(c)): float(correct[labels == c].mean()) for c in np.unique(labels)
    }
    if groups is not None:
        groups = np.asarray(groups).astype(str)
        cells = {}
        for c in np.unique(labels):
            for g in np.unique(groups):
                m = (labels == c) & (groups == g)
                if m.any():
                    cells[f"{int(c)}/{g}"] = float(correct[m].mean())
        out["group_accuracy"] = cells
        out["worst_group_accuracy"] = min(cells.values()) if cells else float("nan")
    return out
