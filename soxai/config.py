"""The root configuration: one section per stage, loaded from YAML with ``--set`` overrides.

The defaults of :class:`Config` *are* the built-in demo (``configs/demo.yaml`` spells them out).
"""

from __future__ import annotations

import difflib
import hashlib
import json
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import yaml
from pydantic import Field, ValidationError, field_validator, model_serializer, model_validator

from soxai._base import Section
from soxai.bias.config import BiasConfig
from soxai.concepts.config import ConceptsConfig
from soxai.data.config import DataConfig
from soxai.embed.config import EmbedConfig
from soxai.errors import ConfigError
from soxai.manifest.config import ManifestConfig
from soxai.models.config import ModelConfig
from soxai.saliency.config import SaliencyConfig
from soxai.scaleout import RunnerConfig
from soxai.train.config import RetrainConfig, TrainConfig

if TYPE_CHECKING:
    from soxai.run_dir import RunDir


class Config(Section):
    """Everything a run needs. Unknown keys are errors; the resolved config goes into the run dir."""

    # the wrap serializer below would otherwise turn an infinite value into None in JSON mode (`train.lr=.inf` then
    # reached the flow as null: a validation error instead of the refusal of a bad training setting)
    model_config = {**Section.model_config, "ser_json_inf_nan": "constants"}

    name: str = Field("demo", description="a label for the run; run ids start with it")
    seed: int = Field(0, ge=0, description="seed of data generation, baseline training and UMAP")
    task: Literal["classification", "segmentation"] = Field(
        "classification", description="what the audited network does: one class per image, or one per pixel "
        "(docs/SEGMENTATION.md: per-pixel masks, model.name: unet, Seg-Grad-CAM's target, IoU / mIoU)"
    )
    data: DataConfig = Field(default_factory=DataConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    saliency: SaliencyConfig = Field(default_factory=SaliencyConfig)
    embed: EmbedConfig = Field(default_factory=EmbedConfig)
    concepts: ConceptsConfig = Field(default_factory=ConceptsConfig)
    bias: BiasConfig = Field(default_factory=BiasConfig)
    manifest: ManifestConfig = Field(default_factory=ManifestConfig)
    retrain: RetrainConfig = Field(default_factory=RetrainConfig)
    runner: RunnerConfig = Field(default_factory=RunnerConfig, description="where the stages run (soxai.scaleout)")

    @field_validator("name")
    @classmethod
    def _name_is_one_folder_name(cls, name: str) -> str:
        # The run directory is runs/<name>-<stamp>: a separator or '..' would put it elsewhere.
        bad = [c for c in ("/", "\\", "\0") if c in name]
        if not name.strip() or bad or ".." in name:
            raise ValueError(
                f"name {name!r} must be one folder name (it starts the run directory runs/<name>-<time>); "
                "no '/', '\\', '..' or empty name: set name to letters, digits, '-' or '_', e.g. name: my-audit"
            )
        return name

    @model_validator(mode="after")
    def _sections_fit_the_task(self) -> Config:
        from soxai.segmentation.config import task_errors

        errors = task_errors(self.task, self.data, self.model, self.embed, self.retrain)
        if errors:
            raise ValueError("; ".join(errors))
        return self

    @model_serializer(mode="wrap")
    def _runner_only_when_set(self, handler) -> dict[str, Any]:
        # the runner joined the config after runs existed: at its default (one process) the resolved config, and so
        # a run's config.yaml, reads as it did before
        dumped = handler(self)
        if self.runner == RunnerConfig():
            dumped.pop("runner", None)
        return dumped

    def section_hash(self, *names: str) -> str:
        """A stable hash of the named top-level sections (what a stage's output depends on).

        ``runner`` is never hashed: where a run executes does not change what it computes.
        """
        dumped = self.model_dump(mode="json")
        dumped.pop("runner", None)
        for section, fields in _NOT_HASHED.items():
            for field in fields:
                dumped[section].pop(field, None)
        # task joined the config after classification runs existed: left out at its default, a hash of every
        # section (the manifest's config_hash) stays what it was for them
        payload = json.dumps({n: dumped[n] for n in names
                              if n != "runner" and not (n == "task" and dumped[n] == "classification")},
                             sort_keys=True)
        return hashlib.sha256(payload.encode()).hexdigest()[:16]

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.model_dump(mode="json"), sort_keys=False)


# Fields that do not change what the stages reading their section produce: model.layer only picks the
# layer that explanations read, so changing it must not retrain; the stages that use it hash it themselves.
# train.num_workers only says how many processes read the images: the batches and results are the same.
# train.allow_chance_baseline only decides whether a finished baseline may be used: it trains nothing.
# retrain.processes only says how many processes train the models side by side: the same models, whose last float
# digits can depend on the torch thread count (docs/CONFIG.md), as on machines with other core counts.
_NOT_HASHED = {"model": ("layer",), "train": ("num_workers", "allow_chance_baseline"), "retrain": ("processes",)}


