"""Sky statistics away from sources, and sky-like noise to fill masked pixels.

All functions take a batch of multi-band images, ``(N, C, H, W)`` (``channel_axis=1``, the
default: flux images and the store's display images) or ``(N, H, W, C)`` (``channel_axis=-1`` or
``3``: display images at the public API), and work per image and channel.

Background pixels are the pixels outside a mask: the caller's ``mask`` (e.g. pixels filled by
padding) plus, with ``detect=True``, a source mask from :func:`source_mask`. The source mask is a
threshold on the channel sum smoothed by a Gaussian (σ = 1 px), at ``nsigma`` times the
sigma-clipped noise above the sigma-clipped median; connected regions smaller than ``npixels``
(noise peaks) are dropped and the rest is grown by ``dilate`` pixels so faint wings stay out.
It is written with NumPy/SciPy rather than photutils' ``detect_sources`` because it works on
the whole batch in a few array operations (photutils segments one image at a time) and only a
conservative yes/no mask is needed, not a deblended segmentation. Statistics are
``astropy.stats.sigma_clipped_stats`` (3σ, 5 iterations) of the background pixels; for a
Gaussian sky the clipped standard deviation is ≈ 1.3 % below σ (truncation at 3σ), left as is.

If an image keeps fewer than ``min_pixels`` background pixels after source detection, the
detection mask is dropped for it (only the caller's mask is used); if even that leaves too few,
its statistics are NaN, and :func:`noise_fill` uses the batch median of the other images.
"""
from __future__ import annotations

import warnings

import numpy as np
from astropy.stats import sigma_clipped_stats
from scipy import ndimage

__all__ = ["source_mask", "sky_statistics", "noise_fill"]


def _channels_first(images, channel_axis: int) -> tuple[np.ndarray, int]:
    """(N, C, H, W) float64 view/copy of ``images`` and the normalised channel axis (1 or 3)."""
    arr = np.asarray(images)
    if arr.ndim != 4:
        raise ValueError("images must be a batch of shape (N, C, H, W) or (N, H, W, C); got shape "
                         f"{arr.shape} (add a leading axis for a single image)")
    if channel_axis not in (1, 3, -1):
        raise ValueError(f"channel_axis must be 1 (N, C, H, W) or -1 / 3 (N, H, W, C), "
                         f"got {channel_axis!r}")
    axis = 1 if channel_axis == 1 else 3
    if not (np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)):
        raise TypeError(f"images must be numeric, got dtype {arr.dtype}")
    if not np.isfinite(arr).all():
        raise ValueError("images contain NaN or inf; mask or replace them first")
    arr = arr.astype(np.float64, copy=False)
    return (arr if axis == 1 else np.moveaxis(arr, 3, 1)), axis


def _mask_channels_first(mask, shape: tuple[int, int, int, int], axis: int) -> np.ndarray:
    """Broadcast a boolean mask to (N, C, H, W); accepts (H, W), (N, H, W), the images' shape or
    the images' shape with one channel."""
    n, c, h, w = shape
    m = np.asarray(mask)
    if m.dtype != bool:
        raise TypeError(f"mask must be boolean (True = excluded / to fill), got dtype {m.dtype}")
    if m.ndim == 2:
        m = m[None, None]
    elif m.ndim == 3:
        m = m[:, None]
    elif m.ndim == 4:
        m = m if axis == 1 else np.moveaxis(m, 3, 1)
    else:
        raise ValueError(f"mask must have 2, 3 or 4 dimensions, got shape {np.shape(mask)}")
    try:
        return np.broadcast_to(m, shape)
    except ValueError:
        layout = "(N, C, H, W)" if axis == 1 else "(N, H, W, C)"
        raise ValueError(f"mask of shape {np.shape(mask)} does not fit images {layout} of "
                         f"channels-first shape {shape}; use (H, W), (N, H, W), or the images' "
                         "shape with C or 1 channel") from None


