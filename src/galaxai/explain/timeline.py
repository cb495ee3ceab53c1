"""One input explained across training: maps, probabilities and core-vs-periphery relevance.

The paper saved a discriminator every 1,000 iterations and showed how its relevance maps change
(Li et al. 2020, Sect. 4). :func:`explain_timeline` runs one attribution method on the same
inputs for each ``(iteration, model)`` pair and summarises every map by the share of relevance
mass in the galaxy core and in its periphery, so the change becomes numbers as well as pictures.
Rendering (montage, GIF) is done by ``galaxai.viz``.

References
----------
Li, Lin, Mueller & Xu (2020), arXiv:2001.06151.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from galaxai.explain.faithfulness import relevance_mass_ratio
from galaxai.explain.saliency import METHODS

__all__ = ["Timeline", "explain_timeline", "core_periphery_masks"]


@dataclass(frozen=True)
class Timeline:
    """Explanations of the same inputs at successive checkpoints (``T`` of them, ``B`` inputs).

    Attributes
    ----------
    iterations : list of int
        Training iteration of each checkpoint, in the order given.
    maps : torch.Tensor
        ``(T, B, ...)`` relevance maps as the method returns them.
    scores : torch.Tensor
        ``(T, B)`` probabilities (sigmoid of the explained logit).
    polarity : torch.Tensor or None
        ``(T, B)`` +-1 for Polarized-LRP, else None.
    core_share, periphery_share : torch.Tensor
        ``(T, B)`` share of the relevance mass (``|r|``) inside the core / periphery mask.
    core_ratio : torch.Tensor
        ``(T, B)`` :func:`~galaxai.explain.faithfulness.relevance_mass_ratio` of the core.
    method : str
        Attribution method used.
    params : Mapping
        Its keyword arguments.
    """

    iterations: list[int]
    maps: torch.Tensor
    scores: torch.Tensor
    polarity: torch.Tensor | None
    core_share: torch.Tensor
    periphery_share: torch.Tensor
    core_ratio: torch.Tensor
    method: str
    params: Mapping[str, Any] = field(default_factory=dict)

    def records(self) -> list[dict[str, Any]]:
        """One plain dict per (checkpoint, input), ready for JSON lines or a DataFrame."""
        rows = []
        for t, iteration in enumerate(self.iterations):
            for b in range(self.scores.shape[1]):
                rows.append({
                    "iteration": int(iteration), "input": b, "score": float(self.scores[t, b]),
                    "polarity": None if self.polarity is None else int(self.polarity[t, b]),
                    "core_share": float(self.core_share[t, b]),
                    "periphery_share": float(self.periphery_share[t, b]),
                    "core_ratio": float(self.core_ratio[t, b]), "method": self.method,
                })
        return rows


def core_periphery_masks(
    size: tuple[int, int], core_radius: float | None = None, outer_radius: float | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Boolean ``(H, W)`` masks: a central disc (core) and the ring around it (periphery).

    Defaults: core radius ``min(H, W) / 8`` (10 px on an 80 px stamp), outer radius
    ``min(H, W) / 3``; the periphery is ``core_radius < r <= outer_radius``.
    """
    height, width = size
    core_radius = min(size) / 8 if core_radius is None else core_radius
    outer_radius = min(size) / 3 if outer_radius is None else outer_radius
    if not 0 < core_radius < outer_radius:
        raise ValueError(f"need 0 < core_radius < outer_radius; got {core_radius}, {outer_radius}")
    yy, xx = torch.meshgrid(torch.arange(height) - (height - 1) / 2,
                            torch.arange(width) - (width - 1) / 2, indexing="ij")
    r = torch.sqrt(yy**2 + xx**2)
    return r <= core_radius, (r > core_radius) & (r <= outer_radius)


def explain_timeline(
    x: Any,
    checkpoints: Iterable[tuple[int, nn.Module]],
    method: str = "polarized_lrp",
    core: Any = None,
    periphery: Any = None,
    progress: bool = False,
    **kwargs: Any,
) -> Timeline:
    """Explain the same inputs with every checkpoint's model.

    Parameters
    ----------
    x : array-like
        ``(B, C, H, W)`` inputs, explained at every checkpoint.
    checkpoints : iterable of (int, torch.Module)
        ``(iteration, model)`` pairs; a generator that loads one model at a time keeps memory flat.
    method : str
        A key of :data:`galaxai.explain.METHODS` (default Polarized-LRP).
    core, periphery : array-like of bool, optional
        ``(H, W)`` masks; default :func:`core_periphery_masks` of the image size.
    progress : bool
        Show a tqdm progress bar.
    **kwargs
        Passed to the method (e.g. ``polarity="negative"``, ``bias="ignore"``).

    Returns
    -------
    Timeline
    """
    if method not in METHODS:
        raise ValueError(f"method={method!r}; choose one of {sorted(METHODS)}")
    fn = METHODS[method]
    x = torch.as_tensor(x)
    default_core, default_periphery = core_periphery_masks(tuple(x.shape[-2:]))
    core = default_core if core is None else torch.as_tensor(core, dtype=torch.bool)
    periphery = default_periphery if periphery is None else torch.as_tensor(periphery, dtype=torch.bool)
    if progress:
        from tqdm.auto import tqdm

        checkpoints = tqdm(checkpoints, desc=f"{method} over checkpoints")
    iterations, maps, scores, polarity, core_share, peri_share, core_ratio = [], [], [], [], [], [], []
    for iteration, model in checkpoints:
        result = fn(model, x, **kwargs)
        iterations.append(int(iteration))
        maps.append(result.maps.detach().cpu())
        scores.append(result.scores.detach().cpu())
        if result.polarity is not None:
            polarity.append(result.polarity.detach().cpu())
        mass = result.maps.detach().cpu().double().abs()
        mass = mass.sum(1) if mass.ndim == 4 else mass
        total = mass.flatten(1).sum(1)
        core_share.append((mass * core).flatten(1).sum(1) / total)
        peri_share.append((mass * periphery).flatten(1).sum(1) / total)
        core_ratio.append(relevance_mass_ratio(mass, core))
    if not iterations:
        raise ValueError("checkpoints is empty; pass (iteration, model) pairs")
    return Timeline(iterations, torch.stack(maps), torch.stack(scores),
                    torch.stack(polarity) if len(polarity) == len(iterations) else None,
                    torch.stack(core_share), torch.stack(peri_share), torch.stack(core_ratio),
                    method, dict(kwargs))
