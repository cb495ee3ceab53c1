"""Rendering of galaxy images, relevance maps and figure panels as PNG/GIF files or arrays.

Images use ``astropy.visualization`` stretches (asinh by default, clipped to [0, 1]; ``zscale``
for raw frames) and the Lupton et al. (2004) colour composite for flux bands. Unsigned relevance
is drawn with a sequential colour map, each map normalised on its own; signed relevance with a
diverging colour map centred on 0 with symmetric limits and **one scale for every panel of a
comparison**, so polarity and magnitude can be compared across panels. Small stamps are enlarged
to 256×256 with nearest-neighbour sampling, so pixels stay visible.

Figures are drawn with matplotlib's Agg canvas on a bare :class:`matplotlib.figure.Figure`
(never pyplot, never a display) at exact pixel sizes, and written atomically
(:mod:`galaxai._atomic`). Every drawing function takes ``path=None``: with a path it writes a PNG
(or GIF) and returns the :class:`~pathlib.Path`; without, it returns the rendered RGB ``uint8``
array of shape ``(height, width, 3)``.

Image arguments are display images in [0, 1], either ``(H, W, 3)`` / ``(H, W)`` or channel-first
``(3, H, W)`` / ``(1, H, W)``; NumPy arrays or torch tensors.

References
----------
.. [1] Lupton, R., Blanton, M. R., Fekete, G., Hogg, D. W., O'Mullane, W., Szalay, A. &
   Wherry, N. (2004). Preparing red-green-blue images from CCD data. PASP 116, 133–137.
   doi:10.1086/382245
.. [2] Astropy Collaboration (2022). The Astropy Project. ApJ 935, 167 (``astropy.visualization``).
.. [3] Reiman, D. M. & Göhre, B. E. (2019). Deblending galaxy superpositions with branched
   generative adversarial networks. MNRAS 485, 2617 (Fig. 1 layout of :func:`deblend_panel`).
.. [4] Li, H., Lin, Y., Mueller, K. & Xu, W. (2020). Interpreting galaxy deblender GAN from the
   discriminator's perspective. arXiv:2001.06151 (Fig. 2/3 layout of :func:`explanation_panel`).
"""
from __future__ import annotations

import io
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np
from astropy.visualization import ImageNormalize, LinearStretch, ZScaleInterval, simple_norm
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import Colormap
from matplotlib.figure import Figure
from PIL import Image
from skimage.transform import resize

from galaxai._atomic import atomic_write, atomic_write_bytes
from galaxai._lupton import lupton_apply
from galaxai.metrics import psnr

__all__ = [
    "DISPLAY_SIZE",
    "stretch_image",
    "asinh_stretch",
    "lupton_rgb",
    "symmetric_vmax",
    "heatmap",
    "signed_heatmap",
    "enlarge",
    "to_uint8",
    "png_bytes",
    "save_png",
    "montage",
    "outline",
    "animated_gif",
    "deblend_panel",
    "blend_grid",
    "explanation_panel",
    "curve_plot",
    "scatter_plot",
]

DISPLAY_SIZE = 256
"""Side in pixels to which stamps are enlarged for display."""

_DPI = 100
_PAD = 8          # pixels between panels and around the figure
_TITLE_H = 30     # pixels above each row of panels for titles
_LABEL_W = 110    # pixels left of the panels for row labels
_FONT = 10

PathLike = str | os.PathLike


def _as_array(x: Any, name: str) -> np.ndarray:
    if hasattr(x, "detach") and hasattr(x, "cpu"):
        x = x.detach().cpu().numpy()
    arr = np.asarray(x)
    if arr.dtype == object or not (np.issubdtype(arr.dtype, np.number) or arr.dtype == bool):
        raise ValueError(f"{name}: expected a numeric array, got dtype {arr.dtype}")
    return arr


def _as_hwc(image: Any, name: str = "image") -> np.ndarray:
    """One display image as float32 ``(H, W)`` or ``(H, W, 3)``, channel-first accepted."""
    arr = _as_array(image, name).astype(np.float32)
    if arr.ndim == 3 and arr.shape[0] in (1, 3) and arr.shape[-1] not in (1, 3):
        arr = np.moveaxis(arr, 0, -1)
    if arr.ndim == 3 and arr.shape[-1] == 1:
        arr = arr[..., 0]
    if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[-1] != 3):
        raise ValueError(
            f"{name}: expected one image of shape (H, W), (H, W, 3) or (3, H, W), got {arr.shape}"
        )
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} contains NaN or infinite values; clean the image before drawing it")
    return arr


