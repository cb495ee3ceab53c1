"""Key translation from torchvision, timm and Keras ImageNet weights to the morphology classifiers.

:func:`galaxai.models.morphology.load_weights` reads a local file (Keras ``.h5`` files through
:func:`galaxai.models.keras_h5.read_keras_h5`, as ``<Keras layer>.<PyTorch parameter>``
tensors in PyTorch layout), :func:`detect_format` names its layout, whose
:attr:`WeightFormat.key_map` maps every backbone key of the model (``features.…``) to the
source key that initialises it. One format per source:

======================== =============== ===================================================
format                   architecture    relation to our default (``keras``) layout
======================== =============== ===================================================
``galaxai``              any             our own keys
``torchvision-vgg16``    vgg16           same keys and network (``vgg_batchnorm=False``)
``torchvision-vgg16_bn`` vgg16           same keys and network (``vgg_batchnorm=True``)
``timm-vgg16``           vgg16           same ``features.`` keys and network as torchvision
``timm-vgg16_bn``        vgg16           same as ``torchvision-vgg16_bn``
``timm-resnetv2_50``     resnet50v2      renamed; **a different network**; ``timm``: exact
``timm-legacy_xception`` xception        renamed; BN eps, max-pool padding; ``timm``: exact
``keras-vgg16``          vgg16           Keras layer names; the same network
``keras-resnet50v2``     resnet50v2      Keras layer names; the same network
``keras-xception``       xception        Keras layer names; the same network
======================== =============== ===================================================

The Keras formats are the Keras application files the paper started from
(``vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5``,
``resnet50v2_weights_tf_dim_ordering_tf_kernels_notop.h5``,
``xception_weights_tf_dim_ordering_tf_kernels_notop.h5``; the files with the ImageNet top
load too, the top ignored): our default layout is the Keras network, so they load exactly and
without a warning. Xception's four unnamed shortcut convolutions and batch norms
(``conv2d_1`` … ``conv2d_4``, ``batch_normalization_1`` … ``_4`` after
:mod:`~galaxai.models.keras_h5` renumbers them in file order) go to the shortcuts of blocks 2,
3, 4 and 13 in that order; their shapes (64→128, 128→256, 256→728, 728→1024 channels) all
differ, so a wrong order could not load.

The VGG formats give the source network exactly. timm's ``resnetv2_50`` is not Keras's
ResNet50V2: timm strides the first block of stages 2–4 (through a strided 1×1 shortcut), Keras
the last block of stages 1–3 (1×1 max-pool shortcut), so after loading the middle blocks run at
other resolutions than the ones they were trained at; timm pads the stem max-pool with −∞, Keras
with zeros (the stem output is not activated, so the borders differ); BN eps is 1e-5 in timm and
1.001e-5 in Keras. timm has no biases in the stem, shortcut and expansion convolutions, where Keras
has them: those are set to zero, which is exact. timm's ``legacy_xception`` is a port of the Keras
weights with BN eps 1e-5 (Keras: 1e-3) and max-pools padded by one on both sides (Keras
"same": at the end only, for even sizes; identical for odd sizes). Formats whose network differs
from the other layout's list how in :attr:`WeightFormat.differences`. A model built with
``MorphologyConfig(layout="timm")`` (:attr:`WeightFormat.layout`) is timm's network, with the
same modules and keys, and with ``activation="relu"`` computes timm's ``forward_features``
exactly (tested bit-identical at several odd and even input sizes). Weights loaded into the
other layout than their :attr:`WeightFormat.layout` (timm ResNetV2 or Xception into the default
``layout="keras"``, Keras ResNet50V2 or Xception into ``layout="timm"``) compute a different
function: ``load_weights`` warns with :class:`ImageNetLayoutWarning`, naming the differences and
the layout to use. Only width 1 and the paper depth fit (preset ``paper``).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Collection, Mapping

import torch

__all__ = [
    "WEIGHT_FORMATS",
    "ImageNetLayoutWarning",
    "WeightFormat",
    "detect_format",
]

#: our key → source key; ``None``: the source has no such parameter (a bias), loaded as zeros.
KeyMap = dict[str, "str | None"]


class ImageNetLayoutWarning(UserWarning):
    """The loaded weights come from a network that differs from the model's layout."""


