"""Galaxy Zoo morphology classifiers: VGG16-, ResNet50V2- and Xception-style CNNs with 37 outputs.

Bhambra, Joachimi & Lahav (2022) train three Keras ImageNet architectures on the Kaggle Galaxy
Zoo challenge (37 weighted vote fractions, sigmoid outputs, MSE loss) and explain the
``Class3.1`` (bar) logit with SmoothGrad. This module rebuilds the three networks in PyTorch
following the Keras application code (``tf.keras.applications``), with a width multiplier so that
a CPU can train them:

* ``vgg16``: VGG16 without top (torchvision's layer layout, no batch norm) → Flatten →
  Dense 16·37 → Dense 8·37 → Dense 37, sigmoid (the authors' head, swish on both hidden layers).
  ``vgg_batchnorm=True`` (presets ``small`` and ``tiny`` only; a labelled deviation) puts a
  batch norm after every convolution (torchvision's ``vgg16_bn`` layout): trained from scratch
  for a CPU budget, the plain network never leaves predict-the-mean (see
  :class:`MorphologyConfig`).
* ``resnet50v2``: pre-activation ResNet50V2 as in Keras (stride on the last block of a stage,
  biased stem and expansion convolutions, ``BN eps = 1.001e-5``) → global average pool →
  Dense 37, sigmoid.
* ``xception``: Xception as in Keras (valid stem convolutions, bias-free separable convolutions,
  ``BN eps = 1e-3``, TensorFlow "same" max-pooling) → global average pool → Dense 37, sigmoid.

``layout="timm"`` (:class:`MorphologyConfig`) builds ResNet50V2 and Xception instead as timm's
``resnetv2_50`` and ``legacy_xception`` (strides and shortcuts, max-pool padding, BN eps; same
modules and parameters), the networks timm's ImageNet weights were trained in; VGG16 is the same
in both layouts.

At ``width=1`` and the full depth (preset ``paper``) the backbones have the Keras parameter
counts (counting batch-norm running statistics as Keras does): 14,714,688 (VGG16),
23,564,800 (ResNet50V2) and 20,861,480 (Xception).

The authors' code turns **every ReLU into swish** (``x·sigmoid(x)``); ``activation="swish"`` is
therefore the faithful default, ``"relu"`` the architectures as published. Every activation is
its own ``nn.Module`` and the network ends in an ``nn.Sigmoid`` module, so explanation code
(``galaxai.explain``) can hook every layer and differentiate the pre-sigmoid logit.

Weights are never downloaded. :func:`load_weights` reads a user-supplied local file only:
``.safetensors``, a PyTorch file read with ``torch.load(weights_only=True)`` (no arbitrary
unpickling), or a Keras HDF5 weights file (``.h5``, read with ``h5py``:
:mod:`galaxai.models.keras_h5`). ``backbone_only=True`` initialises just the convolutional
backbone (keys under ``features.``) from ImageNet weights at ``width=1`` and the paper depth:
torchvision ``vgg16`` / ``vgg16_bn`` and timm ``vgg16`` / ``vgg16_bn`` (the same network,
exactly), timm ``resnetv2_50`` and ``legacy_xception`` (key-translated; exact with
``layout="timm"``, while loading them into the default Keras layout, a different network, warns:
see :mod:`galaxai.models.imagenet_weights`), and the Keras application files the paper used
(``vgg16_…``, ``resnet50v2_…`` and ``xception_weights_tf_dim_ordering_tf_kernels_notop.h5``),
which are the default layout's networks and load into it exactly.

References
----------
P. Bhambra, B. Joachimi, O. Lahav, MNRAS 511, 5032 (2022), arXiv:2110.08288 (``train_models.py``).
K. Simonyan & A. Zisserman (2015), arXiv:1409.1556 (VGG16).
K. He, X. Zhang, S. Ren, J. Sun (2016), "Identity mappings in deep residual networks",
arXiv:1603.05027 (ResNetV2).
F. Chollet (2017), "Xception", arXiv:1610.02357.
P. Ramachandran, B. Zoph, Q. V. Le (2017), arXiv:1710.05941 (swish).
S. Dieleman, K. W. Willett, J. Dambre (2015), MNRAS 450, 1441 (the Kaggle Galaxy Zoo challenge).
"""
from __future__ import annotations

import math
import pickle
import warnings
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Mapping, Sequence

