"""A finished smoke run for tests and demos: every stage of ``configs/smoke.yaml``, run in-process.

The stages run directly, without Prefect (the library never imports it), in the order of
``soxai.runs.stage_runners`` (which the flows use too). A module-level cache makes repeated calls
with the same root cheap, so test modules that share a root share one run; a run left complete on disk by an earlier
process is reused too (every stage's fingerprint matches, so nothing is recomputed).
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from soxai.errors import ConfigError

_CACHE: dict[tuple[Path, tuple[str, ...]], Path] = {}

# The smoke config made smaller for the test suite: still finds the planted artifact (flagged,
# precision and recall 1 on seed 0) and retrains every variant on two seeds, in about half the time.
FAST = ("data.n_train_per_class=100", "data.n_val_per_class=20", "data.n_test_per_class=40", "train.epochs=4")


def smoke_config_path() -> Path:
    """``configs/smoke.yaml`` of the source checkout soxai is installed from (editable installs)."""
    path = Path(__file__).resolve().parents[2] / "configs" / "smoke.yaml"
    if not path.is_file():
        raise ConfigError(
            f"the smoke config is not at {path}; make_smoke_run needs a source checkout of soxai "
            "(pip install -e .) or an explicit config path"
        )
    return path


def make_smoke_run(root: str | Path, overrides: Iterable[str] = (), config: str | Path | None = None) -> Path:
    """Run the whole pipeline on the smoke config into ``root/<config name>``; return that run directory.

    Parameters
    ----------
    root : folder to hold the run (a temporary directory in tests)
    overrides : ``a.b=value`` strings applied on top of the config, as ``soxai run --set``
    config : YAML config; default ``configs/smoke.yaml``

    Returns
    -------
    The run directory, with ``run.json`` status ``completed`` and every artifact that docs/CONFIG.md lists.
    """
    from soxai.config import load_config
    from soxai.run_dir import RunDir
    from soxai.runs import resolve_paths, run_in_process

    overrides = tuple(overrides)
    key = (Path(root).resolve(), overrides)
    if key in _CACHE and RunDir(_CACHE[key]).report_html.is_file():
        return _CACHE[key]
    cfg = resolve_paths(load_config(config or smoke_config_path(), overrides))
    run = run_in_process(cfg, key[0] / cfg.name)
    _CACHE[key] = run.root
    return run.root
