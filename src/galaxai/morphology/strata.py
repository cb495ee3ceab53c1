"""Measured vs true bar length within strata of the galaxies' properties (spec §10).

A single ρ over all test galaxies hides where a bar-length measurement works. Algorithm 1 tests
the absolute Pearson correlation of the row and column indices of the thresholded pixels, which
vanishes for a bar along an image axis (spec §4), so its success depends on the bar's angle to
the image axes; a bar shorter than about two PSF FWHM is not reliably seen (Erwin 2018); thin
bars, bulge-dominated galaxies and faint bars are harder still. :func:`stratified_correlations`
reports, per bin of each property, the number of galaxies, Pearson and Spearman ρ of measured vs
true length and the median measured/true ratio, each with a bootstrap interval.
:func:`simulation_covariates` derives the properties from a catalogue of
:func:`galaxai.data.simulate.simulate`.

References
----------
P. Bhambra, B. Joachimi, O. Lahav, MNRAS 511, 5032 (2022), arXiv:2110.08288.
P. Erwin, MNRAS 474, 5372 (2018) (bars below ~2 PSF FWHM).
"""
from __future__ import annotations

import math
from typing import Mapping, Sequence

import numpy as np
import pandas as pd

from galaxai.morphology.statistics import bootstrap_rho

__all__ = [
    "STRATA",
    "simulation_covariates",
    "stratified_correlations",
]

#: Default strata: property → bin edges, or a number of equal-count (quantile) bins.
#: ``bar_pa_axis_deg`` is the angle of the projected bar to the nearest image axis (0 = along an
#: axis, 45 = diagonal); ``a_over_fwhm`` is the projected bar semi-major axis over the r-band
#: PSF FWHM, with an edge at Erwin's (2018) limit of 2.
STRATA: dict[str, int | tuple[float, ...]] = {
    "bar_pa_axis_deg": (0.0, 15.0, 30.0, 45.0),
    "disk_incl_deg": 3,
    "bar_q": 3,
    "a_over_fwhm": (0.0, 2.0, 3.0, 4.0, math.inf),
    "bt": 3,
    "snr_bar": 3,
}


def simulation_covariates(catalogue: pd.DataFrame) -> pd.DataFrame:
    """The properties of :data:`STRATA` from a simulation catalogue (one row per galaxy).

    - ``bar_pa_axis_deg``: ``bar_pa_deg`` (sky PA of the projected bar, from the column axis)
      folded to the angle from the nearest image axis, in [0, 45].
    - ``disk_incl_deg``, ``bar_q``, ``bt``: the catalogue columns.
    - ``a_over_fwhm``: ``bar_length_proj_px / 2 / psf_fwhm_r_px`` (as ``bar_resolved``).
    - ``snr_bar``: the bar's r-band signal-to-noise against the sky,
      ``flux_r_bar / (sky_sigma_r · √(π a² q_b cos i))``: its flux over the sky noise summed
      over its projected elliptical footprint (the PSF and the galaxy's own Poisson noise are
      ignored; a ranking of bar visibility, not an exact S/N).

    Parameters
    ----------
    catalogue : pandas.DataFrame
        Needs ``bar_pa_deg, disk_incl_deg, disk_cos_i, bar_q, bar_a_px, bar_length_proj_px,
        psf_fwhm_r_px, bt, flux_r_bar, sky_sigma_r``.

    Returns
    -------
    pandas.DataFrame
        The six columns, with the catalogue's index.
    """
    need = ["bar_pa_deg", "disk_incl_deg", "disk_cos_i", "bar_q", "bar_a_px",
            "bar_length_proj_px", "psf_fwhm_r_px", "bt", "flux_r_bar", "sky_sigma_r"]
    missing = [c for c in need if c not in catalogue.columns]
    if missing:
        raise ValueError(f"the catalogue lacks column(s) {missing}; pass the catalogue of "
                         "galaxai.data.simulate.simulate for barred galaxies")
    c = catalogue
    pa = np.mod(c["bar_pa_deg"].to_numpy(dtype=float), 90.0)
    area = math.pi * c["bar_a_px"] ** 2 * c["bar_q"] * c["disk_cos_i"]
    return pd.DataFrame({
        "bar_pa_axis_deg": np.minimum(pa, 90.0 - pa),
        "disk_incl_deg": c["disk_incl_deg"].astype(float),
        "bar_q": c["bar_q"].astype(float),
        "a_over_fwhm": c["bar_length_proj_px"] / 2.0 / c["psf_fwhm_r_px"],
        "bt": c["bt"].astype(float),
        "snr_bar": c["flux_r_bar"] / (c["sky_sigma_r"] * np.sqrt(area)),
    }, index=catalogue.index)


