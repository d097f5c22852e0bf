"""Built-in architectures, checkpoints of the user's own, and the input normalisation hook."""

import pytest
import torch
from torch import nn

from soxai.errors import ConfigError
from soxai.models.config import ModelConfig
from soxai.models.layers import resolve_layer
from soxai.models.registry import MODELS, add_input_normalization, build_model, load_checkpoint


@pytest.mark.parametrize("name", sorted(MODELS))
@pytest.mark.parametrize(("channels", "side"), [(1, 16), (3, 32), (3, 112)])
def test_builtin__logits_shape_and_gradients(name, channels, side):
    model = build_model(ModelConfig(name=name, channels=(4, 8), depth=1), channels, 5, side, seed=0)
    x = torch.rand(2, channels, side, side, requires_grad=True)
    out = model(x)
    assert out.shape == (2, 5)
    out[:, 1].sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


@pytest.mark.parametrize("name", ["resnet", "mobilenet"])
def test_builtin__seeded_and_layers_by_name(name):
    a = build_model(ModelConfig(name=name, channels=(4, 8), depth=1), 3, 3, 32, seed=7)
    b = build_model(ModelConfig(name=name, channels=(4, 8), depth=1), 3, 3, 32, seed=7)
    for (ka, va), (kb, vb) in zip(a.state_dict().items(), b.state_dict().items(), strict=True):
        assert ka == kb and torch.equal(va, vb)
    stage = "layer2" if name == "resnet" else "stage2"
    assert resolve_layer(a, stage) is dict(a.named_modules())[stage]
    with pytest.raises(ConfigError, match=stage):
        resolve_layer(a, stage + "x")


def test_resnet18_sized__parameter_count_matches_resnet18():
    # ResNet-18 (torchvision, 1000 classes) has 11,689,512 parameters; the fc for 10 classes has 5,130
    # instead of 513,000, and our 1x1 shortcuts and BN match torchvision's layout.
    model = build_model(ModelConfig(name="resnet", channels=(64, 128, 256, 512), depth=2), 3, 10, 224, seed=0)
    n = sum(p.numel() for p in model.parameters())
    assert n == 11_689_512 - 513_000 + 5_130


def test_checkpoint__user_state_dict_round_trip(tmp_path):
    cfg = ModelConfig(name="resnet", channels=(4, 8), depth=1)
    trained = build_model(cfg, 3, 3, 16, seed=1)
    torch.save(trained.state_dict(), tmp_path / "user.pt")  # a plain state dict, as users save them
    fresh = build_model(cfg, 3, 3, 16, seed=2)
    assert load_checkpoint(tmp_path / "user.pt", fresh) == {}
    x = torch.rand(4, 3, 16, 16)
    assert torch.equal(trained.eval()(x), fresh.eval()(x))


def test_checkpoint__data_parallel_prefix_and_nested_key(tmp_path):
    cfg = ModelConfig(channels=(4,), hidden=8)
    src = build_model(cfg, 1, 2, 8, seed=1)
    torch.save({"model_state_dict": {f"module.{k}": v for k, v in src.state_dict().items()}, "epoch": 3},
               tmp_path / "dp.pt")
    dst = build_model(cfg, 1, 2, 8, seed=2)
    load_checkpoint(tmp_path / "dp.pt", dst)
    assert all(torch.equal(a, b) for a, b in zip(src.state_dict().values(), dst.state_dict().values(), strict=True))


def test_checkpoint__mismatch_lists_keys_and_shapes(tmp_path):
    torch.save(build_model(ModelConfig(name="resnet", channels=(4, 8), depth=1), 3, 3, 16, 0).state_dict(),
               tmp_path / "r.pt")
    wider = build_model(ModelConfig(name="resnet", channels=(4, 16), depth=1), 3, 3, 16, 0)
    with pytest.raises(ConfigError, match=r"shape mismatches .*layer2\.0\.conv1\.weight \(8, 4, 3, 3\) vs "
                                          r"\(16, 4, 3, 3\).*model\.factory"):
        load_checkpoint(tmp_path / "r.pt", wider)
    deeper = build_model(ModelConfig(name="resnet", channels=(4, 8), depth=2), 3, 3, 16, 0)
    with pytest.raises(ConfigError, match=r"missing keys \(in the model, not in the file\): layer1\.1\.conv1"):
        load_checkpoint(tmp_path / "r.pt", deeper)
    other = build_model(ModelConfig(name="small_cnn", channels=(4,), hidden=8), 3, 3, 16, 0)
    with pytest.raises(ConfigError, match=r"unexpected keys \(in the file, not in the model\): stem\.0\.weight"):
        load_checkpoint(tmp_path / "r.pt", other)


def test_checkpoint__missing_file_and_not_a_state_dict(tmp_path):
    model = build_model(ModelConfig(channels=(4,), hidden=8), 1, 2, 8, 0)
    with pytest.raises(ConfigError, match="cannot be read.*model.checkpoint"):
        load_checkpoint(tmp_path / "nope.pt", model)
    torch.save([1, 2, 3], tmp_path / "list.pt")
    with pytest.raises(ConfigError, match="no state dict"):
        load_checkpoint(tmp_path / "list.pt", model)


def test_input_normalization__hook_normalises_and_leaves_state_dict_alone():
    model = nn.Sequential(nn.Flatten(), nn.Identity())
    keys = list(model.state_dict())
    add_input_normalization(model, [0.5, 0.25], [0.5, 0.25])
    x = torch.tensor([[[[1.0]], [[0.75]]]])
    torch.testing.assert_close(model(x), torch.tensor([[1.0, 2.0]]))
    assert list(model.state_dict()) == keys
    assert add_input_normalization(nn.Identity(), None, None)(x) is x


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_resnet_saliency__cuda_matches_cpu():
    import numpy as np

    from soxai.saliency.methods import compute_maps

    model = add_input_normalization(build_model(ModelConfig(name="resnet", channels=(8, 16), depth=1), 3, 3, 32, 0),
                                    [0.5, 0.5, 0.5], [0.25, 0.25, 0.25])
    images = np.random.default_rng(0).random((6, 3, 32, 32)).astype(np.float32)
    targets = np.array([0, 1, 2, 0, 1, 2])
    kw = {"method": "input_x_gradient", "batch_size": 4, "ig_steps": 4, "reduce": "abs_sum"}
    on_cpu = compute_maps(model, images, targets, device=torch.device("cpu"), **kw)
    on_gpu = compute_maps(model, images, targets, device=torch.device("cuda"), **kw)
    np.testing.assert_allclose(on_gpu, on_cpu, rtol=1e-3, atol=1e-5)
