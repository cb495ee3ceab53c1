"""Explanation quality of a discriminator at scale: every method, several metric families, intervals.

:func:`evaluate_explanations` runs the compared attribution methods
(:data:`galaxai.workflows.COMPARED_METHODS`) on real targets and generated outputs at one or
more checkpoints and measures, per image (:mod:`galaxai.explain.quality`):

- faithfulness: region perturbation MoRF and LeRF with sky-like fill, AOPC against random
  orders and MoRF - LeRF, split by the discriminator's verdict on the image;
- localisation: artefacts planted at exact locations in real targets
  (:mod:`galaxai.diagnose.artefacts`); for the planted images D calls generated, the share of
  the "why generated" relevance mass and of the top-ranked pixels inside the artefact;
- randomisation sanity checks: SSIM / Spearman of ``|map|`` before vs after cascading and
  independent re-initialisation of D's layers; a method whose map survives the full cascade is
  flagged;
- sparseness (Gini) and sensitivity to sky-noise re-draws.

:func:`summary_table` turns the per-image records into means with bootstrap 95 % intervals and
:func:`paired_table` into paired differences of a reference method (Polarized-LRP) against the
others on the same images, with the number of images needed for the interval to exclude zero.
:func:`run_explain_eval` is the ``galaxai explain-eval`` job; :func:`quality_section` the demo's
compact version.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from galaxai.choices import ARTEFACTS, COMPARED_METHODS

__all__ = ["ExplainEvalConfig", "ExplainEvaluation", "METRICS", "evaluate_checkpoint",
           "evaluate_explanations", "summary_table", "paired_table", "write_evaluation",
           "checkpoints_of", "run_explain_eval", "quality_tables", "quality_section"]

#: metric -> (part, label, higher is better) of every per-image measure in the records.
METRICS: dict[str, tuple[str, str, bool]] = {
    "morf": ("faithfulness", "AOPC MoRF (raw)", True),
    "lerf": ("faithfulness", "AOPC LeRF (raw)", False),
    "random": ("faithfulness", "AOPC random order (raw)", False),
    "morf_vs_random": ("faithfulness", "AOPC MoRF − random", True),
    "lerf_vs_random": ("faithfulness", "AOPC LeRF − random", False),
    "morf_minus_lerf": ("faithfulness", "AOPC MoRF − LeRF", True),
    "gini": ("complexity", "sparseness (Gini)", True),
    "sensitivity": ("robustness", "sensitivity to sky-noise re-draw", False),
    "mass_accuracy": ("localisation", "relevance mass in artefact", True),
    "rank_accuracy": ("localisation", "rank accuracy in artefact", True),
    "area_share": ("localisation", "artefact area share (chance)", True),
    "cascading_spearman": ("randomisation", "Spearman after full cascade", False),
    "cascading_ssim": ("randomisation", "SSIM after full cascade", False),
    "independent_spearman": ("randomisation", "Spearman, one layer (mean)", False),
    "independent_ssim": ("randomisation", "SSIM, one layer (mean)", False),
}

#: Methods whose maps carry no sign (ranked by magnitude).
_MAGNITUDE_ONLY = frozenset({"smoothgrad", "grad_cam"})
#: A map whose Spearman correlation with itself after the full cascade stays above this
#: "survives randomisation" and is flagged.
SURVIVAL_SPEARMAN = 0.5


@dataclass(frozen=True)
class ExplainEvalConfig:
    """Sizes and settings of an explanation-quality evaluation.

    Attributes
    ----------
    methods : tuple of str
        Keys of :data:`galaxai.workflows.COMPARED_METHODS`.
    patch, steps : int
        Region side (px) and regions removed in region perturbation (8 and 25: a quarter of an
        80-px stamp).
    fill : {"sky", "zero"}
        What replaces a removed region (:func:`~galaxai.explain.faithfulness.pixel_flipping`).
    random_repeats : int
        Random orders per image for the AOPC reference.
    n_localise : int
        Real targets planted with artefacts, split equally between the kinds in ``artefacts``.
    artefacts : tuple of str
        Kinds of :data:`galaxai.choices.ARTEFACTS`.
    n_randomise : int
        Images of the randomisation sanity checks (every layer, both modes, every method).
    n_sensitivity, draws : int
        Images and sky-noise draws of the robustness measure.
    n_boot : int
        Bootstrap resamples of the intervals.
    batch_size : int
        Images per attribution call.
    seed : int
    """

    methods: tuple[str, ...] = COMPARED_METHODS
    patch: int = 8
    steps: int = 25
    fill: str = "sky"
    random_repeats: int = 1
    n_localise: int = 128
    artefacts: tuple[str, ...] = ARTEFACTS
    n_randomise: int = 8
    n_sensitivity: int = 32
    draws: int = 2
    n_boot: int = 1000
    batch_size: int = 32
    seed: int = 0

    def __post_init__(self) -> None:
        unknown = sorted(set(self.methods) - set(COMPARED_METHODS))
        if unknown or not self.methods:
            raise ValueError(f"methods {unknown or '()'} unknown; use some of {list(COMPARED_METHODS)}")
        bad = sorted(set(self.artefacts) - set(ARTEFACTS))
        if bad:
            raise ValueError(f"artefacts {bad} unknown; use some of {list(ARTEFACTS)}")
        if self.fill not in ("sky", "zero"):
            raise ValueError(f"fill={self.fill!r}; use 'sky' or 'zero'")

    @classmethod
    def preset(cls, name: str, **overrides: Any) -> "ExplainEvalConfig":
        """``small`` (the defaults) or ``tiny`` (tests: a few images per measure, 5 steps)."""
        presets = {"small": {}, "tiny": dict(steps=5, patch=4, n_localise=8, n_randomise=2,
                                             n_sensitivity=4, draws=1, n_boot=200, batch_size=8)}
        if name not in presets:
            raise ValueError(f"preset {name!r}; use one of {sorted(presets)}")
        return dataclasses.replace(cls(), **{**presets[name], **overrides})


@dataclass(frozen=True)
class ExplainEvaluation:
    """Per-image records and the per-layer randomisation curves of an evaluation.

    Attributes
    ----------
    records : pandas.DataFrame
        One row per (checkpoint, verdict, method, metric, image): ``value`` and ``source``
        (``real target`` / ``generated output`` / ``planted <kind>``).
    curves : pandas.DataFrame
        Mean SSIM / Spearman per (checkpoint, mode, step, layer, method).
    config : ExplainEvalConfig
    """

    records: pd.DataFrame
    curves: pd.DataFrame
    config: ExplainEvalConfig


def _maps(model, x, keys: Sequence[str], batch_size: int) -> tuple[dict[str, Any], Any]:
    """Decision maps ``{key: (B, H, W)}`` of every method and the logits, in batches."""
    import torch

    from galaxai.explain.quality import decision_maps
    from galaxai.workflows import explain_methods

    parts: dict[str, list] = {k: [] for k in keys}
    logits = []
    for lo in range(0, len(x), batch_size):
        chunk = x[lo:lo + batch_size]
        for k, attribution in explain_methods(model, chunk, keys).items():
            maps = decision_maps(attribution, magnitude_only=k in _MAGNITUDE_ONLY)
            if maps.shape[-2:] != chunk.shape[-2:]:
                maps = torch.nn.functional.interpolate(maps[:, None], size=chunk.shape[-2:],
                                                       mode="nearest")[:, 0]
            parts[k].append(maps.detach().cpu())
        logits.append(attribution.logits.detach().cpu())
    return {k: torch.cat(v) for k, v in parts.items()}, torch.cat(logits)


def _rows(out: list, checkpoint: str, verdicts, sources, images, method: str, metric: str,
          values) -> None:
    values = np.asarray(values, dtype=np.float64).reshape(-1)
    out.append(pd.DataFrame({"checkpoint": checkpoint, "verdict": np.asarray(verdicts),
                             "source": np.asarray(sources), "image": np.asarray(images),
                             "method": method, "metric": metric, "value": values}))


def _finite_mean(values) -> float:
    """Mean of the finite values (NaN, without a warning, when there is none)."""
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    return float(v.mean()) if v.size else float("nan")


def _verdicts(logits) -> np.ndarray:
    return np.where(np.asarray(logits) >= 0, "called real", "called generated")


def evaluate_checkpoint(discriminator, real: np.ndarray, generated: np.ndarray,
                        config: ExplainEvalConfig | None = None, *, checkpoint: str = "",
                        progress: bool = False) -> ExplainEvaluation:
    """Every measure of the module docstring for one discriminator.

    Parameters
    ----------
    discriminator : torch.nn.Module
        Maps ``(B, 3, H, W)`` images in [-1, 1] to logits.
    real, generated : ndarray
        ``(N, 3, H, W)`` real targets and generated outputs in the network range [-1, 1].
    config : ExplainEvalConfig, optional
    checkpoint : str
        Label written into the records.
    progress : bool
        Show a tqdm bar over the stages.

    Returns
    -------
    ExplainEvaluation
    """
    from galaxai.explain.saliency import eval_mode

    with eval_mode(discriminator) as D:  # the caller's training flags come back afterwards
        return _evaluate_checkpoint(D, real, generated, config, checkpoint, progress)


def _evaluate_checkpoint(D, real: np.ndarray, generated: np.ndarray,
                         config: ExplainEvalConfig | None, checkpoint: str,
                         progress: bool) -> ExplainEvaluation:
    import torch
    from tqdm.auto import tqdm

    from galaxai.diagnose.artefacts import plant_artefact
    from galaxai.explain import relevance_mass_accuracy, relevance_rank_accuracy
    from galaxai.explain.faithfulness import aopc, random_order_curves
    from galaxai.explain.quality import (faithfulness_scores, gini, map_similarity,
                                         noise_sensitivity, randomised_models)
    from galaxai.explain.saliency import forward_logits
    from galaxai.models.deblender import from_network, to_network

    cfg = config or ExplainEvalConfig()
    real, generated = (np.asarray(a, dtype=np.float32) for a in (real, generated))
    if real.ndim != 4 or generated.ndim != 4 or real.shape[1:] != generated.shape[1:]:
        raise ValueError(f"real {real.shape} and generated {generated.shape} must be (N, C, H, W) "
                         "image batches of one size")
    x = torch.from_numpy(np.concatenate([real, generated]))
    sources = np.array(["real target"] * len(real) + ["generated output"] * len(generated))
    ids = np.arange(len(x))
    keys = list(cfg.methods)
    stages = tqdm(total=5, desc=f"explain-eval {checkpoint}".strip(), disable=not progress)
    rows: list[pd.DataFrame] = []

    maps, logits = _maps(D, x, keys, cfg.batch_size)
    sign = torch.where(logits >= 0, 1.0, -1.0)
    verdicts = _verdicts(logits)
    stages.update()

    kw = dict(patch=cfg.patch, steps=cfg.steps, seed=cfg.seed, fill=cfg.fill)
    random_aopc = aopc(random_order_curves(D, x, repeats=cfg.random_repeats, **kw), sign)
    _rows(rows, checkpoint, verdicts, sources, ids, "random_order", "random", random_aopc)
    for k in keys:
        scores = faithfulness_scores(D, x, maps[k], sign, random_aopc=random_aopc, **kw)
        for metric in ("morf", "lerf", "morf_vs_random", "lerf_vs_random", "morf_minus_lerf"):
            _rows(rows, checkpoint, verdicts, sources, ids, k, metric, scores[metric])
        _rows(rows, checkpoint, verdicts, sources, ids, k, "gini", gini(maps[k]))
    stages.update()

    rng = np.random.default_rng(cfg.seed)
    order = rng.permutation(len(x))
    sub = order[:cfg.n_sensitivity]
    for k in keys if len(sub) else ():
        def explain(images, k=k):
            return _maps(D, images, [k], cfg.batch_size)[0][k]
        sens = noise_sensitivity(explain, x[sub], draws=cfg.draws, seed=cfg.seed)
        _rows(rows, checkpoint, verdicts[sub], sources[sub], sub, k, "sensitivity", sens)
    stages.update()

    sub = order[:cfg.n_randomise]
    before = {k: maps[k][sub] for k in keys}
    curves = []
    for mode in ("cascading", "independent") if len(sub) else ():
        per_layer = {k: {"ssim": [], "spearman": []} for k in keys}
        for step, (layer, randomised) in enumerate(randomised_models(D, mode, seed=cfg.seed)):
            after, _ = _maps(randomised, x[sub], keys, cfg.batch_size)
            for k in keys:
                sim = map_similarity(before[k], after[k])
                for metric, values in sim.items():
                    per_layer[k][metric].append(values)
                    curves.append({"checkpoint": checkpoint, "mode": mode, "step": step + 1,
                                   "layer": layer, "method": k, "metric": metric,
                                   "mean": _finite_mean(values)})
        for k in keys:
            for metric, values in per_layer[k].items():
                stacked = np.stack(values)  # (layers, images)
                summary = (stacked[-1] if mode == "cascading"
                           else np.array([_finite_mean(col) for col in stacked.T]))
                _rows(rows, checkpoint, verdicts[sub], sources[sub], sub, k, f"{mode}_{metric}", summary)
    stages.update()

    n_kind = cfg.n_localise // max(1, len(cfg.artefacts))
    if n_kind:
        real_ids = rng.permutation(len(real))[:n_kind]
        display = from_network(real[real_ids])
        clean_gen = (logits[real_ids] < 0).numpy()
        for j, kind in enumerate(cfg.artefacts):
            planted = plant_artefact(display, kind, seed=cfg.seed + j)
            xp = torch.from_numpy(to_network(planted.images).astype(np.float32))
            with torch.no_grad():
                called_gen = (forward_logits(D, xp) < 0).numpy()
            label, src = f"planted {kind}", f"planted {kind}"
            for who, called in (("D on clean", clean_gen), ("D on planted", called_gen)):
                _rows(rows, checkpoint, [label] * len(xp), [src] * len(xp), real_ids, who,
                      "called_generated", called.astype(float))
            if not called_gen.any():
                continue
            keep = np.flatnonzero(called_gen)
            pmaps, _ = _maps(D, xp[keep], keys, cfg.batch_size)
            mask = torch.from_numpy(planted.mask[keep])
            for k in keys:
                for metric, fn in (("mass_accuracy", relevance_mass_accuracy),
                                   ("rank_accuracy", relevance_rank_accuracy)):
                    _rows(rows, checkpoint, [label] * len(keep), [src] * len(keep), real_ids[keep],
                          k, metric, fn(pmaps[k], mask, mode="positive"))
                _rows(rows, checkpoint, [label] * len(keep), [src] * len(keep), real_ids[keep], k,
                      "area_share", mask.reshape(len(keep), -1).double().mean(1))
    stages.update()
    stages.close()
    return ExplainEvaluation(pd.concat(rows, ignore_index=True), pd.DataFrame(curves), cfg)


def evaluate_explanations(checkpoints: Mapping[str, tuple[Any, np.ndarray]], real: np.ndarray,
                          config: ExplainEvalConfig | None = None, *,
                          progress: bool = False) -> ExplainEvaluation:
    """:func:`evaluate_checkpoint` at several checkpoints, the records stacked.

    Parameters
    ----------
    checkpoints : mapping
        ``label -> (discriminator, generated)``: each checkpoint's D and the outputs of its own
        generator, ``(N, 3, H, W)`` in [-1, 1].
    real : ndarray
        ``(N, 3, H, W)`` real targets in [-1, 1], the same at every checkpoint.
    config : ExplainEvalConfig, optional
    progress : bool

    Returns
    -------
    ExplainEvaluation
    """
    if not checkpoints:
        raise ValueError("no checkpoint to evaluate; give at least one")
    parts = [evaluate_checkpoint(D, real, generated, config, checkpoint=label, progress=progress)
             for label, (D, generated) in checkpoints.items()]
    return ExplainEvaluation(pd.concat([p.records for p in parts], ignore_index=True),
                             pd.concat([p.curves for p in parts], ignore_index=True),
                             parts[0].config)


def _label(method: str) -> str:
    from galaxai.workflows import COMPARED_METHODS as LABELS

    return LABELS[method][0] if method in LABELS else method.replace("_", " ")


def summary_table(evaluation: ExplainEvaluation) -> pd.DataFrame:
    """Mean of every (checkpoint, verdict, method, metric) with its bootstrap 95 % interval.

    Returns
    -------
    pandas.DataFrame
        Columns ``checkpoint, part, verdict, method, metric, n, mean, low, high, higher is
        better`` and ``flag`` (``survives randomisation`` on the full-cascade Spearman row of a
        method whose mean stays above :data:`SURVIVAL_SPEARMAN`).
    """
    from galaxai.explain.quality import bootstrap_mean

    cfg, rows = evaluation.config, []
    keys = ["checkpoint", "verdict", "method", "metric"]
    for (ckpt, verdict, method, metric), group in evaluation.records.groupby(keys, sort=False):
        mean, lo, hi = bootstrap_mean(group["value"], n_boot=cfg.n_boot, seed=cfg.seed)
        part, label, higher = METRICS.get(metric, ("localisation", "share called generated", True))
        flag = ("survives randomisation" if metric == "cascading_spearman"
                and mean > SURVIVAL_SPEARMAN else "")
        rows.append({"checkpoint": ckpt, "part": part, "verdict": verdict, "method": _label(method),
                     "metric": label, "n": int(np.isfinite(group["value"]).sum()), "mean": mean,
                     "low": lo, "high": hi, "higher is better": higher, "flag": flag})
    return pd.DataFrame(rows)


def paired_table(evaluation: ExplainEvaluation, reference: str = "polarized_lrp",
                 against: Sequence[str] = ("lrp_zplus", "lrp_epsilon")) -> pd.DataFrame:
    """Paired differences ``reference - other`` on the same images, with bootstrap intervals.

    ``n needed`` is the number of images at which a normal 95 % interval of the mean difference,
    ``1.96 sd / sqrt(n)``, would be narrower than ``|mean|``: fewer images than that cannot rank
    the two methods on this metric and verdict. ``reference better`` reads the interval in the
    metric's direction: ``yes``, ``no`` (the other is better) or ``undecided``.
    """
    from galaxai.explain.quality import bootstrap_mean

    rec, cfg = evaluation.records, evaluation.config
    derived = ("area_share", "random", "morf", "lerf")  # chance level, or equal to a *_vs_random
    rec = rec[rec["metric"].isin(METRICS) & ~rec["metric"].isin(derived)]
    wide = rec.pivot_table(index=["checkpoint", "verdict", "metric", "image"], columns="method",
                           values="value", aggfunc="first")
    rows = []
    for other in against:
        if reference not in wide or other not in wide:
            continue
        diff = (wide[reference] - wide[other]).dropna()
        for (ckpt, verdict, metric), d in diff.groupby(level=[0, 1, 2], sort=False):
            mean, lo, hi = bootstrap_mean(d.to_numpy(), n_boot=cfg.n_boot, seed=cfg.seed)
            sd = float(d.std(ddof=1)) if len(d) > 1 else np.nan
            needed = (int(np.ceil((1.96 * sd / abs(mean)) ** 2)) if mean and np.isfinite(sd)
                      else np.nan)
            part, label, higher = METRICS[metric]
            ranked = lo > 0 or hi < 0
            better = ("undecided" if not ranked else
                      "yes" if (lo > 0) == higher else "no")
            rows.append({"checkpoint": ckpt, "part": part, "verdict": verdict,
                         "comparison": f"{_label(reference)} − {_label(other)}", "metric": label,
                         "n": len(d), "mean difference": mean, "low": lo, "high": hi,
                         "reference better": better, "n needed": needed})
    return pd.DataFrame(rows)


def write_evaluation(evaluation: ExplainEvaluation, out: str | Path, *, title: str = "",
                     note: str = "") -> Path:
    """Write ``summary``, ``paired`` (CSV + Parquet), ``records.parquet``, ``randomisation.csv``
    and an HTML report into ``out``; returns the report's ``index.html``. Writes are atomic."""
    from galaxai._atomic import atomic_write
    from galaxai.viz.report import Report

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    summary, paired = summary_table(evaluation), paired_table(evaluation)
    for name, frame in (("summary", summary), ("paired", paired)):
        atomic_write(out / f"{name}.csv", lambda p, f=frame: f.to_csv(p, index=False))
        atomic_write(out / f"{name}.parquet", lambda p, f=frame: f.to_parquet(p, index=False))
    atomic_write(out / "records.parquet", lambda p: evaluation.records.to_parquet(p, index=False))
    atomic_write(out / "randomisation.csv", lambda p: evaluation.curves.to_csv(p, index=False))
    report = Report(title or "galaxai explanation quality", note or None)
    report.add_section("Explanation quality")
    quality_tables(report, evaluation, summary, paired)
    return report.write(out / "report")


