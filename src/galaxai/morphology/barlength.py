"""Bar lengths from saliency maps: Algorithm 1 of Bhambra, Joachimi & Lahav (2022) and variants.

A saliency map ``M`` (for example SmoothGrad of the ``Class3.1`` "bar: yes" logit, min–max scaled
to [0, 1]) is thresholded at ``T = 0.5, 0.5001, …, 0.9999`` (``numpy.arange(0.5, 1.0, 1e-4)``).
At each ``T`` the set ``S_T = {p : M_p > T}`` (strict) is tested: the loop stops at the first
``T`` where the statistic of the pixel indices of ``S_T`` exceeds ``t_c`` (strict) or where
``|S_T| < t_l``. The bar length is the largest Euclidean distance between the integer
``(row, col)`` of two pixels of ``S_T`` at the stopping ``T``, initialised to 1 (so empty and
one-pixel masks measure 1).

Methods
-------
``"paper"``
    The authors' loop, literally (``measure_barlengths.py`` of ``prabhbhambra13/xai_bar_lengths``):
    statistic ``|Pearson(row, col)|`` computed with :func:`numpy.corrcoef` on the pixels of
    ``S_T`` in row-major order, NaN when ``|S_T| < 2`` or a variance is zero (NaN never passes);
    the diameter by comparing all pairs of mask pixels.
``"fast"``
    The same output (threshold, mask, length) in O(n log n): the map values above 0.5 are sorted
    once, cumulative integer sums of ``row, col, row², col², row·col`` give the statistic of every
    threshold in O(1), counts come from a strict ``searchsorted``, and the diameter is taken over
    the convex-hull vertices. Integer sums make the statistic exact up to one rounding; any
    threshold whose statistic lies within ``1e-9`` of ``t_c`` is re-evaluated with the
    ``"paper"`` computation, so the two methods take identical decisions.
``"elongation"``
    Rotation-invariant variant (galaxai): the statistic is ``e = (λ1 − λ2) / (λ1 + λ2)`` of the
    eigenvalues of the 2×2 covariance of the ``(row, col)`` of ``S_T`` (NaN when ``|S_T| < 2``);
    everything else as ``"fast"``. ``e = |ρ|`` whenever the two variances are equal (e.g. a bar
    at 45°); for a bar along an image axis ``ρ ≈ 0`` but ``e`` stays large.

Units
-----
Lengths are measured in pixels of the map. The authors' maps are 224² and every reported length
is ``L424 = L224 · 424 / 224``, the pixel scale of the 424² Galaxy Zoo 2 cut-outs
(0.02·petroR90_r arcsec per pixel; Willett et al. 2013). :func:`bar_length` therefore returns the
length rescaled to a ``scale_to``-pixel frame (default 424, the authors' convention), or at the
map's own pixel scale with ``scale_to=None``; :func:`rescale_length` converts between the two.
The thresholds are compared with the map in float64 (a float32 map is converted first).

References
----------
P. Bhambra, B. Joachimi, O. Lahav, "Explaining deep learning of galaxy morphology with saliency
mapping", MNRAS 511, 5032 (2022), arXiv:2110.08288 (Algorithm 1).
D. Hoyle et al., "Galaxy Zoo: bar lengths in local disc galaxies", MNRAS 415, 3627 (2011),
arXiv:1104.5394.
K. W. Willett et al., "Galaxy Zoo 2", MNRAS 435, 2835 (2013).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np
from scipy.spatial import ConvexHull, QhullError

from galaxai.choices import BAR_ALGORITHMS as METHODS

__all__ = [
    "STOP_THRESHOLDS",
    "METHODS",
    "GZ_FRAME_SIZE",
    "BarMeasurement",
    "measure_bar",
    "bar_length",
    "bar_lengths",
    "rescale_length",
    "x_input",
]

#: The thresholds of Algorithm 1, in loop order: ``numpy.arange(0.5, 1.0, 1e-4)`` (5,000 values).
STOP_THRESHOLDS: np.ndarray = np.arange(0.5, 1.0, 1e-4)
STOP_THRESHOLDS.setflags(write=False)

#: Valid values of ``method``.

#: Side of the Galaxy Zoo 2 cut-outs (pixels) to which the authors rescale every length.
GZ_FRAME_SIZE = 424

# Statistics within this distance of t_c are re-evaluated with the reference computation.
_NEAR_TIE = 1e-9
# Largest allowed magnitude of the integer moment sums of method "fast" (int64 stays exact).
_INT_LIMIT = 2**62
# Pair-distance blocks of the brute-force diameter hold at most this many entries.
_PAIR_BLOCK = 1 << 22
# Luma weights of tf.image.rgb_to_grayscale (ITU-R BT.601), used by the authors' x_input maps.
_LUMA = np.array([0.2989, 0.5870, 0.1140])


@dataclass(frozen=True)
class BarMeasurement:
    """Outcome of Algorithm 1 on one map.

    Attributes
    ----------
    method : str
        ``"paper"``, ``"fast"`` or ``"elongation"``.
    threshold : float
        The stopping threshold ``T`` (an element of :data:`STOP_THRESHOLDS`).
    threshold_index : int
        Its index in :data:`STOP_THRESHOLDS` (``0`` for ``T = 0.5``).
    stopped_by : str
        ``"statistic"`` (the statistic exceeded ``t_c``), ``"count"`` (fewer than ``t_l`` pixels)
        or ``"none"`` (no threshold stopped the loop; ``T`` is the last one, 0.9999). When both
        tests pass, ``"statistic"``.
    statistic : float
        ``|ρ|`` (``"paper"``, ``"fast"``) or ``e`` (``"elongation"``) of the mask, NaN when
        undefined; computed the ``"paper"`` way.
    count : int
        Number of mask pixels ``|S_T|``.
    mask : numpy.ndarray
        Boolean ``(H, W)`` mask ``M > T``.
    length_px : float
        Largest pixel distance inside the mask at the map's pixel scale, at least 1.
    """

    method: str
    threshold: float
    threshold_index: int
    stopped_by: str
    statistic: float
    count: int
    mask: np.ndarray
    length_px: float

    @property
    def map_size(self) -> int:
        """Height of the map in pixels (the authors' ``img_height``)."""
        return int(self.mask.shape[0])

    def length(self, scale_to: int | None = GZ_FRAME_SIZE) -> float:
        """The length rescaled to a ``scale_to``-pixel frame (``None``: the map's own pixels)."""
        if scale_to is None:
            return self.length_px
        _check_square(self.mask.shape, scale_to)
        return rescale_length(self.length_px, self.map_size, scale_to)


def rescale_length(length, from_size: int, to_size: int = GZ_FRAME_SIZE):
    """Convert a length between square frames of different pixel sizes.

    ``L_to = L_from · to_size / from_size``, computed in that order as the authors do
    (``length * 424 / img_height``), so ``rescale_length(L224, 224)`` is their ``L424``.

    Parameters
    ----------
    length : float or array_like
        Length(s) in pixels of the ``from_size`` frame.
    from_size, to_size : int
        Frame sides in pixels (``to_size`` defaults to 424, the GZ2 cut-outs).

    Returns
    -------
    float or numpy.ndarray
    """
    for name, value in (("from_size", from_size), ("to_size", to_size)):
        if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 1:
            raise ValueError(f"{name} must be a positive integer number of pixels, got {value!r}")
    return length * to_size / from_size


def x_input(saliency, image) -> np.ndarray:
    """The authors' ``x_input`` map: saliency times the grayscale input image.

    ``M · (0.2989 R + 0.5870 G + 0.1140 B)`` with the image in [0, 1] (the ``ximage`` function of
    ``measure_barlengths.py``). The product is **not** renormalised (faithful); a map whose maximum
    falls to 0.5 or below then has an empty mask at ``T = 0.5`` and measures 1 pixel unless
    ``renormalise=True`` is passed to :func:`bar_length`.

    Parameters
    ----------
    saliency : array_like, shape (H, W)
        Saliency map.
    image : array_like, shape (H, W, 3)
        Channel-last RGB image in [0, 1], at the map's resolution.

    Returns
    -------
    numpy.ndarray, shape (H, W), float64
    """
    m = _as_map(saliency)
    img = np.asarray(image, dtype=np.float64)
    if img.ndim != 3 or img.shape[-1] != 3 or img.shape[:2] != m.shape:
        raise ValueError(
            f"image must be channel-last RGB of shape {m.shape + (3,)} matching the saliency map, "
            f"got {img.shape}; transpose (3, H, W) arrays with image.transpose(1, 2, 0)"
        )
    if not np.all(np.isfinite(img)):
        raise ValueError("image contains NaN or infinite values; clean the input first")
    return m * (img @ _LUMA)


def measure_bar(saliency, t_c: float, t_l: int, method: str = "paper", *,
                renormalise: bool = False) -> BarMeasurement:
    """Run Algorithm 1 on one map and return the stopping threshold, mask and length.

    Parameters
    ----------
    saliency : array_like, shape (H, W)
        Finite saliency map; single-model SmoothGrad maps are in [0, 1] with maximum 1.
    t_c : float
        Statistic threshold in [0, 1]; the loop stops when the statistic is ``> t_c``.
    t_l : int
        Count threshold (a non-negative integer); the loop stops when ``|S_T| < t_l``.
    method : {"paper", "fast", "elongation"}
        See the module docstring. ``"fast"`` returns exactly what ``"paper"`` returns.
    renormalise : bool
        Min–max the map to [0, 1] first (a labelled deviation for averaged or ``x_input`` maps,
        whose maximum can be below 1; a constant map becomes all zeros). Faithful: ``False``.

    Returns
    -------
    BarMeasurement

    References
    ----------
    Bhambra, Joachimi & Lahav (2022), arXiv:2110.08288, Algorithm 1 and its code.
    """
    m = _prepare(saliency, t_c, t_l, method, renormalise)
    if method == "paper":
        return _measure_paper(m, t_c, t_l)
    return _ThresholdStats(m, method).measure(t_c, t_l)


def bar_length(saliency, t_c: float, t_l: int, method: str = "paper", *,
               scale_to: int | None = GZ_FRAME_SIZE, renormalise: bool = False) -> float:
    """Bar length of one saliency map by Algorithm 1 (Bhambra, Joachimi & Lahav 2022).

    Parameters
    ----------
    saliency : array_like, shape (H, W)
        Finite saliency map (224² in the paper).
    t_c : float
        Statistic threshold in [0, 1] (published: 0.85).
    t_l : int
        Minimum pixel count, a non-negative integer (published: 40).
    method : {"paper", "fast", "elongation"}
        ``"paper"``: the authors' loop; ``"fast"``: identical output, orders of magnitude faster;
        ``"elongation"``: rotation-invariant statistic ``(λ1 − λ2)/(λ1 + λ2)``.
    scale_to : int or None
        Return the length in pixels of a square ``scale_to`` frame (default 424: the authors'
        ``L424 = L224 · 424/224`` for a 224² map). ``None`` returns it in the map's own pixels
        (``L224`` for a 224² map). Rescaling needs a square map.
    renormalise : bool
        Min–max the map first (labelled deviation; see :func:`measure_bar`).

    Returns
    -------
    float
        The length in pixels (at least ``1 · scale_to / H``).

    Examples
    --------
    >>> import numpy as np
    >>> m = np.zeros((224, 224)); i = np.arange(60, 100); m[i, i] = 1.0  # 40-px diagonal
    >>> bar_length(m, 0.85, 40, method="fast", scale_to=None)  # |ρ| = 1 stops at T = 0.5
    55.154328932550705
    >>> bar_length(m, 0.85, 40, method="fast")  # the same in 424-px GZ2 pixels
    104.39926547947097
    """
    return measure_bar(saliency, t_c, t_l, method, renormalise=renormalise).length(scale_to)


def bar_lengths(maps, t_c, t_l, method: str = "fast", *,
                scale_to: int | None = GZ_FRAME_SIZE, renormalise: bool = False) -> np.ndarray:
    """Vectorised :func:`bar_length` over a stack of maps and grids of thresholds.

    The per-threshold statistics of each map are computed once and reused for every
    ``(t_c, t_l)`` pair, which is what a grid search needs.

    Parameters
    ----------
    maps : array_like, shape (B, H, W)
        Stack of saliency maps.
    t_c : float or sequence of float
        One or several statistic thresholds.
    t_l : int or sequence of int
        One or several count thresholds.
    method, scale_to, renormalise
        As in :func:`bar_length`.

    Returns
    -------
    numpy.ndarray
        Shape ``(B, n_c, n_l)``; the ``n_c`` (``n_l``) axis is dropped when ``t_c`` (``t_l``) is
        a scalar, so scalars give shape ``(B,)``.
    """
    stack = np.asarray(maps)
    if stack.ndim != 3:
        raise ValueError(
            f"maps must be a (B, H, W) stack of saliency maps, got shape {stack.shape}")
    t_cs = np.atleast_1d(np.asarray(t_c, dtype=float))
    t_ls = np.atleast_1d(np.asarray(t_l, dtype=object))
    if t_cs.ndim != 1 or t_ls.ndim != 1 or t_cs.size == 0 or t_ls.size == 0:
        raise ValueError("t_c and t_l must be scalars or non-empty 1-D sequences")
    out = np.empty((stack.shape[0], t_cs.size, t_ls.size))
    for b in range(stack.shape[0]):
        m = _prepare(stack[b], t_cs[0], t_ls[0], method, renormalise)
        stats = _ThresholdStats(m, method) if method != "paper" else None
        for i, tc in enumerate(t_cs):
            for j, tl in enumerate(t_ls):
                _check_thresholds(tc, tl)
                res = _measure_paper(m, tc, tl) if stats is None else stats.measure(tc, tl)
                out[b, i, j] = res.length(scale_to)
    if np.ndim(t_l) == 0:
        out = out[:, :, 0]
    if np.ndim(t_c) == 0:
        out = out[:, 0]
    return out


# --------------------------------------------------------------------------------------------
# validation


def _as_map(saliency, name: str = "saliency") -> np.ndarray:
    if hasattr(saliency, "detach"):  # torch tensor
        saliency = saliency.detach().cpu().numpy()
    m = np.asarray(saliency)
    if m.ndim != 2:
        raise ValueError(
            f"{name} must be a 2-D (H, W) map, got shape {m.shape}; reduce colour channels first "
            "(the authors take the max over channels) and pass maps one at a time "
            "or use bar_lengths"
        )
    if m.size == 0:
        raise ValueError(f"{name} is empty (shape {m.shape})")
    if not (np.issubdtype(m.dtype, np.floating) or np.issubdtype(m.dtype, np.integer)
            or m.dtype == np.bool_):
        raise TypeError(f"{name} must be a real numeric array, got dtype {m.dtype}")
    m = m.astype(np.float64)
    if not np.all(np.isfinite(m)):
        raise ValueError(
            f"{name} contains NaN or infinite values; fix the map (e.g. np.nan_to_num)")
    return m


def _check_thresholds(t_c, t_l) -> None:
    if isinstance(t_c, bool) or not isinstance(t_c, (int, float, np.integer, np.floating)):
        raise TypeError(f"t_c must be a number in [0, 1], got {t_c!r}")
    if not 0.0 <= float(t_c) <= 1.0:
        raise ValueError(f"t_c must be in [0, 1] (the statistic is in [0, 1]), got {t_c!r}")
    integral = isinstance(t_l, (int, np.integer)) or (
        isinstance(t_l, (float, np.floating)) and float(t_l).is_integer())
    if isinstance(t_l, bool) or not integral or t_l < 0:
        raise ValueError(f"t_l must be a non-negative integer pixel count, got {t_l!r}")


def _check_square(shape: tuple[int, ...], scale_to: int) -> None:
    if shape[0] != shape[1]:
        raise ValueError(
            f"rescaling to a {scale_to}-pixel frame needs a square map, got shape {shape}; "
            "pass scale_to=None for the length in the map's pixels"
        )


def _prepare(saliency, t_c, t_l, method: str, renormalise: bool) -> np.ndarray:
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    _check_thresholds(t_c, t_l)
    m = _as_map(saliency)
    if renormalise:
        lo, hi = m.min(), m.max()
        m = (m - lo) / (hi - lo) if hi > lo else np.zeros_like(m)
    return m


# --------------------------------------------------------------------------------------------
# reference ("paper") computations


def _abs_pearson(rows: np.ndarray, cols: np.ndarray) -> float:
    """``abs(numpy.corrcoef(rows, cols)[1, 0])`` as the authors compute it; NaN if undefined."""
    if rows.size < 2:
        return math.nan
    with np.errstate(divide="ignore", invalid="ignore"):
        return float(abs(np.corrcoef(rows, cols)[1, 0]))


def _elongation(rows: np.ndarray, cols: np.ndarray) -> float:
    """``(λ1 − λ2)/(λ1 + λ2)`` of the covariance of (row, col); NaN if fewer than 2 pixels."""
    if rows.size < 2:
        return math.nan
    lo, hi = np.linalg.eigvalsh(np.cov(np.vstack([rows, cols]).astype(np.float64)))
    return float((hi - lo) / (hi + lo))


_REFERENCE: dict[str, Callable[[np.ndarray, np.ndarray], float]] = {
    "paper": _abs_pearson,
    "fast": _abs_pearson,
    "elongation": _elongation,
}


def _max_sq_distance(rows: np.ndarray, cols: np.ndarray) -> int:
    """Largest squared distance over all pairs of pixels (0 for fewer than two), in blocks."""
    n = rows.size
    best = 0
    step = max(1, _PAIR_BLOCK // max(n, 1))
    r = rows.astype(np.int64)
    c = cols.astype(np.int64)
    for start in range(0, n, step):
        dr = r[start:start + step, None] - r[None, :]
        dc = c[start:start + step, None] - c[None, :]
        best = max(best, int((dr * dr + dc * dc).max()))
    return best


def _length_from_sq(d2: int) -> float:
    """The authors' ``length = 1`` then ``l if l > length``: ``max(1, sqrt(d2))``."""
    return max(1.0, math.sqrt(d2))


def _measure_paper(m: np.ndarray, t_c: float, t_l: int) -> BarMeasurement:
    for k, t in enumerate(STOP_THRESHOLDS):
        rows, cols = np.nonzero(m > t)
        stat = _abs_pearson(rows, cols)
        if stat > t_c or rows.size < t_l:
            break
    stopped = "statistic" if stat > t_c else ("count" if rows.size < t_l else "none")
    return BarMeasurement(
        method="paper", threshold=float(t), threshold_index=k, stopped_by=stopped,
        statistic=stat, count=int(rows.size), mask=m > t,
        length_px=_length_from_sq(_max_sq_distance(rows, cols)),
    )


# --------------------------------------------------------------------------------------------
# fast path


def _hull_max_sq_distance(mask: np.ndarray) -> int:
    """Largest squared pixel distance in a boolean mask, over its convex-hull vertices.

    Only the first and last pixel of each row can be hull vertices, so at most ``2H`` candidates
    go to Qhull; degenerate (collinear or tiny) candidate sets are compared pairwise instead.
    """
    occupied = np.flatnonzero(mask.any(axis=1))
    if occupied.size == 0:
        return 0
    sub = mask[occupied]
    first = np.argmax(sub, axis=1)
    last = mask.shape[1] - 1 - np.argmax(sub[:, ::-1], axis=1)
    rows = np.concatenate([occupied, occupied])
    cols = np.concatenate([first, last])
    if rows.size > 8:
        pts = np.column_stack([rows, cols]).astype(np.float64)
        try:
            vertices = ConvexHull(pts).vertices
        except QhullError:  # all candidates on one line: compare them all
            vertices = slice(None)
        rows, cols = rows[vertices], cols[vertices]
    return _max_sq_distance(rows, cols)


class _ThresholdStats:
    """Per-threshold counts and statistics of one map from sorted cumulative integer moments."""

    def __init__(self, m: np.ndarray, method: str) -> None:
        self.m = m
        self.method = method
        self.reference = _REFERENCE[method]
        height, width = m.shape
        flat = np.flatnonzero(m.ravel() > STOP_THRESHOLDS[0])
        values = m.ravel()[flat]
        order = np.argsort(-values, kind="stable")
        ascending = values[order][::-1]
        n = flat.size
        # count(T) = #{values > T}, exactly, for every threshold
        self.counts = n - np.searchsorted(ascending, STOP_THRESHOLDS, side="right")
        bound = n * n * (max(height, width) // 2 + 1) ** 2
        if bound >= _INT_LIMIT:
            raise ValueError(
                f"map of shape {m.shape} has {n} pixels above 0.5, too many for the exact integer "
                f"moments of method={method!r}; use method='paper' or a smaller map"
            )
        # centred integer coordinates keep the moment sums small and exact
        r = flat[order] // width - height // 2
        c = flat[order] % width - width // 2
        sums = [np.concatenate([[0], np.cumsum(v)]) for v in (r, c, r * r, c * c, r * c)]
        k = self.counts
        sr, sc, srr, scc, src = (s[k] for s in sums)
        a = k * srr - sr * sr  # n² var(row), exact
        b = k * src - sr * sc  # n² cov(row, col), exact
        cc = k * scc - sc * sc  # n² var(col), exact
        af, bf, cf = a.astype(float), b.astype(float), cc.astype(float)
        stat = np.full(STOP_THRESHOLDS.size, np.nan)
        if method == "elongation":
            ok = k >= 2
            stat[ok] = np.sqrt((af[ok] - cf[ok]) ** 2 + 4.0 * bf[ok] ** 2) / (af[ok] + cf[ok])
        else:
            ok = (k >= 2) & (a > 0) & (cc > 0)
            stat[ok] = np.abs(bf[ok]) / np.sqrt(af[ok] * cf[ok])
        self.stat = stat
        self._reference_cache: dict[int, float] = {}

    def reference_stat(self, k: int, mask: np.ndarray | None = None) -> float:
        """The statistic of threshold ``k`` computed the ``"paper"`` way on the pixels of S_T.

        ``mask`` may pass ``M > T_k`` when the caller already has it.
        """
        if k not in self._reference_cache:
            rows, cols = np.nonzero(self.m > STOP_THRESHOLDS[k] if mask is None else mask)
            self._reference_cache[k] = self.reference(rows, cols)
        return self._reference_cache[k]

    def stop_index(self, t_c: float, t_l: int) -> int:
        """Index of the stopping threshold, identical to the ``"paper"`` loop."""
        with np.errstate(invalid="ignore"):
            definite = (self.stat > t_c + _NEAR_TIE) | (self.counts < t_l)
            near = np.abs(self.stat - t_c) <= _NEAR_TIE
        limit = int(np.argmax(definite)) if definite.any() else STOP_THRESHOLDS.size
        for k in np.flatnonzero(near[:limit]):
            if self.reference_stat(int(k)) > t_c:
                return int(k)
        return min(limit, STOP_THRESHOLDS.size - 1)

    def measure(self, t_c: float, t_l: int) -> BarMeasurement:
        k = self.stop_index(t_c, t_l)
        count = int(self.counts[k])
        mask = self.m > STOP_THRESHOLDS[k]
        statistic = self.reference_stat(k, mask)
        if statistic > t_c:
            stopped = "statistic"
        elif count < t_l:
            stopped = "count"
        else:
            stopped = "none"
        return BarMeasurement(
            method=self.method, threshold=float(STOP_THRESHOLDS[k]), threshold_index=k,
            stopped_by=stopped, statistic=statistic, count=count, mask=mask,
            length_px=_length_from_sq(_hull_max_sq_distance(mask)),
        )
