"""Simulated SDSS-like galaxies in g, r, i with per-component truth (GalSim).

Two modes share the observation model (SDSS 0.396"/px pixels, a seeing-limited PSF per band,
sky + Poisson noise, sky-subtracted output):

``mode="parametric"``
    A Sérsic bulge, an inclined exponential disk (``galsim.InclinedExponential``) and, for disk
    galaxies, an optional Ferrers bar of exactly known length, optional logarithmic spiral arms
    and optional star-forming knots (``galsim.RandomKnots``). GalSim has no Ferrers or spiral
    profile, so those two are drawn here as NumPy surface-brightness maps on an oversampled grid
    and wrapped as ``galsim.InterpolatedImage`` before the PSF convolution.
``mode="cosmos"``
    The 100 real HST/ACS F814W galaxies of the GalSim COSMOS example sample, re-observed with
    ``galsim.RealGalaxy`` (HST PSF removed, SDSS PSF, pixel and noise applied). The single band is
    coloured with drawn g−r, r−i colours (red-sequence or blue-cloud, see the table), the flux is
    scaled to an SDSS-bright magnitude (same magnitude distribution) and the galaxy is dilated
    toward the parametric size (a galaxy moved to low redshift), at most ×12 and at most so far
    that the dilated HST PSF (0.12") stays below 2/3 of the SDSS FWHM. The whole galaxy is one
    component, ``"galaxy"``.

    HST noise. Scaling flux and noise together keeps each stamp's signal-to-noise, so a faint
    (I ≈ 25, S/N ≈ 20–50) COSMOS galaxy made SDSS-bright would carry HST noise far above the SDSS
    sky. GalSim's recipe (``Image.whitenNoise`` with ``RealGalaxy.noise``) is not used: in our
    checks on this sample its noise model gave ~3·10³–10⁴ times less variance than a pure-noise
    stamp of the measured HST sigma pushed through the same deconvolution, dilation, flux
    scaling and PSF, and than the negative-pixel scatter of the drawn galaxies. galaxai does
    exactly that push (white noise of the stamp's border sigma), measures the propagated
    variance in the dilated stamp's footprint, and lowers the flux until it is at most
    ``cosmos_max_noise_frac`` (0.25) of the sky variance in every band. Many galaxies therefore
    end fainter than drawn (typically r ≈ 17–20; ``mag_r`` vs ``mag_r_drawn`` and
    ``flux_scale_cap`` in the catalogue). The remaining HST noise stays in the truth image
    (``noiseless``) under the full SDSS sky noise added by :func:`observe`.

Every galaxy ``i`` is drawn from its own random stream ``SeedSequence(seed, spawn_key=(i,))``,
so galaxy ``i`` is byte-identical whatever ``n``, ``start`` or chunking produced it.

Parameter distributions (parametric mode; "U" uniform, "N" normal, "Beta" beta distribution)

=====================  ================================================  ==========================
quantity               distribution                                      source
=====================  ================================================  ==========================
r magnitude            p(m) ∝ 10^(0.6 m) on 13.5–17.0                    Euclidean counts, measured
                                                                         slope ≈ 0.6 (Yasuda et al.
                                                                         2001, AJ 122, 1104); GZ2
                                                                         limit r < 17 (Willett et
                                                                         al. 2013, MNRAS 435, 2835)
half-light size        μ50,r ~ N(21.3 − (B/T − 0.3), 0.5) mag/arcsec²,  surface-brightness
                       r50 = sqrt(10^(0.4(μ50 − m)) / 2π), clipped to    distribution of the SDSS
                       ``r50_px_range``                                  main sample (Strauss et
                                                                         al. 2002; Blanton et al.
                                                                         2005, AJ 129, 2562); size
                                                                         ∝ L^0.2–0.5 follows (Shen
                                                                         et al. 2003, MNRAS 343,
                                                                         978)
bulge fraction B/T     Beta(1.0, 2.0)                                    broad B/T of SDSS bulge +
                                                                         disk fits (Simard et al.
                                                                         2011, ApJS 196, 11)
bulge Sérsic n         U{1, 1.5, …, 4} (a grid: GalSim caches per n)     Gadotti 2009 (MNRAS 393,
                                                                         1531); spec §10
bulge size             R_e/r50 = (1 − B/T)·ρ/1.678 + (B/T)·u,            R_e/h of disk-galaxy
                       ρ = R_e/h ~ U(0.15, 0.5), u ~ U(0.6, 1)           bulges (Gadotti 2009);
                                                                         bulge-dominated systems
                                                                         approach R_e ≈ r50
bulge axis ratio       N(0.8, 0.12) clipped to [0.5, 1]; PA = disk PA    Padilla & Strauss 2008
                       + N(0, 10°)                                       (MNRAS 388, 1321)
disk                   hlr = r50; cos i ~ U(``disk_cos_i_min``, 1)       Kregel et al. 2002 (MNRAS
                       (random orientations; 0.1: i ≤ 84.3°; 0.5: the    334, 646) thickness; spec
                       spec §10 closed loop, i ≤ 60°); h_z/h ~ U(0.1,    §10
                       0.2); PA ~ U(0, π)
bar presence           disks (B/T < 0.6) seen at i ≤ 60° get a bar with  Masters et al. 2011
                       probability ``bar_fraction`` (0.3); with          (MNRAS 411, 2026): 29 % in
                       ``disk_cos_i_min`` ≥ 0.5 every disk is eligible,  GZ2; 30–60 % optical/NIR
                       so being barred does not depend on inclination    (Eskridge et al. 2000)
bar length             semi-major a = ``length_scaled`` × R90,disk,      Hoyle et al. 2011 (MNRAS
                       length_scaled drawn from the empirical GZ2        415, 3627); spec §6, §10
                       distribution (quantile table below) truncated at  (a < 0.8 R90)
                       0.8
bar shape              Ferrers Σ0(1 − m²)^(n+½), n = 2; axis ratio q_b   Hoyle et al. 2011
                       from Hoyle width/length clipped to                width/length; Gadotti
                       ``bar_q_range`` ([0.15, 0.5]; closed loop: drawn  2011; spec §10
                       truncated to [0.2, 0.45]); boxiness c ~ U(2, 3);
                       in-plane angle φ from the line of nodes ~ U(0,
                       π); bar/T ~ U(0.05, 0.25) (≤ half the disk light)
spiral arms            disks at i ≤ 75°, probability 0.6; arm number     Willett et al. 2013 (GZ2
                       m ∈ {1, 2, 3, 4} with p = (0.05, 0.6, 0.2,        spiral fraction); Hart et
                       0.15); pitch ~ U(10°, 30°); sharpness U(2, 6);    al. 2016 (MNRAS 461, 3663)
                       arms carry U(0.15, 0.4) of the disk light; start  arm numbers; spec §10
                       at the bar end or r ~ U(0.5, 1.5) h
knots                  disks, probability 0.5; U{10…50} point-like       unresolved H II regions;
                       knots following the disk profile; U(0.03, 0.15)   ``galsim.RandomKnots``
                       of the disk light
colours (g−r, r−i)     bulge N(0.80, 0.05), N(0.40, 0.04); bar N(0.70,   red sequence vs blue cloud
                       0.06), N(0.36, 0.04); disk N(0.50 + 0.3 B/T,      (Strateva et al. 2001, AJ
                       0.08), N(0.26, 0.05); arms = disk − U(0.05,       122, 1861; Blanton et al.
                       0.15), − U(0.02, 0.08); knots N(0.25, 0.10),      2003, ApJ 594, 186);
                       N(0.05, 0.06)                                     red bulges, bluer disks
                                                                         (Lackner & Gunn 2012)
seeing                 r FWHM lognormal, median 1.35", σ_ln 0.15,        SDSS DR7 median r seeing
                       clipped to 1.0–2.0" (closed loop: FWHM =          ≈ 1.4" (Abazajian et al.
                       ``psf_fwhm_per_r90`` × R90); g ×1.056,            2009); Kolmogorov λ^−1/5;
                       i ×0.962 (λ^−0.2); Moffat β = 3.5                 β range and GZ framing of
                       (``moffat_beta``) or Kolmogorov                   spec §10
sky                    g 21.9, r 20.9, i 20.2 mag/arcsec² + a common     SDSS dark-sky brightness
                       N(0, 0.2) mag offset                              (Stoughton et al. 2002)
photometry             zero points g 28.5, r 28.2, i 27.9 mag for 1 ADU  typical SDSS calibration
                       (53.9 s); gains 3.85, 4.72, 4.86 e⁻/ADU           (aa, kk, airmass 1.2);
                                                                         camcol-3 gains
=====================  ================================================  ==========================

Bar truth in the catalogue (pixels at the native scale): ``bar_length_px`` = in-plane 2a;
``bar_length_proj_px`` = 2a·sqrt(cos²φ + sin²φ·cos²i) (spec §10); ``bar_extent_px`` = the exact
diameter of the projected region where the Ferrers bar is > 0 (its major axis plus the width's
contribution); ``bar_pa_deg`` = sky position angle of the projected major axis (degrees
counter-clockwise from +x, the array's column axis); ``bar_resolved`` flags projected semi-major
axes ≥ 2 × the r-band FWHM (Erwin 2018, MNRAS 474, 5372). :func:`bar_image` re-renders the
pre-PSF bar of a catalogue row.

Display: :func:`to_display` is the Lupton et al. (2004, PASP 116, 133) asinh colour mapping of
astropy (``RGBImageMappingLupton``) with fixed, dataset-wide constants (black at 0, band weights,
``stretch``, ``Q``), so equal fluxes always map to equal colours.

References: GalSim (Rowe et al. 2015, A&C 10, 121); spec ``smoothgrad_barlength.md`` §10.
"""
from __future__ import annotations

