"""The training recipe: optimizers, schedules, augmentations, early stopping, DataLoader workers, AMP."""

import numpy as np
import pytest
import torch

from soxai.errors import ConfigError
from soxai.models.config import ModelConfig
from soxai.models.registry import build_model
from soxai.train.config import TrainConfig
from soxai.train.loop import augment_batch, make_optimizer, make_scheduler, predict_logits, train_model

CPU = torch.device("cpu")


def _data(n=96, side=8, seed=0):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, n)
    images = rng.random((n, 1, side, side)).astype(np.float32) * 0.3
    images[labels == 1, :, : side // 2] += 0.6  # class 1 is bright on top
    return images, labels.astype(np.int64)


def _model(seed=0):
    return build_model(ModelConfig(channels=(4,), hidden=8), 1, 2, 8, seed=seed)


def _state(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


@pytest.mark.parametrize(("name", "cls"), [("adam", torch.optim.Adam), ("adamw", torch.optim.AdamW),
                                           ("sgd", torch.optim.SGD)])
def test_make_optimizer__choice_lr_and_decay(name, cls):
    opt = make_optimizer(_model(), TrainConfig(optimizer=name, lr=0.05, weight_decay=0.01, momentum=0.8))
    assert type(opt) is cls
    group = opt.param_groups[0]
    assert group["lr"] == 0.05 and group["weight_decay"] == 0.01
    assert name != "sgd" or group["momentum"] == 0.8


def test_make_scheduler__cosine_and_step_rates():
    def rates(cfg):
        opt = make_optimizer(_model(), cfg)
        sched = make_scheduler(opt, cfg)
        out = []
        for _ in range(cfg.epochs):
            out.append(opt.param_groups[0]["lr"])
            if sched is not None:
                opt.step()
                sched.step()
        return out

    assert rates(TrainConfig(epochs=3, lr=0.1)) == [0.1, 0.1, 0.1]
    cosine = rates(TrainConfig(epochs=4, lr=0.1, schedule="cosine"))
    np.testing.assert_allclose(cosine, [0.1 * (1 + np.cos(np.pi * e / 4)) / 2 for e in range(4)])
    np.testing.assert_allclose(rates(TrainConfig(epochs=5, lr=0.1, schedule="step", step_epochs=2, step_gamma=0.5)),
                               [0.1, 0.1, 0.05, 0.05, 0.025])


def test_augment_batch__flips_and_crops_are_per_sample_and_seeded():
    x = torch.arange(4 * 1 * 3 * 3, dtype=torch.float32).reshape(4, 1, 3, 3)
    before = x.clone()
    flipped = augment_batch(x, ("hflip",), 1, torch.Generator().manual_seed(0))
    assert torch.equal(x, before)  # the input is left alone
    for orig, out in zip(x, flipped, strict=True):
        assert torch.equal(out, orig) or torch.equal(out, orig.flip(-1))
    many = augment_batch(torch.rand(64, 1, 3, 3), ("vflip",), 1, torch.Generator().manual_seed(0))
    assert many.shape == (64, 1, 3, 3)
    cropped = augment_batch(x, ("crop",), 1, torch.Generator().manual_seed(3))
    again = augment_batch(x, ("crop",), 1, torch.Generator().manual_seed(3))
    assert torch.equal(cropped, again) and cropped.shape == x.shape
    for orig, out in zip(x, cropped, strict=True):
        padded = torch.nn.functional.pad(orig, (1, 1, 1, 1))
        windows = [padded[:, dy : dy + 3, dx : dx + 3] for dy in range(3) for dx in range(3)]
        assert any(torch.equal(out, w) for w in windows)


def test_train_model__early_stopping_keeps_the_best_val_epoch():
    images, labels = _data()
    rows = np.arange(64)
    val = (np.arange(64, 96), labels[64:])
    model = _model()
    seen = []

    def on_epoch(epoch, loss):
        pred = predict_logits(model, images, val[0], CPU).argmax(axis=1)
        seen.append(((pred == val[1]).mean(), _state(model)))
        model.train()

    cfg = TrainConfig(epochs=12, batch_size=16, lr=0.05, optimizer="sgd", patience=2)
    train_model(model, images, rows, labels[:64], cfg, 0, CPU, on_epoch=on_epoch, val=val)
    accs = [a for a, _ in seen]
    best = int(np.argmax(accs))
    assert len(seen) == 12 or len(seen) == best + 3  # stopped two epochs after the best one
    for key, value in model.state_dict().items():
        assert torch.equal(value, seen[best][1][key])


def test_train_model__patience_without_val_is_an_error():
    images, labels = _data(16)
    with pytest.raises(ConfigError, match="no val samples.*train.patience=null"):
        train_model(_model(), images, np.arange(16), labels, TrainConfig(patience=2), 0, CPU, val=None)


def test_train_model__amp_has_no_effect_on_cpu_and_recipe_is_seeded():
    images, labels = _data(32)
    rows = np.arange(32)
    cfg = TrainConfig(epochs=2, batch_size=8, augment=("hflip", "crop"), schedule="cosine")
    a = train_model(_model(), images, rows, labels, cfg, 0, CPU)
    b = train_model(_model(), images, rows, labels, cfg.model_copy(update={"amp": True}), 0, CPU)
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values(), strict=True))


