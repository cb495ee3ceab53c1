"""Image-quality metrics for deblended galaxies: PSNR and SSIM with fixed, documented conventions.

The conventions are those of ``specs/deblender_gan.md`` (Evaluation):

* every image (one blend, one branch) is scored separately against its own pre-blend target;
* **PSNR** uses the squared error averaged jointly over height, width and channels,
  ``10 log10(data_range**2 / MSE)``, with ``data_range = 1`` for display images in [0, 1];
* **SSIM** follows scikit-image's ``structural_similarity`` exactly: computed per channel and
  averaged over channels, 7×7 uniform window, ``K1 = 0.01``, ``K2 = 0.03``, sample covariance
  (``N / (N - 1)`` normalisation), mean over the interior where the window fits. Old
  scikit-image ``compare_ssim`` took ``data_range`` from the float dtype, i.e. 2, which inflates
  SSIM; evaluations therefore report **both** ``data_range = 1`` and ``= 2``, labelled
  ``_dr1`` / ``_dr2``.

The module is organised like torchmetrics: functional cores (:func:`psnr`, :func:`ssim`,
:func:`deblend_scores`) that return one value per image, and thin accumulating classes
(:class:`PSNR`, :class:`SSIM`, :class:`DeblendScorer`) with ``update`` / ``compute`` / ``reset``
for use over batches. The class wrappers report the mean (and keep every per-image value), not
torchmetrics' pooled-MSE PSNR, because the published numbers are means of per-image scores.

Inputs may be NumPy arrays or torch tensors (any device; gradients are not tracked), laid out
``(N, C, H, W)`` (``channel_axis=1``, the default, as in the store and the trainer) or
``(N, H, W, C)`` (``channel_axis=-1``, as at ``galaxai.deblend``). A single image without the
batch axis is scored as a batch of one. Results are NumPy ``float64`` arrays of shape ``(N,)``.

References
----------
.. [1] Wang, Z., Bovik, A. C., Sheikh, H. R. & Simoncelli, E. P. (2004). Image quality
   assessment: from error visibility to structural similarity. IEEE Trans. Image Process. 13,
   600–612. doi:10.1109/TIP.2003.819861
.. [2] van der Walt, S. et al. (2014). scikit-image: image processing in Python. PeerJ 2, e453.
   (``skimage.metrics.structural_similarity``, whose semantics are reproduced here.)
.. [3] Reiman, D. M. & Göhre, B. E. (2019). Deblending galaxy superpositions with branched
   generative adversarial networks. MNRAS 485, 2617–2627. doi:10.1093/mnras/stz575
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy.ndimage import uniform_filter1d

__all__ = [
    "SSIM_WIN_SIZE",
    "SSIM_K1",
    "SSIM_K2",
    "psnr",
    "ssim",
    "deblend_scores",
    "DeblendScores",
    "PSNR",
    "SSIM",
    "DeblendScorer",
]

SSIM_WIN_SIZE = 7
"""Side of the uniform SSIM window (scikit-image default)."""
SSIM_K1 = 0.01
"""SSIM luminance stabiliser constant, ``C1 = (K1 * data_range)**2``."""
SSIM_K2 = 0.03
"""SSIM contrast stabiliser constant, ``C2 = (K2 * data_range)**2``."""

_CHUNK = 128
_BRANCHES = ("a", "b")
_DATA_RANGES = (1.0, 2.0)


def _to_numpy(x: Any, name: str) -> np.ndarray:
    """Return ``x`` as a numeric NumPy array without copying when possible.

    Torch tensors are detached and moved to the CPU; the dtype is kept (scores are computed in
    float64 chunk by chunk, so large float32 batches are never converted as a whole).
    """
    if hasattr(x, "detach") and hasattr(x, "cpu"):  # torch.Tensor without importing torch
        x = x.detach().cpu().numpy()
    arr = np.asarray(x)
    if not (np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)):
        raise ValueError(f"{name}: expected a numeric NumPy array or torch tensor, got dtype {arr.dtype}")
    return arr


def _prepare(pred: Any, target: Any, channel_axis: int) -> tuple[np.ndarray, np.ndarray]:
    """Validate a pred/target pair and return both as ``(N, C, H, W)`` arrays (views if possible)."""
    p = _to_numpy(pred, "pred")
    t = _to_numpy(target, "target")
    if p.shape != t.shape:
        raise ValueError(
            f"pred and target must have the same shape, got {p.shape} and {t.shape}; "
            "score each branch against its own target of the same size"
        )
    if p.ndim == 3:
        if channel_axis not in (0, 2, -1):
            raise ValueError(
                f"a single image (no batch axis) of shape {p.shape} needs channel_axis=0 for "
                f"(C, H, W) or channel_axis=-1 for (H, W, C), got {channel_axis}"
            )
        p, t = p[None], t[None]
        channel_axis = 1 if channel_axis == 0 else -1
    if p.ndim != 4:
        raise ValueError(
            f"expected images of shape (N, C, H, W) or (N, H, W, C) (or one image without N), "
            f"got an array with shape {p.shape}"
        )
    if channel_axis not in (1, -1, 3):
        raise ValueError(
            f"channel_axis must be 1 (channel-first, (N, C, H, W)) or -1 (channel-last, "
            f"(N, H, W, C)), got {channel_axis}"
        )
    if p.shape[0] == 0:
        raise ValueError("pred and target are empty (N = 0); pass at least one image")
    for name, arr in (("pred", p), ("target", t)):
        finite = np.isfinite(arr)
        if not finite.all():
            raise ValueError(
                f"{name} contains {int(finite.size - np.count_nonzero(finite))} NaN or infinite "
                "value(s); clean or mask the images first"
            )
    if channel_axis != 1:
        p = np.moveaxis(p, -1, 1)
        t = np.moveaxis(t, -1, 1)
    return p, t


def _chunks(n: int) -> list[slice]:
    """Slices of at most ``_CHUNK`` images, to bound float64 temporaries."""
    return [slice(i, min(i + _CHUNK, n)) for i in range(0, n, _CHUNK)]


def _check_range(data_range: float) -> float:
    data_range = float(data_range)
    if not np.isfinite(data_range) or data_range <= 0:
        raise ValueError(f"data_range must be a positive finite number, got {data_range}")
    return data_range


def psnr(pred: Any, target: Any, data_range: float = 1.0, *, channel_axis: int = 1) -> np.ndarray:
    """Peak signal-to-noise ratio of each image, in dB.

    ``PSNR = 10 log10(data_range**2 / MSE)`` with the MSE taken jointly over height, width and
    channels of one image. Identical images give ``inf``.

    Parameters
    ----------
    pred, target : array_like or torch.Tensor
        Images of identical shape ``(N, C, H, W)`` or ``(N, H, W, C)`` (see ``channel_axis``);
        a single image without the batch axis counts as ``N = 1``.
    data_range : float, optional
        Peak-to-peak range of the data: 1 for display images in [0, 1] (the convention of the
        deblender evaluation), 2 for images in [-1, 1].
    channel_axis : {1, -1}, optional
        Position of the channel axis. PSNR itself does not depend on it; it is accepted so that
        every metric takes the same arguments.

    Returns
    -------
    numpy.ndarray
        Shape ``(N,)``, float64.

    Raises
    ------
    ValueError
        Shapes differ, an array is not 4-D (or 3-D), contains NaN/inf, or ``data_range <= 0``.
    """
    data_range = _check_range(data_range)
    p, t = _prepare(pred, target, channel_axis)
    mse = np.concatenate([
        np.mean((p[c].astype(np.float64) - t[c].astype(np.float64)) ** 2, axis=(1, 2, 3))
        for c in _chunks(p.shape[0])
    ])
    with np.errstate(divide="ignore"):
        return 10.0 * np.log10(data_range**2 / mse)


def ssim(pred: Any, target: Any, data_range: float = 1.0, *, channel_axis: int = 1) -> np.ndarray:
    """Structural similarity of each image, with scikit-image ``structural_similarity`` semantics.

    For every channel: local means, variances and covariance in a 7×7 uniform window with
    sample-covariance normalisation ``49/48``; ``C1 = (0.01 R)**2``, ``C2 = (0.03 R)**2`` with
    ``R = data_range``; the SSIM map is averaged over the interior pixels where the window fits
    (3 pixels are cropped at each border). The per-channel values are averaged over channels.
    This equals ``skimage.metrics.structural_similarity(p, t, data_range=R, channel_axis=...)``
    for every image; computed here in float64, vectorised over chunks of the batch.

    Parameters
    ----------
    pred, target : array_like or torch.Tensor
        Images of identical shape ``(N, C, H, W)`` or ``(N, H, W, C)``; ``H, W >= 7``.
    data_range : float, optional
        Dynamic range ``R`` of the data. Report both 1 (correct for [0, 1] images) and 2 (the
        old scikit-image float default, which inflates SSIM), labelled.
    channel_axis : {1, -1}, optional
        1 for channel-first ``(N, C, H, W)`` (default), -1 for channel-last ``(N, H, W, C)``.

    Returns
    -------
    numpy.ndarray
        Shape ``(N,)``, float64.

    Raises
    ------
    ValueError
        As :func:`psnr`, and when the spatial size is smaller than the 7×7 window (often the
        sign of a wrong ``channel_axis``).

    References
    ----------
    Wang et al. (2004), IEEE Trans. Image Process. 13, 600; scikit-image
    ``skimage.metrics.structural_similarity`` (``gaussian_weights=False``,
    ``use_sample_covariance=True``).
    """
    data_range = _check_range(data_range)
    p, t = _prepare(pred, target, channel_axis)
    h, w = p.shape[-2:]
    if min(h, w) < SSIM_WIN_SIZE:
        raise ValueError(
            f"SSIM needs images of at least {SSIM_WIN_SIZE}x{SSIM_WIN_SIZE} pixels, got spatial "
            f"size {h}x{w} with channel_axis={channel_axis}; pass channel_axis=-1 for "
            "(N, H, W, C) images or channel_axis=1 for (N, C, H, W)"
        )
    return np.concatenate([
        _ssim_chunk(p[c].astype(np.float64), t[c].astype(np.float64), data_range)
        for c in _chunks(p.shape[0])
    ])


def _ssim_chunk(p: np.ndarray, t: np.ndarray, data_range: float) -> np.ndarray:
    """SSIM of float64 ``(n, C, H, W)`` batches, averaged over the interior and the channels."""

    def box(x: np.ndarray) -> np.ndarray:
        x = uniform_filter1d(x, SSIM_WIN_SIZE, axis=-1, mode="reflect")
        return uniform_filter1d(x, SSIM_WIN_SIZE, axis=-2, mode="reflect")

    h, w = p.shape[-2:]
    n_win = SSIM_WIN_SIZE**2
    cov_norm = n_win / (n_win - 1.0)
    ux, uy = box(p), box(t)
    vx = cov_norm * (box(p * p) - ux * ux)
    vy = cov_norm * (box(t * t) - uy * uy)
    vxy = cov_norm * (box(p * t) - ux * uy)
    c1 = (SSIM_K1 * data_range) ** 2
    c2 = (SSIM_K2 * data_range) ** 2
    s_map = ((2 * ux * uy + c1) * (2 * vxy + c2)) / ((ux**2 + uy**2 + c1) * (vx + vy + c2))
    pad = (SSIM_WIN_SIZE - 1) // 2
    per_channel = s_map[..., pad : h - pad, pad : w - pad].mean(axis=(-2, -1))
    return per_channel.mean(axis=1)


def _column(metric: str, branch: str, data_range: float | None) -> str:
    suffix = "" if data_range is None else f"_dr{int(data_range)}"
    return f"{metric}_{branch}{suffix}"


@dataclass(frozen=True)
class DeblendScores:
    """Scores of a set of deblended pairs.

    Attributes
    ----------
    per_blend : pandas.DataFrame
        One row per blend; columns ``psnr_a``, ``psnr_b`` (data_range 1) and ``ssim_a_dr1``,
        ``ssim_a_dr2``, ``ssim_b_dr1``, ``ssim_b_dr2``.
    summary : dict[str, float]
        ``<column>_mean`` and ``<column>_median`` for every per-blend column, plus the pooled
        statistics over both branches, ``psnr_pooled_mean``, ``psnr_pooled_median``,
        ``ssim_pooled_dr1_mean``, … The pooled mean is the mean of the 2N branch scores (equal to
        the mean of the two branch means); the pooled median is the median of the 2N scores.
    """

    per_blend: pd.DataFrame
    summary: dict[str, float]


def _summarise(per_blend: pd.DataFrame) -> dict[str, float]:
    summary: dict[str, float] = {}
    for col in per_blend.columns:
        summary[f"{col}_mean"] = float(np.mean(per_blend[col]))
        summary[f"{col}_median"] = float(np.median(per_blend[col]))
    for metric, ranges in (("psnr", (None,)), ("ssim", _DATA_RANGES)):
        for dr in ranges:
            both = np.concatenate([per_blend[_column(metric, br, dr)].to_numpy() for br in _BRANCHES])
            pooled = _column(metric, "pooled", dr)
            summary[f"{pooled}_mean"] = float(np.mean(both))
            summary[f"{pooled}_median"] = float(np.median(both))
    return summary


def deblend_scores(
    pred_a: Any, pred_b: Any, target_a: Any, target_b: Any, *, channel_axis: int = 1
) -> DeblendScores:
    """Score deblender outputs per blend and per branch, with pooled means and medians.

    Each branch is scored against its own pre-blend target: PSNR at ``data_range = 1`` (the
    published convention; PSNR at range 2 would only add ``20 log10 2 = 6.02`` dB) and SSIM at
    ``data_range = 1`` and ``= 2``, labelled ``_dr1`` / ``_dr2``.

    Parameters
    ----------
    pred_a, pred_b, target_a, target_b : array_like or torch.Tensor
        Display images in [0, 1] of one shape, ``(N, C, H, W)`` or ``(N, H, W, C)``. Outputs in
        [-1, 1] must first be mapped by ``(v + 1) / 2``.
    channel_axis : {1, -1}, optional
        Channel position, as in :func:`ssim`.

    Returns
    -------
    DeblendScores
        ``per_blend`` table and ``summary`` dictionary.
    """
    arrays = {name: _to_numpy(x, name) for name, x in
              (("pred_a", pred_a), ("pred_b", pred_b), ("target_a", target_a), ("target_b", target_b))}
    shapes = {name: arr.shape for name, arr in arrays.items()}
    if len(set(shapes.values())) != 1:
        raise ValueError(f"deblend_scores needs four arrays of one shape, got {shapes}")
    pairs = (("a", arrays["pred_a"], arrays["target_a"]), ("b", arrays["pred_b"], arrays["target_b"]))
    cols: dict[str, np.ndarray] = {}
    for branch, pred, target in pairs:
        cols[_column("psnr", branch, None)] = psnr(pred, target, 1.0, channel_axis=channel_axis)
    for branch, pred, target in pairs:
        for dr in _DATA_RANGES:
            cols[_column("ssim", branch, dr)] = ssim(pred, target, dr, channel_axis=channel_axis)
    per_blend = pd.DataFrame(cols)
    return DeblendScores(per_blend=per_blend, summary=_summarise(per_blend))


class _PerImageMetric:
    """Accumulate per-image scores of a functional metric over batches."""

    _fn: Any = None

    def __init__(self, data_range: float = 1.0, *, channel_axis: int = 1) -> None:
        self.data_range = _check_range(data_range)
        self.channel_axis = channel_axis
        self._values: list[np.ndarray] = []

    def update(self, pred: Any, target: Any) -> np.ndarray:
        """Score one batch, keep its per-image values and return them."""
        values = type(self)._fn(pred, target, self.data_range, channel_axis=self.channel_axis)
        self._values.append(values)
        return values

    @property
    def values(self) -> np.ndarray:
        """Every per-image score seen since the last :meth:`reset`, in order, shape ``(N,)``."""
        return np.concatenate(self._values) if self._values else np.empty(0)

    def compute(self) -> float:
        """Mean of the per-image scores seen since the last :meth:`reset`."""
        if not self._values:
            raise ValueError(f"{type(self).__name__}.compute() called before any update()")
        return float(np.mean(self.values))

    def reset(self) -> None:
        """Forget all accumulated scores."""
        self._values.clear()


class PSNR(_PerImageMetric):
    """Accumulating wrapper around :func:`psnr`: ``update(pred, target)`` per batch, then
    ``compute()`` gives the mean per-image PSNR (``values`` keeps every image's score).

    Parameters
    ----------
    data_range : float, optional
        As in :func:`psnr`.
    channel_axis : {1, -1}, optional
        As in :func:`psnr`.
    """

    _fn = staticmethod(psnr)


class SSIM(_PerImageMetric):
    """Accumulating wrapper around :func:`ssim`: ``update(pred, target)`` per batch, then
    ``compute()`` gives the mean per-image SSIM (``values`` keeps every image's score).

    Parameters
    ----------
    data_range : float, optional
        As in :func:`ssim`; make one instance per reported range.
    channel_axis : {1, -1}, optional
        As in :func:`ssim`.
    """

    _fn = staticmethod(ssim)


class DeblendScorer:
    """Accumulating wrapper around :func:`deblend_scores`.

    Call ``update(pred_a, pred_b, target_a, target_b)`` once per batch; ``compute()`` returns a
    :class:`DeblendScores` over every blend seen (rows in update order).

    Parameters
    ----------
    channel_axis : {1, -1}, optional
        As in :func:`ssim`.
    """

    def __init__(self, *, channel_axis: int = 1) -> None:
        self.channel_axis = channel_axis
        self._frames: list[pd.DataFrame] = []

    def update(self, pred_a: Any, pred_b: Any, target_a: Any, target_b: Any) -> pd.DataFrame:
        """Score one batch, keep its rows and return them."""
        batch = deblend_scores(pred_a, pred_b, target_a, target_b, channel_axis=self.channel_axis)
        self._frames.append(batch.per_blend)
        return batch.per_blend

    def compute(self) -> DeblendScores:
        """Per-blend table and summary over all batches since the last :meth:`reset`."""
        if not self._frames:
            raise ValueError("DeblendScorer.compute() called before any update()")
        per_blend = pd.concat(self._frames, ignore_index=True)
        return DeblendScores(per_blend=per_blend, summary=_summarise(per_blend))

    def reset(self) -> None:
        """Forget all accumulated rows."""
        self._frames.clear()
