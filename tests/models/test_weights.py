"""soxai's weights files: safetensors layout, no pickle anywhere in a run directory."""

import json

import pytest
import torch

from soxai.errors import ConfigError
from soxai.models.weights import is_safetensors, read_safetensors, safetensors_bytes


def test_safetensors_round_trip_keeps_values_dtypes_and_metadata(tmp_path):
    state = {
        "w": torch.randn(3, 4),
        "h": torch.randn(5).half(),
        "b": torch.randn(2, 2).to(torch.bfloat16),
        "n": torch.tensor(7, dtype=torch.int64),
        "mask": torch.tensor([True, False]),
        "empty": torch.zeros(0, 3),
        "strided": torch.randn(4, 6)[:, ::2],
    }
    path = tmp_path / "w.safetensors"
    path.write_bytes(safetensors_bytes(state, {"soxai": json.dumps({"seed": 1})}))
    assert is_safetensors(path)
    back, meta = read_safetensors(path)
    assert meta == {"soxai": '{"seed": 1}'}
    assert set(back) == set(state)
    for name, tensor in state.items():
        assert back[name].dtype == tensor.dtype and torch.equal(back[name], tensor), name


def test_safetensors_layout_is_the_published_one(tmp_path):
    """8-byte little-endian header length, JSON header with dtype/shape/data_offsets, aligned data."""
    raw = safetensors_bytes({"x": torch.arange(3, dtype=torch.float32)})
    n = int.from_bytes(raw[:8], "little")
    assert n % 8 == 0
    header = json.loads(raw[8 : 8 + n])
    assert header["x"] == {"dtype": "F32", "shape": [3], "data_offsets": [0, 12]}
    assert torch.equal(torch.frombuffer(bytearray(raw[8 + n :]), dtype=torch.float32), torch.arange(3.0))


def test_malformed_file_is_refused_with_its_name(tmp_path):
    bad = tmp_path / "bad.safetensors"
    raw = bytearray(safetensors_bytes({"x": torch.ones(4)}))
    bad.write_bytes(bytes(raw[:-8]))  # truncated tensor data
    with pytest.raises(ConfigError, match="bad.safetensors is not a valid safetensors"):
        read_safetensors(bad)


def test_no_file_of_a_run_is_a_pickle(smoke_run_dir):
    """Every artifact of a finished run (data to report: retrained models, comparison, report): Parquet, CSV,
    JSON, npy (no objects), PNG, HTML, YAML, safetensors — none starts like a pickle (0x80) or a torch zip
    archive (PK)."""
    files = [p for p in smoke_run_dir.rglob("*") if p.is_file()]
    for stage in ("data", "model", "saliency", "concepts", "manifest", "train", "compare", "report"):
        assert any(p.relative_to(smoke_run_dir).parts[0] == stage for p in files), f"nothing in {stage}/"
    assert any(p.suffix == ".safetensors" and "train" in p.parts for p in files)
    offenders = [str(p.relative_to(smoke_run_dir)) for p in files if p.read_bytes()[:2] in (b"PK",) or
                 p.read_bytes()[:1] == b"\x80"]
    assert not offenders, f"pickled artifacts: {offenders}"
