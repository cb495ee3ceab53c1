"""Explanation quality beyond one metric: faithfulness, sanity checks, sparseness, robustness.

The per-image measures that ``galaxai explain-eval`` aggregates, each a function of a model,
images and maps (no galaxai data or training code):

- *faithfulness*: region perturbation most relevant first (MoRF) and least relevant first (LeRF)
  with sky-like fill (:func:`~galaxai.explain.faithfulness.pixel_flipping`), each as AOPC minus
  the AOPC of a random order, and MoRF - LeRF (the area between the two curves, which does not
  depend on a random reference and cancels what the fill alone does to the score);
- *model-randomisation sanity checks* (Adebayo et al. 2018): the same method on copies of the
  model whose layers are re-initialised from the top down (cascading) or one at a time
  (independent), compared with the original map by SSIM and Spearman rank correlation of
  ``|map|``; a map that stays the same when the weights are random does not explain the model;
- *complexity*: sparseness as the Gini index of ``|map|`` (Chalasani et al. 2020);
- *robustness*: relative change of the map when the image's sky noise is re-drawn
  (an average sensitivity, Yeh et al. 2019, with noise at each image's own sky level).

Localisation against planted artefacts uses
:func:`~galaxai.explain.faithfulness.relevance_mass_accuracy` and
:func:`~galaxai.explain.faithfulness.relevance_rank_accuracy` directly.

References
----------
Samek et al. (2017), IEEE TNNLS 28(11), 2660, arXiv:1509.06321 (MoRF, LeRF, AOPC).
Adebayo et al. (2018), "Sanity checks for saliency maps", NeurIPS, arXiv:1810.03292.
Chalasani et al. (2020), "Concise explanations of neural networks using adversarial training",
ICML, arXiv:1810.06583 (Gini sparseness).
Yeh et al. (2019), "On the (in)fidelity and sensitivity of explanations", NeurIPS,
arXiv:1901.09392.
Hedström et al. (2023), "Quantus", JMLR 24(34) (the toolkit these are cross-checked against).
"""
from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import torch
from torch import nn

from galaxai.explain.faithfulness import aopc, pixel_flipping, random_order_curves, sky_statistics
from galaxai.explain.saliency import Attribution

__all__ = [
    "decision_maps",
    "faithfulness_scores",
    "gini",
    "randomisable_layers",
    "randomised_models",
    "map_similarity",
    "noise_sensitivity",
    "bootstrap_mean",
]


def decision_maps(attribution: Attribution, *, magnitude_only: bool = False) -> torch.Tensor:
    """``(B, H, W)`` maps oriented so that larger = more evidence for the model's own decision.

    Polarized-LRP maps are returned as given (non-negative; the polarity already is the
    decision); signed maps (LRP, gradient, integrated gradients) are multiplied by the sign of
    the logit; ``magnitude_only`` maps (SmoothGrad's mean |gradient|, Grad-CAM) are returned as
    given. Channels are summed; maps of another size (Grad-CAM) are not resized here.
    """
    maps = attribution.maps.float()
    maps = maps.sum(1) if maps.ndim == 4 else maps
    if attribution.polarity is None and not magnitude_only:
        sign = torch.where(attribution.logits >= 0, 1.0, -1.0).to(maps.device)
        maps = maps * sign.view(-1, 1, 1)
    return maps


