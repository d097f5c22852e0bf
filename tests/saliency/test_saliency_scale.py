"""The saliency stage's memory does not grow with the data: no memory map of the images outlives its shard."""

from pathlib import Path

import numpy as np
import pytest

import soxai.saliency.runner as runner
from soxai.config import load_config
from soxai.data.runner import run_data
from soxai.runs import init_run
from soxai.train.runner import run_model

REPO = Path(__file__).resolve().parents[2]
OVERRIDES = ["data.n_train_per_class=30", "data.n_val_per_class=5", "data.n_test_per_class=5", "train.epochs=1",
             "train.allow_chance_baseline=true", "saliency.method=gradient", "saliency.shard_size=25",
             "saliency.batch_size=10"]


@pytest.fixture(scope="module")
def small_run(tmp_path_factory):
    cfg = load_config(REPO / "configs" / "smoke.yaml", OVERRIDES)
    run = init_run(cfg, tmp_path_factory.mktemp("sal-scale") / "run")
    run_data(cfg, run)
    run_model(cfg, run)
    return cfg, run


def test_run_saliency__each_shard_reads_the_images_through_a_map_of_its_own(small_run, monkeypatch):
    # Pages read through a memory map count in the process's resident memory until the map is closed: one map
    # held for the whole stage made its peak RSS grow by the size of the images file (4 GB at 1M 32x32 images).
    cfg, run = small_run
    read_images, row_view = runner.read_images, runner._RowView.__init__
    opened, viewed = [], []

    def read(run_dir):
        images = read_images(run_dir)
        opened.append(images)  # kept, so that no id is reused by a later map
        return images

    def view(self, images, rows, *args, **kwargs):
        viewed.append(images)
        row_view(self, images, rows, *args, **kwargs)

    monkeypatch.setattr(runner, "read_images", read)
    monkeypatch.setattr(runner._RowView, "__init__", view)
    record = runner.run_saliency(cfg, run)
    n_shards = -(-record.metrics["n_maps"] // cfg.saliency.shard_size)
    assert n_shards == 4 and all(isinstance(images, np.memmap) for images in opened)
    assert len(viewed) == n_shards and len({id(images) for images in viewed}) == n_shards