import functools
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import galsim
import numpy as np
import pandas as pd

from galaxai._lupton import lupton_apply

__all__ = [
    "BANDS",
    "COMPONENTS",
    "DISPLAY_STRETCH",
    "DISPLAY_Q",
    "DISPLAY_WEIGHTS",
    "SimConfig",
    "GalaxySample",
    "simulate",
    "observe",
    "to_display",
    "bar_image",
    "find_cosmos_dir",
]

BANDS = ("g", "r", "i")
COMPONENTS = ("bulge", "disk", "bar", "arms", "knots")
_COSMOS_COMPONENTS = ("galaxy",)

# Display constants (ADU, sky-subtracted): the stretch is linear below ~0.1·stretch, the sky
# noise (σ ≈ 4–6 ADU) maps to ≈ 0.05 and intensities ≳ 95·stretch saturate.
DISPLAY_STRETCH = 100.0
DISPLAY_Q = 8.0
DISPLAY_WEIGHTS = (1.0, 1.1, 1.5)  # multipliers of i, r, g before mapping to R, G, B

# Exponential profile: half-light radius / scale length, 90 %-light radius / scale length.
_EXP_HLR_OVER_H = 1.6783469900166608
_EXP_R90_OVER_H = 3.8897201698674290
# Effective wavelengths (Å) of g, r, i for the λ^-1/5 seeing scaling.
_LAMBDA = np.array([4686.0, 6166.0, 7480.0])

# Hoyle et al. (2011) GZ2 bar lengths, column ``length_scaled``: percentiles 0, 2.5, …, 100
# of the 3150 rows of the shipped hoyle_barlengths.csv (embedded so the simulator needs no data
# file; tests check it against the CSV).
_HOYLE_LENGTH_SCALED_Q = np.array([
    0.0971, 0.2374, 0.2657, 0.2846, 0.3014, 0.3130, 0.3260, 0.3352, 0.3448, 0.3545, 0.3635,
    0.3724, 0.3841, 0.3938, 0.4027, 0.4110, 0.4178, 0.4276, 0.4343, 0.4432, 0.4522, 0.4619,
    0.4692, 0.4783, 0.4870, 0.4950, 0.5048, 0.5145, 0.5268, 0.5392, 0.5543, 0.5666, 0.5809,
    0.5953, 0.6135, 0.6335, 0.6607, 0.6839, 0.7314, 0.8007, 2.6581])
# Same catalogue, ``width_avg / length_avg``: percentiles 0, 5, …, 100.
_HOYLE_WIDTH_RATIO_Q = np.array([
    0.0531, 0.1576, 0.1708, 0.1810, 0.1915, 0.1991, 0.2073, 0.2140, 0.2207, 0.2281, 0.2359,
    0.2447, 0.2530, 0.2625, 0.2732, 0.2835, 0.2975, 0.3128, 0.3351, 0.3727, 0.6634])

# Colour distributions per component: (mean g−r, sd g−r, mean r−i, sd r−i).
_COLOURS = {
    "bulge": (0.80, 0.05, 0.40, 0.04),
    "bar": (0.70, 0.06, 0.36, 0.04),
    "disk": (0.50, 0.08, 0.26, 0.05),
    "knots": (0.25, 0.10, 0.05, 0.06),
}
_ARM_COUNTS = (1, 2, 3, 4)
_ARM_COUNT_P = (0.05, 0.60, 0.20, 0.15)
_SERSIC_N = (1.0, 1.5, 2.0, 2.5, 3.0, 3.5, 4.0)
# ACS/WFC F814W PSF FWHM (arcsec) incl. the 0.03" pixel, to keep the dilated HST PSF narrower
# than the SDSS PSF (GalSim can only re-convolve to a broader PSF).
_HST_PSF_FWHM = 0.12


