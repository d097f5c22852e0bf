"""Runner of the saliency stage: one map per sample, streamed to float16 shards.

Shards are the unit of resume: ``saliency/progress.json`` holds the fingerprint the shards were
made under; a shard file that exists under the current fingerprint is not recomputed.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from soxai.config import Config
from soxai.data.runner import read_images, read_samples
from soxai.errors import StageError
from soxai.progress import progress
from soxai.run_dir import RunDir, read_json, read_npy, read_parquet, write_json, write_npy, write_parquet
from soxai.stage import StageRecord, fingerprint, run_stage, upstream


def saliency_fingerprint(cfg: Config, run: RunDir) -> str:
    return fingerprint("saliency", cfg.section_hash("saliency"), str(cfg.model.layer), *upstream(run, "model"))


def _chosen_samples(cfg: Config, run: RunDir) -> pd.DataFrame:
    """The samples that get maps, in map order (split, sample_id)."""
    samples = read_samples(run)
    unknown = sorted(set(cfg.saliency.splits) - set(samples["split"]))
    if unknown:
        raise StageError(
            f"saliency.splits names {unknown}, which the data does not have; "
            f"available splits: {sorted(samples['split'].unique())}"
        )
    return samples[samples["split"].isin(cfg.saliency.splits)].sort_values(["split", "sample_id"])


def prepare_saliency(cfg: Config, run: RunDir) -> int:
    """Ready the saliency folder for the current fingerprint; return the number of shards.

    Shards made under another fingerprint are deleted, so they are never mixed in. The flow calls
    this before it fans the shards out (``run_saliency_shard``) and then runs the stage, which finds
    every shard made and writes the index.
    """
    fp = saliency_fingerprint(cfg, run)
    progress_path = run.root / "saliency" / "progress.json"
    state = read_json(progress_path) if progress_path.is_file() else {}
    if state.get("fingerprint") != fp:  # shards of another config must not be mixed in
        for pattern in ("shard-*.npy", "pred-*.npy"):
            for old in (run.root / "saliency").glob(pattern):
                old.unlink()
        write_json(progress_path, {"fingerprint": fp})
    return (len(_chosen_samples(cfg, run)) + cfg.saliency.shard_size - 1) // cfg.saliency.shard_size


def explain_rows(cfg: Config, model, images: np.ndarray, rows: np.ndarray, labels: np.ndarray, device,
                 layer=None, advance=None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Predictions, explained classes and float16 maps of ``images[rows]`` under ``cfg.saliency``.

    Returns
    -------
    pred : int64 array of shape (n,)
    target : int64 array of shape (n,), the label or the prediction (``saliency.target``)
    maps : float16 array of shape (n, height, width)
    """
    from soxai.saliency.methods import iter_maps
    from soxai.train.loop import predict_logits

    scfg = cfg.saliency
    workers = cfg.train.num_workers
    # Predictions in batches of saliency.batch_size, the stage's one memory knob (predict_logits'
    # default of 512 rows made the largest buffers of the stage, whatever the user set).
    pred = predict_logits(model, images, rows, device, batch_size=scfg.batch_size, num_workers=workers)
    pred = pred.argmax(axis=1).astype(np.int64)
    target = np.asarray(labels if scfg.target == "label" else pred, dtype=np.int64)
    maps = np.empty((len(rows), *images.shape[2:]), dtype=np.float16)
    for start, batch in iter_maps(
        model, _RowView(images, rows, scfg.batch_size, workers), target, method=scfg.method,
        batch_size=scfg.batch_size, ig_steps=scfg.ig_steps, reduce=scfg.reduce, device=device, layer=layer,
        mixed_precision=scfg.mixed_precision,
    ):
        maps[start : start + len(batch)] = _to_half(batch)
        if advance is not None:
            advance(len(batch))
    return pred, target, maps


def _shard_rows(cfg: Config, chosen: pd.DataFrame, shard: int) -> tuple[np.ndarray, np.ndarray]:
    size = cfg.saliency.shard_size
    part = chosen.iloc[shard * size : (shard + 1) * size]
    return part["row"].to_numpy(), part["label"].to_numpy()


def explainer_model(cfg: Config, run: RunDir):
    """The run's baseline model, the layer ``model.layer`` names (or None) and the saliency device."""
    from soxai.device import resolve_device
    from soxai.models.layers import resolve_layer
    from soxai.train.fit import load_baseline

    model = load_baseline(cfg, run)
    layer = resolve_layer(model, cfg.model.layer) if cfg.model.layer is not None else None
    return model, layer, resolve_device(cfg.saliency.device)


