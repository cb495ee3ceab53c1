"""Causal effects of units on concepts: ablation, insertion, curves, and the ACE α optimisation.

Scoring on an image-to-image generator (``specs/dissection.md``, "Deblender scoring"): the
*concept flux* of an output branch is its sky-subtracted luminance summed inside the concept's
truth mask; the **share removed** by an intervention is ``1 − Σ flux(after) / Σ flux(before)``,
pooled over the images. Which branch holds a concept: ``A.*`` and ``galaxy_A`` the first, ``B.*``,
``galaxy_B`` and ``fill`` the second, anything else both. **Leakage** is the rise of the other
galaxy's flux in a branch (B's footprint, outside the overlap, in branch A, and vice versa), as a
share of that galaxy's flux in its own branch before the intervention. ΔPSNR / ΔSSIM per branch
compare the outputs with the targets, where they are known.

Outputs are tanh images; ``to_display`` maps them to [0, 1] (``(v + 1) / 2`` by default). A
generator returning one tensor has one branch.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from galaxai.dissect.concepts import Concepts
from galaxai.dissect.hooks import Intervention, intervene, record

__all__ = [
    "SIZES",
    "EffectSet",
    "concept_branches",
    "intervention_effects",
    "ablation_curve",
    "presence_values",
    "ace_alpha",
]

#: Unit-set sizes of the ablation curves.
SIZES = (1, 2, 4, 8, 16, 32)


def _from_network(v: torch.Tensor) -> torch.Tensor:
    return (v + 1) / 2


def _branches(out) -> list[torch.Tensor]:
    return list(out) if isinstance(out, (tuple, list)) else [out]


def concept_branches(name: str, n_branches: int) -> tuple[int, ...]:
    """Output branches that should hold concept ``name`` (all of them for one-branch models)."""
    if n_branches == 2:
        if name.startswith("A.") or name == "galaxy_A":
            return (0,)
        if name.startswith("B.") or name in ("galaxy_B", "fill"):
            return (1,)
    return tuple(range(n_branches))


@dataclass
class EffectSet:
    """Inputs, concept masks and (optionally) targets for effect measurements.

    Attributes
    ----------
    inputs : torch.Tensor
        Generator inputs ``(N, …)``.
    concepts : Concepts
        Truth masks ``(N, K, H, W)`` on the output frame.
    targets : sequence of ndarray, optional
        Per branch, the true output ``(N, C, H, W)`` in [0, 1] (for ΔPSNR / ΔSSIM).
    batch_size : int
    to_display : callable
        Generator output → [0, 1].
    """

    inputs: torch.Tensor
    concepts: Concepts
    targets: Sequence[np.ndarray] | None = None
    batch_size: int = 32
    to_display: Callable[[torch.Tensor], torch.Tensor] = _from_network

    def __post_init__(self) -> None:
        self.inputs = torch.as_tensor(self.inputs)
        if len(self.inputs) != self.concepts.masks.shape[0]:
            raise ValueError("EffectSet needs one concept mask set per input")
        self._masks = torch.from_numpy(self.concepts.masks)

    def __len__(self) -> int:
        return len(self.inputs)

    def outputs(self, model: nn.Module, interventions: Sequence[Intervention] = ()
                ) -> list[torch.Tensor]:
        """Display outputs per branch, ``(N, C, H, W)``, under ``interventions``."""
        device = next(model.parameters()).device
        parts: list[list[torch.Tensor]] = []
        with torch.no_grad(), intervene(model, list(interventions)):
            for lo in range(0, len(self), self.batch_size):
                out = _branches(model(self.inputs[lo:lo + self.batch_size].to(device)))
                parts.append([self.to_display(o).float().cpu() for o in out])
        return [torch.cat([p[j] for p in parts]) for j in range(len(parts[0]))]

    def mask(self, name: str, rows=slice(None)) -> torch.Tensor:
        """Float mask ``(n, H, W)`` of concept ``name``."""
        return self._masks[rows, self.concepts.index(name)].float()

    def sky(self, outputs: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        """Per branch and image, the median luminance over ``background`` (or everywhere)."""
        lum = [o.mean(dim=1) for o in outputs]
        if "background" not in self.concepts.names:
            return [v.flatten(1).median(dim=1).values for v in lum]
        bg = self._masks[:, self.concepts.index("background")]
        out = []
        for v in lum:
            med = [v[i][bg[i]].median() if bg[i].any() else v[i].median() for i in range(len(v))]
            out.append(torch.stack(med))
        return out


def _flux(outputs, sky, mask, branches) -> torch.Tensor:
    """Per image, the sky-subtracted luminance of ``branches`` inside ``mask`` (differentiable)."""
    total = 0
    for j in branches:
        lum = outputs[j].mean(dim=1) - sky[j].view(-1, 1, 1)
        total = total + (F.relu(lum) * mask).flatten(1).sum(dim=1)
    return total


def _only(data: EffectSet, a: str, b: str) -> torch.Tensor:
    return data.mask(a) * (1 - data.mask(b))


def intervention_effects(model: nn.Module, data: EffectSet, interventions: Sequence[Intervention],
                         concept: str, *, baseline: Sequence[torch.Tensor] | None = None
                         ) -> dict[str, float]:
    """Share of ``concept`` removed, leakage and ΔPSNR / ΔSSIM per branch of one intervention.

    Returns
    -------
    dict
        ``share_removed`` (pooled over images), ``leak_b_into_a``, ``leak_a_into_b`` (two-branch
        models with ``galaxy_A`` / ``galaxy_B`` concepts), ``dpsnr_<j>``, ``dssim_<j>`` per branch
        (with targets).
    """
    from galaxai.metrics import psnr, ssim

    before = list(baseline) if baseline is not None else data.outputs(model)
    after = data.outputs(model, interventions)
    sky = data.sky(before)
    n = len(before)
    owners = concept_branches(concept, n)
    f0 = _flux(before, sky, data.mask(concept), owners).sum()
    f1 = _flux(after, sky, data.mask(concept), owners).sum()
    result = {"share_removed": float(1 - f1 / f0) if f0 > 0 else float("nan")}
    if n == 2 and {"galaxy_A", "galaxy_B"} <= set(data.concepts.names):
        for other, j, own_b, tag in (("galaxy_B", 0, 1, "leak_b_into_a"),
                                     ("galaxy_A", 1, 0, "leak_a_into_b")):
            mine = "galaxy_A" if other == "galaxy_B" else "galaxy_B"
            region = _only(data, other, mine)
            rise = _flux(after, sky, region, (j,)).sum() - _flux(before, sky, region, (j,)).sum()
            own = _flux(before, sky, data.mask(other), (own_b,)).sum()
            result[tag] = float(rise / own) if own > 0 else float("nan")
    if data.targets is not None:
        for j, target in enumerate(data.targets):
            result[f"dpsnr_{j}"] = float(np.mean(psnr(after[j].numpy(), target))
                                         - np.mean(psnr(before[j].numpy(), target)))
            result[f"dssim_{j}"] = float(np.mean(ssim(after[j].numpy(), target))
                                         - np.mean(ssim(before[j].numpy(), target)))
    return result


def ablation_curve(model: nn.Module, data: EffectSet, layer: str, ranked_units: Sequence[int],
                   concept: str, *, sizes: Sequence[int] = SIZES, n_random: int = 5,
                   seed: int = 0, ranking: str = "iou", progress: bool = False) -> pd.DataFrame:
    """Share of ``concept`` removed by ablating the top-n ranked units vs random n-unit sets.

    Every set is ablated over the whole featuremap. Returns one row per (n, set): ``layer, n,
    kind ("top" or "random"), set, units, share_removed, leak_*, dpsnr_*, dssim_*``.
    """
    from tqdm.auto import tqdm

    with torch.no_grad(), record(model, [layer]) as seen:
        model(data.inputs[:1].to(next(model.parameters()).device))
    d = seen[layer].shape[1]
    sizes = [n for n in sizes if n <= d]
    if not sizes:
        raise ValueError(f"layer {layer!r} has {d} units, fewer than every requested set size")
    rng = np.random.default_rng(seed)
    baseline = data.outputs(model)
    rows = []
    jobs = [(n, "top", 0, list(ranked_units[:n])) for n in sizes]
    jobs += [(n, "random", s, sorted(rng.choice(d, n, replace=False).tolist()))
             for n in sizes for s in range(n_random)]
    for n, kind, s, units in tqdm(jobs, desc=f"ablate {layer}", disable=not progress, leave=False):
        effect = intervention_effects(model, data, [Intervention(layer, tuple(units))], concept,
                                      baseline=baseline)
        rows.append({"layer": layer, "concept": concept, "ranking": ranking, "n": n, "kind": kind,
                     "set": s, "units": " ".join(map(str, units)), **effect})
    return pd.DataFrame(rows)


def _cells(mask: torch.Tensor, cell: int) -> torch.Tensor:
    """Concept fraction per ``cell × cell`` patch, ``(N, H/cell, W/cell)``."""
    return F.avg_pool2d(mask[:, None], cell)[:, 0]


def presence_values(model: nn.Module, data: EffectSet, layer: str, concept: str, *,
                    cell: int = 8) -> torch.Tensor:
    """``k_u`` (``presence_mean``): each unit's mean over cells weighted by their concept share."""
    device = next(model.parameters()).device
    num, den = 0, 0
    with torch.no_grad(), record(model, [layer]) as seen:
        for lo in range(0, len(data), data.batch_size):
            rows = slice(lo, lo + data.batch_size)
            model(data.inputs[rows].to(device))
            r = seen[layer].float().cpu()
            frac = _cells(data.mask(concept, rows), cell)                 # (B, h', w')
            pooled = F.adaptive_avg_pool2d(r, frac.shape[-2:])            # (B, d, h', w')
            num = num + (pooled * frac[:, None]).sum(dim=(0, 2, 3))
            den = den + frac.sum()
    return num / max(float(den), 1e-12)