def stretch_image(
    image: Any,
    stretch: str = "asinh",
    *,
    a: float = 0.1,
    vmin: float | None = None,
    vmax: float | None = None,
    percent: float | None = None,
) -> np.ndarray:
    """Map an image of any range to [0, 1] with an astropy stretch, clipping out-of-range values.

    One normalisation is applied to all channels, so colours are kept.

    Parameters
    ----------
    image : array_like
        Any shape (a 2-D frame, a colour image, a stack).
    stretch : {"asinh", "linear", "sqrt", "log", "zscale"}
        ``"zscale"`` is a linear stretch between the IRAF zscale limits (``ZScaleInterval``);
        the others are :func:`astropy.visualization.simple_norm` stretches.
    a : float, optional
        Softening parameter of the asinh stretch (``asinh_a``); smaller is more logarithmic.
    vmin, vmax : float, optional
        Limits; default the data minimum and maximum (or the ``percent`` interval).
    percent : float, optional
        Central percentile of the data used for the limits, e.g. 99.5.

    Returns
    -------
    numpy.ndarray
        float32 array of the input shape with values in [0, 1].
    """
    data = _as_array(image, "image").astype(np.float64)
    if not np.all(np.isfinite(data)):
        raise ValueError("image contains NaN or infinite values; clean or mask it before stretching")
    if stretch == "zscale":
        norm = ImageNormalize(data, interval=ZScaleInterval(), stretch=LinearStretch(), clip=True)
    elif stretch in ("asinh", "linear", "sqrt", "log"):
        norm = simple_norm(data, stretch, asinh_a=a, vmin=vmin, vmax=vmax, percent=percent, clip=True)
    else:
        raise ValueError(f"unknown stretch {stretch!r}; use 'asinh', 'linear', 'sqrt', 'log' or 'zscale'")
    return np.ma.filled(norm(data), 0.0).astype(np.float32)


def asinh_stretch(image: Any, a: float = 0.1, vmin: float | None = None, vmax: float | None = None) -> np.ndarray:
    """Asinh stretch to [0, 1] with clipping (``stretch_image(image, "asinh", ...)``)."""
    return stretch_image(image, "asinh", a=a, vmin=vmin, vmax=vmax)


def lupton_rgb(flux: Any, *, stretch: float = 0.5, q: float = 8.0, minimum: float = 0.0) -> np.ndarray:
    """Lupton et al. (2004) asinh colour composite of g, r, i flux bands.

    Parameters
    ----------
    flux : array_like
        ``(3, H, W)`` flux image with bands in the order g, r, i (the galaxai flux convention);
        mapped i → red, r → green, g → blue.
    stretch, q, minimum : float
        Linear stretch, asinh softening ``Q`` and black level of
        :func:`astropy.visualization.make_lupton_rgb` (its defaults; ``minimum`` may also be
        three values, one per R, G, B).

    Returns
    -------
    numpy.ndarray
        ``(H, W, 3)`` float32 in [0, 1].

    Notes
    -----
    The same mapping as :func:`galaxai.data.simulate.to_display` (both call
    :func:`galaxai._lupton.lupton_apply`): ``lupton_rgb(f, stretch=100, q=8)`` equals
    ``to_display(f, weights=(1, 1, 1))`` byte for byte. The defaults differ on purpose: these are
    astropy's general-purpose ones, ``to_display`` keeps the dataset's fixed constants.
    """
    arr = _as_array(flux, "flux").astype(np.float64)
    if arr.ndim != 3 or arr.shape[0] != 3:
        raise ValueError(f"flux: expected (3, H, W) with bands g, r, i, got {arr.shape}")
    return lupton_apply(arr[2], arr[1], arr[0], stretch=stretch, Q=q, minimum=minimum)