# ----------------------------------------------------------------------------------- config
@dataclass(frozen=True)
class SimConfig:
    """Simulator settings (frozen; presets via :meth:`preset`; TOML via :mod:`galaxai.config`).

    Attributes
    ----------
    frame : int
        Frame size F in pixels (default 142: the blend code's 80-px cut at native scale).
    pixel_scale : float
        Arcsec per pixel (SDSS 0.396).
    psf : {"moffat", "kolmogorov"}
        PSF model; one PSF per band, shared by all components of a galaxy.
    seeing_median, seeing_sigma_ln, seeing_range : float, float, (float, float)
        r-band FWHM (arcsec): lognormal median and scatter, clipped to the range.
    psf_fwhm_per_r90 : (float, float) or None
        Galaxy Zoo framing of the PSF: the r-band FWHM is drawn log-uniformly in this range
        times the galaxy's R90 (that of an exponential disk of the drawn half-light radius),
        replacing ``seeing_median`` and ``seeing_range``. GZ2 cut-outs are scaled to the galaxy
        (R90 = 50 px at 424²) and the Hoyle bars' FWHM is 2.3–6 px at 424² (spec §10), i.e.
        (0.046, 0.12); at SDSS's fixed 0.396"/px the simulated galaxies are smaller and the
        seeing would be 0.2 R90 (median), blurring half of the bars below two FWHM. ``None``
        (default) keeps the SDSS seeing.
    moffat_beta : tuple of float
        Moffat β values drawn with equal probability. The default (3.5,) is the middle of the
        SDSS-like range 3–4.7 (spec §10) and fast: GalSim's Fourier transform of an untruncated
        Moffat is closed-form for β = 3.5 but a 20–150× slower Bessel-function evaluation for
        most other β, which would dominate the simulation time.
    mag_range : (float, float)
        r magnitude range; counts slope 0.6 (Euclidean).
    mu50_mean, mu50_sigma : float
        Mean (at B/T = 0.3) and scatter of the r-band mean surface brightness within r50.
    size_scale : float
        Multiplies every size before clipping (< 1 only to fit small test frames).
    r50_px_range : (float, float)
        Clip of the half-light radius in pixels (keeps galaxies inside the frame).
    bar_fraction, arms_fraction, knots_fraction : float
        Probabilities of a bar (eligible disks), arms and knots (disks).
    disk_cos_i_min : float
        Lower limit of cos i ~ U(``disk_cos_i_min``, 1), in (0, 1]. The default 0.1 (i ≤ 84.3°)
        keeps the deblender pools reproducible, but only disks at i ≤ 60° can be barred, so
        every galaxy beyond 60° is unbarred: an inclination shortcut for a bar classifier. 0.5
        (i ≤ 60°, spec §10, the closed-loop presets) makes every disk eligible.
    bar_q_range : (float, float)
        Range of the bar axis ratio q_b drawn from Hoyle's width/length, within (0, 1]; default
        (0.15, 0.5), spec §10 (closed loop) (0.2, 0.45).
    bar_q_rule : {"clip", "truncate"}
        How q_b is kept in ``bar_q_range``: ``"clip"`` (default, reproduces the pools) piles the
        draws outside the range onto its limits (for (0.2, 0.45): ≈ 26 % of bars at exactly 0.2
        and ≈ 4 % at 0.45); ``"truncate"`` (closed-loop presets) draws from Hoyle's distribution
        restricted to the range.
    bar_length_scaled_max : float
        Truncation of Hoyle's ``length_scaled`` (a < this × R90).
    oversample : int
        Sub-pixels per pixel for the NumPy-drawn bar and arms.
    pad_factor : float
        ``InterpolatedImage`` zero padding (the maps fall to zero at their edges).
    zeropoint, gain, sky_mag : (float, float, float)
        Per band g, r, i: magnitude of 1 ADU, e⁻/ADU, sky brightness (mag/arcsec²).
    sky_mag_sigma : float
        Scatter of the common sky offset (mag).
    cosmos_red_fraction : float
        Share of COSMOS galaxies given red-sequence colours (the rest blue-cloud colours).
    cosmos_max_dilation : float
        Upper limit of the COSMOS size dilation (also limited by the PSF, see module text).
    cosmos_max_noise_frac : float
        Flux of a COSMOS galaxy is lowered until its rescaled HST noise, after whitening, is at
        most this share of the sky variance.
    """

    frame: int = 142
    pixel_scale: float = 0.396
    psf: str = "moffat"
    seeing_median: float = 1.35
    seeing_sigma_ln: float = 0.15
    seeing_range: tuple[float, float] = (1.0, 2.0)
    moffat_beta: tuple[float, ...] = (3.5,)
    psf_fwhm_per_r90: tuple[float, float] | None = None
    mag_range: tuple[float, float] = (13.5, 17.0)
    mu50_mean: float = 21.3
    mu50_sigma: float = 0.5
    size_scale: float = 1.0
    r50_px_range: tuple[float, float] = (3.0, 20.0)
    bar_fraction: float = 0.3
    arms_fraction: float = 0.6
    knots_fraction: float = 0.5
    disk_cos_i_min: float = 0.1
    bar_q_range: tuple[float, float] = (0.15, 0.5)
    bar_q_rule: str = "clip"
    bar_length_scaled_max: float = 0.8
    oversample: int = 3
    pad_factor: float = 1.5
    zeropoint: tuple[float, float, float] = (28.5, 28.2, 27.9)
    gain: tuple[float, float, float] = (3.85, 4.72, 4.86)
    sky_mag: tuple[float, float, float] = (21.9, 20.9, 20.2)
    sky_mag_sigma: float = 0.2
    cosmos_red_fraction: float = 0.35
    cosmos_max_dilation: float = 12.0
    cosmos_max_noise_frac: float = 0.25

    def __post_init__(self) -> None:
        def bad(name: str, why: str) -> None:
            raise ValueError(f"SimConfig.{name}={getattr(self, name)!r}: {why}")

        if not isinstance(self.frame, (int, np.integer)) or isinstance(self.frame, bool) \
                or self.frame < 16:
            bad("frame", "must be an integer ≥ 16 (pixels)")
        if not isinstance(self.oversample, (int, np.integer)) or self.oversample < 1:
            bad("oversample", "must be an integer ≥ 1")
        if self.psf not in ("moffat", "kolmogorov"):
            bad("psf", 'must be "moffat" or "kolmogorov"')
        if len(self.moffat_beta) == 0 or not all(1.1 <= b <= 10 for b in self.moffat_beta):
            bad("moffat_beta", "must be a non-empty tuple of β values in [1.1, 10]")
        for name in ("pixel_scale", "seeing_median", "size_scale", "pad_factor",
                     "cosmos_max_dilation", "bar_length_scaled_max"):
            value = getattr(self, name)
            if not (np.isfinite(value) and value > 0):
                bad(name, "must be a finite number > 0")
        for name in ("seeing_sigma_ln", "mu50_sigma", "sky_mag_sigma"):
            if not (np.isfinite(getattr(self, name)) and getattr(self, name) >= 0):
                bad(name, "must be a finite number ≥ 0")
        for name in ("seeing_range", "mag_range", "r50_px_range", "bar_q_range"):
            lo_hi = getattr(self, name)
            if len(lo_hi) != 2 or not lo_hi[0] <= lo_hi[1] or not np.all(np.isfinite(lo_hi)):
                bad(name, "must be (low, high) with low ≤ high")
        if self.seeing_range[0] <= 0 or self.r50_px_range[0] <= 0:
            bad("seeing_range" if self.seeing_range[0] <= 0 else "r50_px_range",
                "lower limit must be > 0")
        if not 0 < self.bar_q_range[0] <= self.bar_q_range[1] <= 1:
            bad("bar_q_range", "must be (low, high) with 0 < low ≤ high ≤ 1")
        if self.psf_fwhm_per_r90 is not None and not (
                len(self.psf_fwhm_per_r90) == 2
                and 0 < self.psf_fwhm_per_r90[0] <= self.psf_fwhm_per_r90[1] < 1):
            bad("psf_fwhm_per_r90", "must be None or (low, high) with 0 < low ≤ high < 1, "
                "e.g. (0.046, 0.12) for the Galaxy Zoo framing")
        if self.bar_q_rule not in ("clip", "truncate"):
            bad("bar_q_rule", "must be 'clip' or 'truncate'")
        q_max = float(_HOYLE_WIDTH_RATIO_Q[-1])
        if self.bar_q_rule == "truncate" and self.bar_q_range[0] >= q_max:
            bad("bar_q_range", f"must start below {q_max:.3f}, the widest bar of Hoyle's "
                "width/length distribution, when bar_q_rule='truncate' (use 'clip' for wider bars)")
        if not 0 < self.disk_cos_i_min <= 1:
            bad("disk_cos_i_min", "must be in (0, 1] (0.1: i ≤ 84.3°; 0.5: i ≤ 60°)")
        for name in ("bar_fraction", "arms_fraction", "knots_fraction", "cosmos_red_fraction",
                     "cosmos_max_noise_frac"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                bad(name, "must be a probability in [0, 1]")
        for name in ("zeropoint", "gain", "sky_mag"):
            value = getattr(self, name)
            if len(value) != 3 or not np.all(np.isfinite(value)):
                bad(name, "must hold 3 finite values (g, r, i)")
        if min(self.gain) <= 0:
            bad("gain", "must be > 0 e⁻/ADU")

    @classmethod
    def preset(cls, name: str) -> "SimConfig":
        """``"paper"`` and ``"small"`` (142-px frames; ``small`` renders bar/arms at 2× instead
        of 3× oversampling) or ``"tiny"`` (48-px frames, sizes × 0.34, for tests)."""
        presets = {
            "paper": cls(),
            "small": cls(oversample=2),
            "tiny": cls(frame=48, size_scale=0.34, r50_px_range=(1.5, 7.0), oversample=2),
        }
        try:
            return presets[name]
        except KeyError:
            raise ValueError(f"unknown SimConfig preset {name!r}; choose one of "
                             f"{sorted(presets)}") from None


# ----------------------------------------------------------------------------------- output
@dataclass
class GalaxySample:
    """Simulated galaxies; see ``docs/interfaces.md``.

    Attributes
    ----------
    flux : ndarray, (N, 3, F, F) float32
        Noisy, sky-subtracted images in ADU, bands g, r, i.
    noiseless : ndarray, (N, 3, F, F) float32
        The sum of ``components``.
    components : dict of str to ndarray (N, 3, F, F) float32
        Noiseless, PSF-convolved truth per component: ``bulge, disk, bar, arms, knots``
        (zeros where absent) in parametric mode, ``galaxy`` in cosmos mode.
    sky_sigma : ndarray, (N, 3) float32
        Per-band sky noise sigma in ADU.
    display : ndarray, (N, F, F, 3) float32 in [0, 1]
        :func:`to_display` of ``flux``.
    catalogue : pandas.DataFrame
        One row per galaxy with every drawn parameter (``index``, ``seed``, ``mode``, …).
    """

    flux: np.ndarray
    noiseless: np.ndarray
    components: dict[str, np.ndarray]
    sky_sigma: np.ndarray
    display: np.ndarray
    catalogue: pd.DataFrame

    def __len__(self) -> int:
        return int(self.flux.shape[0])


# ---------------------------------------------------------------------------------- helpers
def _quantile_draw(rng: np.random.Generator, table: np.ndarray, upper: float = np.inf,
                   lower: float = -np.inf) -> float:
    """Inverse-CDF draw from an equally spaced percentile table, truncated to [lower, upper]."""
    probs = np.linspace(0.0, 1.0, table.size)
    u_max = float(np.interp(upper, table, probs)) if upper < table[-1] else 1.0
    u_min = float(np.interp(lower, table, probs)) if lower > table[0] else 0.0
    return float(np.interp(rng.uniform(u_min, u_max), probs, table))


def _colour(rng: np.random.Generator, name: str, shift: float = 0.0) -> tuple[float, float]:
    gr, sgr, ri, sri = _COLOURS[name]
    return float(rng.normal(gr + shift, sgr)), float(rng.normal(ri, sri))


def _band_fluxes(mag_r: float, gr: float, ri: float, zeropoint) -> np.ndarray:
    """ADU in g, r, i of a source with r magnitude ``mag_r`` and colours g−r, r−i."""
    mags = np.array([mag_r + gr, mag_r, mag_r - ri])
    return 10.0 ** (0.4 * (np.asarray(zeropoint, dtype=float) - mags))


def _common_draws(rng: np.random.Generator, cfg: SimConfig, bt_for_size: float) -> dict[str, Any]:
    """Magnitude, size, seeing and sky: the draws both modes share (in this order)."""
    lo, hi = cfg.mag_range
    u = rng.uniform()
    mag_r = math.log10(10 ** (0.6 * lo) + u * (10 ** (0.6 * hi) - 10 ** (0.6 * lo))) / 0.6
    mu50 = float(np.clip(rng.normal(cfg.mu50_mean - (bt_for_size - 0.3), cfg.mu50_sigma),
                         18.5, 24.5))
    r50_arcsec = math.sqrt(10 ** (0.4 * (mu50 - mag_r)) / (2 * math.pi))
    r50_px = float(np.clip(r50_arcsec / cfg.pixel_scale * cfg.size_scale, *cfg.r50_px_range))
    z = rng.normal(0.0, cfg.seeing_sigma_ln)
    if cfg.psf_fwhm_per_r90 is None:
        fwhm_r = float(np.clip(cfg.seeing_median * math.exp(z), *cfg.seeing_range))
    else:
        # Galaxy-Zoo framing (spec §10): the FWHM is a share of the galaxy's R90, log-uniform in
        # the range, taken from the same normal draw (its CDF) so the draw order is unchanged.
        lo, hi = cfg.psf_fwhm_per_r90
        u = 0.5 * math.erfc(-z / (cfg.seeing_sigma_ln * math.sqrt(2))) \
            if cfg.seeing_sigma_ln > 0 else 0.5
        r90_px = r50_px * _EXP_R90_OVER_H / _EXP_HLR_OVER_H
        fwhm_r = lo * (hi / lo) ** u * r90_px * cfg.pixel_scale
    beta = float(rng.choice(cfg.moffat_beta)) if cfg.psf == "moffat" else float("nan")
    sky_offset = float(rng.normal(0.0, cfg.sky_mag_sigma))
    fwhm = fwhm_r * (_LAMBDA / _LAMBDA[1]) ** -0.2
    sky_mag = np.asarray(cfg.sky_mag) + sky_offset
    # Sky ADU per pixel and its Poisson sigma in ADU.
    sky = 10 ** (0.4 * (np.asarray(cfg.zeropoint) - sky_mag)) * cfg.pixel_scale ** 2
    sky_sigma = np.sqrt(sky / np.asarray(cfg.gain))
    out: dict[str, Any] = {"mag_r_drawn": mag_r, "mu50_r": mu50, "r50_px": r50_px,
                           "r50_arcsec": r50_px * cfg.pixel_scale, "psf_model": cfg.psf,
                           "psf_beta": beta}
    for k, b in enumerate(BANDS):
        out[f"psf_fwhm_{b}_arcsec"] = float(fwhm[k])
    out["psf_fwhm_r_px"] = fwhm_r / cfg.pixel_scale
    for k, b in enumerate(BANDS):
        out[f"sky_{b}"] = float(sky[k])
        out[f"sky_sigma_{b}"] = float(sky_sigma[k])
    return out


def _psfs(cfg: SimConfig, p: Mapping[str, Any]) -> list[galsim.GSObject]:
    """One PSF per band, reused by every component of the galaxy."""
    if cfg.psf == "moffat":
        return [galsim.Moffat(beta=p["psf_beta"], fwhm=p[f"psf_fwhm_{b}_arcsec"]) for b in BANDS]
    return [galsim.Kolmogorov(fwhm=p[f"psf_fwhm_{b}_arcsec"]) for b in BANDS]


def _galaxy_rngs(seed: int, index: int) -> tuple[np.random.Generator, np.random.Generator, int]:
    """Parameter stream, noise stream and a GalSim seed for galaxy ``index`` of ``seed``."""
    ss = np.random.SeedSequence(seed, spawn_key=(index,))
    s_par, s_noise, s_gs = ss.spawn(3)
    gs_seed = int(s_gs.generate_state(1, dtype=np.uint32)[0]) % (2**31 - 2) + 1
    return np.random.default_rng(s_par), np.random.default_rng(s_noise), gs_seed


def _sky_to_disk(x: np.ndarray, y: np.ndarray, cos_i: float, pa: float):
    """Sky pixel offsets -> disk-plane coordinates (x along the line of nodes, thin disk)."""
    c, s = math.cos(pa), math.sin(pa)
    return x * c + y * s, (-x * s + y * c) / cos_i


def _grid(size: int, oversample: int) -> tuple[np.ndarray, np.ndarray]:
    """Sub-pixel centres (native-pixel units) of a ``size``² box centred on its true centre."""
    m = size * oversample
    t = (np.arange(m) - (m - 1) / 2.0) / oversample
    return np.meshgrid(t, t)  # x along columns, y along rows (GalSim's convention)


def _ferrers(x: np.ndarray, y: np.ndarray, p: Mapping[str, Any]) -> np.ndarray:
    """Ferrers bar Σ = (1 − m²)^(n+½), m = (|u/a|^c + |v/(q a)|^c)^(1/c); 0 for m ≥ 1.

    Hand-written because GalSim has no Ferrers profile. ``u, v`` are bar-frame coordinates in
    the disk plane (the bar at angle φ from the line of nodes), deprojected from sky offsets.
    """
    xd, yd = _sky_to_disk(x, y, p["disk_cos_i"], math.radians(p["disk_pa_deg"]))
    phi = math.radians(p["bar_phi_deg"])
    u = xd * math.cos(phi) + yd * math.sin(phi)
    v = -xd * math.sin(phi) + yd * math.cos(phi)
    a, q, c = p["bar_a_px"], p["bar_q"], p["bar_c"]
    m = (np.abs(u / a) ** c + np.abs(v / (q * a)) ** c) ** (1.0 / c)
    return np.where(m < 1.0, np.clip(1.0 - m * m, 0.0, None) ** (p["bar_n"] + 0.5), 0.0)


def _bar_geometry(a: float, q: float, c: float, phi: float, cos_i: float, pa: float):
    """Projected length (spec §10), exact projected diameter and sky PA of the Ferrers bar."""
    proj = 2 * a * math.sqrt(math.cos(phi) ** 2 + math.sin(phi) ** 2 * cos_i ** 2)
    # The region m < 1 is convex and point-symmetric, and so is its linear projection: its
    # diameter is twice the largest distance of a boundary point from the centre.
    t = np.linspace(0.0, 2 * math.pi, 4096, endpoint=False)
    u = a * np.sign(np.cos(t)) * np.abs(np.cos(t)) ** (2.0 / c)
    v = q * a * np.sign(np.sin(t)) * np.abs(np.sin(t)) ** (2.0 / c)
    xd = u * math.cos(phi) - v * math.sin(phi)
    yd = (u * math.sin(phi) + v * math.cos(phi)) * cos_i
    extent = 2 * float(np.sqrt(xd * xd + yd * yd).max())
    bar_pa = math.degrees(pa + math.atan2(math.sin(phi) * cos_i, math.cos(phi))) % 180.0
    return proj, extent, bar_pa


def _arms(x: np.ndarray, y: np.ndarray, p: Mapping[str, Any]) -> np.ndarray:
    """m-armed logarithmic spiral: exponential disk × ((1 + cos ψ)/2)^s, inner taper at r_in.

    Hand-written because GalSim has no spiral profile. ψ = m(θ − θ0 − χ ln(r/r_in)/tan p),
    the log spiral r = r_in exp(tan p (θ − θ0)) of pitch p and chirality χ = ±1.
    """
    xd, yd = _sky_to_disk(x, y, p["disk_cos_i"], math.radians(p["disk_pa_deg"]))
    r = np.hypot(xd, yd)
    theta = np.arctan2(yd, xd)
    r_in, h = p["arms_r_in_px"], p["disk_h_px"]
    wind = np.log(np.maximum(r, 1e-3 * r_in) / r_in) / math.tan(math.radians(p["arms_pitch_deg"]))
    psi = p["arms_count"] * (theta - math.radians(p["arms_phase_deg"]) - p["arms_chirality"] * wind)
    envelope = np.exp(-r / h) * (1.0 - np.exp(-((r / r_in) ** 3)))
    return envelope * (0.5 * (1.0 + np.cos(psi))) ** p["arms_sharpness"]


def _interpolated(sb: np.ndarray, cfg: SimConfig, oversample: int) -> galsim.InterpolatedImage:
    """Unit-flux GalSim profile of a NumPy surface-brightness map sampled ``oversample``× finer
    than the pixels."""
    image = galsim.Image(np.ascontiguousarray(sb), scale=cfg.pixel_scale / oversample)
    return galsim.InterpolatedImage(image, flux=1.0, pad_factor=cfg.pad_factor)


def _bar_oversample(p: Mapping[str, Any], cfg: SimConfig) -> int:
    """Sampling of the bar map: ``cfg.oversample``, finer (≤ 16) for bars so thin that fewer
    than ~3 samples would span their projected width (≥ 2 q a cos i)."""
    width = p["bar_q"] * p["bar_a_px"] * p["disk_cos_i"]
    return int(max(cfg.oversample, min(16, math.ceil(1.5 / width))))


# ------------------------------------------------------------------------- parametric mode
def _draw_parametric(rng: np.random.Generator, cfg: SimConfig) -> dict[str, Any]:
    """Every random parameter of one parametric galaxy (fixed draw order)."""
    bt = float(rng.beta(1.0, 2.0))
    p: dict[str, Any] = {"bt": bt}
    p.update(_common_draws(rng, cfg, bt))
    r50 = p["r50_px"]
    h = r50 / _EXP_HLR_OVER_H
    cos_i = float(rng.uniform(cfg.disk_cos_i_min, 1.0))
    disk_pa = float(rng.uniform(0.0, math.pi))
    p.update(disk_r50_px=r50, disk_h_px=h, disk_r90_px=_EXP_R90_OVER_H * h, disk_cos_i=cos_i,
             disk_incl_deg=math.degrees(math.acos(cos_i)), disk_pa_deg=math.degrees(disk_pa),
             disk_hz_over_h=float(rng.uniform(0.1, 0.2)))
    rho, u = rng.uniform(0.15, 0.5), rng.uniform(0.6, 1.0)
    p.update(bulge_n=float(rng.choice(_SERSIC_N)),
             bulge_r50_px=float(r50 * ((1 - bt) * rho / _EXP_HLR_OVER_H + bt * u)),
             bulge_q=float(np.clip(rng.normal(0.8, 0.12), 0.5, 1.0)),
             bulge_pa_deg=float((p["disk_pa_deg"] + rng.normal(0.0, 10.0)) % 180.0))

    is_disk = bt < 0.6
    has_bar = bool(is_disk and cos_i >= 0.5 and rng.uniform() < cfg.bar_fraction)
    ls = _quantile_draw(rng, _HOYLE_LENGTH_SCALED_Q, cfg.bar_length_scaled_max) if has_bar else 0.0
    # A bar shorter than one pixel (semi-major axis) is no bar at this scale: dropped.
    has_bar = has_bar and ls * _EXP_R90_OVER_H * h >= 1.0
    has_arms = bool(is_disk and cos_i >= math.cos(math.radians(75)) and
                    rng.uniform() < cfg.arms_fraction)
    has_knots = bool(is_disk and rng.uniform() < cfg.knots_fraction)
    p.update(has_bar=has_bar, has_arms=has_arms, has_knots=has_knots)

    nan = float("nan")
    bar = dict(bar_length_scaled=nan, bar_a_px=nan, bar_length_px=nan, bar_length_proj_px=nan,
               bar_extent_px=nan, bar_pa_deg=nan, bar_phi_deg=nan, bar_q=nan, bar_c=nan,
               bar_n=nan, bar_resolved=False)
    frac_bar = 0.0
    if has_bar:
        a = ls * p["disk_r90_px"]
        if cfg.bar_q_rule == "truncate":
            q = _quantile_draw(rng, _HOYLE_WIDTH_RATIO_Q, cfg.bar_q_range[1], cfg.bar_q_range[0])
        else:
            q = float(np.clip(_quantile_draw(rng, _HOYLE_WIDTH_RATIO_Q), *cfg.bar_q_range))
        c = float(rng.uniform(2.0, 3.0))
        phi = float(rng.uniform(0.0, math.pi))
        frac_bar = float(min(rng.uniform(0.05, 0.25), 0.5 * (1 - bt)))
        proj, extent, bar_pa = _bar_geometry(a, q, c, phi, cos_i, disk_pa)
        bar.update(bar_length_scaled=ls, bar_a_px=a, bar_length_px=2 * a, bar_length_proj_px=proj,
                   bar_extent_px=extent, bar_pa_deg=bar_pa, bar_phi_deg=math.degrees(phi),
                   bar_q=q, bar_c=c, bar_n=2.0,
                   bar_resolved=bool(proj / 2 >= 2 * p["psf_fwhm_r_px"]))
    p.update(bar)

    disk_total = 1.0 - bt - frac_bar
    arms = dict(arms_count=0, arms_pitch_deg=nan, arms_sharpness=nan, arms_r_in_px=nan,
                arms_chirality=0, arms_phase_deg=nan)
    frac_arms = 0.0
    if has_arms:
        arms.update(arms_count=int(rng.choice(_ARM_COUNTS, p=_ARM_COUNT_P)),
                    arms_pitch_deg=float(rng.uniform(10.0, 30.0)),
                    arms_sharpness=float(rng.uniform(2.0, 6.0)),
                    arms_chirality=int(rng.choice((-1, 1))),
                    arms_phase_deg=float(rng.uniform(0.0, 360.0)))
        start = float(rng.uniform(0.5, 1.5)) * h
        arms["arms_r_in_px"] = bar["bar_a_px"] if has_bar else start
        frac_arms = disk_total * float(rng.uniform(0.15, 0.4))
    p.update(arms)
    frac_knots = 0.0
    p["knots_count"] = 0
    if has_knots:
        p["knots_count"] = int(rng.integers(10, 51))
        frac_knots = disk_total * float(rng.uniform(0.03, 0.15))

    fractions = {"bulge": bt, "disk": disk_total - frac_arms - frac_knots, "bar": frac_bar,
                 "arms": frac_arms, "knots": frac_knots}
    colours = {"bulge": _colour(rng, "bulge"), "bar": _colour(rng, "bar"),
               "disk": _colour(rng, "disk", shift=0.3 * bt)}
    colours["arms"] = (colours["disk"][0] - float(rng.uniform(0.05, 0.15)),
                       colours["disk"][1] - float(rng.uniform(0.02, 0.08)))
    colours["knots"] = _colour(rng, "knots")
    total = np.zeros(3)
    for name in COMPONENTS:
        f = fractions[name]
        gr, ri = colours[name]
        p[f"frac_{name}"] = f
        p[f"gr_{name}"], p[f"ri_{name}"] = gr, ri
        flux = _band_fluxes(p["mag_r_drawn"] - 2.5 * math.log10(f), gr, ri, cfg.zeropoint) \
            if f > 0 else np.zeros(3)
        for k, b in enumerate(BANDS):
            p[f"flux_{b}_{name}"] = float(flux[k])
        total += flux
    for k, b in enumerate(BANDS):
        p[f"mag_{b}"] = float(cfg.zeropoint[k] - 2.5 * math.log10(total[k]))
    return p


def _profiles_parametric(p: Mapping[str, Any], cfg: SimConfig, gs_seed: int):
    """Unit-flux pre-PSF GalSim profile of every present component."""
    ps = cfg.pixel_scale
    disk_pa = p["disk_pa_deg"] * galsim.degrees
    profiles = {
        "bulge": galsim.Sersic(p["bulge_n"], half_light_radius=p["bulge_r50_px"] * ps)
        .shear(q=p["bulge_q"], beta=p["bulge_pa_deg"] * galsim.degrees),
        "disk": galsim.InclinedExponential(
            math.acos(p["disk_cos_i"]) * galsim.radians, half_light_radius=p["disk_r50_px"] * ps,
            scale_h_over_r=p["disk_hz_over_h"]).rotate(disk_pa),
    }
    if p["has_bar"]:
        os_bar = _bar_oversample(p, cfg)
        profiles["bar"] = _interpolated(bar_image(p, 2 * math.ceil(p["bar_a_px"]) + 4,
                                                  oversample=os_bar), cfg, os_bar)
    if p["has_arms"]:
        x, y = _grid(cfg.frame, cfg.oversample)
        profiles["arms"] = _interpolated(_arms(x, y, p), cfg, cfg.oversample)
    if p["has_knots"]:
        cos_i = p["disk_cos_i"]
        knots = galsim.RandomKnots(
            p["knots_count"], rng=galsim.BaseDeviate(gs_seed),
            profile=galsim.Exponential(half_light_radius=p["disk_r50_px"] * ps, flux=1.0))
        # A face-on disk seen at inclination i keeps its major axis and shrinks its minor axis
        # by cos i: an area-preserving shear followed by a flux-preserving dilation.
        profiles["knots"] = knots.shear(q=cos_i, beta=disk_pa).dilate(math.sqrt(cos_i))
    return profiles


def _render(profiles: Mapping[str, galsim.GSObject], fluxes: Mapping[str, np.ndarray],
            psfs: list[galsim.GSObject], cfg: SimConfig) -> dict[str, np.ndarray]:
    """Draw each component in each band, convolved with that band's PSF (float64)."""
    out = {}
    for name, prof in profiles.items():
        img = np.zeros((3, cfg.frame, cfg.frame))
        for k, psf in enumerate(psfs):
            if fluxes[name][k] > 0:
                target = galsim.ImageD(cfg.frame, cfg.frame, scale=cfg.pixel_scale)
                galsim.Convolve(prof.withFlux(float(fluxes[name][k])), psf).drawImage(target)
                img[k] = target.array
        out[name] = img
    return out


def _simulate_parametric(cfg: SimConfig, seed: int, index: int):
    rng, noise_rng, gs_seed = _galaxy_rngs(seed, index)
    p = _draw_parametric(rng, cfg)
    profiles = _profiles_parametric(p, cfg, gs_seed)
    fluxes = {name: np.array([p[f"flux_{b}_{name}"] for b in BANDS]) for name in profiles}
    drawn = _render(profiles, fluxes, _psfs(cfg, p), cfg)
    comps = {name: drawn.get(name, np.zeros((3, cfg.frame, cfg.frame))) for name in COMPONENTS}
    sky_sigma = np.array([p[f"sky_sigma_{b}"] for b in BANDS])
    noiseless = sum(comps.values())
    flux = observe(noiseless.astype(np.float32), sky_sigma, noise_rng, gain=cfg.gain)
    return p, comps, noiseless, flux, sky_sigma


# ----------------------------------------------------------------------------- cosmos mode
def find_cosmos_dir(cosmos_dir: str | os.PathLike | None = None) -> Path:
    """Folder of the GalSim COSMOS sample: ``cosmos_dir``, else ``$GALAXAI_COSMOS_DIR``, else the
    copy shipped inside the package (:func:`galaxai._data.cosmos_dir`).

    Raises
    ------
    FileNotFoundError
        Naming every place searched and how to point galaxai at the data.
    """
    from galaxai import _data

    if cosmos_dir is not None:
        candidates = [Path(cosmos_dir)]
    elif os.environ.get("GALAXAI_COSMOS_DIR"):
        candidates = [Path(os.environ["GALAXAI_COSMOS_DIR"])]
    else:
        candidates = [_data.cosmos_dir()]
    for path in candidates:
        if path.is_dir() and _cosmos_catalogue_file(path) is not None:
            return path.resolve()
    tried = ", ".join(str(c) for c in candidates)
    raise FileNotFoundError(
        f"COSMOS galaxy sample not found (looked in: {tried}); it must hold "
        "real_galaxy_catalog_*.fits with its image, PSF and noise files. Pass cosmos_dir=<folder> "
        "or set the environment variable GALAXAI_COSMOS_DIR=<folder> (unset, galaxai uses the "
        "copy installed with the package).")


def _cosmos_catalogue_file(path: Path) -> Path | None:
    files = sorted(f for f in path.glob("real_galaxy_catalog_*.fits")
                   if not f.name.endswith("_fits.fits"))
    return files[0] if files else None


@functools.lru_cache(maxsize=4)
def _cosmos_catalogue(path: Path) -> tuple[galsim.RealGalaxyCatalog, np.ndarray, np.ndarray]:
    """The RealGalaxyCatalog, its IDENTs and half-light radii (arcsec) from the ``_fits`` file."""
    from astropy.io import fits

    cat_file = _cosmos_catalogue_file(path)
    try:
        cat = galsim.RealGalaxyCatalog(cat_file.name, dir=str(path))
        cat.preload()
        fits_file = cat_file.with_name(cat_file.stem + "_fits.fits")
        with fits.open(fits_file) as hdul:
            # SExtractor FLUX_RADIUS (50 % light) in ACS pixels.
            hlr = np.asarray(hdul[1].data["flux_radius"], dtype=float) * cat.pixel_scale
    except (OSError, KeyError, ValueError) as exc:
        raise OSError(f"cannot read the COSMOS sample in {path} ({exc}); it needs "
                      f"{cat_file.name} and {cat_file.stem}_fits.fits plus the image, PSF and "
                      "noise files they name (e.g. the GalSim/BTK example sample)") from exc
    if len(hlr) != cat.nobjects:
        raise ValueError(f"{path}: {fits_file.name} has {len(hlr)} rows but the catalogue has "
                         f"{cat.nobjects}; use the matching pair of files")
    return cat, np.asarray(cat.ident), hlr


def _simulate_cosmos(cfg: SimConfig, seed: int, index: int, cosmos: Path):
    cat, idents, hlr = _cosmos_catalogue(cosmos)
    rng, noise_rng, gs_seed = _galaxy_rngs(seed, index)
    k = int(rng.integers(cat.nobjects))
    p: dict[str, Any] = {"cosmos_index": k, "cosmos_ident": str(idents[k]),
                         "cosmos_mag_f814w": float(cat.mag[k]), "hst_hlr_arcsec": float(hlr[k])}
    p.update(_common_draws(rng, cfg, 0.3))
    red = bool(rng.uniform() < cfg.cosmos_red_fraction)
    gr, ri = _colour(rng, "bulge" if red else "disk")
    rotation = float(rng.uniform(0.0, 360.0))
    # Dilate toward the drawn size, but keep the dilated HST PSF well inside the SDSS PSF of
    # the sharpest band (GalSim can only convolve the deconvolved galaxy to a broader PSF).
    max_dil = min(cfg.cosmos_max_dilation, p["psf_fwhm_i_arcsec"] / (1.5 * _HST_PSF_FWHM))
    dilation = float(np.clip(p["r50_arcsec"] / max(hlr[k], 1e-3), 1.0, max_dil))
    p.update(red=red, gr_galaxy=gr, ri_galaxy=ri, rotation_deg=rotation, dilation=dilation,
             r50_target_px=p["r50_px"], r50_px=hlr[k] * dilation / cfg.pixel_scale,
             r50_arcsec=hlr[k] * dilation)
    wanted = _band_fluxes(p["mag_r_drawn"], gr, ri, cfg.zeropoint)

    real = galsim.RealGalaxy(cat, index=k)
    stamp = real.gal_image.array
    # HST noise of this stamp (ACS pixels, stamp units): robust sigma of the 3-pixel border.
    border = np.concatenate([stamp[:3].ravel(), stamp[-3:].ravel(), stamp[3:-3, :3].ravel(),
                             stamp[3:-3, -3:].ravel()])
    hst_sigma = float(1.4826 * np.median(np.abs(border - np.median(border))))
    # The same stamp of pure white noise, pushed through the identical deconvolution, rotation,
    # dilation, flux scaling and PSF: its variance is the HST noise the re-observed galaxy
    # carries. (GalSim's ``RealGalaxy.noise`` model, meant for ``Image.whitenNoise``, gives a
    # variance ~10^2-10^4 times smaller than this for the example sample, so it is not used.)
    white = np.random.default_rng(gs_seed).normal(0.0, hst_sigma, stamp.shape)
    noise_only = galsim.Convolve(
        galsim.InterpolatedImage(galsim.Image(white, scale=cat.pixel_scale[k])),
        galsim.Deconvolve(real.original_psf))
    transform = dict(theta=rotation * galsim.degrees)
    gal = real.rotate(**transform).dilate(dilation)
    noise_only = noise_only.rotate(**transform).dilate(dilation)
    # Pixels covered by the dilated stamp (where the HST noise lives).
    half = 0.5 * max(stamp.shape) * cat.pixel_scale[k] * dilation / cfg.pixel_scale
    t = np.abs(np.arange(cfg.frame) - (cfg.frame - 1) / 2.0) <= half
    footprint = t[:, None] & t[None, :]

    sky_sigma = np.array([p[f"sky_sigma_{b}"] for b in BANDS])
    image = np.zeros((3, cfg.frame, cfg.frame))
    var = np.zeros(3)
    for j, psf in enumerate(_psfs(cfg, p)):
        target = galsim.ImageD(cfg.frame, cfg.frame, scale=cfg.pixel_scale)
        galsim.Convolve(gal.withFlux(float(wanted[j])), psf).drawImage(target)
        image[j] = target.array
        ratio = float(wanted[j]) / real.flux
        galsim.Convolve(noise_only * ratio, psf).drawImage(target)
        var[j] = float(np.mean(target.array[footprint] ** 2))
    # Noise and flux scale together, so the flux is lowered until the HST noise is at most
    # ``cosmos_max_noise_frac`` of the sky variance (the galaxy is then fainter than drawn and
    # the catalogue says so). What remains stays in the truth image, under the sky noise.
    scale = float(min(1.0, np.sqrt(cfg.cosmos_max_noise_frac * (sky_sigma**2 / var).min())))
    image *= scale
    var *= scale**2
    p["hst_noise_sigma"] = hst_sigma
    for j, b in enumerate(BANDS):
        p[f"flux_{b}_galaxy"] = float(wanted[j] * scale)
        p[f"mag_{b}"] = float(cfg.zeropoint[j] - 2.5 * math.log10(wanted[j] * scale))
        p[f"hst_noise_var_{b}"] = float(var[j])
    p["flux_scale_cap"] = scale
    flux = observe(image.astype(np.float32), sky_sigma, noise_rng, gain=cfg.gain)
    return p, {"galaxy": image}, image, flux, sky_sigma


# ------------------------------------------------------------------------------- public API
def _check_int(name: str, value: Any, minimum: int = 0) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name} must be an integer ≥ {minimum}, got {value!r}")
    return int(value)


