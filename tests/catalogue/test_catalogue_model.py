"""Catalogue: a wrong model section or checkpoint, refused before the data stage writes (seconds, not a training run);
a training rate that diverges, stopped before the baseline is written."""

import sys
import textwrap

import pytest
from _catalogue import NO_STAGE_OUTPUT, Case, config, folder_config, image_folder, params, run_args, write

MODULE = "soxai_catalogue_usermod"
USER_MODULE = textwrap.dedent("""
    from torch import nn

    def raises(num_classes):
        raise RuntimeError("the weights server is down")

    def not_a_module(num_classes):
        return "a string"

    def no_num_classes():
        return nn.Linear(2, 2)

    def wrong_outputs(num_classes, in_channels):
        return nn.Sequential(nn.Conv2d(in_channels, 4, 3, padding=1), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                             nn.Linear(4, 7))
""")


@pytest.fixture(scope="module", autouse=True)
def user_modules(tmp_path_factory):
    folder = tmp_path_factory.mktemp("usermod")
    write(folder / f"{MODULE}.py", USER_MODULE)
    write(folder / "soxai_catalogue_broken.py", "raise RuntimeError('half-edited module')\n")
    sys.path.insert(0, str(folder))
    yield
    sys.path.remove(str(folder))


def _checkpoint(path, n_classes=3, channels=1, nan=False, fmt="torch"):
    import torch

    from soxai.config import load_config
    from soxai.models.registry import build_model

    model = build_model(load_config().model, channels, n_classes, 32, 0)
    state = model.state_dict()
    if nan:
        state = {k: v.fill_(float("nan")) if v.is_floating_point() else v for k, v in state.items()}
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(state, path)
    return path


def _set(*overrides: str, extra=""):
    return lambda ctx: run_args(config(ctx, extra), ctx, *[a for o in overrides for a in ("--set", o)])


def _with_checkpoint(make, *overrides: str):
    def args(ctx):
        path = make(ctx.tmp / "ckpt.pt")
        return _set(f"model.checkpoint={path}", *overrides)(ctx)

    return args


def _pickle_that_runs_code(path):
    import pickle

    class Boom:
        def __reduce__(self):
            return (print, ("code ran",))

    write(path, pickle.dumps({"w": Boom()}))
    return path


def _folder_with_checkpoint(n_folder_classes, n_ckpt_classes):
    def args(ctx):
        root = image_folder(ctx.tmp / "images", classes=tuple("abcdef"[:n_folder_classes]), size=32)
        ckpt = _checkpoint(ctx.tmp / "ckpt.pt", n_classes=n_ckpt_classes)
        return run_args(folder_config(ctx, root, f"model: {{checkpoint: '{ckpt}'}}"), ctx)

    return args


CASES = [
    Case("layer-unknown", _set("model.layer=features.nope"), ("model.layer", "features.nope")),
    Case("factory-module-missing", _set("model.factory=soxai_no_such_module:build"),
         ("model.factory", "soxai_no_such_module")),
    Case("factory-function-missing", _set(f"model.factory={MODULE}:nope"), ("model.factory", "nope")),
    Case("factory-raises", _set(f"model.factory={MODULE}:raises"), ("raised RuntimeError", "weights server is down")),
    Case("factory-import-fails", _set("model.factory=soxai_catalogue_broken:build"),
         ("soxai_catalogue_broken", "half-edited module")),
    Case("factory-returns-not-a-module", _set(f"model.factory={MODULE}:not_a_module"), ("model.factory", "str")),
    Case("factory-without-num-classes", _set(f"model.factory={MODULE}:no_num_classes"),
         ("model.factory", "num_classes")),
    Case("factory-wrong-output-size", _set(f"model.factory={MODULE}:wrong_outputs"), ("7", "3")),
    Case("factory-kwargs-unknown", _set(f"model.factory={MODULE}:raises", "model.kwargs={depth: 3}"),
         ("model.kwargs", "depth")),
    Case("num-classes-differs", _set("model.num_classes=5"), ("model.num_classes=5", "3 classes")),
    Case("channels-too-deep", _set("model.channels=[4, 4, 4, 4, 4, 4, 4]", "data.image_size=8"),
         ("8x8 images", "model.channels / model.depth")),
    Case("checkpoint-missing", _set("model.checkpoint=/no/such/model.pt"), ("/no/such/model.pt", "does not exist")),
    Case("checkpoint-is-a-folder", lambda ctx: _set(f"model.checkpoint={ctx.tmp}")(ctx), ("is a folder",)),
    Case("checkpoint-nan", _with_checkpoint(lambda p: _checkpoint(p, nan=True)), ("NaN or infinite",)),
    Case("checkpoint-other-classes", _with_checkpoint(lambda p: _checkpoint(p, n_classes=5)),
         ("model.checkpoint", "does not match")),
    Case("checkpoint-other-channels", _with_checkpoint(lambda p: _checkpoint(p, channels=3)),
         ("model.checkpoint", "does not match")),
    Case("checkpoint-garbage", _with_checkpoint(lambda p: write(p, b"\x00garbage" * 10)), ("ckpt.pt",)),
    Case("checkpoint-pickle-runs-code", _with_checkpoint(_pickle_that_runs_code),
         ("ckpt.pt", "Unsupported operand", "state_dict")),
    Case("checkpoint-empty-file", _with_checkpoint(lambda p: write(p, b"")), ("ckpt.pt",)),
    Case("checkpoint-other-classes-than-image-folder", _folder_with_checkpoint(2, 3),
         ("model.checkpoint", "2 class folders")),
]
for _case in CASES:
    object.__setattr__(_case, "leaves", NO_STAGE_OUTPUT)
    object.__setattr__(_case, "flow", True)

# caught after training, before the model stage writes its checkpoint: the data stage's files are whole and stay
AFTER_TRAINING = [
    Case("lr-infinite", _set("train.lr=.inf"), ("train.lr=inf",), leaves="after:data", flow=True),
    Case("lr-huge", _set("train.lr=1e12"), ("train.lr",), leaves="after:data", flow=True),
]


@pytest.mark.parametrize("case", params(CASES))
def test_model__bad_model_config_refused_before_the_data_stage(case, check_case):
    check_case(case)


@pytest.mark.parametrize("case", params(AFTER_TRAINING))
def test_model__bad_training_stopped_before_the_baseline_is_written(case, check_case):
    check_case(case)