import torch
import torch.nn.functional as F
from safetensors import SafetensorError
from safetensors.torch import load_file as load_safetensors
from torch import nn
from torchvision.models.vgg import cfgs as _VGG_CFGS
from torchvision.models.vgg import make_layers as _vgg_make_layers

from galaxai.choices import ACTIVATIONS, ARCHITECTURES
from galaxai.data.gz_schema import GZ_COLUMNS, GZ_QUESTIONS, gz_column_index
from galaxai.models.imagenet_weights import (
    WEIGHT_FORMATS,
    ImageNetLayoutWarning,
    WeightFormat,
    detect_format,
)
from galaxai.models.keras_h5 import KERAS_SUFFIXES, read_keras_h5

__all__ = [
    "GZ_COLUMNS",
    "GZ_QUESTIONS",
    "ARCHITECTURES",
    "ACTIVATIONS",
    "LAYOUTS",
    "gz_column_index",
    "MorphologyConfig",
    "MorphologyClassifier",
    "MorphologyEnsemble",
    "build_classifier",
    "build_ensemble",
    "load_weights",
]

# ARCHITECTURES (supported backbones) and ACTIVATIONS (``swish``, the authors' code, or ``relu``,
# the Keras architectures) come from galaxai.choices.
_RESNET_FILTERS = (64, 128, 256, 512)
_BN_MOMENTUM = 0.01  # Keras momentum 0.99


@dataclass(frozen=True)
class _Layout:
    """Everything that differs between the ``keras`` and ``timm`` layouts (nothing else does).

    Both layouts have the same modules at the same indices and the same parameter shapes.
    """

    resnet_eps: float
    xception_eps: float
    #: ResNet: stride the first block of stages 2-4 (through its 1×1 shortcut convolution), not
    #: the last block of stages 1-3 (with a 1×1 max-pool shortcut)
    stride_first_block: bool
    #: max-pools padded by one with -inf on both sides, not zeros (ResNet stem) or TensorFlow
    #: "same" (Xception: -inf at the end only, for even sizes)
    symmetric_pools: bool

    def resnet_stride(self, stage: int, block: int, n_blocks: int) -> int:
        """Stride of one bottleneck block (stages and blocks counted from 0)."""
        if self.stride_first_block:
            return 2 if block == 0 and stage > 0 else 1
        return 2 if block == n_blocks - 1 and stage < len(_RESNET_FILTERS) - 1 else 1

    def resnet_stem_pool(self) -> list[nn.Module]:
        """The stem's padding and 3×3/2 max-pool (two modules: the same indices in both)."""
        if self.symmetric_pools:
            return [nn.Identity(), nn.MaxPool2d(3, stride=2, padding=1)]
        return [nn.ZeroPad2d(1), nn.MaxPool2d(3, stride=2)]

    def xception_pool(self) -> nn.Module:
        """The 3×3/2 max-pool closing an Xception entry/exit block."""
        return nn.MaxPool2d(3, stride=2, padding=1) if self.symmetric_pools else SameMaxPool2d()


_LAYOUTS: dict[str, _Layout] = {
    "keras": _Layout(resnet_eps=1.001e-5, xception_eps=1e-3, stride_first_block=False,
                     symmetric_pools=False),
    "timm": _Layout(resnet_eps=1e-5, xception_eps=1e-5, stride_first_block=True,
                    symmetric_pools=True),
}
#: Supported layouts: ``keras`` (the Keras applications, faithful) or ``timm`` (timm's
#: ``resnetv2_50`` / ``legacy_xception``, in which their ImageNet weights load exactly).
LAYOUTS: tuple[str, ...] = tuple(_LAYOUTS)


