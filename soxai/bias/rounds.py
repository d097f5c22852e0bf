"""The control rounds of the bias stage: test concepts again with cleaner controls.

Above the registry (soxai.bias.detectors): it runs the detectors whose entry has ``clean_control``.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from typing import Any

import numpy as np

from soxai.bias.config import BiasConfig
from soxai.bias.context import DetectorContext
from soxai.bias.detectors import CLEAN_CONTROL_DETECTORS, run_detector


def _replace_rows(rows: list[dict[str, Any]], detector: str, new: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``rows`` with the ``detector`` rows of the concepts in ``new`` replaced by those."""
    by_concept = {int(r["concept_id"]): r for r in new}
    return [by_concept.get(int(r["concept_id"]), r) if r["detector"] == detector else r for r in rows]


def clean_control_rounds(
    ctx: DetectorContext, cfg: BiasConfig, rows: list[dict[str, Any]],
    decide: Callable[[list[dict[str, Any]]], set[int]], detect: Callable[..., list[dict[str, Any]]] | None = None,
) -> list[dict[str, Any]]:
    """Test again, with cleaner controls, the concepts the stage left unflagged in a class where it flagged some
    (``clean_control``), and the concepts of a class that look like one shortcut split in parts
    (``bias.mutual_control``).

    The control of ``transplant`` and ``pixel_transplant`` is a concept's class-mates, each pasting its own
    most salient region. Where one mark is split over several concepts, each one's class-mates include the
    others, whose own region is the same mark: the control moves recipients too and hides the shortcut.

    - A mark in several places (a watermark in a random corner): one concept per place. On cells with a
      square in a random corner of 30% of class 0 the controls reached 13-20% and the weakest corner went
      unflagged. So the members of the concepts the stage flags (``decide``: the flagged set of the rows so
      far, by any detector or a person's override) are left out of their class's other controls while
      :data:`~soxai.bias.context.MIN_CONTROL` class-mates remain, and the detectors with ``clean_control`` on
      score those concepts again, until no new concept is flagged. A real concept's control changes only where
      a shortcut of its class was found.
    - One mark in one place on varied images (a corner patch on 30% of MNIST's zeros): the marked zeros
      form three concepts by their shapes, none flagged (odds ratios 3.4-6.2 under the bar of 8, since each
      control holds the other two), so there is no flag to start from. When that loop ends, the unflagged
      concepts of a class whose paste test is significant (Fisher p <= the detector's ``max_p_value``, at any
      difference) and whose pasted regions overlap, if there are two or more, are :func:`suspects`. Each is
      tested again with the others left out of its control; a row that then passes every bar replaces the old
      one (the others stay as they were), and the ``clean_control`` loop runs again. On the explain runs of the
      held-out and efficacy cases, no real concept passed this way (the highest odds ratio of a real one: 6.1).
      (Regions must overlap since bias logic 12: docs/DETECTION-METHOD.md, "The controls".)

    Terminates: each round tests a concept (or a group of suspects) again only with a set left out that it has
    not been tested with, and flagged sets only grow.

    ``detect(name, **kwargs)`` scores again (default: :func:`soxai.bias.detectors.run_detector` on ``ctx``; the
    stage passes one that tests each concept as a task of its own on a Dask cluster).

    Returns ``rows`` with the rescored concepts' rows replaced (each names what its control left out).
    """
    if detect is None:
        def detect(name: str, **kwargs: Any) -> list[dict[str, Any]]:
            return run_detector(name, ctx, cfg, **kwargs)

    redoable = tuple(name for name in CLEAN_CONTROL_DETECTORS
                     if name in cfg.detectors and getattr(cfg, name).clean_control)
    if not redoable:
        return rows
    label_of = {int(c): int(k) for c, k in zip(ctx.concepts["concept_id"], ctx.concepts["label"], strict=True)}
    tried: dict[tuple[str, int], list[int]] = {}
    tried_groups: set[tuple[frozenset[int], frozenset[int]]] = set()
    while True:
        flagged = decide(rows)
        redo: dict[str, set[int]] = {name: set() for name in redoable}
        for r in rows:
            name, cid = r["detector"], int(r["concept_id"])
            if name not in redoable or cid in flagged:
                continue
            out = sorted(c for c in flagged if label_of.get(c) == label_of.get(cid))
            if out and tried.get((name, cid)) != out:
                tried[(name, cid)] = out
                redo[name].add(cid)
        if any(redo.values()):
            for name, cids in redo.items():
                if cids:
                    rows = _replace_rows(rows, name, detect(name, left_out=frozenset(flagged), only=cids))
            continue
        if not cfg.mutual_control:
            return rows
        groups = [g for g in suspects(rows, cfg, label_of, flagged, redoable, ctx.images.shape[2:])
                  if (g, frozenset(flagged)) not in tried_groups]
        if not groups:
            return rows
        for group in groups:
            tried_groups.add((group, frozenset(flagged)))
            for name in redoable:
                again = [r for r in detect(name, left_out=frozenset(flagged), only=set(group), suspected=group)
                         if r["is_bias"]]
                for r in again:
                    others = sorted(group - {int(r["concept_id"])})
                    r["reason"] += (f"; tested with the other concepts of its class whose paste test is also "
                                    f"significant ({', '.join(map(str, others))}) left out of its control")
                rows = _replace_rows(rows, name, again)


