"""xAI-CycleGAN: discriminator saliency fed into Mask CycleGAN's soft masks and generator gradients.

Per domain ``B`` (and likewise ``A``), the explainer holds ``D_B`` and ``D_B,mask`` and the losses
of *those* discriminators (the reference code cross-wires the other domain's losses: not copied):

- ``S_D`` = signed input gradient of ``D_B``'s patch map pooled to one scalar (``max``: the most
  real-looking patch, as coded; or ``mean``) at ``fake_B``; ``S_Dm`` the same for ``D_B,mask`` at
  ``fake_B ⊙ m``;
- the ramp ``c(L) = (1 − 2·min(L, 0.5))^γ`` of a discriminator's LSGAN loss (1 for a perfect D,
  0 once its loss reaches 0.5; :func:`loss_ramp`);
- the soft mask update ``m ← m + c(L_Dm)·S_Dm`` (no gradient), before the generator's pass;
- the gradient map ``M = [(1 − λ_m)·c(L_D)·S_D + λ_m·c(L_Dm)·S_Dm] / 2`` (λ_m = 0.7), applied to
  the gradient at the generator's tanh output with :func:`galaxai.guided.core.scale_gradient`
  (``g′ = g ⊙ (1 + α·M)``, α = 1): a tensor hook on that output, never a module backward hook.

As coded, ``M`` is raw and signed, so its effect depends on the image scaling (gradients of
1e-4–1e-2); by default (``normalise="max"``) it is divided by its per-sample maximum ``|M|``, so
α sets the largest relative change (``normalise="none"`` reproduces the code). The mask update
stays raw, as coded. The controls of :func:`galaxai.guided.core.apply_control` replace both
``M`` and the mask update by their mean (``constant``) or shuffle them across the batch.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from galaxai.choices import CYCLEGAN_POOLS, GUIDE_CONTROLS
from galaxai.guided.core import apply_control, derived_seed, scale_gradient

__all__ = [
    "XaiCycleGANConfig",
    "PooledPatch",
    "loss_ramp",
    "patch_saliency",
    "XaiExplainer",
]

_NORMALISE = ("none", "max")


@dataclass(frozen=True)
class XaiCycleGANConfig:
    """Settings of xAI-CycleGAN's saliency (bef56ce defaults).

    Parameters
    ----------
    alpha : float
        ``α`` of ``g′ = g ⊙ (1 + α·M)`` (1 as coded).
    lambda_mask : float
        ``λ_m``: weight of the mask discriminator's saliency in ``M`` (0.7).
    gamma : float
        Exponent of the loss ramp (0.5, "fast_start").
    pool : {"max", "mean"}
        Patch-map reduction explained by the saliency.
    normalise : {"max", "none"}
        ``M`` divided by its per-sample maximum ``|M|`` (galaxai default: spec bug 4, the raw
        gradients of 1e-4–1e-2 make the effect depend on the image scaling), or raw (as coded).
    control : {"none", "constant", "shuffled"}
        Control arms: ``M`` and the mask update by their mean, or shuffled across the batch.
    mask_update : bool
        Feed ``c(L_Dm)·S_Dm`` into the soft mask (xAI-CycleGAN); ``False`` keeps the noise mask.
    """

    alpha: float = 1.0
    lambda_mask: float = 0.7
    gamma: float = 0.5
    pool: str = "max"
    normalise: str = "max"
    control: str = "none"
    mask_update: bool = True

    def __post_init__(self) -> None:
        for name, allowed in (("pool", CYCLEGAN_POOLS), ("normalise", _NORMALISE),
                              ("control", GUIDE_CONTROLS)):
            if getattr(self, name) not in allowed:
                raise ValueError(f"XaiCycleGANConfig.{name}={getattr(self, name)!r} is not one of "
                                 f"{allowed}")
        if not np.isfinite(self.alpha) or self.alpha < 0:
            raise ValueError(f"XaiCycleGANConfig.alpha must be finite and >= 0, got {self.alpha!r}")
        if not 0 <= self.lambda_mask <= 1:
            raise ValueError(f"XaiCycleGANConfig.lambda_mask must lie in [0, 1], got "
                             f"{self.lambda_mask!r}")
        if not self.gamma > 0:
            raise ValueError(f"XaiCycleGANConfig.gamma must be > 0, got {self.gamma!r}")

    def to_dict(self) -> dict[str, Any]:
        """The settings as a JSON-able dict."""
        return asdict(self)


def loss_ramp(loss: float | torch.Tensor, gamma: float = 0.5) -> float:
    """``c(L) = (1 − 2·min(max(L, 0), 0.5))^γ``: 1 for a perfect D, 0 once its loss is ≥ 0.5.

    The form coded in xAI-CycleGAN (the printed ``min(1, 4·(min(0.5, L) − 0.5)^γ)`` takes the root
    of a negative number for γ = 0.5).
    """
    x = min(max(float(loss), 0.0), 0.5)
    return (1.0 - 2.0 * x) ** gamma


class PooledPatch(nn.Module):
    """A patch discriminator reduced to one logit per image, shape ``(B, 1)``."""

    def __init__(self, discriminator: nn.Module, pool: str = "max") -> None:
        super().__init__()
        if pool not in CYCLEGAN_POOLS:
            raise ValueError(f"pool={pool!r} is not one of {CYCLEGAN_POOLS}")
        self.discriminator, self.pool = discriminator, pool

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        patches = self.discriminator(x).flatten(1)
        return patches.amax(1, keepdim=True) if self.pool == "max" else patches.mean(1, keepdim=True)


def patch_saliency(discriminator: nn.Module, x: torch.Tensor, pool: str = "max") -> torch.Tensor:
    """Signed input gradient of the pooled patch logit at ``x`` (detached), shape of ``x``.

    Uses :func:`galaxai.explain.input_gradient` (captum ``Saliency`` with ``abs=False``).
    """
    from galaxai.explain import input_gradient

    return input_gradient(PooledPatch(discriminator, pool), x.detach()).maps


class XaiExplainer:
    """The saliency of one domain's discriminator pair, its mask update and gradient map.

    Parameters
    ----------
    config : XaiCycleGANConfig
    seed : int
        Seed of the shuffled control's permutations (combined with the iteration and domain).
    """

    def __init__(self, config: XaiCycleGANConfig, seed: int = 0) -> None:
        self.config, self.seed = config, int(seed)

    def _control(self, tensor: torch.Tensor, iteration: int, domain: int, what: int) -> torch.Tensor:
        gen = torch.Generator().manual_seed(derived_seed(self.seed, iteration, domain, what))
        return apply_control(tensor, self.config.control, gen)

    def mask_update(self, d_mask: nn.Module, masked_fake: torch.Tensor, loss_mask: float, *,
                    iteration: int, domain: int) -> torch.Tensor:
        """``c(L_Dm)·S_Dm(fake ⊙ m)``, the increment of the soft mask (after the control)."""
        if not self.config.mask_update:
            return torch.zeros_like(masked_fake)
        s = patch_saliency(d_mask, masked_fake, self.config.pool)
        return self._control(loss_ramp(loss_mask, self.config.gamma) * s, iteration, domain, 0)

    def gradient_map(self, d: nn.Module, d_mask: nn.Module, fake: torch.Tensor,
                     masked_fake: torch.Tensor, loss_d: float, loss_mask: float, *,
                     iteration: int, domain: int) -> torch.Tensor:
        """``M = [(1 − λ_m)·c(L_D)·S_D + λ_m·c(L_Dm)·S_Dm] / 2`` (normalised, then the control)."""
        cfg = self.config
        s_d = patch_saliency(d, fake, cfg.pool)
        s_dm = patch_saliency(d_mask, masked_fake, cfg.pool)
        m = ((1 - cfg.lambda_mask) * loss_ramp(loss_d, cfg.gamma) * s_d
             + cfg.lambda_mask * loss_ramp(loss_mask, cfg.gamma) * s_dm) / 2
        if cfg.normalise == "max":
            peak = m.abs().flatten(1).amax(1).clamp_min(1e-12)
            m = m / peak.view(-1, *([1] * (m.ndim - 1)))
        return self._control(m, iteration, domain, 1)

    def hook(self, output: torch.Tensor, mask: torch.Tensor):
        """:func:`galaxai.guided.core.scale_gradient` with this explainer's ``α``."""
        return scale_gradient(output, mask, self.config.alpha)
