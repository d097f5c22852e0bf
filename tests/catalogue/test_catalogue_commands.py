"""Catalogue: the commands that read or extend a finished run (concepts, compare, report, evaluate-saliency, manifest
export, retrain --manifest, monitor), given a wrong run directory or a bad option; a finished run stays as it was."""

import os
import shutil

import pandas as pd
import pytest
from _catalogue import NOTHING, RUN_UNCHANGED, Case, hold_lock, params, write


def _on_run(*args: str, prepare=None):
    """``soxai ARGS`` on a copy of the finished run ("{run}" in ARGS is its path) after ``prepare(run)``."""

    def build(ctx):
        run = ctx.copy_finished()
        if prepare is not None:
            prepare(run)
        return [a.format(run=run, tmp=ctx.tmp) for a in args]

    return build


def _plain(*args: str, prepare=None):
    """``soxai ARGS`` on no run ("{tmp}" in ARGS is the case's folder)."""

    def build(ctx):
        if prepare is not None:
            prepare(ctx.tmp)
        return [a.format(tmp=ctx.tmp, run=ctx.run) for a in args]

    return build


def _truncate(rel):
    def prepare(run):
        path = run / rel
        path.write_bytes(path.read_bytes()[:100])

    return prepare


def _remove(rel):
    def prepare(run):
        path = run / rel
        shutil.rmtree(path) if path.is_dir() else os.remove(path)

    return prepare


def _user_manifest(edit=None, text: str | bytes | None = None, name="m.csv"):
    """A manifest for `soxai retrain RUN --manifest` beside the run: every training sample kept, then ``edit``."""

    def prepare(run):
        if text is not None:
            write(run.parent / name, text)
            return
        samples = pd.read_parquet(run / "data" / "samples.parquet")
        frame = samples.loc[samples["split"] == "train", ["sample_id", "label"]].assign(keep="true")
        frame = edit(frame) if edit is not None else frame
        path = run.parent / name
        if name.endswith(".parquet"):
            frame.to_parquet(path)
        else:
            frame.drop(columns=[c for c in ["label"] if c in frame]).to_csv(path, index=False)

    return prepare


def _retrain(edit=None, text=None, name="m.csv"):
    return _on_run("retrain", "{run}", "--manifest", "{tmp}/" + name, prepare=_user_manifest(edit, text, name))


def _keep(value, rows=slice(0, 3)):
    def edit(frame):
        frame = frame.astype({"keep": object})
        frame.iloc[rows, frame.columns.get_loc("keep")] = value
        return frame

    return edit


def _drop_class(label):
    def edit(frame):
        frame.loc[frame["label"] == label, "keep"] = "false"
        return frame

    return edit


