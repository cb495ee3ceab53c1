"""Closed-loop validation of saliency bar lengths on simulated galaxies with known bars.

Bhambra, Joachimi & Lahav (2022) measure bar lengths from SmoothGrad maps of Galaxy Zoo
classifiers and compare them with volunteer-drawn lengths (Hoyle et al. 2011). Here the truth is
exact: galaxies are rendered with Ferrers bars of known projected length
(:mod:`galaxai.data.simulate`), given Galaxy-Zoo-style votes with a soft bar vote
(:mod:`galaxai.data.votes`), classifiers are trained on (image, 37 votes)
(:mod:`galaxai.morphology.training`), and the whole measurement of spec
``smoothgrad_barlength.md`` §2–§5 is run and scored against the **true projected bar length**
with the honest reports of §7:

1. **Data.** One stream of galaxies (seed ``seed``) trains and validates the classifiers; a
   second stream (seed ``seed + 1``, every eligible disk barred) provides ``n_eval`` barred
   galaxies, split like the Hoyle table (shuffle seed 123, first third = validation for the grid
   search, rest = test). Galaxies are rendered **directly at the network's input size**
   (``SimConfig.frame`` = ``image_size``, native SDSS 0.396"/px), so no resampling enters and
   a map pixel is a simulation pixel. Hard negatives come for free: unbarred disks seen up to
   60° inclination (spec §10; every disk may be barred, so inclination does not predict the
   bar) are ovals of axis ratio ≥ 0.5, and bulges have axis ratios down to 0.5; the spec's
   optional unbarred ovals (q ≈ 0.7) are not rendered separately.
2. **Classifiers** per architecture (``MorphologyConfig`` preset at a CPU width), from scratch.
   The ``small`` and ``tiny`` model presets give VGG16 batch norm (``vgg_batchnorm``, a
   deviation): without it VGG16 stayed at predict-the-mean here; ``paper`` is plain VGG16.
3. **SmoothGrad** of the pre-sigmoid ``Class3.1`` logit (``N`` = ``n_samples``, each
   ``S`` in ``s_noise``); ``averageheatmaps`` = mean of the models' maps (not renormalised).
4. **Bar lengths** by Algorithm 1 (``"fast"``, identical to ``"paper"``) and the rotation-invariant
   ``"elongation"`` over ``(x_input, S, T_c, T_l)``; ``averagemeasurements`` = mean of the
   models' lengths. A **no-network null** runs the same algorithm on the min–max normalised
   grayscale image itself (source ``"image"``): saliency must beat thresholding the light.
5. **Scoring** with :func:`galaxai.morphology.search.grid_search` (selection on validation,
   report on test). Units: the synthetic R90 is the disk's ``disk_r90_px``; each length enters
   as its GZ2-frame equivalent ``L_GZ = 50 · L_px / R90`` (GZ2 cut-outs have R90 = 50 px at
   424², spec §6) and the truth as ``length_scaled = L_true / (2 R90)``. The "faithful"
   statistic ``Pearson(L_GZ·R90, length_scaled·R90)`` is then exactly Pearson of measured vs
   true length in pixels; the constant-length null is Pearson of R90 vs the true length (what
   galaxy size alone gives), ``scaled`` drops the shared R90, ``partial_r90`` controls for it.
6. **Control**: an Xception-style regressor of ``length_scaled`` trained on ``n_control``
   barred galaxies of the classifier pool, a subset drawn from ``seed`` (the authors had 2,520
   labelled bars: 2,016 train + 504 validation), validated on the grid-search validation split
   and scored on the same test galaxies, in a fixed order.
7. **Fit** (§5): the authors' weighted regression through the origin
   (:func:`~galaxai.morphology.statistics.paper_fit`) of every saliency method at its chosen
   setting, on the mean of **two SmoothGrad runs** (seeds ``seed`` and ``seed + 1``; the
   second run only for the chosen ``S`` and only on the test galaxies) with ``σ_meas`` =
   :func:`~galaxai.morphology.statistics.run_to_run_sigma`; the ρ statistics stay those of
   run 1, on which the setting was chosen. The no-network null has one (noise-free) run. Slope,
   its error and RMSE are in the authors' plot units, where a perfect measurement has slope
   ``0.792/0.7 ≈ 1.131``.

8. **Strata** (§10): on the test galaxies, every method at its chosen setting and the control,
   within bins of the bar's angle to the nearest image axis (Algorithm 1's orientation
   dependence, §4), disk inclination, q_b, a/FWHM (projected semi-major axis over the r-band
   PSF FWHM), B/T and the bar's S/N against the sky
   (:func:`~galaxai.morphology.strata.simulation_covariates`): n, Pearson and Spearman ρ of
   measured vs true projected length and the median measured/true ratio, with bootstrap
   intervals (``stratified.csv``, the HTML report, ``summary.json``).

Not done here (open): the fit of the control, and ImageNet initialisation.

References
----------
P. Bhambra, B. Joachimi, O. Lahav, MNRAS 511, 5032 (2022), arXiv:2110.08288.
D. Hoyle et al., MNRAS 415, 3627 (2011).
D. Smilkov et al. (2017), arXiv:1706.03825 (SmoothGrad).
"""
from __future__ import annotations

import dataclasses
import io
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd
import torch

import galaxai
from galaxai._atomic import atomic_write_bytes, atomic_write_json, atomic_write_text
from galaxai.config import config_to_dict, write_config
from galaxai.data.simulate import SimConfig, bar_image, simulate
from galaxai.data.votes import VoteConfig, simulate_votes
from galaxai.explain.saliency import smoothgrad
from galaxai.models.morphology import ARCHITECTURES, GZ_COLUMNS, build_classifier, gz_column_index
from galaxai.morphology.barlength import measure_bar, x_input
from galaxai.morphology.classifier_runs import save_classifier
from galaxai.morphology.measurements import (AVERAGE_METHODS, measurement_table,
                                             method_measurements, source_lengths, source_maps)
