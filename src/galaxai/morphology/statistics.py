"""Honest correlation statistics and the authors' fits for saliency bar lengths.

Pearson, Spearman and partial correlations (row-wise on 2-D input: one resample per row),
bootstrap intervals (:func:`bootstrap_rho`), the §7 report (:func:`rho_report`: the faithful ρ
next to the constant-length null, ρ in scaled units, the partial ρ controlling for R90, Spearman
ρ and a random-permutation null; see :mod:`galaxai.morphology.gridsearch` for why), and the
authors' regression through the origin with their error model (:func:`paper_fit`).

Everything here works on plain arrays of lengths; nothing depends on how they were measured.

References
----------
P. Bhambra, B. Joachimi, O. Lahav, MNRAS 511, 5032 (2022), arXiv:2110.08288
(``measure_barlengths.py``, ``save_figures.py``).
D. Hoyle et al., MNRAS 415, 3627 (2011), arXiv:1104.5394 (bar-length catalogue).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.stats import rankdata

__all__ = [
    "CATALOGUE_FRACTIONAL_ERROR",
    "pearson",
    "spearman",
    "partial_pearson",
    "RhoEstimate",
    "bootstrap_rho",
    "RhoReport",
    "rho_report",
    "OriginFit",
    "origin_fit_weights",
    "fit_through_origin",
    "paper_fit",
    "run_to_run_sigma",
    "paper_plot_units",
]

#: Mean ``length_stdev / length_avg`` of the Hoyle catalogue, the authors' σ_cat fraction.
CATALOGUE_FRACTIONAL_ERROR = 0.17
# The authors' plot-only factors (save_figures.py): GZ2 px in R90 units × SDSS "/px, and 0.7.
_PLOT_MEASURED = 0.02 * 0.396
_PLOT_CATALOGUE = 0.7
# |ρ| above which a variable counts as a linear function of the control variable.
_COLLINEAR = 1.0 - 1e-10


# --------------------------------------------------------------------------------------------
# correlation statistics (row-wise on 2-D input: one resample per row)


def _vector(x, name: str) -> np.ndarray:
    a = np.asarray(x, dtype=np.float64)
    if a.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {a.shape}")
    if not np.all(np.isfinite(a)):
        raise ValueError(f"{name} contains NaN or infinite values; drop those galaxies first")
    return a


def _vectors(**arrays) -> list[np.ndarray]:
    out = [_vector(v, k) for k, v in arrays.items()]
    sizes = {k: a.size for k, a in zip(arrays, out)}
    if len(set(sizes.values())) != 1:
        raise ValueError(f"arrays must have the same length, got {sizes}")
    if out[0].size < 3:
        raise ValueError(f"need at least 3 galaxies for a correlation, got {out[0].size}")
    return out


def _pearson_rows(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Pearson ρ along the last axis; NaN where either input is constant."""
    dx = x - x.mean(axis=-1, keepdims=True)
    dy = y - y.mean(axis=-1, keepdims=True)
    num = (dx * dy).sum(axis=-1)
    den = np.sqrt((dx * dx).sum(axis=-1) * (dy * dy).sum(axis=-1))
    out = np.full(np.shape(num), np.nan)
    ok = (np.ptp(x, axis=-1) > 0) & (np.ptp(y, axis=-1) > 0) & (den > 0)
    np.divide(num, den, out=out, where=ok)
    return np.clip(out, -1.0, 1.0)


def _partial_rows(x: np.ndarray, y: np.ndarray, z: np.ndarray) -> np.ndarray:
    rxy, rxz, ryz = _pearson_rows(x, y), _pearson_rows(x, z), _pearson_rows(y, z)
    den = np.sqrt((1.0 - rxz ** 2) * (1.0 - ryz ** 2))
    out = np.full(np.shape(rxy), np.nan)
    # undefined when x or y is (to rounding) a linear function of z: nothing is left to correlate
    ok = np.isfinite(den) & (np.abs(rxz) < _COLLINEAR) & (np.abs(ryz) < _COLLINEAR)
    np.divide(rxy - rxz * ryz, den, out=out, where=ok)
    return out


