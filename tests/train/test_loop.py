import numpy as np
import torch

from soxai.models.config import ModelConfig
from soxai.models.registry import build_model, load_checkpoint, save_checkpoint
from soxai.train.config import TrainConfig
from soxai.train.loop import accuracy_metrics, predict_logits, train_model


def _toy(n=64, seed=0):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, n)
    images = rng.normal(0, 0.1, (n, 1, 8, 8)).astype(np.float32)
    images[labels == 1, :, 2:6, 2:6] += 1.0
    return images, labels


def test_train_model__learns_an_easy_task_and_is_seeded():
    images, labels = _toy()
    cfg = TrainConfig(epochs=5, batch_size=16, lr=1e-2)
    rows = np.arange(len(labels))
    preds = []
    for _ in range(2):
        model = build_model(ModelConfig(channels=(4,), hidden=8), 1, 2, 8, seed=0)
        train_model(model, images, rows, labels, cfg, seed=0, device=torch.device("cpu"))
        preds.append(predict_logits(model, images, rows, torch.device("cpu")))
    assert (preds[0].argmax(1) == labels).mean() > 0.9
    np.testing.assert_array_equal(preds[0], preds[1])


def test_accuracy_metrics__worst_group_is_min_over_class_group_cells():
    m = accuracy_metrics(np.array([0, 0, 1, 0]), np.array([0, 0, 1, 1]), np.array(["a", "b", "a", "b"]))
    assert m["accuracy"] == 0.75
    assert m["worst_group_accuracy"] == 0.0 and m["group_accuracy"]["1/b"] == 0.0


def test_checkpoint__round_trip_and_refuses_code(tmp_path):
    import pytest

    from soxai.errors import SoxaiError

    model = build_model(ModelConfig(channels=(4,), hidden=8), 1, 2, 8, seed=0)
    save_checkpoint(tmp_path / "m.pt", model, {"seed": 0})
    other = build_model(ModelConfig(channels=(4,), hidden=8), 1, 2, 8, seed=1)
    assert load_checkpoint(tmp_path / "m.pt", other) == {"seed": 0}
    for a, b in zip(model.state_dict().values(), other.state_dict().values(), strict=True):
        assert torch.equal(a, b)

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    torch.save({"state_dict": Evil()}, tmp_path / "evil.pt")
    with pytest.raises(SoxaiError, match="refuses"):
        load_checkpoint(tmp_path / "evil.pt", other)
    wrong = build_model(ModelConfig(channels=(8,), hidden=8), 1, 2, 8, seed=0)
    with pytest.raises(SoxaiError, match="does not match"):
        load_checkpoint(tmp_path / "m.pt", wrong)


def test_train_model__channels_last_learns_the_same_task_seeded_and_hands_back_the_default_format():
    images, labels = _toy(n=96)
    cfg = TrainConfig(epochs=5, batch_size=16, lr=1e-2)
    rows = np.arange(len(labels))
    preds, weights = [], []
    for channels_last in (True, True, False):
        model = build_model(ModelConfig(channels=(4, 8), hidden=8), 1, 2, 8, seed=0)
        seen = []  # while training: is the second conv's input (4 channels) in the channels-last format?
        second = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)][1]
        second.register_forward_pre_hook(lambda m, a, seen=seen: seen.append(
            a[0].is_contiguous(memory_format=torch.channels_last) and not a[0].is_contiguous()) if m.training else None)
        train_model(model, images, rows, labels, cfg, seed=0, device=torch.device("cpu"), channels_last=channels_last)
        conv = [p for p in model.parameters() if p.dim() == 4]
        assert conv and all(p.is_contiguous() for p in conv)  # the default format again: saliency, checkpoints
        assert seen and all(seen) == channels_last  # the batches were channels-last while it trained, or never
        preds.append(predict_logits(model, images, rows, torch.device("cpu")))
        weights.append([p.detach().clone() for p in model.parameters()])
    assert (preds[0].argmax(1) == labels).mean() > 0.9 and (preds[2].argmax(1) == labels).mean() > 0.9
    np.testing.assert_array_equal(preds[0], preds[1])  # seeded in that format too
    assert all(torch.equal(a, b) for a, b in zip(weights[0], weights[1], strict=True))


def test_train_model__channels_last_with_early_stopping_keeps_the_best_epoch_in_the_default_format():
    images, labels = _toy(n=96)
    rows, val = np.arange(64), (np.arange(64, 96), labels[64:])
    scores = []

    def val_score(model):  # the best epoch is the second: its weights must come back, in the default format
        scores.append(len(scores))
        return [0.1, 0.9, 0.2, 0.3][len(scores) - 1]

    for channels_last in (True, False):
        model = build_model(ModelConfig(channels=(4, 8), hidden=8), 1, 2, 8, seed=0)
        states = []
        train_model(model, images, rows, labels[:64], TrainConfig(epochs=4, batch_size=16, lr=1e-2, patience=2), 0,
                    torch.device("cpu"), val=val, val_score=val_score, channels_last=channels_last,
                    on_epoch=lambda e, loss, m=model, states=states: states.append(
                        {k: v.detach().clone() for k, v in m.state_dict().items()}))
        scores.clear()
        assert all(p.is_contiguous() for p in model.parameters())
        assert len(states) == 4 and all(torch.equal(v, states[1][k]) for k, v in model.state_dict().items())
