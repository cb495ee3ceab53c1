"""Synthetic galaxy stamps for the translation tests: elliptical Gaussian blobs on noisy sky."""
from __future__ import annotations

import numpy as np


def blob_stamps(n: int, size: int = 32, *, sigma: float = 3.0, axis_ratio: float = 1.0,
                seed: int = 0, noise: float = 0.01) -> np.ndarray:
    """``(n, 3, size, size)`` float32 in [-1, 1]: a centred Gaussian of ``sigma`` px (major axis),
    minor/major ``axis_ratio`` at random angles, peak 1.6 above a sky of -0.9, noise ``noise``."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size] - (size - 1) / 2.0
    out = np.empty((n, 3, size, size), np.float32)
    for k in range(n):
        phi = rng.uniform(0, np.pi)
        u = xx * np.cos(phi) + yy * np.sin(phi)
        v = -xx * np.sin(phi) + yy * np.cos(phi)
        profile = np.exp(-0.5 * ((u / sigma) ** 2 + (v / (sigma * axis_ratio)) ** 2))
        image = -0.9 + 1.6 * profile + noise * rng.standard_normal((3, size, size))
        out[k] = np.clip(image, -1, 1)
    return out
