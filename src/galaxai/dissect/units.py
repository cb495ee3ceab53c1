"""Per-unit thresholds, dataset-level IoU / IQR and labels (Bau et al. 2019, GAN variant).

For every unit ``u`` of the dissected layers:

1. **Thresholds from their own set.** On the *threshold set*, candidate fractions
   ``f ∈ logspace(−3, 0, 100)`` give levels ``t_f``, the ``1 − f`` quantile of the unit's
   activations (on a pixel subsample). For every (unit, concept, f) a 2×2 table of
   ``(r_u > t_f) × (pixel in concept)`` is pooled over the set; IQR = I / H (mutual information
   over joint entropy), eligible only where the two binary maps agree on > 80 % of pixels and
   ``t_f > 0``. The concept with the highest max-over-f IQR fixes the unit's threshold ``t_u``.
2. **IoU on the dissection set** (a different seed): ``IoU = Σ|A ∧ S| / (Σ|A| + Σ|S| − Σ|A ∧ S|)``
   with sums over all images *before* dividing; ``|A|`` counts only images in which the concept's
   category has some label. Label = argmax-IQR concept; interpretable when IQR > 0.01 and
   IoU > 0.05 and the label's optimal fraction is ≤ 0.5.

Counting is done without storing activations: every pixel gets a *signature*, the bit set of
the concepts it belongs to plus one bit per category present in its image (numbered once per set),
and one ``bincount`` per batch and layer tallies (signature, unit, threshold bin). Bins come from
a per-unit lookup table on a uniform grid plus a few exact comparisons (no binary search per
pixel). Tables for any concept are sums over signatures afterwards.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Iterable, Sequence

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from galaxai.dissect.concepts import Concepts
from galaxai.dissect.hooks import record

__all__ = [
    "FRACTIONS",
    "ConceptSet",
    "UnitDissection",
    "unit_thresholds",
    "dissect_units",
    "iou_iqr",
]

#: Candidate activation fractions of the IQR threshold rule.
FRACTIONS = np.logspace(-3, 0, 100)
_MIN_COVER = 1e-4       # concepts covering less are skipped
_MIN_COVER_IQR = 1e-3   # ... and below this their IQR is 0
_AGREEMENT = 0.8


@dataclass
class ConceptSet:
    """Network inputs with concept masks, batched.

    Attributes
    ----------
    inputs : torch.Tensor
        Whatever the model takes (blends ``(N, 3, H, W)``, or latents ``(N, z)``).
    concepts : Concepts
        Masks at image resolution, one per input.
    batch_size : int
    """

    inputs: torch.Tensor
    concepts: Concepts
    batch_size: int = 16

    def __post_init__(self) -> None:
        self.inputs = torch.as_tensor(self.inputs)
        if len(self.inputs) != self.concepts.masks.shape[0]:
            raise ValueError(f"{len(self.inputs)} inputs but {self.concepts.masks.shape[0]} "
                             "concept masks; give one mask set per input")
        self._cats = sorted(set(self.concepts.categories))
        codes, index = torch.unique(_signatures(self.concepts), return_inverse=True)
        self._signatures, self._index = codes.numpy(), index

    def __len__(self) -> int:
        return len(self.inputs)

    def batches(self, limit: int | None = None) -> Iterable[tuple[torch.Tensor, torch.Tensor]]:
        """``(inputs, signature numbers (B, H, W) int64)`` batches, the first ``limit`` inputs.

        A pixel's number indexes :attr:`signatures`, its concept bit set.
        """
        n = len(self) if limit is None else min(int(limit), len(self))
        for lo in range(0, n, self.batch_size):
            hi = min(lo + self.batch_size, n)
            yield self.inputs[lo:hi], self._index[lo:hi]

    @property
    def signatures(self) -> np.ndarray:
        """The distinct concept bit sets of the set's pixels, ``(S,)`` int64."""
        return self._signatures

    def concept_bits(self) -> tuple[list[int], list[int]]:
        """Per concept: its bit, and the bit of its category's presence flag."""
        k = len(self.concepts.names)
        return list(range(k)), [k + self._cats.index(c) for c in self.concepts.categories]


