"""The ``soxai`` command line. Heavy imports happen inside commands, so ``--help`` is instant.

Only the commands that run a flow (run, explain, retrain, monitor, schedule) import Prefect and the ``flows`` package,
and only once they need them: Prefect's import costs about a second and its temporary server several more
(docs/OPERATIONS.md). tests/test_cli.py checks that the others never import it.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated

import typer

from soxai.errors import ConfigError, SoxaiError

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="Audit an image training set through the explanations of a model trained on it.",
)
concepts_app = typer.Typer(no_args_is_help=True, help="Inspect the concepts of a run.")
manifest_app = typer.Typer(no_args_is_help=True, help="Export the pruned training-set manifest.")
app.add_typer(concepts_app, name="concepts")
app.add_typer(manifest_app, name="manifest")

ConfigArg = Annotated[Path | None, typer.Argument(help="YAML config; none = the built-in demo")]
RunDirOpt = Annotated[Path | None, typer.Option("--run-dir", help="run directory; re-using one resumes it")]
SetOpt = Annotated[list[str] | None, typer.Option("--set", help="override a config value: a.b=value")]
RunDirArg = Annotated[Path, typer.Argument(help="a run directory (printed by `soxai run`)")]
DaskOpt = Annotated[bool, typer.Option(
    "--dask", help="saliency shards, bias tests and retrained models on a local Dask cluster (runner.local_workers)")]
DaskAddressOpt = Annotated[str | None, typer.Option(
    "--dask-address", help="the same on the Dask scheduler at this address, tcp://host:8786 (runner.address)")]
VerboseOpt = Annotated[bool, typer.Option(
    "--verbose", "-v", help="print an error's full traceback here too (it always goes to RUN/logs/error-*.log)")]


def _prefect_env() -> None:
    # The library logs to "soxai"; Prefect shows those records in the flow run's logs.
    os.environ.setdefault("PREFECT_LOGGING_EXTRA_LOGGERS", "soxai")
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("DO_NOT_TRACK", "1")
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "90")


def _early_server(held: contextlib.ExitStack, dask: bool = False):
    """Prefect's temporary server, launched now so that it starts while the command imports and reads its config
    (flows/server.py; not for ``--dask``); ``held`` stops it however the command ends."""
    _prefect_env()
    from flows import server

    early = None if dask else server.start()
    if early is not None:
        held.callback(early.stop)
    return early


def _serving(early, cfg=None):
    """The flow on the early server (flows.server.serving); not for Dask, whose workers find Prefect themselves."""
    from flows.server import serving

    return serving(early, use=cfg is None or not cfg.runner.on_dask)


def _fail(exc: BaseException, run_root: Path | None = None, verbose: bool = False, where: str | None = None) -> None:
    """End the command with one message naming the problem, the file and the fix (soxai.errors.describe_error).

    The traceback goes to ``run_root/logs/error-<time>.log`` (a temporary folder where there is no run
    directory yet, or it cannot be written), whose path is printed; to the terminal only with ``--verbose``.
    A planned error (SoxaiError) raised before a run directory exists needs no log: its message is all.
    Exit code 2 for what the user can fix (soxai's errors, OS errors, encodings, a damaged Parquet file), 1 for
    anything else (a bug).
    """
    import traceback

    from soxai.errors import describe_error

    text = "".join(traceback.format_exception(exc))
    if verbose:
        typer.echo(text, err=True)
    typer.secho(f"error: {describe_error(exc, where)}", fg=typer.colors.RED, err=True)
    if run_root is not None or not isinstance(exc, SoxaiError):
        log = _write_error_log(text, run_root)
        shown = " (--verbose prints it here)" if not verbose else ""
        typer.echo(f"traceback: {log}{shown}" if log else "traceback: could not be written to a file", err=True)
    from soxai.errors import is_bug

    raise typer.Exit(code=1 if is_bug(exc) else 2)


def _write_error_log(text: str, run_root: Path | None) -> Path | None:
    """The traceback in ``RUN/logs/error-<time>.log``, else the temporary folder (no run directory, a full
    disk, a read-only one); None where neither can be written. Never creates a run directory."""
    import sys
    import tempfile
    import time

    name = f"error-{time.strftime('%Y%m%dT%H%M%S')}-{os.getpid()}.log"
    text = f"soxai {' '.join(sys.argv[1:])}\n{time.strftime('%Y-%m-%d %H:%M:%S %z')}\n\n{text}"
    folders = [run_root / "logs"] if run_root is not None and run_root.is_dir() else []
    for folder in [*folders, Path(tempfile.gettempdir()) / "soxai-logs"]:
        try:
            folder.mkdir(parents=True, exist_ok=True)
            (folder / name).write_text(text)
            return folder / name
        except OSError:
            continue
    return None


@contextlib.contextmanager
def _boundary(run_root: Path | None, verbose: bool, where: str | None = None) -> Iterator[None]:
    """Every exception inside ends the command through _fail; Ctrl-C and typer's own exits pass."""
    try:
        yield
    except (typer.Exit, typer.Abort):
        raise
    except Exception as exc:
        _fail(exc, run_root, verbose, where or (str(run_root) if run_root else None))


class _NoPrefectTraceback(logging.Filter):
    """On the console only (Prefect's API handler, and so its UI, keep everything): a failing task's or flow's
    record without its traceback, and the flow's "Encountered exception during execution" line, which repeats
    what its "Finished in state Failed" line and soxai's error line say, not at all."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not (record.exc_info and record.name.startswith("prefect")):
            return True
        if str(record.msg).startswith("Encountered exception during execution"):
            return False
        record.exc_info, record.exc_text = None, None
        return True


@contextlib.contextmanager
def _quiet_prefect() -> Iterator[None]:
    """Prefect's console shows no traceback (~90 lines before soxai's one error line); its INFO lines stay.
    With --verbose, _fail prints the same traceback once. Prefect configures its console handler at import,
    so this follows the import."""
    handlers = [h for h in logging.getLogger().handlers if type(h).__name__ == "PrefectConsoleHandler"]
    quiet = _NoPrefectTraceback()
    for handler in handlers:
        handler.addFilter(quiet)
    try:
        yield
    finally:
        for handler in handlers:
            handler.removeFilter(quiet)


def _start(config: Path | None, run_dir: Path | None, overrides: list[str] | None):
    """The resolved config and the run directory to write (nothing written yet: the writer lock comes first)."""
    from soxai.config import load_config
    from soxai.run_dir import RunDir
    from soxai.runs import default_run_dir, resolve_paths

    if config is None and run_dir is not None and RunDir(run_dir).exists():
        # resuming: the run's own resolved config (plus any --set), not the demo defaults
        cfg = resolve_paths(load_config(RunDir(run_dir).config, overrides or []))
    else:
        cfg = resolve_paths(load_config(config, overrides or []))
    root = Path(run_dir or default_run_dir(cfg))
    _check_not_a_foreign_folder(root)
    return cfg, root


def _check_not_a_foreign_folder(root: Path) -> None:
    """Refuse a --run-dir that holds files but no run (a home folder, a data folder): soxai would write config.yaml,
    run.json and a folder per stage among them. A new or empty folder, a run's, or one holding stage folders (a run
    put together from another's stages) is fine."""
    from soxai.run_dir import RUN_FILES

    if not root.is_dir() or any((root / name).exists() for name in RUN_FILES) or any(root.glob("*/stage.json")):
        return
    found = sorted(p.name for p in root.iterdir() if p.name != "logs")
    if found:
        shown = ", ".join(found[:5]) + (f", ... ({len(found)} in all)" if len(found) > 5 else "")
        raise ConfigError(f"--run-dir {root} is not a soxai run directory but holds files ({shown}); soxai writes "
                          "config.yaml, run.json and a folder per stage into its run directory: give a new or empty "
                          "folder, or one that `soxai run` printed")


