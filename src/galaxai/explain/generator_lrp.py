"""Generator-side LRP: which input pixels an image-to-image generator used for a region of its output.

For a generator ``G`` mapping a blend ``x`` (``(B, C, H, W)``) to an image, or to a tuple of images
(the deblender's two branches), :func:`generator_lrp` explains the quantity

    f(x) = sum_{c, h, w} m_{hw} w_c y_{chw},    y = G(x)[branch] in network range (tanh, [-1, 1])

with ``m`` a region mask (default the whole image) and ``w`` a channel reduction (default all
channels, weight 1). The start relevance is ``R_out = m w y`` (each output element's own value, as
LRP does for a regression output), propagated back to the blend's pixels with zennit rules.

How relevance flows
-------------------
The generator runs through the same machinery as the discriminator explainers
(:mod:`galaxai.explain.lrp`): a snapshot, BatchNorm merged into the neighbouring convolution
(:class:`~galaxai.explain.lrp.DataflowMergeBatchNorm`), a zennit composite on the layers and the
op guard on operations written in forward code. Per part of the deblender:

* Conv layers: the chosen rule (default LRP-epsilon, epsilon = 0.01, biases in the denominators).
* PReLU and the output tanh: pass-through (relevance of an activation's output is handed to its
  input unchanged, the usual LRP treatment of element-wise non-linearities).
* Residual additions ``a + b`` (SRResNet blocks, the long trunk skip): the LRP-0 sum split
  ``R_a = a / (a + b) R`` (zennit's ``Norm``), stabiliser 1e-12.
* The output skip (``output_skip``: ``tanh(r + atanh(clamp(2x - 1)))``): ``r + s`` is a sum node
  like a residual addition, so the skip term ``s`` receives ``s / (r + s) R``. ``s`` is an
  element-wise function of the blend pixel at the same position and channel (``2x`` a positive
  scaling, ``- 1`` a constant summand that absorbs nothing, ``clamp`` and ``atanh`` monotone
  element-wise maps passed through), so the skip's relevance goes to *that pixel* of the blend.
  The alternative, treating ``s`` as a bias, would discard the part of the output that is the
  blend copied through, which for a copy-the-blend initialisation is all of it. Because the start
  relevance is ``tanh(z)`` and ``|tanh(z) / z| <= 1``, the split at ``z = r + s`` stays bounded
  even where ``r`` and ``s`` nearly cancel (each side gets at most ``|r|`` or ``|s|``).
* ``skip_gate`` (a product of two relevance-carrying terms) has no rule and is refused.

Conservation: without biases (conv biases and merged BatchNorm shifts) and with LRP-0, the input
relevance sums to ``f`` up to the stabilisers (relevance reaching a neuron whose pre-activation
is exactly 0 is lost). The skip's constant is dropped as a summand, so ``2x - 1`` routes all its
relevance to ``2x``, also where the blend is exactly 0. With biases, each convolution's bias keeps
``b_j / z_j`` of its output relevance, and epsilon keeps ``eps / (z_j + eps)``; the tests check
both regimes and the deblender numbers are in the README.

Reporting: :func:`wrong_galaxy_share` tells, over a set of blends with truth footprints, which
share of each branch's positive relevance comes from the *other* galaxy's footprint, binned by
separation.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from galaxai.explain.lrp.baselines import LRP_RULES
from galaxai.explain.lrp.explainers import _Explainer
from galaxai.explain.lrp.guard import _Guard
from galaxai.explain.lrp.layers import _EPS, UnsupportedLayerError
from galaxai.explain.saliency import Attribution, as_input

__all__ = ["GeneratorLRP", "generator_lrp", "footprint", "wrong_galaxy_share"]

_BRANCH_NAMES = {"A": 0, "B": 1, "a": 0, "b": 1}


class _Selected(nn.Module):
    """The generator with one of its outputs selected (the explained network)."""

    def __init__(self, generator: nn.Module, branch: int | None) -> None:
        super().__init__()
        self.generator, self.branch = generator, branch

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        out = self.generator(x)
        return out if self.branch is None else out[self.branch]


def _branch_index(branch: Any) -> int | None:
    if branch is None:
        return None
    if isinstance(branch, str):
        if branch not in _BRANCH_NAMES:
            raise ValueError(f"branch={branch!r}; use 0/1, 'A'/'B', or None for a generator "
                             "returning one image")
        return _BRANCH_NAMES[branch]
    if isinstance(branch, (int, np.integer)) and not isinstance(branch, bool) and branch >= 0:
        return int(branch)
    raise ValueError(f"branch={branch!r}; use 0/1, 'A'/'B', or None for a generator returning "
                     "one image")


def _check_outputs(out: Any, branch: int | None) -> None:
    """Check that ``branch`` fits what the generator returns (raise naming ``branch``)."""
    if isinstance(out, (tuple, list)):
        if branch is None:
            raise ValueError(f"the generator returns {len(out)} outputs; pass branch=0/1 (or "
                             "'A'/'B') to choose the one to explain")
        if branch >= len(out):
            raise ValueError(f"branch={branch} is out of range: the generator returns "
                             f"{len(out)} outputs")
        out = out[branch]
    elif branch is not None:
        raise ValueError(f"branch={branch!r} but the generator returns a single tensor; pass "
                         "branch=None")
    if not isinstance(out, torch.Tensor) or out.ndim != 4:
        raise ValueError("the explained generator output must be an image batch (B, C, H, W); "
                         f"got {getattr(out, 'shape', type(out))}")


def _region_weights(region: Any, out: torch.Tensor, channel: Any) -> torch.Tensor:
    """``m_hw * w_c`` broadcast to the output's shape ``(B, C, H, W)``."""
    b, c, h, w = out.shape
    if region is None:
        mask = out.new_ones(b, 1, h, w)
    else:
        mask = torch.as_tensor(np.asarray(region) if not isinstance(region, torch.Tensor)
                               else region).to(device=out.device)
        if mask.shape not in ((h, w), (b, h, w)):
            raise ValueError(f"region must have shape (H, W) = {(h, w)} or (B, H, W) = "
                             f"{(b, h, w)} like the explained output; got {tuple(mask.shape)}")
        mask = mask.to(out.dtype)
        if not torch.isfinite(mask).all():
            raise ValueError("region contains NaN or infinite values")
        mask = mask.expand(b, h, w).unsqueeze(1)
    if channel is None:
        weights = out.new_ones(c)
    elif isinstance(channel, (int, np.integer)) and not isinstance(channel, bool):
        if not 0 <= channel < c:
            raise ValueError(f"channel={channel} is out of range for an output with {c} channels")
        weights = torch.nn.functional.one_hot(torch.tensor(int(channel)), c).to(out)
    else:
        weights = torch.as_tensor(np.asarray(channel, dtype=float)).to(out)
        if weights.shape != (c,):
            raise ValueError(f"channel must be None, an index or {c} channel weights; got "
                             f"shape {tuple(weights.shape)}")
    return mask * weights.view(1, c, 1, 1)


