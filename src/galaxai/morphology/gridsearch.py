"""Grid search and honest correlation reports for saliency bar lengths.

Bhambra, Joachimi & Lahav (2022, arXiv:2110.08288) choose the settings of their bar-length
measurement (``x_input``, SmoothGrad noise ``S``, ``T_c``, ``T_l``, model) by the Pearson
correlation with the Hoyle et al. (2011) catalogue on a validation split, quote Pearson ρ on a
test split, and fit a line through the origin. Both sides of their ρ are multiplied by the
galaxy size ``petroR90_r`` (coefficient of variation ≈ 0.42), so a large part of the published
ρ = 0.76 is a shared size factor: a constant length in pixels already reaches ρ ≈ 0.74.
:func:`rho_report` therefore puts next to the faithful ρ the constant-length null, ρ in scaled
units (no shared R90), the partial ρ controlling for R90, Spearman ρ, a random-permutation null
and bootstrap intervals for every ρ.

Everything here works on plain arrays and DataFrames of lengths; nothing depends on how the
lengths were measured, so the same code scores any model or method.

Units (spec §6): measured lengths enter as ``L424`` (pixels of the 424² GZ2 cut-out, see
:func:`galaxai.morphology.bar_length`); the catalogue enters as ``length_scaled``; R90 is
``petroR90_r`` in arcsec. The faithful quantities are ``L424·R90`` and ``length_scaled·R90``.

References
----------
P. Bhambra, B. Joachimi, O. Lahav, MNRAS 511, 5032 (2022), arXiv:2110.08288
(``measure_barlengths.py``, ``save_figures.py``, ``control_model.py``).
D. Hoyle et al., MNRAS 415, 3627 (2011), arXiv:1104.5394 (bar-length catalogue).
K. W. Willett et al., MNRAS 435, 2835 (2013) (GZ2 cut-outs at 0.02·petroR90_r arcsec/px).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Hashable, Mapping, Sequence

import numpy as np
import pandas as pd
from scipy.stats import rankdata

from galaxai.morphology.barlength import GZ_FRAME_SIZE, bar_lengths, x_input

__all__ = [
    "HOYLE_SEED",
    "CATALOGUE_FRACTIONAL_ERROR",
    "shuffle_catalogue",
    "split_catalogue",
    "control_split",
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
    "measurement_table",
    "AVERAGE_METHODS",
    "average_heatmaps",
    "source_maps",
    "source_lengths",
    "method_measurements",
    "GridSearchResult",
    "UndefinedRhoError",
    "grid_search",
    "grid_search_by",
]

class UndefinedRhoError(ValueError):
    """No setting of a grid search has a finite validation ρ (e.g. constant lengths)."""


#: Seed of the authors' catalogue shuffle (``sample(frac=1, random_state=123)``).
HOYLE_SEED = 123
#: Mean ``length_stdev / length_avg`` of the Hoyle catalogue, the authors' σ_cat fraction.
CATALOGUE_FRACTIONAL_ERROR = 0.17
# The authors' plot-only factors (save_figures.py): GZ2 px in R90 units × SDSS "/px, and 0.7.
_PLOT_MEASURED = 0.02 * 0.396
_PLOT_CATALOGUE = 0.7
# |ρ| above which a variable counts as a linear function of the control variable.
_COLLINEAR = 1.0 - 1e-10


# --------------------------------------------------------------------------------------------
# splits


def shuffle_catalogue(catalogue: pd.DataFrame, seed: int = HOYLE_SEED) -> pd.DataFrame:
    """The authors' shuffle: ``catalogue.sample(frac=1, random_state=seed)``."""
    if not isinstance(catalogue, pd.DataFrame):
        raise TypeError(f"catalogue must be a pandas DataFrame, got {type(catalogue).__name__}")
    return catalogue.sample(frac=1, random_state=seed)