def _flow(name: str, config: Path | None, run_dir: Path | None, overrides: list[str] | None,
          dask: bool = False, dask_address: str | None = None, verbose: bool = False) -> None:
    from soxai.run_lock import writer_lock
    from soxai.runs import check_inputs, init_run

    read = config if config is not None else (run_dir / "config.yaml" if run_dir is not None else None)
    with contextlib.ExitStack() as held:
        server = _early_server(held, dask or bool(dask_address))
        with _boundary(None, verbose, str(read) if read else None):
            cfg, root = _start(config, run_dir, overrides)
            cfg = _runner(cfg, dask, dask_address)  # seconds, before any file: not at the first stage on the cluster
            check_inputs(cfg)  # a bad manifest in a second, before Prefect and the run directory
            held.enter_context(writer_lock(root))  # before config.yaml is written, until the flow has ended
            run = init_run(cfg, root)
        typer.echo(f"run directory: {run.root}")
        with _boundary(run.root, verbose):
            import flows.pipeline as flows

            chosen = getattr(flows, name)
            if cfg.runner.on_dask:
                chosen = chosen.with_options(task_runner=flows.dask_task_runner(cfg.runner))
            with _quiet_prefect(), _serving(server, cfg):
                chosen(cfg.model_dump(mode="json"), str(run.root), run_id=run.root.name)
    from soxai.report.runner import saliency_counts

    counts = saliency_counts(run)  # else maps that say nothing (all zero, constant) show only in stage.json
    if counts:
        typer.echo(counts)
    headline = _headline(run)
    if headline:
        typer.echo(headline)
    typer.echo(f"done: {run.root}")


