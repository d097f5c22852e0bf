import json

import numpy as np
import pytest

from soxai.errors import StageError
from soxai.run_dir import RunDir, read_npy, write_json, write_npy
from soxai.stage import fingerprint, read_stage, run_stage, upstream


def _body(run, calls):
    def body():
        calls.append(1)
        return [write_npy(run.root / "a" / "x.npy", np.arange(3))], {"n": 3}

    return body


def test_run_stage__second_run_with_same_fingerprint_does_nothing(tmp_path):
    run, calls = RunDir(tmp_path), []
    first = run_stage(run, "a", "fp1", _body(run, calls))
    second = run_stage(run, "a", "fp1", _body(run, calls))
    assert calls == [1] and not first.reused and second.reused
    assert read_stage(run, "a")["outputs"] == ["a/x.npy"]


def test_run_stage__new_fingerprint_or_missing_output_reruns(tmp_path):
    run, calls = RunDir(tmp_path), []
    run_stage(run, "a", "fp1", _body(run, calls))
    run_stage(run, "a", "fp2", _body(run, calls))
    (run.root / "a" / "x.npy").unlink()
    run_stage(run, "a", "fp2", _body(run, calls))
    assert len(calls) == 3


def test_run_stage__crash_leaves_stage_incomplete(tmp_path):
    run = RunDir(tmp_path)
    run_stage(run, "a", "fp1", _body(run, []))

    def boom():
        raise RuntimeError("killed")

    with pytest.raises(RuntimeError):
        run_stage(run, "a", "fp2", boom)
    assert read_stage(run, "a") is None  # the old stage.json is gone: nothing claims to be complete


def test_upstream__missing_stage_names_it(tmp_path):
    with pytest.raises(StageError, match="'saliency'"):
        upstream(RunDir(tmp_path), "saliency")


def test_fingerprint__depends_on_every_part():
    assert fingerprint("a", "x") != fingerprint("a", "y") != fingerprint("b", "x")


def test_fingerprint__a_stage_logic_version_changes_only_that_stage(monkeypatch):
    """Bumping a stage's logic version (a code change that alters its outputs for the same config) gives it a
    new fingerprint, so a kept run directory recomputes it; the other stages keep theirs."""
    import soxai.stage as stage

    before = {name: fingerprint(name, "cfg") for name in ("bias", "embed")}
    monkeypatch.setitem(stage.LOGIC_VERSIONS, "bias", stage.LOGIC_VERSIONS["bias"] + 1)
    assert fingerprint("bias", "cfg") != before["bias"] and fingerprint("embed", "cfg") == before["embed"]


def test_atomic_writes__leave_no_temp_files(tmp_path):
    run = RunDir(tmp_path)
    write_json(run.root / "j.json", {"a": 1})
    write_npy(run.root / "n.npy", np.ones((2, 2), dtype=np.float16))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["j.json", "n.npy"]
    assert json.loads((tmp_path / "j.json").read_text()) == {"a": 1}
    assert read_npy(tmp_path / "n.npy").dtype == np.float16


def test_stage_runners__flow_stage_lists_cover_every_stage_in_order():
    from flows.pipeline import EXPLAIN_STAGES, RETRAIN_STAGES
    from soxai.run_dir import STAGES
    from soxai.runs import stage_runners

    assert tuple(stage_runners()) == EXPLAIN_STAGES + RETRAIN_STAGES == STAGES