def _signatures(concepts: Concepts) -> torch.Tensor:
    masks = concepts.masks
    k = masks.shape[1]
    if k + len(set(concepts.categories)) > 62:
        raise ValueError(f"{k} concepts is more than dissection's 60-concept signature allows")
    weights = (np.int64(1) << np.arange(k, dtype=np.int64))
    codes = np.tensordot(masks.astype(np.int64), weights, axes=([1], [0]))
    present = concepts.category_present().astype(np.int64)
    codes |= (present @ (np.int64(1) << np.arange(k, k + present.shape[1], dtype=np.int64)))[
        :, None, None]
    return torch.from_numpy(codes)


def _featuremaps(maps: dict[str, torch.Tensor], size: tuple[int, int]) -> dict[str, torch.Tensor]:
    """Featuremaps at mask resolution (centre-aligned bilinear, border padding)."""
    out = {}
    for name, r in maps.items():
        if r.ndim != 4:
            raise ValueError(f"layer {name!r} gives shape {tuple(r.shape)}; dissection needs "
                             "convolutional featuremaps (B, d, h, w)")
        if tuple(r.shape[-2:]) != tuple(size):
            r = F.interpolate(r, size=size, mode="bilinear", align_corners=False)
        out[name] = r.float()
    return out


def _run(model: nn.Module, data: ConceptSet, layers: Sequence[str], limit: int | None,
         forward: Callable, progress, desc: str):
    from tqdm.auto import tqdm

    n = len(data) if limit is None else min(limit, len(data))
    bar = tqdm(total=n, desc=desc, unit="img", disable=not progress, leave=False)
    device = next(model.parameters()).device
    with torch.inference_mode(), record(model, layers) as seen:
        for x, codes in data.batches(limit):
            forward(model, x.to(device))
            yield _featuremaps({k: v.cpu() for k, v in seen.items()}, tuple(codes.shape[-2:])), codes
            bar.update(len(x))
    bar.close()


_GRID = 4096       # lookup cells per unit for binning
_MAX_STEPS = 8     # exact comparisons after the lookup; more boundaries per cell: binary search


def _bins(r: torch.Tensor, boundaries: torch.Tensor) -> torch.Tensor:
    """Per unit, the number of ``boundaries`` below each value: ``(d, M)`` from ``(d, M)``.

    A uniform grid over each unit's boundary range is a monotone map of values to cells, so every
    boundary in a lower cell is below the value; the boundaries sharing its cell are compared
    exactly. Equal to ``torch.searchsorted(boundaries, r)``.
    """
    d, t = boundaries.shape
    if t == 1:
        return (r > boundaries).long()
    lo, hi = boundaries[:, :1], boundaries[:, -1:]
    scale = _GRID / (hi - lo).clamp_min(1e-30)

    def cell(v):
        return ((v - lo) * scale).clamp_(0, _GRID - 1).long()

    cb = cell(boundaries)                                          # (d, T), non-decreasing
    per_cell = torch.zeros(d, _GRID + 1, dtype=torch.int64)
    per_cell.scatter_add_(1, cb + 1, torch.ones_like(cb))
    steps = int(per_cell.max())
    if steps > _MAX_STEPS or not torch.isfinite(scale).all():
        return torch.searchsorted(boundaries, r)
    below = per_cell.cumsum(1)                                     # boundaries in cells < c
    idx = torch.gather(below, 1, cell(r))
    padded = torch.cat([boundaries, torch.full((d, 1), torch.inf)], dim=1)
    for _ in range(steps):
        idx += torch.gather(padded, 1, idx) < r
    return idx


def _tally(r: torch.Tensor, boundaries: torch.Tensor, codes: torch.Tensor, table: np.ndarray
           ) -> None:
    """Add counts of (signature, unit, bin) to ``table`` ``(S, d, T + 1)``.

    ``codes`` are signature numbers ``(B, H, W)``; bin = number of boundaries below the value.
    """
    d = r.shape[1]
    nb = boundaries.shape[1] + 1
    bins = _bins(r.transpose(0, 1).reshape(d, -1), boundaries.contiguous())   # (d, B·H·W)
    key = (codes.reshape(1, -1) * d + torch.arange(d).view(d, 1)) * nb + bins
    table += torch.bincount(key.reshape(-1), minlength=table.size).view(table.shape).numpy()


