"""Keras application ImageNet weight files (HDF5) loaded into the morphology classifiers.

No Keras here: the files are written by an independent writer that follows the Keras HDF5
weights format (``save_weights_to_hdf5_group``: root ``layer_names``, one group per layer in
name order with ``weight_names``, trainable weights before non-trainable ones) and the layer
names, kinds and shapes of the Keras application code (``vgg16.py``, ``resnet.py`` /
``resnet_v2.py`` ``stack2``/``block2``, ``xception.py``), with a distinct random value for every
weight. Which of our modules takes which Keras layer is derived here from the modules
themselves, not from the loader's key maps. The writer's weight counts are checked against the
Keras ``model.summary()`` totals of the applications.
"""
from __future__ import annotations

import sys
import warnings

import numpy as np
import pytest
import torch
from torch import nn

from galaxai.models.imagenet_weights import ImageNetLayoutWarning
from galaxai.models.morphology import (
    PreActBottleneck,
    SeparableConv2d,
    XceptionBlock,
    XceptionMiddleBlock,
    build_classifier,
)

h5py = pytest.importorskip("h5py")

# Keras ``model.summary()`` of the applications: total and non-trainable (batch-norm moving
# statistics) parameters; include_top=False except the ResNet50V2 file, written with its top
# (the Keras documentation's 25.6M).
PUBLISHED = {"vgg16": (14_714_688, 0), "resnet50v2": (25_613_800, 45_440),
             "xception": (20_861_480, 54_528)}
BN = ("gamma", "beta", "moving_mean", "moving_variance")


def conv(name, k, c_in, c_out, bias=True):
    return name, [("kernel", (k, k, c_in, c_out))] + ([("bias", (c_out,))] if bias else [])


def sep(name, c_in, c_out):
    return name, [("depthwise_kernel", (3, 3, c_in, 1)), ("pointwise_kernel", (1, 1, c_in, c_out))]


def bn(name, c):
    return name, [(w, (c,)) for w in BN]


def plain(name):
    return name, []


def keras_vgg16():
    layers, c_in = [plain("input_1")], 3
    for b, (n, filters) in enumerate(zip((2, 2, 3, 3, 3), (64, 128, 256, 512, 512)), start=1):
        for k in range(1, n + 1):
            layers.append(conv(f"block{b}_conv{k}", 3, c_in, filters))
            c_in = filters
        layers.append(plain(f"block{b}_pool"))
    return layers


def keras_resnet50v2():
    """ResNet50V2 with its ImageNet top (avg_pool, predictions)."""
    layers = [plain("input_1"), plain("conv1_pad"), conv("conv1_conv", 7, 3, 64),
              plain("pool1_pad"), plain("pool1_pool")]
    c_in = 64
    for stack, filters, blocks in (("conv2", 64, 3), ("conv3", 128, 4), ("conv4", 256, 6),
                                   ("conv5", 512, 3)):
        for i in range(1, blocks + 1):
            p = f"{stack}_block{i}"
            layers += [bn(f"{p}_preact_bn", c_in), plain(f"{p}_preact_relu")]
            if i == 1:
                layers.append(conv(f"{p}_0_conv", 1, c_in, 4 * filters))
            layers += [conv(f"{p}_1_conv", 1, c_in, filters, bias=False), bn(f"{p}_1_bn", filters),
                       plain(f"{p}_1_relu"), plain(f"{p}_2_pad"),
                       conv(f"{p}_2_conv", 3, filters, filters, bias=False),
                       bn(f"{p}_2_bn", filters), plain(f"{p}_2_relu"),
                       conv(f"{p}_3_conv", 1, filters, 4 * filters), plain(f"{p}_out")]
            c_in = 4 * filters
    return layers + [bn("post_bn", c_in), plain("post_relu"), plain("avg_pool"),
                     ("predictions", [("kernel", (c_in, 1000)), ("bias", (1000,))])]


def counter(base, k):
    """Keras's k-th default name in a TensorFlow 2 session: conv2d, conv2d_1, conv2d_2, ..."""
    return base if k == 1 else f"{base}_{k - 1}"