def _runner(cfg, dask: bool, dask_address: str | None):
    """``cfg`` with the runner section that ``--dask`` / ``--dask-address`` set, its scheduler address checked."""
    from soxai.scaleout import check_dask_address, with_flags

    runner = with_flags(cfg.runner, dask, dask_address)
    if runner.address:
        check_dask_address(runner.address, source="--dask-address" if dask_address else "runner.address")
    return cfg if runner == cfg.runner else cfg.model_copy(update={"runner": runner})


def _headline(run) -> str:
    """What the run found and what the correction bought (the report's first sentence) and where the report is;
    '' where the run has not got that far."""
    from soxai.report.comparison import conflict_sentence, summary_sentence
    from soxai.report.runner import read_run

    try:
        view = read_run(run.root)
        text = summary_sentence(view)
    except (SoxaiError, FileNotFoundError, KeyError):
        return ""
    conflicts = conflict_sentence(view)
    text += f"\n{conflicts}" if conflicts else ""
    report = run.report_html
    if report.is_file() and view.stale.get("report"):
        return f"{text}\nreport (of the last retraining, before this manifest): {report}"
    return f"{text}\nreport: {report}" if report.is_file() else text


@app.command()
def run(config: ConfigArg = None, run_dir: RunDirOpt = None, set_: SetOpt = None, dask: DaskOpt = False,
        dask_address: DaskAddressOpt = None, verbose: VerboseOpt = False) -> None:
    """Run the whole pipeline as a Prefect flow (on a temporary Prefect server, ~10 s to start and launched
    first, unless PREFECT_API_URL points at a running one)."""
    _flow("pipeline", config, run_dir, set_, dask, dask_address, verbose)


@app.command()
def explain(config: Annotated[Path, typer.Argument(help="YAML config")], run_dir: RunDirOpt = None,
            set_: SetOpt = None, dask: DaskOpt = False, dask_address: DaskAddressOpt = None,
            verbose: VerboseOpt = False) -> None:
    """Run up to the pruned manifest (no retraining)."""
    _flow("explain", config, run_dir, set_, dask, dask_address, verbose)


@app.command()
def retrain(
    run_dir: RunDirArg,
    manifest: Annotated[Path | None, typer.Option(help="a manifest (sample_id, keep) to use instead")] = None,
    dask: DaskOpt = False, dask_address: DaskAddressOpt = None, verbose: VerboseOpt = False,
) -> None:
    """Retrain baseline, pruned and random-control variants, compare and report (one task per model on Dask)."""
    from soxai.run_dir import RunDir
    from soxai.run_lock import writer_lock
    from soxai.runs import init_run, load_run_config

    read = manifest if manifest is not None else run_dir / "config.yaml"
    with contextlib.ExitStack() as held:
        server = _early_server(held, dask or bool(dask_address))
        with _boundary(None, verbose, str(read)):
            run = RunDir(run_dir)
            cfg = _runner(load_run_config(run), dask, dask_address)
            held.enter_context(writer_lock(run.root))  # the user manifest rewrites the manifest stage's files
            if manifest is not None:
                from soxai.manifest.runner import use_user_manifest

                use_user_manifest(cfg, run, manifest)
            init_run(cfg, run.root)
        with _boundary(run.root, verbose):
            import flows.pipeline as flows

            chosen = flows.retrain
            if cfg.runner.on_dask:
                chosen = chosen.with_options(task_runner=flows.dask_task_runner(cfg.runner))
            with _quiet_prefect(), _serving(server, cfg):
                chosen(cfg.model_dump(mode="json"), str(run.root), run_id=run.root.name)
    typer.echo(f"done: {run.root}")


@concepts_app.command("list")
def concepts_list(run_dir: RunDirArg, verbose: VerboseOpt = False) -> None:
    """A table of the concepts: size, class, accuracy, flag and why."""
    from soxai.report.terminal import concepts_table

    with _boundary(None, verbose, str(run_dir)):
        concepts_table(run_dir)


