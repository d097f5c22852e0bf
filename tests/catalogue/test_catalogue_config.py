"""Catalogue: bad config files and values, refused before any run directory is made."""

import pytest
from _catalogue import NO_STAGE_OUTPUT, Case, config, params, run_args, write

SET = "--set"


def _set(*overrides: str):
    """`soxai run --set ...` on the built-in demo: nothing but the overrides."""
    return lambda ctx: run_args(None, ctx, *[a for o in overrides for a in (SET, o)])


def _file(text: str | bytes, name: str = "config.yaml"):
    return lambda ctx: run_args(write(ctx.tmp / name, text), ctx)


def _cfg(text: str):
    return lambda ctx: run_args(config(ctx, text), ctx)


CASES = [
    # --set on the command line
    Case("set-unknown-key", _set("trian.epochs=2"), ("trian", "did you mean", "train")),
    Case("set-unknown-nested-key", _set("train.epoks=2"), ("train.epoks", "epochs")),
    Case("set-no-equals", _set("train.epochs"), ("train.epochs", "key=value")),
    Case("set-bad-type", _set("train.epochs=many"), ("train.epochs", "integer")),
    Case("set-out-of-range", _set("train.epochs=0"), ("train.epochs", "greater than")),
    Case("set-bad-choice", _set("saliency.method=gradcam++"), ("saliency.method", "integrated_gradients")),
    Case("set-unknown-source", _set("data.source=imagenet"), ("data.source", "image_folder")),
    Case("set-unknown-model", _set("model.name=vgg"), ("model.name", "small_cnn")),
    Case("set-unknown-detector", _set("bias.detectors=[nope]"), ("bias.detectors", "nope")),
    Case("set-unknown-variant", _set("retrain.variants=[baseline, magic]"), ("retrain.variants", "magic")),
    Case("set-one-seed", _set("retrain.seeds=[0]"), ("retrain.seeds", "at least 2")),
    Case("set-manifest-source-without-file", _set("data.source=manifest"), ("data.manifest",)),
    Case("set-root-without-source", _set("data.root=/tmp"), ("data.root", "data.source: image_folder")),
    Case("set-name-dotdot", _set("name=../elsewhere"), ("name", "'..'")),
    Case("set-name-slash", _set("name=a/b"), ("name", "'/'")),
    Case("set-name-empty", _set("name= "), ("name",)),
    Case("set-negative-lr", _set("train.lr=-1"), ("train.lr",)),
    Case("set-artifact-rate-above-one", _set("data.artifact.rate=2"), ("data.artifact.rate",)),
    # config files
    Case("config-missing", lambda ctx: run_args(ctx.tmp / "nope.yaml", ctx), ("nope.yaml", "does not exist")),
    Case("config-is-a-folder", lambda ctx: run_args(ctx.tmp, ctx), ("{tmp} is a folder, not a file",)),
    Case("config-bad-yaml", _file("name: [unclosed\n"), ("config.yaml", "not valid YAML")),
    Case("config-a-list", _file("- a\n- b\n"), ("config.yaml", "mapping", "list")),
    Case("config-python-tag", _file("name: !!python/object/apply:os.system ['echo hi']\n"),
         ("config.yaml", "not valid YAML")),
    Case("config-not-utf8", _file(b"name: d\xffmo\n"), ("config.yaml", "not UTF-8", "save it as UTF-8")),
    Case("config-utf16", _file("name: demo\n".encode("utf-16")), ("config.yaml", "UTF-8")),
    Case("config-unknown-section", _cfg("trainer: {epochs: 2}"), ("trainer", "train")),
    Case("config-section-not-a-mapping", _cfg("train: 5"), ("train",)),
    Case("config-missing-overrides-file", _cfg("bias: {overrides: /no/such/overrides.yaml}"),
         ("bias.overrides file /no/such/overrides.yaml does not exist",), leaves=NO_STAGE_OUTPUT, flow=True),
    Case("config-overrides-not-lists", lambda ctx: run_args(config(
        ctx, f"bias: {{overrides: '{write(ctx.tmp / 'o.yaml', 'drop: three')}'}}"), ctx),
        ("o.yaml", "'drop' must be a list of concept ids"), leaves=NO_STAGE_OUTPUT, flow=True),
    Case("config-root-and-builtin-source", _cfg("data: {source: cells, root: /tmp}"),
         ("data.root", "image_folder")),
]


@pytest.mark.parametrize("case", params(CASES))
def test_config__bad_input_refused_before_any_run_directory(case, check_case):
    check_case(case)
