"""The model section is checked before the first stage writes (soxai.models.preflight)."""

import textwrap
from pathlib import Path

import pytest
import torch

from soxai.config import load_config
from soxai.errors import ConfigError
from soxai.models.registry import build_model
from soxai.run_dir import RunDir
from soxai.runs import run_in_process

SMOKE = Path(__file__).resolve().parents[2] / "configs" / "smoke.yaml"
TINY = ["data.n_train_per_class=40", "data.n_val_per_class=5", "data.n_test_per_class=10", "train.epochs=2"]

USER_MODULE = textwrap.dedent("""
    from torch import nn

    def raises(num_classes):
        raise RuntimeError("the weights server is down")

    def rgb_only(num_classes):
        return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                             nn.Linear(4, num_classes))

    def build(num_classes, in_channels):
        return nn.Sequential(nn.Conv2d(in_channels, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                             nn.Flatten(), nn.Linear(4, num_classes))
""")


@pytest.fixture
def usermod(tmp_path, monkeypatch):
    (tmp_path / "soxai_preflight_usermod.py").write_text(USER_MODULE)
    (tmp_path / "soxai_preflight_broken.py").write_text("raise RuntimeError('half-edited module')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    return "soxai_preflight_usermod"


def _refused_before_data(cfg, root: Path, match: str) -> ConfigError:
    with pytest.raises(ConfigError, match=match) as info:
        run_in_process(cfg, root)
    run = RunDir(root)
    data = root / "data"
    assert not (data.exists() and any(data.iterdir())), "the data stage ran before the model was checked"
    assert not run.baseline_model.exists()
    assert '"failed"' in run.run_json.read_text()
    return info.value


def test_run_in_process__factory_that_raises__refused_before_the_data_stage(usermod, tmp_path):
    cfg = load_config(SMOKE, [*TINY, f"model.factory={usermod}:raises"])
    err = _refused_before_data(cfg, tmp_path / "run", r"model.factory='soxai_preflight_usermod:raises' raised "
                                                      r"RuntimeError.*weights server is down")
    assert "fix the function" in str(err)


def test_run_in_process__factory_failing_at_import__refused_before_the_data_stage(usermod, tmp_path):
    cfg = load_config(SMOKE, [*TINY, "model.factory=soxai_preflight_broken:build"])
    _refused_before_data(cfg, tmp_path / "run", r"model.factory=.*importing module 'soxai_preflight_broken' failed "
                                                r"\(RuntimeError: half-edited module\); fix that module")


def test_run_in_process__wrong_model_layer__refused_before_the_data_stage(tmp_path):
    cfg = load_config(SMOKE, [*TINY, "model.layer=features.9"])
    err = _refused_before_data(cfg, tmp_path / "run", r"model.layer='features.9'.*no layer of that name")
    assert "Layers with feature maps: 0, 3" in str(err)  # small_cnn's two Conv2d


def test_run_in_process__wrong_layer_of_a_factory_model__refused_before_the_data_stage(usermod, tmp_path):
    cfg = load_config(SMOKE, [*TINY, f"model.factory={usermod}:build", "model.layer=conv"])
    _refused_before_data(cfg, tmp_path / "run", r"model.layer='conv'.*Layers with feature maps: 0")


def _small_cnn_state(cfg, n_classes=3):
    return build_model(cfg.model, in_channels=1, n_classes=n_classes, image_size=32, seed=0).state_dict()


def test_run_in_process__nan_checkpoint__refused_before_the_data_stage(tmp_path):
    cfg = load_config(SMOKE, TINY)
    state = _small_cnn_state(cfg)
    state["3.weight"][0, 0, 0, 0] = float("nan")
    path = tmp_path / "nan.pt"
    torch.save(state, path)
    cfg = load_config(SMOKE, [*TINY, f"model.checkpoint={path}"])
    _refused_before_data(cfg, tmp_path / "run", r"model.checkpoint .*nan.pt: 1 of its 8 tensors hold NaN or infinite "
                                                r"values \(3.weight\).*model.checkpoint: null")


def test_run_in_process__missing_checkpoint__refused_before_the_data_stage(tmp_path):
    cfg = load_config(SMOKE, [*TINY, f"model.checkpoint={tmp_path / 'nowhere.pt'}"])
    _refused_before_data(cfg, tmp_path / "run", r"model.checkpoint .*nowhere.pt does not exist")


def test_run_in_process__checkpoint_of_other_classes__refused_before_the_data_stage(tmp_path):
    path = tmp_path / "ten.pt"
    torch.save(_small_cnn_state(load_config(SMOKE, TINY), n_classes=10), path)
    cfg = load_config(SMOKE, [*TINY, f"model.checkpoint={path}"])
    _refused_before_data(cfg, tmp_path / "run", r"does not match the model .*3 classes.*shape mismatches")


def test_check_model_config__unknown_data_shape__checks_the_layer_and_defers_the_forward_pass(usermod, tmp_path):
    from soxai.models.preflight import check_model_config

    # an image folder's channels and classes are known only after the data stage
    cfg = load_config(None, ["data.source=image_folder", f"data.root={tmp_path}", f"model.factory={usermod}:rgb_only"])
    check_model_config(cfg)  # built with placeholder sizes; the forward pass waits for the data
    bad = cfg.model_copy(update={"model": cfg.model.model_copy(update={"layer": "conv"})})
    with pytest.raises(ConfigError, match="model.layer='conv'"):
        check_model_config(bad)
    with pytest.raises(ConfigError, match=r"fails on a batch of shape \(2, 1, 16, 16\)"):  # after the data stage
        check_model_config(cfg, {"image_shape": [1, 16, 16], "n_classes": 5})