# ignore_unknown_options: "-1" (the noise) is an id, not an option, so `soxai concepts show RUN -1` needs no "--"
@concepts_app.command("show", context_settings={"ignore_unknown_options": True})
def concepts_show(
    run_dir: RunDirArg, concept_id: Annotated[int, typer.Argument(help="concept id (-1: noise)")],
    out: Annotated[Path | None, typer.Option(
        "--out", help="gallery PNG to write; default RUN_DIR/gallery/concept-ID.png (never a stage's file)")] = None,
    verbose: VerboseOpt = False,
) -> None:
    """One concept's numbers, detector reasons and exemplars; writes a gallery image."""
    from soxai.report.terminal import concept_detail

    with _boundary(None, verbose, str(run_dir)):
        concept_detail(run_dir, concept_id, out=out)


@manifest_app.command("export")
def manifest_export(
    run_dir: RunDirArg,
    format: Annotated[str | None, typer.Option("--format", help="csv | parquet | json (default: --out's)")] = None,
    out: Annotated[Path | None, typer.Option("--out", help="file to write (default: pruned.FORMAT here)")] = None,
    verbose: VerboseOpt = False,
) -> None:
    """Write the pruned manifest (every sample with keep, reason, concept_id) in another format."""
    from soxai.manifest.export import export_manifest

    with _boundary(None, verbose, str(out) if out else None):
        path = export_manifest(run_dir, format, out)
    typer.echo(str(path))


@app.command()
def compare(run_dirs: Annotated[list[Path], typer.Argument(help="one or more run directories")],
            verbose: VerboseOpt = False) -> None:
    """Accuracy and worst-group accuracy per variant and test split, with 95% intervals."""
    from soxai.report.terminal import comparison_table

    with _boundary(None, verbose, ", ".join(map(str, run_dirs))):
        comparison_table(run_dirs)


@app.command("evaluate-saliency")
def evaluate_saliency(
    run_dir: RunDirArg,
    method: Annotated[
        list[str] | None, typer.Option("--method", help="a method to score (repeatable); default all")
    ] = None,
    n_samples: Annotated[int, typer.Option(help="images scored per method")] = 300,
    split: Annotated[list[str] | None, typer.Option("--split", help="split(s) to score; default test")] = None,
    verbose: VerboseOpt = False,
) -> None:
    """Score saliency methods on a run: mask-based localisation (when masks exist) and faithfulness."""
    from soxai.run_dir import RunDir
    from soxai.runs import load_run_config
    from soxai.saliency.evaluation import eval_paths, evaluate_saliency, format_table
    from soxai.saliency.methods import SALIENCY_METHODS

    unknown = sorted(set(method or []) - set(SALIENCY_METHODS))
    if unknown:
        _fail(SoxaiError(f"unknown method(s) {unknown}; choose from {sorted(SALIENCY_METHODS)}"))
    from soxai.run_lock import writer_lock

    with _boundary(None, verbose, str(run_dir)):
        run = RunDir(run_dir)
        cfg = load_run_config(run)
        # it reads the run's model and data and writes RUN/saliency_eval/: not while a run rewrites them
        with writer_lock(run.root):
            table = evaluate_saliency(cfg, run, list(method) if method else None, n_samples,
                                      tuple(split) if split else ("test",))
    typer.echo(format_table(table))
    typer.echo(f"written to {eval_paths(run).dir}")


@app.command()
def report(run_dir: RunDirArg, verbose: VerboseOpt = False) -> None:
    """(Re)write the HTML report of a run and print its path."""
    from soxai.report.runner import write_report
    from soxai.run_dir import RunDir
    from soxai.runs import load_run_config
    from soxai.stage import refresh_outputs

    with _boundary(None, verbose, str(run_dir)):
        run = RunDir(run_dir)
        try:
            path = write_report(load_run_config(run), run)  # the report stage's own writer, atomic
            refresh_outputs(run, "report", [path])  # so the next run finds report.html as its stage recorded it
        except FileNotFoundError:
            raise
        except OSError as exc:
            raise SoxaiError(f"could not write the report under {run.report_dir}: {exc.strerror or exc}; check "
                             f"that the folder is writable and the disk has space") from exc
    typer.echo(str(path))