def quality_tables(report, evaluation: ExplainEvaluation, summary: pd.DataFrame | None = None,
                   paired: pd.DataFrame | None = None, *, parts: Sequence[str] | None = None) -> None:
    """Add the protocol text, the paired comparison and the per-part summary tables to the
    current section of ``report``."""
    summary = summary_table(evaluation) if summary is None else summary
    paired = paired_table(evaluation) if paired is None else paired
    cfg = evaluation.config
    parts = parts or list(dict.fromkeys(summary["part"]))
    counts = (evaluation.records.query("metric == 'morf_vs_random'")
              .groupby(["checkpoint", "verdict", "source"])["image"].nunique().rename("images")
              .reset_index())
    report.add_text((
        f"Region perturbation: {cfg.steps} regions of {cfg.patch}×{cfg.patch} px replaced by "
        f"{'sky-like noise' if cfg.fill == 'sky' else 'zeros'}, most relevant first (MoRF) or "
        "least relevant first (LeRF), AOPC in the "
        "direction of D's verdict minus the AOPC of a random order (MoRF − random > 0 and LeRF − "
        "random < 0 are faithful; MoRF − LeRF > 0 is faithful and needs no random reference). "
        "Intervals: bootstrap 95 % over images."))
    report.add_table(counts, "Images per verdict (D's own call)")
    if len(paired):
        report.add_table(paired[paired["part"].isin(parts)],
                         "Polarized-LRP against the original LRP rules on the same images: mean "
                         "paired difference with its 95 % interval; 'n needed' = images at which "
                         "the interval would exclude zero")
    for part in parts:
        table = summary[summary["part"] == part]
        if len(table):
            report.add_table(table, f"{part}: mean and 95 % interval per method")