from galaxai.morphology.search import (GridSearchResult, UndefinedRhoError, grid_search_by,
                                       split_catalogue)
from galaxai.morphology.statistics import (OriginFit, paper_fit, paper_plot_units, rho_report,
                                           run_to_run_sigma)
from galaxai.morphology.strata import simulation_covariates, stratified_correlations
from galaxai.morphology.training import ClassifierTrainConfig, predict, train_control, train_model
from galaxai.viz.render import heatmap, montage, scatter_plot
from galaxai.viz.report import Report

__all__ = [
    "GZ_R90_PX",
    "ALGORITHMS",
    "ClosedLoopConfig",
    "ClosedLoopData",
    "make_data",
    "run_closed_loop",
    "closed_loop_section",
]

#: R90 of a galaxy in a 424² GZ2 cut-out (0.02·petroR90_r arcsec/px, spec §6).
GZ_R90_PX = 50.0
#: Bar-length algorithms scored: ``"fast"`` (= Algorithm 1, ``"paper"``) and ``"elongation"``.
ALGORITHMS: tuple[str, ...] = ("fast", "elongation")
_TARGET = "Class3.1"
_STATISTICS = ("pearson_px", "size_null", "pearson_scaled", "partial_r90", "spearman_px",
               "permutation_null")
_SETTINGS = ("x_input", "s_noise", "t_c", "t_l")


# Spec §10 priors of every preset: i ≤ 60° (every disk may be barred, so inclination does not
# predict the bar), q_b from Hoyle's width/length truncated to [0.2, 0.45] (not clipped, which
# would pile a quarter of the bars onto q_b = 0.2) and the PSF of Galaxy Zoo cut-outs, FWHM
# 2.3–6 px at R90 = 50 px (SDSS seeing at 0.396"/px would blur half of the small preset's bars
# below two FWHM).
_SPEC10_SIM = dict(disk_cos_i_min=0.5, bar_q_range=(0.2, 0.45), bar_q_rule="truncate",
                   psf_fwhm_per_r90=(2.3 / 50, 6.0 / 50))


def _tiny_sim() -> SimConfig:
    return dataclasses.replace(SimConfig.preset("tiny"), frame=64, size_scale=0.6,
                               r50_px_range=(2.0, 10.0), bar_fraction=0.8, **_SPEC10_SIM)