@dataclass(frozen=True)
class WeightFormat:
    """One source layout of a state dict.

    Parameters
    ----------
    name : str
        Format name, e.g. ``"timm-resnetv2_50"``.
    architecture : str or None
        Our architecture it initialises (``None``: any, our own keys).
    head_prefixes : tuple of str
        Source keys of the classifier top, ignored with ``backbone_only=True``.
    key_map : callable
        ``key_map(own_keys) -> KeyMap`` for the model's (backbone) keys.
    vgg_batchnorm : bool or None
        The ``vgg_batchnorm`` the file needs, if it matters.
    backbone : bool
        ``True`` for ImageNet backbones, which load only with ``backbone_only=True``.
    differences : tuple of str
        How the source network differs from the other layout's with the same weights (empty:
        both layouts compute the source network, as for VGG16).
    layout : str
        The :class:`~galaxai.models.morphology.MorphologyConfig` ``layout`` that computes the
        source network exactly (``"timm"`` for the timm ResNetV2 and Xception formats,
        ``"keras"`` for the others).
    """

    name: str
    architecture: str | None
    head_prefixes: tuple[str, ...]
    key_map: Callable[[Collection[str]], KeyMap]
    vgg_batchnorm: bool | None = None
    backbone: bool = False
    differences: tuple[str, ...] = ()
    layout: str = "keras"

    @property
    def fix(self) -> str:
        """How to build a model this format fits."""
        if self.architecture is None:
            return ("build the model with the same architecture, preset and width as the file "
                    "(or pass backbone_only=True to load only the backbone)")
        extra = "" if self.vgg_batchnorm is None else f", vgg_batchnorm={self.vgg_batchnorm}"
        extra += "" if self.layout == "keras" else f", layout={self.layout!r}"
        return (f"{self.name} weights fit build_classifier({self.architecture!r}, 'paper'"
                f"{extra}, weights=..., backbone_only=True) (width 1, the published depth)")


def _identity(own_keys: Collection[str]) -> KeyMap:
    return {k: k for k in own_keys}


def _prefix_map(own_keys: Collection[str], rules: Mapping[str, str | None]) -> KeyMap:
    """Map each key by its longest matching prefix rule (a full key is a prefix with no rest)."""
    out: KeyMap = {}
    for key in own_keys:
        prefix = max((p for p in rules if key.startswith(p)), key=len)
        src = rules[prefix]
        out[key] = None if src is None else src + key[len(prefix):]
    return out


def _module_indices(own_keys: Collection[str]) -> list[int]:
    return sorted({int(k.split(".")[1]) for k in own_keys if k.startswith("features.")})


def _timm_resnetv2_map(own_keys: Collection[str]) -> KeyMap:
    keys = set(own_keys)
    idx = _module_indices(keys)
    rules: dict[str, str | None] = {
        f"features.{idx[0]}.weight": "stem.conv.weight", f"features.{idx[0]}.bias": None,
        f"features.{idx[-1]}.": "norm.",
    }
    stage, block = -1, 0
    for i in idx[1:-1]:
        ours = f"features.{i}."
        if ours + "shortcut.weight" in keys:
            stage, block = stage + 1, 0
            rules[ours + "shortcut.weight"] = f"stages.{stage}.blocks.0.downsample.conv.weight"
            rules[ours + "shortcut.bias"] = None
        else:
            block += 1
        src = f"stages.{stage}.blocks.{block}."
        for a, b in (("preact_bn.", "norm1."), ("conv1.", "conv1."), ("bn1.", "norm2."),
                     ("conv2.", "conv2."), ("bn2.", "norm3."), ("conv3.weight", "conv3.weight")):
            rules[ours + a] = src + b
        rules[ours + "conv3.bias"] = None
    return _prefix_map(keys, rules)