def _relevance_2d(relevance: Any, channel_axis: int | None) -> np.ndarray:
    arr = _as_array(relevance, "relevance").astype(np.float64)
    if channel_axis is not None:
        arr = arr.sum(axis=channel_axis)
    if arr.ndim < 2:
        raise ValueError(f"relevance: expected (..., H, W) maps, got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError("relevance contains NaN or infinite values")
    return arr


def _cmap(cmap: str | Colormap) -> Colormap:
    return cmap if isinstance(cmap, Colormap) else matplotlib.colormaps[cmap]


def symmetric_vmax(*maps: Any, percentile: float = 100.0) -> float:
    """One symmetric colour limit for signed maps: the ``percentile`` of ``|value|`` over all maps.

    Pass every map of a comparison so that all panels share the scale. Returns 1.0 when all maps
    are zero (so that a blank map still renders at the centre colour).
    """
    if not maps:
        raise ValueError("symmetric_vmax needs at least one map")
    values = np.concatenate([np.abs(_as_array(m, "map").astype(np.float64)).ravel() for m in maps])
    vmax = float(np.percentile(values, percentile))
    return vmax if vmax > 0 else 1.0


def heatmap(
    relevance: Any,
    cmap: str | Colormap = "viridis",
    normalise: bool = True,
    *,
    channel_axis: int | None = None,
) -> np.ndarray:
    """Colour unsigned relevance maps with a sequential colour map.

    Parameters
    ----------
    relevance : array_like
        ``(..., H, W)`` maps (one or a stack). With ``channel_axis`` the channels are summed first.
    cmap : str or Colormap, optional
    normalise : bool, optional
        Scale **each** map on its own from its minimum (→ 0) to its maximum (→ 1). With ``False``
        the values are taken as already in [0, 1] and clipped.
    channel_axis : int, optional
        Axis to sum over before colouring (e.g. 1 for ``(N, C, H, W)`` maps).

    Returns
    -------
    numpy.ndarray
        float32 RGB ``(..., H, W, 3)`` in [0, 1].
    """
    arr = _relevance_2d(relevance, channel_axis)
    if normalise:
        lo = arr.min(axis=(-2, -1), keepdims=True)
        span = arr.max(axis=(-2, -1), keepdims=True) - lo
        arr = np.divide(arr - lo, span, out=np.zeros_like(arr), where=span > 0)
    return _cmap(cmap)(np.clip(arr, 0.0, 1.0))[..., :3].astype(np.float32)


def signed_heatmap(
    relevance: Any,
    cmap: str | Colormap = "bwr",
    vmax: float | None = None,
    *,
    channel_axis: int | None = None,
) -> np.ndarray:
    """Colour signed relevance with a diverging colour map centred on 0, symmetric limits.

    Value 0 maps to the colour-map centre, ``+vmax`` to its top and ``-vmax`` to its bottom. All
    maps passed in one call share the scale; to share it across calls (all panels of a
    comparison), pass ``vmax`` from :func:`symmetric_vmax` over every map.

    Parameters
    ----------
    relevance : array_like
        ``(..., H, W)`` maps; with ``channel_axis`` the channels are summed first.
    cmap : str or Colormap, optional
        A diverging map (``"bwr"``, ``"RdBu_r"``, ``"coolwarm"``, …).
    vmax : float, optional
        Symmetric limit; default the largest ``|value|`` in ``relevance``.
    channel_axis : int, optional
        Axis to sum over before colouring.

    Returns
    -------
    numpy.ndarray
        float32 RGB ``(..., H, W, 3)`` in [0, 1].
    """
    arr = _relevance_2d(relevance, channel_axis)
    vmax = symmetric_vmax(arr) if vmax is None else float(vmax)
    if not np.isfinite(vmax) or vmax <= 0:
        raise ValueError(f"vmax must be a positive finite number, got {vmax}")
    return _cmap(cmap)(np.clip(0.5 + 0.5 * arr / vmax, 0.0, 1.0))[..., :3].astype(np.float32)


def enlarge(image: Any, size: int = DISPLAY_SIZE, *, smooth: bool = False) -> np.ndarray:
    """Resize an image to ``size × size`` for display.

    Nearest-neighbour by default (each stamp pixel becomes a visible block); ``smooth=True``
    uses bilinear interpolation. Works on ``(H, W)`` and ``(H, W, C)`` arrays.
    """
    arr = _as_array(image, "image")
    if arr.ndim not in (2, 3):
        raise ValueError(f"image: expected (H, W) or (H, W, C), got {arr.shape}")
    h, w = arr.shape[:2]
    if smooth:
        out_shape = (size, size) + arr.shape[2:]
        return resize(arr.astype(np.float32), out_shape, order=1, anti_aliasing=False,
                      preserve_range=True).astype(np.float32)
    rows = np.minimum((np.arange(size) + 0.5) * h / size, h - 1).astype(int)
    cols = np.minimum((np.arange(size) + 0.5) * w / size, w - 1).astype(int)
    return arr[rows][:, cols]


def to_uint8(image: Any) -> np.ndarray:
    """A [0, 1] float image as ``uint8`` (clipped, rounded); ``uint8`` input is returned as is."""
    arr = _as_array(image, "image")
    if arr.dtype == np.uint8:
        return arr
    return np.round(np.clip(arr.astype(np.float64), 0.0, 1.0) * 255.0).astype(np.uint8)


def png_bytes(image: Any) -> bytes:
    """A [0, 1] float or ``uint8`` image, ``(H, W)`` or ``(H, W, 3)``, encoded as PNG."""
    arr = to_uint8(image)
    if arr.ndim not in (2, 3):
        raise ValueError(f"image: expected (H, W) or (H, W, 3), got {arr.shape}")
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


def save_png(image: Any, path: PathLike) -> Path:
    """Write a [0, 1] float or ``uint8`` image, ``(H, W)`` or ``(H, W, 3)``, as PNG atomically."""
    return atomic_write_bytes(path, png_bytes(image))


def _rgb(image: np.ndarray) -> np.ndarray:
    return np.repeat(image[..., None], 3, axis=-1) if image.ndim == 2 else image


def outline(image: Any, mask: Any, colour: Sequence[float] = (1.0, 0.85, 0.0)) -> np.ndarray:
    """A display image with the border pixels of a region painted in ``colour``.

    Parameters
    ----------
    image : array_like
        ``(H, W)``, ``(H, W, 3)`` or ``(3, H, W)`` in [0, 1].
    mask : array_like of bool, (H, W)
        The region; its pixels with a neighbour outside (or on the frame's edge) are painted.

    Returns
    -------
    numpy.ndarray
        float32 ``(H, W, 3)``.
    """
    from scipy import ndimage

    rgb = _rgb(_as_hwc(image)).copy()
    region = np.asarray(mask, bool)
    if region.shape != rgb.shape[:2]:
        raise ValueError(f"mask of shape {region.shape} does not fit an image of {rgb.shape[:2]}")
    rgb[region & ~ndimage.binary_erosion(region, border_value=0)] = colour
    return rgb


def montage(
    images: Any,
    ncols: int | None = None,
    *,
    size: int | None = None,
    pad: int = 2,
    fill: float = 1.0,
    path: PathLike | None = None,
) -> np.ndarray | Path:
    """Tile images into one grid image (no axes or text).

    Parameters
    ----------
    images : array_like or sequence
        ``(N, H, W, 3)``, ``(N, H, W)`` or ``(N, 3, H, W)`` display images in [0, 1], or a
        sequence of equally sized images.
    ncols : int, optional
        Columns; default ``ceil(sqrt(N))``.
    size : int, optional
        Enlarge every tile to ``size × size`` (nearest) first.
    pad, fill : int, float
        Gap in pixels between tiles and its grey level.
    path : path-like, optional
        Write a PNG there and return the path; otherwise return the float32 RGB array.
    """
    tiles = [_rgb(_as_hwc(im, f"images[{i}]")) for i, im in enumerate(images)]
    if not tiles:
        raise ValueError("montage needs at least one image")
    if size is not None:
        tiles = [enlarge(t, size) for t in tiles]
    if len({t.shape for t in tiles}) != 1:
        raise ValueError(f"montage needs images of one size, got {sorted({t.shape for t in tiles})}")
    n = len(tiles)
    ncols = int(np.ceil(np.sqrt(n))) if ncols is None else int(ncols)
    nrows = int(np.ceil(n / ncols))
    h, w = tiles[0].shape[:2]
    grid = np.full((nrows * h + (nrows + 1) * pad, ncols * w + (ncols + 1) * pad, 3), fill, np.float32)
    for i, tile in enumerate(tiles):
        r, c = divmod(i, ncols)
        y, x = pad + r * (h + pad), pad + c * (w + pad)
        grid[y : y + h, x : x + w] = tile
    return grid if path is None else save_png(grid, path)


def animated_gif(
    frames: Any,
    path: PathLike,
    *,
    duration_ms: int = 250,
    loop: int = 0,
    size: int | None = None,
) -> Path:
    """Write an animated GIF (Pillow) of display frames, atomically.

    Parameters
    ----------
    frames : array_like or sequence
        ``(T, H, W, 3)`` / ``(T, H, W)`` frames in [0, 1] (or ``uint8``), e.g. one relevance map
        across training checkpoints.
    path : path-like
        Destination ``.gif``.
    duration_ms : int, optional
        Display time of each frame.
    loop : int, optional
        Number of loops; 0 loops forever.
    size : int, optional
        Enlarge each frame to ``size × size`` (nearest) first.

    Returns
    -------
    pathlib.Path
    """
    images = []
    for i, frame in enumerate(frames):
        arr = _as_array(frame, f"frames[{i}]")
        arr = arr if arr.dtype == np.uint8 else _as_hwc(arr, f"frames[{i}]")
        if size is not None:
            arr = enlarge(arr, size)
        images.append(Image.fromarray(to_uint8(arr)).convert("RGB"))
    if not images:
        raise ValueError("animated_gif needs at least one frame")

    def write(tmp: Path) -> None:
        images[0].save(tmp, format="GIF", save_all=True, append_images=images[1:],
                       duration=duration_ms, loop=loop)

    return atomic_write(path, write)


def _finish(fig: Figure, path: PathLike | None) -> np.ndarray | Path:
    """Return the figure as an RGB ``uint8`` array, or write it as PNG to ``path`` atomically."""
    if path is None:
        fig.canvas.draw()
        return np.asarray(fig.canvas.buffer_rgba())[..., :3].copy()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=_DPI)
    return atomic_write_bytes(path, buf.getvalue())


