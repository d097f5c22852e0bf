"""Explain stages of a ResNet-18-sized model on a 224x224 RGB image folder; appends to docs/BENCHMARKS.md.

Not a test. Writes ``--n`` synthetic RGB PNGs of 256x256 into an image folder (3 classes), and runs
the explain stages (data -> model -> saliency -> embed -> concepts -> bias -> manifest) with
``data.resize=224``, ``data.crop=224``, ImageNet mean/std, ``model.name=resnet`` with ResNet-18's
widths and depth, and a randomly initialised checkpoint as the baseline (``model.checkpoint``: the
audited model is given, so nothing is trained; throughput does not depend on the weights).

Measured in one process, on whatever ``device=auto`` picks (CUDA when present):

- raw: one forward and one backward to the input of a batch of ``--batch`` 224x224 images (the
  target logits summed, ``torch.autograd.grad`` to the input), median of 5, as images/s;
- the saliency stage's images/s (input x gradient, the default method; it includes decoding and
  resizing the files, the prediction pass and writing float16 shards) and its ratio to raw;
- every explain stage's seconds.

    .venv/bin/python bench/byo_resnet.py [--n 256] [--batch 32] [--no-write]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import platform
import statistics
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DOC = REPO / "docs" / "BENCHMARKS.md"
SECTION = "## ResNet-18-sized model at 224x224 (bench/byo_resnet.py)"
EXPLAIN = ("data", "model", "saliency", "embed", "concepts", "bias", "manifest")
MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def write_folder(root: Path, n: int) -> None:
    """``n`` RGB 256x256 PNGs, a third per class; each class has its own blob colour, with noise."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    colours = np.array([[220, 40, 40], [40, 220, 40], [40, 40, 220]], dtype=np.float32)
    yy, xx = np.mgrid[:256, :256]
    for i in range(n):
        split = "train" if i % 8 else "test"
        k = i % 3
        cy, cx = rng.integers(64, 192, 2)
        blob = np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * 30.0**2))[..., None]
        img = 90 + blob * (colours[k] - 90) + rng.normal(0, 12, (256, 256, 3))
        folder = root / split / f"class{k}"
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(folder / f"{i:05d}.png")


def raw_rate(model, device, batch: int) -> float:
    """Images/s of one forward + backward to the input, median of 5 after a warm-up."""
    import torch

    x = torch.rand(batch, 3, 224, 224, device=device)
    target = torch.zeros(batch, dtype=torch.int64, device=device)
    times = []
    for i in range(6):
        xi = x.clone().requires_grad_(True)
        if device.type == "cuda":
            torch.cuda.synchronize()
        t = time.perf_counter()
        out = model(xi).gather(1, target[:, None]).sum()
        torch.autograd.grad(out, xi)
        if device.type == "cuda":
            torch.cuda.synchronize()
        if i:
            times.append(time.perf_counter() - t)
    return batch / statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=256, help="images in the folder (7/8 train, 1/8 test)")
    parser.add_argument("--batch", type=int, default=32, help="saliency and raw batch size")
    parser.add_argument("--no-write", action="store_true", help="print only; leave docs/BENCHMARKS.md alone")
    args = parser.parse_args()

    import torch

    from soxai.config import load_config
    from soxai.models.config import ModelConfig
    from soxai.models.registry import add_input_normalization, build_model
    from soxai.run_dir import read_json
    from soxai.runs import init_run, resolve_paths, stage_runners
    from soxai.saliency.methods import resolve_device

    device = resolve_device("auto")
    channels = (64, 128, 256, 512)
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        write_folder(tmp_path / "folder", args.n)
        model = build_model(ModelConfig(name="resnet", channels=channels, depth=2), 3, 3, 224, seed=0)
        torch.save(model.state_dict(), tmp_path / "resnet18.pt")
        n_params = sum(p.numel() for p in model.parameters())
        add_input_normalization(model, list(MEAN), list(STD))
        raw_before = raw_rate(model.eval().to(device), device, args.batch)
        cfg = resolve_paths(load_config(None, [
            "name=byo-resnet", "data.source=image_folder", f"data.root={tmp_path / 'folder'}", "data.resize=224",
            "data.crop=224", f"data.mean={list(MEAN)}", f"data.std={list(STD)}", "model.name=resnet",
            f"model.channels={list(channels)}", "model.depth=2", f"model.checkpoint={tmp_path / 'resnet18.pt'}",
            f"saliency.batch_size={args.batch}", "concepts.min_cluster_size=10",
        ]))
        run = init_run(cfg, tmp_path / "run")
        runners = stage_runners()
        for stage in EXPLAIN:
            runners[stage](cfg, run)
        seconds = {s: read_json(run.run_json)["stages"][s]["seconds"] for s in EXPLAIN}
        n_maps = read_json(run.stage_json("saliency"))["metrics"]["n_maps"]
        raw_after = raw_rate(model, device, args.batch)
    raw = (raw_before + raw_after) / 2
    sal_rate = n_maps / seconds["saliency"]
    cpu = f"CPU ({platform.processor() or platform.machine()})"
    name = torch.cuda.get_device_name(0) if device.type == "cuda" else cpu
    result = {"device": name, "n_images": args.n, "n_maps": n_maps, "batch": args.batch, "params": n_params,
              "raw_img_s": round(raw, 2), "raw_before_after": [round(raw_before, 2), round(raw_after, 2)],
              "saliency_img_s": round(sal_rate, 2), "ratio_to_raw": round(sal_rate / raw, 3), "stage_seconds": seconds}
    print(json.dumps(result, indent=2))
    if not args.no_write:
        write_doc(result)


def write_doc(r: dict) -> None:
    stamp = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d")
    stages = ", ".join(f"{k} {v:.1f} s" for k, v in r["stage_seconds"].items())
    row = (f"| {stamp} | {r['device']} | {r['n_maps']} | {r['batch']} | {r['raw_img_s']:.1f} | "
           f"{r['saliency_img_s']:.1f} | {r['ratio_to_raw']:.2f} | {stages} |")
    text = DOC.read_text() if DOC.is_file() else "# soxai benchmarks\n"
    if SECTION not in text:
        text = text.rstrip("\n") + "\n\n" + SECTION + "\n\n" + (
            "ResNet-18 widths and depth (`model.name=resnet`, channels 64-128-256-512, 2 blocks per stage, "
            f"{r['params']:,} parameters for 3 classes) on RGB PNGs resized and cropped to 224x224, "
            "ImageNet mean/std in front of the model, the baseline given as a checkpoint (nothing trained). "
            "raw = one forward + backward to the input of a batch, images/s (mean of the medians before and after "
            "the run); saliency = the saliency stage (input x gradient), decoding the files included.\n\n"
            "| date | device | maps | batch | raw img/s | saliency img/s | saliency / raw | explain stages |\n"
            "|---|---|---|---|---|---|---|---|\n"
        )
        text += row + "\n"
    else:
        head, _, tail = text.partition(SECTION)
        lines = tail.split("\n")
        end = next((i for i, line in enumerate(lines) if line.startswith("## ")), len(lines))
        last = max(i for i, line in enumerate(lines[:end]) if line.startswith("|"))
        lines.insert(last + 1, row)
        text = head + SECTION + "\n".join(lines)
    DOC.write_text(text)


if __name__ == "__main__":
    main()