def checkpoints_of(runs: Sequence[str | Path], max_checkpoints: int = 3) -> dict[str, Path]:
    """Checkpoints to evaluate: ``label -> path``.

    Each entry of ``runs`` is a run directory (up to ``max_checkpoints`` of its checkpoints,
    evenly spaced, the last included), a checkpoint directory, or the name of a shipped model
    (``small``, ``realsky``). Raises ``FileNotFoundError`` naming an entry that is none of these.
    """
    from galaxai.train.checkpoints import list_checkpoints, shipped_file, shipped_models

    found: dict[str, Path] = {}
    for run in runs:
        path = Path(run)
        if shipped_file(str(run), "deblender") is not None:
            found[f"shipped {run}"] = Path(str(run))
        elif (path / "checkpoints").is_dir():
            refs = list_checkpoints(path)
            if not refs:
                raise FileNotFoundError(f"{path} has no finished checkpoint yet; train first")
            keep = np.unique(np.linspace(0, len(refs) - 1, min(max_checkpoints, len(refs)))
                             .round().astype(int))
            found.update({f"{path.name}@{refs[i].iteration}": refs[i].path for i in keep})
        elif (path / "D.safetensors").is_file():
            found[path.name] = path
        else:
            raise FileNotFoundError(f"{run} is neither a run directory with checkpoints, a "
                                    f"checkpoint directory, nor a shipped model {shipped_models()}")
    return found