class _Grid:
    """A figure of ``nrows × ncols`` image panels of exactly ``panel`` pixels each."""

    def __init__(self, nrows: int, ncols: int, *, panel: int, row_labels: bool, footer: int = 0):
        self.panel = panel
        self.left = _LABEL_W if row_labels else 0
        self.width = self.left + ncols * (panel + _PAD) + _PAD
        self.height = nrows * (panel + _TITLE_H + _PAD) + _PAD + footer
        self.fig = Figure(figsize=(self.width / _DPI, self.height / _DPI), dpi=_DPI, facecolor="white")
        FigureCanvasAgg(self.fig)

    def axes(self, row: int, col: int):
        x = self.left + _PAD + col * (self.panel + _PAD)
        y_top = _PAD + row * (self.panel + _TITLE_H + _PAD) + _TITLE_H
        rect = (x / self.width, 1 - (y_top + self.panel) / self.height,
                self.panel / self.width, self.panel / self.height)
        ax = self.fig.add_axes(rect)
        ax.set_xticks([])
        ax.set_yticks([])
        return ax

    def image(self, row: int, col: int, image: np.ndarray, title: str = "", **imshow: Any):
        ax = self.axes(row, col)
        ax.imshow(enlarge(image, self.panel), interpolation="nearest", **imshow)
        if title:
            ax.set_title(title, fontsize=_FONT, pad=4)
        return ax

    def row_label(self, row: int, text: str) -> None:
        y = _PAD + row * (self.panel + _TITLE_H + _PAD) + _TITLE_H + self.panel / 2
        self.fig.text(_PAD / self.width, 1 - y / self.height, text, fontsize=_FONT,
                      ha="left", va="center", wrap=True)



