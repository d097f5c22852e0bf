"""Throughput of every saliency method and memory of the saliency stage; writes docs/BENCHMARKS.md.

Not a test. In one process, on soxai's small CNN (32x32 grayscale, 3 classes, batch 128, 32
integration steps):

- raw: one forward and one backward to the input of a batch (loss = sum of the target logits,
  ``torch.autograd.grad`` to the input, so no weight gradients are computed), median of several;
- each method of `SALIENCY_METHODS` through `iter_maps` (so the figure includes copying the batch
  in, reducing channels and copying maps out), its images/s, the ratio to raw, and the ratio to
  raw / (model rows per image), which for integrated gradients is the target's definition.

The machine may be shared, so raw is re-measured right before and after every timing of a method
and each ratio is taken against that pair; the table gives medians over the rounds.

Then the memory of the saliency stage (`run_saliency`, integrated gradients with 8 steps) on a
cells run of 600 training images and one 10x larger (6,000), each in a fresh subprocess; see
`memory_child` for what is measured. About 3 minutes on 2 idle cores, more on a shared machine.

    .venv/bin/python bench/saliency.py [--rounds 5] [--no-write]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DOC = REPO / "docs" / "BENCHMARKS.md"
SECTION = "## Saliency throughput (bench/saliency.py)"

BATCH = 128
IG_STEPS = 32
RAW_DRIFT = 0.10
"""A timing round is repeated when raw before and after it differ by more than this fraction."""
SIDE = 32
N_CLASSES = 3
MEMORY_SIZES = {"small": 200, "large": 2000}
"""Training images per class of the two memory runs (3 classes: 600 and 6,000 maps)."""
MEMORY_OVERRIDES = [
    "data.n_val_per_class=2",
    "data.n_test_per_class=2",
    "train.epochs=1",
    "saliency.method=integrated_gradients",
    "saliency.ig_steps=8",
    "saliency.device=cpu",
    # Below both run sizes, so both hold a full shard buffer: what is left is what grows with the data.
    "saliency.shard_size=512",
]

ROWS_PER_IMAGE = {
    "integrated_gradients": IG_STEPS,
    "integrated_gradients_captum": IG_STEPS,
    "smoothgrad": 8,
    "vargrad": 8,
    "gradient_shap": 8,
    "deeplift": 2,  # input and baseline in one forward of 2n rows, one backward
    "guided_gradcam": 2,  # a Grad-CAM pass and a guided-backprop pass
    "lrp": 2,  # two forwards (weights, then hooks), one backward
    "occlusion": 15 * 15 + 1,  # forward only: 225 window positions plus the image itself
}
"""Model rows (forward, and backward unless noted) per image; 1 for the methods not listed."""


def rows_per_image(name: str) -> int:
    return ROWS_PER_IMAGE.get(name, 1)


def machine() -> dict[str, str]:
    model = "unknown"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    nproc = subprocess.run(["nproc"], capture_output=True, text=True).stdout.strip()
    return {"nproc": nproc, "cpu": model, "python": platform.python_version()}


def loadavg() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


# ---------------------------------------------------------------------------------------------- throughput


def throughput(rounds: int) -> tuple[list[dict], dict[str, str]]:
    import numpy as np
    import torch

    from soxai.models.config import ModelConfig
    from soxai.models.registry import build_model
    from soxai.saliency.methods import SALIENCY_METHODS, compute_maps

    cpu = torch.device("cpu")
    model = build_model(ModelConfig(), in_channels=1, n_classes=N_CLASSES, image_size=SIDE, seed=0).eval()
    rng = np.random.default_rng(0)
    images = rng.random((4 * BATCH, 1, SIDE, SIDE), dtype=np.float32)
    targets = rng.integers(0, N_CLASSES, len(images))
    x_raw = torch.from_numpy(images[:BATCH])
    t_raw = torch.from_numpy(targets[:BATCH])

    def raw_once() -> None:
        x = x_raw.clone().requires_grad_(True)
        score = model(x).gather(1, t_raw[:, None]).sum()
        torch.autograd.grad(score, x)

    def raw_rate(repeats: int = 7) -> float:
        return BATCH / statistics.median(timed(raw_once) for _ in range(repeats))

    for _ in range(5):  # warm-up: allocator, thread pool, first-call dispatch
        raw_once()
    info = {"torch": torch.__version__, "threads": str(torch.get_num_threads())}
    try:
        import captum

        info["captum"] = captum.__version__
    except (ImportError, AttributeError):
        pass

    rows = []
    for name in SALIENCY_METHODS:
        n = (4 if rows_per_image(name) <= 2 else 1) * BATCH

        def run(name: str = name, n: int = n) -> None:
            compute_maps(model, images[:n], targets[:n], method=name, batch_size=BATCH, ig_steps=IG_STEPS,
                         reduce="abs_sum", device=cpu)

        first = timed(run)  # warm-up, and a guess of the cost for the number of rounds
        n_rounds = rounds if first < 2.0 else max(3, rounds - 2)
        rates, raws, ratios = [], [], []
        discarded = 0
        while len(ratios) < n_rounds:
            before = raw_rate()
            rate = n / timed(run)
            after = raw_rate()
            # Another job that starts or stops during the round shows as raw rates that disagree; such a
            # round says nothing about the method, so it is repeated (a few times at most).
            if abs(before - after) > RAW_DRIFT * max(before, after) and discarded < 2 * n_rounds:
                discarded += 1
                continue
            raw = (before + after) / 2
            rates.append(rate)
            raws.append(raw)
            ratios.append(rate / raw)
        ratio = statistics.median(ratios)
        row = {
            "method": name,
            "rows": rows_per_image(name),
            "images_per_s": statistics.median(rates),
            "raw_images_per_s": statistics.median(raws),
            "ratio": ratio,
            "ideal_ratio": ratio * rows_per_image(name),
            "rounds": n_rounds,
            "discarded": discarded,
            "spread": (min(ratios) * rows_per_image(name), max(ratios) * rows_per_image(name)),
        }
        rows.append(row)
        print(f"{name:28s} {row['images_per_s']:9.1f} img/s  raw {row['raw_images_per_s']:7.0f}  "
              f"ratio {ratio:.4f}  x rows {row['ideal_ratio']:.3f}  ({discarded} rounds repeated)", flush=True)
    return rows, info


# ---------------------------------------------------------------------------------------------- memory


def proc_status() -> dict[str, int]:
    """The memory lines of /proc/self/status, in kB."""
    out = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmHWM", "VmRSS", "RssAnon", "RssFile", "RssShmem"):
            out[key] = int(value.split()[0])
    return out


class AnonPeak(threading.Thread):
    """Samples RssAnon every millisecond: the kernel keeps a peak of all RSS (VmHWM), not of anonymous pages."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.series: list[tuple[float, int]] = []
        self._done = threading.Event()

    def run(self) -> None:
        start = time.perf_counter()
        while not self._done.is_set():
            self.series.append((time.perf_counter() - start, proc_status()["RssAnon"]))
            time.sleep(0.001)

    def stop(self) -> None:
        self._done.set()
        self.join()

    def peaks(self) -> tuple[int, int]:
        """Peak RssAnon (kB) over the whole run and over its second half (by time)."""
        half = self.series[-1][0] / 2
        return max(kb for _, kb in self.series), max(kb for t, kb in self.series if t >= half)