def simulate(n: int, seed: int = 0, config: SimConfig | None = None, *, mode: str = "parametric",
             cosmos_dir: str | os.PathLike | None = None, progress: bool = False,
             start: int = 0) -> GalaxySample:
    """Simulate ``n`` galaxies, indices ``start … start + n − 1`` of the stream ``seed``.

    Parameters
    ----------
    n : int
        Number of galaxies (≥ 0).
    seed : int
        Dataset seed (≥ 0). Galaxy ``i`` depends only on ``(seed, i, config, mode)``.
    config : SimConfig, optional
        Defaults to ``SimConfig.preset("paper")``.
    mode : {"parametric", "cosmos"}
        Parametric profiles with component truth, or re-observed real HST galaxies.
    cosmos_dir : path-like, optional
        COSMOS sample folder (mode ``"cosmos"``); see :func:`find_cosmos_dir`.
    progress : bool
        Show a tqdm progress bar.
    start : int
        Index of the first galaxy, so that chunks ``simulate(k, s, start=j)`` concatenate to
        ``simulate(n, s)`` exactly (resumable stores).

    Returns
    -------
    GalaxySample
    """
    n = _check_int("n", n)
    seed = _check_int("seed", seed)
    start = _check_int("start", start)
    if config is None:
        config = SimConfig.preset("paper")
    if not isinstance(config, SimConfig):
        raise TypeError(f"config must be a SimConfig (e.g. SimConfig.preset('small')), "
                        f"got {type(config).__name__}")
    if mode == "parametric":
        names = COMPONENTS
        cosmos = None
    elif mode == "cosmos":
        names = _COSMOS_COMPONENTS
        cosmos = find_cosmos_dir(cosmos_dir)
    else:
        raise ValueError(f'mode must be "parametric" or "cosmos", got {mode!r}')

    f = config.frame
    flux = np.zeros((n, 3, f, f), np.float32)
    noiseless = np.zeros((n, 3, f, f), np.float32)
    components = {name: np.zeros((n, 3, f, f), np.float32) for name in names}
    sky_sigma = np.zeros((n, 3), np.float32)
    rows = []
    indices = range(start, start + n)
    if progress:
        from tqdm.auto import tqdm

        indices = tqdm(indices, desc=f"simulate ({mode})", unit="galaxy")
    for j, index in enumerate(indices):
        if cosmos is None:
            p, comps, clean, noisy, sigma = _simulate_parametric(config, seed, index)
        else:
            p, comps, clean, noisy, sigma = _simulate_cosmos(config, seed, index, cosmos)
        for name in names:
            components[name][j] = comps[name]
        noiseless[j] = clean
        flux[j] = noisy
        sky_sigma[j] = sigma
        rows.append({"index": index, "seed": seed, "mode": mode, **p})
    catalogue = pd.DataFrame(rows)
    if n:
        catalogue["r50_measured_px"] = _half_light_radius(noiseless[:, 1])
    return GalaxySample(flux=flux, noiseless=noiseless, components=components,
                        sky_sigma=sky_sigma, display=to_display(flux), catalogue=catalogue)


