"""The epoch a reweighted model keeps: group-balanced accuracy of the val split over concept groups."""

import shutil

import numpy as np
import pandas as pd
import pytest

from soxai.run_dir import RunDir, read_json, read_parquet, write_parquet
from soxai.train.selection import EpochSelection, ValGroups, group_balanced_accuracy, selection_for


def test_group_balanced_accuracy__mean_over_class_concept_pairs():
    labels = np.array([0, 0, 0, 0, 1, 1])
    groups = np.array([5, 5, 5, -1, -1, 7])
    pred = np.array([0, 0, 1, 1, 1, 0])
    # (0, -1): 0/1, (0, 5): 2/3, (1, -1): 1/1, (1, 7): 0/1 -> mean 5/12; the sample mean would be 3/6
    assert group_balanced_accuracy(pred, labels, groups) == pytest.approx((0 + 2 / 3 + 1 + 0) / 4)
    # the same concept id under two classes is two groups
    assert group_balanced_accuracy(np.array([0, 0]), np.array([0, 1]), np.array([3, 3])) == pytest.approx(0.5)
    assert np.isnan(group_balanced_accuracy(np.array([]), np.array([]), np.array([])))


def test_train_model__val_score_keeps_the_best_epochs_weights():
    import torch
    from torch import nn

    from soxai.train.config import TrainConfig
    from soxai.train.loop import train_model

    rng = np.random.default_rng(0)
    images = rng.normal(size=(40, 1, 4, 4)).astype(np.float32)
    labels = (images[:, 0, 0, 0] > 0).astype(np.int64)
    model = nn.Sequential(nn.Flatten(), nn.Linear(16, 2))
    snapshots, scripted = [], iter([0.2, 0.9, 0.4, 0.9])

    def val_score(m):
        assert not m.training
        snapshots.append({k: v.detach().clone() for k, v in m.state_dict().items()})
        return next(scripted)

    cfg = TrainConfig(epochs=4, batch_size=8, lr=0.05)
    train_model(model, images, np.arange(40), labels, cfg, seed=0, device=torch.device("cpu"), val_score=val_score)
    assert len(snapshots) == 4
    kept = model.state_dict()
    for key, value in snapshots[1].items():  # epoch 2: the first of the two best
        torch.testing.assert_close(kept[key], value)
    assert not torch.equal(kept["1.weight"], snapshots[3]["1.weight"])


def test_selection_for__last_epoch_when_asked_or_without_val(tiny_explained):
    cfg, _ = tiny_explained
    groups = ValGroups(np.arange(3), np.array([0, 1, 1]), np.array([0, 1, -1]))
    score, record = selection_for(cfg, lambda: groups, None, None)
    assert isinstance(score, EpochSelection) and record == {}
    last = cfg.model_copy(update={"retrain": cfg.retrain.model_copy(update={"reweight_selection": "last"})})
    score, record = selection_for(last, lambda: groups, None, None)
    assert score is None and "retrain.reweight_selection=last" in record["rule"]
    score, record = selection_for(cfg, lambda: None, None, None)
    assert score is None and "no 'val' split" in record["rule"]


@pytest.mark.slow
def test_run_train__reweight_keeps_the_epoch_its_val_groups_score_best(tiny_explained, tmp_path):
    from soxai.models.weights import read_safetensors
    from soxai.saliency.methods import resolve_device
    from soxai.train.fit import make_model
    from soxai.train.runner import run_train
    from soxai.train.selection import val_concept_groups

    cfg, base = tiny_explained
    run = RunDir(shutil.copytree(base.root, tmp_path / "run"))
    cfg = cfg.model_copy(update={"retrain": cfg.retrain.model_copy(update={"variants": ("reweight",),
                                                                           "seeds": (0, 1)})})
    # the tiny run's flag is on a minority of its class; let every sample outside the conflicts carry it, so that
    # most of each class does and the conflicts are reweighted (soxai.train.corrections.tied_conflicts)
    conflicts = read_parquet(run.bias_conflicts)
    named = conflicts.loc[conflicts["is_conflict"].astype(bool), "concept_id"]
    assign = read_parquet(run.assignments)
    samples = read_parquet(run.samples)
    train = assign[assign["sample_id"].isin(samples.loc[samples["split"] == "train", "sample_id"])
                   & ~assign["concept_id"].isin(named)]
    carriers = read_parquet(run.bias_carriers)
    write_parquet(run.bias_carriers, pd.DataFrame({
        "sample_id": train["sample_id"], "concept_id": int(carriers["concept_id"].iloc[0]), "label": train["label"],
        "member": False, "threshold": 0.5, "carries": True}))
    run_train(cfg, run)
    assert read_parquet(run.variant_manifest("reweight", 1))["conflict"].any()
    metrics = read_json(run.variant_metrics("reweight", 1))
    sel = metrics["selection"]
    assert len(sel["val_scores"]) == cfg.train.epochs
    assert sel["epoch_kept"] == int(np.argmax(sel["val_scores"])) + 1
    groups = val_concept_groups(cfg, run)
    assert sum(sel["val_groups"].values()) == len(groups.rows) > 0
    # the kept model scores what the record says its epoch scored
    model = make_model(cfg, read_json(run.data_info), 1)
    model.load_state_dict(read_safetensors(run.variant_model("reweight", 1))[0])
    from soxai.data.runner import read_images

    again = EpochSelection(groups, read_images(run), resolve_device("cpu"))(model.eval())
    assert again == pytest.approx(max(sel["val_scores"]), abs=1e-6)