def _networks(path: Path):
    from galaxai.train.checkpoints import load_discriminator, load_generator, shipped_file

    g = shipped_file(str(path), "deblender") or path
    d = shipped_file(str(path), "discriminator") or path
    return load_generator(g)[0], load_discriminator(d)[0]


def run_explain_eval(runs: Sequence[str | Path], blends: np.ndarray, targets: np.ndarray,
                     out: str | Path, config: ExplainEvalConfig | None = None, *,
                     max_checkpoints: int = 3, progress: bool = False) -> tuple[Path, ExplainEvaluation]:
    """The ``galaxai explain-eval`` job: generate, evaluate at every checkpoint, write.

    Parameters
    ----------
    runs : sequence
        See :func:`checkpoints_of`.
    blends, targets : ndarray
        ``(N, 3, H, W)`` held-out blends and their real targets (galaxy A) in [0, 1].
    out : path-like
        Output folder (tables, records, report).
    config : ExplainEvalConfig, optional
    max_checkpoints : int
    progress : bool

    Returns
    -------
    (Path, ExplainEvaluation)
        The report's ``index.html`` and the evaluation.
    """
    import torch

    from galaxai.models.deblender import to_network

    real = to_network(np.asarray(targets, dtype=np.float32))
    models = {}
    for label, path in checkpoints_of(runs, max_checkpoints).items():
        G, D = _networks(path)
        with torch.no_grad():
            generated = np.concatenate([G(torch.from_numpy(np.asarray(blends[i:i + 64], np.float32)))[0]
                                        .numpy() for i in range(0, len(blends), 64)])
        models[label] = (D, generated)
    evaluation = evaluate_explanations(models, real, config, progress=progress)
    note = (f"{len(real)} real targets and {len(real)} generated outputs (galaxy A) per checkpoint; "
            f"checkpoints: {', '.join(models)}.")
    return write_evaluation(evaluation, out, note=note), evaluation