def _psnr_one(pred: np.ndarray, target: np.ndarray) -> float:
    return float(psnr(pred[None], target[None], 1.0, channel_axis=-1)[0])


def deblend_panel(
    blend: Any,
    a: Any,
    b: Any,
    out_a: Any,
    out_b: Any,
    psnr_a: float | None = None,
    psnr_b: float | None = None,
    *,
    path: PathLike | None = None,
    panel: int = DISPLAY_SIZE,
) -> np.ndarray | Path:
    """One deblending example as in Reiman & Göhre (2019), Fig. 1.

    Panels, left to right: true A | true B | blend | output A | output B, the outputs titled with
    their PSNR (data_range 1) against the truths.

    Parameters
    ----------
    blend, a, b, out_a, out_b : array_like
        Display images in [0, 1] of one size, ``(H, W, 3)`` or ``(3, H, W)``.
    psnr_a, psnr_b : float, optional
        PSNRs to print; computed with :func:`galaxai.metrics.psnr` when omitted.
    path : path-like, optional
        Write a PNG there (returning the path); otherwise return the RGB ``uint8`` array.
    panel : int, optional
        Side of each panel in pixels.
    """
    imgs = {name: _as_hwc(x, name) for name, x in
            (("blend", blend), ("a", a), ("b", b), ("out_a", out_a), ("out_b", out_b))}
    if len({im.shape for im in imgs.values()}) != 1:
        raise ValueError(f"deblend_panel needs images of one shape, got "
                         f"{ {k: v.shape for k, v in imgs.items()} }")
    psnr_a = _psnr_one(imgs["out_a"], imgs["a"]) if psnr_a is None else float(psnr_a)
    psnr_b = _psnr_one(imgs["out_b"], imgs["b"]) if psnr_b is None else float(psnr_b)
    grid = _Grid(1, 5, panel=panel, row_labels=False)
    for col, (key, title) in enumerate((
        ("a", "true A"), ("b", "true B"), ("blend", "blend"),
        ("out_a", f"output A, PSNR {psnr_a:.2f} dB"), ("out_b", f"output B, PSNR {psnr_b:.2f} dB"),
    )):
        grid.image(0, col, imgs[key], title, cmap="gray", vmin=0, vmax=1)
    return _finish(grid.fig, path)


