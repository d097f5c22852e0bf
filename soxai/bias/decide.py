"""From detector rows (and a person's overrides) to the set of flagged concepts."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import yaml

from soxai.errors import ConfigError


def read_overrides(path: str | Path, known: set[int]) -> dict[int, bool]:
    """Read ``{drop: [ids], keep: [ids]}`` (YAML). Returns {concept_id: is_bias}.

    Raises ConfigError for a missing file, a bad shape, an id in both lists or an unknown id.
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"bias.overrides file {path} does not exist; write YAML like 'drop: [3]\\nkeep: [1]'")
    try:
        tree = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"bias.overrides file {path} is not valid YAML: {exc}") from exc
    if not isinstance(tree, dict) or set(tree) - {"drop", "keep"}:
        raise ConfigError(f"bias.overrides file {path} must be a mapping with keys 'drop' and/or 'keep'")
    out: dict[int, bool] = {}
    for key, is_bias in (("drop", True), ("keep", False)):
        ids = tree.get(key) or []
        if not isinstance(ids, list) or not all(isinstance(i, int) and not isinstance(i, bool) for i in ids):
            raise ConfigError(f"bias.overrides {path}: '{key}' must be a list of concept ids (integers)")
        for i in ids:
            if i in out:
                raise ConfigError(f"bias.overrides {path}: concept {i} is in both 'drop' and 'keep'")
            if i not in known:
                raise ConfigError(
                    f"bias.overrides {path}: concept {i} does not exist in this run; "
                    f"known concepts: {sorted(known)} (see `soxai concepts list RUN_DIR`)"
                )
            out[i] = is_bias
    return out


def flagged_concepts(scores: pd.DataFrame, min_flags: int = 1) -> dict[int, str]:
    """{concept_id: reason} of the concepts whose samples are pruned.

    A person's override (detector 'override') decides alone for its concept; otherwise a concept
    is flagged when at least ``min_flags`` detectors flag it (``bias.min_flags``; 1 = any).
    """
    out: dict[int, str] = {}
    for cid, rows in scores.groupby("concept_id", sort=True):
        override = rows[rows["detector"] == "override"]
        decisive = override if len(override) else rows[rows["is_bias"]]
        decisive = decisive[decisive["is_bias"]]
        if len(decisive) and (len(override) or len(decisive) >= min_flags):
            out[int(cid)] = "; ".join(f"{r.detector}: {r.reason}" for r in decisive.itertuples())
    return out
