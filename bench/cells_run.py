"""Shared by bench/embed_scale.py and bench/peers.py: a large cells run through the saliency stage.

The run directory resumes by stage fingerprint, so both benches can point at one ``--work`` folder and
the data, model and saliency stages run once.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np


def peak_rss_mib() -> float:
    """The process's peak resident set (VmHWM) in MiB."""
    status = Path("/proc/self/status").read_text()
    return int(re.search(r"VmHWM:\s+(\d+) kB", status).group(1)) / 1024


def rss_mib() -> float:
    """The process's current resident set (VmRSS) in MiB."""
    status = Path("/proc/self/status").read_text()
    return int(re.search(r"VmRSS:\s+(\d+) kB", status).group(1)) / 1024


def cpu_s() -> float:
    """User + system CPU seconds of this process so far (all its threads).

    On a shared machine wall time stretches with the other work; CPU time much less so (for
    single-threaded code it is close to the wall time on an idle machine), so the benches report both.
    """
    import resource

    use = resource.getrusage(resource.RUSAGE_SELF)
    return use.ru_utime + use.ru_stime


def explained_run(n: int, work: Path, epochs: int = 1):
    """(cfg, RunDir) of a cells run of ``n`` training samples (3 classes, the demo's mark on 30% of
    class 0) through data, model and saliency; completed stages are reused."""
    from soxai.config import load_config
    from soxai.runs import init_run, stage_runners

    per_class = n // 3
    cfg = load_config(None, [
        f"data.n_train_per_class={per_class}", "data.n_val_per_class=200", "data.n_test_per_class=200",
        f"train.epochs={epochs}", "train.batch_size=256", "saliency.batch_size=512",
    ])
    run = init_run(cfg, work / f"cells-{3 * per_class}")
    runners = stage_runners()
    for stage in ("data", "model", "saliency"):
        runners[stage](cfg, run)
    return cfg, run


def train_maps_and_groups(run) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(sample_ids, labels, is_artifact, maps) of the training split, maps float32 (n, H, W)."""
    from soxai.run_dir import read_parquet
    from soxai.saliency.runner import read_index, read_maps

    index = read_index(run)
    index = index[index["split"] == "train"].reset_index(drop=True)
    samples = read_parquet(run.samples).set_index("sample_id").loc[index["sample_id"]]
    is_artifact = (samples["group"].to_numpy() == "artifact")
    return index["sample_id"].to_numpy(), index["label"].to_numpy(), is_artifact, read_maps(run, index)


def recovery(cluster_ids: np.ndarray, is_artifact: np.ndarray) -> dict[str, float]:
    """How well clusters recover the artifact group among samples of one class.

    ARI of the cluster ids (noise -1 counts as one more cluster) against artifact/clean, and precision,
    recall and F1 of the single cluster that best matches the artifact group (highest F1).
    """
    from sklearn.metrics import adjusted_rand_score

    best = {"precision": 0.0, "recall": 0.0, "f1": 0.0, "cluster": None}
    n_art = int(is_artifact.sum())
    for c in np.unique(cluster_ids):
        if c < 0:
            continue
        m = cluster_ids == c
        tp = int((m & is_artifact).sum())
        p, r = tp / m.sum(), tp / max(n_art, 1)
        f1 = 2 * p * r / (p + r) if p + r else 0.0
        if f1 > best["f1"]:
            best = {"precision": p, "recall": r, "f1": f1, "cluster": int(c)}
    return {"ari": float(adjusted_rand_score(is_artifact.astype(int), cluster_ids)), **best}


def emit(result: dict) -> None:
    """A child's one line of JSON on stdout, which the parent reads."""
    print("RESULT " + json.dumps(result), flush=True)


def parse_result(stdout: str) -> dict | None:
    for line in stdout.splitlines()[::-1]:
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT "):])
    return None