def _batch(x: Any, name: str) -> list[np.ndarray]:
    arr = _as_array(x, name)
    single = arr.ndim == 2 or (arr.ndim == 3 and (arr.shape[-1] == 3 or arr.shape[0] in (1, 3)))
    return [_as_hwc(arr, name)] if single else [_as_hwc(im, f"{name}[{i}]") for i, im in enumerate(arr)]


def blend_grid(
    blend: Any,
    a: Any,
    b: Any,
    mask: Any,
    *,
    path: PathLike | None = None,
    panel: int = DISPLAY_SIZE // 2,
) -> np.ndarray | Path:
    """Rows of blend | A | B | padded-pixel mask, to check what the blend code produced.

    Parameters
    ----------
    blend, a, b : array_like
        One image or a batch ``(N, H, W, 3)`` / ``(N, 3, H, W)`` of display images.
    mask : array_like
        Pixels of B filled by padding, ``(H, W)`` / ``(1, H, W)`` or a batch of them
        (``BlendBatch.fill_mask_b``); drawn white on black.
    path : path-like, optional
        Write a PNG there (returning the path); otherwise return the RGB ``uint8`` array.
    panel : int, optional
        Side of each panel in pixels.
    """
    rows = [_batch(x, name) for name, x in (("blend", blend), ("a", a), ("b", b))]
    masks = _as_array(mask, "mask").astype(np.float32)
    if masks.ndim == 4:
        masks = masks[:, 0]
    masks = masks[None] if masks.ndim == 2 else masks
    n = len(rows[0])
    if any(len(r) != n for r in rows) or len(masks) != n:
        raise ValueError(f"blend, a, b and mask must hold the same number of images, got "
                         f"{[len(r) for r in rows] + [len(masks)]}")
    grid = _Grid(n, 4, panel=panel, row_labels=False)
    for i in range(n):
        titles = ("blend", "A", "B", f"padded pixels ({masks[i].mean():.0%})") if i == 0 else ("",) * 4
        for col, img in enumerate((rows[0][i], rows[1][i], rows[2][i], masks[i])):
            grid.image(i, col, img, titles[col], cmap="gray", vmin=0, vmax=1)
    return _finish(grid.fig, path)