def faithfulness_scores(model: nn.Module, x: Any, maps: Any, sign: Any, *, patch: int = 8,
                        steps: int = 25, fill: str | Callable = "sky", seed: int = 0,
                        random_aopc: torch.Tensor | None = None,
                        repeats: int = 1) -> dict[str, torch.Tensor]:
    """MoRF and LeRF AOPC against random orders, and their difference, per image.

    Parameters
    ----------
    model : torch.nn.Module
        Discriminator.
    x : array-like
        ``(B, C, H, W)`` images.
    maps : array-like
        ``(B, H, W)`` decision maps (:func:`decision_maps`); regions are ranked by their sum.
    sign : array-like
        ``(B,)`` +-1, the model's decision per image; AOPC is multiplied by it so that larger
        always means "moved the probability toward the other class".
    patch, steps, fill, seed
        Region perturbation settings (:func:`~galaxai.explain.faithfulness.pixel_flipping`);
        ``steps`` regions are removed.
    random_aopc : torch.Tensor, optional
        ``(B,)`` AOPC of random orders with the same settings (compute it once per image set and
        share it between methods); computed here with ``repeats`` orders when omitted.
    repeats : int
        Random orders per image when ``random_aopc`` is computed here.

    Returns
    -------
    dict of str to torch.Tensor
        ``(B,)`` each: ``morf``, ``lerf``, ``random`` (raw AOPC), ``morf_vs_random``
        (MoRF - random, > 0 faithful), ``lerf_vs_random`` (LeRF - random, < 0 faithful) and
        ``morf_minus_lerf`` (> 0 faithful).
    """
    sign = torch.as_tensor(sign, dtype=torch.float32).reshape(-1)
    kw = dict(patch=patch, steps=steps, fill=fill, seed=seed)
    if random_aopc is None:
        random_aopc = aopc(random_order_curves(model, x, repeats=repeats, **kw), sign)
    morf = aopc(pixel_flipping(model, x, maps, order="morf", **kw), sign)
    lerf = aopc(pixel_flipping(model, x, maps, order="lerf", **kw), sign)
    return {"morf": morf, "lerf": lerf, "random": random_aopc, "morf_vs_random": morf - random_aopc,
            "lerf_vs_random": lerf - random_aopc, "morf_minus_lerf": morf - lerf}


def gini(maps: Any) -> torch.Tensor:
    """Sparseness of each map as the Gini index of its flattened ``|map|`` (Chalasani et al. 2020).

    ``G = sum_i (2i - n - 1) a_(i) / (n sum_i a_(i))`` over the ``n`` values sorted ascending
    (``i`` from 1): 0 for a uniform map, ``1 - 1/n`` when one pixel holds all the mass.

    Parameters
    ----------
    maps : array-like
        ``(B, ...)`` maps; everything after the batch axis is flattened.

    Returns
    -------
    torch.Tensor
        ``(B,)`` float64; NaN for an all-zero map.
    """
    a = torch.as_tensor(maps).double().abs().reshape(len(maps), -1).sort(dim=1).values
    n = a.shape[1]
    weights = 2 * torch.arange(1, n + 1, dtype=torch.float64) - n - 1
    total = a.sum(1)
    return torch.where(total > 0, (a * weights).sum(1) / (n * total), torch.nan)


def randomisable_layers(model: nn.Module) -> list[str]:
    """Names of the layers with weights (convolution, linear), from the output to the input.

    Normalisation layers keep their statistics, as in Adebayo et al. (2018), who re-initialise
    the learned weights of the network's layers.
    """
    names = [name for name, m in model.named_modules()
             if isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear))]
    if not names:
        raise ValueError("the model has no convolution or linear layer to randomise")
    return names[::-1]


def _reinitialise(module: nn.Module, seed: int) -> None:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        module.reset_parameters()


def randomised_models(model: nn.Module, mode: str = "cascading", *, seed: int = 0
                      ) -> Iterator[tuple[str, nn.Module]]:
    """Copies of ``model`` with layers re-initialised (the model itself is left unchanged).

    Parameters
    ----------
    model : torch.nn.Module
        The trained model.
    mode : {"cascading", "independent"}
        ``cascading``: the top layer, then the top two, ... down to all layers (one copy per
        step, each adding the next layer down). ``independent``: one layer at a time.
    seed : int
        Seeds the re-initialisation (PyTorch's default init of each layer); layer ``k`` from
        the top uses ``seed + k`` in both modes, so both modes draw the same random weights.

    Yields
    ------
    (str, torch.nn.Module)
        The layer randomised last and the randomised copy.
    """
    if mode not in ("cascading", "independent"):
        raise ValueError(f"mode={mode!r}; use 'cascading' or 'independent'")
    names = randomisable_layers(model)
    cascade = copy.deepcopy(model) if mode == "cascading" else None
    for k, name in enumerate(names):
        target = cascade if cascade is not None else copy.deepcopy(model)
        _reinitialise(target.get_submodule(name), seed + k)
        yield name, target