def suspects(
    rows: list[dict[str, Any]], cfg: BiasConfig, label_of: dict[int, int], flagged: set[int],
    detectors: Collection[str], shape: tuple[int, int],
) -> list[frozenset[int]]:
    """Per class, the unflagged concepts whose row under one of ``detectors`` has Fisher p <= that detector's
    ``max_p_value`` (at any difference) and whose pasted regions share a pixel of an image of ``shape`` (H, W),
    when two or more do (see :func:`clean_control_rounds`). The rule is for one mark in one place split over
    concepts: significant concepts of a class at different places (a collar at the top, a pocket lower down) are
    not one mark, and leaving one out of the other's control only lowers a real concept's control. A concept
    whose significant rows have no region (no box, no pixels) joins no group.
    """
    by_class: dict[int, set[int]] = {}
    regions: dict[int, set[int]] = {}
    for r in rows:
        name, cid = r["detector"], int(r["concept_id"])
        p_value = r.get("p_value")
        if name in detectors and cid not in flagged and p_value is not None and np.isfinite(p_value) \
                and p_value <= getattr(cfg, name).max_p_value:
            by_class.setdefault(label_of[cid], set()).add(cid)
            regions.setdefault(cid, set()).update(_pixels(r, shape))
    groups = []
    for _, members in sorted(by_class.items()):
        groups += [g for g in _same_place(members, regions) if len(g) >= 2]
    return groups


def _pixels(row: dict[str, Any], shape: tuple[int, int]) -> set[int]:
    """The pixels (flat indices into an image of ``shape``) a region-transplant row pasted: a pixel transplant's own
    (``pixels``), or a box's (``box``, [y0, x0, y1, x1] half-open); none without either."""
    h, w = shape
    pixels, box = row.get("pixels"), row.get("box")
    if isinstance(pixels, list | tuple | np.ndarray) and len(pixels):
        return {int(i) for i in pixels}
    if isinstance(box, list | tuple | np.ndarray) and len(box) == 4:
        y0, x0, y1, x1 = (int(v) for v in box)
        ys, xs = np.mgrid[max(0, y0):min(h, y1), max(0, x0):min(w, x1)]
        return set((ys * w + xs).ravel().tolist())
    return set()


def _same_place(members: set[int], regions: dict[int, set[int]]) -> list[frozenset[int]]:
    """``members`` split into the groups whose regions share a pixel, directly or through another member (the
    connected parts of the overlap graph, in order of their smallest concept id): one mark in one place."""
    left, groups = sorted(members), []
    while left:
        group, frontier = {left[0]}, [left[0]]
        while frontier:
            a = frontier.pop()
            for b in left:
                if b not in group and regions[a] & regions[b]:
                    group.add(b)
                    frontier.append(b)
        groups.append(frozenset(group))
        left = [c for c in left if c not in group]
    return groups