def _clipped_stats(x: np.ndarray, exclude: np.ndarray, sigma: float, maxiters: int):
    """Sigma-clipped mean, median, std over the last two axes, ignoring ``exclude``; NaN where no
    pixel is left (silently: empty slices are an expected case here)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        mean, median, std = sigma_clipped_stats(x, mask=exclude, sigma=sigma, maxiters=maxiters,
                                                axis=(-2, -1))
    # Fully masked inputs come back as masked scalars: make every result a float array.
    return tuple(np.array(np.broadcast_to(np.ma.filled(np.ma.asarray(v, dtype=np.float64), np.nan),
                                          x.shape[:-2]))
                 for v in (mean, median, std))


def source_mask(images, *, channel_axis: int = 1, mask=None, nsigma: float = 3.0,
                npixels: int = 10, dilate: int = 3) -> np.ndarray:
    """Boolean (N, H, W) mask of pixels on or near sources.

    Parameters
    ----------
    images : array_like, (N, C, H, W) or (N, H, W, C)
    channel_axis : {1, -1, 3}
        Axis holding the channels.
    mask : array_like of bool, optional
        Pixels to ignore when estimating the detection threshold (e.g. padded pixels).
    nsigma : float
        Detection threshold above the sigma-clipped median of the smoothed channel sum.
    npixels : int
        Smallest connected (8-neighbour) region kept as a source.
    dilate : int
        Grow the detection by this many pixels (disk-shaped).

    Returns
    -------
    ndarray of bool, (N, H, W)
    """
    x, axis = _channels_first(images, channel_axis)
    if not (np.isfinite(nsigma) and nsigma > 0):
        raise ValueError(f"nsigma must be > 0, got {nsigma!r}")
    for name, value in (("dilate", dilate), ("npixels", npixels)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
            raise ValueError(f"{name} must be an integer ≥ 0 (pixels), got {value!r}")
    total = ndimage.gaussian_filter(x.sum(axis=1), sigma=(0, 1.0, 1.0), mode="nearest")
    ignore = np.zeros(total.shape, bool) if mask is None else \
        _mask_channels_first(mask, x.shape, axis).any(axis=1)
    _, median, std = _clipped_stats(total, ignore, 3.0, 5)
    detected = total > (median + nsigma * std)[:, None, None]
    detected &= ~ignore
    if npixels > 1:
        # Label each image separately (no connectivity along the batch axis).
        structure = np.zeros((3, 3, 3), bool)
        structure[1] = True
        labels, _ = ndimage.label(detected, structure=structure)
        sizes = np.bincount(labels.ravel())
        sizes[0] = 0
        detected = sizes[labels] >= npixels
    if dilate:
        r = np.arange(-dilate, dilate + 1)
        disk = (r[:, None] ** 2 + r[None, :] ** 2) <= dilate**2
        detected = ndimage.binary_dilation(detected, structure=disk[None])
    return detected


def _background(x: np.ndarray, axis: int, mask, detect: bool, nsigma: float, dilate: int,
                min_pixels: int) -> np.ndarray:
    """(N, C, H, W) boolean array of pixels excluded from the background."""
    user = np.zeros(x.shape, bool) if mask is None else _mask_channels_first(mask, x.shape, axis)
    if not detect:
        return user
    sources = source_mask(x, channel_axis=1, mask=user, nsigma=nsigma, dilate=dilate)
    excluded = user | sources[:, None]
    too_few = (~excluded).sum(axis=(2, 3)).min(axis=1) < min_pixels
    excluded[too_few] = user[too_few]
    return excluded


def sky_statistics(images, mask=None, *, channel_axis: int = 1, detect: bool = True,
                   nsigma: float = 3.0, dilate: int = 3, sigma: float = 3.0, maxiters: int = 5,
                   min_pixels: int = 10):
    """Sigma-clipped sky mean, median and standard deviation per image and channel.

    Parameters
    ----------
    images : array_like, (N, C, H, W) or (N, H, W, C)
    mask : array_like of bool, optional
        Pixels to exclude (True), shaped (H, W), (N, H, W), or like ``images`` with C or 1
        channels.
    channel_axis : {1, -1, 3}
        Axis holding the channels.
    detect : bool
        Also exclude sources found by :func:`source_mask` (``nsigma``, ``dilate``).
    sigma, maxiters : float, int
        Clipping of ``astropy.stats.sigma_clipped_stats``.
    min_pixels : int
        Fewest background pixels for a valid estimate (see the module notes).

    Returns
    -------
    mean, median, std : ndarray, each (N, C) float64
        NaN for an image-channel without ``min_pixels`` background pixels.
    """
    x, axis = _channels_first(images, channel_axis)
    excluded = _background(x, axis, mask, detect, nsigma, dilate, min_pixels)
    mean, median, std = _clipped_stats(x, excluded, sigma, maxiters)
    few = (~excluded).sum(axis=(2, 3)) < min_pixels
    for arr in (mean, median, std):
        arr[few] = np.nan
    return mean, median, std


def noise_fill(images, mask, rng, *, channel_axis: int = 1, method: str = "gaussian",
               clip="auto", detect: bool = True, nsigma: float = 3.0, dilate: int = 3,
               min_pixels: int = 10) -> np.ndarray:
    """Replace masked pixels by sky-like noise drawn from each image's own background.

    Parameters
    ----------
    images : array_like, (N, C, H, W) or (N, H, W, C)
    mask : array_like of bool
        Pixels to replace (True), shaped (H, W), (N, H, W), or like ``images`` with C or 1
        channels. They are also excluded from the statistics.
    rng : numpy.random.Generator or int
        Random generator (or a seed for one).
    channel_axis : {1, -1, 3}
        Axis holding the channels.
    method : {"gaussian", "resample"}
        ``"gaussian"``: N(mean, std) of the sigma-clipped background (:func:`sky_statistics`).
        ``"resample"``: values drawn with replacement from the background pixels themselves, which
        also matches a non-Gaussian sky (e.g. the zero-clipped sky of display images).
    clip : "auto", None or (low, high)
        Range of the filled values: ``"auto"`` clips to the range of that image-channel's
        unmasked pixels (display images stay in [0, 1]); ``None`` does not clip.
    detect, nsigma, dilate, min_pixels
        As in :func:`sky_statistics`.

    Returns
    -------
    ndarray
        Same shape as ``images``; float dtype of ``images`` (float64 for integer input). Unmasked
        pixels are returned unchanged.
    """
    arr = np.asarray(images)
    x, axis = _channels_first(arr, channel_axis)
    fill = _mask_channels_first(mask, x.shape, axis)
    if method not in ("gaussian", "resample"):
        raise ValueError(f'method must be "gaussian" or "resample", got {method!r}')
    if not (clip is None or (isinstance(clip, str) and clip == "auto")):
        if len(clip) != 2 or not clip[0] <= clip[1]:
            raise ValueError(f'clip must be "auto", None or (low, high), got {clip!r}')
    rng = np.random.default_rng(rng)
    out = x.copy()
    if not fill.any():
        return _restore(out, arr, axis)

    excluded = _background(x, 1, fill, detect, nsigma, dilate, min_pixels)
    n, c = x.shape[:2]
    if method == "gaussian":
        mean, _, std = _clipped_stats(x, excluded, 3.0, 5)
        bad = (~excluded).sum(axis=(2, 3)) < min_pixels
        mean[bad] = np.nan
        std[bad] = np.nan
        mean, std = _fill_invalid(mean, "mean"), _fill_invalid(std, "std")
    for i in range(n):
        for k in range(c):
            where = fill[i, k]
            count = int(where.sum())
            if count == 0:
                continue
            unmasked = x[i, k][~where]
            if method == "gaussian":
                values = mean[i, k] + std[i, k] * rng.standard_normal(count)
            else:
                background = x[i, k][~excluded[i, k]]
                if background.size < min_pixels:
                    background = unmasked
                if background.size == 0:
                    raise ValueError(f"image {i}, channel {k} is entirely masked; nothing to "
                                     'resample from (use method="gaussian")')
                values = rng.choice(background, size=count, replace=True)
            if isinstance(clip, str):
                if unmasked.size:
                    values = np.clip(values, unmasked.min(), unmasked.max())
            elif clip is not None:
                values = np.clip(values, clip[0], clip[1])
            out[i, k][where] = values
    return _restore(out, arr, axis)


def _fill_invalid(stat: np.ndarray, name: str) -> np.ndarray:
    """Replace NaN statistics by the batch median of the same channel."""
    bad = ~np.isfinite(stat)
    if not bad.any():
        return stat
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN channels are handled below
        channel_median = np.nanmedian(stat, axis=0)
    if not np.isfinite(channel_median[bad.any(axis=0)]).all():
        raise ValueError(f"no image in the batch has enough unmasked background pixels to "
                         f"estimate the sky {name}; shrink the mask or pass more images")
    return np.where(bad, channel_median[None, :], stat)


def _restore(out: np.ndarray, original: np.ndarray, axis: int) -> np.ndarray:
    dtype = original.dtype if np.issubdtype(original.dtype, np.floating) else np.float64
    out = out if axis == 1 else np.moveaxis(out, 1, 3)
    return np.ascontiguousarray(out, dtype=dtype)