class GeneratorLRP(_Explainer):
    """LRP of an image-to-image generator's output region, holding a prepared snapshot.

    Parameters
    ----------
    generator : torch.nn.Module
        Maps ``(B, C, H, W)`` inputs to an image ``(B, C', H, W)`` or a tuple of images.
    branch : int, {"A", "B"} or None
        Which output to explain: an index into the tuple (``"A"`` = 0, ``"B"`` = 1 for the
        deblender), or ``None`` for a generator returning one tensor.
    rule : str or zennit Composite
        A key of :data:`~galaxai.explain.LRP_RULES` (``"epsilon"`` default, ``"zero"``,
        ``"alpha1beta0"``, ``"composite"``) or a zennit composite to use as is (it must map
        element-wise activations to a pass-through rule for the tanh/PReLU treatment above).
    epsilon : float
        Epsilon of the ``"epsilon"`` rule and of ``"composite"``'s dense layers.

    Notes
    -----
    Default rule, LRP-epsilon: the explained outputs are signed (dark sky is ``y ~ -1``), so the
    rule must carry negative relevance without flipping its meaning. z+ (``"alpha1beta0"``) and
    the z+-based ``"composite"`` distribute any relevance by positive contributions only, which
    was derived for ReLU classifiers with positive evidence; with PReLU units and mixed-sign
    inputs it discards inhibition. LRP-0 is the exact Taylor/gradient-times-input decomposition
    of bias-free piecewise-linear nets but is noisy through deep stacks; a small epsilon (0.01,
    activations are O(1) here) suppresses weak, noisy contributions while staying close to it.
    """

    method = "generator_lrp"

    def __init__(self, generator: nn.Module, *, branch: Any = None, rule: Any = "epsilon",
                 epsilon: float = 0.01) -> None:
        if isinstance(rule, str):
            if rule not in LRP_RULES:
                raise ValueError(f"rule={rule!r}; choose one of {sorted(LRP_RULES)} or pass a "
                                 "zennit Composite")
        elif not hasattr(rule, "register") or not hasattr(rule, "remove"):
            raise ValueError(f"rule must be a rule name or a zennit Composite; got "
                             f"{type(rule).__name__}")
        self.branch, self.rule, self.epsilon = _branch_index(branch), rule, epsilon
        self._checked = False
        # Sum nodes (residual additions, the output skip) use LRP-0 with a tiny stabiliser;
        # constant summands (the skip's "- 1") absorb no relevance.
        super().__init__(_Selected(generator, self.branch), "z", False, _EPS)

    def _make_composite(self, batch_polarity):
        return LRP_RULES[self.rule](self.epsilon) if isinstance(self.rule, str) else self.rule

    def _rule_name(self) -> str:
        return self.rule if isinstance(self.rule, str) else type(self.rule).__name__

    def __call__(self, x: Any, region: Any = None, channel: Any = None) -> Attribution:
        """Explain ``sum(region * channel weights * G(x)[branch])`` per sample.

        Parameters
        ----------
        x : array-like
            ``(B, C, H, W)`` generator inputs (the deblender: blends in [0, 1]).
        region : array-like of bool or float, optional
            ``(H, W)`` shared or ``(B, H, W)`` per-sample mask on the output; default the whole
            image. Float masks weight the pixels.
        channel : None, int or sequence of float
            Channel reduction: all channels (default), one channel, or per-channel weights.

        Returns
        -------
        Attribution
            ``maps`` ``(B, C, H, W)`` signed input relevance; ``logits`` ``(B,)`` the explained
            quantity ``f`` (what the maps sum to under conservation); ``method`` =
            ``"generator_lrp"``; ``params`` with branch, rule, epsilon and channel.
        """
        if self._closed:
            raise RuntimeError("this GeneratorLRP was closed; create a new one")
        x = as_input(self._twin, x)
        if not self._checked:
            with torch.no_grad():
                _check_outputs(self._twin.generator(x[:1]), self.branch)
            self._checked = True
        if self._notes is None:
            for module in self._twin.modules():
                if getattr(module, "skip_gate", False):
                    raise UnsupportedLayerError(
                        "the generator's branches use skip_gate (a product of the gate and the "
                        "image) which has no LRP rule; explain a generator without skip_gate")
            self._prepare(x)
        xg = x.clone().requires_grad_(True)
        self._stack.clear()
        guard = _Guard(self._stack, self._guard_mode, self._include_const, self._eps)
        with torch.enable_grad(), guard:
            out = self._twin(xg)
        weights = _region_weights(region, out, channel)
        start = out.detach() * weights
        (relevance,) = torch.autograd.grad(out, xg, start)
        self._last_hits = guard.hits
        params = {"branch": self.branch, "rule": self._rule_name(), "epsilon": self.epsilon,
                  "channel": channel}
        return Attribution(relevance.detach(), start.flatten(1).sum(1), self.method, params=params)


