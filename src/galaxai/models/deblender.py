"""The Galaxy Deblender GAN: a branched SRResNet generator and the SRGAN discriminator.

Reiman & Göhre (2019, MNRAS 485, 2617; arXiv 1810.10098) deblend two overlapping galaxies with a
generator that shares a residual trunk and then splits into two unshared branches, one per galaxy,
trained against an SRGAN discriminator (Ledig et al. 2017, arXiv 1609.04802). This module builds
both networks exactly as described in ``specs/deblender_gan.md`` with the PyTorch port choices of
that spec: per-channel PReLU initialised at 0, ``BatchNorm2d(momentum=0.01, eps=1e-3)``,
Glorot-uniform weights with zero biases, and ``padding=k // 2``.

Every activation is an ``nn.Module`` (never a functional call inside ``forward``) so that forward
hooks, e.g. LRP rules in ``galaxai.explain``, see every layer.

Examples
--------
>>> cfg = DeblenderConfig.preset("tiny")
>>> g, d = build_generator(cfg), build_discriminator(cfg)
>>> a, b = g(torch.rand(2, 3, cfg.image_size, cfg.image_size))
>>> d(a).shape
torch.Size([2, 1])
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import nn

__all__ = [
    "DeblenderConfig",
    "BLOCK_ORDERS",
    "ResidualBlock",
    "GeneratorBranch",
    "CentreOffsets",
    "DeblenderGenerator",
    "Discriminator",
    "build_generator",
    "build_discriminator",
    "count_parameters",
    "config_hash",
    "to_network",
    "from_network",
]

#: Orders of the layers inside a discriminator conv block.
BLOCK_ORDERS = ("conv-bn-act", "conv-act-bn")


@dataclass(frozen=True)
class DeblenderConfig:
    """Architecture of the deblender generator and discriminator.

    Parameters
    ----------
    image_size : int
        Height and width of the square stamps (80 in the paper). Only the discriminator's first
        dense layer depends on it; the generator is fully convolutional.
    channels : int
        Image channels (3: g, r, i composites as RGB).
    g_filters : int
        Width of the generator trunk (64 in the paper).
    n_shared : int
        ``M``, residual blocks in the shared root (10).
    n_branch : int
        ``N``, residual blocks in each unshared branch (6).
    head_kernel : int
        Kernel size of the generator's first and last convolutions (9).
    d_filters : tuple of int
        Filters of the discriminator's conv0 followed by its seven conv blocks.
    d_strides : tuple of int
        Strides of the seven conv blocks (conv0 has stride 1).
    d_dense : int
        Width of the first dense layer (1024).
    d_block_order : {"conv-bn-act", "conv-act-bn"}
        Layer order inside a discriminator block: the paper's figure (default) or the code's.
    leaky_slope : float
        Negative slope of the discriminator's LeakyReLUs (0.2; the original code used 0.3).
    bn_momentum, bn_eps : float
        BatchNorm settings in PyTorch's convention (Keras momentum 0.99 is PyTorch 0.01).
    output_skip : bool
        Not in the paper (``False`` there). Each branch outputs ``tanh(atanh(2x - 1) + r)``: a
        correction ``r`` of the blend ``x`` in tanh space instead of an image from scratch, with
        the branches' last convolutions initialised at zero so training starts from
        copy-the-blend. Outputs stay in (-1, 1); the discriminator is unchanged.
    shared_dilations : tuple of int
        Not in the paper (empty there: every convolution undilated). One dilation per shared
        residual block (``len == n_shared``): a block of dilation ``d`` adds ``4d`` pixels to the
        receptive field instead of 4, at the same cost and parameter count, so a narrow generator
        can see a whole large galaxy (the ``small`` trunk sees 39 px; galaxies reach 30 px
        half-light radius).
    coord_channels : bool
        Not in the paper (``False`` there). The generator's head also reads two planes holding
        each pixel's column and row offset from the stamp centre, scaled to [-1, 1] (CoordConv,
        Liu et al. 2018, arXiv 1807.03247). Galaxy A is by definition the *centred* one, so whether
        a bright pixel 20 px out is A's outskirts or B depends on where the centre is, which a
        translation-equivariant network with a receptive field smaller than the stamp cannot
        know. The blend's three channels are unchanged; D is unchanged.
    skip_gate : bool
        With ``output_skip``: each branch also predicts a per-pixel gate ``m = sigmoid(g)`` and
        outputs ``m · tanh(r) + (1 − m) · (2x − 1)``, so a pixel is the blend *exactly* where
        ``m → 0`` and a new value where ``m → 1`` (the gate starts at ``sigmoid(−6)``). Plain
        ``output_skip`` must hold ``r`` at exactly 0 to copy a pixel, and every small residual
        then perturbs the sky around the galaxies.
    """

    image_size: int = 80
    channels: int = 3
    g_filters: int = 64
    n_shared: int = 10
    n_branch: int = 6
    head_kernel: int = 9
    d_filters: tuple[int, ...] = (64, 64, 128, 128, 256, 256, 512, 512)
    d_strides: tuple[int, ...] = (2, 1, 2, 1, 2, 1, 2)
    d_dense: int = 1024
    d_block_order: str = "conv-bn-act"
    leaky_slope: float = 0.2
    bn_momentum: float = 0.01
    bn_eps: float = 1e-3
    output_skip: bool = False
    shared_dilations: tuple[int, ...] = ()
    coord_channels: bool = False
    skip_gate: bool = False

    PRESETS: ClassVar[tuple[str, ...]] = ("paper", "small", "tiny")

    def __post_init__(self) -> None:
        if self.skip_gate and not self.output_skip:
            raise ValueError("skip_gate=True needs output_skip=True (the gate mixes in the blend)")
        if self.d_block_order not in BLOCK_ORDERS:
            raise ValueError(
                f"d_block_order={self.d_block_order!r} is not one of {BLOCK_ORDERS}"
            )
        if len(self.d_filters) != len(self.d_strides) + 1:
            raise ValueError(
                f"d_filters needs one entry for conv0 plus one per block ({len(self.d_strides) + 1}),"
                f" got {len(self.d_filters)}"
            )
        for name in ("image_size", "channels", "g_filters", "head_kernel", "d_dense"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be a positive integer, got {getattr(self, name)!r}")
        if self.n_shared < 0 or self.n_branch < 0:
            raise ValueError("n_shared and n_branch must be >= 0")
        if self.shared_dilations and (len(self.shared_dilations) != self.n_shared
                                      or min(self.shared_dilations) < 1):
            raise ValueError(f"shared_dilations needs one dilation >= 1 per shared block "
                             f"({self.n_shared}), got {self.shared_dilations!r}")
        if self.head_kernel % 2 != 1:
            raise ValueError(f"head_kernel must be odd for 'same' padding, got {self.head_kernel}")

    @classmethod
    def preset(cls, name: str, **overrides: Any) -> "DeblenderConfig":
        """Return the named preset (``paper``, ``small`` or ``tiny``), optionally overridden.

        ``paper`` is the published network (generator 1,715,718 parameters, discriminator
        17,798,337). ``small`` is sized for about an hour of training on a 2-core CPU; ``tiny`` is
        for tests.
        """
        presets = {
            "paper": cls(),
            # Sized with torch.utils.flop_counter: ~27 GFLOP per adversarial iteration at batch
            # 8 (the paper preset: ~2.6 TFLOP at batch 16). A 2-core CPU sustains ~10 GFLOP/s on
            # these narrow convolutions; measured: 2,000 iterations in 42 min on one thread.
            # Two departures from the paper make ~2,000 CPU iterations enough (measured on the
            # 2,560-galaxy pool, held-out PSNR): without output_skip the generator was still
            # below copy-the-blend after 1,600 iterations (21.9 vs 23.2 dB); and Keras' BN
            # momentum (0.01 here) leaves the running variance ~0.99^n of its initial 1, so
            # eval-mode outputs lagged batch-statistic ones by ~7 dB after 300 iterations.
            "small": cls(
                g_filters=16,
                n_shared=3,
                n_branch=2,
                d_filters=(16, 16, 32, 32, 64, 64, 128, 128),
                d_dense=128,
                output_skip=True,
                bn_momentum=0.1,
            ),
            "tiny": cls(
                g_filters=8,
                n_shared=1,
                n_branch=1,
                d_filters=(8, 8, 16, 16, 16, 16, 32, 32),
                d_dense=32,
            ),
        }
        if name not in presets:
            raise ValueError(f"unknown DeblenderConfig preset {name!r}; choose one of {cls.PRESETS}")
        return dataclasses.replace(presets[name], **overrides)

    def d_feature_size(self) -> int:
        """Spatial size of the discriminator's last feature map (5 for 80×80 in the paper)."""
        size = self.image_size
        for stride in self.d_strides:
            size = (size + 2 * 1 - 3) // stride + 1
        return size


