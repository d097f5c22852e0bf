"""A tiny segmentation run through every stage (without Prefect), and the bad-input checks before any stage writes."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from soxai.config import load_config
from soxai.errors import ConfigError
from soxai.runs import run_in_process

pytestmark = pytest.mark.slow

CONFIG = Path(__file__).resolve().parents[2] / "configs" / "segmentation.yaml"
TINY = ["data.n_train_per_class=40", "data.n_val_per_class=6", "data.n_test_per_class=10", "data.image_size=16",
        "model.channels=[4, 8]", "train.epochs=2", "concepts.min_cluster_size=6", "retrain.seeds=[0, 1]",
        "bias.pixel_transplant.n_pairs=10", "data.artifact.rate=0.5"]


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    cfg = load_config(CONFIG, TINY)
    return run_in_process(cfg, tmp_path_factory.mktemp("seg") / "run")


def test_segmentation_run__every_stage_completes_and_compares_miou_per_variant(tiny_run):
    run = tiny_run
    assert json.loads(run.run_json.read_text())["status"] == "completed"
    comparison = json.loads(run.comparison.read_text())
    assert comparison["task"] == "segmentation"
    for variant in ("baseline", "pruned", "random_control"):
        for split in ("test", "test_attacked"):
            summary = comparison["variants"][variant][split]["miou"]
            assert 0.0 <= summary["mean"] <= 1.0 and summary["n"] == 2 and summary["ci95"] is None  # 2 seeds
    assert "iou_round" in comparison["variants"]["baseline"]["test"]
    for variant in ("baseline", "pruned", "random_control"):  # each variant's own models, seed by seed
        per_seed = [json.loads(run.variant_metrics(variant, seed).read_text())["splits"]["test"]["miou"]
                    for seed in (0, 1)]
        assert comparison["variants"][variant]["test"]["miou"]["values"] == per_seed
    page = run.report_html.read_text()
    assert "mIoU per variant" in page and "IoU per class on test_attacked" in page


def test_segmentation_run__closing_sentence_speaks_of_miou(tiny_run):
    from soxai.report.comparison import summary_sentence
    from soxai.report.runner import read_run

    text = summary_sentence(read_run(tiny_run.root))
    assert "accuracy" not in text
    assert "changed mIoU by" in text or "Nothing flagged" in text


def test_segmentation_run__compare_table_shows_miou(tiny_run):
    from soxai.report.terminal import comparison_table

    rows = comparison_table([tiny_run.root])
    assert {"miou", "pixel_accuracy"} <= set(rows.columns) and (rows["miou"] != "–").all()


def test_segmentation_run__one_map_per_image_and_class_present_and_masks_beside_the_images(tiny_run):
    run = tiny_run
    index = pd.read_parquet(run.saliency_index)
    samples = pd.read_parquet(run.samples)
    train = samples[samples["split"] == "train"]
    masks = np.load(run.label_masks)
    present = {(sid, int(c)) for sid, r in zip(train["sample_id"], train["row"], strict=True)
               for c in np.unique(masks[r]) if c > 0}
    assert set(zip(index["image_id"], index["target"], strict=True)) == present and len(index) == len(present)
    assert index["sample_id"].is_unique and (index["target"] == index["label"] + 1).all()
    assert set(pd.read_parquet(run.assignments)["sample_id"]) == set(index["sample_id"])
    assert masks.shape == (len(samples), 16, 16) and set(np.unique(masks)) <= {0, 1, 2}
    manifest = pd.read_parquet(run.pruned_parquet)
    assert set(manifest["sample_id"]) == set(train["sample_id"])


def test_segmentation_config__factory_returning_one_score_per_class__refused_before_any_stage(tmp_path, monkeypatch):
    (tmp_path / "seg_e2e_classifier.py").write_text(
        "from torch import nn\n\ndef build(num_classes, in_channels):\n"
        "    return nn.Sequential(nn.Flatten(), nn.LazyLinear(num_classes))\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    cfg = load_config(CONFIG, [*TINY, "model.factory=seg_e2e_classifier:build"])
    with pytest.raises(ConfigError, match=r"returned \(2, 3\)"):
        run_in_process(cfg, tmp_path / "run")
    assert not (tmp_path / "run" / "data").exists()


@pytest.mark.parametrize(("override", "message"), [
    ("data.source=digits", "data.source='digits' has none"),
    ("model.name=small_cnn", "set model.name: unet"),
    ("embed.features=channels", "set embed.features: pooled"),
    ("retrain.variants=[baseline, jtt]", "jtt"),
])
def test_segmentation_config__settings_that_do_not_fit__config_error(override, message):
    with pytest.raises(ConfigError, match=message):
        load_config(CONFIG, [override])


def test_classification_config__unet__config_error_names_the_task():
    with pytest.raises(ConfigError, match="set task: segmentation"):
        load_config(None, ["model.name=unet"])


def test_classification_default__task_is_classification():
    assert load_config(None).task == "classification"


def test_config_hash__task_at_its_default_leaves_every_section_hash_as_before():
    import hashlib

    from soxai.config import _NOT_HASHED, Config

    cfg = load_config(None)
    dumped = cfg.model_dump(mode="json")
    dumped.pop("task")
    for section, fields in _NOT_HASHED.items():
        for field in fields:
            dumped[section].pop(field, None)
    before = hashlib.sha256(json.dumps(dumped, sort_keys=True).encode()).hexdigest()[:16]
    assert cfg.section_hash(*Config.model_fields) == before
    assert load_config(CONFIG).section_hash(*Config.model_fields) != before


def test_segmentation_run__a_persons_manifest_drives_the_retrain(tiny_run, tmp_path):
    import shutil

    from soxai.config import load_run_config
    from soxai.manifest.runner import use_user_manifest
    from soxai.run_dir import RunDir
    from soxai.runs import stage_runners

    root = tmp_path / "copy"
    shutil.copytree(tiny_run.root, root)
    run = RunDir(root)
    cfg = load_run_config(run)
    train = pd.read_parquet(run.pruned_parquet)
    mine = pd.DataFrame({"sample_id": train["sample_id"], "keep": np.arange(len(train)) >= 5})
    mine.to_csv(tmp_path / "mine.csv", index=False)
    use_user_manifest(cfg, run, tmp_path / "mine.csv")
    runners = stage_runners()
    for stage in ("train", "compare"):
        runners[stage](cfg, run)
    comparison = json.loads(run.comparison.read_text())
    assert comparison["n_train"]["pruned"] == len(train) - 5
    assert comparison["n_train"]["baseline"] == len(train)


def test_segmentation_run__concept_gallery_shows_the_images_of_its_maps(tiny_run):
    from soxai.report.runner import concept_gallery, read_run

    view = read_run(tiny_run.root)
    concept = int(view.concepts["concept_id"].max())  # a real concept where there is one, else the noise
    gallery = concept_gallery(view, concept, n=3)
    index = pd.read_parquet(tiny_run.saliency_index).set_index("sample_id")
    samples = pd.read_parquet(tiny_run.samples).set_index("sample_id")
    images = np.load(tiny_run.images)
    assert gallery.sample_ids and all(s in index.index for s in gallery.sample_ids)  # map ids
    for sid, shown in zip(gallery.sample_ids, gallery.images, strict=True):
        np.testing.assert_array_equal(shown, images[samples.loc[index.loc[sid, "image_id"], "row"]])