def memory_child(run_dir: str) -> None:
    """Run the saliency stage of ``run_dir`` and print its memory as one JSON line.

    Measured: RssAnon (anonymous pages: heap, torch buffers, copies of batches) sampled every
    millisecond by a thread, its peak and its growth over the value right before the stage (after
    torch and captum are imported, so their pages are not the stage's), and its peak in the second
    half of the stage (equal to the first half's when memory has levelled off). The images are a
    memory-mapped .npy file: pages read from it are file-backed (RssFile) and the kernel can drop
    them, so they are reported (RssFile at the end, VmHWM = peak of all RSS) but not counted.
    """
    import captum.attr  # noqa: F401  (imported before the baseline on purpose)
    import torch  # noqa: F401

    from soxai.run_dir import RunDir
    from soxai.runs import load_run_config
    from soxai.saliency.runner import run_saliency

    run = RunDir(run_dir)
    cfg = load_run_config(run)
    before = proc_status()
    sampler = AnonPeak()
    sampler.start()
    start = time.perf_counter()
    record = run_saliency(cfg, run)
    seconds = time.perf_counter() - start
    sampler.stop()
    after = proc_status()
    peak, late_peak = sampler.peaks()
    print(json.dumps({
        "n_maps": record.metrics["n_maps"], "reused": record.reused, "seconds": seconds, "before": before,
        "after": after, "anon_peak_kb": max(peak, after["RssAnon"]), "late_peak_kb": late_peak,
        "samples": len(sampler.series),
    }))