@pytest.mark.slow
def test_train_model__spawned_workers_read_a_memmap_and_train_the_same_model(tmp_path):
    images, labels = _data(48)
    np.save(tmp_path / "images.npy", images)
    mm = np.load(tmp_path / "images.npy", mmap_mode="r")
    cfg = TrainConfig(epochs=2, batch_size=16)
    a = train_model(_model(), mm, np.arange(48), labels, cfg, 0, CPU)
    # one worker: spawning costs seconds per worker, and one already proves the memmap reopens there
    b = train_model(_model(), mm, np.arange(48), labels, cfg.model_copy(update={"num_workers": 1}), 0, CPU)
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values(), strict=True))


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_train_model__amp_on_cuda_trains():
    images, labels = _data(64)
    cuda = torch.device("cuda")
    model = train_model(_model(), images, np.arange(64), labels, TrainConfig(epochs=3, batch_size=16, amp=True),
                        0, cuda)
    assert next(model.parameters()).device.type == "cuda"
    assert all(torch.isfinite(p).all() for p in model.parameters())
    logits = predict_logits(model, images, np.arange(64), cuda)
    assert logits.shape == (64, 2) and np.isfinite(logits).all()


def test_section_hash__num_workers_does_not_retrain_but_the_recipe_does():
    from soxai.config import load_config

    base = load_config(None).section_hash("model", "train")
    assert load_config(None, ["train.num_workers=4"]).section_hash("model", "train") == base
    assert load_config(None, ["train.schedule=cosine"]).section_hash("model", "train") != base


def test_fit__channels_last_in_the_train_stage_for_built_in_models_and_train_logic_in_retrained_fingerprints(
        tiny_explained, monkeypatch):
    """The train stage's built-in architectures train channels-last (train logic 1); the model stage's, the audited
    model, does not, nor does a user's factory model (it may reshape with view). TRAIN_LOGIC is part of each retrained
    model's fingerprint and not of the model stage's, whose model it does not change."""
    import soxai.train.loop as loop
    from soxai.data.runner import read_samples
    from soxai.train import runner, variants
    from soxai.train.fit import fit

    cfg, run = tiny_explained
    asked = []

    def spy(*args, **kwargs):
        asked.append(kwargs.get("channels_last"))
        return args[0]

    monkeypatch.setattr(loop, "train_model", spy)
    train = read_samples(run).query("split == 'train'")
    rows, labels = train["row"].to_numpy()[:8], train["label"].to_numpy()[:8]
    fit(cfg, run, rows, labels, 0, "probe")  # a retrained model: the default
    fit(cfg, run, rows, labels, 0, "probe", channels_last=False)  # the model stage's
    inputs = variants.VariantInputs.__new__(variants.VariantInputs)
    inputs.__dict__.update(cfg=cfg, run=run, train=train, images=None)
    inputs.fit_mask(np.ones(len(train), dtype=bool), 1, "probe", twin=False)  # how every variant's model trains
    user = cfg.model_copy(update={"model": cfg.model.model_copy(update={"factory": "tests.models.nets:tiny"})})
    monkeypatch.setattr("soxai.train.fit.make_model", lambda *a: torch.nn.Linear(1, 1))
    fit(user, run, rows, labels, 0, "probe", channels_last=True)
    assert asked == [True, False, True, False]

    recipe = variants.VariantInputs.recipe_and_data.func  # the uncached function behind the property
    before = recipe(inputs)[0]
    stage_fp = runner.fingerprint("model", cfg.section_hash("seed", "model", "train"), *runner.upstream(run, "data"))
    assert stage_fp in (run.root / "model" / "stage.json").read_text()  # the model stage's: no train logic in it
    monkeypatch.setattr(loop, "TRAIN_LOGIC", loop.TRAIN_LOGIC + 1)
    assert recipe(inputs)[0] != before


def test_run_model__the_audited_model_trains_in_the_default_memory_format(tiny_explained, tmp_path, monkeypatch):
    import shutil

    from soxai.run_dir import RunDir
    from soxai.train import runner

    cfg, base = tiny_explained
    run = RunDir(shutil.copytree(base.root, tmp_path / "run"))
    run.stage_json("model").unlink()  # the stage runs again, on the copy
    asked = []

    class Stop(Exception):
        pass

    def spy(*args, **kwargs):
        asked.append(kwargs.get("channels_last", True))
        raise Stop

    monkeypatch.setattr(runner, "fit", spy)
    with pytest.raises(Stop):
        runner.run_model(cfg, run)
    assert asked == [False]