@dataclass(frozen=True)
class MorphologyConfig:
    """Architecture of one morphology classifier.

    Parameters
    ----------
    architecture : {"vgg16", "resnet50v2", "xception"}
    width : float
        Channel multiplier of every convolution and hidden dense layer (1 = the published width).
    activation : {"swish", "relu"}
        ``swish`` replaces every ReLU as the authors' code does (faithful); ``relu`` is the
        architecture as published.
    image_size : int
        Input height and width; VGG16's flatten layer depends on it (224 in the paper).
    in_channels : int
        Input channels (3: RGB ÷ 255, no ImageNet normalisation).
    n_outputs : int
        Outputs (37 Galaxy Zoo vote fractions).
    resnet_blocks : tuple of int
        Bottleneck blocks per ResNet50V2 stage, each at least 2 (``(3, 4, 6, 3)``).
    xception_middle : int
        Repeats of Xception's middle-flow block (8).
    vgg_head : tuple of int
        Hidden dense widths of the VGG16 head before the width multiplier (``(16·37, 8·37)``).
    vgg_batchnorm : bool
        **Deviation** (off in ``paper``, on in ``small`` and ``tiny``): a ``BatchNorm2d`` after
        every VGG16 convolution, before its activation (torchvision ``vgg16_bn``). Without it,
        from scratch (Glorot init, swish, dark galaxy images with median pixel 0), the image
        signal dies in the 13 unnormalised convolutions: the flattened features vary across
        galaxies by ~1e-6 at init and the closed loop's ``small`` VGG16 stayed at
        predict-the-mean (val RMSE 0.1825 vs 0.1824 for the mean). Measured on 400/150
        closed-loop ``small`` galaxies (96², width 1/8, 12 epochs, seed 0), val RMSE vs 0.186
        for the mean and mean ``Class3.1`` output barred/unbarred: plain 0.188, 0.189/0.189;
        He init 0.188, 0.147/0.146; input standardisation 0.225; He + standardisation 0.181,
        0.133/0.083; lr 1e-4 0.268 (He: 0.260); **batch norm 0.162, 0.295/0.155**. The
        layer indices differ from the plain network: ImageNet ``vgg16`` backbones load with
        ``vgg_batchnorm=False``, ``vgg16_bn`` ones with ``vgg_batchnorm=True``.
    layout : {"keras", "timm"}
        ``keras`` (default): the Keras applications, as the paper. ``timm``: ResNet50V2 and
        Xception as timm's ``resnetv2_50`` and ``legacy_xception``, the networks their ImageNet
        weights were trained in, which load into it exactly. ResNet50V2: stride on the first
        block of stages 2–4 (strided 1×1 shortcut convolution) instead of the last block of
        stages 1–3 (1×1 max-pool shortcut), stem max-pool padded with −∞ instead of zeros, BN
        eps 1e-5 instead of 1.001e-5. Xception: BN eps 1e-5 instead of 1e-3, max-pools padded
        by one on both sides instead of TensorFlow "same". Both layouts have the same modules,
        parameters and keys (the convolution biases timm lacks stay, initialised to zero by
        ImageNet loading); VGG16 is the same network in both, the field has no effect on it.
        The source network also needs ``activation="relu"`` (the default swish is the authors'
        change to the ImageNet networks, not checked by the loader).
    """

    architecture: str = "vgg16"
    width: float = 1.0
    activation: str = "swish"
    image_size: int = 224
    in_channels: int = 3
    n_outputs: int = len(GZ_COLUMNS)
    resnet_blocks: tuple[int, ...] = (3, 4, 6, 3)
    xception_middle: int = 8
    vgg_head: tuple[int, ...] = (16 * 37, 8 * 37)
    vgg_batchnorm: bool = False
    layout: str = "keras"

    PRESETS: ClassVar[tuple[str, ...]] = ("paper", "small", "tiny")

    def __post_init__(self) -> None:
        if self.architecture not in ARCHITECTURES:
            raise ValueError(f"architecture={self.architecture!r}; choose one of {ARCHITECTURES}")
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"activation={self.activation!r}; choose one of {ACTIVATIONS}")
        if not (isinstance(self.width, (int, float)) and 0 < self.width <= 4):
            raise ValueError(f"width must be a multiplier in (0, 4], got {self.width!r}")
        for name in ("image_size", "in_channels", "n_outputs"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be a positive integer, got {getattr(self, name)!r}")
        if self.architecture == "vgg16" and self.image_size < 32:
            raise ValueError(
                f"vgg16 needs image_size >= 32 (five 2x poolings), got {self.image_size}")
        if len(self.resnet_blocks) != 4 or min(self.resnet_blocks) < 2:
            raise ValueError(
                f"resnet_blocks needs 4 stages of >= 2 blocks, got {self.resnet_blocks}")
        if self.xception_middle < 0:
            raise ValueError(f"xception_middle must be >= 0, got {self.xception_middle}")
        if len(self.vgg_head) < 1 or min(self.vgg_head) < 1:
            raise ValueError(f"vgg_head must list positive widths, got {self.vgg_head}")
        if not isinstance(self.vgg_batchnorm, bool):
            raise ValueError(f"vgg_batchnorm must be True or False, got {self.vgg_batchnorm!r}")
        if not isinstance(self.layout, str) or self.layout not in LAYOUTS:
            raise ValueError(
                f"layout={self.layout!r}; choose one of {LAYOUTS} ('keras': the Keras "
                "applications, the default; 'timm': the networks of timm's resnetv2_50 / "
                "legacy_xception ImageNet weights)")

    @classmethod
    def preset(cls, name: str, architecture: str = "vgg16", **overrides: Any) -> "MorphologyConfig":
        """The named preset for one architecture, optionally overridden.

        ``paper``: published width and depth at 224². ``small``: width 1/4, shallower
        ResNet/Xception, 128² inputs — sized for CPU training. ``tiny``: width 1/16, minimal
        depth, 64² inputs — for tests. ``small`` and ``tiny`` add batch norm to VGG16
        (``vgg_batchnorm=True``, a deviation: without it VGG16 trained from scratch on a CPU
        budget stays at predict-the-mean; measurements under :class:`MorphologyConfig`).
        """
        presets = {
            "paper": dict(),
            # vgg_batchnorm: plain VGG16 from scratch does not learn in a CPU budget (val RMSE
            # 0.188 vs 0.186 for the mean; with BN 0.162, bar output 0.295 vs 0.155 unbarred).
            "small": dict(width=0.25, image_size=128, resnet_blocks=(2, 2, 2, 2),
                          xception_middle=2, vgg_batchnorm=True),
            "tiny": dict(width=0.0625, image_size=64, resnet_blocks=(2, 2, 2, 2),
                         xception_middle=1, vgg_batchnorm=True),
        }
        if name not in presets:
            raise ValueError(
                f"unknown MorphologyConfig preset {name!r}; choose one of {cls.PRESETS}")
        return cls(architecture=architecture, **{**presets[name], **overrides})

    def channels(self, c: int) -> int:
        """Width-scaled channel count (at least 1)."""
        return max(1, int(round(c * self.width)))


def _act(cfg: MorphologyConfig) -> nn.Module:
    return nn.SiLU() if cfg.activation == "swish" else nn.ReLU()


def _bn(c: int, eps: float) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(c, eps=eps, momentum=_BN_MOMENTUM)


def _layout(cfg: MorphologyConfig) -> _Layout:
    return _LAYOUTS[cfg.layout]


# ----------------------------------------------------------------------------------------------
# VGG16


def _vgg16_features(cfg: MorphologyConfig) -> nn.Sequential:
    layout = [v if v == "M" else cfg.channels(v) for v in _VGG_CFGS["D"]]
    # torchvision's layer indices (vgg16 / vgg16_bn)
    features = _vgg_make_layers(layout, batch_norm=bool(cfg.vgg_batchnorm))
    for i, layer in enumerate(features):
        if isinstance(layer, nn.ReLU):
            features[i] = _act(cfg)
    return features


def _vgg16_head(cfg: MorphologyConfig, c_out: int) -> nn.Sequential:
    size = cfg.image_size
    for _ in range(5):
        size //= 2
    layers: list[nn.Module] = []
    width_in = c_out * size * size
    for hidden in cfg.vgg_head:
        h = max(cfg.n_outputs, int(round(hidden * cfg.width)))
        layers += [nn.Linear(width_in, h), _act(cfg)]
        width_in = h
    layers.append(nn.Linear(width_in, cfg.n_outputs))
    return nn.Sequential(*layers)


# ----------------------------------------------------------------------------------------------
# ResNet50V2 (Keras resnet.py: stack2 / block2)


class PreActBottleneck(nn.Module):
    """Keras ResNetV2 ``block2``: BN-act pre-activation, 1×1, 3×3 (stride), 1×1 expansion.

    The shortcut is a biased 1×1 convolution of the pre-activation (first block of a stage; with
    the stride in the ``timm`` layout), a 1×1 max-pool with the stride (strided last block,
    ``keras`` layout) or the identity.
    """

    def __init__(self, c_in: int, filters: int, stride: int, conv_shortcut: bool,
                 cfg: MorphologyConfig) -> None:
        super().__init__()
        c_out = 4 * filters
        eps = _layout(cfg).resnet_eps
        self.preact_bn = _bn(c_in, eps)
        self.preact_act = _act(cfg)
        if conv_shortcut:
            self.shortcut: nn.Module = nn.Conv2d(c_in, c_out, 1, stride=stride)
        elif stride > 1:
            self.shortcut = nn.MaxPool2d(1, stride=stride)
        else:
            self.shortcut = nn.Identity()
        self.conv_shortcut = conv_shortcut
        self.conv1 = nn.Conv2d(c_in, filters, 1, bias=False)
        self.bn1 = _bn(filters, eps)
        self.act1 = _act(cfg)
        self.conv2 = nn.Conv2d(filters, filters, 3, stride=stride, padding=1, bias=False)
        self.bn2 = _bn(filters, eps)
        self.act2 = _act(cfg)
        self.conv3 = nn.Conv2d(filters, c_out, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        pre = self.preact_act(self.preact_bn(x))
        short = self.shortcut(pre if self.conv_shortcut else x)
        y = self.act1(self.bn1(self.conv1(pre)))
        y = self.act2(self.bn2(self.conv2(y)))
        return short + self.conv3(y)


def _resnet50v2_features(cfg: MorphologyConfig) -> tuple[nn.Sequential, int]:
    stem = cfg.channels(64)
    lay = _layout(cfg)
    layers: list[nn.Module] = [
        nn.ZeroPad2d(3), nn.Conv2d(cfg.in_channels, stem, 7, stride=2), *lay.resnet_stem_pool(),
    ]
    c_in = stem
    for stage, (filters, blocks) in enumerate(zip(_RESNET_FILTERS, cfg.resnet_blocks)):
        f = cfg.channels(filters)
        for b in range(blocks):
            layers.append(PreActBottleneck(c_in, f, lay.resnet_stride(stage, b, blocks),
                                           conv_shortcut=(b == 0), cfg=cfg))
            c_in = 4 * f
    layers += [_bn(c_in, lay.resnet_eps), _act(cfg)]
    return nn.Sequential(*layers), c_in


# ----------------------------------------------------------------------------------------------
# Xception (Keras xception.py)


class SeparableConv2d(nn.Module):
    """Keras ``SeparableConv2D(k=3, padding="same", use_bias=False)``: depthwise then 1×1."""

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        self.depthwise = nn.Conv2d(c_in, c_in, 3, padding=1, groups=c_in, bias=False)
        self.pointwise = nn.Conv2d(c_in, c_out, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        return self.pointwise(self.depthwise(x))


class SameMaxPool2d(nn.Module):
    """TensorFlow ``MaxPooling2D(3, strides=2, padding="same")``: pads ``-inf``, extra at the end."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        pads = []
        for n in (x.shape[-1], x.shape[-2]):
            total = max((math.ceil(n / 2) - 1) * 2 + 3 - n, 0)
            pads += [total // 2, total - total // 2]
        return F.max_pool2d(F.pad(x, pads, value=-math.inf), 3, stride=2)


class XceptionBlock(nn.Module):
    """Entry/exit-flow block: [act] sep BN act sep BN max-pool, plus a strided 1×1 conv + BN."""

    def __init__(self, c_in: int, c_mid: int, c_out: int, pre_act: bool,
                 cfg: MorphologyConfig) -> None:
        super().__init__()
        lay = _layout(cfg)
        self.residual = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride=2, bias=False),
                                      _bn(c_out, lay.xception_eps))
        layers: list[nn.Module] = [_act(cfg)] if pre_act else []
        layers += [SeparableConv2d(c_in, c_mid), _bn(c_mid, lay.xception_eps), _act(cfg),
                   SeparableConv2d(c_mid, c_out), _bn(c_out, lay.xception_eps),
                   lay.xception_pool()]
        self.main = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        return self.main(x) + self.residual(x)


class XceptionMiddleBlock(nn.Module):
    """Middle-flow block: three (act, separable conv, BN) plus the identity."""

    def __init__(self, c: int, cfg: MorphologyConfig) -> None:
        super().__init__()
        eps = _layout(cfg).xception_eps
        layers: list[nn.Module] = []
        for _ in range(3):
            layers += [_act(cfg), SeparableConv2d(c, c), _bn(c, eps)]
        self.main = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        return self.main(x) + x


def _xception_features(cfg: MorphologyConfig) -> tuple[nn.Sequential, int]:
    ch, eps = cfg.channels, _layout(cfg).xception_eps
    c728 = ch(728)
    layers: list[nn.Module] = [
        nn.Conv2d(cfg.in_channels, ch(32), 3, stride=2, bias=False), _bn(ch(32), eps),
        _act(cfg),
        nn.Conv2d(ch(32), ch(64), 3, bias=False), _bn(ch(64), eps), _act(cfg),
        XceptionBlock(ch(64), ch(128), ch(128), pre_act=False, cfg=cfg),
        XceptionBlock(ch(128), ch(256), ch(256), pre_act=True, cfg=cfg),
        XceptionBlock(ch(256), c728, c728, pre_act=True, cfg=cfg),
    ]
    layers += [XceptionMiddleBlock(c728, cfg) for _ in range(cfg.xception_middle)]
    layers += [
        XceptionBlock(c728, c728, ch(1024), pre_act=True, cfg=cfg),
        SeparableConv2d(ch(1024), ch(1536)), _bn(ch(1536), eps), _act(cfg),
        SeparableConv2d(ch(1536), ch(2048)), _bn(ch(2048), eps), _act(cfg),
    ]
    return nn.Sequential(*layers), ch(2048)


# ----------------------------------------------------------------------------------------------
# classifier, ensemble, weights


def _keras_init(module: nn.Module) -> None:
    """Keras defaults: Glorot-uniform kernels, zero biases (batch norm keeps 1 and 0)."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            nn.init.xavier_uniform_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)


class MorphologyClassifier(nn.Module):
    """A Galaxy Zoo classifier: ``features`` → ``pool`` → ``head`` → ``sigmoid``.

    Input ``(B, C, H, W)`` images in [0, 1] (RGB ÷ 255, no ImageNet normalisation); output
    ``(B, n_outputs)`` vote fractions in [0, 1], columns :data:`GZ_COLUMNS`. :meth:`logits`
    returns the pre-sigmoid scores that SmoothGrad differentiates.

    Parameters
    ----------
    config : MorphologyConfig
    """

    def __init__(self, config: MorphologyConfig) -> None:
        super().__init__()
        self.config = config
        if config.architecture == "vgg16":
            self.features = _vgg16_features(config)
            self.pool: nn.Module = nn.Flatten()
            self.head = _vgg16_head(config, config.channels(512))
        else:
            if config.architecture == "resnet50v2":
                self.features, c_out = _resnet50v2_features(config)
            else:
                self.features, c_out = _xception_features(config)
            self.pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())
            self.head = nn.Sequential(nn.Linear(c_out, config.n_outputs))
        self.sigmoid = nn.Sigmoid()  # registered last: the final leaf module
        _keras_init(self)

    def _check(self, x: torch.Tensor) -> None:
        cfg = self.config
        if not isinstance(x, torch.Tensor) or x.ndim != 4 or x.shape[1] != cfg.in_channels:
            shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise ValueError(f"expected a (B, {cfg.in_channels}, H, W) tensor, got {shape}; "
                             "channel-last images need x.permute(0, 3, 1, 2)")
        if cfg.architecture == "vgg16" and tuple(x.shape[-2:]) != (cfg.image_size,) * 2:
            raise ValueError(f"this vgg16 classifier takes {cfg.image_size}² inputs (its flatten "
                             f"layer is sized for them), got {tuple(x.shape[-2:])}; resize first")

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """Pre-sigmoid scores ``(B, n_outputs)``."""
        self._check(x)
        return self.head(self.pool(self.features(x)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        return self.sigmoid(self.logits(x))


class MorphologyEnsemble(nn.Module):
    """Mean of the members' 37 outputs (the authors' ensemble of VGG16, ResNet50V2, Xception).

    Saliency for the ensemble is computed per member and averaged as maps (spec §2), not by
    differentiating this mean; :attr:`members` gives the individual models.
    """

    def __init__(self, members: Sequence[nn.Module]) -> None:
        super().__init__()
        if len(members) == 0:
            raise ValueError("an ensemble needs at least one member model")
        self.members = nn.ModuleList(members)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        return torch.stack([m(x) for m in self.members]).mean(0)


def _read_state_dict(path: Path) -> Mapping[str, torch.Tensor]:
    fix = ("save it with torch.save(model.state_dict(), path) or as .safetensors; "
           "pickled modules and other formats are not loaded")
    try:
        if path.suffix == ".safetensors":
            state: Any = load_safetensors(str(path), device="cpu")
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        raise ValueError(f"weights file {path} is not a plain state dict of tensors (a pickled "
                         f"module or an unknown format); {fix}") from None
    except (SafetensorError, RuntimeError, EOFError, OSError, ValueError,
            zipfile.BadZipFile) as exc:
        reason = str(exc).splitlines()[0][:160] if str(exc) else type(exc).__name__
        raise ValueError(f"cannot read weights file {path} ({reason}); {fix}") from None
    wrapped = isinstance(state, Mapping) and len(state) == 1
    if wrapped and next(iter(state)) in ("state_dict", "model"):
        state = next(iter(state.values()))
    if not isinstance(state, Mapping) or not all(
            isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()):
        raise ValueError(f"weights file {path} does not hold a state dict of named tensors; {fix}")
    return state


def load_weights(model: nn.Module, path: str | Path, *, backbone_only: bool = False,
                 source: str = "auto") -> nn.Module:
    """Load weights into ``model`` from a local file; never downloads.

    Parameters
    ----------
    model : MorphologyClassifier or torch.nn.Module
    path : str or Path
        ``.safetensors`` file, a ``torch.save`` file of a state dict (optionally wrapped as
        ``{"state_dict": ...}`` or ``{"model": ...}``), read with ``weights_only=True``, or a
        Keras HDF5 weights file (suffix ``.h5`` or ``.hdf5``; needs ``h5py``), read by
        :func:`~galaxai.models.keras_h5.read_keras_h5`.
    backbone_only : bool
        Load only the backbone (keys under ``features.``) and leave the head as initialised;
        required for ImageNet files.
    source : str
        Key layout of the file: ``"auto"`` (detected from the key names) or a name in
        :data:`~galaxai.models.imagenet_weights.WEIGHT_FORMATS`: ``"galaxai"``,
        ``"torchvision-vgg16"``, ``"torchvision-vgg16_bn"``, ``"timm-vgg16"``,
        ``"timm-vgg16_bn"``, ``"timm-resnetv2_50"``, ``"timm-legacy_xception"``,
        ``"keras-vgg16"``, ``"keras-resnet50v2"``, ``"keras-xception"``. The torchvision, timm
        and Keras formats fit the ``paper`` preset (width 1) of their architecture. The VGG and
        Keras formats give the source network exactly in the default ``layout="keras"``, timm's
        ResNetV2 and Xception in a model built with ``layout="timm"``; loading into the other
        layout (see :mod:`galaxai.models.imagenet_weights`) is warned. The network computed is
        the source's only with ``activation="relu"`` (the default swish is the authors' change).

    Returns
    -------
    torch.nn.Module
        ``model``, in place.

    Raises
    ------
    FileNotFoundError
        The file does not exist.
    ImportError
        A Keras ``.h5`` file, and ``h5py`` is not installed (``pip install h5py``).
    ValueError
        The file is unreadable or not a state dict (or Keras weights file), its format is
        unknown or is for another architecture, or keys/shapes do not match the model (the
        message names the file, the format, the offending keys and the fix).

    Warns
    -----
    ImageNetLayoutWarning
        The file's network differs from the model's with the same weights (timm ResNetV2 or
        Xception into a ``layout="keras"`` model, Keras ones into ``layout="timm"``); the
        message lists how and names the fix.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"weights file {path} does not exist; pass the path of a local "
                                "weights file (galaxai never downloads weights)")
    if path.suffix.lower() in KERAS_SUFFIXES:
        state = read_keras_h5(path)
    else:
        state = dict(_read_state_dict(path))
    fmt = _weight_format(state, path, source)
    _check_format_fits(model, fmt, path, backbone_only)
    own = model.state_dict()
    if backbone_only:
        own = {k: v for k, v in own.items() if k.startswith("features.")}
        used = {k for k in state if not k.startswith(fmt.head_prefixes)}
    else:
        used = set(state)
    key_map = fmt.key_map(own)
    # a missing batch-norm counter is harmless (momentum is fixed): keep the model's
    key_map = {k: v for k, v in key_map.items()
               if not (k.endswith("num_batches_tracked") and v not in state)}
    missing = sorted(v for v in key_map.values() if v is not None and v not in state)
    unexpected = sorted(used - set(key_map.values()))
    shapes = [f"{v}: file {tuple(state[v].shape)} vs model {k} {tuple(own[k].shape)}"
              for k, v in key_map.items() if v in state and state[v].shape != own[k].shape]
    if missing or unexpected or shapes:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing key(s), e.g. {missing[:3]}")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected key(s), e.g. {unexpected[:3]}")
        if shapes:
            parts.append(f"{len(shapes)} shape mismatch(es), e.g. {shapes[:3]}")
        raise ValueError(f"weights file {path} ({fmt.name} format) does not fit the model: "
                         f"{'; '.join(parts)}; {fmt.fix}")
    model.load_state_dict({k: torch.zeros_like(own[k]) if v is None else state[v]
                           for k, v in key_map.items()}, strict=False)
    layout = getattr(getattr(model, "config", None), "layout", "keras")
    if fmt.differences and layout != fmt.layout:
        warnings.warn(ImageNetLayoutWarning(
            f"{path}: {fmt.name} weights loaded into the {layout} {fmt.architecture} layout, "
            f"which computes a different function with them: {'; '.join(fmt.differences)}; "
            f"build the model with layout={fmt.layout!r} to use these weights exactly"),
            stacklevel=2)
    return model


def _weight_format(state: Mapping[str, torch.Tensor], path: Path, source: str) -> WeightFormat:
    if source != "auto":
        if source not in WEIGHT_FORMATS:
            raise ValueError(f"source={source!r}; choose 'auto' or one of {tuple(WEIGHT_FORMATS)}")
        return WEIGHT_FORMATS[source]
    fmt = detect_format(state)
    if fmt is None:
        raise ValueError(f"weights file {path} has an unknown key layout (e.g. {sorted(state)[:3]}"
                         f"); supported: {tuple(WEIGHT_FORMATS)} (timm: vgg16, resnetv2_50, "
                         "legacy_xception only; Keras: VGG16, ResNet50V2, Xception only); pass "
                         "source=... if detection is wrong")
    return fmt


def _check_format_fits(model: nn.Module, fmt: WeightFormat, path: Path,
                       backbone_only: bool) -> None:
    what = f"weights file {path} holds {fmt.name} weights"
    if fmt.backbone and not backbone_only:
        raise ValueError(f"{what}, an ImageNet backbone without our head; pass "
                         "backbone_only=True")
    if fmt.architecture is None:
        return
    cfg = getattr(model, "config", None)
    if not isinstance(cfg, MorphologyConfig):
        raise ValueError(f"{what}, which load only into a MorphologyClassifier; {fmt.fix}")
    if cfg.architecture != fmt.architecture:
        raise ValueError(f"{what} for architecture {fmt.architecture!r}, not "
                         f"{cfg.architecture!r}; {fmt.fix}")
    if fmt.vgg_batchnorm is not None and cfg.vgg_batchnorm != fmt.vgg_batchnorm:
        raise ValueError(f"{what}, which need vgg_batchnorm={fmt.vgg_batchnorm} (the model has "
                         f"{cfg.vgg_batchnorm}); {fmt.fix}")


def build_classifier(architecture: str = "vgg16", preset: str = "paper", *,
                     weights: str | Path | None = None, backbone_only: bool = False,
                     source: str = "auto", **overrides: Any) -> MorphologyClassifier:
    """Build one classifier from a preset, optionally loading local weights.

    Parameters
    ----------
    architecture : {"vgg16", "resnet50v2", "xception"}
    preset : {"paper", "small", "tiny"}
        See :meth:`MorphologyConfig.preset`.
    weights : str or Path, optional
        Local weights file (:func:`load_weights`). Without it the network is initialised from
        scratch (Keras defaults); record that in the run, as the spec asks.
    backbone_only, source
        Passed to :func:`load_weights` (ImageNet files: ``backbone_only=True``).
    **overrides
        :class:`MorphologyConfig` fields, e.g. ``activation="relu"`` or ``width=0.5``.

    Examples
    --------
    >>> model = build_classifier("xception", "tiny")
    >>> model(torch.rand(2, 3, 64, 64)).shape
    torch.Size([2, 37])
    """
    model = MorphologyClassifier(MorphologyConfig.preset(preset, architecture, **overrides))
    if weights is not None:
        load_weights(model, weights, backbone_only=backbone_only, source=source)
    return model


def build_ensemble(preset: str = "paper", *, weights: Mapping[str, str | Path] | None = None,
                   architectures: Sequence[str] = ARCHITECTURES,
                   **overrides: Any) -> MorphologyEnsemble:
    """The authors' three-model ensemble (mean of the 37 outputs).

    ``weights`` maps an architecture name to its local weights file; architectures without an
    entry are initialised from scratch.
    """
    weights = dict(weights or {})
    unknown = sorted(set(weights) - set(architectures))
    if unknown:
        raise ValueError(f"weights given for {unknown}, which are not in {tuple(architectures)}")
    return MorphologyEnsemble([
        build_classifier(arch, preset, weights=weights.get(arch), **overrides)
        for arch in architectures
    ])