def keras_xception():
    """Xception in ``model.layers`` order (the shortcuts after their block's second BN)."""
    layers = [plain("input_1"), conv("block1_conv1", 3, 3, 32, bias=False),
              bn("block1_conv1_bn", 32), plain("block1_conv1_act"),
              conv("block1_conv2", 3, 32, 64, bias=False), bn("block1_conv2_bn", 64),
              plain("block1_conv2_act")]
    adds = iter(range(1, 13))
    for m, (n, c_in, c_mid, c_out) in enumerate(
            ((2, 64, 128, 128), (3, 128, 256, 256), (4, 256, 728, 728), (13, 728, 728, 1024)),
            start=1):
        if n == 13:  # the middle flow, blocks 5-12
            for b in range(5, 13):
                for k in (1, 2, 3):
                    layers += [plain(f"block{b}_sepconv{k}_act"),
                               sep(f"block{b}_sepconv{k}", 728, 728),
                               bn(f"block{b}_sepconv{k}_bn", 728)]
                layers.append(plain(counter("add", next(adds))))
        layers += [] if n == 2 else [plain(f"block{n}_sepconv1_act")]
        layers += [sep(f"block{n}_sepconv1", c_in, c_mid), bn(f"block{n}_sepconv1_bn", c_mid),
                   plain(f"block{n}_sepconv2_act"), sep(f"block{n}_sepconv2", c_mid, c_out),
                   bn(f"block{n}_sepconv2_bn", c_out),
                   conv(counter("conv2d", m), 1, c_in, c_out, bias=False),
                   plain(f"block{n}_pool"), bn(counter("batch_normalization", m), c_out),
                   plain(counter("add", next(adds)))]
    for k, (c_in, c_out) in enumerate(((1024, 1536), (1536, 2048)), start=1):
        layers += [sep(f"block14_sepconv{k}", c_in, c_out), bn(f"block14_sepconv{k}_bn", c_out),
                   plain(f"block14_sepconv{k}_act")]
    return layers


LAYERS = {"vgg16": keras_vgg16, "resnet50v2": keras_resnet50v2, "xception": keras_xception}


def keras1_name(layer, weight):
    """Dataset names of the Keras 1 VGG16 file: ``block1_conv1_W_1:0``, ``block1_conv1_b_1:0``."""
    return f"{layer}_{'W' if weight == 'kernel' else 'b'}_1:0"


def keras2_name(layer, weight):
    return f"{layer}/{weight}:0"


def write_keras_h5(path, layers, dataset_name=keras2_name, chunks=1, seed=0, backend="tensorflow"):
    """A Keras HDF5 weights file; returns ``{(layer, weight): array}``."""
    rng = np.random.default_rng(seed)
    arrays = {}
    names = [name.encode("utf8") for name, _ in layers]
    with h5py.File(path, "w") as f:
        if chunks == 1:
            f.attrs["layer_names"] = names
        else:  # as Keras splits an attribute too large for an HDF5 object header
            for i, part in enumerate(np.array_split(np.array(names), chunks)):
                f.attrs[f"layer_names{i}"] = part
        f.attrs["backend"] = backend.encode("utf8")
        f.attrs["keras_version"] = b"2.2.4"
        for name, weights in sorted(layers):
            group = f.create_group(name)
            paths = [dataset_name(name, w) for w, _ in weights]
            group.attrs["weight_names"] = [p.encode("utf8") for p in paths]
            for p, (w, shape) in zip(paths, weights):
                value = rng.uniform(0.5, 1.5, shape) if w == "moving_variance" \
                    else rng.standard_normal(shape)
                arrays[name, w] = value.astype(np.float32)
                group.create_dataset(p, data=arrays[name, w])
    return arrays


@pytest.fixture(scope="module")
def keras_file(tmp_path_factory):
    """``keras_file(arch)`` → (path, arrays), each file written once."""
    cache = {}

    def get(arch):
        if arch not in cache:
            path = tmp_path_factory.mktemp(arch) / f"{arch}_weights_tf_dim_ordering_tf_kernels.h5"
            cache[arch] = path, write_keras_h5(
                path, LAYERS[arch](), keras1_name if arch == "vgg16" else keras2_name,
                chunks=3 if arch == "xception" else 1)
        return cache[arch]
    return get