@app.command()
def spectral(run_dir: RunDirArg, verbose: VerboseOpt = False) -> None:
    """The network as a whole: layer spectra, the concepts' frequency content and the surrogate formulas."""
    from soxai.report.network import network_lines
    from soxai.run_dir import RunDir
    from soxai.runs import load_run_config

    with _boundary(None, verbose, str(run_dir)):
        run = RunDir(run_dir)
        lines = network_lines(load_run_config(run), run)
    typer.echo("\n".join(lines))


@app.command()
def monitor(
    reference: Annotated[Path, typer.Argument(help="the reference run directory (its model and concepts)")],
    config: Annotated[Path | None, typer.Argument(help="YAML config of the new data; default the reference's")] = None,
    run_dir: RunDirOpt = None,
    set_: SetOpt = None,
    split: Annotated[list[str] | None, typer.Option("--split", help="split(s) of the new data; default train")] = None,
    alpha: Annotated[float, typer.Option(help="significance level of the drift tests")] = 0.01,
    verbose: VerboseOpt = False,
) -> None:
    """Score new data with a reference run's model, assign it to the reference concepts, report drift and
    list the new samples in flagged concepts (monitor/exclude.csv)."""
    from soxai.monitor.runner import check_monitor_dir, monitor_config, summary_lines
    from soxai.run_dir import RunDir
    from soxai.run_lock import writer_lock
    from soxai.runs import default_run_dir, init_run

    with contextlib.ExitStack() as held:
        server = _early_server(held)
        with _boundary(None, verbose, str(config or reference / "config.yaml")):
            reference_run = RunDir(reference)
            cfg = monitor_config(reference_run, config, set_ or [])
            default = default_run_dir(cfg)
            root = check_monitor_dir(Path(run_dir or default.with_name("monitor-" + default.name)), reference_run)
            held.enter_context(writer_lock(root))  # its own run directory; the reference is only read
            run = init_run(cfg, root)
        typer.echo(f"run directory: {run.root}")
        with _boundary(run.root, verbose):
            from flows.monitor import monitor as monitor_flow

            with _quiet_prefect(), _serving(server):  # the monitor flow never runs on Dask
                monitor_flow(cfg.model_dump(mode="json"), str(run.root), str(reference_run.root),
                             run_id=run.root.name, splits=list(split or ["train"]), alpha=alpha)
    for line in summary_lines(run):
        typer.echo(line)


@app.command()
def schedule(
    config: Annotated[Path | None, typer.Argument(help="YAML config each scheduled run reads when it starts")] = None,
    cron: Annotated[str | None, typer.Option(help='cron schedule, e.g. "0 3 * * *" (03:00 every night)')] = None,
    name: Annotated[str | None, typer.Option(help="deployment name; default the config's file name")] = None,
    flow: Annotated[str, typer.Option(help="pipeline | explain | monitor")] = "pipeline",
    runs_dir: Annotated[Path, typer.Option(help="folder that gets one run directory per scheduled run")] = Path("runs"),
    reference: Annotated[Path | None, typer.Option(help="monitor only: the reference run directory")] = None,
    set_: SetOpt = None,
    list_: Annotated[bool, typer.Option("--list", help="list the deployments and their schedules")] = False,
    delete: Annotated[str | None, typer.Option(help="delete a deployment (name or flow/name)")] = None,
    verbose: VerboseOpt = False,
) -> None:
    """Register a deployment on a cron schedule and serve it until stopped (Ctrl-C or SIGTERM: either pauses
    the deployment); --list, --delete.

    Works against Prefect's embedded server, or a server of `prefect server start` when PREFECT_API_URL
    is set (runs, schedules and artifacts then show in its UI). Keep it running as a service (systemd,
    see docs/OPERATIONS.md) so that scheduled runs happen.
    """
    _prefect_env()  # before Prefect is imported: it reads its logging settings at import
    from flows import schedule as sched

    with _boundary(None, verbose, str(config) if config else None):
        if list_:
            for line in sched.list_deployments():
                typer.echo(line)
            return
        if delete:
            typer.echo(f"deleted {sched.delete_deployment(delete)}")
            return
        if config is None or cron is None:
            raise SoxaiError("soxai schedule needs a CONFIG and --cron (or --list / --delete NAME)")
        spec = sched.deployment_spec(flow, config, cron, name, runs_dir, reference, set_ or [])
    typer.echo(f"serving deployment {spec.flow_name}/{spec.name} on cron {cron!r} ({spec.api}); Ctrl-C stops it.")
    typer.echo("To keep it running, run this command as a service (docs/OPERATIONS.md, 'Prefect's UI and "
               "scheduled runs').")
    with _boundary(None, verbose):
        sched.serve(spec)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
