"""Explanation-guided generator gradients: the primitive ``g′ = g ⊙ (1 + α·M)`` of xAI-GAN.

The discriminator explains the generator's fakes; the map ``M`` (the output's shape) then scales
the gradient arriving at the generator's output image during the generator's backward pass only.
The rule is installed as a *tensor* hook (:meth:`torch.Tensor.register_hook`) on that output, or
on a view of it that feeds only the discriminator (``apply_to="adversarial"``): never as a module
backward hook, which would hand over gradients with respect to the module's input and change the
meaning. A tensor hook lives and dies with one graph, so the discriminator's own step (which sees
detached fakes) is untouched.

Maps come from :mod:`galaxai.explain` (input-gradient saliency, SmoothGrad, the negative
Polarized-LRP map), computed in eval mode on the detached fakes. Per-sample gating explains only
the fakes the discriminator still rejects (``D(G(x)) < 0.5``); the others get ``M = 0`` (no
change). Normalisation is per sample by default; ``normalise="repo"`` reproduces the published
code (one min-max over the whole batch with un-explained rows at 1, and ``M = 0`` when fewer than
two fakes are explained), see ``specs/xai_guided_training.md``. Two controls replace ``M`` by a
constant of the same mean (a pure learning-rate change) or shuffle it across the batch (same
values, no information about the sample).

References
----------
Nagisetty, Graves, Scott & Ganesh (2020), "xAI-GAN: enhancing generative adversarial networks via
explainable AI systems", arXiv:2002.10438; code ``explainable-gan/XAIGAN``.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
import numpy as np
import torch
from torch import nn
from torch.utils.hooks import RemovableHandle

from galaxai.choices import GUIDE_APPLY_TO, GUIDE_CONTROLS, GUIDE_EXPLAINERS, GUIDE_NORMALISE

__all__ = [
    "derived_seed",
    "GuideConfig",
    "Guide",
    "scale_gradient",
    "explanation_map",
    "guidance_mask",
    "apply_control",
]


def derived_seed(*parts: int) -> int:
    """A ``torch.Generator`` seed (63 bits) derived from integers, e.g. (seed, iteration, branch),
    so each step's random control is reproducible and independent of the others."""
    state = np.random.SeedSequence([int(p) for p in parts])
    return int(state.generate_state(1, dtype=np.uint64)[0] >> 1)


@dataclass(frozen=True)
class GuideConfig:
    """Settings of explanation-guided generator training (xAI-GAN).

    Parameters
    ----------
    explainer : {"saliency", "smoothgrad", "polarized_lrp"}
        Source of ``M``: ``|∂s/∂x|`` of D's logit (captum ``Saliency``'s default, as xAI-GAN),
        SmoothGrad's mean absolute gradient, or the magnitude of the negative Polarized-LRP map
        ("why generated").
    alpha : float
        ``α`` of ``g′ = g ⊙ (1 + α·M)`` (0.2 in xAI-GAN: gradients scaled by 1×–1.2×).
    start : int, optional
        First global iteration (burn-in included) of guidance; ``None``: the middle of the
        adversarial phase, as xAI-GAN's halfway epoch. Never inside the burn-in.
    apply_to : {"adversarial", "total"}
        Scale only the adversarial term's gradient (a view of the output that feeds only D:
        ``g = g_pixel + g_adv ⊙ (1 + αM)``), or the output's whole gradient.
    normalise : {"sample", "repo", "none"}
        Per-sample min-max of explained rows (un-explained rows 0); the published code's batch
        min-max; or raw maps.
    gate : bool
        Explain only fakes with ``D(G(x)) < 0.5`` (the others get ``M = 0``); ``False`` explains all.
    control : {"none", "constant", "shuffled"}
        Replace ``M`` by its mean everywhere, or permute its rows across the batch (controls).
    smoothgrad_n, smoothgrad_noise : int, float
        SmoothGrad samples per fake and relative noise level.
    """

    explainer: str = "saliency"
    alpha: float = 0.2
    start: int | None = None
    apply_to: str = "adversarial"
    normalise: str = "sample"
    gate: bool = True
    control: str = "none"
    smoothgrad_n: int = 8
    smoothgrad_noise: float = 0.1

    def __post_init__(self) -> None:
        for name, allowed in (("explainer", GUIDE_EXPLAINERS), ("apply_to", GUIDE_APPLY_TO),
                              ("normalise", GUIDE_NORMALISE), ("control", GUIDE_CONTROLS)):
            if getattr(self, name) not in allowed:
                raise ValueError(f"GuideConfig.{name}={getattr(self, name)!r} is not one of {allowed}")
        if not np.isfinite(self.alpha) or self.alpha < 0:
            raise ValueError(f"GuideConfig.alpha must be a finite number >= 0, got {self.alpha!r}")
        if self.start is not None and self.start < 0:
            raise ValueError(f"GuideConfig.start must be >= 0 or None, got {self.start!r}")
        if self.smoothgrad_n < 1:
            raise ValueError(f"GuideConfig.smoothgrad_n must be >= 1, got {self.smoothgrad_n!r}")

    @property
    def label(self) -> str:
        """Short name of the arm: the explainer, with the control appended (``saliency/shuffled``)."""
        return self.explainer if self.control == "none" else f"{self.explainer}/{self.control}"

    def first_iteration(self, burn_in: int, iterations: int) -> int:
        """Resolved ``start`` for a schedule of ``burn_in`` + ``iterations``; checked against it."""
        start = burn_in + iterations // 2 if self.start is None else int(self.start)
        if start < burn_in:
            raise ValueError(f"guidance start {start} lies inside the burn-in (iterations 0-"
                             f"{burn_in - 1}); guidance only acts on adversarial steps: use a "
                             f"start >= {burn_in}")
        return start


