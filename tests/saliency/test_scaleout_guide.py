"""docs/SCALEOUT.md names commands, options and config keys a user types: each of them must exist."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

GUIDE = Path(__file__).resolve().parents[2] / "docs" / "SCALEOUT.md"


def _commands(prefix: str) -> list[str]:
    """Every line of a code block, and every inline code span, of the guide that starts with ``prefix``."""
    text = GUIDE.read_text()
    blocks = re.findall(r"^```[a-z]*\n(.*?)^```", text, flags=re.S | re.M)
    lines = [line.strip() for block in blocks for line in block.splitlines()]
    lines += re.findall(r"`([^`\n]+)`", text)
    return [line for line in lines if line.startswith(prefix + " ")]


def _options(line: str) -> set[str]:
    return set(re.findall(r"(?<![\w-])(--[a-z][a-z-]*)", line))


def test_scaleout_guide__names_soxai_commands_and_dask_commands():
    assert {c.split()[1] for c in _commands("soxai")} >= {"run"}
    assert {c.split()[1] for c in _commands("dask")} == {"scheduler", "worker"}


def test_scaleout_guide__every_soxai_option_it_names_exists():
    import typer.main

    from soxai.cli import app

    group = typer.main.get_command(app)
    missing = []
    for line in _commands("soxai"):
        name = line.split()[1]
        command = group.commands.get(name)
        if command is None:
            missing.append(f"soxai {name}")
            continue
        known = {opt for param in command.params for opt in param.opts}
        missing += [f"soxai {name} {opt}" for opt in sorted(_options(line) - known)]
    assert missing == []


@pytest.mark.parametrize("sub", ["scheduler", "worker"])
def test_scaleout_guide__every_dask_option_it_names_exists(sub):
    named = set().union(*(_options(c) for c in _commands("dask") if c.split()[1] == sub))
    helped = subprocess.run([sys.executable, "-m", "dask", sub, "--help"], capture_output=True, text=True, check=True)
    assert {opt for opt in named if opt not in helped.stdout} == set()


def test_scaleout_guide__every_config_key_it_names_exists():
    from soxai.config import Config

    keys = set(re.findall(r"`([a-z]+\.[a-z_]+)(?:[=:][^`]*)?`", GUIDE.read_text()))
    files = {"json", "yaml", "py", "md", "parquet", "npy", "csv", "html", "log"}
    checked, unknown = [], []
    for key in sorted(keys):
        section, field = key.split(".")
        if section not in Config.model_fields or field in files:
            continue  # a module or a file such as soxai.parallel or manifest.json, not a config key
        checked.append(key)
        model = Config.model_fields[section].annotation
        if field not in model.model_fields:
            unknown.append(key)
    assert unknown == []
