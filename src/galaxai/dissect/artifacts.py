"""Artifact units: units whose removal makes a generator's outputs better.

GAN Dissection (Bau et al. 2019) finds units that cause visible artifacts and removes them by
zeroing them over the whole featuremap. galaxai scores every unit, cheapest first
(``specs/dissection.md``, "Artifact units"):

1. ``dpsnr`` / ``dssim``: change of PSNR / SSIM against the targets when the unit alone is
   ablated, per branch and averaged over branches (an improvement marks a candidate);
2. ``dlogit``: change of the discriminator's mean logit on the outputs when the unit is ablated
   (a rise: the outputs look more real without it);
3. ``plrp``: the share of the discriminator's *negative* Polarized-LRP relevance ("why fake",
   :class:`galaxai.explain.PolarizedLRP`) that falls inside the unit's region above its threshold,
   divided by that region's share of the pixels (1: no preference; pooled over images). Shared
   layers read both branches' maps, a branch's own layers only that branch's.

:func:`artifact_top` lists the top 20 per score, :func:`artifact_removal` judges removing a set
of units on held-out blends against random unit sets of the same size.
"""
from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
import pandas as pd
import torch
from torch import nn

from galaxai.dissect.effects import EffectSet
from galaxai.dissect.hooks import Intervention, record
from galaxai.dissect.units import _featuremaps
from galaxai.models.deblender import to_network

__all__ = ["SCORES", "artifact_scores", "artifact_top", "artifact_overlap", "artifact_removal",
           "unit_interventions"]

#: Artifact scores, each ranked highest first.
SCORES = ("dpsnr", "dlogit", "plrp")


def unit_interventions(units: Sequence[tuple[str, int]]) -> list[Intervention]:
    """One ablation per layer of ``(layer, unit)`` pairs, over the whole featuremap."""
    by_layer: dict[str, list[int]] = {}
    for layer, unit in units:
        by_layer.setdefault(layer, []).append(int(unit))
    return [Intervention(layer, tuple(sorted(us))) for layer, us in by_layer.items()]


def _layer_branches(layer: str, n_branches: int) -> tuple[int, ...]:
    """Branches downstream of ``layer``: ``branch<k>.*`` feeds branch k − 1 only."""
    if n_branches > 1 and layer.startswith("branch"):
        k = layer[len("branch"):].split(".", 1)[0]
        if k.isdigit() and 1 <= int(k) <= n_branches:
            return (int(k) - 1,)
    return tuple(range(n_branches))


def _logits(discriminator: nn.Module, images: torch.Tensor, batch: int) -> torch.Tensor:
    """Per image, the discriminator's logit of display images (fed as :func:`to_network`)."""
    device = next(discriminator.parameters()).device
    with torch.inference_mode():
        out = [discriminator(to_network(images[lo:lo + batch]).to(device)).reshape(-1).float().cpu()
               for lo in range(0, len(images), batch)]
    return torch.cat(out)


def _metrics(outputs, targets) -> tuple[list[np.ndarray], list[np.ndarray]]:
    from galaxai.metrics import psnr, ssim

    return ([psnr(o.numpy(), t) for o, t in zip(outputs, targets)],
            [ssim(o.numpy(), t) for o, t in zip(outputs, targets)])


def _plrp_ratios(model: nn.Module, data: EffectSet, layers: Sequence[str],
                 thresholds: Mapping[str, np.ndarray], negative: Sequence[torch.Tensor]
                 ) -> dict[str, np.ndarray]:
    """Per layer and unit: negative-relevance share inside ``r_u > t_u`` over its area share."""
    device = next(model.parameters()).device
    n_br = len(negative)
    mass: dict[str, torch.Tensor] = {}
    area: dict[str, torch.Tensor] = {}
    total = {layer: 0.0 for layer in layers}
    pixels = 0
    with torch.inference_mode(), record(model, layers) as seen:
        for lo in range(0, len(data), data.batch_size):
            x = data.inputs[lo:lo + data.batch_size]
            model(x.to(device))
            size = tuple(negative[0].shape[-2:])
            maps = _featuremaps({k: v.cpu() for k, v in seen.items()}, size)
            pixels += len(x) * size[0] * size[1]
            for layer in layers:
                rel = sum(negative[j][lo:lo + len(x)] for j in _layer_branches(layer, n_br))
                above = maps[layer] > torch.as_tensor(thresholds[layer]).float().view(1, -1, 1, 1)
                m = (above * rel[:, None]).sum(dim=(0, 2, 3))
                a = above.sum(dim=(0, 2, 3)).double()
                mass[layer] = mass.get(layer, 0) + m.double()
                area[layer] = area.get(layer, 0) + a
                total[layer] += float(rel.sum())
    out = {}
    for layer in layers:
        share = mass[layer].numpy() / max(total[layer], 1e-30)
        cover = area[layer].numpy() / pixels
        with np.errstate(divide="ignore", invalid="ignore"):
            out[layer] = np.where(cover > 0, share / cover, np.nan)
    return out


