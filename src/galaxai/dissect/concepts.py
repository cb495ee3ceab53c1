"""Concept masks for dissection: simulation truth, and a flux segmenter for real images.

Every mask lives on the frame shared by the blend and both outputs. From simulation truth
(``specs/dissection.md``, "Galaxy concepts"):

========================  ================================================================
``galaxy_A``, ``galaxy_B``  that galaxy's noiseless model ≥ 1 × its sky noise σ (the footprint)
``overlap``                 both footprints
``background``              neither footprint
``fill``                    padded pixels of B's target (the phantom boundary)
``A.bar`` … ``B.knots``     inside a footprint, the component supplies ≥ ``fraction`` of the
                            galaxy's model flux; pooled over both galaxies as ``bar`` …
========================  ================================================================

The footprint and component rules read the r band (the middle band, the usual detection band).
For real targets, :class:`FluxSegmenter` detects sources with photutils and replaces components
by ``core`` (≥ 0.5 × the galaxy's smoothed peak) and ``outskirts``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np
import torch
from scipy import ndimage

__all__ = [
    "REGIONS",
    "COMPONENTS",
    "Concepts",
    "truth_concepts",
    "store_concepts",
    "FluxSegmenter",
]

#: Region concepts from simulation truth.
REGIONS = ("galaxy_A", "galaxy_B", "overlap", "background", "fill")
#: Component names of the parametric simulator.
COMPONENTS = ("bulge", "disk", "bar", "arms", "knots")
_BAND = 1  # r


@dataclass(frozen=True)
class Concepts:
    """Boolean concept masks and their names.

    Attributes
    ----------
    names : tuple of str
    categories : tuple of str
        ``"region"`` or ``"component"`` per name.
    masks : ndarray of bool, (N, K, H, W)
    """

    names: tuple[str, ...]
    categories: tuple[str, ...]
    masks: np.ndarray

    def __post_init__(self) -> None:
        if self.masks.ndim != 4 or self.masks.shape[1] != len(self.names):
            raise ValueError(f"masks must be (N, {len(self.names)}, H, W), got {self.masks.shape}")
        if len(self.categories) != len(self.names):
            raise ValueError("one category per concept name is needed")

    def category_present(self) -> np.ndarray:
        """(N, n_categories) bool: which images have any label of each category."""
        cats = sorted(set(self.categories))
        out = np.zeros((self.masks.shape[0], len(cats)), bool)
        anywhere = self.masks.any(axis=(2, 3))
        for j, cat in enumerate(cats):
            cols = [k for k, c in enumerate(self.categories) if c == cat]
            out[:, j] = anywhere[:, cols].any(axis=1)
        return out

    def index(self, name: str) -> int:
        """Column of concept ``name`` (``KeyError`` naming the choices)."""
        if name not in self.names:
            raise KeyError(f"no concept {name!r}; choose one of {list(self.names)}")
        return self.names.index(name)


def truth_concepts(components_a: Mapping[str, np.ndarray], components_b: Mapping[str, np.ndarray],
                   sky_sigma_a, sky_sigma_b, fill_mask_b=None, *, fraction: float = 0.5
                   ) -> Concepts:
    """Region and component concepts from per-component noiseless truth.

    Parameters
    ----------
    components_a, components_b : mapping of str to ndarray, each (N, 3, H, W)
        Noiseless flux of each component of galaxy A and of (warped) galaxy B, bands g, r, i.
    sky_sigma_a, sky_sigma_b : array_like, (N,)
        r-band sky noise σ of each galaxy's image (flux units of the components).
    fill_mask_b : array_like of bool, (N, 1, H, W), optional
        Padded pixels of B's target; omitted, there is no ``fill`` concept.
    fraction : float
        Share of the galaxy's model flux a component must supply to label a pixel (0.5: single
        label; lower values allow several labels).

    Returns
    -------
    Concepts
    """
    if not 0 < fraction <= 1:
        raise ValueError(f"fraction must lie in (0, 1], got {fraction}")
    if not components_a or set(components_a) != set(components_b):
        raise ValueError("components_a and components_b must name the same, non-empty components")
    parts = sorted(components_a)
    names: list[str] = []
    masks: list[np.ndarray] = []
    footprints, comp_masks = [], {}
    for tag, comps, sigma in (("A", components_a, sky_sigma_a), ("B", components_b, sky_sigma_b)):
        r = {p: np.asarray(comps[p])[:, _BAND].astype(np.float64) for p in parts}
        model = sum(r.values())
        sigma = np.asarray(sigma, np.float64).reshape(-1, 1, 1)
        if sigma.shape[0] != model.shape[0] or not (sigma > 0).all():
            raise ValueError(f"sky_sigma_{tag.lower()} needs one positive value per image")
        foot = model >= sigma
        footprints.append(foot)
        for p in parts:
            if p in COMPONENTS:
                comp_masks[f"{tag}.{p}"] = foot & (r[p] >= fraction * model)
    fa, fb = footprints
    regions = {"galaxy_A": fa, "galaxy_B": fb, "overlap": fa & fb, "background": ~(fa | fb)}
    if fill_mask_b is not None:
        regions["fill"] = np.asarray(fill_mask_b, bool).reshape(fa.shape)
    for name, m in regions.items():
        names.append(name)
        masks.append(m)
    categories = ["region"] * len(names)
    pooled = [p for p in COMPONENTS if p in parts]
    for key, m in comp_masks.items():
        names.append(key)
        masks.append(m)
    for p in pooled:
        names.append(p)
        masks.append(comp_masks[f"A.{p}"] | comp_masks[f"B.{p}"])
    categories += ["component"] * (len(names) - len(categories))
    return Concepts(tuple(names), tuple(categories), np.stack(masks, axis=1))


def store_concepts(store, rows: Sequence[int] | None = None, *, fraction: float = 0.5
                   ) -> tuple[np.ndarray, Concepts]:
    """Blends and truth concepts of a simulated blend store.

    Parameters
    ----------
    store : galaxai.data.store.BlendStore
        Opened with ``components=True``.
    rows : sequence of int, optional
        Positions in the store's selection (default all).

    Returns
    -------
    blends : ndarray, (N, 3, H, W) float32 in [0, 1]
    concepts : Concepts
    """
    comp_names = [n for n in store.names if n.startswith("comp_")]
    if not comp_names:
        raise ValueError(f"{store.path}: no component truth in this store (a real-galaxy store, "
                         "or one opened without components=True); dissect with a simulated store "
                         "(galaxai data blend --source simulated) or masks='output'")
    rows = np.arange(len(store)) if rows is None else np.asarray(rows, int)
    arrays = store._read_rows(store.indices[rows], ["blend", "fill_mask_b", *comp_names])
    cat = store.catalogue.iloc[rows]
    comps = {t: {n.split("_", 2)[2]: arrays[n] for n in comp_names if n.startswith(f"comp_{t}_")}
             for t in "ab"}
    concepts = truth_concepts(comps["a"], comps["b"], cat["a_sky_sigma_r"].to_numpy(),
                              cat["b_sky_sigma_r"].to_numpy(), arrays["fill_mask_b"],
                              fraction=fraction)
    return arrays["blend"], concepts


class FluxSegmenter:
    """Segment display images into sources and sky, hard and soft.

    A pixel belongs to a source where the sky-subtracted luminance (channel mean) exceeds
    ``τ = nsigma × σ_sky``; the soft mask is ``sigmoid((v − τ) / (0.1 τ))``, differentiable in the
    images. Sky level and σ are sigma-clipped statistics of each image
    (:func:`galaxai.data.background.sky_statistics`). ``segments`` labels connected sources of at
    least ``npixels`` pixels (the photutils defaults of the spec: 2σ, 10 pixels).

    Parameters
    ----------
    nsigma : float
    npixels : int
    """

    def __init__(self, nsigma: float = 2.0, npixels: int = 10) -> None:
        if nsigma <= 0 or npixels < 1:
            raise ValueError("nsigma must be > 0 and npixels ≥ 1")
        self.nsigma = float(nsigma)
        self.npixels = int(npixels)

    def _levels(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        from galaxai.data.background import sky_statistics

        lum = images.detach().mean(dim=1, keepdim=True).cpu().numpy()
        _, median, std = sky_statistics(lum, channel_axis=1)
        median = np.nan_to_num(median, nan=0.0)
        std = np.maximum(np.nan_to_num(std, nan=1e-3), 1e-4)
        as_t = lambda a: torch.as_tensor(a, dtype=images.dtype, device=images.device).view(-1, 1, 1, 1)  # noqa: E731
        return as_t(median), as_t(self.nsigma * std)

    def segment(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(hard, soft)`` source masks, each ``(B, 1, H, W)``; ``soft`` carries gradients."""
        sky, tau = self._levels(images)
        v = images.mean(dim=1, keepdim=True) - sky
        soft = torch.sigmoid((v - tau) / (0.1 * tau))
        return v > tau, soft

    def regions(self, target_a, target_b, centre_b) -> "Concepts":
        """Region concepts of real blends from their two separately known targets.

        ``galaxy_A`` is the segment of ``target_a`` at the frame centre, ``galaxy_B`` the segment
        of ``target_b`` at ``centre_b`` (x, y per image), ``companion`` every other segment of
        either target; ``core`` the footprint pixels ≥ 0.5 × that galaxy's smoothed peak,
        ``outskirts`` the rest of the footprints.
        """
        ta, tb = (torch.as_tensor(np.asarray(t, np.float32)) for t in (target_a, target_b))
        n, _, h, w = ta.shape
        centre_b = np.asarray(centre_b, float).reshape(n, 2)
        names = ("galaxy_A", "galaxy_B", "overlap", "background", "companion", "core", "outskirts")
        out = np.zeros((n, len(names), h, w), bool)
        for t, k in ((ta, 0), (tb, 1)):
            hard, _ = self.segment(t)
            sky, _ = self._levels(t)
            lum = (t.mean(dim=1) - sky[:, 0]).numpy()
            for i in range(n):
                cx, cy = ((w - 1) / 2, (h - 1) / 2) if k == 0 else centre_b[i]
                labels, _ = ndimage.label(hard[i, 0].numpy())
                sizes = np.bincount(labels.ravel())
                small = sizes < self.npixels
                small[0] = True
                labels[small[labels]] = 0
                own = _segment_at(labels, cx, cy)
                if own:
                    foot = labels == own
                    out[i, k] = foot
                    peak = ndimage.gaussian_filter(lum[i], 1.0)[foot].max()
                    out[i, 5] |= foot & (lum[i] >= 0.5 * peak)
                out[i, 4] |= (labels > 0) & (labels != own)
        out[:, 2] = out[:, 0] & out[:, 1]
        out[:, 3] = ~(out[:, 0] | out[:, 1] | out[:, 4])
        out[:, 6] = (out[:, 0] | out[:, 1]) & ~out[:, 5]
        cats = ("region",) * 5 + ("component",) * 2
        return Concepts(names, cats, out)


def _segment_at(labels: np.ndarray, x: float, y: float) -> int:
    """Label at (x, y), or of the nearest segment pixel within 3 px; 0 if none."""
    h, w = labels.shape
    xi, yi = int(round(min(max(x, 0), w - 1))), int(round(min(max(y, 0), h - 1)))
    if labels[yi, xi]:
        return int(labels[yi, xi])
    yy, xx = np.nonzero(labels)
    if yy.size == 0:
        return 0
    d = np.hypot(yy - yi, xx - xi)
    return int(labels[yy[d.argmin()], xx[d.argmin()]]) if d.min() <= 3 else 0