def quality_section(report, discriminator, real: np.ndarray, generated: np.ndarray, out_dir: Path,
                    *, title: str, methods: Sequence[str] = ("polarized_lrp", "lrp_zplus",
                                                             "lrp_epsilon", "input_gradient"),
                    seed: int = 0) -> pd.DataFrame:
    """The demo's compact evaluation: faithfulness and sparseness with intervals, by verdict.

    ``real`` and ``generated`` are ``(N, 3, H, W)`` in [-1, 1]; no localisation, randomisation
    or sensitivity (``galaxai explain-eval`` runs those). Writes ``quality.csv`` into ``out_dir``
    and returns the paired table.
    """
    cfg = ExplainEvalConfig(methods=tuple(methods), n_localise=0, n_randomise=0, n_sensitivity=0,
                            seed=seed)
    evaluation = evaluate_checkpoint(discriminator, real, generated, cfg, checkpoint="shipped")
    summary, paired = summary_table(evaluation), paired_table(evaluation)
    out_dir.mkdir(parents=True, exist_ok=True)
    summary.to_csv(out_dir / "quality.csv", index=False)
    report.add_section(title, "A compact version of `galaxai explain-eval` (faithfulness and "
                       "sparseness only) on these images; the README gives the full evaluation.")
    quality_tables(report, evaluation, summary, paired, parts=["faithfulness", "complexity"])
    return paired