def artifact_scores(model: nn.Module, data: EffectSet, layers: Sequence[str],
                    thresholds: Mapping[str, np.ndarray] | None = None, *,
                    discriminator: nn.Module | None = None, progress: bool = False
                    ) -> pd.DataFrame:
    """Score every unit of ``layers`` as a possible artifact unit.

    Parameters
    ----------
    model : torch.nn.Module
        The generator (one output or a tuple of branches, tanh range).
    data : EffectSet
        Inputs and, for ``dpsnr``/``dssim``, the targets.
    layers : sequence of str
    thresholds : mapping of layer to (d,) array, optional
        Unit thresholds ``t_u`` (from :func:`~galaxai.dissect.dissect_units`); needed for ``plrp``.
    discriminator : torch.nn.Module, optional
        Maps network-range images ``(B, C, H, W)`` to logits; needed for ``dlogit`` and ``plrp``.

    Returns
    -------
    pandas.DataFrame
        One row per unit: ``layer, unit``, ``dpsnr_<j>``, ``dssim_<j>``, ``dpsnr``, ``dssim``
        (with targets), ``dlogit`` and ``plrp`` (with a discriminator; ``plrp`` also needs
        thresholds). Missing scores are absent columns.
    """
    from tqdm.auto import tqdm

    before = data.outputs(model)
    n_br = len(before)
    targets = list(data.targets) if data.targets is not None else None
    if targets is not None and len(targets) != n_br:
        raise ValueError(f"EffectSet has {len(targets)} targets for a generator with {n_br} "
                         "outputs")
    base = _metrics(before, targets) if targets is not None else None
    logit0 = ([_logits(discriminator, o, data.batch_size) for o in before]
              if discriminator is not None else None)
    units: list[tuple[str, int]] = []
    with torch.inference_mode(), record(model, list(layers)) as seen:
        model(data.inputs[:1].to(next(model.parameters()).device))
    for layer in layers:
        units += [(layer, u) for u in range(seen[layer].shape[1])]
    rows = []
    for layer, u in tqdm(units, desc="artifact scores", disable=not progress, leave=False):
        after = data.outputs(model, [Intervention(layer, (u,))])
        row: dict = {"layer": layer, "unit": u}
        if base is not None:
            p, s = _metrics(after, targets)
            for j in range(n_br):
                row[f"dpsnr_{j}"] = float(np.mean(p[j] - base[0][j]))
                row[f"dssim_{j}"] = float(np.mean(s[j] - base[1][j]))
            row["dpsnr"] = float(np.mean([row[f"dpsnr_{j}"] for j in range(n_br)]))
            row["dssim"] = float(np.mean([row[f"dssim_{j}"] for j in range(n_br)]))
        if logit0 is not None:
            row["dlogit"] = float(np.mean([float((_logits(discriminator, o, data.batch_size)
                                                  - l0).mean()) for o, l0 in zip(after, logit0)]))
        rows.append(row)
    table = pd.DataFrame(rows)
    if discriminator is not None and thresholds is not None:
        from galaxai.explain import PolarizedLRP

        device = next(discriminator.parameters()).device
        negative = []
        with PolarizedLRP(discriminator) as explain:
            for o in before:
                parts = [explain(to_network(o[lo:lo + data.batch_size]).to(device),
                                 polarity="negative").maps.sum(dim=1).clamp_min(0).cpu()
                         for lo in range(0, len(o), data.batch_size)]
                negative.append(torch.cat(parts))
        ratios = _plrp_ratios(model, data, layers, thresholds, negative)
        table["plrp"] = [float(ratios[layer][u]) for layer, u in zip(table.layer, table.unit)]
    return table


