"""docs/RELIABILITY.md names a test for every case; each named test must exist."""

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_every_test_named_in_reliability_doc_exists():
    text = (REPO / "docs" / "RELIABILITY.md").read_text()
    current = None
    named = []
    for ref in re.findall(r"`((?:tests/[\w/]+\.py)?::\w+)`", text):
        path, _, name = ref.partition("::")
        current = path or current
        named.append((current, name))
    assert len(named) >= 40
    missing = [f"{path}::{name}" for path, name in named
               if not re.search(rf"^(    )?def {name}\(", (REPO / path).read_text(), re.M)]
    assert not missing, f"docs/RELIABILITY.md names tests that do not exist: {missing}"