def explanation_panel(
    images: Any,
    maps_by_method: Mapping[str, Any],
    labels: Sequence[str] | None = None,
    *,
    signed: bool = True,
    cmap: str | Colormap | None = None,
    scale: str = "shared",
    vmax: float | None = None,
    channel_axis: int | None = None,
    path: PathLike | None = None,
    panel: int = DISPLAY_SIZE // 2,
) -> np.ndarray | Path:
    """Images beside their relevance maps per method, as in Li et al. (2020), Fig. 2/3.

    One row per image (e.g. a real and a generated row), columns image | method 1 | method 2 | …

    Parameters
    ----------
    images : array_like
        ``(N, H, W, 3)`` / ``(N, 3, H, W)`` display images (or one image).
    maps_by_method : mapping of str to array_like
        Relevance maps per method, each ``(N, H, W)`` (or ``(N, C, H, W)`` with ``channel_axis``).
    labels : sequence of str, optional
        Row labels, e.g. ``["real", "generated"]``.
    signed : bool, optional
        Diverging colour map centred on 0 (default) or per-map normalised sequential heatmaps.
    cmap : str or Colormap, optional
        Default ``"bwr"`` for signed maps, ``"viridis"`` otherwise.
    scale : {"shared", "per_method"}, optional
        For signed maps: one symmetric limit over every panel (default), or one per method column
        (shared by all rows, so real and generated stay comparable). The limit is in the title.
    vmax : float, optional
        Explicit shared limit (implies ``scale="shared"``).
    channel_axis : int, optional
        Axis of each method's array to sum over, e.g. 1 for ``(N, C, H, W)`` maps.
    path : path-like, optional
        Write a PNG there (returning the path); otherwise return the RGB ``uint8`` array.
    panel : int, optional
        Side of each panel in pixels.
    """
    imgs = _batch(images, "images")
    n = len(imgs)
    if not maps_by_method:
        raise ValueError("maps_by_method is empty; pass at least one method's maps")
    if scale not in ("shared", "per_method"):
        raise ValueError(f"scale must be 'shared' or 'per_method', got {scale!r}")
    maps = {}
    for method, m in maps_by_method.items():
        arr = _relevance_2d(m, channel_axis)
        arr = arr[None] if arr.ndim == 2 else arr
        if arr.shape[0] != n or arr.ndim != 3:
            raise ValueError(f"maps_by_method[{method!r}]: expected {n} maps (N, H, W), got {arr.shape}")
        maps[method] = arr
    if labels is not None and len(labels) != n:
        raise ValueError(f"labels: expected {n} row labels, got {len(labels)}")
    cmap = cmap or ("bwr" if signed else "viridis")
    limits: dict[str, float] = {}
    if signed:
        shared = vmax if vmax is not None else symmetric_vmax(*maps.values())
        for method, arr in maps.items():
            limits[method] = shared if (scale == "shared" or vmax is not None) else symmetric_vmax(arr)
    grid = _Grid(n, 1 + len(maps), panel=panel, row_labels=labels is not None)
    for i in range(n):
        grid.image(i, 0, imgs[i], "image" if i == 0 else "", cmap="gray", vmin=0, vmax=1)
        if labels is not None:
            grid.row_label(i, labels[i])
        for col, (method, arr) in enumerate(maps.items(), start=1):
            if signed:
                rgb = signed_heatmap(arr[i], cmap, limits[method])
                title = f"{method} (±{limits[method]:.3g})"
            else:
                rgb = heatmap(arr[i], cmap)
                title = method
            grid.image(i, col, rgb, title if i == 0 else "")
    return _finish(grid.fig, path)