def split_catalogue(catalogue: pd.DataFrame, *, seed: int = HOYLE_SEED,
                    validation_fraction: float = 1 / 3) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Validation (grid search) and test splits of the bar-length catalogue.

    The catalogue is shuffled with :func:`shuffle_catalogue`; the first
    ``int(n · validation_fraction)`` rows are the validation split and the rest the test split
    (``head``/``tail`` in ``measure_barlengths.py``): 1050 and 2100 of the 3150 Hoyle galaxies.

    Returns
    -------
    (validation, test) : tuple of pandas.DataFrame
    """
    if not 0.0 < validation_fraction < 1.0:
        raise ValueError(f"validation_fraction must be in (0, 1), got {validation_fraction!r}")
    shuffled = shuffle_catalogue(catalogue, seed)
    n_val = int(len(shuffled) * validation_fraction)
    return shuffled.head(n_val), shuffled.tail(len(shuffled) - n_val)


def control_split(catalogue: pd.DataFrame, *, seed: int = HOYLE_SEED, test_fraction: float = 0.2,
                  validation_fraction: float = 0.2
                  ) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Train, validation and test splits of the authors' control model (``control_model.py``).

    Same shuffle as :func:`split_catalogue`; the test split is the last
    ``int(n · test_fraction)`` rows (630 of 3150, a subset of the 2100 test galaxies), and of the
    remaining rows the first ``int(m · validation_fraction)`` validate (Keras takes the validation
    subset from the start) and the rest train: 2016 / 504 / 630.

    Returns
    -------
    (train, validation, test) : tuple of pandas.DataFrame
    """
    for name, value in (("test_fraction", test_fraction),
                        ("validation_fraction", validation_fraction)):
        if not 0.0 < value < 1.0:
            raise ValueError(f"{name} must be in (0, 1), got {value!r}")
    shuffled = shuffle_catalogue(catalogue, seed)
    n_test = int(len(shuffled) * test_fraction)
    rest = shuffled.head(len(shuffled) - n_test)
    n_val = int(len(rest) * validation_fraction)
    return rest.iloc[n_val:], rest.iloc[:n_val], shuffled.tail(n_test)


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


# --------------------------------------------------------------------------------------------
# grid search


def measurement_table(maps, ids: Sequence, *, t_c: Sequence[float] = (0.70, 0.75, 0.80, 0.85, 0.90),
                      t_l: Sequence[int] = (10, 20, 30, 40, 50), method: str = "fast",
                      scale_to: int | None = GZ_FRAME_SIZE, renormalise: bool = False,
                      **labels: Any) -> pd.DataFrame:
    """Bar lengths of a stack of maps over the (T_c, T_l) grid, as a long DataFrame.

    Parameters
    ----------
    maps : array_like, shape (B, H, W)
        One saliency map per galaxy.
    ids : sequence, length B
        Galaxy identifiers (e.g. ``objid``).
    t_c, t_l : sequences
        Grid values (defaults: the authors' grid).
    method, scale_to, renormalise
        As in :func:`galaxai.morphology.bar_length`.
    **labels
        Constant setting columns to add (e.g. ``s_noise=0.1, x_input=False, model="vgg16"``).

    Returns
    -------
    pandas.DataFrame
        Columns ``id, t_c, t_l, *labels, length_px``; ``length_px`` is ``L424`` by default.
    """
    grid = bar_lengths(maps, list(t_c), list(t_l), method, scale_to=scale_to,
                       renormalise=renormalise)
    return _grid_frame(grid, ids, t_c, t_l, labels)


def _grid_frame(grid: np.ndarray, ids: Sequence, t_c: Sequence[float], t_l: Sequence[int],
                labels: Mapping[str, Any]) -> pd.DataFrame:
    """Long table of a ``(B, n_c, n_l)`` length grid: ``id, t_c, t_l, *labels, length_px``."""
    ids = list(ids)
    if len(ids) != grid.shape[0]:
        raise ValueError(f"got {len(ids)} ids for {grid.shape[0]} maps")
    b, i, j = np.meshgrid(np.arange(len(ids)), np.arange(len(t_c)), np.arange(len(t_l)),
                          indexing="ij")
    table = pd.DataFrame({"id": np.asarray(ids, dtype=object)[b.ravel()],
                          "t_c": np.asarray(t_c, dtype=float)[i.ravel()],
                          "t_l": np.asarray(t_l)[j.ravel()]})
    for name, value in labels.items():
        table[name] = value
    table["length_px"] = grid.ravel()
    return table


