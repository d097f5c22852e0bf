"""How a stage runs: fingerprint, skip when complete, write ``stage.json`` last.

A stage's fingerprint hashes its own config sections and the fingerprints of the stages it
reads, so changing one parameter recomputes that stage and everything downstream of it, and
nothing upstream.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from soxai.errors import StageError
from soxai.run_dir import SCHEMA_VERSION, RunDir, read_json, write_json

log = logging.getLogger("soxai")


@dataclass(frozen=True)
class StageRecord:
    """What a runner returns: small, serialisable, safe to pass between Prefect tasks."""

    stage: str
    fingerprint: str
    reused: bool
    seconds: float
    outputs: list[str] = field(default_factory=list)
    metrics: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# The version of the code that decides what a stage writes, for the stages whose logic has changed for the
# same config and inputs since run directories were first kept: bump a stage's number with such a change, so a
# kept run directory recomputes that stage (and everything downstream) instead of reusing stale outputs. A
# stage not listed hashes as before.
#   bias 2 (2026-11-30): the carrier test checks the members' gap on its final rates too.
#   compare 1 (2026-12-06): no 95% interval (ci95 null) and no interval-based claim below 3 seeds.
LOGIC_VERSIONS: dict[str, int] = {"bias": 2, "compare": 1}


def fingerprint(stage: str, *parts: str) -> str:
    """Hash a stage name, schema version, the stage's logic version (:data:`LOGIC_VERSIONS`, if listed) and
    the given parts (config hashes, upstream fingerprints)."""
    head = [stage, SCHEMA_VERSION] + ([f"logic-{LOGIC_VERSIONS[stage]}"] if stage in LOGIC_VERSIONS else [])
    payload = json.dumps([*head, *parts])
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def file_hash(path: str | Path) -> str:
    """sha256 of a file's bytes, streamed."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()[:16]


def read_stage(run: RunDir, stage: str) -> dict[str, Any] | None:
    path = run.stage_json(stage)
    if not path.is_file():
        return None
    try:
        return read_json(path)
    except (OSError, ValueError):
        return None


def upstream(run: RunDir, *stages: str) -> list[str]:
    """Fingerprints of completed upstream stages, or a StageError naming the missing one."""
    fps = []
    for name in stages:
        rec = read_stage(run, name)
        if rec is None:
            raise StageError(
                f"stage {name!r} has not completed in {run.root}; run `soxai run` (or the flow) "
                f"on this run directory so that {name!r} runs first"
            )
        fps.append(rec["fingerprint"])
    return fps


def _complete(run: RunDir, rec: dict[str, Any] | None, fp: str) -> bool:
    if rec is None or rec.get("fingerprint") != fp or rec.get("schema_version") != SCHEMA_VERSION:
        return False
    return all((run.root / out).exists() for out in rec.get("outputs", []))


def run_stage(
    run: RunDir,
    stage: str,
    fp: str,
    body: Callable[[], tuple[Iterable[Path], dict[str, Any]]],
) -> StageRecord:
    """Run ``body`` unless a complete ``stage.json`` with fingerprint ``fp`` exists.

    ``body`` returns (output paths, metrics). The stage's old ``stage.json`` is removed before
    ``body`` starts, so a crash in the middle never leaves a stage marked complete.
    """
    existing = read_stage(run, stage)
    if _complete(run, existing, fp):
        log.info("stage %s: up to date (fingerprint %s), nothing to do", stage, fp)
        record = StageRecord(stage, fp, True, 0.0, existing["outputs"], existing.get("metrics", {}))
        _note_run(run, record)
        return record
    run.stage_json(stage).unlink(missing_ok=True)
    _remove_stale_temporaries(run)
    log.info("stage %s: running (fingerprint %s)", stage, fp)
    t0 = time.perf_counter()
    outputs, metrics = body()
    seconds = round(time.perf_counter() - t0, 3)
    rel = sorted({run.relative(p) for p in outputs})
    write_json(
        run.stage_json(stage),
        {
            "stage": stage,
            "fingerprint": fp,
            "schema_version": SCHEMA_VERSION,
            "finished_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "seconds": seconds,
            "outputs": rel,
            "metrics": metrics,
        },
    )
    log.info("stage %s: done in %.1f s", stage, seconds)
    record = StageRecord(stage, fp, False, seconds, rel, metrics)
    _note_run(run, record)
    return record


def _remove_stale_temporaries(run: RunDir) -> None:
    """Delete temporary files a killed process left behind (atomic writes name them ``.<name>.*.tmp``).

    They were never moved into place, so no reader saw them; removing them keeps a resumed run
    directory identical to an uninterrupted one. One process works on a run directory at a time.
    """
    stale = [p for p in run.root.rglob(".*.tmp") if p.is_file()]
    for path in stale:
        path.unlink(missing_ok=True)
    if stale:
        log.info("removed %d temporary file(s) left by an interrupted run", len(stale))


def _note_run(run: RunDir, record: StageRecord) -> None:
    """Record a stage's timing in run.json (status + timings of the whole run)."""
    state = read_json(run.run_json) if run.run_json.is_file() else {}
    stages = state.setdefault("stages", {})
    stages[record.stage] = {
        "fingerprint": record.fingerprint,
        "reused": record.reused,
        "seconds": record.seconds,
        "at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    }
    state["updated_at"] = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    write_json(run.run_json, state)
