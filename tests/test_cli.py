"""The ``soxai`` command line's own output (soxai/cli.py); whole runs through it are in tests/e2e."""

from pathlib import Path

import pytest
from typer.testing import CliRunner

from soxai.cli import app
from soxai.run_dir import RunDir, write_json

SMOKE = Path(__file__).resolve().parents[1] / "configs" / "smoke.yaml"


@pytest.fixture
def flows(monkeypatch):
    """flows.pipeline, whose flows a test replaces; the Prefect settings the command sets are undone after."""
    import flows.pipeline as pipeline

    for name in ("PREFECT_LOGGING_EXTRA_LOGGERS", "PREFECT_SERVER_ANALYTICS_ENABLED", "DO_NOT_TRACK",
                 "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr("flows.server.start", lambda command=None: None)  # no flow runs: no server to wait for
    return pipeline


@pytest.mark.parametrize("command", ["run", "explain"])
def test_flow_commands__print_the_saliency_map_counts_before_done(command, flows, tmp_path, monkeypatch):
    def flow(cfg, run_dir, run_id):  # stands in for the Prefect flow: only the saliency stage's record
        metrics = {"n_maps": 3000, "all_zero": 2, "constant": 5, "non_finite": 0, "method": "gradcam"}
        write_json(RunDir(run_dir).stage_json("saliency"), {"stage": "saliency", "metrics": metrics})

    monkeypatch.setattr(flows, "pipeline" if command == "run" else "explain", flow)
    res = CliRunner().invoke(app, [command, str(SMOKE), "--run-dir", str(tmp_path / "run")])

    assert res.exit_code == 0, res.output
    assert res.output.splitlines()[-2:] == ["saliency: 3,000 maps (gradcam), 2 all-zero, 5 constant, 0 non-finite",
                                            f"done: {tmp_path / 'run'}"]


def test_flow_commands__without_a_saliency_stage_no_counts_line(flows, tmp_path, monkeypatch):
    monkeypatch.setattr(flows, "pipeline", lambda cfg, run_dir, run_id: None)
    res = CliRunner().invoke(app, ["run", str(SMOKE), "--run-dir", str(tmp_path / "run")])

    assert res.exit_code == 0, res.output
    assert "saliency:" not in res.output and res.output.splitlines()[-1] == f"done: {tmp_path / 'run'}"


def test_headline__a_finished_run_prints_what_it_found_and_bought_and_the_report(smoke_run_dir):
    from soxai.cli import _headline

    text = _headline(RunDir(smoke_run_dir))
    assert text.startswith("soxai flagged ") and "report: " in text and "report.html" in text


def test_headline__a_run_without_concepts_prints_nothing(tmp_path):
    from soxai.cli import _headline

    assert _headline(RunDir(tmp_path)) == ""


def test_concepts_show__the_noise_id_needs_no_double_dash(smoke_run_dir):
    res = CliRunner().invoke(app, ["concepts", "show", str(smoke_run_dir), "-1"])

    assert res.exit_code == 0, res.output
    assert res.output.startswith("noise (concept -1)")


# Commands that inspect a run directory; none runs a flow, so none may import Prefect (its import alone costs
# about a second, its temporary server several). Each runs in a fresh interpreter that then lists what it imported.
_NO_FLOW_COMMANDS = r"""
import json, sys
from typer.testing import CliRunner
from soxai.cli import app

run, out = sys.argv[1], sys.argv[2]
commands = [["--help"], ["concepts", "list", run], ["concepts", "show", run, "-1"], ["compare", run],
            ["manifest", "export", run, "--format", "json", "--out", out + "/pruned.json"], ["report", run],
            ["evaluate-saliency", run, "--method", "gradient", "--n-samples", "4"], ["spectral", run]]
codes = [CliRunner().invoke(app, c).exit_code for c in commands]
prefect = sorted(m for m in sys.modules if m.split(".")[0] in ("prefect", "flows"))
print(json.dumps({"codes": codes, "prefect": prefect}))
"""


def test_import__soxai_cli_imports_neither_prefect_nor_the_flows():
    import json
    import subprocess
    import sys

    code = "import json, sys, soxai.cli; print(json.dumps(sorted(sys.modules)))"
    modules = json.loads(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                                        check=True).stdout)
    assert "soxai.cli" in modules
    assert not [m for m in modules if m.split(".")[0] in ("prefect", "flows", "torch")]


