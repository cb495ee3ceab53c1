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

Layout
------
This module re-exports the public names of three modules: :mod:`.statistics` (correlations,
bootstrap intervals, the §7 report, the authors' fits), :mod:`.measurements` (bar lengths over
a settings grid, single models and model averages) and :mod:`.search` (catalogue splits and the
grid search itself).
"""
from __future__ import annotations

from galaxai.morphology.measurements import (
    AVERAGE_METHODS,
    average_heatmaps,
    measurement_table,
    method_measurements,
    source_lengths,
    source_maps,
)
from galaxai.morphology.search import (
    HOYLE_SEED,
    GridSearchResult,
    UndefinedRhoError,
    control_split,
    grid_search,
    grid_search_by,
    shuffle_catalogue,
    split_catalogue,
)
from galaxai.morphology.statistics import (
    CATALOGUE_FRACTIONAL_ERROR,
    OriginFit,
    RhoEstimate,
    RhoReport,
    bootstrap_rho,
    fit_through_origin,
    origin_fit_weights,
    paper_fit,
    paper_plot_units,
    partial_pearson,
    pearson,
    rho_report,
    run_to_run_sigma,
    spearman,
)

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
