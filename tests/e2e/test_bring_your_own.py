"""A user's own model (factory, checkpoint) and image folder through the pipeline, without Prefect."""

import json
import textwrap

import numpy as np
import pandas as pd
import pytest
import torch

from soxai.config import load_config
from soxai.errors import ConfigError
from soxai.models.weights import read_checkpoint
from soxai.run_dir import RunDir
from soxai.runs import init_run, resolve_paths, stage_runners
from soxai.testing.smoke import make_smoke_run, smoke_config_path

pytestmark = pytest.mark.slow

SMALL = ["data.n_train_per_class=40", "data.n_val_per_class=5", "data.n_test_per_class=10", "train.epochs=2",
         "concepts.min_cluster_size=8", "retrain.seeds=[0, 1]",
         "train.allow_chance_baseline=true"]  # 2 epochs leave these models at chance: the plumbing is tested

USER_MODULE = textwrap.dedent("""
    from torch import nn

    class Net(nn.Module):
        def __init__(self, num_classes, in_channels, width):
            super().__init__()
            self.features = nn.Sequential(nn.Conv2d(in_channels, width, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                                          nn.Conv2d(width, 2 * width, 3, padding=1), nn.ReLU())
            self.head = nn.Sequential(nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(8 * width, num_classes))

        def forward(self, x):
            return self.head(self.features(x))

    def build(num_classes, in_channels, width=4):
        return Net(num_classes, in_channels, width)
""")


def _completed(run_dir):
    return json.loads((run_dir / "run.json").read_text())["status"] == "completed"


def test_user_factory_and_checkpoint__drive_the_pipeline(tmp_path, monkeypatch):
    (tmp_path / "soxai_e2e_usernet.py").write_text(USER_MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    factory = ["model.factory=soxai_e2e_usernet:build", "model.kwargs={width: 6}", "model.layer=features.3"]
    run_dir = make_smoke_run(tmp_path / "a", [*SMALL, *factory])
    run = RunDir(run_dir)
    assert _completed(run_dir)
    state = read_checkpoint(run.baseline_model)
    assert state["meta"]["arch"] == "soxai_e2e_usernet:build"
    assert state["state_dict"]["features.0.weight"].shape == (6, 1, 3, 3)  # kwargs reached the factory
    for variant in ("baseline", "pruned", "random_control"):
        weights = read_checkpoint(run.variant_model(variant, 1))["state_dict"]
        assert list(weights) == list(state["state_dict"])  # one architecture for baseline and retraining
    assert run.report_html.is_file()

    # The user's checkpoint (a plain state dict, perturbed so it differs from what training would give)
    # becomes the baseline as it is: loaded, evaluated, not trained.
    user_state = {k: v + 0.01 if v.is_floating_point() else v for k, v in state["state_dict"].items()}
    torch.save(user_state, tmp_path / "user.pt")
    cfg = resolve_paths(load_config(smoke_config_path(), [*SMALL, *factory, f"model.checkpoint={tmp_path}/user.pt"]))
    second = init_run(cfg, tmp_path / "b")
    runners = stage_runners()
    runners["data"](cfg, second)
    record = runners["model"](cfg, second)
    loaded = read_checkpoint(second.baseline_model)
    assert loaded["meta"]["checkpoint"] == str(tmp_path / "user.pt")
    assert all(torch.equal(loaded["state_dict"][k], user_state[k]) for k in user_state)
    assert set(record.metrics) >= {"train", "val", "test"}
    runners["saliency"](cfg, second)
    assert len(pd.read_parquet(second.saliency_index)) == 120

    wrong = cfg.model_copy(update={"model": cfg.model.model_copy(update={"layer": "feature.3"})})
    with pytest.raises(ConfigError, match=r"no layer of that name.*Did you mean 'features\.3'.*features\.0"):
        runners["saliency"](wrong, second)


def test_image_folder_rgb_resnet__pipeline_end_to_end(tmp_path):
    from soxai.data.sources import build_dataset
    from soxai.testing.files import write_image_folder

    cells = build_dataset(load_config(smoke_config_path(), SMALL).data, seed=0)
    root = write_image_folder(cells, tmp_path / "folder", rgb=True)
    run_dir = make_smoke_run(tmp_path / "runs", [
        *SMALL, "data.source=image_folder", f"data.root={root}", "data.resize=24", "data.crop=24",
        "data.mean=[0.5, 0.5, 0.4]", "data.std=[0.25, 0.25, 0.2]", "model.name=resnet", "model.channels=[8, 16]",
        "model.depth=1", "saliency.method=gradcam", "model.layer=layer2",
    ])
    run = RunDir(run_dir)
    assert _completed(run_dir)
    info = json.loads(run.data_info.read_text())
    assert info["image_shape"] == [3, 24, 24] and info["storage"]["kind"] == "files"
    assert info["class_names"] == sorted(cells.class_names)
    assert not run.images.exists()  # the images stay in the folder
    samples = pd.read_parquet(run.samples)
    assert set(samples["split"]) == {"train", "val", "test", "test_attacked"} and len(samples) == len(cells.samples)
    maps = np.load(run.saliency_shard(0))
    assert maps.shape == (120, 24, 24) and np.isfinite(maps.astype(np.float32)).all()
    comparison = json.loads(run.comparison.read_text())
    assert set(comparison["variants"]) == {"baseline", "pruned", "random_control"}
    assert "test_attacked" in comparison["variants"]["baseline"]
    assert run.report_html.is_file()

    from soxai.manifest.dataset import PrunedManifestDataset

    kept = PrunedManifestDataset(run_dir, split="train")
    image, label = kept[0]
    assert image.shape == (3, 24, 24) and 0 <= label < 3
