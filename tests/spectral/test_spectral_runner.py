"""The spectral stage on the tiny run: its files, its place between concepts and bias, and the variant surrogate."""

import json

import numpy as np
import pandas as pd


def test_run_spectral__writes_layers_frequency_shares_and_surrogate(tiny_explained):
    from soxai.stage import read_stage

    cfg, run = tiny_explained
    rec = read_stage(run, "spectral")
    assert rec is not None and set(rec["outputs"]) == {
        "spectral/layers.parquet", "spectral/frequency.parquet", "spectral/concept_shares.parquet",
        "spectral/surrogate.json", "spectral/network.json"}
    layers = pd.read_parquet(run.spectral_layers)
    assert set(layers["kind"]) == {"conv", "linear"} and (layers["operator_norm"] > 0).all()
    network = json.loads(run.spectral_network.read_text())
    assert network["lipschitz_bound"] == np.prod(layers["operator_norm"]) and network["skipped_layers"] == []
    concepts = pd.read_parquet(run.concepts)
    frequency = pd.read_parquet(run.spectral_frequency)
    assert sorted(frequency["concept_id"]) == sorted(concepts.loc[~concepts["is_noise"], "concept_id"])
    surrogate = json.loads(run.spectral_surrogate.read_text())
    base = surrogate["models"]["baseline"]
    assert len(base["formula"]) == surrogate["n_classes"] and max(base["n_terms"]) <= surrogate["max_terms"]
    assert surrogate["trust_split"] == "test" and base["fidelity"]["test"]["n"] == 30
    shares = pd.read_parquet(run.spectral_shares)
    assert (shares["split"] == "train").sum() == len(pd.read_parquet(run.assignments))
    assert set(shares["split"]) == {"train", "test", "test_attacked"}


def test_run_spectral__bias_fingerprint_does_not_chain_to_it(tiny_explained, tmp_path):
    import shutil

    from soxai.bias.runner import run_bias
    from soxai.run_dir import RunDir
    from soxai.stage import read_stage

    cfg, run = tiny_explained
    copy = RunDir(tmp_path / "run")
    shutil.copytree(run.root, copy.root)
    before = read_stage(copy, "bias")["fingerprint"]
    shutil.rmtree(copy.root / "spectral")
    assert run_bias(cfg, copy).reused and read_stage(copy, "bias")["fingerprint"] == before


def test_run_spectral__an_all_noise_run_gives_intercept_only_formulas_and_an_empty_frequency_table(
        tiny_explained, tmp_path):
    import shutil

    from soxai.concepts.runner import run_concepts
    from soxai.config import load_config
    from soxai.report.network import network_lines, network_section
    from soxai.run_dir import RunDir
    from soxai.spectral.runner import run_spectral

    _, base = tiny_explained
    run = RunDir(shutil.copytree(base.root, tmp_path / "noise"))
    cfg = load_config(run.config, ["concepts.min_cluster_size=100000"])
    assert run_concepts(cfg, run).metrics["n_concepts"] == 0
    rec = run_spectral(cfg, run)
    assert not rec.reused
    surrogate = json.loads(run.spectral_surrogate.read_text())
    base_entry = surrogate["models"]["baseline"]
    assert surrogate["concept_ids"] == [] and base_entry["n_terms"] == [0] * surrogate["n_classes"]
    assert all("[concept" not in line for line in base_entry["formula"])
    assert len(pd.read_parquet(run.spectral_frequency)) == 0
    assert '<h2 id="network">Network</h2>' in network_section(cfg, run)
    assert any(line.startswith("Lipschitz upper bound") for line in network_lines(cfg, run))


def test_one_torch_thread__one_thread_inside_and_the_count_restored_after_an_error():
    import pytest
    import torch

    from soxai.spectral.runner import one_torch_thread

    before = torch.get_num_threads()
    torch.set_num_threads(2)  # so that a count left at 1 shows, under OMP_NUM_THREADS=1 too
    try:
        with pytest.raises(RuntimeError, match="inside"):
            with one_torch_thread():
                assert torch.get_num_threads() == 1
                raise RuntimeError("inside")
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
