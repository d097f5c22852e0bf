"""Clustering over all classes (concepts.per_class=false) runs through bias and manifest."""

import shutil

import numpy as np

from soxai.run_dir import RunDir, read_json, read_parquet


def test_per_class_false__concepts_bias_and_manifest_run(tiny_explained, tmp_path):
    from soxai.bias.runner import run_bias
    from soxai.concepts.runner import run_concepts
    from soxai.manifest.runner import run_manifest

    cfg, base = tiny_explained
    run = RunDir(shutil.copytree(base.root, tmp_path / "run"))
    cfg = cfg.model_copy(update={"concepts": cfg.concepts.model_copy(update={"per_class": False})})
    run_concepts(cfg, run)
    run_bias(cfg, run)
    run_manifest(cfg, run)
    concepts = read_parquet(run.concepts)
    real = concepts[~concepts["is_noise"]]
    assert len(real) >= 1 and real["stability"].between(0, 1).all()
    assignments = read_parquet(run.assignments)
    # one id space over every class: each concept id is used once, whatever the labels of its members
    assert set(assignments["concept_id"]) - {-1} == set(real["concept_id"])
    scores = read_parquet(run.bias_scores)
    assert set(scores["concept_id"]) == set(real["concept_id"])
    manifest = read_parquet(run.pruned_parquet)
    flagged = {int(c) for c in read_json(run.manifest_json)["flagged_concepts"]}
    train = manifest[manifest["split"] == "train"]
    dropped = ~train["keep"].to_numpy()
    np.testing.assert_array_equal(dropped, train["concept_id"].isin(flagged).to_numpy())
    info = read_json(run.manifest_json)
    member = train["concept_id"].isin(flagged).to_numpy()
    assert info["dropped_outside_flagged"] == int((dropped & ~member).sum())
    assert info["members_kept"] == int((~dropped & member).sum())
    assert run.policy_manifest("drop_flagged_region").is_file()