def config_hash(cfg: Any) -> str:
    """Short stable hash (16 hex digits) of a dataclass config's values (or of a mapping)."""
    values = cfg if isinstance(cfg, dict) else dataclasses.asdict(cfg)
    payload = json.dumps(values, sort_keys=True, default=str)
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()[:16]


def _bn(c: int, cfg: DeblenderConfig) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(c, momentum=cfg.bn_momentum, eps=cfg.bn_eps)


def _conv(cin: int, cout: int, k: int, stride: int = 1, dilation: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, k, stride=stride, padding=dilation * (k // 2), dilation=dilation)


class ResidualBlock(nn.Module):
    """SRResNet block: conv3×3, BN, PReLU, conv3×3, BN, plus the block input (both convolutions
    dilated by ``dilation``)."""

    def __init__(self, channels: int, cfg: DeblenderConfig, dilation: int = 1) -> None:
        super().__init__()
        self.conv1 = _conv(channels, channels, 3, dilation=dilation)
        self.bn1 = _bn(channels, cfg)
        self.act = nn.PReLU(channels, init=0.0)
        self.conv2 = _conv(channels, channels, 3, dilation=dilation)
        self.bn2 = _bn(channels, cfg)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        return x + self.bn2(self.conv2(self.act(self.bn1(self.conv1(x)))))


#: Initial gate logit of ``skip_gate`` branches.
_GATE_INIT = -6.0

#: Largest |2x - 1| fed to atanh by ``output_skip`` (atanh(0.999) = 3.8): finite at x = 0 or 1.
_SKIP_CLIP = 0.999


class GeneratorBranch(nn.Module):
    """One unshared branch: ``N`` residual blocks, then conv 9×9 to the image channels and tanh.

    With ``cfg.output_skip`` the conv output is added to ``atanh(2x - 1)`` of the blend ``x``
    before the tanh; with ``cfg.skip_gate`` the conv has one more output, the logit of a
    per-pixel gate between a new value and the blend itself.
    """

    def __init__(self, cfg: DeblenderConfig) -> None:
        super().__init__()
        f = cfg.g_filters
        self.output_skip = cfg.output_skip
        self.skip_gate = cfg.skip_gate
        self.blocks = nn.Sequential(*[ResidualBlock(f, cfg) for _ in range(cfg.n_branch)])
        self.conv = _conv(f, cfg.channels + int(cfg.skip_gate), cfg.head_kernel)
        self.act = nn.Tanh()

    def forward(self, trunk: torch.Tensor, blend: torch.Tensor | None = None) -> torch.Tensor:
        """Branch image in [-1, 1]; ``blend`` (in [0, 1]) is required with ``output_skip``."""
        r = self.conv(self.blocks(trunk))
        if self.output_skip:
            if blend is None:
                raise ValueError("this branch was built with output_skip=True and needs the blend")
            x = (2 * blend - 1).clamp(-_SKIP_CLIP, _SKIP_CLIP)
            if self.skip_gate:
                gate = torch.sigmoid(r[:, -1:])
                return gate * self.act(r[:, :-1]) + (1 - gate) * x
            r = r + torch.atanh(x)
        return self.act(r)


class CentreOffsets(nn.Module):
    """Append two planes to ``(B, C, H, W)`` images: each pixel's column and row offset from the
    image centre divided by half the width and height (so in [-1, 1] at any size)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        b, _, h, w = x.shape
        rows = (torch.arange(h, device=x.device, dtype=x.dtype) - (h - 1) / 2) / (h / 2)
        cols = (torch.arange(w, device=x.device, dtype=x.dtype) - (w - 1) / 2) / (w / 2)
        grid = torch.stack([cols.expand(h, w), rows[:, None].expand(h, w)])
        return torch.cat([x, grid.expand(b, -1, -1, -1)], dim=1)


class DeblenderGenerator(nn.Module):
    """Branched SRResNet generator without upsampling.

    Input: blends ``(B, 3, H, W)`` in [0, 1]. Output: a tuple ``(g1, g2)`` of ``(B, 3, H, W)``
    tanh images in [-1, 1]; ``g1`` is the centred galaxy A, ``g2`` the other galaxy B.
    """

    def __init__(self, cfg: DeblenderConfig) -> None:
        super().__init__()
        self.config = cfg
        f = cfg.g_filters
        # the head's input: the blend, plus centre offsets with coord_channels (no parameters, so
        # state-dict keys are those of a network without them; only head.0's shape differs)
        self.inputs = CentreOffsets() if cfg.coord_channels else nn.Identity()
        extra = 2 if cfg.coord_channels else 0
        self.head = nn.Sequential(_conv(cfg.channels + extra, f, cfg.head_kernel),
                                  nn.PReLU(f, init=0.0))
        dilations = cfg.shared_dilations or (1,) * cfg.n_shared
        self.shared = nn.Sequential(*[ResidualBlock(f, cfg, d) for d in dilations])
        self.tail = nn.Sequential(_conv(f, f, 3), _bn(f, cfg))
        # The trunk's output (after the long skip) as a module, so that forward hooks (dissection,
        # LRP) can read and rewrite it; it has no parameters, so state dicts are unchanged.
        self.trunk_out = nn.Identity()
        self.branches = nn.ModuleList([GeneratorBranch(cfg), GeneratorBranch(cfg)])

    def trunk(self, x: torch.Tensor) -> torch.Tensor:
        """The shared trunk ``T = tail(shared(S)) + S`` with ``S`` the head output."""
        skip = self.head(self.inputs(x))
        return self.trunk_out(self.tail(self.shared(skip)) + skip)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:  # noqa: D102
        t = self.trunk(x)
        return self.branches[0](t, x), self.branches[1](t, x)


class Discriminator(nn.Module):
    """SRGAN discriminator returning one logit per image, shape ``(B, 1)``.

    conv0 (3×3, stride 1, LeakyReLU, no BN), seven 3×3 conv blocks with BN and LeakyReLU in the
    configured order, then flatten → dense → LeakyReLU → dense 1. The sigmoid lives in the loss.
    """

    def __init__(self, cfg: DeblenderConfig) -> None:
        super().__init__()
        self.config = cfg
        f = cfg.d_filters
        layers: list[nn.Module] = [_conv(cfg.channels, f[0], 3), nn.LeakyReLU(cfg.leaky_slope)]
        for cin, cout, stride in zip(f[:-1], f[1:], cfg.d_strides):
            conv = _conv(cin, cout, 3, stride)
            act = nn.LeakyReLU(cfg.leaky_slope)
            bn = _bn(cout, cfg)
            order = (conv, bn, act) if cfg.d_block_order == "conv-bn-act" else (conv, act, bn)
            layers.append(nn.Sequential(*order))
        self.features = nn.Sequential(*layers)
        flat = f[-1] * cfg.d_feature_size() ** 2
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(flat, cfg.d_dense),
            nn.LeakyReLU(cfg.leaky_slope),
            nn.Linear(cfg.d_dense, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        return self.classifier(self.features(x))


def _init_weights(module: nn.Module, generator: torch.Generator) -> None:
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            nn.init.xavier_uniform_(m.weight, generator=generator)
            nn.init.zeros_(m.bias)


def _build(cls: type[nn.Module], cfg: DeblenderConfig, seed: int) -> nn.Module:
    # fork_rng: PyTorch's default init draws from the global RNG before we re-initialise; keep the
    # caller's global RNG state untouched so building a model never shifts other random streams.
    with torch.random.fork_rng(devices=[]):
        model = cls(cfg)
    _init_weights(model, torch.Generator().manual_seed(int(seed)))
    return model


def build_generator(cfg: DeblenderConfig | str = "paper", seed: int = 0) -> DeblenderGenerator:
    """A generator with Glorot-uniform weights and zero biases drawn from ``seed``.

    Parameters
    ----------
    cfg : DeblenderConfig or str
        Architecture, or a preset name.
    seed : int
        Seed of the weight initialisation (the global RNG is not touched).
    """
    if isinstance(cfg, str):
        cfg = DeblenderConfig.preset(cfg)
    generator = _build(DeblenderGenerator, cfg, seed)
    if cfg.output_skip:  # start from copy-the-blend: each branch's correction is zero
        for branch in generator.branches:
            nn.init.zeros_(branch.conv.weight)
            if cfg.skip_gate:  # ... and its gate nearly closed: sigmoid(-6) = 0.25 %
                nn.init.constant_(branch.conv.bias[-1:], _GATE_INIT)
    return generator  # type: ignore[return-value]


def build_discriminator(cfg: DeblenderConfig | str = "paper", seed: int = 1) -> Discriminator:
    """A discriminator with Glorot-uniform weights and zero biases drawn from ``seed``.

    Parameters
    ----------
    cfg : DeblenderConfig or str
        Architecture, or a preset name.
    seed : int
        Seed of the weight initialisation (the global RNG is not touched).
    """
    if isinstance(cfg, str):
        cfg = DeblenderConfig.preset(cfg)
    return _build(Discriminator, cfg, seed)  # type: ignore[return-value]


def to_network(x):
    """Display images in [0, 1] to the networks' range [−1, 1] (``2x − 1``; NumPy or torch)."""
    return x * 2 - 1


def from_network(v):
    """Network outputs in [−1, 1] (tanh) back to display values in [0, 1] (``(v + 1) / 2``)."""
    return (v + 1) / 2


def count_parameters(module: nn.Module) -> int:
    """Number of trainable parameters (BatchNorm running statistics are buffers, not counted)."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad)
