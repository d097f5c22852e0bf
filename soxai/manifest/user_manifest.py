"""A user's own manifest (``soxai retrain RUN --manifest m.csv``): read strictly, checked like the pipeline's.

The file lists ``sample_id, keep`` (CSV or Parquet). ``keep`` is read as a truth value from exactly
true/false, 1/0 or yes/no (any case); anything else is refused naming the rows, because a lenient
reading (``bool("no")`` is True) silently keeps what the user dropped. The result must leave every
class some training samples, the same guard as the manifest stage (``manifest.allow_empty_class``).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from soxai.errors import DataError

TRUE_TEXT = frozenset({"true", "1", "yes"})
FALSE_TEXT = frozenset({"false", "0", "no"})
SHOW = 5


def _where(i: int, is_csv: bool) -> str:
    # Line 1 of a CSV file is the header, so data row i sits on line i + 2.
    return f"line {i + 2}" if is_csv else f"row {i}"


def _listed(items: Sequence[str]) -> str:
    more = f", ... ({len(items)} in all)" if len(items) > SHOW else ""
    return ", ".join(items[:SHOW]) + more


def parse_keep(values: Sequence[object], path: Path, is_csv: bool) -> np.ndarray:
    """The ``keep`` column as bool of shape (n_rows,), from true/false, 1/0 or yes/no in any case.

    Raises
    ------
    DataError
        Naming the rows (CSV lines, Parquet rows) whose value is anything else, empty included.
    """
    keep = np.zeros(len(values), dtype=bool)
    bad = []
    for i, v in enumerate(values):
        if isinstance(v, (bool, np.bool_)):
            keep[i] = bool(v)
            continue
        text = str(v).strip().lower() if v is not None and not (isinstance(v, float) and np.isnan(v)) else ""
        if isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool) and v in (0, 1):
            text = str(int(v))
        if text in TRUE_TEXT:
            keep[i] = True
        elif text not in FALSE_TEXT:
            bad.append(f"{_where(i, is_csv)} ({v!r})")
    if bad:
        raise DataError(f"manifest {path}: keep must be true/false, 1/0 or yes/no (any case); got {_listed(bad)}; "
                        "fix those values")
    return keep


def _read(path: Path) -> tuple[pd.DataFrame, bool]:
    if not path.is_file():
        raise DataError(f"manifest {path} does not exist; pass a CSV or Parquet file of sample_id, keep")
    suffix = path.suffix.lower()
    if suffix not in (".csv", ".parquet", ".pq"):
        raise DataError(f"manifest {path} has suffix {path.suffix!r}; save it as .csv or .parquet")
    try:
        if suffix == ".csv":
            # Text as written: 'no' must stay 'no', and an empty cell must not become NaN -> True.
            return pd.read_csv(path, dtype=str, keep_default_na=False), True
        return pd.read_parquet(path), False
    except (ValueError, OSError, UnicodeDecodeError, pd.errors.ParserError) as exc:
        raise DataError(f"manifest {path} cannot be read as {suffix[1:]}: {exc}; check that it is a valid file") \
            from None


def read_user_manifest(path: str | Path, current: pd.DataFrame, allow_empty_class: bool = False,
                       class_names: Sequence[str] | None = None) -> pd.DataFrame:
    """``current`` (the run's ``manifest/pruned.parquet``) with ``keep`` set from the user's file.

    Parameters
    ----------
    path : the user's CSV or Parquet file with columns sample_id and keep; samples it leaves out keep
        their current decision
    current : the run's manifest, columns sample_id, split, label, keep, reason, ...
    allow_empty_class : as ``manifest.allow_empty_class``: whether the file may drop a whole class
    class_names : name of each label, for the messages

    Returns
    -------
    pandas.DataFrame
        A copy of ``current`` with ``keep`` replaced and ``reason`` 'dropped by <file name>' where the
        file drops a sample that had no reason.

    Raises
    ------
    DataError
        Naming the file and the rows: missing columns, sample_ids the run does not know or listed twice,
        keep values that are not true/false, 1/0 or yes/no, a class left without training samples.
    """
    path = Path(path)
    user, is_csv = _read(path)
    user.columns = [str(c).strip() for c in user.columns]
    missing = {"sample_id", "keep"} - set(user.columns)
    if missing:
        raise DataError(f"manifest {path} lacks column(s) {sorted(missing)} (found {list(user.columns)}); "
                        "it needs sample_id and keep")
    ids = user["sample_id"].astype(str).str.strip().tolist()
    unknown = sorted(set(ids) - set(current["sample_id"].astype(str)))
    if unknown:
        raise DataError(f"manifest {path} has {len(unknown)} sample_id(s) this run does not know, "
                        f"e.g. {unknown[:SHOW]}; use the ids of the run's manifest/pruned.csv")
    seen: dict[str, int] = {}
    twice = []
    for i, sid in enumerate(ids):
        if sid in seen:
            twice.append(f"{_where(i, is_csv)} ({sid!r}, first on {_where(seen[sid], is_csv)})")
        seen.setdefault(sid, i)
    if twice:
        raise DataError(f"manifest {path} lists sample_ids twice: {_listed(twice)}; keep one row per sample")
    keep = dict(zip(ids, parse_keep(user["keep"].tolist(), path, is_csv).tolist(), strict=True))
    merged = current.copy()
    merged["keep"] = [keep.get(s, bool(k)) for s, k in zip(merged["sample_id"].astype(str), merged["keep"],
                                                          strict=True)]
    _check_no_empty_class(merged, path, allow_empty_class, class_names)
    dropped = ~merged["keep"]
    merged.loc[dropped, "reason"] = merged.loc[dropped, "reason"].where(
        merged.loc[dropped, "reason"] != "", f"dropped by {path.name}")
    return merged


def _check_no_empty_class(merged: pd.DataFrame, path: Path, allow_empty_class: bool,
                          class_names: Sequence[str] | None) -> None:
    """The manifest stage's guard: a prune may not take every training sample of a class."""
    if allow_empty_class:
        return
    from soxai.manifest.policies import emptied_classes

    train = merged[merged["split"] == "train"]
    emptied = emptied_classes(train["label"].to_numpy(), train["keep"].to_numpy())
    if emptied:
        from soxai.data.class_names import class_text

        names = ", ".join(class_text(label, class_names or ()) for label in emptied)
        raise DataError(f"manifest {path} drops every training sample of {names}; a model cannot learn a class it "
                        "never sees: keep some of them, or set manifest.allow_empty_class=true")