def scale_gradient(output: torch.Tensor, mask: torch.Tensor, alpha: float) -> RemovableHandle:
    """Install ``g′ = g ⊙ (1 + α·M)`` on the gradient that reaches ``output`` in its backward.

    Parameters
    ----------
    output : torch.Tensor
        A non-leaf tensor in the generator's graph (its output image, or a view of it).
    mask : torch.Tensor
        ``M``, of ``output``'s shape; detached.
    alpha : float
        ``α``.

    Returns
    -------
    torch.utils.hooks.RemovableHandle
        The tensor hook's handle. With ``M = 0`` (or ``α = 0``) the gradient is multiplied by
        exactly 1.0, so it is unchanged bit for bit.
    """
    if not output.requires_grad:
        raise ValueError("scale_gradient: output does not require grad; hook the generator's "
                         "output in its own (generator-step) graph, not detached fakes")
    if tuple(mask.shape) != tuple(output.shape):
        raise ValueError(f"scale_gradient: mask shape {tuple(mask.shape)} differs from the output's "
                         f"{tuple(output.shape)}")
    factor = 1 + alpha * mask.detach().to(device=output.device, dtype=output.dtype)
    return output.register_hook(lambda grad: grad * factor)


def explanation_map(discriminator: nn.Module, fakes: torch.Tensor, explainer: str, *,
                    smoothgrad_n: int = 8, smoothgrad_noise: float = 0.1, seed: int = 0
                    ) -> torch.Tensor:
    """Non-negative explanation of ``fakes`` by ``discriminator``, shape ``(B, C, H, W)``.

    Reuses :mod:`galaxai.explain` (each method runs the model in eval mode and restores its
    training flags): ``saliency`` = ``|input_gradient|``, ``smoothgrad`` = SmoothGrad's mean
    absolute gradient per channel (no normalisation: :func:`guidance_mask` does it),
    ``polarized_lrp`` = the magnitude of the negative Polarized-LRP map.
    """
    from galaxai.explain import input_gradient, polarized_lrp, smoothgrad

    fakes = fakes.detach().float()
    if explainer == "saliency":
        return input_gradient(discriminator, fakes).maps.abs()
    if explainer == "smoothgrad":
        return smoothgrad(discriminator, fakes, n=smoothgrad_n, noise=smoothgrad_noise,
                          chunk=smoothgrad_n, channel_reduce=None, normalise=None, seed=seed).maps
    if explainer == "polarized_lrp":
        return polarized_lrp(discriminator, fakes, polarity="negative").maps.abs()
    raise ValueError(f"explainer={explainer!r} is not one of {GUIDE_EXPLAINERS}")