def ace_alpha(model: nn.Module, data: EffectSet, layer: str, concept: str, *,
              init: Sequence[float] | None = None, lam: float = 0.005, lr: float = 0.01,
              epochs: int = 10, batch: int = 2, accumulate: int = 10, cell: int = 8,
              n_present: int | None = None, seed: int = 0, progress: bool = False
              ) -> tuple[np.ndarray, pd.DataFrame]:
    """Unit weights α ∈ [0, 1]^d maximising the average causal effect of ``layer`` on ``concept``.

    Minimises ``−δ + λ‖α‖²`` over pairs of a *present* sample (concept flux remaining after the
    relaxed ablation ``(1 − α) ⊙ r`` over the whole featuremap, as a share of the flux before)
    and a *candidate* sample (the soft source probability, :class:`~galaxai.dissect.concepts.
    FluxSegmenter`, in the owning branch at one ``cell`` not holding the concept, after the relaxed
    insertion ``(1 − α) ⊙ r + α ⊙ k`` there). Present samples are those with the largest concept
    cover; candidate cells are drawn in proportion to how often a cell holds the concept among
    them (plus mean/10 smoothing), excluding cells that already hold it. Adam (``lr``), batches
    of ``batch`` pairs, gradients accumulated over ``accumulate`` batches, α clamped to [0, 1]
    after each step, pairs reshuffled each epoch. The generator stays frozen.

    Returns
    -------
    alpha : ndarray (d,)
        Rank units by it: ``"<concept>-ace"``.
    history : pandas.DataFrame
        Per epoch: mean loss, ablation term, insertion term, units with α > 0.5.
    """
    from tqdm.auto import tqdm

    from galaxai.dissect.concepts import FluxSegmenter

    device = next(model.parameters()).device
    rng = np.random.default_rng(seed)
    cover = data.mask(concept).flatten(1).mean(dim=1).numpy()
    order = np.argsort(-cover, kind="stable")
    order = order[cover[order] > 0]
    n_present = len(order) // 2 if n_present is None else min(n_present, len(order))
    if n_present < 1:
        raise ValueError(f"no image holds concept {concept!r}; cannot optimise its units")
    present = order[:n_present]
    candidates = np.setdiff1d(np.arange(len(data)), present)
    if candidates.size == 0:
        candidates = present
    k = presence_values(model, data, layer, concept, cell=cell).to(device)
    d = k.numel()
    alpha0 = torch.full((d,), 0.5) if init is None else torch.as_tensor(init, dtype=torch.float32)
    if alpha0.numel() != d:
        raise ValueError(f"init has {alpha0.numel()} values; layer {layer!r} has {d} units")
    alpha = alpha0.clone().clamp(0, 1).to(device).requires_grad_(True)
    frac = _cells(data.mask(concept), cell)                                # (N, h', w')
    where = frac[present].mean(dim=0).flatten().numpy()
    prob = where + where.mean() / 10 + 1e-12
    with torch.no_grad():
        owners = concept_branches(concept, len(_branches(model(data.inputs[:1].to(device)))))
    segmenter = FluxSegmenter()
    opt = torch.optim.Adam([alpha], lr=lr)
    for p in model.parameters():
        p.requires_grad_(False)
    history = []
    for epoch in tqdm(range(epochs), desc=f"ACE {concept}", disable=not progress, leave=False):
        pairs = np.stack([rng.permutation(present),
                          rng.choice(candidates, len(present), replace=True)], axis=1)
        totals = np.zeros(3)
        opt.zero_grad()
        for step, lo in enumerate(range(0, len(pairs), batch)):
            pi, ci = pairs[lo:lo + batch, 0], pairs[lo:lo + batch, 1]
            cells = []
            for c in ci:   # one candidate cell per sample, not already holding the concept
                p = np.where(frac[c].flatten().numpy() > 0, 0.0, prob)
                cells.append(int(rng.choice(p.size, p=p / p.sum())) if p.sum() > 0 else 0)
            a = alpha.view(1, d, 1, 1)
            with torch.no_grad():
                before = [_from_network(o) for o in _branches(model(data.inputs[pi].to(device)))]
            sky = [o.mean(dim=1).flatten(1).median(dim=1).values for o in before]
            m = data.mask(concept, pi).to(device)
            f0 = _flux(before, sky, m, owners)
            with _relaxed(model, layer, a, None):
                after = [_from_network(o) for o in _branches(model(data.inputs[pi].to(device)))]
            ablation = (_flux(after, sky, m, owners) / f0.clamp_min(1e-6)).mean()
            region = _cell_masks(cells, frac.shape[-2:], cell, data.inputs.shape[-2:]).to(device)
            with _relaxed(model, layer, a * region, k.view(1, d, 1, 1)):
                ins = [_from_network(o) for o in _branches(model(data.inputs[ci].to(device)))]
            soft = sum(segmenter.segment(ins[j])[1][:, 0] for j in owners) / len(owners)
            insertion = ((soft * region[:, 0]).flatten(1).sum(1)
                         / region[:, 0].flatten(1).sum(1)).mean()
            loss = ablation - insertion + lam * (alpha ** 2).sum()
            (loss / accumulate).backward()
            totals += [loss.item(), ablation.item(), insertion.item()]
            if (step + 1) % accumulate == 0:
                opt.step()
                opt.zero_grad()
                with torch.no_grad():
                    alpha.clamp_(0, 1)
        opt.step()
        with torch.no_grad():
            alpha.clamp_(0, 1)
        steps = max(1, -(-len(pairs) // batch))
        history.append({"epoch": epoch, "loss": totals[0] / steps, "ablation": totals[1] / steps,
                        "insertion": totals[2] / steps,
                        "units_above_half": int((alpha > 0.5).sum())})
    for p in model.parameters():
        p.requires_grad_(True)
    return alpha.detach().cpu().numpy(), pd.DataFrame(history)


def _cell_masks(cells: Sequence[int], grid, cell: int, size) -> torch.Tensor:
    """``(B, 1, H, W)`` masks of one ``cell × cell`` patch each."""
    out = torch.zeros(len(cells), 1, *size)
    for i, c in enumerate(cells):
        y, x = divmod(c, grid[1])
        out[i, 0, y * cell:(y + 1) * cell, x * cell:(x + 1) * cell] = 1
    return out


class _relaxed:
    """Forward hook ``r ⊙ (1 − a) + a ⊙ v`` with tensors ``a`` (differentiable) and ``v``."""

    def __init__(self, model: nn.Module, layer: str, a: torch.Tensor, v: torch.Tensor | None):
        from galaxai.dissect.hooks import resolve_layer, rewrite

        self._module = resolve_layer(model, layer)
        self._fn = lambda _m, _i, out: rewrite(out, _resize(a, out), v)
        self._handle = None

    def __enter__(self):
        self._handle = self._module.register_forward_hook(self._fn, prepend=True)
        return self

    def __exit__(self, *exc):
        self._handle.remove()


def _resize(a: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    if a.shape[-2:] == like.shape[-2:] or a.shape[-1] == 1:
        return a
    return F.adaptive_max_pool2d(a, like.shape[-2:])
