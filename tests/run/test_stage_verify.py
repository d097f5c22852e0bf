"""Reuse verifies what a stage wrote: size and sha256 of each output file, recorded in stage.json."""

import logging

import numpy as np
import pandas as pd

from soxai.run_dir import RunDir, read_json, write_json, write_npy, write_parquet
from soxai.stage import read_stage, refresh_outputs, run_stage


def _stage(run, name, calls, value=0, fp="fp1"):
    def body():
        calls.append(name)
        frame = pd.DataFrame({"sample_id": [f"s{i}" for i in range(50)], "label": np.arange(50) % 3 + value})
        return [write_parquet(run.root / name / "samples.parquet", frame)], {}

    return run_stage(run, name, fp, body)


def test_run_stage__records_size_and_sha256_of_each_output(tmp_path):
    run = RunDir(tmp_path)
    _stage(run, "data", [])
    files = read_stage(run, "data")["files"]
    path = tmp_path / "data" / "samples.parquet"
    assert list(files) == ["data/samples.parquet"]
    assert files["data/samples.parquet"]["size"] == path.stat().st_size
    assert len(files["data/samples.parquet"]["sha256"]) == 64


def test_run_stage__truncated_output_is_recomputed_saying_so(tmp_path, caplog):
    run, calls = RunDir(tmp_path), []
    _stage(run, "data", calls)
    path = tmp_path / "data" / "samples.parquet"
    whole = path.read_bytes()
    path.write_bytes(whole[: len(whole) // 2])
    with caplog.at_level(logging.WARNING, logger="soxai"):
        record = _stage(run, "data", calls)
    assert calls == ["data", "data"] and not record.reused
    assert path.read_bytes() == whole
    assert any("data/samples.parquet changed" in r.getMessage() and "recomputing data" in r.getMessage()
               for r in caplog.records)


def test_run_stage__same_size_replaced_output_is_recomputed(tmp_path, caplog):
    run, calls = RunDir(tmp_path), []
    _stage(run, "data", calls)
    path = tmp_path / "data" / "samples.parquet"
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    with caplog.at_level(logging.WARNING, logger="soxai"):
        _stage(run, "data", calls)
    assert calls == ["data", "data"]
    assert any("same size, different content" in r.getMessage() for r in caplog.records)


def test_run_stage__untouched_outputs_are_reused(tmp_path):
    run, calls = RunDir(tmp_path), []
    _stage(run, "data", calls)
    assert _stage(run, "data", calls).reused and calls == ["data"]


def test_run_stage__changed_output_recomputed_differently_makes_later_stages_follow(tmp_path, caplog):
    run, calls = RunDir(tmp_path), []
    _stage(run, "data", calls)
    _stage(run, "model", calls)
    (tmp_path / "data" / "samples.parquet").write_bytes(b"not a parquet")
    with caplog.at_level(logging.WARNING, logger="soxai"):
        _stage(run, "data", calls, value=1)  # the recomputed data differ from the first (say, an unseeded step)
    assert read_stage(run, "model") is None  # model must recompute
    _stage(run, "model", calls)
    assert calls == ["data", "model", "data", "model"]
    assert any("model will recompute" in r.getMessage() for r in caplog.records)


def test_run_stage__changed_output_recomputed_identically_keeps_later_stages(tmp_path):
    run, calls = RunDir(tmp_path), []
    _stage(run, "data", calls)
    _stage(run, "model", calls)
    (tmp_path / "data" / "samples.parquet").write_bytes(b"x")
    _stage(run, "data", calls)
    assert _stage(run, "model", calls).reused and calls == ["data", "model", "data"]


def test_run_stage__changed_shard_is_removed_before_the_stage_resumes(tmp_path):
    """A stage that resumes from its own files (saliency shards) must not pick up the damaged one."""
    run, seen = RunDir(tmp_path), []

    def body():
        shard = run.root / "saliency" / "shard-00000.npy"
        seen.append(shard.is_file())
        if not shard.is_file():
            write_npy(shard, np.zeros(4, dtype=np.float16))
        return [shard], {}

    run_stage(run, "saliency", "fp", body)
    write_npy(run.root / "saliency" / "shard-00000.npy", np.ones(4, dtype=np.float16))
    run_stage(run, "saliency", "fp", body)
    assert seen == [False, False]


def test_run_stage__stage_json_without_hashes_is_reused_and_gets_them(tmp_path):
    """Run directories of an older soxai (stage.json without files) keep working: existence is trusted once,
    then sizes and hashes are recorded, and the next change is found."""
    run, calls = RunDir(tmp_path), []
    _stage(run, "data", calls)
    old = read_json(run.stage_json("data"))
    del old["files"]
    write_json(run.stage_json("data"), old)
    assert _stage(run, "data", calls).reused and calls == ["data"]
    assert "data/samples.parquet" in read_stage(run, "data")["files"]
    (tmp_path / "data" / "samples.parquet").write_bytes(b"x")
    assert not _stage(run, "data", calls).reused


def test_run_stage__folder_output_records_each_file(tmp_path):
    run, calls = RunDir(tmp_path), []

    def body():
        calls.append(1)
        write_npy(run.root / "concepts" / "model" / "a.npy", np.arange(3))
        write_npy(run.root / "concepts" / "model" / "b.npy", np.arange(4))
        return [run.root / "concepts" / "model"], {}

    run_stage(run, "concepts", "fp", body)
    assert set(read_stage(run, "concepts")["files"]) == {"concepts/model/a.npy", "concepts/model/b.npy"}
    write_npy(run.root / "concepts" / "model" / "b.npy", np.arange(5))
    run_stage(run, "concepts", "fp", body)
    assert len(calls) == 2


def test_refresh_outputs__rewritten_own_output_stays_trusted(tmp_path):
    run, calls = RunDir(tmp_path), []
    _stage(run, "report", calls)
    path = tmp_path / "report" / "samples.parquet"
    write_parquet(path, pd.DataFrame({"a": [1]}))
    refresh_outputs(run, "report", [path])
    assert _stage(run, "report", calls).reused