@pytest.mark.slow
def test_commands_without_a_flow__never_import_prefect(smoke_run_dir, tmp_path):
    import json
    import os
    import shutil
    import subprocess
    import sys

    run = shutil.copytree(smoke_run_dir, tmp_path / "run")  # report and evaluate-saliency write into it
    done = subprocess.run([sys.executable, "-c", _NO_FLOW_COMMANDS, str(run), str(tmp_path)], capture_output=True,
                          text=True, check=True, env={**os.environ, "SOXAI_PROGRESS": "0"})
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["codes"] == [0] * 8, done.stdout
    assert result["prefect"] == []


def test_headline__names_each_conflict_concept_with_its_error_rates(smoke_run_dir, tmp_path):
    import shutil

    import pandas as pd

    from soxai.bias.conflicts import conflict_concepts
    from soxai.cli import _headline
    from soxai.run_dir import read_json, write_parquet

    run = RunDir(shutil.copytree(smoke_run_dir, tmp_path / "run"))
    assert "Conflicts" not in _headline(run) or pd.read_parquet(run.bias_conflicts)["is_conflict"].any()
    table = conflict_concepts(pd.read_parquet(run.assignments), max_p_value=1.0)
    table["is_conflict"] = table.index == 0
    write_parquet(run.bias_conflicts, table)
    r = table.iloc[0]
    line = _headline(run).splitlines()[1]
    assert line.startswith("Conflicts, not pruned")
    name = read_json(run.data_info)["class_names"][int(r.label)]  # named as the concepts table does
    assert f"concept {int(r.concept_id)} (class {name}, {int(r.n)} samples: the baseline wrong on " \
           f"{r.error_rate:.0%} against {r.rest_error_rate:.0%}" in line


@pytest.mark.parametrize("command", [["concepts", "list"], ["compare"], ["manifest", "export"], ["report"]])
def test_reading_commands__a_file_given_as_the_run_directory_is_named_as_a_file(tmp_path, command):
    from typer.testing import CliRunner

    from soxai.cli import app

    plain = tmp_path / "notes.txt"
    plain.write_text("not a run\n")
    result = CliRunner().invoke(app, [*command, str(plain)])
    assert result.exit_code == 2
    assert f"{plain} is a file, not a run directory" in " ".join(result.output.split()), result.output


@pytest.mark.parametrize("command", ["run", "explain"])
def test_flow_commands__a_bad_manifest_is_refused_before_the_flow_and_the_run_directory(command, flows, tmp_path,
                                                                                     monkeypatch):
    import pandas as pd

    def flow(cfg, run_dir, run_id):  # must not be reached
        raise AssertionError("the flow ran")

    monkeypatch.setattr(flows, "pipeline" if command == "run" else "explain", flow)
    (tmp_path / "img").mkdir()
    pd.DataFrame({"path": ["img/a.png", "../outside.png"], "label": ["cat", "dog"], "split": "train"}) \
        .to_csv(tmp_path / "samples.csv", index=False)
    res = CliRunner().invoke(app, [command, str(SMOKE), "--run-dir", str(tmp_path / "run"), "--set",
                                   "data.source=manifest", "--set", f"data.manifest={tmp_path / 'samples.csv'}"])
    assert res.exit_code == 2, res.output
    text = " ".join(res.output.split())
    assert "samples.csv: path values lead outside" in text and "copy the files under the manifest's folder" in text
    assert not (tmp_path / "run").exists()