def _bins(values: np.ndarray, spec: int | Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    """Bin index of every value (−1: outside) and the bin edges; the first bin is closed."""
    if isinstance(spec, (int, np.integer)):
        if spec < 1:
            raise ValueError(f"a number of quantile bins must be ≥ 1, got {spec}")
        finite = values[np.isfinite(values)]
        if finite.size and np.ptp(finite) == 0:  # one value: one bin [v, v]
            return np.where(np.isfinite(values), 0, -1), finite[:1].repeat(2)
        codes, edges = pd.qcut(values, int(spec), labels=False, retbins=True,
                               duplicates="drop")
        return np.nan_to_num(codes, nan=-1).astype(int), edges
    edges = np.asarray(spec, dtype=float)
    if edges.ndim != 1 or edges.size < 2 or np.any(np.diff(edges) <= 0):
        raise ValueError(f"bin edges must be increasing with at least two values, got {spec!r}")
    codes = pd.cut(values, edges, labels=False, include_lowest=True)
    return np.nan_to_num(codes, nan=-1).astype(int), edges


def stratified_correlations(measured, true, covariates: pd.DataFrame, *,
                            strata: Mapping[str, int | Sequence[float]] | None = None,
                            n_boot: int = 2000, ci: float = 0.95, seed: int = 0,
                            min_n: int = 3) -> pd.DataFrame:
    """Pearson and Spearman ρ and the median measured/true ratio within bins of each property.

    Parameters
    ----------
    measured, true : array_like, shape (n,)
        Measured and true lengths of the same galaxies (same unit; ``true`` positive).
    covariates : pandas.DataFrame
        One row per galaxy, in the same order; a column per property in ``strata``.
    strata : mapping, optional
        Property → bin edges (``pd.cut``, lowest edge included) or a number of equal-count bins
        (``pd.qcut``); default :data:`STRATA`.
    n_boot, ci, seed
        Bootstrap resamples (galaxies within the bin, with replacement), coverage and seed.
    min_n : int
        Bins with fewer galaxies (at least 3) get NaN statistics; every bin is listed.

    Returns
    -------
    pandas.DataFrame
        One row per (property, bin): ``stratum, bin, low_edge, high_edge, n, pearson,
        pearson_low, pearson_high, spearman, spearman_low, spearman_high, ratio_median,
        ratio_low, ratio_high``.
    """
    m = np.asarray(measured, dtype=np.float64)
    t = np.asarray(true, dtype=np.float64)
    if m.ndim != 1 or m.shape != t.shape or len(covariates) != m.size:
        raise ValueError(f"measured {m.shape}, true {t.shape} and covariates ({len(covariates)} "
                         "rows) must describe the same galaxies")
    if not (np.all(np.isfinite(m)) and np.all(np.isfinite(t)) and np.all(t > 0)):
        raise ValueError("measured lengths must be finite and true lengths finite and positive")
    strata = STRATA if strata is None else strata
    missing = [k for k in strata if k not in covariates.columns]
    if missing:
        raise ValueError(f"covariates lack column(s) {missing}; columns are "
                         f"{list(covariates.columns)}")
    min_n = max(3, int(min_n))
    ratio = m / t
    rows = []
    for name, spec in strata.items():
        codes, edges = _bins(covariates[name].to_numpy(dtype=np.float64), spec)
        for k in range(max(1, edges.size - 1)):
            idx = np.flatnonzero(codes == k)
            lo, hi = float(edges[k]), float(edges[min(k + 1, edges.size - 1)])
            row = dict(stratum=name, bin=f"{'[' if k == 0 else '('}{lo:.3g}, {hi:.3g}]",
                       low_edge=lo, high_edge=hi, n=int(idx.size))
            p = s = r = (math.nan,) * 3
            if idx.size >= min_n:
                est = [bootstrap_rho(m[idx], t[idx], method=how, n_boot=n_boot, ci=ci, seed=seed)
                       for how in ("pearson", "spearman")]
                p, s = ((e.value, e.low, e.high) for e in est)
                boot = np.median(ratio[idx][np.random.default_rng(seed).integers(
                    0, idx.size, (int(n_boot), idx.size))], axis=1)
                r = (float(np.median(ratio[idx])),
                     *np.percentile(boot, [50 * (1 - ci), 50 * (1 + ci)]).tolist())
            row.update(pearson=p[0], pearson_low=p[1], pearson_high=p[2], spearman=s[0],
                       spearman_low=s[1], spearman_high=s[2], ratio_median=r[0],
                       ratio_low=r[1], ratio_high=r[2])
            rows.append(row)
    return pd.DataFrame(rows)