def run_saliency_shard(cfg: Config, run: RunDir, shard: int) -> str:
    """Compute one shard's maps (unless the file exists) and return its path; safe to run in parallel.

    Call ``prepare_saliency`` first. The shard is the same file ``run_saliency`` would write. The predictions
    the maps were made with go beside it (``RunDir.saliency_predictions``), so that the stage does not run a
    second forward pass over every image for the index (at 1M images that pass took 40% of the cluster's time).
    """
    from soxai.saliency.allocator import bounded_heap

    path = run.saliency_shard(shard)
    rows, labels = _shard_rows(cfg, _chosen_samples(cfg, run), shard)
    if path.is_file() and len(read_npy(path)) == len(rows):
        return str(path)
    model, layer, device = explainer_model(cfg, run)
    with bounded_heap():  # else glibc's heap grows ~1.2x on 10x the data (soxai/saliency/allocator.py)
        pred, _, maps = explain_rows(cfg, model, read_images(run), rows, labels, device, layer)
    write_npy(path, maps)  # the maps first: predictions without their shard are never read
    write_npy(run.saliency_predictions(shard), np.asarray(pred, dtype=np.int64))
    return str(path)


def _made_predictions(cfg: Config, run: RunDir, shard: int, model, images, rows: np.ndarray, device) -> np.ndarray:
    """The predictions for a shard made before this stage ran: its task's own, else predicted here (a shard from
    an interrupted run of this stage, or a task that died in between), batched as explain_rows batches them, so
    that the shard and the index agree on every explained class."""
    from soxai.train.loop import predict_logits

    made = run.saliency_predictions(shard)
    pred = read_npy(made, mmap=False) if made.is_file() else None
    if pred is not None and len(pred) == len(rows):
        return pred
    return predict_logits(model, images, rows, device, batch_size=cfg.saliency.batch_size,
                          num_workers=cfg.train.num_workers).argmax(axis=1)


def run_saliency(cfg: Config, run: RunDir) -> StageRecord:
    """Compute a saliency map for every sample of ``saliency.splits`` with the baseline model.

    Writes ``saliency/shard-NNNNN.npy`` (float16, shape (n, H, W)) and ``saliency/index.parquet``
    (sample_id, split, label, pred, target, shard, offset). Shards already made under the same
    fingerprint (an interrupted run, or shards fanned out by the flow) are kept.
    """
    from soxai.saliency.allocator import bounded_heap

    scfg = cfg.saliency
    fp = saliency_fingerprint(cfg, run)

    def body():
        with bounded_heap():  # else glibc's heap grows ~1.2x on 10x the data (soxai/saliency/allocator.py)
            return _body()

    def _body():
        chosen = _chosen_samples(cfg, run)
        images = read_images(run)
        # A memory-mapped images file is mapped afresh for each shard: the pages read through one map stay in this
        # process's resident set while it is open, which made the stage's peak RSS grow with the whole file (400 MB
        # at 100k 32x32 images, 4 GB at 1M); a shard task (run_saliency_shard) maps it once per shard too.
        remap = isinstance(images, np.memmap)
        model, layer, device = explainer_model(cfg, run)
        n_shards = prepare_saliency(cfg, run)
        outputs = [run.root / "saliency" / "progress.json"]
        counts = np.zeros(3, dtype=np.int64)  # all zero, constant, not finite
        preds, targets = [], []
        with progress(f"saliency ({scfg.method})", len(chosen)) as advance:
            for s in range(n_shards):
                if remap and s:
                    images = read_images(run)
                rows, labels = _shard_rows(cfg, chosen, s)
                path = run.saliency_shard(s)
                outputs.append(path)
                if path.is_file() and len(read_npy(path)) == len(rows):
                    maps = read_npy(path)
                    pred = _made_predictions(cfg, run, s, model, images, rows, device)
                    target = labels if scfg.target == "label" else pred
                    advance(len(rows), timed=False)  # reused: out of the rate
                else:
                    run.saliency_predictions(s).unlink(missing_ok=True)  # a task's, for a shard that is not there
                    pred, target, maps = explain_rows(cfg, model, images, rows, labels, device, layer, advance)
                    write_npy(path, maps)
                preds.append(np.asarray(pred, dtype=np.int64))
                targets.append(np.asarray(target, dtype=np.int64))
                counts += _degenerate(maps)
        n = len(chosen)
        zero, constant, nonfinite = (int(c) for c in counts)
        degenerate = zero + constant + nonfinite
        if n and degenerate / n > 0.5:
            hint = (" Constant maps usually mean that nothing spatial is left where the map is taken: Grad-CAM "
                    "on a layer with 1x1 feature maps (model.layer after global pooling), whose one value is "
                    "spread over the image, or a model that averages the image before any spatial layer; "
                    "name an earlier layer with model.layer or choose another saliency.method.") if constant else ""
            raise StageError(
                f"{degenerate} of {n} saliency maps are degenerate ({zero} all zero, {constant} constant, "
                f"{nonfinite} not finite; method {scfg.method!r}, target {scfg.target!r}); the method or the "
                "target is likely wrong for this model — try saliency.method=gradient or "
                f"saliency.target=predicted.{hint}"
            )
        offsets = np.arange(n)
        empty = np.zeros(0, dtype=np.int64)
        index = pd.DataFrame({
            "sample_id": chosen["sample_id"].to_numpy(),
            "split": chosen["split"].to_numpy(),
            "label": chosen["label"].to_numpy(),
            "pred": np.concatenate(preds) if preds else empty,
            "target": np.concatenate(targets) if targets else empty,
            "shard": (offsets // scfg.shard_size).astype(np.int64),
            "offset": (offsets % scfg.shard_size).astype(np.int64),
        })
        outputs.append(write_parquet(run.saliency_index, index))
        for s in range(n_shards):  # folded into the index; the folder then holds what a single process writes
            run.saliency_predictions(s).unlink(missing_ok=True)
        return outputs, {"n_maps": int(n), "all_zero": zero, "constant": constant, "non_finite": nonfinite,
                         "method": scfg.method}

    return run_stage(run, "saliency", fp, body)


class _RowView:
    """A lazy view ``images[rows]`` that reads only the slices asked for (keeps memory flat).

    With ``num_workers`` > 0, consecutive slices of ``batch_size`` (as ``iter_maps`` asks for them) are
    read ahead by that many DataLoader workers, so decoding image files keeps up with a GPU.
    """

    def __init__(self, images: np.ndarray, rows: np.ndarray, batch_size: int = 1, num_workers: int = 0) -> None:
        self.images, self.rows = images, rows
        self.shape = (len(rows), *images.shape[1:])
        self.batch_size, self.num_workers = batch_size, num_workers
        self._batches = None
        self._next = 0

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, item):
        if self.num_workers and isinstance(item, slice) and item.start == self._next:
            if self._batches is None:
                from soxai.train.loop import EpochBatches, batch_loader

                order = EpochBatches(self.batch_size)
                order.set_order(np.arange(len(self.rows)))
                labels = np.zeros(len(self.rows), dtype=np.int64)
                self._batches = iter(batch_loader(self.images, self.rows, labels, order, self.num_workers))
            x, _ = next(self._batches)
            if len(x) == len(range(*item.indices(len(self.rows)))):
                self._next = item.stop
                return x.numpy()
            self.num_workers = 0  # not the expected sequence: read directly from here on
        return np.asarray(self.images[self.rows[item]], dtype=np.float32)


