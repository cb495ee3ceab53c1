"""Catalogue splits and the grid search of the bar-length settings.

The authors choose the measurement setting (``x_input``, SmoothGrad noise ``S``, ``T_c``,
``T_l``, model) by the Pearson correlation with the Hoyle et al. (2011) catalogue on a validation
split and quote ρ on a test split (:func:`grid_search`, :func:`grid_search_by`), with every §7
companion statistic of :func:`galaxai.morphology.statistics.rho_report`.

References
----------
P. Bhambra, B. Joachimi, O. Lahav, MNRAS 511, 5032 (2022), arXiv:2110.08288
(``measure_barlengths.py``, ``control_model.py``).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Hashable, Mapping, Sequence

import numpy as np
import pandas as pd

from galaxai.morphology.statistics import (
    OriginFit,
    RhoReport,
    paper_fit,
    pearson,
    rho_report,
)

__all__ = [
    "HOYLE_SEED",
    "shuffle_catalogue",
    "split_catalogue",
    "control_split",
    "GridSearchResult",
    "UndefinedRhoError",
    "grid_search",
    "grid_search_by",
]


class UndefinedRhoError(ValueError):
    """No setting of a grid search has a finite validation ρ (e.g. constant lengths)."""


#: Seed of the authors' catalogue shuffle (``sample(frac=1, random_state=123)``).
HOYLE_SEED = 123


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
# grid search


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