# --------------------------------------------------------------------------------------------
# the spec §5 methods: single models and the two model averages

#: The model averages of spec §3/§5: mean of the models' maps (not renormalised) and mean of
#: the models' lengths.
AVERAGE_METHODS = ("averageheatmaps", "averagemeasurements")


def average_heatmaps(stacks: Sequence[np.ndarray]) -> np.ndarray:
    """The authors' ``averageheatmaps``: the mean of several models' maps of the same galaxies.

    Not renormalised (faithful, spec §3): the mean of maps with maxima at different pixels has
    a maximum below 1, and one at or below 0.5 measures 1 pixel at ``T = 0.5``.

    Parameters
    ----------
    stacks : sequence of array_like, each shape (B, H, W)
        One stack per model, the galaxies in the same order; at least two.

    Returns
    -------
    numpy.ndarray, shape (B, H, W), float64
    """
    arrays = [np.asarray(s, dtype=np.float64) for s in stacks]
    if len(arrays) < 2:
        raise ValueError(f"averageheatmaps needs the maps of at least two models, got "
                         f"{len(arrays)}")
    shapes = {a.shape for a in arrays}
    if len(shapes) != 1:
        raise ValueError(f"the models' map stacks differ in shape {sorted(shapes)}; average "
                         "only maps of the same galaxies at one map size")
    return np.mean(arrays, axis=0)


def _models_at(maps: Mapping[tuple[str, float], np.ndarray], s_noise: float) -> list[str]:
    return [m for m, s in maps if s == s_noise and m not in AVERAGE_METHODS]


def _with_x_input(stack: np.ndarray, images, use_x_input: bool) -> np.ndarray:
    if not use_x_input:
        return np.asarray(stack, dtype=np.float64)
    if images is None:
        raise ValueError("x_input maps need the images (B, H, W, 3) in [0, 1]")
    return np.stack([x_input(np.asarray(m, np.float64), np.asarray(im, np.float64))
                     for m, im in zip(stack, images)])


def source_maps(maps: Mapping[tuple[str, float], np.ndarray], source: str, s_noise: float, *,
                images=None, use_x_input: bool = False) -> dict[str, np.ndarray]:
    """The map stacks whose lengths one method of spec §5 averages, at one noise level ``S``.

    A model gives its own maps; ``averageheatmaps`` one stack, :func:`average_heatmaps` of
    every model's maps at ``S``; ``averagemeasurements`` every model's maps (its length is the
    mean of their lengths, :func:`source_lengths`). With ``use_x_input`` each stack is
    multiplied by the grayscale image (:func:`~galaxai.morphology.x_input`), after averaging.

    Parameters
    ----------
    maps : mapping
        ``(model, S) → (B, H, W)`` maps of the same galaxies in the same order.
    source : str
        A model name, ``"averageheatmaps"`` or ``"averagemeasurements"``.
    s_noise : float
        SmoothGrad ``S`` of the maps to use.
    images : array_like, shape (B, H, W, 3), optional
        The network inputs in [0, 1]; needed for ``use_x_input``.
    use_x_input : bool

    Returns
    -------
    dict
        Name (model or ``"averageheatmaps"``) → stack.
    """
    models = _models_at(maps, s_noise)
    if source in AVERAGE_METHODS:
        if len(models) < 2:
            raise ValueError(f"{source} needs the maps of at least two models at S = {s_noise}, "
                             f"got {models or 'none'}")
        if source == "averageheatmaps":
            stacks = {source: average_heatmaps([maps[(m, s_noise)] for m in models])}
        else:
            stacks = {m: maps[(m, s_noise)] for m in models}
    elif source in models:
        stacks = {source: maps[(source, s_noise)]}
    else:
        raise ValueError(f"no maps of {source!r} at S = {s_noise}; models there: {models}")
    return {k: _with_x_input(v, images, use_x_input) for k, v in stacks.items()}


