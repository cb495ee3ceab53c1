"""The one Lupton et al. (2004) asinh colour mapping behind every RGB composite of flux bands.

:func:`galaxai.data.simulate.to_display` (the fixed, dataset-wide mapping the GAN sees: stretch
100, Q 8, colour weights) and :func:`galaxai.viz.render.lupton_rgb` (a figure helper with
astropy's ``make_lupton_rgb`` defaults, stretch 0.5, Q 8, a black level) both call
:func:`lupton_apply`; they differ only in their defaults, which are kept because existing stores,
pools, checkpoints and figures depend on them. Imports only NumPy and astropy, so ``data`` and
``viz`` can share it without importing each other.

References
----------
Lupton, R., Blanton, M. R., Fekete, G., Hogg, D. W., O'Mullane, W., Szalay, A. & Wherry, N.
(2004), PASP 116, 133, "Preparing red-green-blue images from CCD data".
"""
from __future__ import annotations

from typing import Any

import numpy as np
from astropy.visualization import LuptonAsinhStretch, ManualInterval
from astropy.visualization.lupton_rgb import RGBImageMappingLupton

__all__ = ["lupton_apply"]


def lupton_apply(red: np.ndarray, green: np.ndarray, blue: np.ndarray, *, stretch: float, Q: float,
                 minimum: Any = 0.0) -> np.ndarray:
    """Lupton asinh RGB of three intensity images of the same shape ``(..., H, W)``.

    Parameters
    ----------
    red, green, blue : ndarray
        Intensities mapped to R, G and B (float64 recommended).
    stretch, Q : float
        astropy ``LuptonAsinhStretch`` parameters.
    minimum : float or sequence of 3 floats
        Black level of all bands or of each (``ManualInterval(vmin=minimum)``).

    Returns
    -------
    ndarray, (..., H, W, 3) float32 in [0, 1]
    """
    if np.ndim(minimum) == 0:
        interval: Any = ManualInterval(vmin=minimum, vmax=None)
    else:
        if len(minimum) != 3:
            raise ValueError(f"minimum must be one value or three (R, G, B); got {minimum!r}")
        interval = [ManualInterval(vmin=m, vmax=None) for m in minimum]
    mapping = RGBImageMappingLupton(interval=interval,
                                    stretch=LuptonAsinhStretch(stretch=stretch, Q=Q))
    # astropy evaluates f(I)/I also where I = 0 before discarding it: silence that 0/0.
    with np.errstate(invalid="ignore", divide="ignore"):
        rgb = mapping.apply_mappings(red, green, blue)
    return np.clip(np.moveaxis(rgb, 0, -1), 0.0, 1.0).astype(np.float32)
