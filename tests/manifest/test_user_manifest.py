"""A user's manifest for `soxai retrain --manifest`: keep read strictly, the empty-class guard applied."""

import pandas as pd
import pytest

from soxai.config import Config
from soxai.errors import DataError
from soxai.manifest.runner import use_user_manifest
from soxai.manifest.user_manifest import read_user_manifest
from soxai.run_dir import RunDir


def _current() -> pd.DataFrame:
    """Six training samples of classes 0 and 1, two test samples; everything kept."""
    return pd.DataFrame({
        "sample_id": [f"s{i}" for i in range(8)],
        "split": ["train"] * 6 + ["test"] * 2,
        "label": [0, 0, 0, 1, 1, 1, 0, 1],
        "keep": True,
        "reason": "",
    })


def _csv(tmp_path, text: str):
    path = tmp_path / "m.csv"
    path.write_text(text)
    return path


def test_read_user_manifest__yes_no_any_case(tmp_path):
    path = _csv(tmp_path, "sample_id,keep\ns0,no\ns1,YES\ns2,No\ns3,false\ns4,1\ns5,0\n")
    merged = read_user_manifest(path, _current())
    assert merged["keep"].tolist() == [False, True, False, False, True, False, True, True]
    assert merged.loc[0, "reason"] == "dropped by m.csv" and merged.loc[1, "reason"] == ""


def test_read_user_manifest__parquet_bools_and_ints(tmp_path):
    pd.DataFrame({"sample_id": ["s0", "s3"], "keep": [False, True]}).to_parquet(tmp_path / "b.parquet")
    assert read_user_manifest(tmp_path / "b.parquet", _current())["keep"].tolist()[:4] == [False, True, True, True]
    pd.DataFrame({"sample_id": ["s0", "s3"], "keep": [0, 1]}).to_parquet(tmp_path / "i.parquet")
    assert read_user_manifest(tmp_path / "i.parquet", _current())["keep"].tolist()[:4] == [False, True, True, True]


@pytest.mark.parametrize("value", ["n", "maybe", "", "2", "keep"])
def test_read_user_manifest__unclear_keep__names_the_row(tmp_path, value):
    path = _csv(tmp_path, f"sample_id,keep\ns0,no\ns1,{value}\n")
    with pytest.raises(DataError) as info:
        read_user_manifest(path, _current())
    msg = str(info.value)
    assert str(path) in msg and f"line 3 ({value!r})" in msg and "true/false, 1/0 or yes/no" in msg


def test_read_user_manifest__emptied_class__refused_unless_allowed(tmp_path):
    path = _csv(tmp_path, "sample_id,keep\ns3,no\ns4,no\ns5,no\n")
    with pytest.raises(DataError) as info:
        read_user_manifest(path, _current(), class_names=["round", "oval"])
    msg = str(info.value)
    assert "drops every training sample of class oval;" in msg  # named as `soxai concepts` names it
    assert "manifest.allow_empty_class=true" in msg and str(path) in msg
    merged = read_user_manifest(path, _current(), allow_empty_class=True)
    assert not merged.loc[3:5, "keep"].any()


def test_read_user_manifest__duplicate_ids__names_rows(tmp_path):
    path = _csv(tmp_path, "sample_id,keep\ns0,no\ns0,yes\n")
    with pytest.raises(DataError, match=r"twice: line 3 \('s0', first on line 2\)"):
        read_user_manifest(path, _current())


def test_read_user_manifest__bad_files__named(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        read_user_manifest(tmp_path / "none.csv", _current())
    with pytest.raises(DataError, match=r"lacks column\(s\) \['keep'\] \(found \['sample_id', 'drop'\]\)"):
        read_user_manifest(_csv(tmp_path, "sample_id,drop\ns0,1\n"), _current())
    (tmp_path / "m.txt").write_text("x")
    with pytest.raises(DataError, match=r"suffix '.txt'"):
        read_user_manifest(tmp_path / "m.txt", _current())
    (tmp_path / "bad.parquet").write_bytes(b"not parquet")
    with pytest.raises(DataError, match="cannot be read as parquet"):
        read_user_manifest(tmp_path / "bad.parquet", _current())


def test_use_user_manifest__refused_file_writes_nothing(tmp_path):
    run = RunDir(tmp_path / "run")
    run.pruned_parquet.parent.mkdir(parents=True)
    _current().to_parquet(run.pruned_parquet)
    before = run.pruned_parquet.read_bytes()
    for text in ("sample_id,keep\ns0,nope\n", "sample_id,keep\ns0,no\ns1,no\ns2,no\n"):
        with pytest.raises(DataError):
            use_user_manifest(Config(), run, _csv(tmp_path, text))
    assert run.pruned_parquet.read_bytes() == before
    assert sorted(p.name for p in run.pruned_parquet.parent.iterdir()) == [run.pruned_parquet.name]