def source_lengths(maps: Mapping[tuple[str, float], np.ndarray], source: str, s_noise: float,
                   t_c, t_l, *, method: str = "fast", images=None, use_x_input: bool = False,
                   scale_to: int | None = GZ_FRAME_SIZE, renormalise: bool = False
                   ) -> np.ndarray:
    """Bar lengths of one method of spec §5: the mean over its :func:`source_maps` stacks.

    ``t_c``, ``t_l``, ``method``, ``scale_to`` and ``renormalise`` are as in
    :func:`~galaxai.morphology.bar_lengths` (scalars give shape ``(B,)``).
    """
    stacks = source_maps(maps, source, s_noise, images=images, use_x_input=use_x_input)
    return np.mean([bar_lengths(st, t_c, t_l, method, scale_to=scale_to, renormalise=renormalise)
                    for st in stacks.values()], axis=0)


def method_measurements(maps: Mapping[tuple[str, float], np.ndarray], ids: Sequence, *,
                        images=None, x_input: Sequence[bool] = (False,),
                        sources: Sequence[str] | None = None,
                        t_c: Sequence[float] = (0.70, 0.75, 0.80, 0.85, 0.90),
                        t_l: Sequence[int] = (10, 20, 30, 40, 50), method: str = "fast",
                        scale_to: int | None = GZ_FRAME_SIZE, renormalise: bool = False,
                        **labels: Any) -> pd.DataFrame:
    """Bar lengths of every method of spec §5 over the grid ``S × x_input × T_c × T_l``.

    The methods are the models and, at every ``S`` with maps of two or more models,
    ``averageheatmaps`` and ``averagemeasurements`` (:func:`source_maps`). Each model's lengths
    are computed once per ``(S, x_input)`` and reused by ``averagemeasurements``.

    Parameters
    ----------
    maps : mapping
        ``(model, S) → (B, H, W)`` maps of the galaxies ``ids``, in that order.
    ids : sequence, length B
    images : array_like, shape (B, H, W, 3), optional
        Network inputs in [0, 1], for ``x_input``.
    x_input : sequence of bool
        Whether the map is multiplied by the grayscale image (searched).
    sources : sequence of str, optional
        Methods to measure (default: all available). A model is measured at every ``S`` it has
        maps for, an average at every ``S`` with two or more models.
    t_c, t_l, method, scale_to, renormalise
        As in :func:`measurement_table`.
    **labels
        Constant setting columns to add (e.g. ``algorithm="fast"``).

    Returns
    -------
    pandas.DataFrame
        Columns ``id, t_c, t_l, source, s_noise, x_input, *labels, length_px``.

    Raises
    ------
    ValueError
        A requested method has no maps at any ``S`` (e.g. an average with one model only).
    """
    levels = sorted({s for _, s in maps})
    available = {s: _models_at(maps, s) + (list(AVERAGE_METHODS)
                                            if len(_models_at(maps, s)) >= 2 else [])
                 for s in levels}
    if sources is not None:
        for src in sources:
            if not any(src in av for av in available.values()):
                need = (" (it needs the maps of at least two models at one S)"
                        if src in AVERAGE_METHODS else "")
                raise ValueError(f"method {src!r} has no maps{need}; available per S: "
                                 f"{available}")
    def grid_of(src: str, s: float, xi: bool) -> np.ndarray:
        [stack] = source_maps(maps, src, s, images=images, use_x_input=xi).values()
        return bar_lengths(stack, list(t_c), list(t_l), method, scale_to=scale_to,
                           renormalise=renormalise)

    tables = []
    for s in levels:
        for xi in map(bool, x_input):
            per_model: dict[str, np.ndarray] = {}  # each model's grid once per (S, x_input)

            def model_grid(model: str) -> np.ndarray:
                if model not in per_model:
                    per_model[model] = grid_of(model, s, xi)
                return per_model[model]

            for src in available[s]:
                if sources is not None and src not in sources:
                    continue
                if src == "averagemeasurements":
                    grid = np.mean([model_grid(m) for m in _models_at(maps, s)], axis=0)
                elif src == "averageheatmaps":
                    grid = grid_of(src, s, xi)
                else:
                    grid = model_grid(src)
                tables.append(_grid_frame(grid, ids, t_c, t_l, dict(
                    source=src, s_noise=float(s), x_input=xi, **labels)))
    return pd.concat(tables, ignore_index=True)