def artifact_top(scores: pd.DataFrame, k: int = 20) -> pd.DataFrame:
    """The top ``k`` units per score (highest first): ``score, rank, layer, unit, value``."""
    parts = []
    for name in SCORES:
        if name not in scores:
            continue
        top = scores.dropna(subset=[name]).sort_values(name, ascending=False, kind="stable")[:k]
        parts.append(pd.DataFrame({"score": name, "rank": np.arange(1, len(top) + 1),
                                   "layer": top.layer.to_numpy(), "unit": top.unit.to_numpy(),
                                   "value": top[name].to_numpy()}))
    if not parts:
        raise ValueError("no artifact score to rank: give targets and/or a discriminator")
    return pd.concat(parts, ignore_index=True)


def artifact_overlap(top: pd.DataFrame) -> pd.DataFrame:
    """Units shared by the top lists of every pair of scores: ``score_a, score_b, shared``."""
    sets = {s: set(zip(g.layer, g.unit)) for s, g in top.groupby("score", sort=False)}
    names = list(sets)
    rows = [{"score_a": a, "score_b": b, "shared": len(sets[a] & sets[b]), "of": len(sets[a])}
            for i, a in enumerate(names) for b in names[i + 1:]]
    return pd.DataFrame(rows, columns=["score_a", "score_b", "shared", "of"])


def artifact_removal(model: nn.Module, data: EffectSet, units: Sequence[tuple[str, int]],
                     pool: Sequence[tuple[str, int]], *, n_random: int = 5, seed: int = 0,
                     label: str = "artifact", progress: bool = False) -> pd.DataFrame:
    """ΔPSNR / ΔSSIM per branch of removing ``units`` vs ``n_random`` random sets from ``pool``.

    Every set is ablated over the whole featuremap on ``data`` (use blends the scores were not
    computed on). Returns one row per set: ``kind`` (``label`` or ``"random"``), ``set``,
    ``units``, and per branch ``dpsnr_<j>`` with its 95 % bootstrap interval over images
    (``dpsnr_<j>_lo``, ``dpsnr_<j>_hi``) and ``dssim_<j>``; ``dpsnr`` averages the branches.
    """
    from tqdm.auto import tqdm

    from galaxai.explain import bootstrap_mean

    if data.targets is None:
        raise ValueError("artifact removal needs targets in the EffectSet (ΔPSNR / ΔSSIM)")
    units = [(str(layer), int(u)) for layer, u in units]
    pool = [(str(layer), int(u)) for layer, u in pool]
    if not units or len(units) > len(pool):
        raise ValueError(f"remove between 1 and {len(pool)} units, got {len(units)}")
    rng = np.random.default_rng(seed)
    sets = [(label, 0, units)]
    sets += [("random", s, [pool[i] for i in sorted(rng.choice(len(pool), len(units),
                                                               replace=False))])
             for s in range(n_random)]
    targets = list(data.targets)
    base = _metrics(data.outputs(model), targets)
    rows = []
    for kind, s, chosen in tqdm(sets, desc="artifact removal", disable=not progress, leave=False):
        p, q = _metrics(data.outputs(model, unit_interventions(chosen)), targets)
        row = {"kind": kind, "set": s, "units": " ".join(f"{a}:{b}" for a, b in chosen)}
        for j in range(len(p)):
            mean, lo, hi = bootstrap_mean(p[j] - base[0][j], seed=seed)
            row.update({f"dpsnr_{j}": mean, f"dpsnr_{j}_lo": lo, f"dpsnr_{j}_hi": hi,
                        f"dssim_{j}": float(np.mean(q[j] - base[1][j]))})
        row["dpsnr"] = float(np.mean([row[f"dpsnr_{j}"] for j in range(len(p))]))
        rows.append(row)
    return pd.DataFrame(rows)
