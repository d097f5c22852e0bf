"""How a stage runs: fingerprint, skip when complete, write ``stage.json`` last.

A stage's fingerprint hashes its own config sections and the fingerprints of the stages it
reads, so changing one parameter recomputes that stage and everything downstream of it, and
nothing upstream.
"""

from __future__ import annotations

import contextvars
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
from soxai.run_dir import SCHEMA_VERSION, STAGES, RunDir, read_json, write_json

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
#   bias 3 (2026-12-06): writes bias/conflicts.parquet (the conflict test).
#   manifest 1 (2026-12-06): a prune of most of a class whose rest the baseline gets wrong keeps the class whole.
#   bias 4, manifest 2 (2026-12-06): each class's unclustered samples tested as a group (bias/unclustered.parquet);
#     the carriers of a flagged class are dropped, noise members never by membership.
#   bias 5 (2026-12-06): the transplant test's Fisher p Bonferroni-corrected over the run's concepts.
#   bias 6 (2026-12-06): statistics_transplant among the default detectors, its Fisher p Bonferroni-corrected
#     over the run's concepts and its effect-size bar 0 by default.
#   bias 7 (2026-12-06): statistics_transplant also needs the transplant's odds ratio (min_odds_ratio 8).
#   bias 8 (2026-12-06): a box or pixel flag's carriers also found by the concept's channels wherever the mark sits
#     (soxai.bias.presence; bias/carriers.parquet gains channel_score and channel_threshold).
#   manifest 3 (2026-12-06): drop_carriers also drops the carriers the concept's channels found.
#   bias 9 (2026-12-06): the channel reading nominates non-members only, and nothing where the rest of the class
#     has no spread.
#   bias 10 (2026-12-06): bias/carriers.parquet gains channel_y, channel_x (where the concept's channels are
#     strongest in each sample: augment re-centres a carrier's paste there).
#   bias 11 (2026-12-06): no place (NaN) where the concept's channels' map is flat.
#   bias 12 (2026-12-06): mutual_control groups only significant concepts whose pasted regions overlap.
#   bias 13 (2026-12-07): a conflict's reason says the reweight variant upweights it only where a flagged shortcut
#     on most of a class ties it (reason text only: flags, drops and carriers are bias 12's).
#   bias 14 (2026-12-07): a person's override also reads the concept's channels in every class-mate (its members
#     stand; class-mates the channel test accepts join them as carriers).
#   bias 15 (2026-12-07): bias/carriers.parquet gains window_y0, window_x0, window_y1, window_x1 (the pixels the
#     model's layer sees where the concept's channels are strongest: what augment pastes from a carrier).
#   bias 16 (2026-12-07): the unclustered test's carriers: its split of the class's rates is drawn again on the
#     final rates (not only on the first 8 recipients', multiples of 1/8), and samples in doubt about the new line
#     are tested on more recipients.
#   bias 17 (2026-12-07): the unclustered test's control is the clustered class-mates at the edge of their
#     concepts (lowest membership probability, as many as the unclustered samples), not every clustered sample;
#     bias/unclustered.parquet: clustered_rate becomes edge_rate, n_edge is new.
#   bias 18 (2026-12-07): the unclustered test's carrier rows fill window_* with each sample's own most salient box
#     (what augment pastes from it); flags and drops are bias 17's.
#   bias 19 (2026-12-07): the transplant test also flags a concept whose box alone moves most recipients to its
#     class (bias.transplant.majority; soxai.bias.verdict.majority_test), whatever its class-mates' control.
#   bias 20 (2026-12-08): the reasons name a class as `soxai concepts` does ("to class round", not "to class 0";
#     soxai.data.class_names.class_text); reason text only: flags, drops and carriers are bias 19's.
#   spectral 1 (2026-12-08): the surrogate's formula names each class the same way ("class round ≈ ...").
#   manifest 4 (2026-12-08): the manifest's reasons and its empty-class error name a class the same way.
LOGIC_VERSIONS: dict[str, int] = {"spectral": 1, "bias": 20, "manifest": 4, "compare": 1}


def fingerprint(stage: str, *parts: str) -> str:
    """Hash a stage name, schema version, the stage's logic version (:data:`LOGIC_VERSIONS`, if listed) and
    the given parts (config hashes, upstream fingerprints)."""
    head = [stage, SCHEMA_VERSION] + ([f"logic-{LOGIC_VERSIONS[stage]}"] if stage in LOGIC_VERSIONS else [])
    payload = json.dumps([*head, *parts])
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def file_hash(path: str | Path) -> str:
    """sha256 of a file's bytes, streamed (first 16 hex digits)."""
    return file_sha256(path)[:16]