@dataclass(frozen=True)
class ClosedLoopConfig:
    """Settings of :func:`run_closed_loop` (presets ``tiny``, ``small``, ``paper``).

    Parameters
    ----------
    sim : SimConfig
        Simulator; ``frame`` is the network input size, ``bar_fraction`` the barred share of
        eligible disks in the classifier pool.
    votes : VoteConfig
        Vote model of the classifier targets.
    train, control_train : ClassifierTrainConfig
        Recipes of the classifiers and of the control regressor (seeds are offset per model).
    model_preset : str
        :class:`~galaxai.models.morphology.MorphologyConfig` preset of every network.
    model_width : float or None
        Width override of that preset (``None`` keeps the preset's).
    architectures : tuple of str
        Classifiers trained and explained.
    n_train, n_val : int
        Classifier training and validation galaxies (barred and unbarred).
    n_eval : int
        Barred galaxies measured (grid-search validation + test).
    validation_fraction : float
        Share of ``n_eval`` used for the grid search (the authors' 1050 of 3150).
    n_samples, s_noise, chunk : int, tuple of float, int
        SmoothGrad ``N``, the noise levels ``S`` searched, noisy copies per pass.
    t_c, t_l : tuples
        Grid of Algorithm 1. ``t_l`` counts pixels: the authors' {10 … 50} at 224² scale with
        the map area, ≈ × (frame/224)².
    x_input : tuple of bool
        Whether the map is multiplied by the grayscale image (searched).
    algorithms : tuple of str
        Subset of :data:`ALGORITHMS`.
    control : bool
        Train and score the direct-regression control.
    n_control : int
        Labelled barred galaxies of the classifier pool the control trains on, a subset drawn
        from ``seed`` (the authors': 2,520 = 2,016 train + 504 validation; here it validates on
        the grid-search validation split).
    n_boot, n_perm : int
        Bootstrap resamples and permutations of every ρ.
    n_figure : int
        Test galaxies drawn in the Fig. 3 analogue.
    seed : int
        Seed of everything (data, volunteers, initialisation, augmentation, SmoothGrad noise).
    """

    sim: SimConfig = field(default_factory=lambda: dataclasses.replace(
        SimConfig.preset("paper"), frame=224, bar_fraction=0.6, **_SPEC10_SIM))
    votes: VoteConfig = field(default_factory=VoteConfig)
    train: ClassifierTrainConfig = field(default_factory=ClassifierTrainConfig)
    control_train: ClassifierTrainConfig = field(default_factory=ClassifierTrainConfig)
    model_preset: str = "paper"
    model_width: float | None = None
    architectures: tuple[str, ...] = ARCHITECTURES
    n_train: int = 20000
    n_val: int = 5000
    n_eval: int = 3150
    validation_fraction: float = 1 / 3
    n_samples: int = 256
    s_noise: tuple[float, ...] = (0.1, 0.15, 0.2, 0.25)
    chunk: int = 64
    t_c: tuple[float, ...] = (0.70, 0.75, 0.80, 0.85, 0.90)
    t_l: tuple[int, ...] = (10, 20, 30, 40, 50)
    x_input: tuple[bool, ...] = (False, True)
    algorithms: tuple[str, ...] = ALGORITHMS
    control: bool = True
    n_control: int = 2520
    n_boot: int = 2000
    n_perm: int = 2000
    n_figure: int = 6
    seed: int = 0

    PRESETS: ClassVar[tuple[str, ...]] = ("paper", "small", "tiny")

    def __post_init__(self) -> None:
        unknown = sorted(set(self.architectures) - set(ARCHITECTURES))
        if not self.architectures or unknown:
            raise ValueError(f"ClosedLoopConfig.architectures must be a non-empty subset of "
                             f"{ARCHITECTURES}, got {self.architectures!r}")
        bad_alg = sorted(set(self.algorithms) - set(ALGORITHMS))
        if not self.algorithms or bad_alg:
            raise ValueError(f"ClosedLoopConfig.algorithms must be a non-empty subset of "
                             f"{ALGORITHMS}, got {self.algorithms!r}")
        for name in ("n_train", "n_val", "n_eval", "n_samples", "chunk", "n_boot", "n_perm",
                     "n_control"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"ClosedLoopConfig.{name} must be ≥ 1, got "
                                 f"{getattr(self, name)!r}")
        n_val_split = int(self.n_eval * self.validation_fraction)
        if n_val_split < 3 or self.n_eval - n_val_split < 3:
            raise ValueError(f"n_eval={self.n_eval} with validation_fraction="
                             f"{self.validation_fraction} leaves fewer than 3 galaxies in a split")
        if not self.s_noise or not self.t_c or not self.t_l or not self.x_input:
            raise ValueError("s_noise, t_c, t_l and x_input must each list at least one value")

    @classmethod
    def preset(cls, name: str, *, epochs: int | None = None,
               **overrides: Any) -> "ClosedLoopConfig":
        """``tiny``: 64² frames, width-1/16 networks, 3 epochs, N = 8 (tests, < 60 s).
        ``small``: 96² frames, width-1/8 networks, ≤ 12 epochs on 1,200 galaxies, N = 32,
        180 barred test/validation galaxies (15–18 min on this 2-core CPU). ``paper``: 224²
        frames, the published networks, recipe, N = 256, S and grid, and the Hoyle sample size.
        ``n_control`` keeps the authors' ratio to ``n_eval`` (2,520 : 3,150 = 0.8).
        ``epochs`` overrides the maximum epochs of both recipes (classifiers and control);
        other keywords override fields."""
        presets: dict[str, dict[str, Any]] = {
            "paper": {},
            "small": dict(
                sim=dataclasses.replace(SimConfig.preset("small"), frame=96, size_scale=0.7,
                                        r50_px_range=(2.5, 14.0), bar_fraction=0.8,
                                        **_SPEC10_SIM),
                train=ClassifierTrainConfig.preset("small", epochs=12),
                control_train=ClassifierTrainConfig.preset("small", epochs=12),
                model_preset="tiny", model_width=0.125, n_train=1000, n_val=200, n_eval=180,
                n_control=144, n_samples=32, s_noise=(0.1, 0.2), chunk=32, t_l=(2, 4, 6, 7, 9),
                n_boot=1000, n_perm=1000),
            "tiny": dict(
                sim=_tiny_sim(), train=ClassifierTrainConfig.preset("tiny"),
                control_train=ClassifierTrainConfig.preset("tiny"), model_preset="tiny", n_train=96,
                n_val=32, n_eval=18, n_control=14, n_samples=8, s_noise=(0.1,), chunk=8,
                t_c=(0.8, 0.85), t_l=(2, 4), n_boot=200, n_perm=200, n_figure=3),
        }
        if name not in presets:
            raise ValueError(f"unknown ClosedLoopConfig preset {name!r}; choose one of "
                             f"{cls.PRESETS}")
        config = cls(**{**presets[name], **overrides})
        if epochs is None:
            return config
        return dataclasses.replace(
            config, train=dataclasses.replace(config.train, epochs=int(epochs)),
            control_train=dataclasses.replace(config.control_train, epochs=int(epochs)))


@dataclass(frozen=True)
class ClosedLoopData:
    """Rendered galaxies of one closed loop.

    Attributes
    ----------
    images, val_images : numpy.ndarray
        ``(N, F, F, 3)`` display images of the classifier training and validation galaxies.
    votes, val_votes : pandas.DataFrame
        Their 37 vote fractions (:func:`galaxai.data.votes.simulate_votes`).
    catalogue, val_catalogue : pandas.DataFrame
        Their simulation catalogues.
    eval_images : numpy.ndarray
        ``(n_eval, F, F, 3)`` barred galaxies to measure.
    eval_catalogue : pandas.DataFrame
        Their catalogue with ``id``, ``r90`` (= ``disk_r90_px``), ``length_true_px``
        (= ``bar_length_proj_px``) and ``length_scaled`` (= ``length_true_px / (2 r90)``).
    validation_ids, test_ids : list
        Grid-search validation and test ids (:func:`galaxai.morphology.split_catalogue`).
    """

    images: np.ndarray
    val_images: np.ndarray
    votes: pd.DataFrame
    val_votes: pd.DataFrame
    catalogue: pd.DataFrame
    val_catalogue: pd.DataFrame
    eval_images: np.ndarray
    eval_catalogue: pd.DataFrame
    validation_ids: list
    test_ids: list


def _with_truth(cat: pd.DataFrame) -> pd.DataFrame:
    out = cat.copy()
    out["id"] = [f"g{int(s)}-{int(i)}" for s, i in zip(out["seed"], out["index"])]
    out["r90"] = out["disk_r90_px"]
    out["length_true_px"] = out["bar_length_proj_px"]
    out["length_scaled"] = out["length_true_px"] / (2.0 * out["r90"])
    return out


