"""The report's Network section and ``soxai spectral``."""

import json
import shutil

import pytest
from typer.testing import CliRunner

from soxai.cli import app
from soxai.report.network import flagged_weights, network_lines, network_section, read_network
from soxai.run_dir import RunDir
from soxai.runs import load_run_config


def test_network_lines__print_the_bound_each_layer_each_concept_and_each_formula(tiny_explained):
    cfg, run = tiny_explained
    lines = network_lines(cfg, run)
    text = "\n".join(lines)
    assert lines[0].startswith("Lipschitz upper bound (product of")
    view = read_network(cfg, run, with_corrected=False)
    assert all(name in text for name in view.layers["name"])
    assert all(f"concept {c:>3} (class" in text for c in view.frequency["concept_id"])
    assert sum(line.strip().startswith("class ") for line in lines) == view.surrogate["n_classes"]
    assert "Surrogate of the baseline:" in text and "Surrogate of the pruned" not in text  # no train/ here


def test_network_section__marks_a_surrogate_below_the_threshold_as_not_trustworthy(tiny_explained, tmp_path):
    cfg, run = tiny_explained
    copy = RunDir(tmp_path / "run")
    shutil.copytree(run.root, copy.root)
    surrogate = json.loads(copy.spectral_surrogate.read_text())
    base = surrogate["models"]["baseline"]
    base["fidelity"]["test"]["agreement"], base["trustworthy"] = 0.95, True
    base["fidelity"]["test_attacked"] = {"agreement": 0.04, "r2": -1.12, "n": 25}
    copy.spectral_surrogate.write_text(json.dumps(surrogate))
    # a low agreement on another split is shown, and the verdict says which split it judged
    assert "test_attacked: agreement 0.040, R² -1.12 (n=25) — trustworthy (agreement on test at least 0.7; the " \
        "other splits are shown, not judged)" in "\n".join(network_lines(cfg, copy))
    alone = {k: v for k, v in base["fidelity"].items() if k in ("train", "test")}
    copy.spectral_surrogate.write_text(json.dumps({**surrogate, "models": {"baseline": {**base, "fidelity": alone}}}))
    assert "— trustworthy (agreement on test at least 0.7)\n" in "\n".join(network_lines(cfg, copy)) + "\n"
    base["fidelity"]["test"]["agreement"], base["trustworthy"] = 0.55, False
    copy.spectral_surrogate.write_text(json.dumps(surrogate))
    html = network_section(cfg, copy)
    assert '<h2 id="network">Network</h2>' in html and "not trustworthy" in html
    assert "NOT trustworthy (agreement on test below 0.7)" in "\n".join(network_lines(cfg, copy))


def test_network_section__empty_without_the_spectral_stage(tiny_explained, tmp_path):
    cfg, run = tiny_explained
    copy = RunDir(tmp_path / "run")
    shutil.copytree(run.root, copy.root, ignore=shutil.ignore_patterns("spectral"))
    assert network_section(cfg, copy) == "" and read_network(cfg, copy) is None


def test_spectral_command__prints_the_formulas_and_names_a_missing_stage(tiny_explained, tmp_path):
    _, run = tiny_explained
    res = CliRunner().invoke(app, ["spectral", str(run.root)])
    assert res.exit_code == 0, res.output
    assert "Lipschitz upper bound" in res.output and "class round ≈" in res.output and "class 0" not in res.output
    copy = tmp_path / "run"
    shutil.copytree(run.root, copy, ignore=shutil.ignore_patterns("spectral"))
    res = CliRunner().invoke(app, ["spectral", str(copy)])
    assert res.exit_code != 0 and "the spectral stage has not run" in res.output


@pytest.mark.slow
def test_read_network__sets_each_pruned_seed_beside_the_baseline(smoke_run_dir):
    run = RunDir(smoke_run_dir)
    cfg = load_run_config(run)
    view = read_network(cfg, run)
    assert sorted(view.corrected) == list(cfg.retrain.seeds)
    assert all(max(e["n_terms"]) <= view.surrogate["max_terms"] for e in view.corrected.values())
    rows = flagged_weights(view)
    assert [r["concept_id"] for r in rows] == sorted(view.flagged)
    assert all(len(r["per_seed"]) == len(cfg.retrain.seeds) for r in rows)
    report = run.report_html.read_text()
    assert 'id="network"' in report and "pruned, seed 0" in report
