"""How close translated stamps are to real ones: KID and a morphology-statistics distance.

KID (Bińkowski et al. 2018) is the unbiased estimate of the squared maximum mean discrepancy with
the polynomial kernel ``k(x, y) = (x·y/d + 1)³`` between feature sets. The features come from a
*named* extractor shipped with galaxai (nothing is downloaded):

``"realsky_d"``
    The penultimate layer (dense 128 + LeakyReLU) of the shipped ``realsky`` deblender
    discriminator, trained to tell real galaxies (HDF, COSMOS) from generated ones; stamps are
    resampled bilinearly to its 80 × 80 input.

KIDs from other extractors or implementations (e.g. Inception) are not comparable with these.

The morphology distance compares the distributions of six non-parametric statistics measured
with ``statmorph`` (Rodriguez-Gomez et al. 2019) on the stamps' mean of the three channels, sky
(the border median) subtracted: ``size`` (circular half-light radius, px), ``ellipticity``
(about the asymmetry centre), ``concentration`` C, ``asymmetry`` A, ``gini`` and ``m20``. The
segmentation is the SEP-like photutils segment under the centre (2σ of the border noise, ≥ 5
pixels); stamps with statmorph flag ≥ 2, no central segment, or a non-finite statistic are left
out (their count is reported). The distance of a set X to the reference R is the mean over the
statistics of the 1-Wasserstein distance divided by R's standard deviation,
``mean_s W₁(X_s, R_s) / sd(R_s)`` (0 for identical distributions; 1 ≈ a shift by one sd).
"""
from __future__ import annotations

import warnings
from functools import lru_cache

import numpy as np
import pandas as pd
import torch

__all__ = [
    "FEATURE_EXTRACTORS",
    "MORPHOLOGY_STATISTICS",
    "features",
    "kid",
    "morphology_table",
    "morphology_distance",
]

#: Named feature extractors of :func:`features`.
FEATURE_EXTRACTORS = ("realsky_d",)
#: Columns of :func:`morphology_table` compared by :func:`morphology_distance`.
MORPHOLOGY_STATISTICS = ("size", "ellipticity", "concentration", "asymmetry", "gini", "m20")


@lru_cache(maxsize=2)
def _extractor(name: str) -> tuple[torch.nn.Module, int]:
    from galaxai.api import discriminator

    if name not in FEATURE_EXTRACTORS:
        raise ValueError(f"extractor={name!r} is not one of {FEATURE_EXTRACTORS}")
    d = discriminator("realsky", "cpu")
    net = torch.nn.Sequential(d.features, *list(d.classifier)[:-1]).eval()
    return net, d.config.image_size


def features(images: np.ndarray | torch.Tensor, extractor: str = "realsky_d",
             batch_size: int = 64) -> np.ndarray:
    """Features ``(N, d)`` of ``(N, 3, H, W)`` images in [−1, 1] from a named extractor."""
    net, size = _extractor(extractor)
    x = torch.as_tensor(np.asarray(images, dtype=np.float32))
    if x.ndim != 4 or x.shape[1] != 3:
        raise ValueError(f"images must have shape (N, 3, H, W), got {tuple(x.shape)}")
    out = []
    with torch.no_grad():
        for chunk in x.split(batch_size):
            chunk = torch.nn.functional.interpolate(chunk, size=(size, size), mode="bilinear",
                                                    align_corners=False)
            out.append(net(chunk).double().numpy())
    return np.concatenate(out) if out else np.zeros((0, 0))


def kid(x: np.ndarray, y: np.ndarray) -> float:
    """Unbiased MMD² with the kernel ``(x·y/d + 1)³`` between feature sets ``(m, d)``, ``(n, d)``.

    ``(Σ_{i≠j} k(x_i, x_j))/(m(m−1)) + (Σ_{i≠j} k(y_i, y_j))/(n(n−1)) − 2·mean k(x_i, y_j)``;
    can be slightly negative for sets from one distribution.
    """
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if x.ndim != 2 or y.ndim != 2 or x.shape[1] != y.shape[1]:
        raise ValueError(f"x and y must be (m, d) and (n, d) feature arrays, got {x.shape} and "
                         f"{y.shape}")
    m, n, d = len(x), len(y), x.shape[1]
    if m < 2 or n < 2:
        raise ValueError(f"kid needs at least two samples per set, got {m} and {n}")
    kxx, kyy, kxy = ((a @ b.T / d + 1) ** 3 for a, b in ((x, x), (y, y), (x, y)))
    return float((kxx.sum() - np.trace(kxx)) / (m * (m - 1))
                 + (kyy.sum() - np.trace(kyy)) / (n * (n - 1)) - 2 * kxy.mean())


def _morphology_one(image: np.ndarray) -> dict[str, float] | None:
    import statmorph
    from photutils.segmentation import detect_sources

    grey = np.asarray(image, dtype=np.float64).mean(axis=0)
    b = max(2, grey.shape[0] // 10)
    border = np.concatenate([grey[:b].ravel(), grey[-b:].ravel(), grey[:, :b].ravel(),
                             grey[:, -b:].ravel()])
    sky = float(np.median(border))
    sigma = float(np.median(np.abs(border - sky)) * 1.4826) or float(border.std()) or 1e-3
    data = grey - sky
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # photutils' and statmorph's per-stamp warnings
        seg = detect_sources(data, 2.0 * sigma, n_pixels=5)
        label = 0 if seg is None else seg.data[grey.shape[0] // 2, grey.shape[1] // 2]
        if label == 0:
            return None
        m = statmorph.SourceMorphology(data, (seg.data == label).astype(np.int32), 1,
                                       weightmap=np.full_like(data, sigma), skybox_size=8,
                                       min_cutout_size=8)
        if m.flag >= 2:
            return None
        row = {"size": m.rhalf_circ, "ellipticity": m.ellipticity_asymmetry,
               "concentration": m.concentration, "asymmetry": m.asymmetry, "gini": m.gini,
               "m20": m.m20}
    return row if all(np.isfinite(v) for v in row.values()) else None


def morphology_table(images: np.ndarray) -> pd.DataFrame:
    """statmorph statistics of ``(N, 3, H, W)`` stamps (any display scale), one row per usable
    stamp (column ``index``: its position); ``attrs["dropped"]``: how many were left out."""
    images = np.asarray(images)
    if images.ndim != 4:
        raise ValueError(f"images must have shape (N, C, H, W), got {images.shape}")
    rows = []
    for i, image in enumerate(images):
        row = _morphology_one(image)
        if row is not None:
            rows.append({"index": i, **{k: float(v) for k, v in row.items()}})
    table = pd.DataFrame(rows, columns=["index", *MORPHOLOGY_STATISTICS])
    table.attrs["dropped"] = len(images) - len(table)
    return table


def morphology_distance(table: pd.DataFrame, reference: pd.DataFrame) -> dict[str, float]:
    """``W₁(X_s, R_s)/sd(R_s)`` per statistic and their mean (key ``"mean"``)."""
    from scipy.stats import wasserstein_distance

    if len(table) < 2 or len(reference) < 2:
        raise ValueError(f"morphology_distance needs at least two usable stamps per set, got "
                         f"{len(table)} and {len(reference)}")
    out = {}
    for s in MORPHOLOGY_STATISTICS:
        scale = float(reference[s].std()) or 1.0
        out[s] = float(wasserstein_distance(table[s], reference[s])) / scale
    out["mean"] = float(np.mean([out[s] for s in MORPHOLOGY_STATISTICS]))
    return out
