"""Names in a manifest that differ only by case: two classes ``coins`` and ``Coins``, or a split ``Train`` (an
evaluation set: only ``train`` trains). Each may be meant (EMNIST's letters are classes by case), so each gets a
warning naming the rows' values and the fix, not an error."""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

from soxai.data.dataset import TRAIN_SPLIT, VAL_SPLIT

log = logging.getLogger("soxai")


def same_but_case(values: Sequence[str]) -> list[list[str]]:
    """The groups of distinct values that are equal ignoring case, each sorted; groups in sorted order."""
    groups: dict[str, set[str]] = {}
    for value in set(values):
        groups.setdefault(value.casefold(), set()).add(value)
    return sorted(sorted(group) for group in groups.values() if len(group) > 1)


def warn_near_names(manifest: Path, class_names: Sequence[str], splits: Sequence[str]) -> list[str]:
    """Log a warning for class names and split names that differ only by case; the warnings' texts."""
    counts = Counter(splits)
    texts = [f"manifest {manifest}: the classes {' and '.join(repr(n) for n in group)} differ only by case, so they "
             "are separate classes; write one spelling in the label column if they are one class"
             for group in same_but_case(class_names)]
    for split in sorted(counts):
        meant = next((s for s in (TRAIN_SPLIT, VAL_SPLIT) if split != s and split.casefold() == s), None)
        if meant:
            use = "trains on" if meant == TRAIN_SPLIT else "selects the model on"
            texts.append(f"manifest {manifest}: {counts[split]} rows have split {split!r}, which is an evaluation "
                         f"set: only {meant!r} (lower case) {use} its rows; write {meant!r} if they are meant so")
    for text in texts:
        log.warning(text)
    return texts