def _half_light_radius(images: np.ndarray) -> np.ndarray:
    """Circular half-light radius (pixels) about the frame centre of (N, F, F) images."""
    f = images.shape[-1]
    t = np.arange(f) - (f - 1) / 2.0
    r = np.hypot(*np.meshgrid(t, t)).ravel()
    order = np.argsort(r, kind="stable")
    cum = np.cumsum(images.reshape(len(images), -1)[:, order], axis=1)
    half = 0.5 * cum[:, -1:]
    return r[order][np.argmax(cum >= half, axis=1)]


def observe(noiseless, sky_sigma, rng, *, gain=(3.85, 4.72, 4.86)) -> np.ndarray:
    """Add sky and Poisson noise once and subtract the sky: a sky-subtracted noisy image.

    The sky level per band is ``sky = gain · sky_sigma²`` (ADU), so that the noise of an empty
    pixel is ``sky_sigma``; each pixel receives ``Poisson(gain·(max(s, 0) + sky))/gain − sky``,
    i.e. variance ``sky_sigma² + s/gain`` for signal ``s``.

    Parameters
    ----------
    noiseless : array_like, (3, H, W) or (N, 3, H, W)
        Noiseless flux in ADU (bands g, r, i).
    sky_sigma : array_like, (3,) or (N, 3)
        Per-band sky noise sigma in ADU (≥ 0).
    rng : numpy.random.Generator or int
        Random generator (or a seed for one).
    gain : float or sequence of 3 floats
        e⁻ per ADU per band (SDSS defaults).

    Returns
    -------
    ndarray, same shape, float32
    """
    x = np.asarray(noiseless, dtype=np.float64)
    if x.ndim not in (3, 4) or x.shape[-3] != 3:
        raise ValueError(f"noiseless must have shape (3, H, W) or (N, 3, H, W), got {x.shape}")
    if not np.isfinite(x).all():
        raise ValueError("noiseless contains NaN or inf")
    sigma = np.asarray(sky_sigma, dtype=np.float64)
    lead = x.shape[:-3]
    if sigma.shape not in ((3,), lead + (3,)):
        raise ValueError(f"sky_sigma must have shape (3,) or {lead + (3,)}, got {sigma.shape}")
    if not (np.isfinite(sigma).all() and (sigma >= 0).all()):
        raise ValueError("sky_sigma must be finite and ≥ 0")
    g = np.broadcast_to(np.asarray(gain, dtype=np.float64), (3,))
    if not (g > 0).all():
        raise ValueError(f"gain must be > 0, got {gain!r}")
    rng = np.random.default_rng(rng)
    sky = (g * sigma**2)[..., None, None]
    gg = g[:, None, None]
    counts = rng.poisson(gg * (np.clip(x, 0.0, None) + sky))
    return (counts / gg - sky).astype(np.float32)


