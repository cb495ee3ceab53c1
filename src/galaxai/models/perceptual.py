"""Perceptual feature extractors for the deblender's burn-in loss.

The paper's burn-in compares frozen ImageNet VGG19 features up to ``relu5_4`` (Simonyan &
Zisserman 2015, arXiv 1409.1556; used as a content loss by SRGAN, Ledig et al. 2017). galaxai builds
torchvision's VGG19 architecture with ``weights=None`` and loads the weights **from a local file
only** (it never downloads). The file is looked up, in order, at

1. the ``weights`` argument,
2. the environment variable ``GALAXAI_VGG19_WEIGHTS``,
3. torch's hub cache: ``torch.hub.get_dir()/checkpoints/vgg19-dcbb9e9d.pth`` (where
   ``torchvision.models.vgg19(weights="IMAGENET1K_V1")`` stores it on a machine with internet).

It is read with ``torch.load(weights_only=True)``; a full ``vgg19`` state dict or one of
``features`` alone is accepted.

Without the file, backend ``"auto"`` falls back (with one warning per process) to
:class:`MultiScaleFeatures`: a fixed, seeded multi-scale extractor (pixels, Sobel gradients and
rectified random 3×3 filters on a 2× average-pooling pyramid, each scale weighted equally). It still
gives burn-in a structural loss, unlike bare pixel MSE. Every extractor has a ``backend`` string
that the trainer records in its checkpoint sidecars.
"""
from __future__ import annotations

import os
import warnings
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "PERCEPTUAL_BACKENDS",
    "VGG19_ENV_VAR",
    "VGG19_FILENAME",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "find_vgg19_weights",
    "VGG19Features",
    "MultiScaleFeatures",
    "PixelFeatures",
    "build_perceptual",
]

#: Accepted ``backend`` values of :func:`build_perceptual`.
PERCEPTUAL_BACKENDS = ("auto", "vgg19", "multiscale", "pixel")
#: Environment variable naming a local VGG19 weights file.
VGG19_ENV_VAR = "GALAXAI_VGG19_WEIGHTS"
#: File name torchvision uses for the ImageNet VGG19 weights in the hub cache.
VGG19_FILENAME = "vgg19-dcbb9e9d.pth"
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
_VGG19_RELU5_4 = 36  # features[:36] ends with the ReLU after conv5_4 (14×14×512 at 224²)

_HOW_TO = (
    f"pass weights=<path>, set {VGG19_ENV_VAR}=<path>, or copy torchvision's '{VGG19_FILENAME}' "
    "into torch.hub.get_dir()/checkpoints/ (galaxai never downloads it)"
)
_fallback_warned = False


def find_vgg19_weights(weights: str | os.PathLike | None = None) -> Path | None:
    """Locate a local VGG19 weights file, or return ``None`` if none is configured.

    Parameters
    ----------
    weights : path-like, optional
        Explicit file. If given (or if ``GALAXAI_VGG19_WEIGHTS`` is set) it must exist.

    Raises
    ------
    FileNotFoundError
        If an explicitly configured file does not exist.
    """
    for source, value in (("weights", weights), (VGG19_ENV_VAR, os.environ.get(VGG19_ENV_VAR))):
        if value:
            path = Path(value).expanduser()
            if not path.is_file():
                raise FileNotFoundError(f"VGG19 weights file {path} (from {source}) does not exist")
            return path
    cached = Path(torch.hub.get_dir()) / "checkpoints" / VGG19_FILENAME
    return cached if cached.is_file() else None


