"""Export the pruned manifest in the format a user's training code reads."""

from __future__ import annotations

from pathlib import Path

from soxai.data.class_names import read_class_names
from soxai.errors import ConfigError, StageError
from soxai.run_dir import RunDir, check_output_path, read_parquet, write_csv, write_parquet, write_text

FORMATS = ("csv", "parquet", "json")


def export_format(fmt: str | None, out: str | Path | None) -> tuple[str, Path]:
    """The format and the file of an export: ``fmt``, else the one ``out``'s suffix names (``.csv``, ``.parquet``,
    ``.json``), else csv; ``out`` defaults to ``pruned.<format>`` here. A suffix that names another format than
    ``fmt`` is refused: the file would hold one format under another's name."""
    if fmt is not None and fmt not in FORMATS:
        raise ConfigError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")
    named = Path(out).suffix.lower().lstrip(".") if out is not None else ""
    named = "parquet" if named == "pq" else named if named in FORMATS else None  # .pq: Parquet, as manifests read
    if fmt is not None and named is not None and named != fmt:
        raise ConfigError(f"--out {out} names a .{named} file but --format is {fmt}; give --out a .{fmt} name, or "
                          f"leave --format out to write {named}")
    fmt = fmt or named or "csv"
    return fmt, Path(out) if out is not None else Path(f"pruned.{fmt}")


def export_manifest(run_dir: str | Path, fmt: str | None, out: str | Path | None) -> Path:
    """Write ``manifest/pruned.parquet`` of a run as csv, parquet or json (records) to ``out``
    (:func:`export_format` reads what ``fmt`` and ``out`` leave out from each other).

    ``out`` may be anywhere but a run directory's own files (:func:`soxai.run_dir.check_output_path`); it is
    written atomically, so a failed export leaves any earlier file at ``out`` whole.
    """
    run = RunDir(run_dir).existing()
    if not run.pruned_parquet.is_file():
        raise StageError(f"{run.root} has no pruned manifest yet; run `soxai explain` or `soxai run` on it first")
    # a run's own file is refused as such, before its suffix is compared with --format
    checked = check_output_path(out, example=f"pruned.{fmt if fmt in FORMATS else 'csv'}") if out is not None else None
    fmt, out = export_format(fmt, out)
    out = checked or check_output_path(out, example=f"pruned.{fmt}")
    frame = _with_names(run, read_parquet(run.pruned_parquet))
    try:
        if fmt == "csv":
            return write_csv(out, frame)
        if fmt == "parquet":
            return write_parquet(out, frame)
        return write_text(out, frame.to_json(orient="records", indent=1))
    except OSError as exc:  # a full disk, a folder that vanished: name the path, not a traceback
        raise ConfigError(f"could not write {out}: {exc.strerror or exc}; free space or choose another --out") \
            from exc


def _with_names(run: RunDir, frame):
    """The pruned manifest with what a user's training code reads beside the label code: ``class_name`` (the data
    stage's class names) and, for a manifest or image-folder source, each row's ``path`` and ``group`` as the user
    wrote them. Those the run does not have are left out."""
    if "label" in frame.columns:
        names = read_class_names(run)
        if names and frame["label"].between(0, len(names) - 1).all():
            frame = frame.assign(class_name=[str(names[k]) for k in frame["label"]])
    if run.samples.is_file():
        samples = read_parquet(run.samples)
        extra = [c for c in ("path", "group") if c in samples.columns and c not in frame.columns
                 and samples[c].notna().any()]
        if extra:
            frame = frame.merge(samples[["sample_id", *extra]], on="sample_id", how="left", validate="one_to_one")
    return frame
