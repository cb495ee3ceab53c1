"""Mask CycleGAN networks as coded in xAI-CycleGAN (``slobodaapl/xAI-CycleGAN-2`` at bef56ce).

The generator takes an image ``x`` in [−1, 1] and a soft mask ``m`` (≈ 1, one value per pixel and
channel). Two 1×1 convolutions (6 → 3 channels, no norm or activation) fuse the image with the
mask: the *mask path* ``concat(m⊙x, m)`` feeds an encoder–decoder ending in a tanh; the *context
path* ``concat((1 − m)⊙x, 1 − m)`` is added to that tanh output. With ``mask_space="flux"`` the
mask multiplies the image in linear flux (a nominal inverse asinh stretch of the display values,
:func:`apply_mask`) instead of the [−1, 1] pixel values, so faint sky near −1 is not perturbed as
much as the cores (the spec's galaxy note).

The discriminators are PatchGANs (4×4 kernels; stride 2, 2, 2, 1, 1; InstanceNorm from the
second layer; LeakyReLU 0.2) returning a patch map of logits (LSGAN targets 1/0).

Presets (:meth:`CycleGANConfig.preset`): ``paper`` (ngf = ndf = 64, 16 residual blocks, as
bef56ce), ``small`` (ngf = ndf = 16, 4 blocks, 32-px stamps) and ``tiny`` (ngf = ndf = 4, 1 block)
for CPUs.

References
----------
Sloboda, Hudec & Benešová (2023), "xAI-CycleGAN, a cycle-consistent generative assistive
network", arXiv:2306.15760. Wang (2022), "Mask CycleGAN", arXiv:2205.06969.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn

from galaxai.choices import CYCLEGAN_MASK_SPACES

__all__ = [
    "CycleGANConfig",
    "MaskGenerator",
    "PatchDiscriminator",
    "apply_mask",
    "build_cyclegan",
    "FLUX_STRETCH",
]

#: ``β`` of the nominal asinh stretch that :func:`apply_mask` inverts for ``mask_space="flux"``:
#: display ``d = asinh(f·sinh β)/β`` for flux ``f`` in units of the display's top.
FLUX_STRETCH = 3.0


@dataclass(frozen=True)
class CycleGANConfig:
    """Architecture of one Mask CycleGAN.

    Parameters
    ----------
    image_size : int
        Stamp side (a multiple of 8, at least 32: the discriminator's five 4×4 layers need it).
    channels : int
        Image channels (3: display RGB).
    ngf, ndf : int
        Generator / discriminator base widths.
    n_blocks : int
        Residual blocks at the generator's bottleneck (8·ngf channels).
    mask_space : {"pixel", "flux"}
        Where the mask multiplies the image: the [−1, 1] values (as coded) or linear flux.
    """

    image_size: int = 32
    channels: int = 3
    ngf: int = 64
    ndf: int = 64
    n_blocks: int = 16
    mask_space: str = "pixel"

    def __post_init__(self) -> None:
        if self.image_size < 32 or self.image_size % 8:
            raise ValueError(f"CycleGANConfig.image_size must be a multiple of 8 and >= 32, got "
                             f"{self.image_size!r}")
        for name in ("channels", "ngf", "ndf"):
            if getattr(self, name) < 1:
                raise ValueError(f"CycleGANConfig.{name} must be >= 1, got {getattr(self, name)!r}")
        if self.n_blocks < 0:
            raise ValueError(f"CycleGANConfig.n_blocks must be >= 0, got {self.n_blocks!r}")
        if self.mask_space not in CYCLEGAN_MASK_SPACES:
            raise ValueError(f"CycleGANConfig.mask_space={self.mask_space!r} is not one of "
                             f"{CYCLEGAN_MASK_SPACES}")

    @classmethod
    def preset(cls, name: str, **overrides: Any) -> "CycleGANConfig":
        """``"paper"`` (ngf = ndf = 64, 16 blocks), ``"small"`` (16, 16, 4) or ``"tiny"`` (4, 4, 1)."""
        presets = {"paper": {}, "small": {"ngf": 16, "ndf": 16, "n_blocks": 4},
                   "tiny": {"ngf": 4, "ndf": 4, "n_blocks": 1}}
        if name not in presets:
            raise ValueError(f"unknown CycleGAN preset {name!r}; choose one of {sorted(presets)}")
        return cls(**{**presets[name], **overrides})

    def to_dict(self) -> dict[str, Any]:
        """The settings as a JSON-able dict."""
        return asdict(self)


def _to_flux(x: torch.Tensor) -> torch.Tensor:
    return torch.sinh(FLUX_STRETCH * (x + 1) / 2) / math.sinh(FLUX_STRETCH)


def _from_flux(f: torch.Tensor) -> torch.Tensor:
    return 2 * torch.asinh(f * math.sinh(FLUX_STRETCH)) / FLUX_STRETCH - 1


def apply_mask(x: torch.Tensor, m: torch.Tensor, space: str = "pixel") -> torch.Tensor:
    """``m ⊙ x`` in the pixel values (``"pixel"``) or in linear flux (``"flux"``).

    ``"flux"`` maps ``x`` in [−1, 1] to flux ``f = sinh(β(x + 1)/2)/sinh β`` (the inverse of the
    asinh stretch with ``β =`` :data:`FLUX_STRETCH`), multiplies by ``m`` and maps back, so a
    mask of 1 ± ε changes faint sky by ≈ ε·(its small flux) and bright cores by ≈ ε of theirs.
    """
    if space == "pixel":
        return m * x
    if space == "flux":
        return _from_flux(m * _to_flux(x))
    raise ValueError(f"space={space!r} is not one of {CYCLEGAN_MASK_SPACES}")


class _ResidualBlock(nn.Module):
    def __init__(self, c: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.ReflectionPad2d(1), nn.Conv2d(c, c, 3), nn.InstanceNorm2d(c), nn.ReLU(True),
            nn.ReflectionPad2d(1), nn.Conv2d(c, c, 3), nn.InstanceNorm2d(c))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        return x + self.body(x)


class MaskGenerator(nn.Module):
    """Mask CycleGAN generator with xAI-CycleGAN's 1×1 fusions (see the module docstring).

    ``forward(x, m)`` returns the output image; ``forward(x, m, parts=True)`` also returns the
    tanh output of the last 7×7 convolution (the tensor that guidance hooks).
    """

    def __init__(self, cfg: CycleGANConfig) -> None:
        super().__init__()
        self.config = cfg
        c, ngf = cfg.channels, cfg.ngf
        self.fuse_mask = nn.Conv2d(2 * c, c, 1)
        self.fuse_context = nn.Conv2d(2 * c, c, 1)
        layers: list[nn.Module] = [nn.ReflectionPad2d(3), nn.Conv2d(c, ngf, 7),
                                   nn.InstanceNorm2d(ngf), nn.ReLU(True)]
        for k in range(3):
            cin = ngf * 2 ** k
            layers += [nn.Conv2d(cin, 2 * cin, 3, stride=2, padding=1), nn.InstanceNorm2d(2 * cin),
                       nn.ReLU(True)]
        layers += [_ResidualBlock(8 * ngf) for _ in range(cfg.n_blocks)]
        for k in range(3, 0, -1):
            cin = ngf * 2 ** k
            layers += [nn.ConvTranspose2d(cin, cin // 2, 3, stride=2, padding=1, output_padding=1),
                       nn.InstanceNorm2d(cin // 2), nn.ReLU(True)]
        layers += [nn.ReflectionPad2d(3), nn.Conv2d(ngf, c, 7), nn.Tanh()]
        self.body = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor, m: torch.Tensor, parts: bool = False):  # noqa: D102
        space = self.config.mask_space
        main = self.body(self.fuse_mask(torch.cat([apply_mask(x, m, space), m], 1)))
        context = self.fuse_context(torch.cat([apply_mask(x, 1 - m, space), 1 - m], 1))
        out = main + context
        return (out, main) if parts else out


class PatchDiscriminator(nn.Module):
    """PatchGAN: 4×4 convs, stride 2 → ndf (no norm), 2ndf, 4ndf (stride 2), 8ndf (stride 1),
    each with InstanceNorm and LeakyReLU 0.2, then stride 1 → 1 logit per patch."""

    def __init__(self, cfg: CycleGANConfig) -> None:
        super().__init__()
        self.config = cfg
        ndf = cfg.ndf
        layers: list[nn.Module] = [nn.Conv2d(cfg.channels, ndf, 4, 2, 1), nn.LeakyReLU(0.2, True)]
        for cin, cout, stride in ((ndf, 2 * ndf, 2), (2 * ndf, 4 * ndf, 2), (4 * ndf, 8 * ndf, 1)):
            layers += [nn.Conv2d(cin, cout, 4, stride, 1), nn.InstanceNorm2d(cout),
                       nn.LeakyReLU(0.2, True)]
        layers.append(nn.Conv2d(8 * ndf, 1, 4, 1, 1))
        self.body = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        return self.body(x)


def build_cyclegan(cfg: CycleGANConfig, seed: int = 0) -> nn.ModuleDict:
    """Both generators and the four discriminators, weights ~ N(0, 0.02), biases 0, from ``seed``.

    Keys: ``G_AB``, ``G_BA`` (A → B and B → A), ``D_A``, ``D_A_mask``, ``D_B``, ``D_B_mask``.
    The global RNG is not touched.
    """
    with torch.random.fork_rng(devices=[]):
        nets = nn.ModuleDict({"G_AB": MaskGenerator(cfg), "G_BA": MaskGenerator(cfg),
                              "D_A": PatchDiscriminator(cfg), "D_A_mask": PatchDiscriminator(cfg),
                              "D_B": PatchDiscriminator(cfg), "D_B_mask": PatchDiscriminator(cfg)})
    gen = torch.Generator().manual_seed(int(seed))
    for module in nets.modules():
        if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d)):
            nn.init.normal_(module.weight, 0.0, 0.02, generator=gen)
            nn.init.zeros_(module.bias)
    return nets