ALLOCATORS = {"soxai (stage fixes the mmap threshold)": {}, "glibc defaults": {"SOXAI_GLIBC_DEFAULTS": "1"}}
"""Environments of the memory children. glibc raises its mmap threshold each time a large block is
freed (up to 32 MiB), after which torch's per-batch buffers come from the heap, which grows by
fragmentation for the first batches and then levels off. The saliency stage fixes the threshold at
glibc's initial 128 KiB (soxai/saliency/allocator.py), which returns freed buffers to the system, so
RssAnon follows the live data; SOXAI_GLIBC_DEFAULTS=1 turns that off for comparison."""


def memory(workdir: Path) -> dict[str, dict[str, dict]]:
    import shutil

    from soxai.config import load_config
    from soxai.data.runner import run_data
    from soxai.runs import init_run
    from soxai.train.runner import run_model

    results: dict[str, dict[str, dict]] = {name: {} for name in ALLOCATORS}
    for label, per_class in MEMORY_SIZES.items():
        cfg = load_config(None, [f"data.n_train_per_class={per_class}", *MEMORY_OVERRIDES])
        run = init_run(cfg, workdir / label)
        run_data(cfg, run)
        run_model(cfg, run)
        for allocator, extra in ALLOCATORS.items():
            shutil.rmtree(run.root / "saliency", ignore_errors=True)  # else the stage is reused, not run
            env = {**os.environ, "SOXAI_PROGRESS": "0", **extra}
            done = subprocess.run([sys.executable, __file__, "--memory-child", str(run.root)], capture_output=True,
                                  text=True, env=env, cwd=REPO)
            if done.returncode != 0:
                raise RuntimeError(f"memory child for {label} ({allocator}) failed:\n{done.stderr}")
            r = json.loads(done.stdout.strip().splitlines()[-1])
            results[allocator][label] = r
            print(f"memory {label}, {allocator}: {r['n_maps']} maps in {r['seconds']:.1f} s, anon peak "
                  f"{r['anon_peak_kb'] / 1024:.1f} MiB (+{(r['anon_peak_kb'] - r['before']['RssAnon']) / 1024:.1f} "
                  f"over the start; second half {r['late_peak_kb'] / 1024:.1f}), VmHWM "
                  f"{r['after']['VmHWM'] / 1024:.1f} MiB, RssFile {r['after']['RssFile'] / 1024:.1f} MiB", flush=True)
    return results


# ---------------------------------------------------------------------------------------------- report


