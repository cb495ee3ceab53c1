"""ImageNet backbones from torchvision and timm loaded into the morphology classifiers.

The sources are built here with random weights (never downloaded), saved to local files and
loaded; timm and torchvision compute the reference features themselves. timm's ResNetV2 and
Xception are computed exactly by ``layout="timm"`` and differently by the Keras layout.
"""
from __future__ import annotations

import warnings

import pytest
import torch
import torchvision
from safetensors.torch import save_file
from torch import nn

from galaxai.models.imagenet_weights import WEIGHT_FORMATS, ImageNetLayoutWarning
from galaxai.models.morphology import build_classifier, load_weights

timm = pytest.importorskip("timm")


def randomise(model: nn.Module, seed: int = 0) -> nn.Module:
    """Distinct random weights (He scale) and batch-norm statistics of one batch, in eval mode."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.ndim > 1:
                p.copy_(torch.randn(p.shape, generator=g) * (2 / p[0].numel()) ** 0.5)
            elif name.endswith("weight"):
                p.copy_(torch.rand(p.shape, generator=g) + 0.5)
            else:
                p.copy_(torch.randn(p.shape, generator=g) * 0.1)
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.momentum = None  # running statistics = those of the calibration batch
                m.reset_running_stats()
        model.train()(torch.rand(4, 3, 64, 64, generator=g))
    return model.eval()


def save(state: dict[str, torch.Tensor], path):
    if path.suffix == ".safetensors":
        save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    else:
        torch.save(state, path)
    return path


@pytest.fixture(scope="module")
def timm_sources(tmp_path_factory):
    """timm ``resnetv2_50`` and ``legacy_xception``, random, with their files in both formats."""
    out = {}
    for arch, name in (("resnet50v2", "resnetv2_50"), ("xception", "legacy_xception")):
        source = randomise(timm.create_model(name, pretrained=False))
        folder = tmp_path_factory.mktemp(name)
        files = {s: save(source.state_dict(), folder / f"{name}{s}")
                 for s in (".pth", ".safetensors")}
        out[arch] = source, files
    return out


def load_paper(arch: str, path, **overrides):
    """Paper-width model with relu (the source network), loaded; returns (model, warnings)."""
    model = build_classifier(arch, "paper", activation="relu", **overrides).eval()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        load_weights(model, path, backbone_only=True)
    return model, [w for w in caught if issubclass(w.category, ImageNetLayoutWarning)]


def assert_loaded_one_to_one(model: nn.Module, source: nn.Module, head: str,
                             zero_biases: int) -> None:
    """Every source backbone tensor sits in exactly one place of ours; the rest are zero biases.

    Matched by value (the random tensors are all distinct), independent of the key mapping.
    """
    ours = {k: v for k, v in model.state_dict().items()
            if k.startswith("features.") and v.is_floating_point()}
    theirs = {k: v for k, v in source.state_dict().items()
              if not k.startswith(head) and v.is_floating_point()}
    found: dict[str, str] = {}
    for k, v in theirs.items():
        hits = [o for o, w in ours.items() if w.shape == v.shape and torch.equal(w, v)]
        assert len(hits) == 1, (k, hits)
        found[hits[0]] = k
    rest = [k for k in ours if k not in found]
    assert len(rest) == zero_biases
    assert all(k.endswith(".bias") and not ours[k].any() for k in rest), rest


def assert_same(a: torch.Tensor, b: torch.Tensor) -> None:
    assert a.shape == b.shape
    torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5 * float(b.abs().max()))


def rel_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max() / b.abs().max())


@pytest.mark.parametrize("maker, name, batchnorm", [
    (torchvision.models.vgg16, "torchvision-vgg16", False),
    (torchvision.models.vgg16_bn, "torchvision-vgg16_bn", True),
    (lambda: timm.create_model("vgg16", pretrained=False), "timm-vgg16", False),
    (lambda: timm.create_model("vgg16_bn", pretrained=False), "timm-vgg16_bn", True),
])
def test_vgg16_backbones_are_exact(tmp_path, maker, name, batchnorm):
    source = maker().eval()
    randomise(source.features)  # the ImageNet top (~120M parameters) is not loaded
    path = save(source.state_dict(), tmp_path / ("w.pth" if "torch" in name else "w.safetensors"))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # an exact format loads without any warning
        model = build_classifier("vgg16", "paper", activation="relu", image_size=64,
                                 vgg_batchnorm=batchnorm, weights=path,
                                 backbone_only=True).eval()
    assert_loaded_one_to_one(model, source, WEIGHT_FORMATS[name].head_prefixes, 0)
    x = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ref = source.forward_features(x) if hasattr(source, "forward_features") \
            else source.features(x)
        assert_same(model.features(x), ref)
    with pytest.raises(ValueError, match=f"{name} weights, which need vgg_batchnorm="):
        build_classifier("vgg16", "paper", image_size=64, vgg_batchnorm=not batchnorm,
                         weights=path, backbone_only=True)


@pytest.mark.parametrize("suffix, layout", [(".pth", "keras"), (".safetensors", "timm")])
def test_timm_resnetv2_50_loads_every_tensor(timm_sources, suffix, layout):
    source, files = timm_sources["resnet50v2"]
    model, caught = load_paper("resnet50v2", files[suffix], layout=layout)
    # stem, 4 shortcut and 16 expansion convolutions have a Keras bias and no timm bias
    assert_loaded_one_to_one(model, source, "head.", zero_biases=1 + 4 + 16)
    if layout == "timm":
        assert caught == []
    else:
        assert len(caught) == 1
        message = str(caught[0].message)
        assert "stride on the first block" in message
        assert message.endswith("build the model with layout='timm' to use these weights exactly")


@pytest.mark.parametrize("suffix, layout", [(".pth", "keras"), (".safetensors", "timm")])
def test_timm_legacy_xception_loads_every_tensor(timm_sources, suffix, layout):
    source, files = timm_sources["xception"]
    model, caught = load_paper("xception", files[suffix], layout=layout)
    assert_loaded_one_to_one(model, source, "fc.", zero_biases=0)
    if layout == "timm":
        assert caught == []
    else:
        assert len(caught) == 1 and "BN eps 1e-5" in str(caught[0].message)
        assert "layout='timm' to use these weights exactly" in str(caught[0].message)


# ResNet: 32 and 64 halve evenly down to 1² / 2²; 33, 65 and 97 are odd at the strided stages.
# Xception, sizes before the four max-pools: 71 → 33, 17, 9, 5 (all odd); 64 → 29, 15, 8, 4;
# 96 → 45, 23, 12, 6; 33 → 14, 7, 4, 2. Measured max |difference|: 0 at every size.
@pytest.mark.parametrize("arch, sizes", [
    ("resnet50v2", (32, 33, 64, 65, 97)),
    ("xception", (33, 64, 71, 96)),
])
def test_timm_layout_computes_the_timm_network(timm_sources, arch, sizes):
    """``layout="timm"`` with timm's weights == timm's ``forward_features`` (bit-identical here)."""
    source, files = timm_sources[arch]
    model, caught = load_paper(arch, files[".safetensors"], layout="timm")
    assert caught == []
    gen = torch.Generator().manual_seed(4)
    with torch.no_grad():
        for size in sizes:
            x = torch.rand(2, 3, size, size, generator=gen)
            assert_same(model.features(x), source.forward_features(x))


def test_keras_layout_computes_another_resnet(timm_sources):
    source, files = timm_sources["resnet50v2"]
    model, _ = load_paper("resnet50v2", files[".safetensors"])
    gen = torch.Generator().manual_seed(2)
    with torch.no_grad():
        for size in (64, 65):  # measured: 1.0 and 0.88 of the largest timm feature
            x = torch.rand(1, 3, size, size, generator=gen)
            assert rel_diff(model.features(x), source.forward_features(x)) > 0.1


def test_keras_layout_computes_another_xception(timm_sources):
    source, files = timm_sources["xception"]
    model, _ = load_paper("xception", files[".safetensors"])
    gen = torch.Generator().manual_seed(3)
    odd = torch.rand(1, 3, 71, 71, generator=gen)  # every max-pool sees an odd size: same pads
    even = torch.rand(1, 3, 64, 64, generator=gen)  # 8² before the third pool: pads differ
    with torch.no_grad():
        # BN eps 1e-3 vs 1e-5 only (measured 0.034), then with the max-pool padding (0.54)
        assert rel_diff(model.features(odd), source.forward_features(odd)) > 1e-3
        assert rel_diff(model.features(even), source.forward_features(even)) > 0.1


def test_wrong_model_or_file_errors_name_file_format_and_fix(timm_sources, tmp_path):
    _, resnet_files = timm_sources["resnet50v2"]
    xception, _ = timm_sources["xception"]
    path = resnet_files[".pth"]
    with pytest.raises(ValueError, match=rf"{path.name} holds timm-resnetv2_50 weights for "
                                         r"architecture 'resnet50v2', not 'xception'"):
        build_classifier("xception", "paper", weights=path, backbone_only=True)
    with pytest.raises(ValueError, match="backbone without our head; pass backbone_only=True"):
        build_classifier("resnet50v2", "paper", weights=path)
    with pytest.raises(ValueError, match=r"timm-resnetv2_50 format\) does not fit the model: .*"
                                         r"shape mismatch.*'paper', layout='timm'"):
        build_classifier("resnet50v2", "small", weights=path, backbone_only=True)
    state = xception.state_dict()
    del state["block7.rep.5.running_var"]
    holed = save(state, tmp_path / "holed.safetensors")
    with pytest.raises(ValueError, match=r"holed.safetensors \(timm-legacy_xception format\) "
                                         r"does not fit the model: 1 missing key.*block7\.rep\.5"):
        build_classifier("xception", "paper", weights=holed, backbone_only=True)
    unknown = save({"encoder.conv.weight": torch.zeros(1)}, tmp_path / "unknown.pt")
    with pytest.raises(ValueError, match="unknown.pt has an unknown key layout.*timm-vgg16"):
        build_classifier("xception", "paper", weights=unknown, backbone_only=True)
    with pytest.raises(ValueError, match="source='keras'; choose 'auto' or one of"):
        build_classifier("xception", "paper", weights=unknown, source="keras")


@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_truncated_file_names_the_file(timm_sources, tmp_path, suffix):
    data = timm_sources["xception"][1][suffix].read_bytes()
    path = tmp_path / f"truncated{suffix}"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match=f"cannot read weights file .*truncated{suffix}"):
        build_classifier("xception", "paper", weights=path, backbone_only=True)
