"""Display-space augmentation for deblender training on real skies.

Real cut-outs arrive with unknown stretches, sky levels and JPEG compression, and as max- or
sum-merged blends. :func:`augment_pair` re-displays one blend's two centred targets with one
random *survey look* (a stretch of the sky-subtracted signal, a gain, a new sky pedestal), merges
them with ``max`` (the paper) or ``sum`` (light adds up, in the linear signal before the
stretch), and JPEG-compresses all three images at one quality. The same look is used for the
blend and both targets, so the task stays well posed: recover each galaxy *as this survey would
have displayed it alone*.

Stretches act on ``u = gain · (x − sky)`` (``x`` display values, ``sky`` the frame's sky level):
``linear`` u, ``sqrt`` sign(u)·√|u|, ``log`` sign(u)·log(1 + a|u|)/log(1 + a), ``asinh``
asinh(u/β)/asinh(1/β); the result is ``pedestal + (1 − pedestal)·f(u)``, clipped to [0, 1].
``identity`` keeps the images as they are (the stored display).
"""
from __future__ import annotations

import io
import math
from dataclasses import dataclass

import numpy as np
from PIL import Image

from galaxai.choices import AUGMENT_PRESETS

__all__ = ["STRETCHES", "AUGMENT_PRESETS", "DisplayAugment", "Look", "draw_look", "apply_look", "jpeg", "augment_pair"]

STRETCHES = ("identity", "linear", "sqrt", "log", "asinh")