def _table(tables: dict[str, np.ndarray], name: str, data: ConceptSet, boundaries: torch.Tensor
           ) -> np.ndarray:
    """The count table of layer ``name``, created at its first batch."""
    if name not in tables:
        d, t = boundaries.shape
        tables[name] = np.zeros((len(data.signatures), d, t + 1), np.int64)
    return tables[name]


def _tables(table: np.ndarray, codes: np.ndarray, bit: int, cat_bit: int):
    """Pooled 2×2 counts per unit and threshold: ``(a, |A|, |S|, n)``, each over (d, T)."""
    stack = table                                                 # (S, d, T+1)
    above = np.cumsum(stack[..., ::-1], axis=-1)[..., ::-1][..., 1:]  # (S, d, T): counts > t_j
    total = stack.sum(axis=-1)                                    # (S, d)
    in_c = ((codes >> bit) & 1).astype(bool)
    in_cat = ((codes >> cat_bit) & 1).astype(bool)
    a = above[in_c].sum(axis=0)
    size_a = above[in_cat].sum(axis=0)
    size_s = total[in_c].sum(axis=0)[:, None]
    n = total[in_cat].sum(axis=0)[:, None]
    return a.astype(np.float64), size_a.astype(np.float64), size_s.astype(np.float64), n.astype(
        np.float64)


def iou_iqr(a, size_a, size_s, n):
    """IoU, IQR (= I/H) and agreement from pooled counts.

    Parameters
    ----------
    a : array_like
        ``Σ|A ∧ S|``.
    size_a, size_s : array_like
        ``Σ|A|`` and ``Σ|S|``.
    n : array_like
        Pixels counted.

    Returns
    -------
    iou, iqr, agreement : ndarray
    """
    a, size_a, size_s, n = np.broadcast_arrays(*(np.asarray(v, np.float64) for v in
                                                 (a, size_a, size_s, n)))
    union = size_a + size_s - a
    with np.errstate(divide="ignore", invalid="ignore"):
        iou = np.where(union > 0, a / union, 0.0)
        cells = np.stack([a, size_a - a, size_s - a, n - size_a - size_s + a]) / np.where(n > 0, n, 1)
        pa = np.stack([size_a, n - size_a]) / np.where(n > 0, n, 1)
        ps = np.stack([size_s, n - size_s]) / np.where(n > 0, n, 1)
        outer = np.stack([pa[0] * ps[0], pa[0] * ps[1], pa[1] * ps[0], pa[1] * ps[1]])
        mi = np.where(cells > 0, cells * np.log(cells / np.where(outer > 0, outer, 1)), 0).sum(0)
        h = -np.where(cells > 0, cells * np.log(cells), 0).sum(0)
        iqr = np.where(h > 0, mi / h, 0.0)
    agreement = cells[0] + cells[3]
    return iou, np.clip(iqr, 0.0, None), agreement