def _normalised_abs(maps: torch.Tensor) -> np.ndarray:
    a = torch.as_tensor(maps).double().abs()
    a = a.sum(1) if a.ndim == 4 else a
    peak = a.reshape(len(a), -1).max(1).values.clamp(min=1e-300)
    return (a / peak.view(-1, 1, 1)).numpy()


def map_similarity(before: Any, after: Any) -> dict[str, np.ndarray]:
    """SSIM and Spearman rank correlation of ``|map|`` before vs after a change, per image.

    Maps are channel-summed, made absolute and scaled to a maximum of 1 (as Adebayo et al.
    2018 compare absolute maps); SSIM uses scikit-image with ``data_range=1``.

    Returns
    -------
    dict of str to ndarray
        ``ssim`` and ``spearman``, ``(B,)`` each (Spearman is NaN for a constant map).
    """
    from scipy.stats import spearmanr
    from skimage.metrics import structural_similarity

    a, b = _normalised_abs(before), _normalised_abs(after)
    if a.shape != b.shape:
        raise ValueError(f"maps before {a.shape} and after {b.shape} differ in shape")
    ssim = np.array([structural_similarity(p, q, data_range=1.0) for p, q in zip(a, b)])
    rho = np.empty(len(a))
    for i, (p, q) in enumerate(zip(a, b)):
        constant = np.ptp(p) == 0 or np.ptp(q) == 0
        rho[i] = np.nan if constant else spearmanr(p.ravel(), q.ravel()).statistic
    return {"ssim": ssim, "spearman": rho}


def noise_sensitivity(explain: Callable[[torch.Tensor], torch.Tensor], x: Any, *,
                      draws: int = 2, seed: int = 0) -> torch.Tensor:
    """Mean relative change of a map when a fresh draw of sky noise is added to the image.

    ``S = mean_j ||m(x + sigma_sky * n_j) - m(x)||_2 / ||m(x)||_2`` with ``n_j`` standard normal
    and ``sigma_sky`` each image's and channel's background noise
    (:func:`~galaxai.explain.faithfulness.sky_statistics`): the map should not change much when
    the image is re-observed with the same noise level (0 = unchanged; 1 = as large a change
    as the map itself).

    Parameters
    ----------
    explain : callable
        ``images -> (B, ...) maps`` (e.g. ``lambda x: decision_maps(method(model, x))``).
    x : array-like
        ``(B, C, H, W)`` images.
    draws : int
        Noise draws per image.
    seed : int
        Seed of the draws.

    Returns
    -------
    torch.Tensor
        ``(B,)`` float64 sensitivities.
    """
    x = torch.as_tensor(x).float()
    _, sigma = sky_statistics(x)
    base = torch.as_tensor(explain(x)).double().reshape(len(x), -1)
    norm = base.norm(dim=1).clamp(min=1e-300)
    gen = torch.Generator().manual_seed(seed)
    total = torch.zeros(len(x), dtype=torch.float64)
    for _ in range(draws):
        noisy = x + sigma[..., None, None] * torch.randn(x.shape, generator=gen)
        total += (torch.as_tensor(explain(noisy)).double().reshape(len(x), -1) - base).norm(dim=1) / norm
    return total / draws


def bootstrap_mean(values: Any, *, n_boot: int = 1000, seed: int = 0,
                   level: float = 0.95) -> tuple[float, float, float]:
    """Mean of ``values`` (NaNs dropped) and its percentile bootstrap interval.

    Returns
    -------
    (mean, low, high) : tuple of float
        NaNs when no finite value is left.
    """
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return (np.nan, np.nan, np.nan)
    rng = np.random.default_rng(seed)
    means = v[rng.integers(0, v.size, size=(n_boot, v.size))].mean(1)
    tail = 100 * (1 - level) / 2
    lo, hi = np.percentile(means, [tail, 100 - tail])
    return float(v.mean()), float(lo), float(hi)
