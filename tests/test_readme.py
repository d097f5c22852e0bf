"""README.md is read in two minutes: short, and every claim in it that code can check is checked here
(its bring-your-own config block is loaded in tests/models/test_factory.py)."""

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
README = (REPO / "README.md").read_text()


def test_readme__at_most_150_lines():
    n = len(README.splitlines())
    assert n <= 150, f"README.md has {n} lines; move details to docs/ and link them"


def test_readme__test_command_is_the_one_ci_runs():
    first_block = re.search(r"```bash\n(.*?)```", README, re.S).group(1)
    commands = [line.split("#")[0].strip() for line in first_block.splitlines()]
    assert commands == ["make demo", "make test"]
    assert (REPO / ".ci" / "run").read_text().strip().splitlines()[-1] == "make test"
    makefile = (REPO / "Makefile").read_text()
    assert re.search(r"^demo: setup\n\t\$\(BIN\)/soxai run$", makefile, re.M)
    # the install without UMAP's warm-up: the tests keep a numba cache of their own (tests/conftest.py)
    assert re.search(r"^test: \$\(BIN\)/soxai\n\t.*\$\(BIN\)/pytest", makefile, re.M)


def test_readme__commands_table_names_every_command():
    from typer.main import get_command

    from soxai.cli import app

    root = get_command(app)
    names = []
    for name, cmd in root.commands.items():
        names += [f"{name} {sub}" for sub in cmd.commands] if hasattr(cmd, "commands") else [name]
    table = README.split("## Commands", 1)[1].split("\n\n", 2)[1]
    listed = re.findall(r"^\| `soxai ([a-z-]+(?: [a-z]+)?)", table, re.M)
    assert sorted(set(listed)) == sorted(names)


def test_readme__links_and_pictures_point_at_files_in_the_repository():
    targets = re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", README)
    assert any(t.startswith("docs/img/") for t in targets)  # the picture of the report
    missing = [t for t in targets if not t.startswith("http") and not (REPO / t).exists()]
    assert not missing, f"README.md links to missing files: {missing}"
    anchors = re.findall(r"\]\(#([^)]+)\)", README)
    headings = {re.sub(r"[^a-z0-9 -]", "", h.lower()).replace(" ", "-") for h in re.findall(r"^#+ (.+)$", README, re.M)}
    assert set(anchors) <= headings


def test_readme__smoke_config_seed_count_and_its_no_interval_text():
    from soxai.compare.stats import MIN_SEEDS_FOR_INTERVAL, format_summary, summarize
    from soxai.config import load_config

    n = int(re.search(r"`configs/smoke.yaml` has (\d+)\)", README).group(1))
    assert len(load_config(REPO / "configs" / "smoke.yaml").retrain.seeds) == n < MIN_SEEDS_FOR_INTERVAL
    quoted = re.search(r'say so \("(n=\d, no interval)"\)', README).group(1)
    assert format_summary(summarize([0.4, 0.6] if n == 2 else [0.5] * n)).endswith(f"({quoted})")