@dataclass(frozen=True)
class DisplayAugment:
    """Ranges of the random survey look (see the module text).

    Parameters
    ----------
    stretches : tuple of str
        Drawn uniformly from these (:data:`STRETCHES`).
    gain_range : (float, float)
        Log-uniform gain applied to the sky-subtracted signal before the stretch.
    pedestal_range : (float, float)
        New sky level (display units).
    log_a_range, asinh_beta_range : (float, float)
        Log-uniform parameters of the ``log`` and ``asinh`` stretches.
    p_sum : float
        Probability of a sum merge instead of the paper's max.
    p_jpeg : float
        Probability that the three images are JPEG-compressed (8-bit, 4:2:0).
    jpeg_quality : (int, int)
        JPEG quality, uniform integer in this range.
    """

    stretches: tuple[str, ...] = STRETCHES
    gain_range: tuple[float, float] = (0.5, 2.0)
    pedestal_range: tuple[float, float] = (0.0, 0.12)
    log_a_range: tuple[float, float] = (10.0, 1000.0)
    asinh_beta_range: tuple[float, float] = (0.02, 0.5)
    p_sum: float = 0.5
    p_jpeg: float = 0.5
    jpeg_quality: tuple[int, int] = (40, 95)

    def __post_init__(self) -> None:
        bad = [s for s in self.stretches if s not in STRETCHES]  # repeats weight a stretch
        if bad or not self.stretches:
            raise ValueError(f"stretches must be a non-empty subset of {list(STRETCHES)}, got "
                             f"{list(self.stretches)}")
        for name in ("p_sum", "p_jpeg"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must lie in [0, 1], got {getattr(self, name)}")
        lo, hi = self.jpeg_quality
        if not 1 <= lo <= hi <= 100:
            raise ValueError(f"jpeg_quality must satisfy 1 <= low <= high <= 100, got "
                             f"{self.jpeg_quality}")

    @classmethod
    def preset(cls, name: str) -> "DisplayAugment":
        """``"full"`` (the defaults: every stretch, half the blends summed, half JPEG'd) or
        ``"mild"`` (identity, linear and asinh looks only, gains 0.7–1.4, sky up to 0.08, 30 %
        sum merges, 30 % JPEG at quality 60–95): less robustness, more of the stored look."""
        presets = {
            "full": cls(),
            "mild": cls(stretches=("identity", "identity", "linear", "asinh"),
                        gain_range=(0.7, 1.4), pedestal_range=(0.0, 0.08), p_sum=0.3,
                        p_jpeg=0.3, jpeg_quality=(60, 95)),
        }
        if name not in presets:
            raise ValueError(f"unknown augmentation preset {name!r}; choose one of {AUGMENT_PRESETS}")
        return presets[name]


@dataclass(frozen=True)
class Look:
    """One drawn survey look."""

    stretch: str
    gain: float
    pedestal: float
    param: float
    merge: str
    jpeg_quality: int  # 0: no compression


def _log_uniform(rng: np.random.Generator, bounds: tuple[float, float]) -> float:
    return float(math.exp(rng.uniform(math.log(bounds[0]), math.log(bounds[1]))))


def draw_look(rng: np.random.Generator, config: DisplayAugment) -> Look:
    """Draw one :class:`Look` from ``config``'s ranges."""
    stretch = str(config.stretches[rng.integers(len(config.stretches))])
    gain = _log_uniform(rng, config.gain_range)
    pedestal = float(rng.uniform(*config.pedestal_range))
    param = (_log_uniform(rng, config.log_a_range) if stretch == "log"
             else _log_uniform(rng, config.asinh_beta_range))
    merge = "sum" if rng.uniform() < config.p_sum else "max"
    quality = int(rng.integers(config.jpeg_quality[0], config.jpeg_quality[1] + 1)) \
        if rng.uniform() < config.p_jpeg else 0
    return Look(stretch, gain, pedestal, param, merge, quality)


def _stretch(u: np.ndarray, look: Look) -> np.ndarray:
    if look.stretch == "linear":
        return u
    if look.stretch == "sqrt":
        return np.sign(u) * np.sqrt(np.abs(u))
    if look.stretch == "log":
        return np.sign(u) * np.log1p(look.param * np.abs(u)) / math.log1p(look.param)
    return np.arcsinh(u / look.param) / math.asinh(1.0 / look.param)


def apply_look(signal: np.ndarray, look: Look) -> np.ndarray:
    """Display a sky-subtracted signal ``(..., 3, H, W)`` with ``look`` (not for ``identity``)."""
    y = _stretch(look.gain * signal, look)
    return np.clip(look.pedestal + (1.0 - look.pedestal) * y, 0.0, 1.0)


def jpeg(image: np.ndarray, quality: int) -> np.ndarray:
    """JPEG round trip of a ``(3, H, W)`` image in [0, 1] (8-bit, PIL's default 4:2:0)."""
    pixels = np.clip(np.rint(np.moveaxis(image, 0, -1) * 255.0), 0, 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG", quality=int(quality))
    decoded = np.asarray(Image.open(io.BytesIO(buffer.getvalue())).convert("RGB"))
    return np.moveaxis(decoded.astype(np.float32) / np.float32(255.0), -1, 0)


def augment_pair(target_a: np.ndarray, target_b: np.ndarray, sky_a: np.ndarray,
                 sky_b: np.ndarray, look: Look) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Blend and targets of one pair under ``look``.

    Parameters
    ----------
    target_a, target_b : ndarray, shape (3, H, W), float in [0, 1]
        The centred galaxy A and the warped neighbour B, as stored (display).
    sky_a, sky_b : ndarray, shape (3,)
        Their frames' sky levels.
    look : Look

    Returns
    -------
    blend, target_a, target_b : ndarray, shape (3, H, W), float32 in [0, 1]
    """
    sa = target_a - np.asarray(sky_a, dtype=np.float64)[:, None, None]
    sb = target_b - np.asarray(sky_b, dtype=np.float64)[:, None, None]
    if look.stretch == "identity":
        a, b = target_a.astype(np.float64), target_b.astype(np.float64)
        blend = np.clip(a + sb, 0.0, 1.0) if look.merge == "sum" else np.maximum(a, b)
    else:
        a, b = apply_look(sa, look), apply_look(sb, look)
        blend = apply_look(sa + sb, look) if look.merge == "sum" else np.maximum(a, b)
    out = [blend, a, b]
    if look.jpeg_quality:
        out = [jpeg(x, look.jpeg_quality) for x in out]
    return tuple(np.ascontiguousarray(x, dtype=np.float32) for x in out)
