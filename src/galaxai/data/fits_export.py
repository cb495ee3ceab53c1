"""FITS export of stamps, model outputs and relevance maps.

Astronomers read FITS; every array galaxai writes for them goes through :func:`write_fits_image`
so that headers carry short provenance keywords (≤ 8 characters, e.g. ``GXCKPT``, ``GXMETHOD``,
``GXPOLAR``) and, where the input had one, its WCS.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import numpy as np
from astropy.io import fits

from galaxai._atomic import atomic_write

__all__ = ["write_fits_image", "write_fits_stamps"]


def write_fits_image(
    path: str | Path,
    data: np.ndarray,
    keywords: Mapping[str, Any] | None = None,
    header: fits.Header | None = None,
) -> Path:
    """Write one image HDU atomically.

    Parameters
    ----------
    path : path-like
        Destination ``.fits`` file.
    data : ndarray
        ``(H, W)`` or ``(C, H, W)`` array; written as float32.
    keywords : mapping, optional
        Extra header cards. Keys longer than 8 characters are rejected (FITS standard) rather than
        silently turned into HIERARCH cards.
    header : astropy.io.fits.Header, optional
        A header to start from, e.g. the input's (keeps its WCS).
    """
    data = np.asarray(data)
    if data.ndim not in (2, 3):
        raise ValueError(f"{path}: FITS export takes (H, W) or (C, H, W) arrays, got shape {data.shape}")
    hdr = fits.Header() if header is None else header.copy()
    for key, value in (keywords or {}).items():
        if len(key) > 8:
            raise ValueError(f"FITS keyword {key!r} is longer than 8 characters; shorten it")
        hdr[key] = value
    hdu = fits.PrimaryHDU(data=data.astype(np.float32), header=hdr)
    return atomic_write(path, lambda tmp: hdu.writeto(tmp, overwrite=True, output_verify="exception"))


def write_fits_stamps(
    directory: str | Path,
    stamps: np.ndarray,
    names: list[str],
    keywords: list[Mapping[str, Any]] | None = None,
) -> list[Path]:
    """Write a ``(N, C, H, W)`` stack as one FITS cube per stamp, named ``<name>.fits``."""
    stamps = np.asarray(stamps)
    if stamps.ndim != 4 or len(names) != len(stamps):
        raise ValueError(
            f"write_fits_stamps needs (N, C, H, W) stamps and N names; got {stamps.shape} and {len(names)} names"
        )
    directory = Path(directory)
    kws = keywords or [{}] * len(stamps)
    return [write_fits_image(directory / f"{n}.fits", s, k) for n, s, k in zip(names, stamps, kws)]