def to_display(flux, *, stretch: float = DISPLAY_STRETCH, Q: float = DISPLAY_Q,
               weights=DISPLAY_WEIGHTS) -> np.ndarray:
    """Lupton et al. (2004) asinh RGB of g, r, i flux with fixed constants (i→R, r→G, g→B).

    The same mapping as :func:`galaxai.viz.render.lupton_rgb` (both call
    :func:`galaxai._lupton.lupton_apply`) with the dataset's constants as defaults: stretch 100
    (not astropy's 0.5) suits sky-subtracted ADU, and the colour weights balance the bands.
    Changing them would change every store, pool and trained model, so they stay fixed.

    Parameters
    ----------
    flux : array_like, (N, 3, H, W) or (3, H, W)
        Sky-subtracted flux in ADU, bands g, r, i.
    stretch, Q : float
        astropy ``LuptonAsinhStretch`` parameters; keep the defaults for a dataset-wide mapping.
    weights : sequence of 3 floats
        Multipliers of i, r, g (colour balance).

    Returns
    -------
    ndarray, (N, H, W, 3) or (H, W, 3), float32 in [0, 1]
    """
    x = np.asarray(flux, dtype=np.float64)
    if x.ndim not in (3, 4) or x.shape[-3] != 3:
        raise ValueError(f"flux must have shape (N, 3, H, W) or (3, H, W), got {x.shape}")
    if not np.isfinite(x).all():
        raise ValueError("flux contains NaN or inf; cannot map it to display values")
    if x.size == 0:
        return np.zeros(x.shape[:-3] + x.shape[-2:] + (3,), np.float32)
    w = np.asarray(weights, dtype=np.float64)
    return lupton_apply(w[0] * x[..., 2, :, :], w[1] * x[..., 1, :, :], w[2] * x[..., 0, :, :],
                        stretch=stretch, Q=Q, minimum=0)


def bar_image(row: Mapping[str, Any], frame: int, *, oversample: int = 1) -> np.ndarray:
    """The pre-PSF Ferrers bar of a catalogue row, peak 1, on a ``frame``² pixel grid.

    Parameters
    ----------
    row : mapping
        A parametric catalogue row (``row = sample.catalogue.iloc[i]``) with ``has_bar``.
    frame : int
        Grid size in native pixels, centred like the simulated frame.
    oversample : int
        Samples per native pixel along each axis.

    Returns
    -------
    ndarray, (frame·oversample, frame·oversample) float64
        Surface brightness sampled at sub-pixel centres; exactly 0 outside the bar.
    """
    if not bool(row.get("has_bar", False)):
        raise ValueError("this catalogue row has no bar (has_bar is False)")
    frame = _check_int("frame", frame, 1)
    oversample = _check_int("oversample", oversample, 1)
    x, y = _grid(frame, oversample)
    return _ferrers(x, y, row)
