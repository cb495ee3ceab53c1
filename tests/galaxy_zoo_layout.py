"""Shared test helper: small Galaxy Zoo Kaggle directories made on the fly (nothing downloads).

The Kaggle "galaxy-zoo-the-galaxy-challenge" layout is ``<root>/images_training_rev1/<GalaxyID>.jpg``
plus ``<root>/training_solutions_rev1.csv`` (``GalaxyID`` and the 37 vote-fraction columns).
Importable from any test module: ``tests/`` is on ``sys.path`` through ``tests/conftest.py``.
"""
from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import pandas as pd
from PIL import Image

from galaxai.data.sources import GALAXY_ZOO_CLASSES

__all__ = ["smooth_rgb", "galaxy_rgb", "write_kaggle_layout"]


def smooth_rgb(seed, size=424):
    """A smooth uint8 RGB image (JPEG keeps it within a few levels)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size] / size
    img = np.stack([np.sin(2 * np.pi * (xx * rng.uniform(0.5, 2) + rng.random())) for _ in range(3)], -1)
    return ((img * 0.4 + 0.5) * 255).astype(np.uint8)


def galaxy_rgb(seed, size=64, *, bar=True):
    """A uint8 RGB drawing of a face-on disk galaxy, with a bright elongated bar if ``bar``.

    Returns the image and the bar's full length in pixels (0 without a bar).
    """
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size] - (size - 1) / 2.0
    r = np.hypot(xx, yy)
    h = size * rng.uniform(0.08, 0.14)
    light = np.exp(-r / h)
    length = 0.0
    if bar:
        a = size * rng.uniform(0.12, 0.3)            # semi-major axis
        angle = rng.uniform(0, np.pi)
        u = xx * np.cos(angle) + yy * np.sin(angle)
        v = -xx * np.sin(angle) + yy * np.cos(angle)
        m = (u / a) ** 2 + (v / (0.25 * a)) ** 2
        light = light + 1.2 * np.clip(1 - m, 0, None) ** 2
        length = 2 * a
    light = light / light.max()
    colour = np.array([1.0, 0.85, 0.7]) * rng.uniform(0.8, 1.0)
    img = light[..., None] * colour + rng.normal(0, 0.02, (size, size, 3))
    return (np.clip(img, 0, 1) * 255).astype(np.uint8), length


def write_kaggle_layout(root, images: Mapping[int, np.ndarray], *,
                        label_ids: Sequence[int] | None = None, labels: np.ndarray | None = None,
                        seed: int = 0, quality: int = 95) -> pd.DataFrame:
    """Write ``images`` as ``<root>/images_training_rev1/<id>.jpg`` and the solutions CSV.

    Parameters
    ----------
    root : path-like
    images : mapping of GalaxyID to a uint8 ``(H, W, 3)`` (or ``(H, W)``) array
    label_ids : sequence of int, optional
        Rows of ``training_solutions_rev1.csv`` (default: the ids of ``images``); ids without an
        image and images without a row are both allowed, to test how they are reported.
    labels : array, shape (len(label_ids), 37), optional
        Vote fractions (default uniform random from ``seed``).

    Returns
    -------
    pandas.DataFrame
        The CSV as written (``GalaxyID`` then the 37 columns).
    """
    root = Path(root)
    img_dir = root / "images_training_rev1"
    img_dir.mkdir(parents=True, exist_ok=True)
    for gid, arr in images.items():
        Image.fromarray(arr).save(img_dir / f"{gid}.jpg", quality=quality)
    ids = list(images) if label_ids is None else list(label_ids)
    if labels is None:
        labels = np.random.default_rng(seed).random((len(ids), len(GALAXY_ZOO_CLASSES)))
    table = pd.DataFrame(labels, columns=list(GALAXY_ZOO_CLASSES))
    table.insert(0, "GalaxyID", ids)
    table.to_csv(root / "training_solutions_rev1.csv", index=False)
    return table