def make_data(config: ClosedLoopConfig, *, progress: bool = False) -> ClosedLoopData:
    """Render the classifier pool (with votes) and the barred evaluation galaxies.

    Parameters
    ----------
    config : ClosedLoopConfig
    progress : bool

    Returns
    -------
    ClosedLoopData
    """
    sim, seed = config.sim, int(config.seed)
    pool = simulate(config.n_train + config.n_val, seed, sim, progress=progress)
    votes = simulate_votes(pool.catalogue, config.votes, seed=seed)
    n = config.n_train
    barred_sim = dataclasses.replace(sim, bar_fraction=1.0)
    images, rows, start = [], [], 0
    chunk = max(8, math.ceil(config.n_eval * 2.2))
    while sum(len(r) for r in rows) < config.n_eval:
        part = simulate(chunk, seed + 1, barred_sim, start=start, progress=progress)
        keep = part.catalogue["has_bar"].to_numpy(dtype=bool)
        images.append(part.display[keep])
        rows.append(part.catalogue[keep])
        start += chunk
        if start > 50 * config.n_eval + 1000:
            raise RuntimeError("the simulator produced too few barred galaxies; check "
                               "SimConfig (bar_fraction, size_scale)")
    eval_cat = _with_truth(pd.concat(rows, ignore_index=True)).iloc[:config.n_eval]
    eval_images = np.concatenate(images)[:config.n_eval]
    validation, test = split_catalogue(eval_cat.reset_index(drop=True),
                                       validation_fraction=config.validation_fraction)
    return ClosedLoopData(
        images=pool.display[:n], val_images=pool.display[n:], votes=votes.iloc[:n],
        val_votes=votes.iloc[n:], catalogue=_with_truth(pool.catalogue.iloc[:n]),
        val_catalogue=_with_truth(pool.catalogue.iloc[n:]), eval_images=eval_images,
        eval_catalogue=eval_cat.reset_index(drop=True),
        validation_ids=list(validation["id"]), test_ids=list(test["id"]))


def _model_overrides(config: ClosedLoopConfig) -> dict[str, Any]:
    out: dict[str, Any] = {"image_size": config.sim.frame}
    if config.model_width is not None:
        out["width"] = config.model_width
    return out


def _train_classifiers(config: ClosedLoopConfig, data: ClosedLoopData, out: Path,
                       progress: bool) -> tuple[dict[str, torch.nn.Module], pd.DataFrame]:
    models, rows = {}, []
    barred = data.val_catalogue["has_bar"].to_numpy(dtype=bool)
    for k, arch in enumerate(config.architectures):
        train_cfg = dataclasses.replace(config.train, seed=config.train.seed + 100 * k + config.seed)
        torch.manual_seed(train_cfg.seed)
        model = build_classifier(arch, config.model_preset, **_model_overrides(config))
        result = train_model(model, data.images, data.votes.to_numpy(), data.val_images,
                             data.val_votes.to_numpy(), train_cfg, progress=progress)
        atomic_write_text(out / f"history_{arch}.csv", result.history.to_csv(index=False))
        pred = predict(result.model, data.val_images, list(data.val_catalogue["id"]),
                       columns=GZ_COLUMNS)
        rmse = float(np.sqrt(np.mean((pred.to_numpy() - data.val_votes.to_numpy()) ** 2)))
        bar = pred[_TARGET].to_numpy()
        rows.append(dict(model=arch, epochs=len(result.history), val_rmse=rmse,
                         class31_barred=float(bar[barred].mean()) if barred.any() else math.nan,
                         class31_unbarred=float(bar[~barred].mean()) if (~barred).any()
                         else math.nan,
                         val_rmse_constant=float(np.sqrt(np.mean(
                             (data.val_votes.to_numpy() - data.votes.to_numpy().mean(0)) ** 2)))))
        models[arch] = result.model
        save_classifier(out / "classifiers" / arch, result.model, {
            "kind": "galaxai-morphology-classifier", "architecture": arch,
            "preset": config.model_preset, "model_config": config_to_dict(result.model.config),
            "train_config": config_to_dict(train_cfg), "columns": list(GZ_COLUMNS),
            "input": {"image_size": config.sim.frame,
                      "scale": "simulated display RGB in [0, 1] (Lupton asinh), rendered at the "
                               "input size (no resampling)"},
            "init": "from scratch", "data": "closed-loop simulation (../../config.toml)",
            **rows[-1], "galaxai_version": galaxai.__version__,
            "torch_version": torch.__version__})
    return models, pd.DataFrame(rows)


def _smoothgrad(config: ClosedLoopConfig, model: torch.nn.Module, images: np.ndarray, s: float,
                seed: int) -> np.ndarray:
    x = torch.as_tensor(images).permute(0, 3, 1, 2).float().contiguous()
    return smoothgrad(model, x, target=gz_column_index(_TARGET), n=config.n_samples, noise=s,
                      chunk=config.chunk, seed=seed).maps.numpy()


def _saliency(config: ClosedLoopConfig, models: dict[str, torch.nn.Module],
              images: np.ndarray, progress: bool) -> dict[tuple[str, float], np.ndarray]:
    jobs = [(arch, s) for arch in models for s in config.s_noise]
    if progress:
        from tqdm.auto import tqdm

        jobs = tqdm(jobs, desc="smoothgrad", unit="map set")
    return {(arch, s): _smoothgrad(config, models[arch], images, s, config.seed)
            for arch, s in jobs}


