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


def run_saliency(cfg: Config, run: RunDir) -> StageRecord:
    """Compute a saliency map for every sample of ``saliency.splits`` with the baseline model.

    Writes ``saliency/shard-NNNNN.npy`` (float16, shape (n, H, W)) and ``saliency/index.parquet``
    (sample_id, split, label, pred, target, shard, offset).
    """
    from soxai.models.layers import resolve_layer
    from soxai.saliency.allocator import fix_mmap_threshold
    from soxai.saliency.methods import iter_maps, resolve_device
    from soxai.train.loop import predict_logits
    from soxai.train.runner import load_baseline

    scfg = cfg.saliency
    fp = fingerprint("saliency", cfg.section_hash("saliency"), str(cfg.model.layer), *upstream(run, "model"))

    def body():
        fix_mmap_threshold()  # else glibc's heap grows ~1.2x on 10x the data (soxai/saliency/allocator.py)
        samples = read_samples(run)
        unknown = sorted(set(scfg.splits) - set(samples["split"]))
        if unknown:
            raise StageError(
                f"saliency.splits names {unknown}, which the data does not have; "
                f"available splits: {sorted(samples['split'].unique())}"
            )
        chosen = samples[samples["split"].isin(scfg.splits)].sort_values(["split", "sample_id"])
        images = read_images(run)
        device = resolve_device(scfg.device)
        model = load_baseline(cfg, run)
        layer = resolve_layer(model, cfg.model.layer) if cfg.model.layer is not None else None
        rows = chosen["row"].to_numpy()
        # Predictions in batches of saliency.batch_size, the stage's one memory knob (predict_logits'
        # default of 512 rows made the largest buffers of the stage, whatever the user set).
        workers = cfg.train.num_workers
        pred = predict_logits(model, images, rows, device, batch_size=scfg.batch_size, num_workers=workers)
        pred = pred.argmax(axis=1)
        target = chosen["label"].to_numpy() if scfg.target == "label" else pred
        progress_path = run.root / "saliency" / "progress.json"
        state = read_json(progress_path) if progress_path.is_file() else {}
        if state.get("fingerprint") != fp:  # shards of another config must not be mixed in
            for old in (run.root / "saliency").glob("shard-*.npy"):
                old.unlink()
            write_json(progress_path, {"fingerprint": fp})
        n_shards = (len(rows) + scfg.shard_size - 1) // scfg.shard_size
        outputs = [progress_path]
        zero = nonfinite = 0
        with progress(f"saliency ({scfg.method})", len(rows)) as advance:
            for s in range(n_shards):
                lo, hi = s * scfg.shard_size, min((s + 1) * scfg.shard_size, len(rows))
                path = run.saliency_shard(s)
                outputs.append(path)
                if path.is_file():
                    maps = read_npy(path)
                    if len(maps) == hi - lo:
                        advance(hi - lo)
                        z, nf = _degenerate(maps)
                        zero, nonfinite = zero + z, nonfinite + nf
                        continue
                shard = np.empty((hi - lo, *images.shape[2:]), dtype=np.float16)
                for start, maps in iter_maps(
                    model, _RowView(images, rows[lo:hi], scfg.batch_size, workers), target[lo:hi], method=scfg.method,
                    batch_size=scfg.batch_size, ig_steps=scfg.ig_steps, reduce=scfg.reduce, device=device,
                    layer=layer, mixed_precision=scfg.mixed_precision,
                ):
                    shard[start : start + len(maps)] = _to_half(maps)
                    advance(len(maps))
                z, nf = _degenerate(shard)
                zero, nonfinite = zero + z, nonfinite + nf
                write_npy(path, shard)
        degenerate = zero + nonfinite
        if len(rows) and degenerate / len(rows) > 0.5:
            raise StageError(
                f"{degenerate} of {len(rows)} saliency maps are all zero or not finite "
                f"(method {scfg.method!r}, target {scfg.target!r}); the method or the target is likely wrong "
                "for this model — try saliency.method=gradient or saliency.target=predicted"
            )
        offsets = np.arange(len(rows))
        index = pd.DataFrame({
            "sample_id": chosen["sample_id"].to_numpy(),
            "split": chosen["split"].to_numpy(),
            "label": chosen["label"].to_numpy(),
            "pred": pred.astype(np.int64),
            "target": np.asarray(target, dtype=np.int64),
            "shard": (offsets // scfg.shard_size).astype(np.int64),
            "offset": (offsets % scfg.shard_size).astype(np.int64),
        })
        outputs.append(write_parquet(run.saliency_index, index))
        return outputs, {"n_maps": int(len(rows)), "all_zero": int(zero), "non_finite": int(nonfinite),
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


def _degenerate(maps: np.ndarray) -> tuple[int, int]:
    flat = np.asarray(maps, dtype=np.float32).reshape(len(maps), -1)
    finite = np.isfinite(flat).all(axis=1)
    zero = finite & (np.abs(flat).max(axis=1, initial=0) == 0)
    return int(zero.sum()), int((~finite).sum())


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