def _quantile_levels(model, data, layers, limit, forward, samples, seed, progress):
    """``t_f`` per layer: (d, len(FRACTIONS)) levels from a pixel subsample."""
    rng = np.random.default_rng(seed)
    n_img = len(data) if limit is None else min(limit, len(data))
    values: dict[str, list[torch.Tensor]] = {}
    for maps, codes in _run(model, data, layers, limit, forward, progress, "quantiles"):
        hw = codes.shape[-1] * codes.shape[-2]
        k = max(1, min(hw, samples // max(n_img, 1)))
        # the same random pixels of each image for every layer
        pick = torch.from_numpy(np.argsort(rng.random((codes.shape[0], hw)), axis=1)[:, :k])
        for name, r in maps.items():
            flat = r.flatten(2)                                   # (B, d, hw)
            got = torch.gather(flat, 2, pick[:, None, :].expand(-1, flat.shape[1], -1))
            values.setdefault(name, []).append(got.permute(1, 0, 2).reshape(flat.shape[1], -1))
    q = torch.from_numpy(1.0 - FRACTIONS).float()
    levels = {}
    for name, chunks in values.items():
        v = torch.cat(chunks, dim=1).sort(dim=1).values
        pos = (q * (v.shape[1] - 1)).round().long()
        levels[name] = v[:, pos]                                    # (d, F), decreasing in f
    return levels


@dataclass
class UnitDissection:
    """Result of :func:`dissect_units`.

    Attributes
    ----------
    units : pandas.DataFrame
        One row per unit: ``layer, unit, threshold, fraction, label, iou, iqr, interpretable``.
    iou, iqr : dict of str to ndarray (d, K)
        Dataset-level IoU and IQR of every unit with every concept, per layer.
    concepts : tuple of str
    """

    units: pd.DataFrame
    iou: dict[str, np.ndarray]
    iqr: dict[str, np.ndarray]
    concepts: tuple[str, ...]
    thresholds: dict[str, np.ndarray] = field(default_factory=dict)

    def ranking(self, concept: str, by: str = "iou") -> pd.DataFrame:
        """Units ranked for ``concept`` (``"<concept>-iou"``): ``layer, unit, iou, iqr``."""
        k = self.concepts.index(concept)
        rows = [(layer, u, self.iou[layer][u, k], self.iqr[layer][u, k])
                for layer in self.iou for u in range(self.iou[layer].shape[0])]
        df = pd.DataFrame(rows, columns=["layer", "unit", "iou", "iqr"])
        return df.sort_values(by, ascending=False, kind="stable").reset_index(drop=True)


def _default_forward(model, x):
    return model(x)


def unit_thresholds(model: nn.Module, threshold_set: ConceptSet, layers: Sequence[str], *,
                    limit: int | None = None, quantile_samples: int = 100_000,
                    quantile_images: int = 200, forward: Callable = _default_forward,
                    seed: int = 0, progress: bool = False) -> dict[str, dict[str, np.ndarray]]:
    """The IQR threshold rule on the threshold set.

    Returns
    -------
    dict of layer → {"threshold": (d,), "fraction": (d,), "best": (d,) concept index or −1,
    "fraction_per_concept": (d, K) optimal f of each concept (NaN when none is eligible)}
    """
    levels = _quantile_levels(model, threshold_set, layers, min(quantile_images, limit or 10**9),
                              forward, quantile_samples, seed, progress)
    # Ascending boundaries per unit (levels decrease with f).
    asc = {name: lv.flip(1).contiguous() for name, lv in levels.items()}
    tables: dict[str, np.ndarray] = {}
    for maps, codes in _run(model, threshold_set, layers, limit, forward, progress, "thresholds"):
        for name, r in maps.items():
            _tally(r, asc[name], codes, _table(tables, name, threshold_set, asc[name]))
    bits, cat_bits = threshold_set.concept_bits()
    out = {}
    for name in layers:
        lv = levels[name].numpy().astype(np.float64)             # (d, F) by fraction
        d, nf = lv.shape
        best_iqr = np.full((d, len(bits)), -1.0)
        best_f = np.full((d, len(bits)), np.nan)
        for k, (bit, cbit) in enumerate(zip(bits, cat_bits)):
            a, sa, ss, n = (v[:, ::-1] if v.shape[-1] == nf else v
                            for v in _tables(tables[name], threshold_set.signatures, bit, cbit))  # back to f order
            cover = ss[:, 0] / np.maximum(n[:, 0], 1)
            if cover.max() < _MIN_COVER:
                continue
            _, iqr, agree = iou_iqr(a, sa, ss, n)
            iqr = np.where(cover[:, None] < _MIN_COVER_IQR, 0.0, iqr)
            iqr[:, -1] = 0.0                                      # f = 1
            ok = (agree > _AGREEMENT) & (lv > 0)
            iqr = np.where(ok, iqr, -1.0)
            j = iqr.argmax(axis=1)
            best_iqr[:, k] = iqr[np.arange(d), j]
            best_f[:, k] = np.where(best_iqr[:, k] >= 0, FRACTIONS[j], np.nan)
        best = np.where(best_iqr.max(axis=1) >= 0, best_iqr.argmax(axis=1), -1)
        # Without an eligible fraction the classifier rule (top 0.5 %) stands in.
        f_u = np.where(best >= 0, best_f[np.arange(d), np.maximum(best, 0)], 0.005)
        col = np.abs(FRACTIONS[None, :] - f_u[:, None]).argmin(axis=1)
        out[name] = {"threshold": lv[np.arange(d), col], "fraction": f_u, "best": best,
                     "fraction_per_concept": best_f}
    return out


def dissect_units(model: nn.Module, threshold_set: ConceptSet, dissection_set: ConceptSet,
                  layers: Sequence[str], *, limit: int | None = None,
                  forward: Callable = _default_forward, progress: bool = False,
                  **threshold_options) -> UnitDissection:
    """Thresholds on ``threshold_set``, then IoU / IQR / labels on ``dissection_set``.

    Parameters
    ----------
    model : torch.nn.Module
        Any network; ``forward(model, inputs)`` runs it (default ``model(inputs)``).
    threshold_set, dissection_set : ConceptSet
        Disjoint sets (different seeds) with the same concept names.
    layers : sequence of str
        Layers to dissect (:func:`galaxai.dissect.hooks.resolve_layer` names).
    limit : int, optional
        Use only the first ``limit`` inputs of each set.
    **threshold_options
        Passed to :func:`unit_thresholds`.
    """
    if threshold_set.concepts.names != dissection_set.concepts.names:
        raise ValueError("threshold and dissection sets must have the same concepts")
    if threshold_set.inputs.shape == dissection_set.inputs.shape and torch.equal(
            threshold_set.inputs, dissection_set.inputs):
        raise ValueError("the threshold set equals the dissection set; thresholds must come from "
                         "their own set (draw it with another seed)")
    layers = list(layers)
    thr = unit_thresholds(model, threshold_set, layers, limit=limit, forward=forward,
                          progress=progress, **threshold_options)
    tables: dict[str, np.ndarray] = {}
    bounds = {name: torch.from_numpy(thr[name]["threshold"]).float()[:, None] for name in layers}
    for maps, codes in _run(model, dissection_set, layers, limit, forward, progress, "dissect"):
        for name, r in maps.items():
            _tally(r, bounds[name], codes, _table(tables, name, dissection_set, bounds[name]))
    bits, cat_bits = dissection_set.concept_bits()
    names = dissection_set.concepts.names
    rows, ious, iqrs = [], {}, {}
    for name in layers:
        d = len(thr[name]["threshold"])
        iou = np.zeros((d, len(names)))
        iqr = np.full((d, len(names)), np.nan)
        for k, (bit, cbit) in enumerate(zip(bits, cat_bits)):
            a, sa, ss, n = _tables(tables[name], dissection_set.signatures, bit, cbit)
            cover = ss[:, 0] / np.maximum(n[:, 0], 1)
            if cover.max() < _MIN_COVER:
                continue
            i, q, _ = iou_iqr(a[:, 0], sa[:, 0], ss[:, 0], n[:, 0])
            iou[:, k] = i
            iqr[:, k] = np.where(cover < _MIN_COVER_IQR, 0.0, q)
        ious[name], iqrs[name] = iou, iqr
        for u in range(d):
            has_iqr = np.isfinite(iqr[u]).any()
            k = int(np.nanargmax(iqr[u])) if has_iqr else int(iou[u].argmax())
            f_label = thr[name]["fraction_per_concept"][u, k]
            interpretable = bool(has_iqr and iqr[u, k] > 0.01 and iou[u, k] > 0.05
                                 and not (np.isfinite(f_label) and f_label > 0.5))
            rows.append({"layer": name, "unit": u, "threshold": float(thr[name]["threshold"][u]),
                         "fraction": float(thr[name]["fraction"][u]), "label": names[k],
                         "iou": float(iou[u, k]), "iqr": float(iqr[u, k]) if has_iqr else np.nan,
                         "interpretable": interpretable})
    return UnitDissection(pd.DataFrame(rows), ious, iqrs, names,
                          {name: thr[name]["threshold"] for name in layers})