def _to_half(maps: np.ndarray) -> np.ndarray:
    # Scale into float16's range per map only when needed: tiny gradients would underflow to 0.
    maps = np.asarray(maps, dtype=np.float32)
    peak = np.abs(np.nan_to_num(maps, nan=0, posinf=0, neginf=0)).reshape(len(maps), -1).max(axis=1)
    scale = np.where((peak > 0) & ((peak < 1e-3) | (peak > 6e4)), 1.0 / np.maximum(peak, 1e-30), 1.0)
    return (maps * scale[:, None, None]).astype(np.float16)


def _degenerate(maps: np.ndarray) -> tuple[int, int, int]:
    """Counts of maps that say nothing about where the model looks: all zero, constant, not finite.

    Parameters
    ----------
    maps : ndarray of shape (n, height, width)

    Returns
    -------
    (all_zero, constant, non_finite) : three ints, disjoint. ``constant`` is a finite map with one
    value everywhere other than 0 (max == min != 0); a map with any NaN or inf is ``non_finite`` only.
    """
    maps = np.asarray(maps, dtype=np.float32)
    flat = maps.reshape(len(maps), int(np.prod(maps.shape[1:])))
    finite = np.isfinite(flat).all(axis=1)
    high, low = flat.max(axis=1, initial=-np.inf), flat.min(axis=1, initial=np.inf)
    flat_map = finite & (high == low)
    zero = flat_map & (high == 0)
    constant = flat_map & ~zero
    return int(zero.sum()), int(constant.sum()), int((~finite).sum())


def read_index(run: RunDir) -> pd.DataFrame:
    return read_parquet(run.saliency_index)


def read_maps(run: RunDir, index: pd.DataFrame) -> np.ndarray:
    """Maps of the rows of ``index``, in its order: float32 array of shape (n, H, W)."""
    shards = {s: read_npy(run.saliency_shard(int(s))) for s in index["shard"].unique()}
    if not shards:
        return np.zeros((0, 0, 0), dtype=np.float32)
    h, w = next(iter(shards.values())).shape[1:]
    out = np.empty((len(index), h, w), dtype=np.float32)
    shard_of, offset = index["shard"].to_numpy(), index["offset"].to_numpy()
    for s, maps in shards.items():
        here = shard_of == s
        out[here] = maps[offset[here]]
    return out


def iter_map_chunks(run: RunDir, index: pd.DataFrame, chunk: int):
    """Maps of the rows of ``index`` in its order, ``chunk`` rows at a time: float32 arrays of shape
    (<= chunk, H, W), equal to the blocks of :func:`read_maps`.

    Each block opens only the shards it needs and unmaps them before the next block, so the process's memory
    stays flat however many maps there are (pages read through a memory map count in its RSS while it is open).
    """
    shard_of, offset = index["shard"].to_numpy(), index["offset"].to_numpy()
    for lo in range(0, len(index), chunk):
        shards, offsets = shard_of[lo : lo + chunk], offset[lo : lo + chunk]
        out = None
        for s in np.unique(shards):
            maps = read_npy(run.saliency_shard(int(s)))
            if out is None:
                out = np.empty((len(shards), *maps.shape[1:]), dtype=np.float32)
            here = shards == s
            out[here] = maps[offsets[here]]
            del maps
        yield out
