"""Peak memory of the data stage on a user's manifest: decoded a block at a time, against the whole set at once.

Not a test. Writes N RGB PNG files (``--size`` px, random pixels) and a samples.csv into a scratch folder, then runs
the data stage of a fresh run on that manifest in a fresh subprocess twice: as `soxai run` does (the images decoded
and written to data/images.npy a block at a time, ``soxai.data.manifest_source.ManifestImages``) and with the eager
read (``build_manifest(lazy=False)``: one float32 array of the whole set, how the stage read manifests before
2026-12-06). Reports wall time and the subprocess's peak resident memory (``ru_maxrss``), and checks that the two
images.npy files are byte-identical.

    PYTHONPATH=$PWD flock /tmp/soxai-bench.lock .venv/bin/python bench/manifest_memory.py --n 50000
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CHILD = """
import json, resource, sys, time
from soxai.config import load_config
from soxai.data import sources
from soxai.data.runner import run_data
from soxai.runs import init_run
manifest, run_dir, mode = sys.argv[1:4]
if mode == "eager":
    from soxai.data.manifest_source import build_manifest
    sources.DATA_SOURCES["manifest"] = lambda cfg, seed, base_dir: build_manifest(cfg, base_dir, lazy=False)
cfg = load_config(None, ["data.source=manifest", f"data.manifest={manifest}"])
run = init_run(cfg, run_dir)
t = time.perf_counter()
run_data(cfg, run)
print(json.dumps({"seconds": time.perf_counter() - t,
                  "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def write_pngs(folder: Path, n: int, size: int) -> Path:
    import numpy as np
    import pandas as pd
    from PIL import Image

    rng = np.random.default_rng(0)
    (folder / "img").mkdir(parents=True, exist_ok=True)
    rows = []
    for i in range(n):
        Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(folder / "img" / f"{i}.png")
        rows.append({"path": f"img/{i}.png", "label": i % 3, "split": "test" if i % 10 == 0 else "train"})
    pd.DataFrame(rows).to_csv(folder / "samples.csv", index=False)
    return folder / "samples.csv"


def file_arguments(description: str, size: int) -> argparse.ArgumentParser:
    """The options of a bench on a scratch manifest: --n files of --size px under --root (a new temporary folder)."""
    ap = argparse.ArgumentParser(description=description)
    ap.add_argument("--n", type=int, default=50_000)
    ap.add_argument("--size", type=int, default=size)
    ap.add_argument("--root", type=Path, default=None)
    return ap


def scratch_manifest(args: argparse.Namespace, prefix: str) -> tuple[Path, Path]:
    """(the work folder, its samples.csv): ``args.n`` PNG files written under ``args.root`` or a new folder."""
    root = args.root or Path(tempfile.mkdtemp(prefix=prefix))
    t = time.perf_counter()
    manifest = write_pngs(root / "files", args.n, args.size)
    print(f"{args.n} PNG files in {time.perf_counter() - t:.1f} s", flush=True)
    return root, manifest


def main() -> None:
    args = file_arguments(__doc__.splitlines()[0], 32).parse_args()
    root, manifest = scratch_manifest(args, "soxai-manifest-memory-")
    out = {"n": args.n, "size": args.size, "array_mib": args.n * 3 * args.size * args.size * 4 / 2**20}
    for mode in ("blocks", "eager"):
        res = subprocess.run([sys.executable, "-c", CHILD, str(manifest), str(root / mode), mode],
                             capture_output=True, text=True, check=True)
        out[mode] = json.loads(res.stdout.strip().splitlines()[-1])
        print(mode, out[mode], flush=True)
    a, b = (root / m / "data" / "images.npy" for m in ("blocks", "eager"))
    out["identical"] = a.read_bytes() == b.read_bytes()
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
