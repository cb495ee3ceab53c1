"""Tests of galaxai.models.morphology: the 37-output VGG16 / ResNet50V2 / Xception classifiers."""
from __future__ import annotations

import math

import pytest
import torch
from safetensors.torch import save_file
from torch import nn

from galaxai.config import config_from_mapping, config_to_dict
from galaxai.models.morphology import (
    ARCHITECTURES,
    GZ_COLUMNS,
    LAYOUTS,
    MorphologyClassifier,
    MorphologyConfig,
    MorphologyEnsemble,
    build_classifier,
    build_ensemble,
    gz_column_index,
    load_weights,
)


@pytest.fixture(autouse=True)
def _no_downloads(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("galaxai must never download weights")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", refuse)
    monkeypatch.setattr(torch.hub, "download_url_to_file", refuse)


def tiny(arch: str, seed: int = 0, **overrides) -> MorphologyClassifier:
    torch.manual_seed(seed)
    return build_classifier(arch, "tiny", **overrides).eval()


def test_galaxy_zoo_columns():
    assert len(GZ_COLUMNS) == 37 and len(set(GZ_COLUMNS)) == 37
    assert GZ_COLUMNS[0] == "Class1.1" and GZ_COLUMNS[-1] == "Class11.6"
    assert GZ_COLUMNS[gz_column_index("Class3.1")] == "Class3.1"
    assert [c for c in GZ_COLUMNS if c.startswith("Class8.")] == [f"Class8.{i}" for i in range(1, 8)]
    assert gz_column_index("Class3.1") == 5 and gz_column_index("Class11.3") == 33
    with pytest.raises(ValueError, match="Galaxy Zoo column"):
        gz_column_index("Class3.3")


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_forward_shape_range_and_logits(arch):
    model = tiny(arch)
    x = torch.rand(3, 3, 64, 64)
    with torch.no_grad():
        y = model(x)
        logits = model.logits(x)
    assert y.shape == (3, 37)
    assert torch.all((y >= 0) & (y <= 1))
    assert torch.allclose(torch.sigmoid(logits), y)
    leaves = [m for m in model.modules() if next(m.children(), None) is None]
    assert isinstance(leaves[-1], nn.Sigmoid)  # explain/ differentiates its input, the logit
    xg = x.clone().requires_grad_(True)
    model.logits(xg)[:, gz_column_index("Class3.1")].sum().backward()
    assert xg.grad is not None and xg.grad.abs().sum() > 0


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_activation_option(arch):
    swish, relu = tiny(arch), tiny(arch, activation="relu")
    assert any(isinstance(m, nn.SiLU) for m in swish.modules())
    assert not any(isinstance(m, nn.ReLU) for m in swish.modules())
    assert not any(isinstance(m, nn.SiLU) for m in relu.modules())
    assert not any(getattr(m, "inplace", False) for m in swish.modules())


def test_paper_width_matches_keras_parameter_counts():
    """Backbone sizes of tf.keras.applications (include_top=False), BN running stats included."""
    keras = {"vgg16": 14_714_688, "resnet50v2": 23_564_800, "xception": 20_861_480}
    for arch, expected in keras.items():
        model = build_classifier(arch, "paper")
        count = sum(p.numel() for p in model.features.parameters())
        count += sum(b.numel() for n, b in model.features.named_buffers()
                     if n.endswith(("running_mean", "running_var")))
        assert count == expected, arch
    vgg = build_classifier("vgg16", "paper")
    assert [m.out_features for m in vgg.head if isinstance(m, nn.Linear)] == [592, 296, 37]
    assert vgg.head[0].in_features == 7 * 7 * 512


def test_vgg_batchnorm_option_makes_vgg_see_dark_galaxies():
    """The CPU presets' VGG16 has batch norm (a labelled deviation), ``paper`` stays plain.

    Without it the image signal dies in the 13 unnormalised convolutions from scratch: on dark
    blob images the logits vary across inputs by ~1e-7 at init and training stays at
    predict-the-mean; with batch norm (batch statistics, as in training) by ~0.2–0.4.
    """
    def n_bn(model):
        return sum(isinstance(m, nn.BatchNorm2d) for m in model.features.modules())

    assert not MorphologyConfig.preset("paper").vgg_batchnorm
    assert n_bn(build_classifier("vgg16", "paper", width=0.0625)) == 0
    for preset in ("small", "tiny"):
        assert MorphologyConfig.preset(preset).vgg_batchnorm
    assert n_bn(tiny("vgg16")) == 13 and n_bn(tiny("vgg16", vgg_batchnorm=False)) == 0
    with pytest.raises(ValueError, match="vgg_batchnorm"):
        MorphologyConfig(vgg_batchnorm="yes")

    g = torch.Generator().manual_seed(0)
    yy, xx = torch.meshgrid(torch.arange(64.0), torch.arange(64.0), indexing="ij")
    centre = torch.rand(8, 2, generator=g) * 30 + 17
    radius = torch.rand(8, generator=g) * 6 + 2
    blobs = torch.exp(-((yy - centre[:, :1, None]) ** 2 + (xx - centre[:, 1:, None]) ** 2)
                      / (2 * radius[:, None, None] ** 2))
    x = (0.3 * blobs)[:, None].expand(8, 3, 64, 64).contiguous()  # dark, mostly-zero images
    for bn, lo, hi in ((True, 1e-2, math.inf), (False, 0.0, 1e-4)):
        model = tiny("vgg16", vgg_batchnorm=bn).train()
        with torch.no_grad():
            spread = float(model.logits(x).std(0).mean())
        assert lo < spread < hi, (bn, spread)


def test_layout_option_changes_only_strides_pools_and_eps():
    """``layout="timm"``: same modules, keys and initial weights, another ResNet/Xception function."""
    assert LAYOUTS == ("keras", "timm")
    assert all(MorphologyConfig.preset(p, a).layout == "keras"
               for p in MorphologyConfig.PRESETS for a in ARCHITECTURES)
    with pytest.raises(ValueError, match=r"layout='tf'; choose one of \('keras', 'timm'\)"):
        MorphologyConfig(layout="tf")
    with pytest.raises(ValueError, match="layout=None"):
        MorphologyConfig(architecture="resnet50v2", layout=None)
    x = torch.rand(2, 3, 65, 65, generator=torch.Generator().manual_seed(0))
    for arch in ARCHITECTURES:
        keras, timm_ = tiny(arch, image_size=65), tiny(arch, image_size=65, layout="timm")
        ks, ts = keras.state_dict(), timm_.state_dict()
        assert list(ks) == list(ts) and all(torch.equal(ks[k], ts[k]) for k in ks)
        with torch.no_grad():
            assert torch.equal(keras(x), timm_(x)) == (arch == "vgg16")  # VGG16: no effect

    def eps(model):
        return {m.eps for m in model.modules() if isinstance(m, nn.BatchNorm2d)}

    def strides(model):  # (3×3 stride, shortcut) of each ResNet block
        return [(b.conv2.stride[0], type(b.shortcut).__name__) for b in model.features
                if hasattr(b, "conv2")]

    resnet, resnet_timm = tiny("resnet50v2"), tiny("resnet50v2", layout="timm")
    assert eps(resnet) == {1.001e-5} and eps(resnet_timm) == {1e-5}
    # tiny: 2 blocks per stage; Keras strides the last block of stages 1-3, timm the first of 2-4
    assert strides(resnet) == [(1, "Conv2d"), (2, "MaxPool2d"), (1, "Conv2d"), (2, "MaxPool2d"),
                               (1, "Conv2d"), (2, "MaxPool2d"), (1, "Conv2d"), (1, "Identity")]
    assert strides(resnet_timm) == [(1, "Conv2d"), (1, "Identity"), (2, "Conv2d"), (1, "Identity"),
                                    (2, "Conv2d"), (1, "Identity"), (2, "Conv2d"), (1, "Identity")]
    assert eps(tiny("xception")) == {1e-3} and eps(tiny("xception", layout="timm")) == {1e-5}


def test_layout_round_trips_through_config_mappings():
    cfg = MorphologyConfig.preset("tiny", "xception", layout="timm")
    values = config_to_dict(cfg)
    assert values["layout"] == "timm" and config_from_mapping(MorphologyConfig, values) == cfg
    del values["layout"]  # a config written before the field existed: the Keras layout
    assert config_from_mapping(MorphologyConfig, values) == MorphologyConfig.preset(
        "tiny", "xception")


@pytest.mark.parametrize("suffix", [".pt", ".safetensors"])
def test_weights_roundtrip_from_local_file(tmp_path, suffix):
    source, target = tiny("resnet50v2", seed=1), tiny("resnet50v2", seed=2)
    x = torch.rand(2, 3, 64, 64)
    path = tmp_path / f"weights{suffix}"
    state = {k: v.contiguous() for k, v in source.state_dict().items()}
    if suffix == ".pt":
        torch.save({"state_dict": state}, path)
    else:
        save_file(state, str(path))
    with torch.no_grad():
        assert not torch.allclose(source(x), target(x))
        load_weights(target, path)
        assert torch.equal(source(x), target(x))
    built = build_classifier("resnet50v2", "tiny", weights=path).eval()
    with torch.no_grad():
        assert torch.equal(built(x), source(x))


def test_backbone_only_loading(tmp_path):
    source, target = tiny("vgg16", seed=1), tiny("vgg16", seed=2)
    state = {k: v for k, v in source.state_dict().items() if k.startswith("features.")}
    state["classifier.6.weight"] = torch.zeros(1000, 16)  # an ImageNet-style top, other shapes
    path = tmp_path / "imagenet_like.pt"
    torch.save(state, path)
    head_before = target.head[0].weight.clone()
    load_weights(target, path, backbone_only=True)
    assert torch.equal(target.features[0].weight, source.features[0].weight)
    assert torch.equal(target.head[0].weight, head_before)
    with pytest.raises(ValueError, match="unexpected key"):
        load_weights(target, path)


def test_bad_weight_files(tmp_path):
    model = tiny("xception")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_weights(model, tmp_path / "missing.pt")
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a torch file at all")
    with pytest.raises(ValueError, match="garbage.pt"):
        load_weights(model, garbage)
    bad_st = tmp_path / "garbage.safetensors"
    bad_st.write_bytes(b"\x00\x01")
    with pytest.raises(ValueError, match="garbage.safetensors"):
        load_weights(model, bad_st)
    pickled = tmp_path / "module.pt"
    torch.save(nn.Linear(2, 2), pickled)  # a pickled module is refused, never unpickled
    with pytest.raises(ValueError, match="not a plain state dict"):
        load_weights(model, pickled)
    not_dict = tmp_path / "list.pt"
    torch.save([torch.zeros(2)], not_dict)
    with pytest.raises(ValueError, match="state dict of named tensors"):
        load_weights(model, not_dict)
    other = tmp_path / "vgg.pt"
    torch.save(tiny("vgg16").state_dict(), other)
    with pytest.raises(ValueError, match="missing key"):
        load_weights(model, other)
    wider = tmp_path / "wider.pt"
    torch.save(tiny("xception", width=0.125).state_dict(), wider)
    with pytest.raises(ValueError, match="shape mismatch"):
        load_weights(model, wider)


def test_ensemble_averages_members(tmp_path):
    members = [tiny(a, seed=i) for i, a in enumerate(ARCHITECTURES)]
    ensemble = MorphologyEnsemble(members).eval()
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        expected = (members[0](x) + members[1](x) + members[2](x)) / 3
        assert torch.allclose(ensemble(x), expected)
    path = tmp_path / "xception.pt"
    torch.save(members[2].state_dict(), path)
    built = build_ensemble("tiny", weights={"xception": path}).eval()
    assert [m.config.architecture for m in built.members] == list(ARCHITECTURES)
    with torch.no_grad():
        assert torch.equal(built.members[2](x), members[2](x))
        assert built(x).shape == (2, 37)
    with pytest.raises(ValueError, match="not in"):
        build_ensemble("tiny", weights={"alexnet": path})
    with pytest.raises(ValueError, match="at least one"):
        MorphologyEnsemble([])


def test_config_and_input_errors():
    with pytest.raises(ValueError, match="architecture"):
        MorphologyConfig(architecture="resnet18")
    with pytest.raises(ValueError, match="activation"):
        MorphologyConfig(activation="gelu")
    with pytest.raises(ValueError, match="width"):
        MorphologyConfig(width=0)
    with pytest.raises(ValueError, match="preset"):
        MorphologyConfig.preset("huge")
    with pytest.raises(ValueError, match="resnet_blocks"):
        MorphologyConfig(resnet_blocks=(1, 1, 1, 1))
    model = tiny("vgg16")
    with pytest.raises(ValueError, match="64"):
        model(torch.rand(1, 3, 96, 96))
    with pytest.raises(ValueError, match="permute"):
        model(torch.rand(1, 64, 64, 3))
    assert tiny("xception")(torch.rand(1, 3, 96, 96)).shape == (1, 37)  # pooled: any size
