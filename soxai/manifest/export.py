"""Export the pruned manifest in the format a user's training code reads."""

from __future__ import annotations

from pathlib import Path

from soxai.errors import ConfigError, StageError
from soxai.run_dir import RunDir, check_output_path, read_parquet, write_csv, write_parquet, write_text

FORMATS = ("csv", "parquet", "json")


def export_manifest(run_dir: str | Path, fmt: str, out: str | Path) -> Path:
    """Write ``manifest/pruned.parquet`` of a run as csv, parquet or json (records) to ``out``.

    ``out`` may be anywhere but a run directory's own files (:func:`soxai.run_dir.check_output_path`); it is
    written atomically, so a failed export leaves any earlier file at ``out`` whole.
    """
    if fmt not in FORMATS:
        raise ConfigError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")
    run = RunDir(run_dir)
    if not run.pruned_parquet.is_file():
        raise StageError(f"{run.root} has no pruned manifest yet; run `soxai explain` or `soxai run` on it first")
    out = check_output_path(out, example=f"pruned.{fmt}")
    frame = read_parquet(run.pruned_parquet)
    try:
        if fmt == "csv":
            return write_csv(out, frame)
        if fmt == "parquet":
            return write_parquet(out, frame)
        return write_text(out, frame.to_json(orient="records", indent=1))
    except OSError as exc:  # a full disk, a folder that vanished: name the path, not a traceback
        raise ConfigError(f"could not write {out}: {exc.strerror or exc}; free space or choose another --out") \
            from exc