def keras_pairs(model):
    """(our module, Keras layer name) for every module with weights, from the modules."""
    f = model.features
    arch = model.config.architecture
    if arch == "vgg16":
        convs = [m for m in f if isinstance(m, nn.Conv2d)]
        return list(zip(convs, [name for name, w in keras_vgg16() if w]))
    if arch == "resnet50v2":
        blocks = [m for m in f if isinstance(m, PreActBottleneck)]
        names = [f"{s}_block{i}" for s, n in (("conv2", 3), ("conv3", 4), ("conv4", 6),
                                               ("conv5", 3)) for i in range(1, n + 1)]
        pairs = [(f[1], "conv1_conv"), (f[-2], "post_bn")]
        for block, p in zip(blocks, names, strict=True):
            pairs += [(block.preact_bn, f"{p}_preact_bn"), (block.conv1, f"{p}_1_conv"),
                      (block.bn1, f"{p}_1_bn"), (block.conv2, f"{p}_2_conv"),
                      (block.bn2, f"{p}_2_bn"), (block.conv3, f"{p}_3_conv")]
            if block.conv_shortcut:
                pairs.append((block.shortcut, f"{p}_0_conv"))
        return pairs
    pairs = list(zip([f[0], f[1], f[3], f[4], f[-6], f[-5], f[-3], f[-2]], [
        "block1_conv1", "block1_conv1_bn", "block1_conv2", "block1_conv2_bn", "block14_sepconv1",
        "block14_sepconv1_bn", "block14_sepconv2", "block14_sepconv2_bn"]))
    blocks = [m for m in f if isinstance(m, (XceptionBlock, XceptionMiddleBlock))]
    shortcuts = 0
    for n, block in enumerate(blocks, start=2):
        seps = [m for m in block.main if isinstance(m, SeparableConv2d)]
        bns = [m for m in block.main if isinstance(m, nn.BatchNorm2d)]
        for k, (s, b) in enumerate(zip(seps, bns, strict=True), start=1):
            pairs += [(s, f"block{n}_sepconv{k}"), (b, f"block{n}_sepconv{k}_bn")]
        if isinstance(block, XceptionBlock):
            shortcuts += 1
            pairs += [(block.residual[0], counter("conv2d", shortcuts)),
                      (block.residual[1], counter("batch_normalization", shortcuts))]
    return pairs


def expected(module, layer, arrays):
    """Our tensors of one module and the Keras arrays they must equal, transposed."""
    def kernel(w):  # (H, W, I, O) -> (O, I, H, W)
        return torch.from_numpy(arrays[layer, w]).permute(3, 2, 0, 1)
    if isinstance(module, SeparableConv2d):  # depthwise (H, W, C, 1) -> (C, 1, H, W)
        return [(module.depthwise.weight,
                 torch.from_numpy(arrays[layer, "depthwise_kernel"]).permute(2, 3, 0, 1)),
                (module.pointwise.weight, kernel("pointwise_kernel"))]
    if isinstance(module, nn.BatchNorm2d):
        return [(t, torch.from_numpy(arrays[layer, w])) for t, w in zip(
            (module.weight, module.bias, module.running_mean, module.running_var), BN)]
    out = [(module.weight, kernel("kernel"))]
    if module.bias is not None:
        out.append((module.bias, torch.from_numpy(arrays[layer, "bias"])))
    return out


