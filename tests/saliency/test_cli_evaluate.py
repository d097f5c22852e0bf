import shutil

from typer.testing import CliRunner

from soxai.cli import app
from soxai.run_dir import RunDir


def test_cli_evaluate_saliency__scores_methods_and_writes_table(tiny_explained, tmp_path):
    _, base = tiny_explained
    run = RunDir(shutil.copytree(base.root, tmp_path / "eval"))
    res = CliRunner().invoke(app, ["evaluate-saliency", str(run.root), "--method", "gradient",
                                   "--method", "input_x_gradient", "--n-samples", "12"])
    assert res.exit_code == 0, res.output
    assert "input_x_gradient" in res.output
    assert (run.root / "saliency_eval" / "methods.csv").is_file()
    reported = CliRunner().invoke(app, ["report", str(run.root)])
    assert reported.exit_code == 0, reported.output
    html = run.report_html.read_text()
    assert "Saliency methods against ground truth" in html and "input_x_gradient" in html


def test_cli_evaluate_saliency__unknown_method_lists_choices(tiny_explained):
    _, base = tiny_explained
    res = CliRunner().invoke(app, ["evaluate-saliency", str(base.root), "--method", "gradiant"])
    assert res.exit_code == 2 and "choose from" in res.output
