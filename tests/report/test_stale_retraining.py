"""A manifest recomputed after the last retraining (``soxai explain`` with a new setting on a finished run): the
retraining's files stay until the next ``retrain`` or ``run``, and every reader says they predate the manifest
instead of quoting them as the run's result."""

import shutil

import pytest
from rich.console import Console

from soxai.config import load_config
from soxai.run_dir import RunDir
from soxai.stage import stale_retraining


@pytest.fixture(scope="module")
def reexplained(smoke_run_dir, tmp_path_factory):
    """A copy of the finished smoke run whose manifest stage ran again with another setting."""
    from flows.pipeline import RUNNERS

    run = RunDir(shutil.copytree(smoke_run_dir, tmp_path_factory.mktemp("reexplained") / "run"))
    cfg = load_config(run.config, ["manifest.max_class_drop=0.9"])
    assert not RUNNERS["manifest"](cfg, run).reused
    return run


@pytest.mark.slow
def test_stale_retraining__none_in_a_finished_run_all_three_after_a_new_manifest(smoke_run_dir, reexplained):
    assert stale_retraining(RunDir(smoke_run_dir)) == {}
    stale = stale_retraining(reexplained)
    assert set(stale) == {"train", "compare", "report"}
    assert stale["train"].startswith("the manifest stage was recomputed with other settings at ")
    assert stale["compare"] == stale["report"] == stale["train"]


@pytest.mark.slow
def test_stale_retraining__none_again_once_the_manifest_is_back_to_what_the_retraining_read(reexplained, tmp_path):
    """explain with X, then with the original setting: the retraining read this very manifest (its fingerprint), so
    it is current again, though the manifest's files are newer than it."""
    from flows.pipeline import RUNNERS

    run = RunDir(shutil.copytree(reexplained.root, tmp_path / "run"))
    assert not RUNNERS["manifest"](load_config(run.config), run).reused
    assert stale_retraining(run) == {}


@pytest.mark.slow
def test_readers__say_the_comparison_predates_the_manifest_and_do_not_quote_it(smoke_run_dir, reexplained):
    from soxai.cli import _headline
    from soxai.report.runner import read_run, summary_sentence
    from soxai.report.terminal import comparison_table

    assert read_run(smoke_run_dir).comparison is not None
    view = read_run(reexplained)
    assert view.comparison is None
    text = summary_sentence(view)
    assert "predates this manifest" in text and "soxai retrain RUN_DIR" in text and "versus the baseline" not in text
    assert "report (of the last retraining, before this manifest): " in _headline(reexplained)
    assert "\nreport: " in _headline(RunDir(smoke_run_dir))
    console = Console(width=120, record=True, color_system=None, force_terminal=False)
    comparison_table([reexplained.root], console)  # the numbers stay readable, with the warning under them
    out = console.export_text()
    assert "comparison predates its manifest" in out and f"soxai retrain {reexplained.root}" in out.replace("\n", "")