def _measure(config: ClosedLoopConfig, maps: dict[tuple[str, float], np.ndarray],
             data: ClosedLoopData) -> pd.DataFrame:
    """Long table of lengths: id, t_c, t_l, source, s_noise, x_input, algorithm, length_px,
    length_gz; sources are the models, their two averages and the no-network ``image`` null."""
    ids = list(data.eval_catalogue["id"])
    images = data.eval_images.astype(np.float64)
    unit = np.ones(images.shape[1:3])
    luma = np.stack([x_input(unit, im) for im in images])  # the grayscale image of x_input
    lo, hi = luma.min(axis=(1, 2), keepdims=True), luma.max(axis=(1, 2), keepdims=True)
    image_maps = (luma - lo) / np.where(hi > lo, hi - lo, 1.0)
    tables = []
    for alg in config.algorithms:
        tables.append(method_measurements(maps, ids, images=images, x_input=config.x_input,
                                          t_c=config.t_c, t_l=config.t_l, method=alg,
                                          scale_to=None, algorithm=alg))
        tables.append(measurement_table(image_maps, ids, t_c=config.t_c, t_l=config.t_l,
                                        method=alg, scale_to=None, source="image", s_noise=0.0,
                                        x_input=False, algorithm=alg))
    table = pd.concat(tables, ignore_index=True)
    r90 = data.eval_catalogue.set_index("id")["r90"]
    table["length_gz"] = GZ_R90_PX * table["length_px"] / table["id"].map(r90).to_numpy()
    return table


def _report_rows(report, **labels: Any) -> list[dict[str, Any]]:
    est = {"pearson_px": report.faithful, "size_null": report.constant_null,
           "pearson_scaled": report.scaled, "partial_r90": report.partial_r90,
           "spearman_px": report.spearman}
    rows = [dict(labels, statistic=k, value=e.value, low=e.low, high=e.high, n_test=report.n,
                 permutation_p=report.permutation_p) for k, e in est.items()]
    rows.append(dict(labels, statistic="permutation_null", value=report.permutation_mean,
                     low=report.permutation_interval[0], high=report.permutation_interval[1],
                     n_test=report.n, permutation_p=report.permutation_p))
    return rows


def _score(config: ClosedLoopConfig, table: pd.DataFrame, data: ClosedLoopData
           ) -> dict[tuple[str, str], GridSearchResult]:
    """Grid search (selection on validation, report on test) of every (source, algorithm).

    Methods without a finite validation ρ at any setting (one constant length for every galaxy,
    e.g. classifiers that learned nothing) are left out; the caller lists them."""
    catalogue = data.eval_catalogue[["id", "length_scaled", "r90"]]
    results = grid_search_by(table.drop(columns="length_px"), catalogue, data.validation_ids,
                             data.test_ids, by=["source", "algorithm"], settings=list(_SETTINGS),
                             length_col="length_gz", n_boot=config.n_boot, n_perm=config.n_perm,
                             seed=config.seed, skip_failed=True)
    if not results:
        raise UndefinedRhoError("every method measures one constant length for every validation "
                                "galaxy, so no ρ is defined; train the classifiers longer or on "
                                "more galaxies (n_train, epochs) or measure more galaxies (n_eval)")
    return results


def _chosen(table: pd.DataFrame, source: str, alg: str, best: dict, ids: list,
            column: str = "length_px") -> np.ndarray:
    """``column`` of ``ids`` (in that order) at one source's chosen setting."""
    sel = table[(table["source"] == source) & (table["algorithm"] == alg)]
    for key, value in best.items():
        sel = sel[sel[key] == value]
    return sel.set_index("id").loc[ids, column].to_numpy(dtype=float)


def _two_run_fits(config: ClosedLoopConfig, models: dict[str, torch.nn.Module],
                  data: ClosedLoopData, table: pd.DataFrame,
                  results: dict[tuple[str, str], GridSearchResult]
                  ) -> dict[tuple[str, str], tuple[OriginFit, int, float]]:
    """Spec §5 (module docstring, 7.): (fit, runs, mean σ_meas in plot units) per source."""
    ids = list(data.test_ids)
    pos = {i: k for k, i in enumerate(data.eval_catalogue["id"])}
    images = data.eval_images[[pos[i] for i in ids]]
    ev = data.eval_catalogue.set_index("id")
    ls, r90 = ev.loc[ids, "length_scaled"].to_numpy(), ev.loc[ids, "r90"].to_numpy()
    # second runs only of the (model, S) pairs the chosen settings use
    needed = {(arch, float(r.best["s_noise"])) for (source, _), r in results.items()
              if source != "image"
              for arch in (models if source in AVERAGE_METHODS else [source])}
    second_maps = {(arch, s): _smoothgrad(config, models[arch], images, s, config.seed + 1)
                   for arch, s in sorted(needed)}
    fits = {}
    for (source, alg), result in results.items():
        if source == "image":  # no noise: one run, σ_meas = 0 (the grid search's own fit)
            fits[(source, alg)] = (result.fit, 1, 0.0)
            continue
        best = result.best
        second = source_lengths(second_maps, source, float(best["s_noise"]), best["t_c"],
                                int(best["t_l"]), method=alg, images=images,
                                use_x_input=bool(best["x_input"]), scale_to=None)
        first = _chosen(table, source, alg, best, ids, "length_gz")
        second = GZ_R90_PX * second / r90
        sigma = run_to_run_sigma(first * r90, second * r90)
        fits[(source, alg)] = (paper_fit((first + second) / 2, ls, r90, sigma), 2,
                               float(np.mean(paper_plot_units(sigma, ls)[0])))
    return fits