def _timm_xception_map(own_keys: Collection[str]) -> KeyMap:
    keys = set(own_keys)
    idx = _module_indices(keys)
    # stem conv, BN, conv, BN; 12 blocks; exit separable conv, BN, separable conv, BN
    stem, blocks, exit_ = idx[:4], idx[4:-4], idx[-4:]
    rules: dict[str, str | None] = {
        f"features.{i}.": name for i, name in zip(stem + exit_, (
            "conv1.", "bn1.", "conv2.", "bn2.", "conv3.", "bn3.", "conv4.", "bn4."))
    }
    for n, i in enumerate(blocks, start=1):
        rules[f"features.{i}.main."] = f"block{n}.rep."
        rules[f"features.{i}.residual.0."] = f"block{n}.skip."
        rules[f"features.{i}.residual.1."] = f"block{n}.skipbn."
    return {k: None if v is None else v.replace("depthwise.", "conv1.")
            for k, v in _prefix_map(keys, rules).items()}


_VGG16_BLOCKS = (2, 2, 3, 3, 3)  # convolutions per block


def _keras_vgg16_map(own_keys: Collection[str]) -> KeyMap:
    names = [f"block{b}_conv{k}" for b, n in enumerate(_VGG16_BLOCKS, 1) for k in range(1, n + 1)]
    rules = {f"features.{i}.": f"{name}." for i, name in zip(_module_indices(own_keys), names)}
    return _prefix_map(own_keys, rules)


def _keras_resnet50v2_map(own_keys: Collection[str]) -> KeyMap:
    keys = set(own_keys)
    idx = _module_indices(keys)
    rules = {f"features.{idx[0]}.": "conv1_conv.", f"features.{idx[-1]}.": "post_bn."}
    stage, block = 1, 0  # Keras stages conv2-conv5, blocks from 1
    for i in idx[1:-1]:
        ours = f"features.{i}."
        stage, block = (stage + 1, 1) if ours + "shortcut.weight" in keys else (stage, block + 1)
        for a, b in (("preact_bn", "preact_bn"), ("shortcut", "0_conv"), ("conv1", "1_conv"),
                     ("bn1", "1_bn"), ("conv2", "2_conv"), ("bn2", "2_bn"), ("conv3", "3_conv")):
            rules[f"{ours}{a}."] = f"conv{stage}_block{block}_{b}."
    return _prefix_map(keys, rules)


def _keras_xception_map(own_keys: Collection[str]) -> KeyMap:
    keys = set(own_keys)
    idx = _module_indices(keys)
    # stem conv, BN, conv, BN; blocks 2-13; block 14: separable conv, BN, separable conv, BN
    stem, blocks, exit_ = idx[:4], idx[4:-4], idx[-4:]
    rules = {f"features.{i}.": f"{name}." for i, name in zip(stem + exit_, (
        "block1_conv1", "block1_conv1_bn", "block1_conv2", "block1_conv2_bn",
        "block14_sepconv1", "block14_sepconv1_bn", "block14_sepconv2", "block14_sepconv2_bn"))}
    shortcut = 0
    for n, i in enumerate(blocks, start=2):
        ours = f"features.{i}."
        if ours + "residual.0.weight" in keys:  # unnamed in Keras, numbered by keras_h5
            shortcut += 1
            rules[ours + "residual.0."] = f"conv2d_{shortcut}."
            rules[ours + "residual.1."] = f"batch_normalization_{shortcut}."
        main = sorted({int(k[len(ours + "main."):].split(".")[0])
                       for k in keys if k.startswith(ours + "main.")})
        for pos, j in enumerate(main):  # separable conv, BN, separable conv, BN, ...
            rules[f"{ours}main.{j}."] = f"block{n}_sepconv{pos // 2 + 1}{'_bn' * (pos % 2)}."
    return _prefix_map(keys, rules)