def load(arch, path, **overrides):
    """Paper-width model loaded from ``path``; fails on any warning."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        return build_classifier(arch, "paper", weights=path, backbone_only=True, **overrides)


@pytest.mark.parametrize("arch", ["vgg16", "resnet50v2", "xception"])
def test_keras_file_sets_every_backbone_tensor(keras_file, arch):
    path, arrays = keras_file(arch)
    total, moving = PUBLISHED[arch]
    assert sum(a.size for a in arrays.values()) == total
    assert sum(a.size for (_, w), a in arrays.items() if w.startswith("moving_")) == moving
    model = load(arch, path)
    loaded = set()
    for module, layer in keras_pairs(model):
        for ours, theirs in expected(module, layer, arrays):
            assert ours.shape == theirs.shape, layer
            assert torch.equal(ours.detach(), theirs), layer
            loaded.add(id(ours))
    backbone = {k: v for k, v in model.features.state_dict(keep_vars=True).items()
                if not k.endswith("num_batches_tracked")}
    assert {k for k, v in backbone.items() if id(v) not in loaded} == set()
    # every array of the file went into the backbone, except the ImageNet top
    used = {layer for _, layer in keras_pairs(model)}
    assert {layer for layer, _ in arrays} - used <= {"predictions"}


def test_keras_weights_in_the_timm_layout_warn(keras_file):
    path, _ = keras_file("resnet50v2")
    with pytest.warns(ImageNetLayoutWarning, match=r"keras-resnet50v2 weights loaded into the "
                                                   r"timm resnet50v2 layout.*layout='keras'"):
        build_classifier("resnet50v2", "paper", layout="timm", weights=path, backbone_only=True)


def test_wrong_model_errors_name_file_format_and_fix(keras_file):
    path, _ = keras_file("xception")
    fix = r"build_classifier\('xception', 'paper', weights=..., backbone_only=True\)"
    with pytest.raises(ValueError, match=rf"{path.name} holds keras-xception weights for "
                                         rf"architecture 'xception', not 'resnet50v2'; keras-xception "
                                         rf"weights fit {fix}"):
        build_classifier("resnet50v2", "paper", weights=path, backbone_only=True)
    with pytest.raises(ValueError, match="backbone without our head; pass backbone_only=True"):
        build_classifier("xception", "paper", weights=path)
    with pytest.raises(ValueError, match=rf"keras-xception format\) does not fit the model: "
                                         rf".*shape mismatch.*{fix}"):
        build_classifier("xception", "small", weights=path, backbone_only=True)


def test_missing_layer_is_named(tmp_path):
    layers = [layer for layer in keras_vgg16() if layer[0] != "block4_conv2"]
    path = tmp_path / "holed.h5"
    write_keras_h5(path, layers)
    with pytest.raises(ValueError, match=r"holed.h5 \(keras-vgg16 format\) does not fit the "
                                         r"model: 2 missing key\(s\), e.g. \['block4_conv2.bias', "
                                         r"'block4_conv2.weight'\]"):
        build_classifier("vgg16", "paper", weights=path, backbone_only=True)
    with h5py.File(path, "a") as f:  # listed, but its group is gone
        f.attrs["layer_names"] = [n.encode() for n, _ in keras_vgg16()]
    with pytest.raises(ValueError, match="holed.h5 lists layer block4_conv2 in layer_names but "
                                         "has no group for it; pass a Keras HDF5 weights file"):
        build_classifier("vgg16", "paper", weights=path, backbone_only=True)


def test_truncated_or_corrupt_file_names_the_file(keras_file, tmp_path):
    data = keras_file("vgg16")[0].read_bytes()
    truncated = tmp_path / "truncated.h5"
    truncated.write_bytes(data[: len(data) // 2])
    corrupt = tmp_path / "corrupt.hdf5"
    corrupt.write_bytes(b"not an HDF5 file at all")
    for path in (truncated, corrupt):
        with pytest.raises(ValueError, match=f"cannot read Keras weights file .*{path.name} "
                                             r"\(.*\); pass a Keras HDF5 weights file"):
            build_classifier("vgg16", "paper", weights=path, backbone_only=True)


def test_other_hdf5_files_are_refused(tmp_path):
    no_names = tmp_path / "model.weights.h5"  # e.g. the Keras 3 layout: no layer_names
    with h5py.File(no_names, "w") as f:
        f.create_group("layers")
    with pytest.raises(ValueError, match="has no layer_names attribute: not Keras HDF5 weights"):
        build_classifier("vgg16", "paper", weights=no_names, backbone_only=True)
    theano = tmp_path / "theano.h5"
    write_keras_h5(theano, keras_vgg16()[:2], backend="theano")
    with pytest.raises(ValueError, match="theano.h5 was written by the Theano backend"):
        build_classifier("vgg16", "paper", weights=theano, backbone_only=True)
    uncentred = tmp_path / "uncentred.h5"  # BatchNormalization(center=False): no beta
    write_keras_h5(uncentred, [("post_bn", [(w, (8,)) for w in BN if w != "beta"])])
    with pytest.raises(ValueError, match=r"uncentred.h5: layer post_bn has weights of shapes "
                                         r"\[\(8,\), \(8,\), \(8,\)\], not a Conv2D"):
        build_classifier("resnet50v2", "paper", weights=uncentred, backbone_only=True)
    resnet50 = tmp_path / "resnet50.h5"  # ResNet50 (v1): not a supported architecture
    write_keras_h5(resnet50, [conv("conv1_conv", 7, 3, 64), bn("conv1_bn", 64)])
    with pytest.raises(ValueError, match="resnet50.h5 has an unknown key layout .*Keras: VGG16"):
        build_classifier("resnet50v2", "paper", weights=resnet50, backbone_only=True)


def test_without_h5py_the_error_says_how_to_install(monkeypatch, tmp_path):
    path = tmp_path / "w.h5"
    path.write_bytes(b"")
    monkeypatch.setitem(sys.modules, "h5py", None)  # import h5py raises ImportError
    with pytest.raises(ImportError, match="needs h5py: pip install h5py"):
        build_classifier("vgg16", "paper", weights=path, backbone_only=True)