def generator_lrp(G: nn.Module, x: Any, branch: Any = None, region: Any = None, *,
                  channel: Any = None, rule: Any = "epsilon", epsilon: float = 0.01) -> Attribution:
    """Relevance of the input pixels for a region of one output of an image-to-image generator.

    A thin wrapper building a :class:`GeneratorLRP` for one call (keep the explainer for many
    batches on the same weights). See the module docstring for the rules.

    Parameters
    ----------
    G : torch.nn.Module
        The generator (e.g. :class:`galaxai.models.deblender.DeblenderGenerator`).
    x : array-like
        ``(B, C, H, W)`` inputs.
    branch : int, {"A", "B"} or None
        Output to explain (``None`` for a generator returning one tensor).
    region : array-like, optional
        ``(H, W)`` or ``(B, H, W)`` bool/float mask on the output (default whole image).
    channel, rule, epsilon
        See :meth:`GeneratorLRP.__call__` and :class:`GeneratorLRP`.

    Returns
    -------
    Attribution
        ``maps`` ``(B, C, H, W)``, ``logits`` the explained quantity per sample.

    Examples
    --------
    >>> res = generator_lrp(G, blends, branch="B", region=mask)   # doctest: +SKIP
    >>> res.maps.sum((1, 2, 3)), res.logits                        # doctest: +SKIP
    """
    with GeneratorLRP(G, branch=branch, rule=rule, epsilon=epsilon) as explainer:
        return explainer(x, region=region, channel=channel)


