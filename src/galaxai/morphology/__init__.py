"""galaxai.morphology: saliency-based galaxy measurements.

Bar lengths from saliency maps by Algorithm 1 of Bhambra, Joachimi & Lahav (2022,
arXiv:2110.08288) and its fast and rotation-invariant variants (:mod:`.barlength`), and the grid
search and honest correlation reports used to compare them with the Hoyle et al. (2011) catalogue
(:mod:`.gridsearch`).
"""
from galaxai.morphology.barlength import (
    GZ_FRAME_SIZE,
    METHODS,
    STOP_THRESHOLDS,
    BarMeasurement,
    bar_length,
    bar_lengths,
    measure_bar,
    rescale_length,
    x_input,
)
from galaxai.morphology.gridsearch import (
    GridSearchResult,
    OriginFit,
    RhoEstimate,
    RhoReport,
    bootstrap_rho,
    control_split,
    fit_through_origin,
    grid_search,
    measurement_table,
    origin_fit_weights,
    partial_pearson,
    pearson,
    rho_report,
    run_to_run_sigma,
    spearman,
    split_catalogue,
)

__all__ = [
    "GZ_FRAME_SIZE",
    "METHODS",
    "STOP_THRESHOLDS",
    "BarMeasurement",
    "bar_length",
    "bar_lengths",
    "measure_bar",
    "rescale_length",
    "x_input",
    "GridSearchResult",
    "OriginFit",
    "RhoEstimate",
    "RhoReport",
    "bootstrap_rho",
    "control_split",
    "fit_through_origin",
    "grid_search",
    "measurement_table",
    "origin_fit_weights",
    "partial_pearson",
    "pearson",
    "rho_report",
    "run_to_run_sigma",
    "spearman",
    "split_catalogue",
]
