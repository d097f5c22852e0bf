"""`soxai manifest export` never overwrites a run's own files and refuses a bad --out with one clear line."""

import os

import pandas as pd
import pytest
from typer.testing import CliRunner

from soxai.cli import app
from soxai.run_dir import RunDir, write_json, write_parquet, write_text
from soxai.stage import read_stage, run_stage


@pytest.fixture
def run(tmp_path):
    """A finished run directory with a manifest stage (what export reads) and a data stage."""
    run = RunDir(tmp_path / "run")
    write_text(run.config, "name: t\n")
    write_json(run.run_json, {"status": "completed"})
    frame = pd.DataFrame({"sample_id": ["a", "b", "c"], "split": "train", "keep": [True, False, True],
                          "reason": ["", "member of flagged concept 1", ""]})
    run_stage(run, "data", "fp-d", lambda: ([write_parquet(run.samples, frame[["sample_id", "split"]])], {}))
    run_stage(run, "manifest", "fp-m", lambda: ([write_parquet(run.pruned_parquet, frame)], {}))
    return run


def _export(run, out, fmt="csv"):
    return CliRunner().invoke(app, ["manifest", "export", str(run.root), "--format", fmt, "--out", str(out)])


def test_manifest_export__csv_over_the_runs_own_parquet_is_refused(run):
    before = run.pruned_parquet.read_bytes()
    res = _export(run, run.pruned_parquet)
    assert res.exit_code == 2, res.output
    assert str(run.pruned_parquet) in res.output and "manifest stage" in res.output and "exports" in res.output
    assert run.pruned_parquet.read_bytes() == before
    assert pd.read_parquet(run.pruned_parquet)["keep"].tolist() == [True, False, True]
    assert read_stage(run, "manifest") is not None


@pytest.mark.parametrize("rel", ["data/samples.parquet", "data/new.csv", "config.yaml", "run.json",
                                 "manifest/stage.json", "train/pruned.csv", "run.lock"])
def test_manifest_export__any_file_a_stage_or_the_run_owns_is_refused(run, rel):
    target = run.root / rel
    before = target.read_bytes() if target.is_file() else None
    res = _export(run, target)
    assert res.exit_code == 2 and "refusing to write" in res.output
    assert (target.read_bytes() if target.is_file() else None) == before


def test_manifest_export__symlink_into_a_stage_file_is_refused(run, tmp_path):
    link = tmp_path / "link.csv"
    link.symlink_to(run.pruned_parquet)
    res = _export(run, link)
    assert res.exit_code == 2 and "manifest stage" in res.output


def test_manifest_export__beside_the_stages_in_the_run_is_allowed(run):
    out = run.root / "exports" / "pruned.csv"
    res = _export(run, out)
    assert res.exit_code == 0, res.output
    assert pd.read_csv(out)["sample_id"].tolist() == ["a", "b", "c"]


def test_manifest_export__existing_directory_is_refused_with_the_fix(run, tmp_path):
    res = _export(run, tmp_path)
    assert res.exit_code == 2 and "existing directory" in res.output and str(tmp_path / "pruned.csv") in res.output
    assert len(res.output.strip().splitlines()) == 1


def test_manifest_export__parent_that_is_a_file_is_refused(run, tmp_path):
    (tmp_path / "afile").write_text("x")
    res = _export(run, tmp_path / "afile" / "m.csv")
    assert res.exit_code == 2 and "is a file, not a folder" in res.output


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes anywhere")
def test_manifest_export__unwritable_folder_is_refused_naming_it(run, tmp_path):
    locked = tmp_path / "ro"
    locked.mkdir()
    locked.chmod(0o555)
    try:
        res = _export(run, locked / "m.csv")
    finally:
        locked.chmod(0o755)
    assert res.exit_code == 2 and "no permission" in res.output and str(locked) in res.output
    assert list(locked.iterdir()) == []


def test_manifest_export__failed_write_keeps_the_earlier_file_whole(run, tmp_path, monkeypatch):
    out = tmp_path / "m.csv"
    out.write_text("earlier\n")

    def full_disk(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("soxai.run_dir.os.fsync", full_disk)
    res = _export(run, out)
    assert res.exit_code == 2 and "No space left" in res.output and str(out) in res.output
    assert out.read_text() == "earlier\n" and sorted(p.name for p in tmp_path.iterdir()).count("m.csv") == 1
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_manifest_export__suggested_path_has_the_formats_suffix(run):
    res = _export(run, run.pruned_parquet, fmt="csv")
    assert res.exit_code == 2 and str(run.root / "exports" / "pruned.csv") in res.output


@pytest.mark.parametrize(("name", "fmt"), [("m.json", "json"), ("m.PARQUET", "parquet"), ("m.pq", "parquet"),
                                           ("m.csv", "csv"), ("m.txt", "csv")])
def test_manifest_export__format_from_the_out_suffix_where_none_is_given(run, tmp_path, name, fmt):
    out = tmp_path / name
    result = CliRunner().invoke(app, ["manifest", "export", str(run.root), "--out", str(out)])
    assert result.exit_code == 0, result.output
    read = {"json": pd.read_json, "parquet": pd.read_parquet, "csv": pd.read_csv}[fmt]
    assert read(out)["sample_id"].tolist() == ["a", "b", "c"]


def test_manifest_export__a_suffix_of_another_format_is_refused_and_nothing_written(run, tmp_path):
    out = tmp_path / "m.csv"
    result = _export(run, out, fmt="parquet")
    assert result.exit_code == 2
    assert "names a .csv file but --format is parquet" in result.output and not out.exists()


def test_manifest_export__without_out_writes_pruned_dot_format_here(run, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(app, ["manifest", "export", str(run.root), "--format", "json"])
    assert result.exit_code == 0, result.output
    assert pd.read_json(tmp_path / "pruned.json")["keep"].tolist() == [True, False, True]


def test_manifest_export__class_names_and_the_users_paths_and_groups_beside_the_codes(run, tmp_path):
    frame = pd.DataFrame({"sample_id": ["a", "b", "c"], "split": "train", "label": [1, 0, 1],
                          "keep": [True, False, True], "reason": ["", "member of flagged concept 1", ""]})
    write_parquet(run.pruned_parquet, frame)
    write_parquet(run.samples, pd.DataFrame({"sample_id": ["a", "b", "c"], "split": "train",
                                             "path": ["img/a.png", "img/b.png", "img/c.png"],
                                             "group": [None, "x", None]}))
    write_json(run.data_info, {"class_names": ["coins", "moon"]})
    out = tmp_path / "m.csv"
    assert _export(run, out).exit_code == 0
    got = pd.read_csv(out)
    assert got["class_name"].tolist() == ["moon", "coins", "moon"] and got["label"].tolist() == [1, 0, 1]
    assert got["path"].tolist() == ["img/a.png", "img/b.png", "img/c.png"] and got["group"].iloc[1] == "x"


def test_manifest_export__without_names_or_paths_the_manifest_as_it_is(run, tmp_path):
    out = tmp_path / "m.csv"
    assert _export(run, out).exit_code == 0  # the fixture's run: no data info, samples without path or group
    assert pd.read_csv(out).columns.tolist() == ["sample_id", "split", "keep", "reason"]