class VGG19Features(nn.Module):
    """Frozen ImageNet VGG19 ``features[:36]`` (through ``relu5_4``) loaded from a local file.

    Input ``(B, 3, H, W)`` RGB in [0, 1]; the module resizes bilinearly to 224² (unless
    ``resize=False``), normalises with the ImageNet mean/std and returns ``(B, 512, h, w)``.

    Parameters
    ----------
    weights : path-like
        Local ``.pth`` file with a torchvision ``vgg19`` (or ``vgg19().features``) state dict.
    resize : bool
        Resize to 224² as the paper does. ``False`` is much faster on CPU (80² inputs give 5×5 maps).
    """

    backend = "vgg19"

    def __init__(self, weights: str | os.PathLike, resize: bool = True) -> None:
        super().__init__()
        from torchvision.models import vgg19  # lazy: torchvision import is slow

        self.weights_path = Path(weights)
        self.resize = bool(resize)
        with torch.device("meta"):  # architecture only: no init cost, no weights, no download
            self.features = vgg19(weights=None).features[:_VGG19_RELU5_4]
        state = _read_vgg_state(self.weights_path, self.features)
        self.features.load_state_dict(state, assign=True)
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        self.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True) -> "VGG19Features":
        """Stay in eval mode: the extractor is frozen."""
        return super().train(False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        if self.resize:
            x = F.interpolate(x, size=(224, 224), mode="bilinear", align_corners=False)
        return self.features((x - self.mean) / self.std)


def _read_vgg_state(path: Path, features: nn.Module) -> dict[str, torch.Tensor]:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any failure means the file is unusable
        raise ValueError(
            f"cannot read VGG19 weights file {path}: {exc}. It must be a torchvision vgg19 state "
            f"dict ({VGG19_FILENAME}); {_HOW_TO}"
        ) from None
    if not isinstance(state, dict):
        raise ValueError(f"VGG19 weights file {path} does not hold a state dict")
    if any(k.startswith("features.") for k in state):
        state = {k[len("features."):]: v for k, v in state.items() if k.startswith("features.")}
    expected = features.state_dict()
    state = {k: v for k, v in state.items() if k in expected}
    missing = [k for k in expected if k not in state]
    wrong = [k for k in expected if k in state and tuple(state[k].shape) != tuple(expected[k].shape)]
    if missing or wrong:
        raise ValueError(
            f"VGG19 weights file {path} does not match torchvision's vgg19 features: "
            f"missing {missing}, wrong shape {wrong}"
        )
    return state


class MultiScaleFeatures(nn.Module):
    """Fixed multi-scale features: the documented fallback when no VGG19 file is available.

    At each level of a 2× average-pooling pyramid the features are the pixels, their Sobel x/y
    gradients and ``n_random`` rectified random 3×3 filters (zero-mean, unit-norm, drawn from
    ``seed``); level ``s`` is scaled by ``2**s`` so that every level contributes equally to an MSE
    over the flattened output ``(B, F)``. Input ``(B, C, H, W)`` in [0, 1]. Nothing is trained.

    Parameters
    ----------
    channels : int
        Image channels.
    levels : int
        Pyramid levels (the coarsest is ``H / 2**(levels-1)``).
    n_random : int
        Random filters per level.
    seed : int
        Seed of the random filters.
    """

    backend = "multiscale"

    def __init__(self, channels: int = 3, levels: int = 4, n_random: int = 16, seed: int = 0) -> None:
        super().__init__()
        self.levels = int(levels)
        sobel = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]]) / 8.0
        grad = torch.stack([sobel, sobel.T])  # (2, 3, 3)
        grad = grad.repeat(channels, 1, 1).unsqueeze(1)  # depthwise: (2C, 1, 3, 3)
        rand = torch.randn(n_random, channels, 3, 3, generator=torch.Generator().manual_seed(seed))
        rand = rand - rand.mean(dim=(1, 2, 3), keepdim=True)
        rand = rand / rand.flatten(1).norm(dim=1).view(-1, 1, 1, 1)
        self.channels = channels
        self.register_buffer("grad_filters", grad, persistent=False)
        self.register_buffer("random_filters", rand, persistent=False)
        self.relu = nn.ReLU()
        self.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True) -> "MultiScaleFeatures":
        """Stay in eval mode: the extractor is fixed."""
        return super().train(False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        out = []
        for level in range(self.levels):
            if level:
                x = F.avg_pool2d(x, 2, ceil_mode=True)
            pad = F.pad(x, (1, 1, 1, 1), mode="replicate")
            grads = F.conv2d(pad, self.grad_filters, groups=self.channels)
            rand = self.relu(F.conv2d(pad, self.random_filters))
            feats = torch.cat([x, grads, rand], dim=1) * float(2**level)
            out.append(feats.flatten(1))
        return torch.cat(out, dim=1)


class PixelFeatures(nn.Module):
    """Identity features: burn-in on plain pixel MSE (the spec's minimal fallback)."""

    backend = "pixel"

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        return x.flatten(1)


def build_perceptual(
    backend: str = "auto",
    weights: str | os.PathLike | None = None,
    resize: bool = True,
    channels: int = 3,
    seed: int = 0,
) -> nn.Module:
    """Build the burn-in feature extractor.

    Parameters
    ----------
    backend : {"auto", "vgg19", "multiscale", "pixel"}
        ``"vgg19"`` requires a local weights file; ``"auto"`` uses VGG19 when a file is found and
        otherwise warns once and uses :class:`MultiScaleFeatures`.
    weights : path-like, optional
        Explicit VGG19 weights file (see :func:`find_vgg19_weights`).
    resize : bool
        Resize to 224² before VGG19.
    channels : int
        Image channels (VGG19 needs 3).
    seed : int
        Seed of the multi-scale extractor's random filters.

    Returns
    -------
    torch.nn.Module
        Frozen module mapping images in [0, 1] to features, with a ``backend`` attribute
        (``"vgg19"``, ``"multiscale"`` or ``"pixel"``).
    """
    global _fallback_warned
    if backend not in PERCEPTUAL_BACKENDS:
        raise ValueError(f"unknown perceptual backend {backend!r}; choose one of {PERCEPTUAL_BACKENDS}")
    if backend == "pixel":
        return PixelFeatures()
    if backend == "multiscale":
        return MultiScaleFeatures(channels=channels, seed=seed)
    path = find_vgg19_weights(weights)
    if path is not None:
        return VGG19Features(path, resize=resize)
    if backend == "vgg19":
        raise FileNotFoundError(f"no VGG19 weights file found; {_HOW_TO}")
    if not _fallback_warned:
        _fallback_warned = True
        warnings.warn(
            "galaxai: no VGG19 weights file found, so the burn-in loss uses the fixed multi-scale "
            f"feature fallback instead of VGG19 (recorded in the checkpoint sidecar). To use VGG19, "
            f"{_HOW_TO}.",
            UserWarning,
            stacklevel=2,
        )
    return MultiScaleFeatures(channels=channels, seed=seed)