def table(rows: list[dict]) -> list[str]:
    lines = [
        "| method | model rows / image | images/s | raw images/s | ratio to raw | ratio to raw / rows | rounds "
        "(repeated) |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        ideal = f"{r['ideal_ratio']:.3f} ({r['spread'][0]:.2f}–{r['spread'][1]:.2f})" if r["rows"] > 1 else "–"
        lines.append(f"| {r['method']} | {r['rows']} | {r['images_per_s']:.1f} | {r['raw_images_per_s']:.0f} | "
                     f"{r['ratio']:.4f} | {ideal} | {r['rounds']} ({r['discarded']}) |")
    return lines


def memory_lines(mem: dict[str, dict[str, dict]]) -> list[str]:
    mib = 1024
    lines = [
        "| allocator | run | maps | seconds | RssAnon before | RssAnon peak | growth | peak in 2nd half "
        "| VmHWM (all RSS) | RssFile after |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for allocator, runs in mem.items():
        for label, r in runs.items():
            lines.append(
                f"| {allocator} | {label} | {r['n_maps']} | {r['seconds']:.1f} | "
                f"{r['before']['RssAnon'] / mib:.1f} MiB | "
                f"{r['anon_peak_kb'] / mib:.1f} MiB | {(r['anon_peak_kb'] - r['before']['RssAnon']) / mib:.1f} MiB | "
                f"{r['late_peak_kb'] / mib:.1f} MiB | {r['after']['VmHWM'] / mib:.1f} MiB | "
                f"{r['after']['RssFile'] / mib:.1f} MiB |"
            )
    lines.append("")
    for allocator, runs in mem.items():
        small, large = runs["small"], runs["large"]
        ratio = large["anon_peak_kb"] / small["anon_peak_kb"]
        growth = [r["anon_peak_kb"] - r["before"]["RssAnon"] for r in (small, large)]
        lines.append(
            f"- {allocator}: peak RssAnon large / small **{ratio:.3f}** (target ≤ 1.2: "
            f"{'met' if ratio <= 1.2 else 'NOT met'}); growth during the stage {growth[0] / mib:.1f} MiB (small) vs "
            f"{growth[1] / mib:.1f} MiB (large)."
        )
    (fixed, fixed_runs), (default, default_runs) = list(mem.items())[:2]
    lines.append(
        f"- Time cost of the fixed threshold: the large run took {fixed_runs['large']['seconds']:.1f} s with it and "
        f"{default_runs['large']['seconds']:.1f} s with glibc's defaults "
        f"(ratio {fixed_runs['large']['seconds'] / default_runs['large']['seconds']:.3f})."
    )
    return lines


def memory_section(mem: dict[str, dict[str, dict]], stamp: str = "") -> list[str]:
    return [
        "### Saliency stage memory",
        "",
        "`run_saliency` on cells runs of 600 and 6,000 training images (10x), integrated gradients with 8 "
        "steps, batch 128, shard size 512 (below both, so both hold one full shard buffer), each in a fresh "
        "process, once as the stage runs by default (it fixes glibc's mmap threshold at 128 KiB, "
        "soxai/saliency/allocator.py) and once with glibc's defaults (`SOXAI_GLIBC_DEFAULTS=1`): glibc "
        "otherwise raises its mmap threshold as torch frees large buffers, and the heap then grows by "
        "fragmentation over the first batches before it levels off; with the threshold fixed, RssAnon "
        "follows the live data. RssAnon (anonymous pages) is sampled every millisecond by a thread; "
        "*growth* is its peak minus its value right before the stage (torch and captum already imported); "
        "*peak in 2nd half* is the peak over the second half of the stage's time. The images are a "
        "memory-mapped file: pages read from it are file-backed (RssFile, and part of VmHWM), the kernel "
        "can drop them, so they are not counted. (The stage predicts in batches of `saliency.batch_size`; "
        "with predict_logits' former 512 rows, those buffers were the stage's largest and the 10x run's "
        "peak under glibc's defaults was 1.27-1.32x the small run's; with them, glibc's defaults gave "
        "1.15-1.22x over repeated runs, the fixed threshold 1.08-1.11x.)",
        "",
        *memory_lines(mem),
        "",
        *([stamp, ""] if stamp else []),
    ]


def section(rows: list[dict], info: dict[str, str], mem: dict[str, dict] | None, env: dict[str, str]) -> str:
    ig = next(r for r in rows if r["method"] == "integrated_gradients")
    ig_captum = next((r for r in rows if r["method"] == "integrated_gradients_captum"), None)
    lines = [
        SECTION,
        "",
        f"{dt.date.today().isoformat()}; {env['nproc']} CPU cores ({env['cpu']}), Python {env['python']}, "
        f"torch {info['torch']} ({info['threads']} threads), captum {info.get('captum', '?')}; "
        f"load average before / after: {env['load_before']} / {env['load_after']} (the machine is shared: "
        "ratios are taken against raw re-measured around every timing).",
        "",
        f"soxai's small CNN (channels 16, 32; hidden 64), {SIDE}x{SIDE} grayscale, {N_CLASSES} classes, batch "
        f"{BATCH}, {IG_STEPS} integration steps, random weights and images. *raw* = one forward and one backward "
        "to the input of a batch (loss = sum of the target logits). Methods run through `iter_maps` "
        f"({4 * BATCH} images for methods of ≤ 2 rows per image, {BATCH} for the others), medians over "
        "the rounds; *ratio to raw / rows* is `ratio × rows`, with its range over the rounds. A round whose "
        f"raw rates before and after differ by more than {RAW_DRIFT:.0%} is repeated. Rows of occlusion are "
        "forward-only (cheaper than raw's forward + backward); Grad-CAM's backward stops at the last conv "
        "layer, so it can beat raw.",
        "",
        *table(rows),
        "",
        f"Integrated gradients target (≥ 0.9 × raw / {IG_STEPS}): soxai's `integrated_gradients` reaches "
        f"**{ig['ideal_ratio']:.3f}** ({'met' if ig['ideal_ratio'] >= 0.9 else 'NOT met'})"
        + (f"; captum's reaches {ig_captum['ideal_ratio']:.3f}." if ig_captum else "."),
        "",
    ]
    if mem is not None:
        lines += memory_section(mem)
    return "\n".join(lines)


def write_section(text: str) -> None:
    doc = DOC.read_text() if DOC.is_file() else "# soxai benchmarks\n"
    if SECTION in doc:
        head, _, rest = doc.partition(SECTION)
        # The section ends at the next heading of the same level.
        cut = rest.find("\n## ")
        tail = rest[cut + 1 :] if cut >= 0 else ""
        doc = head + text.rstrip() + "\n" + ("\n" + tail if tail else "")
    else:
        doc = doc.rstrip() + "\n\n" + text.rstrip() + "\n"
    DOC.parent.mkdir(parents=True, exist_ok=True)
    DOC.write_text(doc)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5, help="timed rounds per method (2 fewer for slow ones)")
    parser.add_argument("--no-memory", action="store_true", help="skip the saliency-stage memory runs")
    parser.add_argument("--memory-only", action="store_true",
                        help="run only the memory runs and replace only that subsection of the document")
    parser.add_argument("--no-write", action="store_true", help=f"print only, do not update {DOC.name}")
    parser.add_argument("--memory-child", metavar="RUN_DIR", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.memory_child:
        memory_child(args.memory_child)
        return
    os.environ.setdefault("SOXAI_PROGRESS", "0")
    env = machine() | {"load_before": loadavg()}
    start = time.perf_counter()
    if args.memory_only:
        with tempfile.TemporaryDirectory(prefix="soxai-bench-") as tmp:
            mem = memory(Path(tmp))
        stamp = (f"(Memory runs re-measured {dt.date.today().isoformat()} on {env['nproc']} cores ({env['cpu']}); "
                 f"load average before / after {env['load_before']} / {loadavg()}.)")
        text = "\n".join(memory_section(mem, stamp))
        print(text)
        if not args.no_write:
            doc = DOC.read_text()
            head, sep, rest = doc.partition("### Saliency stage memory")
            if not sep:
                raise SystemExit(f"{DOC.name} has no memory subsection yet; run the whole bench once")
            cut = min(i for i in (rest.find("\n## "), rest.find("\n### "), len(rest)) if i >= 0)
            DOC.write_text(head + text.rstrip() + "\n" + rest[cut:])
            print(f"wrote {DOC.relative_to(REPO)}")
        return
    rows, info = throughput(args.rounds)
    mem = None
    if not args.no_memory:
        with tempfile.TemporaryDirectory(prefix="soxai-bench-") as tmp:
            mem = memory(Path(tmp))
    env["load_after"] = loadavg()
    text = section(rows, info, mem, env)
    print()
    print(text)
    print(f"\n(bench took {time.perf_counter() - start:.0f} s)")
    if not args.no_write:
        write_section(text)
        print(f"wrote {DOC.relative_to(REPO)}")


if __name__ == "__main__":
    main()