def _result_rows(results: dict[tuple[str, str], GridSearchResult],
                 fits: dict[tuple[str, str], tuple[OriginFit, int, float]]
                 ) -> list[dict[str, Any]]:
    rows = []
    for (source, alg), result in results.items():
        fit, runs, sigma = fits[(source, alg)]
        labels = dict(method=source, algorithm="paper" if alg == "fast" else alg,
                      rho_validation=result.rho_validation,
                      **{f"best_{k}": v for k, v in result.best.items()})
        fit_columns = dict(fit_slope=fit.slope, fit_slope_err=fit.slope_err, fit_rmse=fit.rmse,
                           fit_rmse_identity=fit.rmse_identity, fit_runs=runs,
                           fit_sigma_meas=sigma)
        rows += [dict(row, **fit_columns) for row in _report_rows(result.report, **labels)]
    return rows


def _control_subset(config: ClosedLoopConfig, data: ClosedLoopData) -> np.ndarray:
    """Pool positions (sorted) of the ``n_control`` labelled bars the control learns from."""
    barred = np.flatnonzero(data.catalogue["has_bar"].to_numpy(dtype=bool))
    if len(barred) < config.n_control:
        raise ValueError(f"n_control={config.n_control} but the classifier pool holds only "
                         f"{len(barred)} barred galaxies; lower n_control or raise n_train or "
                         "sim.bar_fraction")
    rng = np.random.default_rng([int(config.seed), 7919])
    return np.sort(rng.choice(barred, size=config.n_control, replace=False))


def _control(config: ClosedLoopConfig, data: ClosedLoopData, out: Path, progress: bool
             ) -> tuple[list[dict[str, Any]], pd.Series]:
    keep = _control_subset(config, data)
    train = data.catalogue.iloc[keep]
    ev = data.eval_catalogue.set_index("id")
    pos = {i: k for k, i in enumerate(data.eval_catalogue["id"])}
    val_idx = [pos[i] for i in data.validation_ids]
    test_idx = [pos[i] for i in data.test_ids]
    cfg = dataclasses.replace(config.control_train,
                              seed=config.control_train.seed + 7919 + config.seed)
    result = train_control(data.images[keep], train["length_scaled"].to_numpy(),
                           data.eval_images[val_idx],
                           ev.loc[data.validation_ids, "length_scaled"].to_numpy(),
                           preset=config.model_preset, config=cfg, progress=progress,
                           **({} if config.model_width is None else {"width": config.model_width}))
    atomic_write_text(out / "history_control.csv", result.history.to_csv(index=False))
    pred = predict(result.model, data.eval_images[test_idx], data.test_ids,
                   columns=["length_scaled"])["length_scaled"]
    report = rho_report(100.0 * pred.to_numpy(), ev.loc[data.test_ids, "length_scaled"],
                        ev.loc[data.test_ids, "r90"], n_boot=config.n_boot,
                        n_perm=config.n_perm, seed=config.seed)
    return _report_rows(report, method="control", algorithm="regression"), pred


def _figures(config: ClosedLoopConfig, data: ClosedLoopData, maps, table: pd.DataFrame,
             best: dict, control: pd.Series | None, out: Path) -> None:
    ev = data.eval_catalogue.set_index("id")
    pos = {i: k for k, i in enumerate(data.eval_catalogue["id"])}
    # Fig. 3 analogue: image | averaged saliency | isolated bar mask | true bar. The averages
    # when they have a result, else the first model that has.
    def first(preferred: str, alg: str) -> str:
        return next(m for m in (preferred, *config.architectures) if (m, alg) in best)

    heat = first(AVERAGE_METHODS[0], config.algorithms[0])
    b = best[(heat, config.algorithms[0])]
    shown = [pos[gid] for gid in data.test_ids[:config.n_figure]]
    [shown_maps] = source_maps({k: v[shown] for k, v in maps.items()}, heat, b["s_noise"],
                               images=data.eval_images[shown],
                               use_x_input=bool(b["x_input"])).values()
    tiles = []
    for gid, k, m in zip(data.test_ids, shown, shown_maps):
        mask = measure_bar(m, b["t_c"], b["t_l"], config.algorithms[0]).mask
        truth = bar_image(ev.loc[gid], config.sim.frame) > 0
        tiles += [data.eval_images[k], heatmap(m),
                  np.repeat(mask[..., None].astype(np.float32), 3, -1),
                  np.repeat(truth[..., None].astype(np.float32), 3, -1)]
    montage(tiles, ncols=4, size=160, path=out / "fig3_saliency_bars.png")
    # Fig. 4 analogue: measured vs true length on the test galaxies.
    series = {}
    truth = ev.loc[data.test_ids, "length_true_px"].to_numpy()
    for alg in config.algorithms:
        lengths = first(AVERAGE_METHODS[1], alg)
        measured = _chosen(table, lengths, alg, best[(lengths, alg)], data.test_ids)
        series[f"{lengths}, {'paper' if alg == 'fast' else alg}"] = (truth, measured)
    if control is not None:
        series["control (regression)"] = (truth, control.to_numpy() * 2.0 *
                                          ev.loc[data.test_ids, "r90"].to_numpy())
    scatter_plot(series, lines={"1:1": 1.0}, xlabel="true projected bar length (px)",
                 ylabel="measured bar length (px)",
                 title="closed loop: measured vs true (test galaxies)",
                 path=out / "fig4_measured_vs_true.png")