def guidance_mask(maps: torch.Tensor, explained: torch.Tensor, normalise: str) -> torch.Tensor:
    """``M`` of a batch from the maps of its explained rows.

    Parameters
    ----------
    maps : torch.Tensor
        ``(K, C, H, W)`` maps of the ``K`` explained rows, in batch order.
    explained : torch.Tensor
        ``(B,)`` booleans, ``K`` of them true.
    normalise : {"sample", "repo", "none"}
        ``sample``: each explained row min-max scaled to [0, 1] (a constant row gives 0), the other
        rows 0. ``repo`` (the xAI-GAN code): a tensor of ones, explained rows overwritten by their
        raw maps, then one min-max over the whole tensor, NaN → 0; ``M = 0`` when fewer than two
        rows are explained. ``none``: raw maps, other rows 0.
    """
    from galaxai.explain.saliency import _normalise  # the explainers' own per-image min-max

    if normalise not in GUIDE_NORMALISE:
        raise ValueError(f"normalise={normalise!r} is not one of {GUIDE_NORMALISE}")
    explained = explained.bool()
    shape = (len(explained), *maps.shape[1:])
    if len(maps) != int(explained.sum()):
        raise ValueError(f"{len(maps)} maps for {int(explained.sum())} explained rows")
    if normalise == "repo":
        if len(maps) < 2:
            return maps.new_zeros(shape)
        mask = maps.new_ones(shape)
        mask[explained] = maps
        low, high = mask.min(), mask.max()
        return torch.nan_to_num((mask - low) / (high - low), nan=0.0)
    mask = maps.new_zeros(shape)
    if len(maps):
        mask[explained] = _normalise(maps, "minmax") if normalise == "sample" else maps
    return mask


def apply_control(mask: torch.Tensor, control: str, generator: torch.Generator | None = None
                  ) -> torch.Tensor:
    """The control arms: ``"constant"`` (the mean of ``M`` everywhere), ``"shuffled"`` (rows
    permuted across the batch by ``generator``), or ``"none"`` (``M`` itself)."""
    if control == "none":
        return mask
    if control == "constant":
        return torch.full_like(mask, float(mask.mean()))
    if control == "shuffled":
        order = torch.randperm(len(mask), generator=generator).to(mask.device)
        return mask[order]
    raise ValueError(f"control={control!r} is not one of {GUIDE_CONTROLS}")


class Guide:
    """Guidance of one training run: computes ``M`` for a batch of fakes and hooks the output.

    Parameters
    ----------
    config : GuideConfig
        The settings.
    seed : int
        Seed of the shuffled control's permutations and SmoothGrad's noise (combined with the
        iteration, so a resumed run draws the same ones; the global RNG is never touched).
    """

    def __init__(self, config: GuideConfig, seed: int = 0) -> None:
        self.config, self.seed = config, int(seed)

    def mask(self, discriminator: nn.Module, fakes: torch.Tensor, logits: torch.Tensor, *,
             iteration: int, branch: int = 0) -> tuple[torch.Tensor, dict[str, float]]:
        """``M`` for ``fakes`` (detached) given D's training-step ``logits`` on them.

        Returns ``M`` and statistics: ``explained`` (share of gated rows), ``m_mean`` and
        ``seconds`` (time spent explaining).
        """
        cfg = self.config
        t0 = time.perf_counter()
        explained = (logits.detach().reshape(len(fakes)) < 0) if cfg.gate else \
            torch.ones(len(fakes), dtype=torch.bool, device=fakes.device)
        maps = fakes.new_zeros((0, *fakes.shape[1:]))
        if bool(explained.any()):
            maps = explanation_map(discriminator, fakes[explained], cfg.explainer,
                                   smoothgrad_n=cfg.smoothgrad_n,
                                   smoothgrad_noise=cfg.smoothgrad_noise,
                                   seed=self._seed(iteration, branch)).to(fakes.dtype)
        mask = guidance_mask(maps, explained, cfg.normalise)
        permutation = torch.Generator().manual_seed(self._seed(iteration, branch))
        mask = apply_control(mask, cfg.control, permutation)
        info = {"explained": float(explained.float().mean()), "m_mean": float(mask.mean()),
                "seconds": time.perf_counter() - t0}
        return mask, info

    def _seed(self, iteration: int, branch: int) -> int:
        return derived_seed(self.seed, iteration, branch)

    def hook(self, output: torch.Tensor, mask: torch.Tensor) -> RemovableHandle:
        """:func:`scale_gradient` with this guide's ``α``."""
        return scale_gradient(output, mask, self.config.alpha)
