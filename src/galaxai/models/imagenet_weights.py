"""Key translation from torchvision and timm ImageNet state dicts to the morphology classifiers.

:func:`galaxai.models.morphology.load_weights` reads a local file, :func:`detect_format` names
its layout, whose :attr:`WeightFormat.key_map` maps every backbone key of the model
(``features.…``) to the source key that initialises it. One format per source:

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
======================== =============== ===================================================

The VGG formats give the source network exactly. timm's ``resnetv2_50`` is not Keras's
ResNet50V2: timm strides the first block of stages 2–4 (through a strided 1×1 shortcut), Keras
the last block of stages 1–3 (1×1 max-pool shortcut), so after loading the middle blocks run at
other resolutions than the ones they were trained at; timm pads the stem max-pool with −∞, Keras
with zeros (the stem output is not activated, so the borders differ); BN eps is 1e-5 in timm and
1.001e-5 in Keras. timm has no biases in the stem, shortcut and expansion convolutions, where Keras
has them: those are set to zero, which is exact. timm's ``legacy_xception`` is a port of the Keras
weights with BN eps 1e-5 (Keras: 1e-3) and max-pools padded by one on both sides (Keras
"same": at the end only, for even sizes; identical for odd sizes). Formats with such differences
list them in :attr:`WeightFormat.differences`. A model built with
``MorphologyConfig(layout="timm")`` (:attr:`WeightFormat.layout`) is timm's network, with the
same modules and keys, and with ``activation="relu"`` computes timm's ``forward_features``
exactly (tested bit-identical at several odd and even input sizes); loaded into the default ``layout="keras"``, ``load_weights``
warns with :class:`ImageNetLayoutWarning`, naming the differences and ``layout='timm'``. Only
width 1 and the paper depth fit (preset ``paper``).
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
        How the source network differs from our ``keras`` layout with the same weights (empty:
        identical).
    layout : str
        The :class:`~galaxai.models.morphology.MorphologyConfig` ``layout`` that computes the
        source network exactly (``"timm"`` for the timm ResNetV2 and Xception formats).
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


_RESNET_DIFFERENCES = (
    "stride on the first block of stages 2-4 with a strided 1x1 shortcut convolution (timm), "
    "not on the last block of stages 1-3 with a 1x1 max-pool shortcut (Keras, here)",
    "stem max-pool padded with -inf (timm), not zeros (Keras, here)",
    "BN eps 1e-5 (timm), not 1.001e-5 (Keras, here)",
    "no bias in the stem, shortcut and expansion convolutions (timm): loaded as zeros (exact)",
)
_XCEPTION_DIFFERENCES = (
    "BN eps 1e-5 (timm), not 1e-3 (Keras, here)",
    "max-pools padded by 1 on both sides (timm), not TensorFlow 'same' (Keras, here: at the end "
    "only for even sizes; identical for odd sizes)",
)

#: The supported formats, by name.
WEIGHT_FORMATS: dict[str, WeightFormat] = {f.name: f for f in (
    WeightFormat("galaxai", None, ("head.",), _identity),
    WeightFormat("torchvision-vgg16", "vgg16", ("classifier.",), _identity, False),
    WeightFormat("torchvision-vgg16_bn", "vgg16", ("classifier.",), _identity, True),
    WeightFormat("timm-vgg16", "vgg16", ("pre_logits.", "head."), _identity, False),
    WeightFormat("timm-vgg16_bn", "vgg16", ("pre_logits.", "head."), _identity, True),
    WeightFormat("timm-resnetv2_50", "resnet50v2", ("head.",), _timm_resnetv2_map,
                 backbone=True, differences=_RESNET_DIFFERENCES, layout="timm"),
    WeightFormat("timm-legacy_xception", "xception", ("fc.",), _timm_xception_map,
                 backbone=True, differences=_XCEPTION_DIFFERENCES, layout="timm"),
)}


def detect_format(state: Mapping[str, torch.Tensor]) -> WeightFormat | None:
    """The format of a state dict from its key names, or ``None`` if unrecognised."""
    keys = set(state)
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

