"""Measuring explanations: region perturbation (pixel flipping) with AOPC, and relevance mass.

Faithfulness (Samek et al. 2017): split the image into ``patch x patch`` regions, remove the most
relevant regions first, record the discriminator's probability after each step and summarise the
curve by the area over the perturbation curve (AOPC); a faithful map makes the curve fall faster
than a random order does. Removed regions are filled with *sky-like noise* (each image's own
background level and noise, estimated from its border), not zeros: a black square is itself an
artefact a GAN discriminator reacts to.

Localisation: where the true cause is known (a padded band, a planted artefact), the share of
relevance mass inside that region divided by its share of the area (1 = no better than uniform).

References
----------
Samek, Binder, Montavon, Lapuschkin & Müller (2017), "Evaluating the visualization of what a deep
neural network has learned", IEEE TNNLS 28(11), 2660, arXiv:1509.06321.
Bach et al. (2015), PLoS ONE 10(7): e0130140 (pixel flipping).
Arras, Osman & Samek (2022), "CLEVR-XAI: a benchmark dataset for the ground truth evaluation of
neural network explanations", Information Fusion 81, 14 (relevance mass accuracy).
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from galaxai.explain.saliency import as_input, eval_mode, forward_logits

__all__ = ["sky_statistics", "sky_like", "pixel_flipping", "random_order_curves", "aopc",
           "relevance_mass_ratio", "relevance_mass_accuracy", "relevance_rank_accuracy"]


def sky_statistics(x: torch.Tensor, *, border: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Each image's and channel's background level and noise, from a frame around the image.

    The level is the median of a ``border``-pixel frame, the noise the frame's robust standard
    deviation (1.4826 x median absolute deviation).

    Parameters
    ----------
    x : torch.Tensor
        ``(B, C, H, W)`` images.
    border : int, optional
        Width of the frame; default ``max(1, min(H, W) // 16)`` (5 px on an 80 px stamp).

    Returns
    -------
    median, sigma : torch.Tensor
        ``(B, C)`` each.
    """
    if x.ndim != 4:
        raise ValueError(f"sky_like needs (B, C, H, W) images; got shape {tuple(x.shape)}")
    border = max(1, min(x.shape[2:]) // 16) if border is None else border
    if min(x.shape[2:]) <= 2 * border:
        raise ValueError(f"sky_like needs (B, C, H, W) images larger than 2*border; got {tuple(x.shape)}")
    frame = torch.ones(x.shape[2:], dtype=torch.bool, device=x.device)
    frame[border:-border, border:-border] = False
    pixels = x[:, :, frame]
    median = pixels.median(dim=2).values
    sigma = 1.4826 * (pixels - median[..., None]).abs().median(dim=2).values
    return median, sigma


def sky_like(x: torch.Tensor, *, border: int | None = None, seed: int = 0) -> torch.Tensor:
    """Sky-like noise images with each image's and channel's background statistics.

    ``median + sigma * N(0, 1)`` with the statistics of :func:`sky_statistics`, drawn from a
    generator seeded with ``seed``.

    Parameters
    ----------
    x : torch.Tensor
        ``(B, C, H, W)`` images.
    border : int, optional
        Width of the frame used for the statistics (see :func:`sky_statistics`).
    seed : int
        Seed of the noise.

    Returns
    -------
    torch.Tensor
        Same shape, dtype and device as ``x``.
    """
    median, sigma = sky_statistics(x, border=border)
    gen = torch.Generator().manual_seed(seed)
    noise = torch.randn(x.shape, generator=gen, dtype=x.dtype).to(x.device)
    return median[..., None, None] + sigma[..., None, None] * noise


def _region_scores(relevance: torch.Tensor, patch: int) -> torch.Tensor:
    if relevance.ndim == 4:
        relevance = relevance.sum(1)
    batch, height, width = relevance.shape
    if height % patch or width % patch:
        raise ValueError(f"image size {height}x{width} is not a multiple of patch={patch}")
    regions = relevance.reshape(batch, height // patch, patch, width // patch, patch)
    return regions.sum(dim=(2, 4)).reshape(batch, -1)


def _fill(x: torch.Tensor, fill: str | Callable[[torch.Tensor], torch.Tensor], seed: int) -> torch.Tensor:
    if callable(fill):
        values = torch.as_tensor(fill(x), dtype=x.dtype, device=x.device)
        return values.expand_as(x)
    if fill == "sky":
        return sky_like(x, seed=seed)
    if fill == "zero":
        return torch.zeros_like(x)
    raise ValueError(f"fill={fill!r}; use 'sky', 'zero' or a callable images -> fill values")


def _curves_for_orders(model, x, orders, patch, steps, fill_values, target, chunk):
    batch, _, height, width = x.shape
    cols = width // patch
    curves = torch.empty(batch, steps + 1, dtype=x.dtype)
    with eval_mode(model), torch.no_grad():
        for b in range(batch):
            region_mask = torch.zeros(steps + 1, height // patch, cols, dtype=torch.bool, device=x.device)
            for k in range(1, steps + 1):
                region_mask[k] = region_mask[k - 1]
                idx = int(orders[b, k - 1])
                region_mask[k, idx // cols, idx % cols] = True
            pixel_mask = region_mask.repeat_interleave(patch, 1).repeat_interleave(patch, 2)[:, None]
            perturbed = torch.where(pixel_mask, fill_values[b : b + 1], x[b : b + 1])
            tgt = None if target is None else torch.as_tensor(target).reshape(-1).expand(batch)[b]
            probs = [torch.sigmoid(forward_logits(model, perturbed[i : i + chunk], tgt))
                     for i in range(0, steps + 1, chunk)]
            curves[b] = torch.cat(probs).cpu()
    return curves


def pixel_flipping(
    model: nn.Module,
    x: Any,
    relevance: Any,
    patch: int = 4,
    steps: int | None = None,
    fill: str | Callable[[torch.Tensor], torch.Tensor] = "sky",
    seed: int = 0,
    target: Any = None,
    chunk: int = 64,
    order: str = "morf",
) -> torch.Tensor:
    """Region-perturbation curves of the model's probability, most relevant regions first.

    Parameters
    ----------
    model : torch.nn.Module
        Discriminator (or classifier with ``target``); evaluated in eval mode.
    x : array-like
        ``(B, C, H, W)`` images; ``H`` and ``W`` must be multiples of ``patch``.
    relevance : array-like
        ``(B, C, H, W)`` or ``(B, H, W)`` maps. Regions are ranked by their *summed* relevance as
        given: Polarized-LRP maps are non-negative; for signed maps pass ``abs()`` to rank by
        magnitude, or the raw map to rank by evidence for the score.
    patch : int
        Side of the square regions (Samek et al. 2017 use 9x9 on 224 px images; 4 suits 80 px).
    steps : int, optional
        Number of regions removed (default: all).
    fill : {"sky", "zero"} or callable
        Replacement values: sky-like noise (:func:`sky_like`, default), zeros, or a function
        ``images -> fill images``.
    seed : int
        Seed of the sky-like fill.
    target : int, optional
        Output index for multi-output models.
    chunk : int
        Perturbed images per forward pass.
    order : {"morf", "lerf"}
        ``morf``: most relevant region first (Samek et al. 2017); ``lerf``: least relevant first
        (a faithful map then leaves the probability nearly unchanged). Ties keep the region order
        (row-major) in both.

    Returns
    -------
    torch.Tensor
        ``(B, steps + 1)`` probabilities (sigmoid of the logit); column 0 is the clean input.
    """
    if order not in ("morf", "lerf"):
        raise ValueError(f"order={order!r}; use 'morf' (most relevant first) or 'lerf'")
    x = as_input(model, x)
    scores = _region_scores(torch.as_tensor(relevance).to(x.device, x.dtype), patch)
    if scores.shape[0] != x.shape[0]:
        raise ValueError(f"relevance has {scores.shape[0]} maps for {x.shape[0]} images")
    steps = scores.shape[1] if steps is None else min(int(steps), scores.shape[1])
    orders = scores.argsort(dim=1, descending=order == "morf", stable=True)
    return _curves_for_orders(model, x, orders, patch, steps, _fill(x, fill, seed), target, chunk)


def random_order_curves(
    model: nn.Module,
    x: Any,
    patch: int = 4,
    steps: int | None = None,
    fill: str | Callable[[torch.Tensor], torch.Tensor] = "sky",
    seed: int = 0,
    repeats: int = 4,
    target: Any = None,
    chunk: int = 64,
) -> torch.Tensor:
    """Mean perturbation curves over ``repeats`` random region orders (the AOPC reference).

    Same parameters and return shape as :func:`pixel_flipping`; the region orders and the fill
    are seeded with ``seed``.
    """
    x = as_input(model, x)
    n_regions = (x.shape[2] // patch) * (x.shape[3] // patch)
    _region_scores(torch.zeros(x.shape[0], *x.shape[2:]), patch)  # validates the patch size
    steps = n_regions if steps is None else min(int(steps), n_regions)
    gen = torch.Generator().manual_seed(seed)
    fill_values = _fill(x, fill, seed)
    total = torch.zeros(x.shape[0], steps + 1, dtype=x.dtype)
    for _ in range(repeats):
        orders = torch.stack([torch.randperm(n_regions, generator=gen) for _ in range(x.shape[0])])
        total += _curves_for_orders(model, x, orders, patch, steps, fill_values, target, chunk)
    return total / repeats


def aopc(curves: torch.Tensor, polarity: Any = None) -> torch.Tensor:
    """Area over the perturbation curve, ``1/(L+1) sum_k (f(x^0) - f(x^k))`` per sample.

    Parameters
    ----------
    curves : torch.Tensor
        ``(B, L + 1)`` curves from :func:`pixel_flipping` (column 0 = clean input).
    polarity : array-like, optional
        ``(B,)`` +-1. For a negative (``"why generated"``) map, removing relevant regions should
        *raise* the probability; multiplying by the polarity makes larger = more faithful for
        both maps.

    Returns
    -------
    torch.Tensor
        ``(B,)`` AOPC values (Samek et al. 2017, Eq. 12).
    """
    curves = torch.as_tensor(curves)
    if curves.ndim != 2 or curves.shape[1] < 2:
        raise ValueError(f"curves must be (B, L+1) with L >= 1; got {tuple(curves.shape)}")
    drop = (curves[:, :1] - curves).mean(dim=1)
    if polarity is not None:
        drop = drop * torch.as_tensor(polarity, dtype=drop.dtype).reshape(-1)
    return drop


def _masses(relevance: Any, mask: Any, mode: str) -> tuple[torch.Tensor, torch.Tensor, bool]:
    """``(B, H*W)`` relevance masses after ``mode`` and the ``(B, H*W)`` boolean masks."""
    if mode not in ("abs", "positive"):
        raise ValueError(f"mode={mode!r}; use 'abs' or 'positive'")
    rel = torch.as_tensor(relevance).double()
    single = rel.ndim == 2
    if single:
        rel = rel[None]
    mass = rel.abs() if mode == "abs" else rel.clamp(min=0)
    if mass.ndim == 4:
        mass = mass.sum(1)
    m = torch.as_tensor(mask).to(torch.bool)
    if m.ndim == 4:
        m = m[:, 0]
    m = m.expand_as(mass)
    if not m.reshape(m.shape[0], -1).any(1).all():
        raise ValueError("mask is empty for at least one map; the ratio is undefined")
    return mass.reshape(mass.shape[0], -1), m.reshape(m.shape[0], -1), single


def relevance_mass_accuracy(relevance: Any, mask: Any, mode: str = "abs") -> torch.Tensor:
    """Share of the relevance mass inside ``mask``: ``sum_{mask} r / sum_{all} r``.

    The relevance mass accuracy of Arras, Osman & Samek (2022); a uniform map scores the mask's
    share of the area. Parameters as :func:`relevance_mass_ratio`.

    Returns
    -------
    torch.Tensor
        ``(B,)`` shares in [0, 1] (0-d for a single map); NaN where a map has no mass.
    """
    mass, m, single = _masses(relevance, mask, mode)
    inside, total = (mass * m).sum(1), mass.sum(1)
    share = torch.where(total > 0, inside / total, torch.nan)
    return share[0] if single else share


def relevance_mass_ratio(relevance: Any, mask: Any, mode: str = "abs") -> torch.Tensor:
    """Share of relevance mass inside ``mask`` divided by the mask's share of the area.

    ``ratio = (sum_{mask} r / sum_{all} r) / (|mask| / |image|)``; 1 means no better than a
    uniform map, ``1 / area_share`` means all relevance lies inside the mask.

    Parameters
    ----------
    relevance : array-like
        ``(B, C, H, W)``, ``(B, H, W)`` or ``(H, W)``; channels are summed after ``mode``.
    mask : array-like of bool
        ``(H, W)`` shared by all maps, or ``(B, H, W)`` / ``(B, 1, H, W)`` per map.
    mode : {"abs", "positive"}
        ``abs``: mass of ``|r|`` (signed maps; evidence either way counts). ``positive``: mass of
        ``max(r, 0)``, for maps whose sign carries the polarity (e.g. ``Attribution.signed()``
        times the polarity, or Polarized-LRP maps, which are non-negative anyway).

    Returns
    -------
    torch.Tensor
        ``(B,)`` ratios (a 0-d tensor for a single ``(H, W)`` map); NaN where a map has no mass.
    """
    _, m, single = _masses(relevance, mask, mode)
    ratio = relevance_mass_accuracy(relevance, mask, mode).reshape(-1) / m.double().mean(1)
    return ratio[0] if single else ratio


def relevance_rank_accuracy(relevance: Any, mask: Any, mode: str = "abs") -> torch.Tensor:
    """Share of the ``K = |mask|`` highest-relevance pixels that lie inside ``mask``.

    The relevance rank accuracy of Arras, Osman & Samek (2022); a random map scores the mask's
    share of the area in expectation. Ties at the K-th value are broken by pixel index (row-major),
    and a map with no mass scores NaN. Parameters as :func:`relevance_mass_ratio`.

    Returns
    -------
    torch.Tensor
        ``(B,)`` accuracies in [0, 1] (0-d for a single map).
    """
    mass, m, single = _masses(relevance, mask, mode)
    order = mass.argsort(dim=1, descending=True, stable=True)
    k = m.sum(1)
    ranks = torch.arange(mass.shape[1]).expand_as(order)
    top = ranks < k[:, None]
    hits = (m.gather(1, order) & top).sum(1).double()
    acc = torch.where(mass.sum(1) > 0, hits / k, torch.nan)
    return acc[0] if single else acc