def _spearman_rows(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    return _pearson_rows(rankdata(x, axis=-1), rankdata(y, axis=-1))


def pearson(x, y) -> float:
    """Pearson correlation coefficient; NaN when either input is constant."""
    x, y = _vectors(x=x, y=y)
    return float(_pearson_rows(x, y))


def spearman(x, y) -> float:
    """Spearman rank correlation (Pearson of average ranks); NaN when either input is constant."""
    x, y = _vectors(x=x, y=y)
    return float(_spearman_rows(x, y))


def partial_pearson(x, y, z) -> float:
    """Partial correlation of ``x`` and ``y`` controlling linearly for ``z``.

    ``(ρ_xy − ρ_xz ρ_yz) / √((1 − ρ_xz²)(1 − ρ_yz²))``, equal to the Pearson correlation of the
    residuals of ``x`` and ``y`` after least-squares regression (with intercept) on ``z``; NaN
    when ``x`` or ``y`` is a linear function of ``z`` (e.g. a constant length times R90).
    """
    x, y, z = _vectors(x=x, y=y, z=z)
    return float(_partial_rows(x, y, z))


@dataclass(frozen=True)
class RhoEstimate:
    """A correlation with its bootstrap percentile interval (``low``, ``high``)."""

    value: float
    low: float
    high: float

    def __str__(self) -> str:
        return f"{self.value:.3f} [{self.low:.3f}, {self.high:.3f}]"


def _interval(samples: np.ndarray, ci: float) -> tuple[float, float]:
    finite = samples[np.isfinite(samples)]
    if finite.size == 0:
        return math.nan, math.nan
    lo, hi = np.percentile(finite, [50 * (1 - ci), 50 * (1 + ci)])
    return float(lo), float(hi)


def _check_ci(ci: float, n_boot: int) -> None:
    if not 0.0 < ci < 1.0:
        raise ValueError(f"ci must be in (0, 1), got {ci!r}")
    if int(n_boot) < 1:
        raise ValueError(f"n_boot must be a positive integer, got {n_boot!r}")


def _bootstrap_indices(n: int, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    return rng.integers(0, n, size=(int(n_boot), n))


_STATISTICS = {"pearson": _pearson_rows, "spearman": _spearman_rows}


def bootstrap_rho(x, y, *, method: str = "pearson", n_boot: int = 2000, ci: float = 0.95,
                  seed: int = 0) -> RhoEstimate:
    """Correlation with a percentile bootstrap interval (galaxies resampled with replacement).

    Parameters
    ----------
    x, y : array_like, shape (n,)
    method : {"pearson", "spearman"}
    n_boot : int
        Number of bootstrap resamples.
    ci : float
        Central coverage of the interval (0.95 gives the 2.5 and 97.5 percentiles).
    seed : int
        Seed of the resampling.

    Returns
    -------
    RhoEstimate
    """
    if method not in _STATISTICS:
        raise ValueError(f"method must be one of {sorted(_STATISTICS)}, got {method!r}")
    _check_ci(ci, n_boot)
    x, y = _vectors(x=x, y=y)
    stat = _STATISTICS[method]
    idx = _bootstrap_indices(x.size, n_boot, np.random.default_rng(seed))
    return RhoEstimate(float(stat(x, y)), *_interval(stat(x[idx], y[idx]), ci))


# --------------------------------------------------------------------------------------------
# the §7 report


@dataclass(frozen=True)
class RhoReport:
    """Faithful ρ and the required honest companions, on one set of galaxies.

    Attributes
    ----------
    n : int
        Number of galaxies.
    faithful : RhoEstimate
        Pearson of ``L424·R90`` vs ``length_scaled·R90`` (the published statistic).
    constant_null : RhoEstimate
        The same with one constant length for every galaxy: Pearson of ``R90`` vs
        ``length_scaled·R90``. What the shared size factor alone gives.
    scaled : RhoEstimate
        Pearson of ``L424/100`` vs ``length_scaled``: no shared R90.
    partial_r90 : RhoEstimate
        Partial Pearson of the faithful pair controlling for R90.
    spearman : RhoEstimate
        Spearman of the faithful pair.
    permutation_mean, permutation_std : float
        Mean and standard deviation of the faithful ρ after randomly permuting the measured
        lengths among the galaxies (each keeps its own R90).
    permutation_interval : tuple of float
        Central ``ci`` interval of that null distribution.
    permutation_p : float
        One-sided p-value of the faithful ρ under it, ``(1 + #{null ≥ ρ}) / (1 + n_perm)``.
    ci : float
        Coverage of all intervals.
    """

    n: int
    faithful: RhoEstimate
    constant_null: RhoEstimate
    scaled: RhoEstimate
    partial_r90: RhoEstimate
    spearman: RhoEstimate
    permutation_mean: float
    permutation_std: float
    permutation_interval: tuple[float, float]
    permutation_p: float
    ci: float

    def to_frame(self) -> pd.DataFrame:
        """One row per statistic: ``statistic, value, low, high``."""
        rows = [(name, est.value, est.low, est.high) for name, est in (
            ("faithful (L424·R90 vs length_scaled·R90)", self.faithful),
            ("constant-length null", self.constant_null),
            ("scaled units (L424/100 vs length_scaled)", self.scaled),
            ("partial, controlling for R90", self.partial_r90),
            ("Spearman (faithful pair)", self.spearman),
        )]
        rows.append(("permutation null (mean)", self.permutation_mean,
                     *self.permutation_interval))
        return pd.DataFrame(rows, columns=["statistic", "value", "low", "high"])


def rho_report(measured_px, length_scaled, r90, *, n_boot: int = 2000, n_perm: int = 2000,
               ci: float = 0.95, seed: int = 0) -> RhoReport:
    """Faithful ρ and every §7 companion, with bootstrap intervals, for one set of galaxies.

    Parameters
    ----------
    measured_px : array_like, shape (n,)
        Measured lengths ``L424`` (pixels of the 424² GZ2 frame), or any per-galaxy prediction
        in the same scaled units times 100 (e.g. a control model's ``length_scaled``·100).
    length_scaled : array_like, shape (n,)
        Hoyle ``length_scaled`` of the same galaxies, in the same order.
    r90 : array_like, shape (n,)
        ``petroR90_r`` of the same galaxies (any positive unit; ρ is scale-free).
    n_boot, n_perm : int
        Bootstrap resamples and random permutations.
    ci : float
        Interval coverage.
    seed : int
        Seed of resampling and permutations.

    Returns
    -------
    RhoReport
    """
    _check_ci(ci, n_boot)
    if int(n_perm) < 1:
        raise ValueError(f"n_perm must be a positive integer, got {n_perm!r}")
    m, ls, r = _vectors(measured_px=measured_px, length_scaled=length_scaled, r90=r90)
    if np.any(r <= 0):
        raise ValueError("r90 must be positive (petroR90_r of each galaxy)")
    rng = np.random.default_rng(seed)
    statistics = {
        "faithful": lambda m_, ls_, r_: _pearson_rows(m_ * r_, ls_ * r_),
        "constant_null": lambda m_, ls_, r_: _pearson_rows(r_, ls_ * r_),
        "scaled": lambda m_, ls_, r_: _pearson_rows(m_ / 100.0, ls_),
        "partial_r90": lambda m_, ls_, r_: _partial_rows(m_ * r_, ls_ * r_, r_),
        "spearman": lambda m_, ls_, r_: _spearman_rows(m_ * r_, ls_ * r_),
    }
    idx = _bootstrap_indices(m.size, n_boot, rng)
    estimates = {
        name: RhoEstimate(float(f(m, ls, r)), *_interval(f(m[idx], ls[idx], r[idx]), ci))
        for name, f in statistics.items()
    }
    perms = rng.permuted(np.broadcast_to(m, (int(n_perm), m.size)), axis=1)
    null = _pearson_rows(perms * r, ls * r)
    observed = estimates["faithful"].value
    p = (1 + int(np.sum(null >= observed))) / (1 + null.size)
    return RhoReport(
        n=int(m.size), **estimates, permutation_mean=float(np.nanmean(null)),
        permutation_std=float(np.nanstd(null)), permutation_interval=_interval(null, ci),
        permutation_p=float(p), ci=float(ci),
    )


# --------------------------------------------------------------------------------------------
# regression through the origin and the authors' error model


@dataclass(frozen=True)
class OriginFit:
    """Weighted least-squares line through the origin ``y ≈ slope · x``.

    Attributes
    ----------
    slope : float
        ``Σ w x y / Σ w x²``.
    slope_err : float
        Its standard error ``√(s² / Σ w x²)`` with ``s² = Σ w (y − slope·x)² / (n − 1)`` (the
        weighted-least-squares error with the scale estimated from the residuals, as
        ``statsmodels`` WLS reports it); NaN for a single galaxy.
    rmse : float
        Unweighted root-mean-square of ``y − slope · x``.
    rmse_identity : float
        Root-mean-square of ``y − x`` (the one-to-one line of the authors' plots).
    n : int
    """

    slope: float
    slope_err: float
    rmse: float
    rmse_identity: float
    n: int


def origin_fit_weights(catalogue_length, sigma_measured=0.0, *,
                       fraction: float = CATALOGUE_FRACTIONAL_ERROR) -> np.ndarray:
    """The authors' weights ``1 / (σ_cat + σ_meas)`` with ``σ_cat = fraction · catalogue``.

    ``save_figures.py`` passes these as ``sample_weight`` to a no-intercept linear regression
    (σ_meas = the run-to-run spread of :func:`run_to_run_sigma` for saliency lengths, 1 for the
    control model).
    """
    cat = _vector(catalogue_length, "catalogue_length")
    sig = np.broadcast_to(np.asarray(sigma_measured, dtype=np.float64), cat.shape)
    total = fraction * cat + sig
    if not np.all(np.isfinite(total)) or np.any(total <= 0):
        raise ValueError("σ_cat + σ_meas must be positive and finite for every galaxy")
    return 1.0 / total


def fit_through_origin(x, y, weights=None) -> OriginFit:
    """Weighted regression through the origin of ``y`` (measured) on ``x`` (catalogue).

    Minimises ``Σ w (y − k x)²``: ``k = Σ w x y / Σ w x²`` — what
    ``sklearn.linear_model.LinearRegression(fit_intercept=False)`` with ``sample_weight=w``
    returns, as in ``save_figures.py``.

    Parameters
    ----------
    x, y : array_like, shape (n,)
        Catalogue and measured lengths, in the same units.
    weights : array_like, shape (n,), optional
        Non-negative weights (default 1); see :func:`origin_fit_weights`.

    Returns
    -------
    OriginFit
    """
    x, y = _vectors(x=x, y=y)
    w = np.ones_like(x) if weights is None else _vector(weights, "weights")
    if w.shape != x.shape or np.any(w < 0):
        raise ValueError("weights must be non-negative with one value per galaxy")
    den = float(np.sum(w * x * x))
    if den <= 0:
        raise ValueError("the fit is undefined: Σ w x² is zero")
    slope = float(np.sum(w * x * y)) / den
    resid = y - slope * x
    err = math.sqrt(float(np.sum(w * resid ** 2)) / (x.size - 1) / den) if x.size > 1 else math.nan
    return OriginFit(slope=slope, slope_err=err, rmse=float(np.sqrt(np.mean(resid ** 2))),
                     rmse_identity=float(np.sqrt(np.mean((y - x) ** 2))), n=int(x.size))


def paper_fit(measured, length_scaled, r90, sigma_measured=0.0) -> OriginFit:
    """The authors' Fig. 4 fit of measured on catalogue lengths (``save_figures.py``).

    Both sides in their plot units (:func:`paper_plot_units` of ``L424·R90`` and
    ``length_scaled·R90``), weights :func:`origin_fit_weights` with ``σ_meas`` converted like
    the measured side. A perfect measurement (``L424 = 100·length_scaled``) has slope
    ``0.02·0.396·100 / 0.7 ≈ 1.131``, not 1.

    Parameters
    ----------
    measured : array_like, shape (n,)
        ``L424`` (e.g. the mean of two SmoothGrad runs).
    length_scaled, r90 : array_like, shape (n,)
        Catalogue lengths and ``petroR90_r`` of the same galaxies.
    sigma_measured : float or array_like, shape (n,)
        ``σ_meas`` in faithful units (``L424·R90``), e.g. :func:`run_to_run_sigma` of the two
        runs' ``L424·R90``; 0 for a single run.

    Returns
    -------
    OriginFit
    """
    m, ls, r = _vectors(measured=measured, length_scaled=length_scaled, r90=r90)
    y, x = paper_plot_units(m * r, ls * r)
    sigma = np.broadcast_to(np.asarray(sigma_measured, dtype=np.float64), m.shape)
    return fit_through_origin(x, y, origin_fit_weights(x, sigma * _PLOT_MEASURED))


def run_to_run_sigma(run1, run2, *, n_bins: int = 10) -> np.ndarray:
    """Per-galaxy measurement error from two runs with fresh SmoothGrad noise.

    As in ``save_figures.py``: galaxies are binned in ``n_bins`` quantiles (deciles) of the mean
    of the two runs, and each gets its bin's mean ``|run1 − run2|``.

    Returns
    -------
    numpy.ndarray, shape (n,)
    """
    a, b = _vectors(run1=run1, run2=run2)
    mean = (a + b) / 2.0
    bins = pd.qcut(mean, n_bins, labels=False, duplicates="drop")
    bins = np.where(np.isnan(bins), -1, bins)  # every mean equal: qcut leaves no bin, use one
    spread = pd.Series(np.abs(a - b)).groupby(bins).transform("mean")
    return spread.to_numpy(dtype=np.float64)


def paper_plot_units(measured, catalogue) -> tuple[np.ndarray, np.ndarray]:
    """The authors' plot-only conversion to "h⁻¹ kpc" (``save_figures.py``, Fig. 4).

    ``measured × 0.02 × 0.396`` (``L424·R90`` times the GZ2 pixel scale in R90 units times the
    SDSS pixel scale) and ``catalogue × 0.7``. The conversion is dimensionally questionable and
    changes the RMSE and slope, never ρ; use it only to reproduce the published figure.
    """
    return (_vector(measured, "measured") * _PLOT_MEASURED,
            _vector(catalogue, "catalogue") * _PLOT_CATALOGUE)
