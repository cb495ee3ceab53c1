"""Artefacts planted at exact locations in real images: ground truth for localisation checks.

A discriminator that calls a planted image "generated" should point at the artefact. Four kinds
of what GAN outputs and poorly prepared data show, each with the exact mask of the pixels it
changed:

- ``zero_band``: a band of exact zeros along one side (:func:`~galaxai.diagnose.padding.add_padded_band`);
- ``ringing_patch``: a square patch of ringing (a cosine ripple of 4-pixel period across the
  patch, as a deconvolution or up-sampling layer leaves);
- ``colour_blotch``: a disk whose colour is pushed off the galaxies' colours (one channel raised);
- ``phantom_boundary``: exact zeros outside a rotated, shifted copy of the frame, the hard edge
  the paper's blends put in a target (:func:`~galaxai.diagnose.padding.add_rotated_frame`).

Locations, sides and angles are drawn per image from ``seed``; images are display images in
[0, 1] and stay in [0, 1].
"""
from __future__ import annotations

import numpy as np

from galaxai.choices import ARTEFACTS
from galaxai.diagnose.padding import Planted, _prepare_plant, add_padded_band, add_rotated_frame

__all__ = ["ARTEFACTS", "add_ringing_patch", "add_colour_blotch", "plant_artefact"]


def _centres(rng: np.random.Generator, n: int, h: int, w: int, half: int) -> np.ndarray:
    """``(n, 2)`` integer centres at least ``half`` pixels from every edge."""
    if min(h, w) <= 2 * half:
        raise ValueError(f"images of {h}x{w} px are too small for an artefact of size {2 * half}")
    return np.stack([rng.integers(half, h - half, n), rng.integers(half, w - half, n)], axis=1)


def add_ringing_patch(images, size: int = 12, amplitude: float = 0.12, period: float = 4.0, *,
                      channel_axis: int = 1, seed: int = 0) -> Planted:
    """Add a square patch of ringing ``amplitude * cos(2 pi x / period)`` to every channel.

    Parameters
    ----------
    images : array_like, shape (N, C, H, W) or (N, H, W, C)
        Display images in [0, 1], left unchanged (a copy is returned).
    size : int
        Side of the patch in pixels.
    amplitude : float
        Ripple amplitude in display units (> 0).
    period : float
        Ripple period in pixels along the columns (> 2, so that every column changes).
    channel_axis : {1, -1}
    seed : int
        Seed of the patch positions.

    Returns
    -------
    Planted
        The planted copy (clipped to [0, 1]) and the exact (N, H, W) mask of the patch.
    """
    if amplitude <= 0 or period <= 2 or size < 2:
        raise ValueError("ringing patch needs amplitude > 0, period > 2 px and size >= 2 px")
    out, view = _prepare_plant(images, channel_axis)
    n, _, h, w = view.shape
    centres = _centres(np.random.default_rng(seed), n, h, w, size // 2 + 1)
    ripple = amplitude * np.cos(2 * np.pi * (np.arange(size) + 0.5) / period)
    masks = np.zeros((n, h, w), dtype=bool)
    for i, (cy, cx) in enumerate(centres):
        top, left = cy - size // 2, cx - size // 2
        rows, cols = slice(top, top + size), slice(left, left + size)
        view[i, :, rows, cols] = np.clip(view[i, :, rows, cols] + ripple[None, None, :], 0.0, 1.0)
        masks[i, rows, cols] = True
    return Planted(out, masks)


def add_colour_blotch(images, radius: float = 5.0, amplitude: float = 0.3, channel: int = 1, *,
                      channel_axis: int = 1, seed: int = 0) -> Planted:
    """Raise one channel by ``amplitude`` inside a disk: a blotch of unnatural colour.

    Parameters
    ----------
    images : array_like, shape (N, C, H, W) or (N, H, W, C)
        Display images in [0, 1], left unchanged (a copy is returned).
    radius : float
        Disk radius in pixels (pixel centres within it are changed).
    amplitude : float
        Added value (> 0) before clipping to [0, 1].
    channel : int
        The raised channel (1 = green of an RGB composite, a colour no galaxy has).
    channel_axis : {1, -1}
    seed : int
        Seed of the disk positions.

    Returns
    -------
    Planted
        The planted copy and the exact (N, H, W) mask of the disk.
    """
    if amplitude <= 0 or radius < 1:
        raise ValueError("colour blotch needs amplitude > 0 and radius >= 1 px")
    out, view = _prepare_plant(images, channel_axis)
    n, c, h, w = view.shape
    if not 0 <= channel < c:
        raise ValueError(f"channel={channel} is not one of the images' {c} channels")
    centres = _centres(np.random.default_rng(seed), n, h, w, int(np.ceil(radius)) + 1)
    yy, xx = np.mgrid[0:h, 0:w]
    masks = (yy[None] - centres[:, :1, None]) ** 2 + (xx[None] - centres[:, 1:, None]) ** 2 <= radius ** 2
    for i in range(n):
        view[i, channel, masks[i]] = np.clip(view[i, channel, masks[i]] + amplitude, 0.0, 1.0)
    return Planted(out, masks)


def plant_artefact(images, kind: str, *, channel_axis: int = 1, seed: int = 0) -> Planted:
    """Plant one artefact of ``kind`` (see :data:`ARTEFACTS`) per image at a random location.

    Sizes suit 80-px stamps: a band of ``W // 8`` columns or rows on a random side; a 12-px
    ringing patch; a 5-px-radius green blotch; a frame rotated by 10-30 degrees and shifted by up
    to 8 px (its outside, about 10-30 % of the image, is zero).

    Returns
    -------
    Planted
        The planted copy and the exact mask of the changed pixels.
    """
    if kind not in ARTEFACTS:
        raise ValueError(f"artefact kind {kind!r}; use one of {list(ARTEFACTS)}")
    rng = np.random.default_rng(seed)
    n = np.shape(images)[0]
    if kind == "ringing_patch":
        return add_ringing_patch(images, channel_axis=channel_axis, seed=seed)
    if kind == "colour_blotch":
        return add_colour_blotch(images, channel_axis=channel_axis, seed=seed)
    if kind == "zero_band":
        width = max(1, np.shape(images)[-1 if channel_axis == 1 else -2] // 8)
        sides = rng.choice(["left", "right", "top", "bottom"], size=n)
        parts = [add_padded_band(np.asarray(images)[i:i + 1], width, str(side), 0.0,
                                 channel_axis=channel_axis) for i, side in enumerate(sides)]
        return Planted(np.concatenate([p.images for p in parts]), np.concatenate([p.mask for p in parts]))
    angles = rng.uniform(10, 30, n) * rng.choice([-1, 1], n)
    shifts = rng.uniform(-8, 8, (n, 2))
    return add_rotated_frame(images, angles, shifts, fill=0.0, channel_axis=channel_axis)