@dataclass(frozen=True)
class GridSearchResult:
    """Outcome of :func:`grid_search`.

    Attributes
    ----------
    table : pandas.DataFrame
        One row per setting with ``rho_validation`` and ``n_validation``, best first.
    best : dict
        The setting with the largest validation ρ.
    rho_validation : float
        Its validation ρ.
    rho_test : float
        Its faithful test ρ (= ``report.faithful.value``).
    report : RhoReport
        All §7 statistics of the best setting on the test galaxies.
    fit : OriginFit
        The authors' regression through the origin on the test galaxies, in their plot units
        (:func:`paper_plot_units`): measured ``L424·R90·0.02·0.396`` on catalogue
        ``length_scaled·R90·0.7``, weights ``1 / (0.17·catalogue + σ_meas)``.
    """

    table: pd.DataFrame
    best: dict
    rho_validation: float
    rho_test: float
    report: RhoReport
    fit: OriginFit = field(repr=False)


def grid_search(measurements: pd.DataFrame, catalogue: pd.DataFrame, validation_ids: Sequence,
                test_ids: Sequence, *, settings: Sequence[str] | None = None, id_col: str = "id",
                length_col: str = "length_px", sigma_col: str | None = None,
                catalogue_cols: Mapping[str, str] | None = None, units: str = "faithful",
                n_boot: int = 2000, n_perm: int = 2000, ci: float = 0.95,
                seed: int = 0) -> GridSearchResult:
    """Choose the measurement setting by validation ρ and report it on the test galaxies.

    Parameters
    ----------
    measurements : pandas.DataFrame
        Long table: one row per (galaxy, setting) with the galaxy id, the setting columns and the
        measured ``L424`` (see :func:`measurement_table`; concatenate tables of several models,
        noise levels or ``x_input`` choices).
    catalogue : pandas.DataFrame
        One row per galaxy with the id, ``length_scaled`` and ``r90`` (rename with
        ``catalogue_cols``, e.g. ``{"id": "objid", "r90": "PETROR90_R"}``).
    validation_ids, test_ids : sequences
        Galaxy ids of the two splits (e.g. from :func:`split_catalogue`).
    settings : sequence of str, optional
        Setting columns; default: every column other than id, length and sigma.
    id_col, length_col : str
        Column names in ``measurements``.
    sigma_col : str, optional
        Column of the per-galaxy measurement error ``σ_meas`` in faithful units (e.g.
        :func:`run_to_run_sigma` of ``L424·R90`` from two runs); default 0.
    units : {"faithful", "scaled"}
        Score for the selection: Pearson of ``L424·R90`` vs ``length_scaled·R90`` (the
        authors') or of ``L424`` vs ``length_scaled`` (no shared size factor).
    n_boot, n_perm, ci, seed
        Passed to :func:`rho_report`.

    Returns
    -------
    GridSearchResult
    """
    if units not in ("faithful", "scaled"):
        raise ValueError(f"units must be 'faithful' or 'scaled', got {units!r}")
    cols = {"id": id_col, "length_scaled": "length_scaled", "r90": "r90"}
    cols.update(catalogue_cols or {})
    missing = [c for c in cols.values() if c not in catalogue.columns]
    if missing:
        raise ValueError(f"catalogue lacks column(s) {missing}; pass catalogue_cols to rename")
    for c in (id_col, length_col) + ((sigma_col,) if sigma_col else ()):
        if c not in measurements.columns:
            raise ValueError(f"measurements lack column {c!r}; columns are "
                             f"{list(measurements.columns)}")
    if settings is None:
        settings = [c for c in measurements.columns if c not in (id_col, length_col, sigma_col)]
    settings = list(settings)
    if not settings:
        raise ValueError("no setting columns to search over")
    cat = catalogue[list(cols.values())].rename(columns={v: k for k, v in cols.items()})
    if cat["id"].duplicated().any():
        raise ValueError("catalogue ids must be unique")
    cat = cat.set_index("id")
    val_ids, test_ids = list(validation_ids), list(test_ids)
    overlap = set(val_ids) & set(test_ids)
    if overlap:
        raise ValueError(f"{len(overlap)} galaxies are in both the validation and test splits")
    if measurements.duplicated(subset=[id_col, *settings]).any():
        raise ValueError("measurements hold duplicate (galaxy, setting) rows")

    rows = []
    groups = measurements.groupby(settings, sort=True, dropna=False)
    for key, group in groups:
        g = group.set_index(id_col)
        ids = [i for i in val_ids if i in g.index]
        if len(ids) < 3:
            raise ValueError(f"setting {key!r} has {len(ids)} validation galaxies; need at least 3")
        meas = g.loc[ids, length_col].to_numpy(dtype=float)
        ls = cat.loc[ids, "length_scaled"].to_numpy(dtype=float)
        r = cat.loc[ids, "r90"].to_numpy(dtype=float)
        rho = pearson(meas * r, ls * r) if units == "faithful" else pearson(meas, ls)
        key = key if isinstance(key, tuple) else (key,)
        rows.append({**dict(zip(settings, key)), "rho_validation": rho, "n_validation": len(ids)})
    table = pd.DataFrame(rows).sort_values("rho_validation", ascending=False, kind="stable",
                                           na_position="last").reset_index(drop=True)
    if not np.isfinite(table["rho_validation"].iloc[0]):
        raise UndefinedRhoError("every setting has an undefined validation ρ (constant "
                                "lengths?)")
    best = {s: table.loc[0, s] for s in settings}

    chosen = measurements
    for s in settings:
        chosen = chosen[chosen[s].isna()] if pd.isna(best[s]) else chosen[chosen[s] == best[s]]
    chosen = chosen.set_index(id_col)
    ids = [i for i in test_ids if i in chosen.index]
    if len(ids) < 3:
        raise ValueError(f"the best setting has {len(ids)} test galaxies; need at least 3")
    meas = chosen.loc[ids, length_col].to_numpy(dtype=float)
    ls = cat.loc[ids, "length_scaled"].to_numpy(dtype=float)
    r = cat.loc[ids, "r90"].to_numpy(dtype=float)
    report = rho_report(meas, ls, r, n_boot=n_boot, n_perm=n_perm, ci=ci, seed=seed)
    sigma = chosen.loc[ids, sigma_col].to_numpy(dtype=float) if sigma_col else 0.0
    fit = paper_fit(meas, ls, r, sigma)
    return GridSearchResult(table=table, best=best,
                            rho_validation=float(table.loc[0, "rho_validation"]),
                            rho_test=report.faithful.value, report=report, fit=fit)


