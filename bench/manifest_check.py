"""What a user's manifest costs a command before any work: the pre-check and the data stage's fingerprint.

Not a test. Writes N PNG files and a samples.csv (as bench/manifest_memory.py does), then times, in this process:

- ``soxai.runs.check_inputs``: the table's checks and every ``path`` resolved and stat-ed, which `soxai run` and
  `soxai explain` do before Prefect starts or a run directory is made (a bad manifest is refused in a second);
- ``soxai.data.manifest_source.manifest_hash``: the data stage's fingerprint (the manifest's bytes and every named
  file's size and time), paid by every command that runs the data stage, a resumed run whose data stage is reused
  included;
- the data stage itself on a fresh run (the images decoded into data/images.npy), the work both are set against.

Each of the first two is run ``--repeat`` times and the median kept (the file system's cache is warm after the
first, as on a resumed run).

    PYTHONPATH=$PWD flock /tmp/soxai-bench.lock .venv/bin/python bench/manifest_check.py --n 50000
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))


def timed(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main() -> None:
    from manifest_memory import file_arguments, scratch_manifest

    from soxai.config import load_config
    from soxai.data.manifest_source import manifest_hash
    from soxai.data.runner import run_data
    from soxai.runs import check_inputs, init_run

    ap = file_arguments(__doc__.splitlines()[0], 28)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    root, manifest = scratch_manifest(args, "soxai-manifest-check-")
    cfg = load_config(None, ["data.source=manifest", f"data.manifest={manifest}"])
    out = {"n": args.n, "size": args.size,
           "check_inputs_s": timed(lambda: check_inputs(cfg), args.repeat),
           "manifest_hash_s": timed(lambda: manifest_hash(manifest), args.repeat)}
    run = init_run(cfg, root / "run")
    t = time.perf_counter()
    run_data(cfg, run)
    out["data_stage_s"] = time.perf_counter() - t
    out["check_over_data_stage"] = out["check_inputs_s"] / out["data_stage_s"]
    out["check_over_hash"] = out["check_inputs_s"] / out["manifest_hash_s"]
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
