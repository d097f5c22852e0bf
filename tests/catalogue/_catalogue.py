"""The catalogue's machinery: a case is a bad input, the command that meets it and what must come of it.

Each case builds its inputs in a fresh folder (``Ctx.tmp``), gives the ``soxai`` arguments, and states the exit
code, the words the message must hold (the problem and the fix) and what may be left behind:

- ``NOTHING``: the run directory the command was pointed at does not exist afterwards;
- ``NO_STAGE_OUTPUT``: it may exist (config.yaml, run.json saying "failed", logs/), but no stage wrote a file;
- ``RUN_UNCHANGED``: a finished run the command was given is byte for byte as it was (logs/ and run.lock aside);
- ``after:STAGE,...``: those stages finished (their stage.json is there) and no other stage wrote a file.

Every case also checks that the output holds no raw traceback, that the message is one ``error:`` line, and that no
temporary file (``.<name>.<random>.tmp``) stays anywhere under the case's folder.
"""

from __future__ import annotations

import hashlib
import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

NOTHING, NO_STAGE_OUTPUT, RUN_UNCHANGED = "nothing", "no-stage-output", "run-unchanged"
STAGE_FOLDERS = ("data", "model", "saliency", "embed", "concepts", "spectral", "bias", "manifest", "train", "compare",
                 "report", "monitor", "saliency_eval")
REPO = Path(__file__).resolve().parents[2]
SMOKE = REPO / "configs" / "smoke.yaml"
# the smallest data and training the stages accept: a case that fails does so before or in the data stage
SMALL = ["data.n_train_per_class=8", "data.n_val_per_class=2", "data.n_test_per_class=2", "train.epochs=1"]


@dataclass
class Ctx:
    """One case's folder, the run directory its command is pointed at, and the finished run when it needs one."""

    tmp: Path
    finished: Path | None = None  # the session's finished tiny run, to be copied, never written
    run: Path = field(init=False)
    processes: list = field(default_factory=list)  # started by the case, stopped after it

    def __post_init__(self) -> None:
        self.run = self.tmp / "run"

    def copy_finished(self) -> Path:
        """A copy of the finished tiny run at ``self.run``."""
        assert self.finished is not None, "the case needs finished=True"
        shutil.copytree(self.finished, self.run, symlinks=True)
        return self.run


@dataclass(frozen=True)
class Case:
    """One bad input. ``args(ctx)`` builds the inputs and returns the soxai arguments; ``says`` are the words
    (formatted with ``tmp`` and ``run``) that the output must hold, case aside; ``leaves`` is one of NOTHING,
    NO_STAGE_OUTPUT, RUN_UNCHANGED."""

    id: str
    args: Callable[[Ctx], list[str]]
    says: tuple[str, ...]
    leaves: str = NOTHING
    code: int = 2
    finished: bool = False  # the case works on a copy of the finished tiny run
    flow: bool = False  # the command runs a Prefect flow (the session's test server)


def params(cases: list[Case]) -> list:
    import pytest

    ids = [c.id for c in cases]
    dupes = {i for i in ids if ids.count(i) > 1}
    assert not dupes, f"case ids must be unique: {dupes}"
    return [pytest.param(c, id=c.id) for c in cases]


def snapshot(root: Path) -> dict[str, str]:
    """sha256 of every file under ``root``, but logs/ (a failure may add its traceback there) and run.lock (a writer
    that takes the lock and then refuses its input writes its PID there; the lock's inode stays)."""
    out = {}
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root)
        if path.is_file() and not path.is_symlink() and rel.parts[0] != "logs" and str(rel) != "run.lock":
            out[str(rel)] = hashlib.sha256(path.read_bytes()).hexdigest()
    return out


def stage_files(run: Path) -> list[str]:
    """Files under the run's stage folders."""
    return [str(p.relative_to(run)) for top in STAGE_FOLDERS if (run / top).is_dir()
            for p in (run / top).rglob("*") if p.is_file()]


def temporaries(root: Path) -> list[str]:
    return [str(p) for p in root.rglob("*.tmp")]


