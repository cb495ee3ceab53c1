"""Tests of the burn-in feature extractors: local VGG19 loading (never a download) and fallbacks."""
from __future__ import annotations

import warnings

import pytest
import torch
import torch.nn.functional as F

from galaxai.models import perceptual
from galaxai.models.perceptual import (
    VGG19_ENV_VAR,
    VGG19_FILENAME,
    MultiScaleFeatures,
    PixelFeatures,
    VGG19Features,
    build_perceptual,
    find_vgg19_weights,
)


@pytest.fixture(autouse=True)
def _isolated(monkeypatch, tmp_path):
    """No real hub cache, no env var, no network, and a fresh warn-once flag in every test."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    monkeypatch.delenv(VGG19_ENV_VAR, raising=False)
    monkeypatch.setattr(perceptual, "_fallback_warned", False)

    def no_download(*args, **kwargs):
        raise AssertionError("galaxai tried to download weights")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", no_download)
    monkeypatch.setattr(torch.hub, "download_url_to_file", no_download)


def _vgg_features():
    from torchvision.models import vgg19

    with torch.device("meta"):
        return vgg19(weights=None).features


@pytest.fixture(scope="module")
def fake_vgg(tmp_path_factory):
    """A fake VGG19 weights file with torchvision's ``features.*`` keys and shapes, and its state."""
    gen = torch.Generator().manual_seed(0)
    state = {}
    for key, meta in _vgg_features().state_dict().items():
        fan_in = meta[0].numel() if meta.ndim > 1 else 1
        state[f"features.{key}"] = torch.randn(meta.shape, generator=gen) * (2.0 / fan_in) ** 0.5
    path = tmp_path_factory.mktemp("vgg") / VGG19_FILENAME
    torch.save(state, path)
    reference = _vgg_features()
    reference.load_state_dict({k[len("features."):]: v for k, v in state.items()}, assign=True)
    return path, reference


def test_vgg_loads_local_file_and_matches_torchvision(fake_vgg):
    path, reference = fake_vgg
    vgg = VGG19Features(path, resize=False)
    assert vgg.backend == "vgg19"
    x = torch.rand(2, 3, 32, 32)
    out = vgg(x)
    assert out.shape == (2, 512, 2, 2)
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    with torch.no_grad():
        expected = reference.eval()[:36]((x - mean) / std)
    torch.testing.assert_close(out, expected)
    assert (out >= 0).all()  # ends with relu5_4
    assert not any(p.requires_grad for p in vgg.parameters())
    vgg.train()
    assert not vgg.training


def test_vgg_resizes_to_224_bilinearly(fake_vgg, monkeypatch):
    vgg = VGG19Features(fake_vgg[0], resize=True)
    seen = []
    vgg.features.register_forward_pre_hook(lambda m, args: seen.append(args[0].shape))
    x = torch.rand(1, 3, 80, 80)
    assert vgg(x).shape == (1, 512, 14, 14)
    assert seen == [(1, 3, 224, 224)]


def test_vgg_without_resize_and_gradient_to_input(fake_vgg):
    vgg = VGG19Features(fake_vgg[0], resize=False)
    x = torch.rand(1, 3, 48, 48, requires_grad=True)
    out = vgg(x)
    assert out.shape == (1, 512, 3, 3)
    out.sum().backward()
    assert x.grad is not None


def test_lookup_order_argument_env_and_hub_cache(fake_vgg, monkeypatch, tmp_path):
    path = fake_vgg[0]
    assert find_vgg19_weights() is None
    hub = torch.hub.get_dir()
    cached = tmp_path / "torch_home" / "hub" / "checkpoints" / VGG19_FILENAME
    assert str(cached).startswith(hub)
    cached.parent.mkdir(parents=True)
    cached.symlink_to(path)
    assert find_vgg19_weights() == cached
    monkeypatch.setenv(VGG19_ENV_VAR, str(path))
    assert find_vgg19_weights() == path
    other = tmp_path / "other.pth"
    other.symlink_to(path)
    assert find_vgg19_weights(other) == other
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        phi = build_perceptual("auto", resize=False)
    assert phi.backend == "vgg19"


def test_missing_or_bad_files_give_clear_errors(monkeypatch, tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.pth"):
        find_vgg19_weights(tmp_path / "nope.pth")
    monkeypatch.setenv(VGG19_ENV_VAR, str(tmp_path / "env.pth"))
    with pytest.raises(FileNotFoundError, match=VGG19_ENV_VAR):
        build_perceptual("auto")
    monkeypatch.delenv(VGG19_ENV_VAR)
    with pytest.raises(FileNotFoundError, match=VGG19_ENV_VAR):
        build_perceptual("vgg19")
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"not a torch file")
    with pytest.raises(ValueError, match="junk.pth"):
        VGG19Features(junk)
    wrong = tmp_path / "wrong.pth"
    torch.save({"features.0.weight": torch.zeros(3, 3, 3, 3)}, wrong)
    with pytest.raises(ValueError, match="missing"):
        VGG19Features(wrong)
    with pytest.raises(ValueError, match="unknown perceptual backend"):
        build_perceptual("resnet")


def test_auto_falls_back_and_warns_once():
    with pytest.warns(UserWarning, match=VGG19_ENV_VAR):
        phi = build_perceptual("auto")
    assert isinstance(phi, MultiScaleFeatures) and phi.backend == "multiscale"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        again = build_perceptual("auto")
        explicit = build_perceptual("multiscale")
    x = torch.rand(2, 3, 80, 80)
    torch.testing.assert_close(again(x), explicit(x))


def test_multiscale_fallback_is_fixed_and_structural():
    phi = MultiScaleFeatures(seed=0)
    assert not any(p.requires_grad for p in phi.parameters())
    x = torch.rand(2, 3, 80, 80)
    out = phi(x)
    # pixels + 2 gradients per channel + 16 random filters, at 80, 40, 20, 10
    per_pixel = 3 + 6 + 16
    assert out.shape == (2, per_pixel * (80**2 + 40**2 + 20**2 + 10**2))
    torch.testing.assert_close(out, MultiScaleFeatures(seed=0)(x))
    assert not torch.equal(out, MultiScaleFeatures(seed=1)(x))
    # a 1-px shift of a sharp square changes gradients and filter responses; a uniform offset of
    # the same pixel MSE changes only the pixels (the filters are zero-mean)
    img = torch.zeros(1, 3, 80, 80)
    img[..., 30:50, 30:50] = 0.5
    shifted = torch.roll(img, 1, dims=-1)
    offset = img + F.mse_loss(img, shifted).sqrt()
    torch.testing.assert_close(F.mse_loss(img, offset), F.mse_loss(img, shifted))
    assert F.mse_loss(phi(img), phi(shifted)) > 1.2 * F.mse_loss(phi(img), phi(offset))
    assert F.mse_loss(phi(img), phi(img)) == 0
    y = img.clone().requires_grad_(True)
    F.mse_loss(phi(y), phi(shifted)).backward()
    assert y.grad.abs().sum() > 0


def test_pixel_backend():
    phi = build_perceptual("pixel")
    assert isinstance(phi, PixelFeatures) and phi.backend == "pixel"
    x = torch.rand(2, 3, 8, 8)
    assert torch.equal(phi(x), x.flatten(1))
