import numpy as np
import pandas as pd
import pytest

from soxai.data.cells import build_cells
from soxai.data.config import ArtifactConfig, DataConfig
from soxai.train.baselines import jtt_upsample, oracle_images


def test_jtt_upsample__repeats_only_the_errors():
    rows, labels, pred = np.array([10, 11, 12, 13]), np.array([0, 1, 1, 0]), np.array([0, 0, 1, 1])
    up_rows, up_labels = jtt_upsample(rows, labels, pred, 5)
    counts = {r: int((up_rows == r).sum()) for r in rows}
    assert counts == {10: 1, 11: 5, 12: 1, 13: 5}
    assert all(up_labels[up_rows == r][0] == labels[i] for i, r in enumerate(rows))


@pytest.mark.parametrize("shape", ["square", "tint", "border"])
def test_oracle_images__training_set_equals_the_unmarked_data(shape):
    cfg = DataConfig(n_train_per_class=20, n_val_per_class=2, n_test_per_class=2, image_size=16,
                     artifact=ArtifactConfig(shape=shape, size=3, rate=0.5))
    marked, clean = build_cells(cfg, 3), build_cells(cfg.model_copy(update={"artifact": None}), 3)
    train = marked.samples[marked.samples["split"] == "train"]
    assert (train["group"] == "artifact").sum() == 10 and len(marked.unmarked_rows) == 10
    x, rows, labels = oracle_images(marked.images, train, marked.unmarked_rows, marked.unmarked)
    clean_train = clean.images[clean.split_rows("train")]
    np.testing.assert_array_equal(x[rows], clean_train)  # same samples, no mark anywhere
    assert not np.array_equal(marked.images[train["row"].to_numpy()], clean_train)
    np.testing.assert_array_equal(labels, train["label"].to_numpy())


def test_oracle_images__manifest_source_uses_clean_group_or_explains():
    from soxai.errors import StageError

    images = np.zeros((3, 1, 2, 2), np.float32)
    train = pd.DataFrame({"row": [0, 1, 2], "label": [0, 1, 0], "group": ["clean", "clean", "artifact"]})
    x, rows, labels = oracle_images(images, train, None, None)
    assert len(x) == 2 and labels.tolist() == [0, 1]
    with pytest.raises(StageError, match="remove 'oracle'"):
        oracle_images(images, train.drop(columns="group"), None, None)


@pytest.mark.slow
def test_run_train__jtt_and_oracle_variants(tiny_explained, tmp_path):
    import json
    import shutil

    from soxai.compare.runner import build_comparison
    from soxai.run_dir import RunDir, read_parquet
    from soxai.train.runner import run_train

    cfg, base = tiny_explained
    run = RunDir(shutil.copytree(base.root, tmp_path / "run"))
    cfg = cfg.model_copy(update={"retrain": cfg.retrain.model_copy(
        update={"variants": ("baseline", "pruned", "jtt", "oracle"), "seeds": (0, 1), "jtt_epochs": 1})})
    run_train(cfg, run)
    jtt = json.loads(run.variant_metrics("jtt", 1).read_text())
    ids = read_parquet(run.variant_manifest("jtt", 1))
    assert int((ids["weight"] == cfg.retrain.jtt_upweight).sum()) == jtt["jtt_n_errors"]
    oracle = json.loads(run.variant_metrics("oracle", 0).read_text())
    assert oracle["oracle_n_unmarked"] > 0 and oracle["oracle_n_train"] == oracle["n_train"]
    comp = build_comparison(cfg, run)
    assert set(comp["gap_recovered"]) == {"pruned", "jtt"} and "test_attacked" in comp["pruned_over_jtt"]