def _set_dotted(tree: dict[str, Any], dotted: str, value: Any) -> None:
    keys = dotted.split(".")
    node = tree
    for key in keys[:-1]:
        child = node.get(key)
        if child is None:
            child = node[key] = {}
        elif not isinstance(child, dict):
            raise ConfigError(f"--set {dotted}: {key!r} is a value, not a section")
        node = child
    node[keys[-1]] = value


def parse_overrides(overrides: Iterable[str]) -> list[tuple[str, Any]]:
    """Parse ``a.b=value`` strings; values are YAML (``3``, ``0.5``, ``null``, ``[0, 1]``)."""
    parsed = []
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"--set expects key=value (for example concepts.min_cluster_size=30), got {item!r}")
        key, raw = item.split("=", 1)
        key = key.strip()
        if not key:
            raise ConfigError(f"--set {item!r} has an empty key")
        try:
            value = yaml.safe_load(raw) if raw.strip() else None
        except yaml.YAMLError as exc:
            raise ConfigError(f"--set {key}: cannot parse value {raw!r}: {exc}") from exc
        parsed.append((key, value))
    return parsed


def _allowed_keys(model: type[Section], path: tuple[Any, ...]) -> list[str]:
    """The field names valid at a dotted path inside ``model`` (for 'did you mean')."""
    current: Any = model
    for part in path:
        fields = getattr(current, "model_fields", None)
        if not fields or part not in fields:
            return []
        annotation = fields[part].annotation
        # unwrap Optional[Section]
        candidates = [a for a in getattr(annotation, "__args__", (annotation,)) if hasattr(a, "model_fields")]
        if not candidates:
            return []
        current = candidates[0]
    return sorted(getattr(current, "model_fields", {}))


def _format_validation_error(exc: ValidationError, source: str) -> str:
    lines = [f"invalid configuration ({source}):"]
    for err in exc.errors():
        loc = tuple(err["loc"])
        dotted = ".".join(str(p) for p in loc) or "<root>"
        if err["type"] == "extra_forbidden":
            allowed = _allowed_keys(Config, loc[:-1])
            hint = difflib.get_close_matches(str(loc[-1]), allowed, n=1)
            msg = f"  {dotted}: unknown key"
            if hint:
                msg += f"; did you mean {'.'.join(str(p) for p in loc[:-1] + (hint[0],))}?"
            msg += f" (allowed here: {', '.join(allowed)})"
        elif not loc:  # a check across sections: its message names the keys, the input is the whole config
            msg = f"  {err['msg']}"
        else:
            msg = f"  {dotted}: {err['msg']} (got {err.get('input')!r})"
            if err["type"] in ("list_type", "tuple_type", "set_type"):  # a single value where a list is wanted
                msg += f"; a list is written in brackets: --set '{dotted}=[{err.get('input')}]', items comma-separated"
        lines.append(msg)
    return "\n".join(lines)


def load_config(path: str | Path | None = None, overrides: Iterable[str] = ()) -> Config:
    """Load a config from YAML (or the demo defaults when ``path`` is None) and apply overrides.

    Raises
    ------
    ConfigError
        When the file is missing or not YAML, a key is unknown, or a value is out of range;
        the message names the dotted path and what is allowed.
    """
    tree: dict[str, Any] = {}
    source = "built-in demo defaults"
    if path is not None:
        path = Path(path)
        source = str(path)
        if path.is_dir():
            raise ConfigError(f"config file {path} is a folder, not a file; pass a YAML file "
                              f"(e.g. {path / 'config.yaml'}; configs/demo.yaml is the demo's)")
        if not path.is_file():
            raise ConfigError(f"config file {path} does not exist; pass a YAML file (configs/demo.yaml is the demo's; "
                              "`soxai run` with no CONFIG runs it)")
        try:
            loaded = yaml.safe_load(path.read_text())
        except yaml.YAMLError as exc:
            raise ConfigError(f"config file {path} is not valid YAML: {exc}") from exc
        if loaded is None:
            loaded = {}
        if not isinstance(loaded, dict):
            raise ConfigError(f"config file {path} must hold a mapping of sections, got {type(loaded).__name__}")
        tree = loaded
    parsed = parse_overrides(overrides)
    for key, value in parsed:
        _set_dotted(tree, key, value)
    if parsed:
        source += " with --set " + " ".join(f"{k}={v}" for k, v in parsed)
    try:
        return Config.model_validate(tree)
    except ValidationError as exc:
        raise ConfigError(_format_validation_error(exc, source)) from None


def load_run_config(run: RunDir) -> Config:
    """The config a run directory was made with (its ``config.yaml``)."""
    run.existing()  # a mistyped path or a file: said as such
    if not run.config.is_file():
        raise ConfigError(
            f"{run.root} is not a soxai run directory (no config.yaml); pass the folder `soxai run` printed"
        )
    return load_config(run.config)
