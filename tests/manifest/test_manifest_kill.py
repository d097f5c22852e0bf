"""SIGKILL while the manifest is written: no half-written file is ever visible, and a rerun completes
with artifacts byte-identical to an uninterrupted run."""

import os
import shutil
import subprocess
import sys

import pytest

from soxai.manifest.runner import run_manifest
from soxai.run_dir import RunDir

# The child kills itself while one file of the manifest stage is written (the policy manifests come
# first, then these in this order): "mid-write" after half of the bytes reached the temporary file,
# "before-rename" with the temporary file complete but not yet moved into place.
ORDER = ["pruned.parquet", "pruned.csv", "manifest.json", "stage.json"]
CHILD = """
import os, pathlib, signal, sys
mode, target, root = sys.argv[1], sys.argv[2], sys.argv[3]
if mode == "mid-write":
    original = pathlib.Path.write_bytes
    def write_bytes(self, data):
        if self.name.startswith("." + target + "."):
            with open(self, "wb") as fh:
                fh.write(data[: len(data) // 2]); fh.flush(); os.fsync(fh.fileno())
            os.kill(os.getpid(), signal.SIGKILL)
        return original(self, data)
    pathlib.Path.write_bytes = write_bytes
else:
    original = os.replace
    def replace(src, dst):
        if os.path.basename(dst) == target:
            os.kill(os.getpid(), signal.SIGKILL)
        return original(src, dst)
    os.replace = replace
from soxai.config import load_config
from soxai.manifest.runner import run_manifest
from soxai.run_dir import RunDir
run = RunDir(root)
run_manifest(load_config(run.config), run)
"""


def _fresh_copy(run: RunDir, dest) -> RunDir:
    shutil.copytree(run.root, dest)
    copy = RunDir(dest)
    shutil.rmtree(copy.root / "manifest")
    copy.stage_json("manifest").unlink(missing_ok=True)
    return copy


def _artifacts(run: RunDir) -> dict[str, bytes]:
    """Every finished artifact of the manifest stage (policy manifests included), by path in the stage
    folder; stage.json (the stage's own record, with its finishing time) is checked apart."""
    folder = run.root / "manifest"
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file() and not p.name.startswith(".") and p.name != "stage.json"}


@pytest.fixture(scope="module")
def uninterrupted(tiny_explained, tmp_path_factory):
    cfg, base = tiny_explained
    run = _fresh_copy(base, tmp_path_factory.mktemp("manifest-kill") / "whole")
    run_manifest(cfg, run)
    return base, _artifacts(run)


@pytest.mark.parametrize("mode,target", [("mid-write", "pruned.parquet"), ("mid-write", "pruned.csv"),
                                         ("before-rename", "manifest.json"), ("before-rename", "stage.json")])
def test_kill_while_manifest_is_written(uninterrupted, tiny_explained, tmp_path, mode, target):
    cfg, _ = tiny_explained
    base, expected = uninterrupted
    run = _fresh_copy(base, tmp_path / "killed")
    done = subprocess.run([sys.executable, "-c", CHILD, mode, target, str(run.root)],
                          env={**os.environ, "SOXAI_PROGRESS": "0"}, capture_output=True, text=True)
    assert done.returncode == -9, f"the child was not killed: {done.returncode}\n{done.stderr}"

    # What a reader can see: the stage is not marked complete, and every file under its final name is
    # whole (those written before the kill) or absent; the partial file is a temporary.
    assert not run.stage_json("manifest").exists()
    visible = _artifacts(run)
    assert target not in visible
    assert all(name in visible for name in ORDER[: ORDER.index(target)] if name != "stage.json")
    assert all(data == expected[name] for name, data in visible.items())
    assert list((run.root / "manifest").glob(f".{target}.*.tmp")), "the interrupted write left its temporary"

    record = run_manifest(cfg, run)
    assert not record.reused and run.stage_json("manifest").is_file()
    assert _artifacts(run) == expected
    assert not list(run.root.rglob(".*.tmp")), "the rerun removes the interrupted run's temporaries"


def _one_concept_is_all_of_class_0(run: RunDir) -> None:
    """Rewrite the run's concepts so that one flagged concept holds every training sample of class 0."""
    import pandas as pd

    from soxai.run_dir import read_parquet, write_parquet

    samples = read_parquet(run.root / "data" / "samples.parquet")
    assign = read_parquet(run.assignments)
    class0 = set(samples.loc[(samples["split"] == "train") & (samples["label"] == 0), "sample_id"])
    assign.loc[assign["sample_id"].isin(class0), "concept_id"] = 999
    write_parquet(run.assignments, assign)
    scores = pd.DataFrame({"concept_id": [999], "detector": ["override"], "score": [1.0], "is_bias": [True],
                           "reason": ["dropped by a person"]})
    write_parquet(run.bias_scores, scores)


def test_prune_that_empties_a_class_is_refused_unless_allowed(tiny_explained, tmp_path):
    from soxai.config import load_config
    from soxai.errors import StageError
    from soxai.run_dir import read_json

    _, base = tiny_explained
    run = _fresh_copy(base, tmp_path / "empty")
    _one_concept_is_all_of_class_0(run)
    cfg = load_config(run.config, ["manifest.max_class_drop=1.0"])
    with pytest.raises(StageError, match=r"drop every training sample of class round.*allow_empty_class=true"):
        run_manifest(cfg, run)
    assert not run.pruned_parquet.exists() and not run.stage_json("manifest").exists()

    allowed = load_config(run.config, ["manifest.max_class_drop=1.0", "manifest.allow_empty_class=true"])
    run_manifest(allowed, run)
    assert read_json(run.manifest_json)["per_class"]["0"]["kept"] == 0


def test_run_manifest__prune_of_most_of_a_class_keeps_the_class_whole(tiny_explained, tmp_path):
    from soxai.config import load_config
    from soxai.run_dir import read_json, read_parquet

    _, base = tiny_explained
    run = _fresh_copy(base, tmp_path / "majority")
    _one_concept_is_all_of_class_0(run)
    run_manifest(load_config(run.config), run)  # default manifest.max_class_drop = 0.5
    info = read_json(run.manifest_json)
    n0 = info["per_class"]["0"]["kept"]
    assert info["per_class"]["0"]["dropped"] == 0 and n0 > 0
    # the prune would take all of class 0: nothing the baseline gets right is left of it
    assert info["classes_kept_whole"] == {"0": {"would_drop": n0, "of": n0, "rest_wrong": 0.0}}
    pruned = read_parquet(run.pruned_parquet)
    class0 = pruned[(pruned["split"] == "train") & (pruned["label"] == 0)]
    assert class0["keep"].all()
    assert class0["reason"].str.contains("max_class_drop=0.5").all()
    assert class0["reason"].str.contains("reweight or augment").all()
