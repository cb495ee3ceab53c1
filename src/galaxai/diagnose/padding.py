"""Phantom-boundary audit: find constant out-of-frame padding in training targets, without training.

The Galaxy Deblender GAN (Reiman & Göhre 2019, MNRAS 485, 2617; ``specs/deblender_gan.md``) warps
galaxy B's frame (flips, rotation, scale, shift) and fills every pixel that maps from outside the
frame with exactly 0. The max merge hides the fill in the blend, but B's target shows a hard-edged,
noise-free black region that no real sky has, and the discriminator learns to call such images
"real" (Li et al. 2020, arXiv 2001.06151, Fig. 6). :func:`audit_padding` finds this data bug in the
ground-truth images alone, in seconds.

Detection criteria (per image; see :func:`padded_band_mask`)
------------------------------------------------------------
A warped frame is a convex quadrilateral, so the pixels it leaves empty are exactly the image
minus a convex set. The audit therefore looks for a constant region that is the *outside of a
convex polygon drawn around everything else*, and demands that the polygon's sides look like frame
edges:

1. **Constant value.** Candidates are the values ``v`` of the four image corners where all channels
   are equal (the outside of a convex frame always contains an image corner: if it touched a side
   but none of its corners, the frame would contain both corners but not a point between them).
   The constant set is every pixel whose channels all equal ``v`` exactly.
2. **Outside the content hull.** ``content`` = all other pixels. The flagged region is the set of
   constant pixels whose centres lie strictly outside the convex hull of the content pixel centres.
   Every such pixel is constant by construction, and if a convex frame left the region empty, the
   frame's sky noise fills the hull right up to the frame edges, so the region is recovered to the
   pixel (:func:`add_rotated_frame` plants are recovered exactly).
3. **Straight frame edges.** The hull sides that face the region (sides along the image border
   face nothing) form chains; one chain bounds one region. Collinear sides (inner vertices within
   ``tol = 1.5·ℓ`` px of the chord) are merged into straight pieces, where ``ℓ`` is the sky noise's
   correlation length in pixels (1 for white noise, about ``f`` after ``×f`` bilinear upsampling,
   which turns frame edges into ``f``-pixel staircases): ``ℓ = MAD(lag-6 differences) / MAD(lag-1
   differences)`` of the fainter half of the content, clipped to [1, 4]. A chain is frame-shaped
   when

   * it has 1–4 *long* pieces (length >= ``min_run``), exactly 4 if it is closed (a frame lying
     wholly inside the image);
   * long pieces cover >= 75 % of the chain (the rest: corner cuts and stubs at the border);
   * consecutive long pieces turn by 90° ± 20° (flips, rotations, isotropic scaling and shifts keep
     the frame's right angles; arcs of a galaxy outline turn by small steps);
4. **Supported and large.** The region is flagged when every long piece is *supported* — a share
   ``>= s`` of the pixels in the strip ``tol`` px deep inside it are content, because a frame's own
   sky runs right up to its edge, while a chord across a dark patch of clipped sky touches content
   only at its ends — and the region holds at least ``A`` pixels. Both depend on how often the sky
   itself takes the value ``v`` (share of ``v`` inside the hull): below 5 % ("clean" sky)
   ``s = 0.6`` and ``A = 2·min_run·ℓ²``; otherwise (clipped sky) ``s = 0.75`` and
   ``A = (min_run·ℓ)²``.

Why natural sky does not qualify: sky has photon and read noise, so in flux units neighbouring
pixels are never exactly equal and the content hull is the whole frame. In display images (SDSS
JPEGs, asinh stretches) many sky pixels *are* exactly 0 after clipping, so constancy alone is never
enough: clipped sky is patchy, the hull of the surviving noise still reaches the image corners, and
the chords that cut a dark corner patch are short, unsupported, small or not at right angles.
Saturated cores (constant 1.0) do not reach an image corner and are never candidates.

The thresholds were tuned on 1,600 simulated natural and 1,600 zero-padded images (white and
Gaussian-correlated noise up to σ = 2 px, ×1–3 bilinear upsampling, 0–75 % of sky pixels clipped
to 0, the paper's warp ranges) and checked on 2,200 further natural images of the same kinds: one
was flagged, with the most extreme settings (σ = 2 px correlated noise, ×3 upsampled, ~70 % of the
sky clipped). Share of zero fills covering >= 2 % of the frame that were found, by the share of
sky pixels that are exactly 0:

=======================  =======  =======  =======  =======  =======  =======
sky pixels at 0          < 0.1 %  0.1–5 %  5–15 %   15–30 %  30–45 %  > 45 %
=======================  =======  =======  =======  =======  =======  =======
white noise              100 %    95 %     95 %     77 %     50 %     15 %
white, ×2–3 upsampled    94 %     80 %     50 %     22 %     0 %      0 %
correlated noise         88 %     79 %     47 %     19 %     9 %      0 %
=======================  =======  =======  =======  =======  =======  =======

Residual risk (documented limits):

* skies clipped so deeply that whole border rows or large corner triangles are exactly 0, strongly
  correlated noise (``ℓ`` above ~3) with many clipped pixels, or JPEG blocks clipped to 0 along a
  border can produce straight, supported constant regions and be flagged; a fully black sky leaves
  only the galaxy's outline, which the right-angle and 4-piece rules reject unless the object looks
  like a rectangle or a straight-edged corner (e.g. a star's diffraction spikes);
* real padding is missed when it is small (below ``A``, or edges shorter than ``min_run``: about
  1 % of the frame or less) or when most pixels along its edges are clipped to the fill value too
  (table above). A discriminator has less to exploit there as well, since the sky already looks
  like the fill. The fill mask of a galaxai store (``fill_mask_b``) has no such limit: pass it as
  ``fill_mask`` to compare the known fill with the sky;
* non-similarity warps (shear, anisotropic resizing) whose corners differ from 90° by more than 20°
  are reported only where a single edge is visible.

Where the padding is known (``fill_mask``, e.g. ``fill_mask_b`` of a galaxai store) the audit also
compares its pixel values with natural background, so a non-constant fill (``"noise"``,
``"reflect"``) can be checked too.

Patch comparison (the paper's Fig. 6)
--------------------------------------
From up to 256 images with padding (reservoir sampling, seeded) the audit draws one
``patch`` × ``patch`` window around a random padded pixel and one around a random natural-background
pixel of the *same* image, so that differences between images cannot pass for a difference between
fill and sky. Each window keeps only the pixels of its own region, so thin bands count too.
Natural background excludes the padding (dilated by 2 px) and sources: connected groups of >= 25
pixels whose 5×5 box-smoothed channel mean lies 2σ above the sky
(:func:`astropy.stats.sigma_clipped_stats`, three passes so that a large galaxy does not raise
the sky estimate), dilated by ``patch // 4`` px. Every patch gives 16 random pixel values (a
pixel's channels count as values) to both histograms (common bins) and to a two-sample
Kolmogorov–Smirnov test (:func:`scipy.stats.ks_2samp`). Neighbouring pixels are correlated, so
taking every pixel of a patch would overstate the evidence many times over; 16 values scattered
over a 20 × 20 window are close to independent, and the test asks whether the fill is visibly
different from the sky (with 256 patch pairs it resolves ``D >~ 0.04``), not whether millions of
pixels can tell a 0.1 % sky mismatch.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np
from astropy.stats import sigma_clipped_stats
from scipy import ndimage, stats
from scipy.spatial import ConvexHull, QhullError
from tqdm.auto import tqdm

__all__ = [
    "PaddingAudit",
    "Planted",
    "audit_padding",
    "audit_store",
    "padded_band_mask",
    "add_padded_band",
    "add_rotated_frame",
]

_TOL = 1.5                # px: straightness tolerance and content-support distance
_RIGHT_ANGLE_TOL = 20.0   # degrees
_MIN_COVERAGE = 0.75      # share of a chain covered by long straight pieces
_CLEAN_SKY = 0.05         # fill-valued share of the content below which the sky is "clean"
_MIN_SUPPORT = (0.6, 0.75)  # content share of the strip inside a long piece: clean / clipped sky
_MAX_PATCHES = 256        # (padded, background) patch pairs kept (reservoir)
_VALUES_PER_PATCH = 16    # values each patch gives the histograms and the KS test
_HIST_BINS = 40
_KS_ALPHA = 1e-6          # a known fill is "different" when p < alpha ...
_KS_MIN_D = 0.25          # ... and the KS distance is at least this large
_SIDES = ("left", "right", "top", "bottom")


# --------------------------------------------------------------------------------------------
# results


@dataclass(frozen=True)
class PaddingAudit:
    """Result of :func:`audit_padding`.

    Attributes
    ----------
    masks : ndarray, shape (N, H, W), bool
        Flagged (constant, frame-edged) pixels per image; all False for skipped images.
    fractions : ndarray, shape (N,)
        Flagged share of each image's pixels; NaN for skipped images.
    flagged : ndarray, shape (N,), bool
        Images containing a phantom boundary.
    fill_values : ndarray, shape (N,)
        The constant value of each flagged region; NaN where nothing was flagged.
    skipped : dict[int, str]
        Index → reason for every image that was not audited (NaN or inf values, unreadable chunk).
    affected_fraction : float
        ``flagged.sum()`` over the number of audited images.
    region_source : {"detected", "fill_mask"}
        Whether the patch comparison used the flagged masks or a given fill mask.
    hist_edges : ndarray or None
        Common bin edges of the two histograms (None when one side had no pixels).
    hist_padded, hist_background : ndarray or None
        Share of padded-patch / background-patch pixel values per bin (each sums to 1).
    ks_statistic, ks_pvalue : float
        Two-sample KS test of padded vs background pixel values (NaN when not computable).
    n_patches : int
        Number of (padded, background) patch pairs behind the histograms and the test.
    min_run : int
        Minimum straight-edge length used, in pixels.
    verdict : bool
        True when a problem was found: any flagged image, or a known fill (``fill_mask``) whose
        values differ clearly from natural sky (KS ``p < 1e-6`` and ``D >= 0.25``).
    summary : str
        What was found, in words, with the fix.
    """

    masks: np.ndarray
    fractions: np.ndarray
    flagged: np.ndarray
    fill_values: np.ndarray
    skipped: dict[int, str]
    affected_fraction: float
    region_source: str
    hist_edges: np.ndarray | None
    hist_padded: np.ndarray | None
    hist_background: np.ndarray | None
    ks_statistic: float
    ks_pvalue: float
    n_patches: int
    min_run: int
    verdict: bool
    summary: str

    def __str__(self) -> str:
        return self.summary


class Planted(NamedTuple):
    """Images with a planted fill and the exact mask of the planted pixels.

    Attributes
    ----------
    images : ndarray
        Same shape, layout and dtype as the input.
    mask : ndarray, shape (N, H, W), bool
        Pixels that were replaced by the fill.
    """

    images: np.ndarray
    mask: np.ndarray


# --------------------------------------------------------------------------------------------
# input handling


def _as_nchw(images, channel_axis: int, name: str = "images") -> np.ndarray:
    """Validate a 4-D image batch and return an (N, C, H, W) view."""
    arr = np.asarray(images)
    if arr.ndim != 4:
        raise ValueError(
            f"{name} must be 4-D (N, C, H, W) or (N, H, W, C), got shape {arr.shape}; "
            "add a batch axis with images[None] for a single image")
    if channel_axis not in (1, 3, -1, -3):
        raise ValueError("channel_axis must be 1 (N, C, H, W) or -1 (N, H, W, C), "
                         f"got {channel_axis}")
    if arr.dtype == bool or not (np.issubdtype(arr.dtype, np.integer)
                                 or np.issubdtype(arr.dtype, np.floating)):
        raise TypeError(f"{name} must hold real numbers (float or integer), got dtype {arr.dtype}")
    arr = np.moveaxis(arr, channel_axis, 1)
    if min(arr.shape[2:]) < 3:
        raise ValueError(f"{name} must be at least 3×3 pixels, got {arr.shape[2:]}")
    return arr


def _as_masks(mask, n: int, hw: tuple[int, int], channel_axis: int, name: str) -> np.ndarray:
    """(N, H, W) bool from (N, H, W) or a 4-D mask with a singleton channel axis."""
    arr = np.asarray(mask)
    if arr.ndim == 4 and arr.shape[channel_axis] == 1:
        arr = np.squeeze(arr, axis=channel_axis)
    if arr.shape != (n, *hw):
        raise ValueError(f"{name} must have shape {(n, *hw)} (or a singleton channel axis), "
                         f"got {np.asarray(mask).shape}")
    return arr.astype(bool, copy=False)


def _check_min_run(min_run: int | None, hw: tuple[int, int]) -> int:
    """``min_run`` validated, or its default ``max(8, 0.1·min(H, W))``."""
    if min_run is None:
        return max(8, round(0.1 * min(hw)))
    if int(min_run) != min_run or min_run < 2:
        raise ValueError(f"min_run must be an integer >= 2 (pixels), got {min_run!r}")
    return int(min_run)


# --------------------------------------------------------------------------------------------
# detection


def _extreme_points(content: np.ndarray) -> np.ndarray:
    """(x, y) of the first and last content pixel of every row and every column."""
    h, w = content.shape
    pts = []
    rows = np.flatnonzero(content.any(axis=1))
    if rows.size:
        sub = content[rows]
        pts += [np.c_[sub.argmax(axis=1), rows], np.c_[w - 1 - sub[:, ::-1].argmax(axis=1), rows]]
    cols = np.flatnonzero(content.any(axis=0))
    if cols.size:
        sub = content[:, cols]
        pts += [np.c_[cols, sub.argmax(axis=0)], np.c_[cols, h - 1 - sub[::-1].argmax(axis=0)]]
    xy = np.unique(np.concatenate(pts) @ np.array([1, w]))
    return np.stack([xy % w, xy // w], axis=1).astype(np.float64)


def _max_deviation(vs: np.ndarray) -> float:
    """Largest distance of the inner vertices of ``vs`` from the chord ``vs[0] → vs[-1]``."""
    if len(vs) < 3:
        return 0.0
    d = vs[-1] - vs[0]
    norm = math.hypot(*d)
    rel = vs[1:-1] - vs[0]
    return float(np.max(np.abs(rel[:, 0] * d[1] - rel[:, 1] * d[0])) / norm)


def _merge_straight(vs: np.ndarray, tol: float) -> list[tuple[np.ndarray, np.ndarray]]:
    """Greedily merge a vertex chain into straight pieces (start, end) within ``tol`` px."""
    pieces = []
    s = 0
    while s < len(vs) - 1:
        e = s + 1
        while e + 1 < len(vs) and _max_deviation(vs[s:e + 2]) <= tol:
            e += 1
        pieces.append((vs[s], vs[e]))
        s = e
    return pieces


def _support(a: np.ndarray, b: np.ndarray, content: np.ndarray, centre: np.ndarray,
             tol: float) -> float:
    """Share of content pixels in the strip up to ``tol`` px inside the segment a→b."""
    u = (b - a) / math.hypot(*(b - a))
    n_in = np.array([-u[1], u[0]])
    if n_in @ (centre - a) < 0:
        n_in = -n_in
    h, w = content.shape
    lo = np.floor(np.minimum(a, b) - tol - 1).astype(int).clip(0)
    hi = np.ceil(np.maximum(a, b) + tol + 1).astype(int) + 1
    ys = np.arange(lo[1], min(hi[1], h))[:, None]
    xs = np.arange(lo[0], min(hi[0], w))[None, :]
    t = (xs - a[0]) * u[0] + (ys - a[1]) * u[1]
    d = (xs - a[0]) * n_in[0] + (ys - a[1]) * n_in[1]
    strip = (t >= 0) & (t <= math.hypot(*(b - a))) & (d >= -1e-9) & (d <= tol)
    if not strip.any():
        return 0.0
    window = content[lo[1]:lo[1] + strip.shape[0], lo[0]:lo[0] + strip.shape[1]]
    return float(window[strip].mean())


def _edge_support(vs: np.ndarray, closed: bool, min_run: int, content: np.ndarray,
                  centre: np.ndarray, tol: float) -> float:
    """Smallest content support of the long pieces of a hull chain that has the shape of frame
    edges (module docstring, criterion 3), or -1 if its shape is not that of frame edges."""
    pieces = _merge_straight(vs, tol)
    lengths = np.array([math.hypot(*(b - a)) for a, b in pieces])
    long = [p for p, length in zip(pieces, lengths) if length >= min_run]
    if not long or len(long) > 4 or (closed and len(long) != 4):
        return -1.0
    if lengths[lengths >= min_run].sum() < _MIN_COVERAGE * lengths.sum():
        return -1.0
    dirs = [(b - a) / math.hypot(*(b - a)) for a, b in long]
    pairs = list(zip(dirs, dirs[1:])) + ([(dirs[-1], dirs[0])] if closed else [])
    for d1, d2 in pairs:
        turn = math.degrees(math.acos(float(np.clip(d1 @ d2, -1.0, 1.0))))
        if abs(turn - 90.0) > _RIGHT_ANGLE_TOL:
            return -1.0
    return min(_support(a, b, content, centre, tol) for a, b in long)


def _pixel_scale(img: np.ndarray, content: np.ndarray) -> float:
    """Correlation length of the sky noise in pixels (1 for white noise, ~f after ×f upsampling).

    From the lag-1 correlation ``rho`` of the fainter half of the content pixels,
    ``1 - rho = (MAD(lag-1 differences) / MAD(lag-6 differences))²``; returns
    ``1 / sqrt(1 - rho)`` clipped to [1, 4].
    """
    if content.sum() < 50:
        return 1.0
    lum = img.mean(axis=0)
    faint = content & (lum <= np.median(lum[content]))
    mads = []
    for lag in (1, 6):
        d = np.concatenate([(lum[:, lag:] - lum[:, :-lag])[faint[:, lag:] & faint[:, :-lag]],
                            (lum[lag:] - lum[:-lag])[faint[lag:] & faint[:-lag]]])
        if d.size < 50:
            return 1.0
        mads.append(np.median(np.abs(d - np.median(d))))
    if mads[1] <= 0 or mads[0] <= 0:
        return 1.0
    return float(np.clip(mads[1] / mads[0], 1.0, 4.0))


def _hull_chains(const: np.ndarray, min_run: int, scale: float
                 ) -> tuple[list[tuple[np.ndarray, float]], float]:
    """Regions outside the content hull, one per chain of hull sides facing them.

    Returns ``[(region, support), ...]`` with ``region`` a boolean (H, W) mask and ``support`` from
    :func:`_edge_support` (-1 if the chain is not shaped like frame edges), and the share of
    constant pixels inside the hull.
    """
    h, w = const.shape
    content = ~const
    if not content.any():
        return [(const.copy(), 1.0)], 0.0
    pts = _extreme_points(content)
    try:
        hull = ConvexHull(pts)
    except QhullError:  # content on one line: the image is constant but for a thin streak
        return [(const.copy(), 1.0)], 0.0
    vs = pts[hull.vertices]
    nxt = np.roll(vs, -1, axis=0)
    d = nxt - vs
    normals = np.c_[d[:, 1], -d[:, 0]] / np.hypot(d[:, 0], d[:, 1])[:, None]
    if np.sum(normals[0] * (vs.mean(axis=0) - vs[0])) > 0:  # make the normals point outwards
        normals = -normals
    cy, cx = np.nonzero(const)  # content pixels are inside the hull by construction
    dist = normals @ np.stack([cx, cy]).astype(np.float64) - np.sum(normals * vs, axis=1)[:, None]
    outside = dist.max(axis=0) > 1e-6
    if not outside.any():
        return [], 1.0
    owner = dist.argmax(axis=0)

    on_border = np.zeros(len(vs), dtype=bool)
    for axis, limit in ((0, 0), (0, w - 1), (1, 0), (1, h - 1)):
        on_border |= (vs[:, axis] == limit) & (nxt[:, axis] == limit)
    k = len(vs)
    if on_border.all():
        return [], 1.0
    if on_border.any():
        start = int(np.flatnonzero(on_border)[0])
        order = [(start + i) % k for i in range(k)]
        chains, run = [], []
        for i in order:
            if on_border[i]:
                if run:
                    chains.append((run, False))
                run = []
            else:
                run.append(i)
        if run:
            chains.append((run, False))
    else:
        turns = []
        for i in range(k):
            a, b = d[i - 1], d[i]
            turns.append(abs(math.atan2(a[0] * b[1] - a[1] * b[0], a @ b)))
        start = int(np.argmax(turns))
        chains = [([(start + i) % k for i in range(k)], True)]

    n_out = int(outside.sum())
    result = []
    for edges, closed in chains:
        in_chain = np.zeros(k, dtype=bool)
        in_chain[edges] = True
        picked = outside & in_chain[owner]
        region = np.zeros_like(const)
        region[cy[picked], cx[picked]] = True
        chain_vs = np.concatenate([vs[edges], nxt[edges[-1:]]])
        result.append((region, _edge_support(chain_vs, closed, min_run, content, vs.mean(axis=0),
                                             _TOL * scale)))
    return result, (cy.size - n_out) / (h * w - n_out)


def _outside_frame(const: np.ndarray, min_run: int, scale: float) -> np.ndarray:
    """Constant pixels beyond supported straight frame-edge chains of the content hull (2–4)."""
    chains, inside_share = _hull_chains(const, min_run, scale)
    clean = inside_share < _CLEAN_SKY
    min_area = (2 * min_run if clean else min_run ** 2) * scale ** 2
    min_support = _MIN_SUPPORT[0] if clean else _MIN_SUPPORT[1]
    mask = np.zeros_like(const)
    for region, support in chains:
        if support >= min_support and region.sum() >= min_area:
            mask |= region
    return mask


def _detect(img: np.ndarray, min_run: int) -> tuple[np.ndarray, float]:
    """Flagged mask and fill value of one (C, H, W) image (value NaN when nothing is flagged)."""
    corners = img[:, [0, 0, -1, -1], [0, -1, 0, -1]]
    candidates = {float(corners[0, j]) for j in range(4) if np.all(corners[:, j] == corners[0, j])}
    best, best_value = np.zeros(img.shape[1:], dtype=bool), math.nan
    for value in sorted(candidates):
        const = np.all(img == value, axis=0)
        if const.sum() < min_run:
            continue
        mask = _outside_frame(const, min_run, _pixel_scale(img, ~const))
        if mask.sum() > best.sum():
            best, best_value = mask, value
    return best, best_value


def padded_band_mask(image, *, channel_axis: int = 0, min_run: int | None = None) -> np.ndarray:
    """Boolean mask of the constant-filled, frame-edged band of one image.

    Use it to measure how much relevance a discriminator puts on the padding (e.g. with
    ``galaxai.explain.faithfulness.relevance_mass_ratio``).

    Parameters
    ----------
    image : array_like, shape (C, H, W), (H, W, C) or (H, W)
        One image, display or flux units.
    channel_axis : int, default 0
        Channel axis of a 3-D image (0 or -1); ignored for a 2-D image.
    min_run : int, optional
        Minimum length in pixels of a straight frame edge. Default ``max(8, 0.1·min(H, W))``.

    Returns
    -------
    ndarray, shape (H, W), bool
        Pixels that are exactly constant (all channels equal to one value) and lie outside the
        convex hull of the other pixels, beyond straight frame edges (module docstring).

    Raises
    ------
    ValueError
        If the image is not 2-D or 3-D or contains NaN or inf values.
    """
    arr = np.asarray(image)
    if arr.ndim == 2:
        arr = arr[None]
    elif arr.ndim == 3:
        arr = np.moveaxis(arr, channel_axis, 0)
    else:
        raise ValueError(f"image must be (C, H, W), (H, W, C) or (H, W), got shape {arr.shape}; "
                         "for a batch use audit_padding(images).masks")
    nchw = _as_nchw(arr[None], 1, "image")
    if not np.isfinite(nchw).all():
        raise ValueError("image contains NaN or inf values; clean or drop it before auditing")
    return _detect(nchw[0].astype(np.float64), _check_min_run(min_run, nchw.shape[2:]))[0]


# --------------------------------------------------------------------------------------------
# background and patches


def _background_mask(img: np.ndarray, exclude: np.ndarray, patch: int) -> np.ndarray:
    """Natural-background pixels of a (C, H, W) image: away from ``exclude`` and from sources.

    Sources are connected groups of at least 25 pixels whose 5×5 box-smoothed mean over channels
    exceeds the sigma-clipped median of the remaining pixels by 2σ (smaller groups are noise),
    dilated by ``patch // 4`` px; three passes, each estimating the sky without the sources found
    so far, so that a galaxy filling much of the frame does not raise the sky level.
    """
    keep = ~exclude
    smooth = ndimage.uniform_filter(img.mean(axis=0), 5, mode="nearest")
    source = np.zeros_like(keep)
    for _ in range(3):
        sky = keep & ~source
        if sky.sum() < 2:
            return sky
        _, median, std = sigma_clipped_stats(smooth[sky], sigma=3.0, maxiters=5)
        labels, _ = ndimage.label(smooth > median + 2.0 * std)
        sizes = np.bincount(labels.ravel())
        sizes[0] = 0
        source = ndimage.binary_dilation((sizes >= 25)[labels], iterations=max(1, patch // 4))
    return keep & ~source & ~ndimage.binary_dilation(exclude, iterations=2)


def _patch_values(img: np.ndarray, region: np.ndarray, rng: np.random.Generator,
                  patch: int) -> np.ndarray:
    """Values (all channels) of the ``region`` pixels in a patch window around a random one."""
    ys, xs = np.nonzero(region)
    j = rng.integers(ys.size)
    h, w = region.shape
    y0 = int(np.clip(ys[j] - patch // 2, 0, max(h - patch, 0)))
    x0 = int(np.clip(xs[j] - patch // 2, 0, max(w - patch, 0)))
    win = (slice(y0, y0 + patch), slice(x0, x0 + patch))
    return img[:, win[0], win[1]][:, region[win]].ravel()


class _Reservoir:
    """Uniform sample of at most ``cap`` items from a stream (Vitter's algorithm R)."""

    def __init__(self, cap: int, rng: np.random.Generator):
        self.cap, self.rng, self.seen, self.items = cap, rng, 0, []

    def offer(self) -> int | None:
        """Slot for the next stream item, or None if the sample skips it."""
        self.seen += 1
        if len(self.items) < self.cap:
            return len(self.items)
        j = int(self.rng.integers(self.seen))
        return j if j < self.cap else None

    def put(self, slot: int, item) -> None:
        if slot == len(self.items):
            self.items.append(item)
        else:
            self.items[slot] = item


def _equal_weight(patches: list[np.ndarray], rng: np.random.Generator) -> np.ndarray:
    """``_VALUES_PER_PATCH`` random values of every patch (with replacement if it has fewer)."""
    m = _VALUES_PER_PATCH
    return np.concatenate([rng.choice(p, m, replace=p.size < m) for p in patches])


# --------------------------------------------------------------------------------------------
# the audit


class _Auditor:
    """Accumulates per-image detections and patch samples over one or more batches."""

    def __init__(self, n: int, hw: tuple[int, int], *, min_run: int | None, patch: int, seed: int,
                 progress: bool):
        if int(patch) != patch or patch < 2:
            raise ValueError(f"patch must be an integer >= 2 (pixels), got {patch!r}")
        self.n, self.hw, self.patch = n, hw, int(patch)
        self.min_run = _check_min_run(min_run, hw)
        self.rng = np.random.default_rng(seed)
        self.masks = np.zeros((n, *hw), dtype=bool)
        self.fractions = np.full(n, np.nan)
        self.fill_values = np.full(n, np.nan)
        self.skipped: dict[int, str] = {}
        self.pairs = _Reservoir(_MAX_PATCHES, self.rng)
        self.used_fill_mask = False
        self.n_known_fill = 0
        self.done = 0
        self.bar = tqdm(total=n, desc="padding audit", unit="img", disable=not progress)

    def skip(self, count: int, reason: str) -> None:
        for i in range(self.done, self.done + count):
            self.skipped[i] = reason
        self.done += count
        self.bar.update(count)

    def update(self, batch: np.ndarray, fill: np.ndarray | None) -> None:
        """Audit a (B, C, H, W) batch; ``fill`` is its known (B, H, W) fill mask or None."""
        self.used_fill_mask |= fill is not None
        if fill is not None:
            self.n_known_fill += int(fill.any(axis=(1, 2)).sum())
        for i in range(batch.shape[0]):
            idx = self.done + i
            img = np.asarray(batch[i], dtype=np.float64)
            if not np.isfinite(img).all():
                self.skipped[idx] = "contains NaN or inf values"
                continue
            mask, value = _detect(img, self.min_run)
            self.masks[idx], self.fractions[idx], self.fill_values[idx] = mask, mask.mean(), value
            region = mask if fill is None else fill[i]
            if region.any() and (slot := self.pairs.offer()) is not None:
                bg = _background_mask(img, region | mask, self.patch)
                if bg.any():
                    self.pairs.put(slot, (_patch_values(img, region, self.rng, self.patch),
                                          _patch_values(img, bg, self.rng, self.patch)))
            self.bar.update(1)
        self.done += batch.shape[0]

    def result(self, name: str) -> PaddingAudit:
        self.bar.close()
        valid = np.ones(self.n, dtype=bool)
        valid[list(self.skipped)] = False
        if not valid.any():
            first = next(iter(self.skipped.values()), "empty input")
            raise ValueError(f"no image of {name} could be audited: all {self.n} were skipped "
                             f"(e.g. {first}); fix or drop the bad items and run again")
        flagged = self.masks.any(axis=(1, 2))
        affected = float(flagged[valid].mean())
        edges = hist_pad = hist_bg = None
        ks_d = ks_p = math.nan
        if self.pairs.items:
            pad, bg = (_equal_weight(list(side), self.rng) for side in zip(*self.pairs.items))
            edges = np.histogram_bin_edges(np.concatenate([pad, bg]), bins=_HIST_BINS)
            hist_pad = np.histogram(pad, edges)[0] / pad.size
            hist_bg = np.histogram(bg, edges)[0] / bg.size
            ks = stats.ks_2samp(pad, bg, method="asymp")
            ks_d, ks_p = float(ks.statistic), float(ks.pvalue)
        source = "fill_mask" if self.used_fill_mask else "detected"
        fill_differs = source == "fill_mask" and ks_p < _KS_ALPHA and ks_d >= _KS_MIN_D
        verdict = bool(flagged.any() or fill_differs)
        audit = dict(
            masks=self.masks, fractions=self.fractions, flagged=flagged,
            fill_values=self.fill_values, skipped=dict(self.skipped), affected_fraction=affected,
            region_source=source, hist_edges=edges, hist_padded=hist_pad, hist_background=hist_bg,
            ks_statistic=ks_d, ks_pvalue=ks_p, n_patches=len(self.pairs.items),
            min_run=self.min_run, verdict=verdict)
        known = self.n_known_fill if self.used_fill_mask else None
        return PaddingAudit(**audit, summary=_summary(name, audit, int(valid.sum()), fill_differs,
                                                      known))


def _summary(name: str, a: dict, n_valid: int, fill_differs: bool, known: int | None) -> str:
    """Human-readable account of an audit (see :class:`PaddingAudit`); ``known`` is the number of
    images with padding according to a given fill mask."""
    n_flag = int(a["flagged"].sum())
    ks = "" if math.isnan(a["ks_statistic"]) else (
        f"KS D = {a['ks_statistic']:.2f}, p = {a['ks_pvalue']:.1e} "
        f"(pixel values of {a['n_patches']} padded and as many background patches)")
    lines = []
    if n_flag:
        fr = a["fractions"][a["flagged"]]
        values = sorted({float(v) for v in a["fill_values"][a["flagged"]]})
        shown = ", ".join(f"{v:g}" for v in values[:3]) + (", ..." if len(values) > 3 else "")
        lines.append(
            f"PHANTOM BOUNDARY FOUND in {name}: {n_flag} of {n_valid} images "
            f"({100 * a['affected_fraction']:.1f} %) contain a noise-free constant region "
            f"(value {shown}) cut off by straight frame edges, i.e. padding from outside a warped "
            f"frame. It covers {100 * fr.mean():.1f} % of an affected image on average (median "
            f"{100 * np.median(fr):.1f} %, max {100 * fr.max():.1f} %).")
        if ks:
            lines.append(f"Padded patches vs natural background: {ks}. Natural sky is noisy and "
                         "has no straight noise-free edges, so a discriminator can call an image "
                         "real from this edge alone.")
        lines.append('Fix: fill out-of-frame pixels with sky-like noise, '
                     'galaxai.data.blend.BlendConfig(padding="noise"), rebuild the data and audit '
                     "again; for an experiment, mask the flagged pixels (PaddingAudit.masks).")
    elif fill_differs:
        lines.append(
            f"NON-CONSTANT BUT UNNATURAL FILL in {name}: no constant frame-edged region was found, "
            f"but the known fill pixels differ clearly from natural background: {ks}. A "
            "discriminator can still learn the fill. Fix: use padding=\"noise\" with the sky "
            "statistics of each frame (galaxai.data.background) and audit again.")
    else:
        lines.append(f"No phantom boundary in {name}: none of the {n_valid} images contains a "
                     "constant region cut off by straight frame edges.")
        if ks:
            lines.append(f"Fill vs natural background: {ks}.")
    if known is not None:
        lines.append(f"The given fill mask marks padding in {known} image(s); fills too small or "
                     "too clipped to stand out as frame edges are not counted as flagged.")
    if a["skipped"]:
        items = list(a["skipped"].items())
        shown = "; ".join(f"#{i}: {r}" for i, r in items[:5]) + ("; ..." if len(items) > 5 else "")
        lines.append(f"{len(items)} item(s) skipped and not audited ({shown}).")
    return " ".join(lines)


def audit_padding(images, *, channel_axis: int = 1, min_run: int | None = None, patch: int = 20,
                  seed: int = 0, progress: bool = False, fill_mask=None,
                  name: str = "images") -> PaddingAudit:
    """Audit ground-truth images for constant out-of-frame padding (the "phantom boundary").

    Parameters
    ----------
    images : array_like, shape (N, C, H, W) or (N, H, W, C)
        Ground-truth images (e.g. deblender targets), display ``[0, 1]`` or flux units, float or
        integer. Images with NaN or inf values are skipped and reported, not audited.
    channel_axis : {1, -1}, default 1
        Axis of the channels.
    min_run : int, optional
        Minimum length in pixels of a straight frame edge; default ``max(8, 0.1·min(H, W))``.
    patch : int, default 20
        Side of the patches compared between padding and natural background (the paper's 20×20).
    seed : int, default 0
        Seed of the patch sampling; the same seed gives the same result.
    progress : bool, default False
        Show a tqdm progress bar.
    fill_mask : array_like of bool, shape (N, H, W), optional
        Known padded pixels (e.g. ``BlendBatch.fill_mask_b``, a singleton channel axis is
        accepted). When given, the patch comparison uses it instead of the detected regions, so a
        non-constant fill (``"noise"``, ``"reflect"``) is compared with natural sky too, and a
        fill that differs clearly (KS ``p < 1e-6`` and ``D >= 0.25``) also sets ``verdict``.
        Detection itself never uses it.
    name : str, default "images"
        What the images are, for the summary.

    Returns
    -------
    PaddingAudit
        Per-image flagged masks and fractions, the affected share of images, the patch histograms,
        the KS test, a ``verdict`` and a ``summary`` with the fix.

    Raises
    ------
    ValueError
        Wrong number of dimensions, bad ``channel_axis``, ``min_run`` or ``patch``, a mismatched
        ``fill_mask``, or no valid image at all.
    TypeError
        Non-numeric images.

    Notes
    -----
    Detection criteria, their reasons and residual risks are in the module docstring of
    :mod:`galaxai.diagnose.padding`. Cost: a few milliseconds per 80 × 80 image on one core, so
    10,000 targets take about a minute.

    References
    ----------
    Reiman & Göhre 2019, MNRAS 485, 2617; Li, Lin, Mueller & Xu 2020, arXiv 2001.06151 (Fig. 6).

    Examples
    --------
    >>> audit = audit_padding(batch.target_b, fill_mask=batch.fill_mask_b)  # doctest: +SKIP
    >>> print(audit.summary)                                               # doctest: +SKIP
    """
    arr = _as_nchw(images, channel_axis)
    n, hw = arr.shape[0], arr.shape[2:]
    fill = None if fill_mask is None else _as_masks(fill_mask, n, hw, channel_axis, "fill_mask")
    auditor = _Auditor(n, hw, min_run=min_run, patch=patch, seed=seed, progress=progress)
    auditor.update(arr, fill)
    return auditor.result(name)


def _channel_axis(shape: tuple[int, ...], where: str) -> int:
    """1 for (N, C, H, W), 3 for (N, H, W, C): the channel axis is the short one (at most 4)."""
    first = shape[1] <= 4 < min(shape[2:])
    last = shape[3] <= 4 < min(shape[1:3])
    if first == last:
        raise ValueError(f"{where} has shape {shape}: cannot tell channel-first (N, C, S, S) from "
                         "channel-last (N, S, S, C); store it channel-first, or audit it with "
                         "audit_padding(images, channel_axis=...)")
    return 1 if first else 3


def audit_store(path, *, arrays: tuple[str, ...] = ("target_b", "target_a"),
                max_items: int | None = None, min_run: int | None = None, patch: int = 20,
                seed: int = 0, progress: bool = False, verify: bool = True
                ) -> dict[str, PaddingAudit]:
    """Audit the targets of a galaxai blend store, reading it chunk by chunk.

    A store with a galaxai manifest is checked like :class:`galaxai.data.store.BlendStore` does:
    an unfinished build (whose missing chunks would read as zero-filled images, a phantom
    boundary that is not there) or a lost chunk file is refused, and with ``verify`` every chunk
    read must match its manifest hash. A bare Zarr group is audited as it is.

    Parameters
    ----------
    path : path-like
        Store directory holding ``blends.zarr`` (layout of ``docs/interfaces.md``), or the Zarr
        group itself.
    arrays : tuple of str, default ("target_b", "target_a")
        Arrays to audit, each channel-first (N, C, S, S) or channel-last (N, S, S, C) with at most
        4 channels (the layout is read from the shape). Missing ones are left out of the result.
        For ``target_b`` the store's ``fill_mask_b`` (if present) drives the patch comparison.
    max_items : int, optional
        Audit only the first ``max_items`` items (blends are drawn at random, so this is a random
        sample). The flagged masks take one byte per pixel: 6.4 kB per 80×80 item.
    min_run, patch, seed, progress
        As in :func:`audit_padding`.
    verify : bool, default True
        Check the chunks read against the manifest's hashes (stores with a manifest only).

    Returns
    -------
    dict[str, PaddingAudit]
        One audit per array found. Chunks of a bare Zarr group that cannot be read are skipped
        and reported in ``PaddingAudit.skipped``.

    Raises
    ------
    FileNotFoundError
        No store at ``path``.
    galaxai.data.store.StoreError
        An unfinished or damaged store (the message names the chunk and the fix).
    ValueError
        ``path`` is not a readable Zarr group, holds none of ``arrays``, an array is not 4-D or
        its layout cannot be told from its shape.
    """
    import zarr

    from galaxai.data.store import BlendStore, read_manifest

    root = Path(path)
    group_path = root / "blends.zarr" if (root / "blends.zarr").exists() else root
    if not group_path.exists():
        raise FileNotFoundError(f"no galaxai store at {root}: expected {root / 'blends.zarr'}; "
                                "build one with galaxai.data.store.build_store")
    store = None
    if read_manifest(group_path.parent) is not None:  # refuses unfinished or damaged stores
        store = BlendStore(group_path.parent, in_memory=False, verify=verify)
    try:
        group = zarr.open_group(str(group_path), mode="r")
    except Exception as exc:  # zarr raises several types for a missing or corrupt group
        raise ValueError(f"{group_path} is not a readable Zarr group "
                         f"({type(exc).__name__}: {exc}); rebuild the store with "
                         "galaxai.data.store.build_store") from exc
    available = set(group.array_keys())
    present = [a for a in arrays if a in available]
    if not present:
        raise ValueError(f"{group_path} holds none of the arrays {list(arrays)}; "
                         f"it has {sorted(available)}")
    results = {}
    for name in present:
        arr = group[name]
        if arr.ndim != 4:
            raise ValueError(f"{group_path}/{name} must be 4-D (N, C, S, S) or (N, S, S, C), got "
                             f"shape {arr.shape}")
        axis = _channel_axis(arr.shape, f"{group_path}/{name}")
        hw = tuple(np.delete(arr.shape, [0, axis]))
        n = arr.shape[0] if max_items is None else min(int(max_items), arr.shape[0])
        fill = group["fill_mask_b"] if name == "target_b" and "fill_mask_b" in available else None
        auditor = _Auditor(n, hw, min_run=min_run, patch=patch, seed=seed, progress=progress)
        step = max(1, (arr.shards or arr.chunks)[0])  # whole shards: each is read once
        for start in range(0, n, step):
            stop = min(n, start + step)
            if store is not None and verify:
                store.check_chunk(start // store.chunk)
            try:
                batch = np.moveaxis(np.asarray(arr[start:stop]), axis, 1)
            except Exception as exc:  # a corrupt chunk costs its items, not the audit
                auditor.skip(stop - start,
                             f"unreadable chunk of {name} ({type(exc).__name__}: {exc})")
                continue
            try:
                mask = None if fill is None else np.asarray(fill[start:stop])
            except Exception as exc:  # noqa: BLE001 - the same, for the fill mask's chunk
                auditor.skip(stop - start,
                             f"unreadable chunk of fill_mask_b ({type(exc).__name__}: {exc})")
                continue
            if mask is not None:
                mask = _as_masks(mask, stop - start, hw, axis, f"{group_path}/fill_mask_b")
            auditor.update(batch, mask)
        results[name] = auditor.result(f"{group_path.name}/{name}")
    return results


# --------------------------------------------------------------------------------------------
# planting padding for the shortcut test


def _prepare_plant(images, channel_axis: int) -> tuple[np.ndarray, np.ndarray]:
    """A copy of ``images`` in its own layout and an (N, C, H, W) view of that copy."""
    _as_nchw(images, channel_axis)
    out = np.array(images, copy=True)
    view = np.moveaxis(out, channel_axis, 1)
    if not np.isfinite(view).all():
        raise ValueError("images contain NaN or inf values; clean them before planting padding")
    return out, view


def _fill(view: np.ndarray, masks: np.ndarray, value, seed: int) -> None:
    """Write ``value`` (a number or "noise") into the masked pixels of every image, in place."""
    if isinstance(value, str):
        if value != "noise":
            raise ValueError(f'fill value must be a number or "noise", got {value!r}')
        rng = np.random.default_rng(seed)
        for img, mask in zip(view, masks):
            if not mask.any():
                continue
            bg = _background_mask(np.asarray(img, dtype=np.float64), mask, 20)
            if not bg.any():
                raise ValueError("an image has no natural background left to draw noise from; "
                                 "use a narrower band or a numeric fill value")
            ys, xs = np.nonzero(bg)
            j = rng.integers(ys.size, size=int(mask.sum()))
            img[:, mask] = img[:, ys[j], xs[j]]
    else:
        value = float(value)
        if not math.isfinite(value):
            raise ValueError(f"fill value must be finite, got {value}")
        for img, mask in zip(view, masks):
            img[:, mask] = value


def add_padded_band(images, width: int, side: str = "left", value: float | str = 0.0, *,
                    channel_axis: int = 1, seed: int = 0) -> Planted:
    """Replace a band along one image side by a constant (or sky-like noise), for shortcut tests.

    Parameters
    ----------
    images : array_like, shape (N, C, H, W) or (N, H, W, C)
        Real images, left unchanged (a copy is returned).
    width : int
        Band width in pixels, ``1 <= width <`` the image size across the band.
    side : {"left", "right", "top", "bottom"}, default "left"
    value : float or "noise", default 0.0
        Fill value (0 mimics the paper's padding). ``"noise"`` is the control: every band pixel
        copies a random natural-background pixel of the same image (all channels), so the band has
        the sky's own value distribution.
    channel_axis : {1, -1}, default 1
    seed : int, default 0
        Seed of the ``"noise"`` draw.

    Returns
    -------
    Planted
        ``(images, mask)``: the planted copy and the exact (N, H, W) mask of replaced pixels.
    """
    out, view = _prepare_plant(images, channel_axis)
    n, _, h, w = view.shape
    if side not in _SIDES:
        raise ValueError(f"side must be one of {list(_SIDES)}, got {side!r}")
    across = w if side in ("left", "right") else h
    if int(width) != width or not 1 <= width < across:
        raise ValueError(f"width must be an integer in [1, {across - 1}], got {width!r}")
    width = int(width)
    band = np.zeros((h, w), dtype=bool)
    band[{"left": np.s_[:, :width], "right": np.s_[:, w - width:],
          "top": np.s_[:width], "bottom": np.s_[h - width:]}[side]] = True
    masks = np.broadcast_to(band, (n, h, w)).copy()
    _fill(view, masks, value, seed)
    return Planted(out, masks)


def add_rotated_frame(images, angle, shift=(0.0, 0.0), *, scale=1.0, fill: float | str = 0.0,
                      channel_axis: int = 1, seed: int = 0) -> Planted:
    """Fill all outside a rotated, scaled, shifted copy of the image frame, for shortcut tests.

    The frame is the image's own pixel extent ``[-0.5, W - 0.5] × [-0.5, H - 0.5]`` mapped by
    ``p → scale·R(angle)·(p − c) + c + shift`` about the centre ``c = ((W − 1)/2, (H − 1)/2)``,
    with ``R(θ) = [[cos θ, −sin θ], [sin θ, cos θ]]`` acting on ``(x, y) = (column, row)`` (the
    convention of :mod:`galaxai.data.blend`). Pixels whose centres fall outside it are filled;
    the content inside is not resampled, so the mask is exact.

    Parameters
    ----------
    images : array_like, shape (N, C, H, W) or (N, H, W, C)
        Real images, left unchanged (a copy is returned).
    angle : float or array_like, shape (N,)
        Rotation in degrees, one for all images or one per image.
    shift : (dy, dx) or array_like, shape (N, 2), default (0, 0)
        Shift in pixels (rows, columns).
    scale : float or array_like, shape (N,), default 1.0
        Frame scale (> 0); below about 0.7 the frame lies wholly inside the image.
    fill : float or "noise", default 0.0
        Fill value, or sky-like noise copied from each image's own background (the control, see
        :func:`add_padded_band`).
    channel_axis : {1, -1}, default 1
    seed : int, default 0
        Seed of the ``"noise"`` draw.

    Returns
    -------
    Planted
        ``(images, mask)``: the planted copy and the exact (N, H, W) mask of filled pixels.
    """
    out, view = _prepare_plant(images, channel_axis)
    n, _, h, w = view.shape
    try:
        angles = np.broadcast_to(np.asarray(angle, dtype=np.float64), (n,))
        shifts = np.broadcast_to(np.asarray(shift, dtype=np.float64), (n, 2))
        scales = np.broadcast_to(np.asarray(scale, dtype=np.float64), (n,))
    except ValueError as exc:
        raise ValueError(f"angle must be a number or ({n},), shift (dy, dx) or ({n}, 2), scale a "
                         f"number or ({n},) for {n} images") from exc
    if not (np.isfinite(angles).all() and np.isfinite(shifts).all() and (scales > 0).all()
            and np.isfinite(scales).all()):
        raise ValueError("angle and shift must be finite and scale finite and > 0")
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    cx, cy = (w - 1) / 2, (h - 1) / 2
    masks = np.empty((n, h, w), dtype=bool)
    for i in range(n):
        t = math.radians(angles[i])
        c, s = math.cos(t), math.sin(t)
        px, py = xx - cx - shifts[i, 1], yy - cy - shifts[i, 0]
        qx = (c * px + s * py) / scales[i] + cx  # inverse rotation R(−θ), then 1/scale
        qy = (-s * px + c * py) / scales[i] + cy
        eps = 1e-9
        masks[i] = ((qx < -0.5 - eps) | (qx > w - 0.5 + eps)
                    | (qy < -0.5 - eps) | (qy > h - 0.5 + eps))
    _fill(view, masks, fill, seed)
    return Planted(out, masks)