def _stratified(config: ClosedLoopConfig, data: ClosedLoopData, table: pd.DataFrame,
                results: dict[tuple[str, str], GridSearchResult], control: pd.Series | None
                ) -> pd.DataFrame:
    """Spec §10: measured vs true projected length on the test galaxies, per stratum, for the
    chosen setting of every method (and the control)."""
    ids = list(data.test_ids)
    ev = data.eval_catalogue.set_index("id").loc[ids]
    covariates, truth = simulation_covariates(ev), ev["length_true_px"].to_numpy(dtype=float)
    measured = {(source, "paper" if alg == "fast" else alg): _chosen(table, source, alg, r.best,
                                                                       ids)
                for (source, alg), r in results.items()}
    if control is not None:
        measured[("control", "regression")] = (control.loc[ids].to_numpy() * 2.0
                                               * ev["r90"].to_numpy())
    frames = [stratified_correlations(m, truth, covariates, n_boot=config.n_boot,
                                      seed=config.seed).assign(method=source, algorithm=alg)
              for (source, alg), m in measured.items()]
    out = pd.concat(frames, ignore_index=True)
    return out[["method", "algorithm", *out.columns[:-2]]]


def _rho_cell(rows: pd.DataFrame, statistic: str) -> str:
    row = rows[rows["statistic"] == statistic]
    if row.empty:
        return "–"
    r = row.iloc[0]
    return f"{r['value']:.2f} [{r['low']:.2f}, {r['high']:.2f}]"


def closed_loop_section(report: Report, run_dir: str | Path, *, title: str,
                        strata: bool = True) -> pd.DataFrame:
    """Add a closed-loop run (:func:`run_closed_loop`) to ``report``.

    Reads ``classifiers.csv``, ``rho.csv``, the two figures and, with ``strata``,
    ``stratified.csv`` from ``run_dir``. Shows the classifiers' validation RMSE, one row per
    method (Pearson ρ of measured vs true projected length and partial ρ given R90 with 95 %
    bootstrap intervals, Spearman ρ, ρ of R90-scaled lengths, the setting chosen on the
    validation galaxies), a verdict against the size-only null computed from the table, and
    the strata. Returns the per-method table as shown.
    """
    run_dir = Path(run_dir)
    classifiers = pd.read_csv(run_dir / "classifiers.csv")
    rho = pd.read_csv(run_dir / "rho.csv")
    rows = []
    for (method, algorithm), group in rho.groupby(["method", "algorithm"], sort=False):
        first = group.iloc[0]
        setting = "–" if method == "control" else (
            f"S {first['best_s_noise']:g}, x_input {bool(first['best_x_input'])}, "
            f"T_c {first['best_t_c']:g}, T_l {first['best_t_l']:g}")
        rows.append({"method": method, "algorithm": algorithm,
                     "ρ measured vs true [95 % CI]": _rho_cell(group, "pearson_px"),
                     "partial ρ given R90": _rho_cell(group, "partial_r90"),
                     "Spearman ρ": _rho_cell(group, "spearman_px"),
                     "ρ of R90-scaled lengths": _rho_cell(group, "pearson_scaled"),
                     "chosen on validation": setting})
    table = pd.DataFrame(rows)
    null = rho[rho["statistic"] == "size_null"].iloc[0]
    pearson = rho[rho["statistic"] == "pearson_px"]
    beat = pearson[pearson["low"] > null["high"]]
    verdict = (f"Methods whose 95 % interval lies above the size-only null: "
               f"{', '.join(beat['method'] + ' (' + beat['algorithm'] + ')')}."
               if len(beat) else
               "No method's 95 % interval lies above the size-only null: at this size the "
               "measured lengths carry no bar-length information beyond galaxy size.")
    report.add_section(title, (
        "Bhambra et al. (2022) measure bar lengths from SmoothGrad maps of CNNs trained on "
        "Galaxy Zoo votes (Algorithm 1). The closed loop checks this where the truth is known: "
        "simulated barred and unbarred galaxies with Galaxy-Zoo-style votes, three classifiers "
        "trained on them, SmoothGrad maps of the bar logit, Algorithm 1 ('paper') and its "
        "rotation-invariant variant ('elongation'), settings chosen on a validation split, ρ on "
        f"{int(pearson['n_test'].iloc[0])} barred test galaxies. Larger galaxies have longer "
        "bars, so ρ is compared with the size-only null ρ(R90, true length) = "
        f"{null['value']:.2f} [{null['low']:.2f}, {null['high']:.2f}]; the partial ρ given R90 "
        "is the bar-length information left when size is held fixed."))
    report.add_table(classifiers[["model", "epochs", "val_rmse", "val_rmse_constant",
                                  "class31_barred", "class31_unbarred"]],
                     "Classifiers: validation RMSE vs predict-the-mean, mean Class3.1 output on "
                     "barred / unbarred galaxies", float_format="{:.3f}")
    report.add_table(table, "Measured vs true projected bar length on the test galaxies")
    report.add_text(verdict)
    summary = run_dir / "summary.json"
    undefined = json.loads(summary.read_text())["undefined_rho"] if summary.is_file() else []
    if undefined:
        report.add_text(f"Left out: {', '.join(undefined)}: every setting measured one constant "
                        "length on the validation galaxies (e.g. a PSF-sized core, or maps whose "
                        "maximum stays ≤ 0.5), so no ρ is defined.")
    for name, caption in (("fig3_saliency_bars.png", "Fig. 3 analogue: image | averaged saliency "
                           "map | Algorithm 1 bar mask | true bar"),
                          ("fig4_measured_vs_true.png", "Fig. 4 analogue: measured vs true "
                           "projected bar length")):
        if (run_dir / name).is_file():
            report.add_figure(run_dir / name, caption)
    if strata and (run_dir / "stratified.csv").is_file():
        stratified = pd.read_csv(run_dir / "stratified.csv")
        report.add_text(
            "Stratified (stratified.csv): per bin of each property, n, Pearson and Spearman ρ of "
            "measured vs true projected length and the median measured/true ratio, with "
            "bootstrap 95 % intervals (NaN below 3 galaxies). bar_pa_axis_deg: angle of the "
            "projected bar to the nearest image axis (Algorithm 1's pixel correlation vanishes "
            "at 0); a_over_fwhm: projected semi-major axis over the r-band PSF FWHM (< 2: not "
            "reliably seen); snr_bar: bar flux over the sky noise in its projected footprint.")
        for name, group in stratified.groupby("stratum", sort=False):
            report.add_table(group.drop(columns=["stratum", "low_edge", "high_edge"]), name,
                             float_format="{:.2f}")
    return table