def check(case: Case, ctx: Ctx, invoke: Callable[[list[str]], tuple[int, str]]) -> None:
    """Run the case and assert all it promises."""
    args = case.args(ctx)
    before = snapshot(ctx.run) if case.leaves == RUN_UNCHANGED else None
    code, out = invoke(args)
    flat = " ".join(out.split())
    assert "Traceback (most recent call last)" not in out, f"raw traceback:\n{out}"
    assert code == case.code, f"exit code {code}, expected {case.code}:\n{out}"
    assert len(re.findall(r"^error: ", out, re.M)) == 1, f"not one error line:\n{out}"
    for words in case.says:
        words = " ".join(words.format(tmp=ctx.tmp, run=ctx.run).split())
        assert words.lower() in flat.lower(), f"the message does not say {words!r}:\n{out}"
    assert not temporaries(ctx.tmp), f"temporary files left: {temporaries(ctx.tmp)}"
    if case.leaves == NOTHING:
        assert not ctx.run.exists(), f"{ctx.run} was made: {sorted(p.name for p in ctx.run.iterdir())}"
    elif case.leaves == NO_STAGE_OUTPUT:
        assert not stage_files(ctx.run), f"stage files written: {stage_files(ctx.run)}"
    elif case.leaves.startswith("after:"):  # these stages finished (stage.json last), no later one wrote a file
        done = case.leaves.removeprefix("after:").split(",")
        assert all((ctx.run / stage / "stage.json").is_file() for stage in done), stage_files(ctx.run)
        later = [f for f in stage_files(ctx.run) if f.split("/")[0] not in done]
        assert not later, f"stage files written after {done}: {later}"
    else:
        after = snapshot(ctx.run)
        changed = sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k))
        assert not changed, f"the finished run changed: {changed}"


# ---------------------------------------------------------------- inputs


HOLD = """
import sys, time
from soxai.run_lock import writer_lock
with writer_lock(sys.argv[1]):
    print("held", flush=True)
    time.sleep(120)
"""


def hold_lock(ctx: Ctx, root: Path) -> None:
    """Another process holds ``root``'s writer lock (as a running `soxai run` does) until the case ends."""
    import subprocess
    import sys

    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(root)], stdout=subprocess.PIPE, text=True, cwd=REPO)
    ctx.processes.append(proc)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "held"



def write(path: Path, text: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text.encode() if isinstance(text, str) else text)
    return path


def config(ctx: Ctx, text: str, name: str = "config.yaml") -> Path:
    """A config file: smoke.yaml's data and training made small, then ``text`` on top (YAML)."""
    import yaml

    base = yaml.safe_load(SMOKE.read_text())
    base["data"].update(n_train_per_class=8, n_val_per_class=2, n_test_per_class=2)
    base["train"]["epochs"] = 1
    extra = yaml.safe_load(text) or {}
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            base[key].update(value)
        else:
            base[key] = value
    return write(ctx.tmp / name, yaml.safe_dump(base))


def png(path: Path, size: int = 16, value: int = 128, mode: str = "L") -> Path:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(abs(hash(path.name)) % 2**32)
    shape = (size, size) if mode in ("L", "I;16") else (size, size, 3)
    arr = rng.integers(0, 255, size=shape).astype(np.uint16 if mode == "I;16" else np.uint8)
    arr[: size // 2] = value
    Image.fromarray(arr).save(path)  # uint16 grey: mode I;16
    return path


def image_folder(root: Path, splits: dict[str, int] | None = None, classes: tuple[str, ...] = ("a", "b", "c"),
                 size: int = 16) -> Path:
    """``root/<split>/<class>/<i>.png`` for each split and class: the image_folder source's layout."""
    for split, n in (splits or {"train": 6, "val": 2, "test": 2}).items():
        for k, name in enumerate(classes):
            for i in range(n):
                png(root / split / name / f"{i}.png", size, value=60 * k)
    return root


def folder_config(ctx: Ctx, root: Path, extra: str = "") -> Path:
    return config(ctx, f"data: {{source: image_folder, root: '{root}'}}\n{extra}")


def manifest_files(folder: Path, rows: list[tuple[str, object, str]] | None = None, write_images: bool = True,
                   name: str = "samples.csv") -> Path:
    """A manifest CSV (path, label, split) and its images; default 3 classes x (6 train, 2 val, 2 test)."""
    import pandas as pd

    if rows is None:
        rows = [(f"img/{s}-{k}-{i}.png", k, s) for s, n in (("train", 6), ("val", 2), ("test", 2))
                for k in range(3) for i in range(n)]
    if write_images:
        for path, label, _ in rows:
            if not (folder / path).exists() and "/../" not in f"/{path}" and not str(path).startswith("/"):
                png(folder / path, value=60 * (hash(str(label)) % 4))
    frame = pd.DataFrame(rows, columns=["path", "label", "split"])
    out = folder / name
    out.parent.mkdir(parents=True, exist_ok=True)
    if name.endswith(".parquet"):
        frame.to_parquet(out)
    else:
        frame.to_csv(out, index=False)
    return out


def manifest_config(ctx: Ctx, manifest: Path, extra: str = "") -> Path:
    return config(ctx, f"data: {{source: manifest, manifest: '{manifest}'}}\n{extra}")


def run_args(cfg: Path | None, ctx: Ctx, *extra: str, command: str = "run") -> list[str]:
    return [command, *([str(cfg)] if cfg is not None else []), "--run-dir", str(ctx.run), *extra]