def file_sha256(path: str | Path) -> str:
    """Full sha256 of a file's bytes, read in 1 MiB chunks so a large file never sits in memory."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def output_files(run: RunDir, outputs: Iterable[str]) -> dict[str, dict[str, Any]]:
    """Size and sha256 of every file among a stage's outputs (a folder counts as each file inside it).

    Returns ``{relative path: {"size": bytes, "sha256": hex}}`` — what ``stage.json`` records under ``files``.
    """
    files: dict[str, dict[str, Any]] = {}
    for out in outputs:
        path = run.root / out
        members = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
        for member in members:
            files[run.relative(member)] = {"size": member.stat().st_size, "sha256": file_sha256(member)}
    return files


def changed_outputs(run: RunDir, rec: dict[str, Any]) -> dict[str, str]:
    """The outputs of a complete stage that cannot be trusted any more: ``{relative path: why}``, empty when
    every output is as the stage wrote it.

    Each output must exist; each file recorded under ``files`` must have its recorded size and sha256 (the
    size is compared first, so a truncated file costs no hashing). A ``stage.json`` of an older soxai has no
    ``files``: its outputs are checked for existence only, as before (see :func:`run_stage`).
    """
    bad = {out: "is missing" for out in rec.get("outputs", []) if not (run.root / out).exists()}
    for rel, want in (rec.get("files") or {}).items():
        path = run.root / rel
        if rel in bad:
            continue
        if not path.is_file():
            bad[rel] = "is missing"
        elif (size := path.stat().st_size) != want["size"]:
            bad[rel] = f"changed since the stage wrote it (size {want['size']:,} -> {size:,} bytes)"
        elif file_sha256(path) != want["sha256"]:
            bad[rel] = "changed since the stage wrote it (same size, different content)"
    return bad


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
    _READ.set(_READ.get() + tuple(zip(stages, fps, strict=True)))  # run_stage records them in stage.json
    return fps


# the upstream fingerprints a runner read (upstream()) before it called run_stage, in this context (a Prefect task's
# thread, a Dask task): run_stage takes them as it starts, and writes those of earlier stages into its stage.json
_READ: contextvars.ContextVar[tuple[tuple[str, str], ...]] = contextvars.ContextVar("soxai_stage_reads", default=())


RETRAIN_STAGES = STAGES[STAGES.index("train"):]  # train, compare, report: what `soxai retrain` runs


def stale_retraining(run: RunDir) -> dict[str, str]:
    """``{stage: why}`` for the retraining stages (train, compare, report) computed from another version of a stage
    they read than the one in the run now.

    ``soxai explain`` with a new setting on a finished run recomputes the concepts or the manifest and leaves the last
    retraining's files: the next ``soxai run`` or ``retrain`` recomputes them (their fingerprints hash the upstream
    ones), but until then they describe another manifest. Each stage records the fingerprints it read
    (``reads`` in its ``stage.json``); a stage is stale where one of them is no longer the stage's, or where a stage
    it read is stale. A stage that has not completed, or whose ``stage.json`` predates ``reads``, is left out."""
    stale: dict[str, str] = {}
    for stage in RETRAIN_STAGES:
        reads = (read_stage(run, stage) or {}).get("reads") or {}
        why = next(filter(None, (stale.get(name) or _changed(run, name, fp) for name, fp in reads.items())), None)
        if why:  # a stage it read is stale: the same cause
            stale[stage] = why
    return stale


def _changed(run: RunDir, stage: str, fp: str) -> str | None:
    """Why ``stage`` is no longer the one whose fingerprint was ``fp``; None where it still is."""
    now = read_stage(run, stage)
    if now is None:
        return f"the {stage} stage has started again and not finished"
    if now.get("fingerprint") != fp:
        return f"the {stage} stage was recomputed with other settings at {now.get('finished_at')}"
    return None


def _matches(rec: dict[str, Any] | None, fp: str) -> bool:
    return rec is not None and rec.get("fingerprint") == fp and rec.get("schema_version") == SCHEMA_VERSION


def run_stage(
    run: RunDir,
    stage: str,
    fp: str,
    body: Callable[[], tuple[Iterable[Path], dict[str, Any]]],
) -> StageRecord:
    """Run ``body`` unless a complete ``stage.json`` with fingerprint ``fp`` exists.

    ``body`` returns (output paths, metrics). The stage's old ``stage.json`` is removed before
    ``body`` starts, so a crash in the middle never leaves a stage marked complete.

    Complete means more than "the files exist": ``stage.json`` records each output file's size and sha256
    (``files``) and reuse verifies them. A stage whose outputs changed (truncated, replaced, deleted) logs one
    warning per file, removes the untrusted files and runs again; where what it writes then differs from what
    it first wrote, every later stage recomputes too. A ``stage.json`` written before sizes and hashes were
    recorded is trusted on existence, as it was then, and gets them recorded on that reuse.
    """
    earlier = STAGES[:STAGES.index(stage)] if stage in STAGES else ()
    reads = {name: read_fp for name, read_fp in _READ.get() if name in earlier}
    _READ.set(())  # taken, reused or not: none is left for the next stage
    existing = read_stage(run, stage)
    changed = changed_outputs(run, existing) if _matches(existing, fp) else {}
    if _matches(existing, fp) and not changed:
        if "files" not in existing:
            # a stage.json of an older soxai: its outputs were checked for existence only; record their sizes
            # and hashes now, so that from this run on a change to them is found
            existing["files"] = output_files(run, existing["outputs"])
            write_json(run.stage_json(stage), existing)
            log.info("stage %s: recorded the sizes and hashes of its outputs (its stage.json had none)", stage)
        if "reads" not in existing and reads:  # an older stage.json: the fingerprint matched, so these are its reads
            existing["reads"] = reads
            write_json(run.stage_json(stage), existing)
        log.info("stage %s: up to date (fingerprint %s), nothing to do", stage, fp)
        record = StageRecord(stage, fp, True, 0.0, existing["outputs"], existing.get("metrics", {}))
        _note_run(run, record)
        return record
    if changed:
        for rel, why in changed.items():
            log.warning("stage %s: %s %s; recomputing %s", stage, rel, why, stage)
            # an untrusted file goes, so that a stage resuming from its own files (saliency shards) redoes it
            if (run.root / rel).is_file():
                (run.root / rel).unlink()
    run.stage_json(stage).unlink(missing_ok=True)
    _remove_stale_temporaries(run)
    log.info("stage %s: running (fingerprint %s)", stage, fp)
    t0 = time.perf_counter()
    outputs, metrics = body()
    seconds = round(time.perf_counter() - t0, 3)
    rel = sorted({run.relative(p) for p in outputs})
    files = output_files(run, rel)

    if changed and files != existing.get("files", files):
        _invalidate_downstream(run, stage)
    write_json(
        run.stage_json(stage),
        {
            "stage": stage,
            "fingerprint": fp,
            "schema_version": SCHEMA_VERSION,
            "finished_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "seconds": seconds,
            "outputs": rel,
            "files": files,
            "reads": reads,
            "metrics": metrics,
        },
    )
    log.info("stage %s: done in %.1f s", stage, seconds)
    record = StageRecord(stage, fp, False, seconds, rel, metrics)
    _note_run(run, record)
    return record


def _invalidate_downstream(run: RunDir, stage: str) -> None:
    """Mark every stage after ``stage`` (run order) incomplete.

    A stage recomputed because its outputs had changed keeps its fingerprint (the fingerprint hashes config and
    upstream fingerprints, not content). Where the recomputed outputs equal what the stage first wrote (a seeded
    run), later stages stay valid and are reused; where they differ, later stages were computed from other
    inputs, so they must follow.
    """
    later = STAGES[STAGES.index(stage) + 1:] if stage in STAGES else ()
    stale = [name for name in later if run.stage_json(name).is_file()]
    for name in stale:
        run.stage_json(name).unlink(missing_ok=True)
    if stale:
        log.warning("stage %s: its recomputed outputs differ from the ones it first wrote; %s will recompute",
                    stage, ", ".join(stale))


def refresh_outputs(run: RunDir, stage: str, paths: Iterable[Path]) -> None:
    """Record the new size and hash of a stage's own outputs that its writer rewrote outside a run.

    For ``soxai report``, which re-renders ``report/report.html`` with the report stage's own code: without
    this the next run would find the file changed and render it again. Does nothing where the stage has not
    completed or does not list the path.
    """
    rec = read_stage(run, stage)
    if rec is None or "files" not in rec:
        return
    rels = {run.relative(p) for p in paths} & set(rec["outputs"])
    if rels:
        rec["files"].update(output_files(run, sorted(rels)))
        write_json(run.stage_json(stage), rec)


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