def run_closed_loop(out_dir: str | Path, config: ClosedLoopConfig | None = None,
                    progress: bool = False) -> pd.DataFrame:
    """Render, vote, train, explain, measure and score: the whole closed loop (module docstring).

    Parameters
    ----------
    out_dir : str or Path
        Run directory; receives ``config.toml``, ``rho.csv`` (the returned table),
        ``classifiers.csv``, ``classifiers/<architecture>/`` (each a run directory of
        :func:`~galaxai.morphology.classifier_runs.load_classifier`), ``history_*.csv``,
        ``measurements.csv.gz``, ``stratified.csv``
        (:func:`~galaxai.morphology.strata.stratified_correlations` of every method at its
        chosen setting and of the control, on the test galaxies), ``summary.json``, the
        figures ``fig3_saliency_bars.png`` and ``fig4_measured_vs_true.png`` and
        ``report/index.html``.
    config : ClosedLoopConfig, optional
        Default ``ClosedLoopConfig.preset("small")``.
    progress : bool
        Show tqdm progress bars.

    Returns
    -------
    pandas.DataFrame
        Tidy table, one row per (method, algorithm, statistic): ``method`` ∈ architectures,
        ``averageheatmaps``, ``averagemeasurements``, ``image`` (no-network null), ``control``;
        ``algorithm`` ∈ ``paper``, ``elongation``, ``regression``; ``statistic`` ∈
        ``pearson_px`` (measured vs true projected length), ``size_null`` (R90 vs true),
        ``pearson_scaled`` (both divided by R90), ``partial_r90``, ``spearman_px``,
        ``permutation_null``; ``value, low, high`` (bootstrap or null interval), ``n_test``,
        ``permutation_p``, ``rho_validation``, the chosen ``best_*`` settings and the §5 fit
        at them (module docstring, 7.): ``fit_slope``, ``fit_slope_err``, ``fit_rmse``,
        ``fit_rmse_identity`` (authors' plot units), ``fit_runs`` and ``fit_sigma_meas`` (mean
        σ_meas, plot units); the fit columns are empty for the control.
    """
    config = ClosedLoopConfig.preset("small") if config is None else config
    if not isinstance(config, ClosedLoopConfig):
        raise TypeError(f"config must be a ClosedLoopConfig (e.g. ClosedLoopConfig.preset("
                        f"'tiny')), got {type(config).__name__}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    write_config(out / "config.toml", config)
    data = make_data(config, progress=progress)
    models, classifiers = _train_classifiers(config, data, out, progress)
    atomic_write_text(out / "classifiers.csv", classifiers.to_csv(index=False))
    maps = _saliency(config, models, data.eval_images, progress)
    table = _measure(config, maps, data)
    buf = io.BytesIO()
    table.to_csv(buf, index=False, compression="gzip")
    atomic_write_bytes(out / "measurements.csv.gz", buf.getvalue())
    results = _score(config, table, data)
    fits = _two_run_fits(config, models, data, table, results)
    rows = _result_rows(results, fits)
    control = None
    if config.control:
        control_rows, control = _control(config, data, out, progress)
        rows += control_rows
    result = pd.DataFrame(rows)
    atomic_write_text(out / "rho.csv", result.to_csv(index=False))
    _figures(config, data, maps, table, {k: r.best for k, r in results.items()}, control, out)
    stratified = _stratified(config, data, table, results, control)
    atomic_write_text(out / "stratified.csv", stratified.to_csv(index=False))
    undefined = [f"{source} ({'paper' if alg == 'fast' else alg})"
                 for (source, alg), _ in table.groupby(["source", "algorithm"], sort=False)
                 if (source, alg) not in results]
    report = out / "report" / "index.html"
    atomic_write_json(out / "summary.json", {
        "undefined_rho": undefined,
        "n_eval": len(data.eval_catalogue), "n_validation": len(data.validation_ids),
        "n_test": len(data.test_ids), "n_control": config.n_control if config.control else 0,
        "weights": "from scratch (no ImageNet weights file)",
        "classifiers": classifiers.to_dict(orient="records"),
        "origin_fit_units": "authors' plot units (paper_fit); a perfect measurement has slope "
                            "0.792/0.7 ≈ 1.131",
        "origin_fit": [dict(method=source, algorithm="paper" if alg == "fast" else alg,
                            slope=fit.slope, slope_err=fit.slope_err, rmse=fit.rmse,
                            rmse_identity=fit.rmse_identity, n=fit.n, runs=runs,
                            sigma_meas=sigma)
                       for (source, alg), (fit, runs, sigma) in fits.items()],
        "stratified_covariates": "bar_pa_axis_deg (bar_pa_deg folded to [0, 45] from the "
                                 "nearest image axis), disk_incl_deg, bar_q, a_over_fwhm "
                                 "(bar_length_proj_px / 2 / psf_fwhm_r_px), bt, snr_bar "
                                 "(flux_r_bar / (sky_sigma_r·√(π a² q_b cos i)))",
        "stratified": stratified.to_dict(orient="records"), "report": str(report)})
    html = Report("galaxai closed loop: saliency bar lengths vs true bar lengths", str(out))
    closed_loop_section(html, out, title="Measured vs true bar lengths on simulated galaxies")
    html.write(report.parent)
    return result