def footprint(flux: Any, sky_sigma: Any, *, band: int = 1, k: float = 1.0) -> np.ndarray:
    """Truth footprint: pixels where a galaxy's noise-free flux in ``band`` is ``>= k`` sky sigma.

    Parameters
    ----------
    flux : array-like
        ``(N, C, H, W)`` noise-free flux of one galaxy (e.g. the sum of its components).
    sky_sigma : array-like
        ``(N,)`` sky noise sigma in the same units and band.
    band : int
        Channel used (1: r band of g, r, i).
    k : float
        Threshold in units of sky sigma.

    Returns
    -------
    numpy.ndarray
        ``(N, H, W)`` bool.
    """
    flux = np.asarray(flux)
    sigma = np.asarray(sky_sigma, dtype=float).reshape(-1, 1, 1)
    if flux.ndim != 4 or sigma.shape[0] != flux.shape[0]:
        raise ValueError(f"flux must be (N, C, H, W) and sky_sigma (N,); got {flux.shape} and "
                         f"{np.shape(sky_sigma)}")
    return flux[:, band] >= k * sigma


def _bin_edges(separation: np.ndarray, bins: Any) -> np.ndarray:
    if isinstance(bins, (int, np.integer)):
        if bins < 1:
            raise ValueError(f"bins must be >= 1 or a sequence of edges; got {bins}")
        return np.unique(np.quantile(separation, np.linspace(0, 1, int(bins) + 1)))
    edges = np.asarray(bins, dtype=float)
    if edges.ndim != 1 or edges.size < 2 or np.any(np.diff(edges) <= 0):
        raise ValueError(f"bins must be an increasing sequence of >= 2 edges; got {bins!r}")
    return edges