# how the two layouts differ, for weights from either
_RESNET_DIFFERENCES = (
    "stride on the first block of stages 2-4 with a strided 1x1 shortcut convolution (timm) "
    "vs on the last block of stages 1-3 with a 1x1 max-pool shortcut (Keras)",
    "stem max-pool padded with -inf (timm) vs zeros (Keras)",
    "BN eps 1e-5 (timm) vs 1.001e-5 (Keras)",
)
_TIMM_RESNET_BIASES = (
    "no bias in the stem, shortcut and expansion convolutions (timm): loaded as zeros (exact)",
)
_XCEPTION_DIFFERENCES = (
    "BN eps 1e-5 (timm) vs 1e-3 (Keras)",
    "max-pools padded by 1 on both sides (timm) vs TensorFlow 'same' (Keras: at the end only, "
    "for even sizes; identical for odd sizes)",
)

#: The supported formats, by name.
WEIGHT_FORMATS: dict[str, WeightFormat] = {f.name: f for f in (
    WeightFormat("galaxai", None, ("head.",), _identity),
    WeightFormat("torchvision-vgg16", "vgg16", ("classifier.",), _identity, False),
    WeightFormat("torchvision-vgg16_bn", "vgg16", ("classifier.",), _identity, True),
    WeightFormat("timm-vgg16", "vgg16", ("pre_logits.", "head."), _identity, False),
    WeightFormat("timm-vgg16_bn", "vgg16", ("pre_logits.", "head."), _identity, True),
    WeightFormat("timm-resnetv2_50", "resnet50v2", ("head.",), _timm_resnetv2_map,
                 backbone=True, differences=_RESNET_DIFFERENCES + _TIMM_RESNET_BIASES,
                 layout="timm"),
    WeightFormat("timm-legacy_xception", "xception", ("fc.",), _timm_xception_map,
                 backbone=True, differences=_XCEPTION_DIFFERENCES, layout="timm"),
    # "dense": the Dense layers of a whole Keras classifier (e.g. the authors' VGG16 head).
    WeightFormat("keras-vgg16", "vgg16", ("fc1.", "fc2.", "predictions.", "dense"),
                 _keras_vgg16_map,
                 False, backbone=True),
    WeightFormat("keras-resnet50v2", "resnet50v2", ("predictions.",), _keras_resnet50v2_map,
                 backbone=True, differences=_RESNET_DIFFERENCES),
    WeightFormat("keras-xception", "xception", ("predictions.",), _keras_xception_map,
                 backbone=True, differences=_XCEPTION_DIFFERENCES),
)}


def detect_format(state: Mapping[str, torch.Tensor]) -> WeightFormat | None:
    """The format of a state dict from its key names, or ``None`` if unrecognised."""
    keys = set(state)
    if "conv1_conv.weight" in keys and "post_bn.running_var" in keys:
        return WEIGHT_FORMATS["keras-resnet50v2"]
    if "block14_sepconv2.pointwise.weight" in keys:
        return WEIGHT_FORMATS["keras-xception"]
    if "block5_conv3.weight" in keys:
        return WEIGHT_FORMATS["keras-vgg16"]
    if "stem.conv.weight" in keys and "stages.0.blocks.0.norm1.weight" in keys:
        return WEIGHT_FORMATS["timm-resnetv2_50"]
    if "block1.rep.0.pointwise.weight" in keys and "conv1.weight" in keys:
        return WEIGHT_FORMATS["timm-legacy_xception"]
    if not any(k.startswith("features.") for k in keys):
        return None
    bn = "_bn" if "features.1.running_mean" in keys else ""
    if any(k.startswith("classifier.") for k in keys):
        return WEIGHT_FORMATS[f"torchvision-vgg16{bn}"]
    if any(k.startswith("pre_logits.") for k in keys):
        return WEIGHT_FORMATS[f"timm-vgg16{bn}"]
    return WEIGHT_FORMATS["galaxai"]

