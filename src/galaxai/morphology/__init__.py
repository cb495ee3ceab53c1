"""galaxai.morphology: saliency-based galaxy measurements.

Bar lengths from saliency maps by Algorithm 1 of Bhambra, Joachimi & Lahav (2022,
arXiv:2110.08288) and its fast and rotation-invariant variants (:mod:`.barlength`), the grid
search and honest correlation reports used to compare them with the Hoyle et al. (2011) catalogue
(:mod:`.statistics`, :mod:`.measurements`, :mod:`.search`; :mod:`.gridsearch` re-exports the
three) and stratified by galaxy properties (:mod:`.strata`), the classifiers' training recipe
(:mod:`.training`), the closed loop on simulated bars of known length (:mod:`.closedloop`) and
the train → saliency → bars steps on real Galaxy Zoo data: galaxy ids and catalogues
(:mod:`.catalogues`), classifier runs (:mod:`.classifier_runs`), saliency map files
(:mod:`.saliency_maps`) and bar lengths with their report (:mod:`.bars`).

:mod:`.barlength`, :mod:`.statistics`, :mod:`.measurements`, :mod:`.search` and :mod:`.strata`
(NumPy, SciPy, pandas) are imported with the package; the names of the torch-based modules are
imported on first use, so ``import galaxai.morphology`` stays light.
"""
from galaxai._lazy import lazy_exports
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
from galaxai.morphology.strata import STRATA, simulation_covariates, stratified_correlations

# Lazily imported public names: name -> submodule.
_LAZY = {
    **dict.fromkeys(("ClassifierTrainConfig", "ReduceLROnPlateau", "EarlyStopping", "augment", "as_batch",
                     "TrainResult", "train_model", "predict", "train_control",
                     "recalibrate_batchnorm"), "training"),
    **dict.fromkeys(("GZ_R90_PX", "ALGORITHMS", "ClosedLoopConfig", "ClosedLoopData",
                     "make_data", "run_closed_loop", "closed_loop_section"), "closedloop"),
    "InputError": "_common",
    **dict.fromkeys(("HOYLE_ENV", "find_hoyle_catalogue", "read_bar_catalogue", "parse_ids"),
                    "catalogues"),
    **dict.fromkeys(("MODEL_FILE", "SIDECAR_FILE", "TrainedClassifier", "train_classifier",
                     "load_classifier", "save_classifier"), "classifier_runs"),
    **dict.fromkeys(("DEFAULT_TARGET", "SaliencyRun", "compute_saliency", "MapSet", "read_maps"),
                    "saliency_maps"),
    **dict.fromkeys(("scaled_t_l", "BarsResult", "measure_bars"), "bars"),
}

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
    "AVERAGE_METHODS",
    "CATALOGUE_FRACTIONAL_ERROR",
    "HOYLE_SEED",
    "GridSearchResult",
    "OriginFit",
    "RhoEstimate",
    "RhoReport",
    "UndefinedRhoError",
    "average_heatmaps",
    "bootstrap_rho",
    "control_split",
    "fit_through_origin",
    "grid_search",
    "grid_search_by",
    "measurement_table",
    "method_measurements",
    "origin_fit_weights",
    "paper_fit",
    "paper_plot_units",
    "partial_pearson",
    "pearson",
    "rho_report",
    "run_to_run_sigma",
    "shuffle_catalogue",
    "source_lengths",
    "source_maps",
    "spearman",
    "split_catalogue",
    "STRATA",
    "simulation_covariates",
    "stratified_correlations",
    *_LAZY,
]


__getattr__, __dir__ = lazy_exports(__name__, _LAZY, globals())