def curve_plot(
    x: Any,
    ys: Sequence[Any] | Mapping[str, Any],
    labels: Sequence[str] | None = None,
    *,
    xlabel: str = "",
    ylabel: str = "",
    title: str = "",
    logy: bool = False,
    bands: Sequence[Any] | Mapping[str, Any] | None = None,
    size: tuple[int, int] = (640, 400),
    path: PathLike | None = None,
) -> np.ndarray | Path:
    """Line plot of one or more curves over a shared x (losses, PSNR over training, AOPC, …).

    Parameters
    ----------
    x : array_like
        Shared abscissa, length ``M``.
    ys : sequence of array_like or mapping of label to array_like
        Curves of length ``M``.
    labels : sequence of str, optional
        Legend entries (taken from the mapping keys when ``ys`` is a mapping).
    xlabel, ylabel, title : str, optional
    logy : bool, optional
        Logarithmic y axis.
    bands : sequence or mapping of (low, high), optional
        Shaded bands (e.g. mean ± sd) in their curve's colour: one ``(low, high)`` pair of
        length-``M`` arrays, or ``None``, per curve; a mapping is keyed by curve label.
    size : (int, int), optional
        Figure width and height in pixels.
    path : path-like, optional
        Write a PNG there (returning the path); otherwise return the RGB ``uint8`` array.
    """
    if isinstance(ys, Mapping):
        labels, ys = list(ys.keys()), list(ys.values())
    if isinstance(bands, Mapping):
        unknown = set(bands) - set(labels or [])
        if unknown:
            raise ValueError(f"bands: {sorted(unknown)} are not curve labels {labels}")
        bands = [bands.get(label) for label in labels]
    xs = _as_array(x, "x").astype(np.float64).ravel()
    curves = [_as_array(y, f"ys[{i}]").astype(np.float64).ravel() for i, y in enumerate(ys)]
    if not curves:
        raise ValueError("curve_plot needs at least one curve")
    for i, y in enumerate(curves):
        if y.shape != xs.shape:
            raise ValueError(f"ys[{i}] has {y.size} points but x has {xs.size}")
    if labels is not None and len(labels) != len(curves):
        raise ValueError(f"labels: expected {len(curves)} labels, got {len(labels)}")
    bands = [None] * len(curves) if bands is None else list(bands)
    if len(bands) != len(curves):
        raise ValueError(f"bands: expected {len(curves)} entries (one per curve), got {len(bands)}")
    shades = []
    for i, band in enumerate(bands):
        if band is not None:
            band = _as_array(band, f"bands[{i}]").astype(np.float64)
            if band.shape != (2, *xs.shape):
                raise ValueError(f"bands[{i}] must be a (low, high) pair of {xs.size} points, "
                                 f"got shape {band.shape}")
        shades.append(band)
    fig = Figure(figsize=(size[0] / _DPI, size[1] / _DPI), dpi=_DPI, facecolor="white")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    for i, y in enumerate(curves):
        (line,) = ax.plot(xs, y, label=None if labels is None else labels[i])
        if shades[i] is not None:
            ax.fill_between(xs, shades[i][0], shades[i][1], color=line.get_color(), alpha=0.2,
                            linewidth=0)
    if logy:
        ax.set_yscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    if labels is not None:
        ax.legend(fontsize=_FONT - 1)
    fig.tight_layout()
    return _finish(fig, path)


def scatter_plot(
    series: Mapping[str, tuple[Any, Any]],
    *,
    lines: Mapping[str, float] | None = None,
    xlabel: str = "",
    ylabel: str = "",
    title: str = "",
    size: tuple[int, int] = (560, 500),
    path: PathLike | None = None,
) -> np.ndarray | Path:
    """Scatter plot of one or more point sets with optional lines through the origin.

    Used for measured-vs-true comparisons (e.g. bar lengths against a catalogue, with the 1:1
    line and a fit ``y = k x``).

    Parameters
    ----------
    series : mapping of label to (x, y)
        Point sets; ``x`` and ``y`` of one set have equal length.
    lines : mapping of label to float, optional
        Lines ``y = slope · x`` drawn from 0 to the largest plotted value, e.g.
        ``{"1:1": 1.0, "fit": 0.8}``; the first is dashed grey.
    xlabel, ylabel, title : str, optional
    size : (int, int), optional
        Figure width and height in pixels.
    path : path-like, optional
        Write a PNG there (returning the path); otherwise return the RGB ``uint8`` array.
    """
    points = []
    for label, (x, y) in series.items():
        xs = _as_array(x, f"series[{label!r}] x").astype(np.float64).ravel()
        ys = _as_array(y, f"series[{label!r}] y").astype(np.float64).ravel()
        if xs.shape != ys.shape:
            raise ValueError(f"series {label!r}: x has {xs.size} points but y has {ys.size}")
        points.append((label, xs, ys))
    if not points:
        raise ValueError("scatter_plot needs at least one point set")
    fig = Figure(figsize=(size[0] / _DPI, size[1] / _DPI), dpi=_DPI, facecolor="white")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    top = 0.0
    for label, xs, ys in points:
        ax.scatter(xs, ys, s=12, alpha=0.7, label=label)
        finite = np.concatenate([xs, ys])
        finite = finite[np.isfinite(finite)]
        top = max(top, float(finite.max()) if finite.size else 0.0)
    top = top if top > 0 else 1.0
    for i, (label, slope) in enumerate((lines or {}).items()):
        style = dict(color="grey", ls="--") if i == 0 else dict(ls="-")
        ax.plot([0, top / max(1.0, float(slope))], [0, top * min(1.0, float(slope))],
                lw=1, label=label, **style)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=_FONT - 2)
    fig.tight_layout()
    return _finish(fig, path)