def grid_search_by(measurements: pd.DataFrame, catalogue: pd.DataFrame, validation_ids: Sequence,
                   test_ids: Sequence, *, by: Sequence[str], settings: Sequence[str],
                   skip_failed: bool = False, **kwargs: Any) -> dict[Hashable, GridSearchResult]:
    """:func:`grid_search` within each group of ``by`` (e.g. per method): each group's best.

    Parameters
    ----------
    measurements, catalogue, validation_ids, test_ids
        As in :func:`grid_search`.
    by : sequence of str
        Columns whose groups are searched separately (e.g. ``["source"]``).
    settings : sequence of str
        Setting columns searched within a group.
    skip_failed : bool
        Leave out groups without a finite validation ρ (:class:`UndefinedRhoError`, e.g. every
        setting measures one constant length); the caller finds them missing from the result.
        Other errors are raised.
    **kwargs
        Passed to :func:`grid_search` (``length_col``, ``units``, ``n_boot``, …).

    Returns
    -------
    dict
        Group key (a value, or a tuple for several ``by`` columns) → :class:`GridSearchResult`,
        in order of first appearance.
    """
    by = list(by)
    missing = [c for c in by if c not in measurements.columns]
    if missing:
        raise ValueError(f"measurements lack the group column(s) {missing}")
    out = {}
    for key, group in measurements.groupby(by if len(by) > 1 else by[0], sort=False):
        try:
            out[key] = grid_search(group.drop(columns=by), catalogue, validation_ids, test_ids,
                                   settings=list(settings), **kwargs)
        except UndefinedRhoError:
            if not skip_failed:
                raise
    return out