def wrong_galaxy_share(G: nn.Module, blends: Any, footprint_a: Any, footprint_b: Any,
                       separation: Any, bins: int | Sequence[float] = 4, *, rule: Any = "epsilon",
                       epsilon: float = 0.01, batch_size: int = 32,
                       progress: bool = False) -> pd.DataFrame:
    """How much each deblender branch "looks at" the wrong galaxy, binned by separation.

    For every blend and branch, the positive part of the input relevance of the whole branch
    output (:func:`generator_lrp`, summed over channels after taking the positive part of each
    element) is split by region: the branch's own galaxy only, the *other* galaxy only (the wrong
    galaxy), the overlap of both footprints, and background. Shares are per blend, then averaged
    per separation bin with standard errors (sample std / sqrt(n)). ``area_other`` is the mean
    area share of the other galaxy's footprint, what a uniform map would give.

    Parameters
    ----------
    G : torch.nn.Module
        The deblender generator (returns ``(A, B)``).
    blends : array-like
        ``(N, C, H, W)`` blends in the generator's input range.
    footprint_a, footprint_b : array-like of bool
        ``(N, H, W)`` truth footprints (:func:`footprint`).
    separation : array-like
        ``(N,)`` separation of the two galaxies (pixels).
    bins : int or sequence of float
        Number of equal-count bins, or bin edges.
    rule, epsilon
        As for :class:`GeneratorLRP`.
    batch_size : int
        Blends per LRP pass.
    progress : bool
        Show a tqdm progress bar.

    Returns
    -------
    pandas.DataFrame
        One row per (branch, bin): ``branch``, ``sep_lo``, ``sep_hi``, ``n``, and for each of
        ``own``, ``other``, ``overlap``, ``background`` the mean share and ``<name>_se``; plus
        ``area_other``. Blends whose positive relevance is 0 are left out (``n`` counts the rest).
    """
    blends = torch.as_tensor(np.asarray(blends) if not isinstance(blends, torch.Tensor) else blends)
    fa, fb = (np.asarray(f, dtype=bool) for f in (footprint_a, footprint_b))
    sep = np.asarray(separation, dtype=float).reshape(-1)
    n = blends.shape[0] if blends.ndim == 4 else -1
    if n < 1:
        raise ValueError(f"blends must be a non-empty (N, C, H, W) batch; got {tuple(blends.shape)}")
    spatial = (n, *blends.shape[2:])
    for name, value in (("footprint_a", fa), ("footprint_b", fb)):
        if value.shape != spatial:
            raise ValueError(f"{name} must have shape (N, H, W) = {spatial}; got {value.shape}")
    if sep.shape != (n,):
        raise ValueError(f"separation must have one value per blend ({n}); got {sep.shape}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1; got {batch_size}")
    edges = _bin_edges(sep, bins)
    own_other = {0: (fa, fb), 1: (fb, fa)}
    shares = {b: np.full((n, 4), np.nan) for b in (0, 1)}
    starts = range(0, n, batch_size)
    if progress:
        from tqdm.auto import tqdm

        starts = tqdm(starts, desc="generator LRP", unit="batch")
    explainers = {b: GeneratorLRP(G, branch=b, rule=rule, epsilon=epsilon) for b in (0, 1)}
    try:
        for lo in starts:
            hi = min(n, lo + batch_size)
            for b, explain in explainers.items():
                pos = explain(blends[lo:hi]).maps.clamp(min=0).sum(1).cpu().numpy()
                own, other = own_other[b][0][lo:hi], own_other[b][1][lo:hi]
                parts = (own & ~other, other & ~own, own & other, ~own & ~other)
                total = pos.sum((1, 2))
                with np.errstate(invalid="ignore", divide="ignore"):
                    shares[b][lo:hi] = np.stack([(pos * p).sum((1, 2)) / total for p in parts], 1)
    finally:
        for explain in explainers.values():
            explain.close()
    area_other = {0: (fb & ~fa).mean((1, 2)), 1: (fa & ~fb).mean((1, 2))}
    rows = []
    names = ("own", "other", "overlap", "background")
    for b in (0, 1):
        for lo_edge, hi_edge in zip(edges[:-1], edges[1:]):
            last = hi_edge == edges[-1]
            inside = (sep >= lo_edge) & ((sep <= hi_edge) if last else (sep < hi_edge))
            keep = inside & np.isfinite(shares[b]).all(1)
            vals = shares[b][keep]
            row = {"branch": "AB"[b], "sep_lo": lo_edge, "sep_hi": hi_edge, "n": int(keep.sum())}
            for j, name in enumerate(names):
                row[name] = float(vals[:, j].mean()) if len(vals) else np.nan
                row[f"{name}_se"] = (float(vals[:, j].std(ddof=1) / np.sqrt(len(vals)))
                                     if len(vals) > 1 else np.nan)
            row["area_other"] = float(area_other[b][keep].mean()) if keep.any() else np.nan
            rows.append(row)
    return pd.DataFrame(rows)