CASES = [
    # a run directory that is not one, or not far enough
    Case("concepts-list-missing-dir", _plain("concepts", "list", "{tmp}/nope"), ("nope",)),
    Case("concepts-list-not-a-run", _plain("concepts", "list", "{tmp}"), ("{tmp}",)),
    Case("concepts-list-before-concepts", _on_run("concepts", "list", "{run}", prepare=_remove("concepts")),
         ("concepts",), leaves=RUN_UNCHANGED),
    Case("concepts-list-damaged-parquet", _on_run("concepts", "list", "{run}",
                                                  prepare=_truncate("concepts/concepts.parquet")),
         ("Parquet", "soxai run --run-dir"), leaves=RUN_UNCHANGED),
    Case("concepts-show-unknown-id", _on_run("concepts", "show", "{run}", "999"), ("no concept 999", "known"),
         leaves=RUN_UNCHANGED),
    Case("concepts-show-out-over-a-stage-file", _on_run("concepts", "show", "{run}", "-1", "--out",
                                                        "{run}/report/report.html"),
         ("refusing to write", "report"), leaves=RUN_UNCHANGED),
    Case("compare-missing-dir", _plain("compare", "{tmp}/nope"), ("nope", "does not exist")),
    Case("compare-before-retraining", _on_run("compare", "{run}", prepare=_remove("compare")),
         ("compar",), leaves=RUN_UNCHANGED),
    Case("compare-damaged-json", _on_run("compare", "{run}", prepare=_truncate("compare/comparison.json")),
         ("comparison.json",), leaves=RUN_UNCHANGED),
    Case("report-missing-dir", _plain("report", "{tmp}/nope"), ("nope",)),
    Case("report-not-a-run", _plain("report", "{tmp}"), ("not a soxai run directory",)),
    Case("report-damaged-parquet", _on_run("report", "{run}", prepare=_truncate("concepts/assignments.parquet")),
         ("Parquet",), leaves=RUN_UNCHANGED),
    Case("report-damaged-config", _on_run("report", "{run}", prepare=lambda r: write(r / "config.yaml", "data: [")),
         ("config.yaml",), leaves=RUN_UNCHANGED),
    Case("evaluate-saliency-unknown-method", _on_run("evaluate-saliency", "{run}", "--method", "magic"),
         ("magic", "integrated_gradients"), leaves=RUN_UNCHANGED),
    Case("evaluate-saliency-unknown-split", _on_run("evaluate-saliency", "{run}", "--split", "nope"),
         ("nope", "test"), leaves=RUN_UNCHANGED),
    Case("evaluate-saliency-zero-samples", _on_run("evaluate-saliency", "{run}", "--n-samples", "0"),
         ("n_samples must be >= 1",), leaves=RUN_UNCHANGED),
    Case("evaluate-saliency-before-the-model", _on_run("evaluate-saliency", "{run}", prepare=_remove("model")),
         ("model",), leaves=RUN_UNCHANGED),
    Case("retrain-missing-dir", _plain("retrain", "{tmp}/nope"), ("nope",)),
    Case("retrain-not-a-run", _plain("retrain", "{tmp}"), ("not a soxai run directory",)),
    # manifest export
    Case("export-over-the-runs-parquet", _on_run("manifest", "export", "{run}", "--format", "csv", "--out",
                                                 "{run}/manifest/pruned.parquet"),
         ("refusing to write", "manifest stage", "exports"), leaves=RUN_UNCHANGED),
    Case("export-over-config-yaml", _on_run("manifest", "export", "{run}", "--out", "{run}/config.yaml"),
         ("refusing to write", "config.yaml"), leaves=RUN_UNCHANGED),
    Case("export-into-a-stage-folder", _on_run("manifest", "export", "{run}", "--out", "{run}/data/extra.csv"),
         ("refusing to write", "data stage"), leaves=RUN_UNCHANGED),
    Case("export-through-a-symlink", _on_run("manifest", "export", "{run}", "--out", "{tmp}/link.csv",
                                             prepare=lambda r: os.symlink(r / "manifest/pruned.csv",
                                                                          r.parent / "link.csv")),
         ("refusing to write",), leaves=RUN_UNCHANGED),
    Case("export-to-a-folder", _on_run("manifest", "export", "{run}", "--out", "{tmp}"),
         ("existing directory",), leaves=RUN_UNCHANGED),
    Case("export-under-a-file", _on_run("manifest", "export", "{run}", "--out", "{tmp}/f.txt/pruned.csv",
                                        prepare=lambda r: write(r.parent / "f.txt", "x")),
         ("is a file, not a folder",), leaves=RUN_UNCHANGED),
    Case("export-unknown-format", _on_run("manifest", "export", "{run}", "--format", "xlsx", "--out",
                                          "{tmp}/m.xlsx"), ("xlsx", "csv"), leaves=RUN_UNCHANGED),
    Case("export-before-the-manifest", _on_run("manifest", "export", "{run}", "--out", "{tmp}/m.csv",
                                               prepare=_remove("manifest")),
         ("no pruned manifest",), leaves=RUN_UNCHANGED),
    Case("export-missing-run", _plain("manifest", "export", "{tmp}/nope", "--out", "{tmp}/m.csv"),
         ("nope", "does not exist")),
    # retrain with a user manifest (refused before anything is written)
    Case("retrain-manifest-unclear-keep", _retrain(_keep("maybe")), ("keep must be", "maybe"),
         leaves=RUN_UNCHANGED),
    Case("retrain-manifest-empty-keep", _retrain(_keep("")), ("keep must be",), leaves=RUN_UNCHANGED),
    Case("retrain-manifest-duplicate-ids", _retrain(lambda f: pd.concat([f, f.head(2)])), ("twice",),
         leaves=RUN_UNCHANGED),
    Case("retrain-manifest-unknown-id", _retrain(lambda f: pd.concat(
        [f, pd.DataFrame({"sample_id": ["no-such-sample"], "label": [0], "keep": ["true"]})])),
        ("no-such-sample",), leaves=RUN_UNCHANGED),
    Case("retrain-manifest-no-keep-column", _retrain(lambda f: f.drop(columns=["keep"])), ("keep",),
         leaves=RUN_UNCHANGED),
    Case("retrain-manifest-empties-a-class", _retrain(_drop_class(1)), ("class", "manifest.allow_empty_class"),
         leaves=RUN_UNCHANGED),
    Case("retrain-manifest-missing", _on_run("retrain", "{run}", "--manifest", "{tmp}/nope.csv"), ("nope.csv",),
         leaves=RUN_UNCHANGED),
    Case("retrain-manifest-not-utf8", _retrain(text=b"sample_id,keep\n\xff\xfe,true\n"), ("m.csv", "UTF-8"),
         leaves=RUN_UNCHANGED),
    Case("retrain-manifest-empty-file", _retrain(text=b""), ("m.csv",), leaves=RUN_UNCHANGED),
    Case("retrain-manifest-unknown-suffix", _retrain(text="sample_id,keep\n", name="m.xlsx"), ("m.xlsx",),
         leaves=RUN_UNCHANGED),
    Case("retrain-manifest-damaged-parquet", _retrain(text=b"PAR1 not really", name="m.parquet"), ("m.parquet",),
         leaves=RUN_UNCHANGED),
    Case("retrain-manifest-keeps-no-sample", _retrain(_keep("false", slice(None))), ("class",),
         leaves=RUN_UNCHANGED),
    # while another process writes the run (holds its lock)
    Case("evaluate-saliency-while-a-run-writes", lambda ctx: _on_run("evaluate-saliency", "{run}", prepare=lambda r:
                                                                     hold_lock(ctx, r))(ctx),
         ("is in use by PID", "wait for it to finish"), leaves=RUN_UNCHANGED),
    Case("retrain-while-a-run-writes", lambda ctx: _on_run("retrain", "{run}", prepare=lambda r: hold_lock(ctx, r))(
        ctx), ("is in use by PID",), leaves=RUN_UNCHANGED),
    Case("monitor-while-its-dir-is-written", lambda ctx: _on_run(
        "monitor", "{run}", "--run-dir", "{tmp}/mon", prepare=lambda r: hold_lock(ctx, r.parent / "mon"))(ctx),
        ("is in use by PID",), leaves=RUN_UNCHANGED),
    # monitor
    Case("monitor-missing-reference", _plain("monitor", "{tmp}/nope", "--run-dir", "{tmp}/run"), ("nope",)),
    Case("monitor-reference-not-a-run", _plain("monitor", "{tmp}", "--run-dir", "{tmp}/run"),
         ("not a soxai run directory",)),
    Case("monitor-into-its-reference", _on_run("monitor", "{run}", "--run-dir", "{run}"),
         ("reference",), leaves=RUN_UNCHANGED),
    Case("monitor-bad-config", _on_run("monitor", "{run}", "{tmp}/new.yaml", "--run-dir", "{tmp}/mon",
                                       prepare=lambda r: write(r.parent / "new.yaml", "data: {sourse: cells}")),
         ("sourse",), leaves=RUN_UNCHANGED),
    Case("monitor-reference-without-concepts", _on_run("monitor", "{run}", "--run-dir", "{tmp}/mon",
                                                       prepare=_remove("concepts")),
         ("concepts",), leaves=RUN_UNCHANGED),
]
for _case in CASES:
    if _case.leaves == NOTHING:
        continue
    object.__setattr__(_case, "finished", True)


@pytest.mark.parametrize("case", params(CASES))
def test_commands__bad_run_or_option_refused_and_the_run_unchanged(case, check_case):
    check_case(case)


def test_concepts_show__gallery_goes_to_a_folder_no_stage_owns_and_the_run_is_unchanged(finished_run, tmp_path):
    from _catalogue import snapshot
    from typer.testing import CliRunner

    from soxai.cli import app
    from soxai.run_dir import owner_of

    run = shutil.copytree(finished_run, tmp_path / "run")
    before = snapshot(run)
    res = CliRunner().invoke(app, ["concepts", "show", str(run), "-1"])
    assert res.exit_code == 0, res.output
    gallery = run / "gallery" / "concept-noise.png"
    assert gallery.is_file() and owner_of(gallery) is None  # it wrote into report/ before
    after = {k: v for k, v in snapshot(run).items() if not k.startswith("gallery/")}
    assert after == before
