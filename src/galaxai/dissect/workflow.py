"""The dissection pipeline behind ``galaxai dissect``: units, concepts, curves, artifacts, report.

Sets, from one simulated blend store with component truth (its test rows, or all rows):

* **threshold set**: the first ``n`` blends, where unit thresholds are set;
* **dissection set**: the next ``n`` blends, where IoU / IQR and labels are counted (fewer than
  ``2n`` rows: the store is split in halves);
* **scoring blends**: the first ``effect_n`` of the dissection set, where the ACE α optimisation
  and the artifact scores are computed;
* **held-out blends**: the first ``effect_n`` of the threshold set, where ablation curves and
  artifact removal are judged (held out from the IoU labels, the α optimisation and the artifact
  scores).

Headline concepts (default ``galaxy_B`` and the component concept with the best unit IoU) are each
studied at the layer holding their best-IoU unit (or at ``concept_layer``): units ranked by IoU
and by ACE α, ablation curves for n ∈ ``sizes`` against ``n_random`` random sets of the same
size. Artifact units are scored on every dissected layer (:mod:`galaxai.dissect.artifacts`) and
the top ``artifact_k`` of each score are removed on the held-out blends, against random sets.

Costly parts are cached under ``OUT/cache`` (a file per part, named by a hash of what it
depends on: the generator's weights, the blends, the settings), so a re-run skips finished parts
and an interrupted run resumes.
"""
from __future__ import annotations

import hashlib
import json
import pickle
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import pandas as pd
import torch
from torch import nn

from galaxai._atomic import atomic_write_bytes, atomic_write_json, atomic_write_text
from galaxai.dissect.artifacts import (artifact_overlap, artifact_removal, artifact_scores,
                                       artifact_top)
from galaxai.dissect.concepts import Concepts, store_concepts
from galaxai.dissect.effects import SIZES, EffectSet, ablation_curve, ace_alpha
from galaxai.dissect.hooks import deblender_layers, record
from galaxai.dissect.units import ConceptSet, UnitDissection, dissect_units

__all__ = ["DissectConfig", "DissectionSets", "load_sets", "run_dissection", "headline",
           "demo_section"]

#: Unit-set size of the headline numbers (GAN Dissection's 20 of 512 units is ~4 %).
HEADLINE_N = 4


@dataclass(frozen=True)
class DissectConfig:
    """Settings of :func:`run_dissection`.

    Parameters
    ----------
    layers : tuple of str, optional
        Layers to dissect (default: all of the deblender's, or every conv layer's output).
    n : int
        Blends per set (threshold set and dissection set).
    effect_n : int
        Scoring blends and held-out blends for the causal parts.
    sizes : tuple of int
        Unit-set sizes of the ablation curves.
    n_random : int
        Random unit sets per size (≥ 5 for the reported intervals).
    ace_epochs : int
        Epochs of the α optimisation (0: no ACE ranking).
    concepts : tuple of str, optional
        Headline concepts (default ``galaxy_B`` and the best component concept).
    concept_layer : str, optional
        Study the headline concepts at this layer (default: each at its best-IoU unit's layer).
    artifacts : bool
        Score artifact units (one ablation per unit on the scoring blends).
    artifact_k : int
        Units removed per artifact score.
    top : int
        Length of the per-concept and per-score top lists.
    gallery_units : int
        Units shown in the gallery (the most interpretable first).
    gallery_top : int
        Samples per unit in the gallery.
    batch_size : int
    seed : int
    """

    layers: tuple[str, ...] | None = None
    n: int = 1000
    effect_n: int = 64
    sizes: tuple[int, ...] = SIZES
    n_random: int = 5
    ace_epochs: int = 10
    concepts: tuple[str, ...] | None = None
    concept_layer: str | None = None
    artifacts: bool = True
    artifact_k: int = HEADLINE_N
    top: int = 20
    gallery_units: int = 48
    gallery_top: int = 20
    batch_size: int = 16
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("n", "effect_n", "top", "gallery_top", "batch_size", "artifact_k"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be ≥ 1, got {getattr(self, name)}")
        if self.n_random < 0 or self.ace_epochs < 0 or self.gallery_units < 0:
            raise ValueError("n_random, ace_epochs and gallery_units must be ≥ 0")
        if not self.sizes or min(self.sizes) < 1:
            raise ValueError(f"sizes must be positive unit counts, got {self.sizes}")


@dataclass
class DissectionSets:
    """Blends, truth concepts and targets of one store, split into the pipeline's sets."""

    blends: np.ndarray
    concepts: Concepts
    targets: list[np.ndarray]
    threshold_rows: np.ndarray
    dissection_rows: np.ndarray
    source: str = ""
    notes: list[str] = field(default_factory=list)

    def _sub(self, rows) -> Concepts:
        c = self.concepts
        return Concepts(c.names, c.categories, c.masks[rows])

    def concept_set(self, rows, batch_size: int) -> ConceptSet:
        """A :class:`ConceptSet` of ``rows``."""
        return ConceptSet(torch.from_numpy(self.blends[rows]), self._sub(rows), batch_size)

    def effect_set(self, rows, batch_size: int) -> EffectSet:
        """An :class:`EffectSet` of ``rows`` with both targets."""
        return EffectSet(torch.from_numpy(self.blends[rows]), self._sub(rows),
                         targets=[t[rows] for t in self.targets], batch_size=batch_size)


def load_sets(store_path: str | Path, n: int) -> DissectionSets:
    """The threshold and dissection sets of a simulated blend store (see the module docstring).

    Raises
    ------
    ValueError
        The folder is no blend store, has no component truth, or fewer than 2 blends.
    """
    from galaxai.data.store import BlendStore

    path = Path(store_path)
    if (path / "galaxies.zarr").is_dir():
        raise ValueError(f"{path} is a galaxy pool: its galaxies carry no per-component truth "
                         "once blended on the fly. Dissect a blend store instead: "
                         "`galaxai data blend --out STORE --source simulated --test-fraction 1`")
    try:
        store = BlendStore(path, split="test", components=True)
        if not len(store):
            store = BlendStore(path, components=True)
    except (FileNotFoundError, OSError, KeyError, ValueError) as exc:
        raise ValueError(f"{path} is not a readable blend store ({exc}); make one with "
                         "`galaxai data blend --out DIR --test-fraction 1`") from exc
    m = len(store)
    if m < 2:
        raise ValueError(f"{path} holds {m} blend(s); dissection needs at least 2 (one set sets "
                         "the thresholds, another is dissected)")
    k = min(int(n), m // 2)
    notes = [] if k == n else [f"the store holds {m} blends, fewer than 2 × n = {2 * n}: each "
                                f"set has {k} blends"]
    rows = np.arange(2 * k)
    blends, concepts = store_concepts(store, rows)
    arrays = store.to_arrays(2 * k, ("target_a", "target_b"))
    return DissectionSets(blends, concepts, [arrays["target_a"], arrays["target_b"]],
                          np.arange(k), np.arange(k, 2 * k), str(path), notes)


class _Cache:
    """Files under ``folder`` named by a part and a hash of everything they depend on."""

    def __init__(self, folder: Path, base: dict[str, Any]) -> None:
        self.folder, self.base = folder, base

    def path(self, part: str, ext: str, **deps: Any) -> Path:
        text = json.dumps({**self.base, **deps, "part": part}, sort_keys=True, default=str)
        return self.folder / f"{part}-{hashlib.sha256(text.encode()).hexdigest()[:12]}.{ext}"

    def get(self, part: str, compute: Callable[[], Any], **deps: Any) -> Any:
        """The cached object of ``part``, or ``compute()`` written atomically (pickle)."""
        path = self.path(part, "pkl", **deps)
        if path.is_file():
            with open(path, "rb") as fh:
                return pickle.load(fh)
        value = compute()
        atomic_write_bytes(path, pickle.dumps(value))
        return value


def _weights_digest(model: nn.Module) -> str:
    h = hashlib.sha256()
    for name, tensor in model.state_dict().items():
        h.update(name.encode())
        h.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def _default_layers(model: nn.Module) -> list[str]:
    names = list(deblender_layers(model))
    if names:
        return names
    return [n for n, m in model.named_modules() if isinstance(m, nn.Conv2d)]


def _units_table(result: UnitDissection) -> pd.DataFrame:
    cols = ["layer", "unit", "threshold", "label", "iou", "iqr", "interpretable", "fraction"]
    return result.units[cols]


def _best_component(result: UnitDissection, categories: Sequence[str]) -> str | None:
    best, name = -1.0, None
    for k, (c, cat) in enumerate(zip(result.concepts, categories)):
        if cat != "component":
            continue
        top = max(float(np.nanmax(v[:, k])) for v in result.iou.values())
        if top > best:
            best, name = top, c
    return name


def _concept_layer(result: UnitDissection, concept: str, min_units: int) -> str:
    """The layer of ``concept``'s best-IoU unit among layers with ≥ ``min_units`` units."""
    ranking = result.ranking(concept, "iou")
    sizes = {layer: v.shape[0] for layer, v in result.iou.items()}
    ok = ranking[ranking.layer.map(sizes) >= min_units]
    return str((ok if len(ok) else ranking).iloc[0]["layer"])


def headline(curves: pd.DataFrame, n: int = HEADLINE_N) -> pd.DataFrame:
    """Share removed by the top-``n`` units per ranking vs the random ``n``-unit sets.

    Returns one row per (concept, layer): ``share_<ranking>`` for each ranking (with the set's
    ``units_<ranking>`` and its ΔPSNR per branch ``dpsnr_<j>_<ranking>``, where known), the
    random sets' ``random_mean``, ``random_min`` and ``random_max``, and ``random_sets``.
    """
    rows = []
    for (concept, layer), g in curves[curves.n == n].groupby(["concept", "layer"], sort=False):
        row: dict[str, Any] = {"concept": concept, "layer": layer, "n": n}
        for _, r in g[g.kind == "top"].iterrows():
            row[f"share_{r.ranking}"] = r.share_removed
            row[f"units_{r.ranking}"] = r.units
            row.update({f"{k}_{r.ranking}": r[k] for k in r.index
                        if k.startswith("dpsnr_") and pd.notna(r[k])})
        rnd = g[g.kind == "random"].share_removed
        row.update(random_mean=rnd.mean(), random_min=rnd.min(), random_max=rnd.max(),
                   random_sets=len(rnd))
        rows.append(row)
    return pd.DataFrame(rows)


def _removal_summary(removal: pd.DataFrame) -> pd.DataFrame:
    rows = []
    for score, g in removal.groupby("score", sort=False):
        top = g[g.kind != "random"].iloc[0]
        rnd = g[g.kind == "random"]
        row = {"score": score, "units": top.units, "n": len(top.units.split())}
        for col in [c for c in g.columns if c.startswith("dpsnr_") and c[-1].isdigit()]:
            row.update({col: top[col], f"{col}_lo": top[f"{col}_lo"], f"{col}_hi": top[f"{col}_hi"],
                        f"{col}_random_mean": rnd[col].mean(), f"{col}_random_min": rnd[col].min(),
                        f"{col}_random_max": rnd[col].max()})
        rows.append(row)
    return pd.DataFrame(rows)


def run_dissection(generator: nn.Module, sets: DissectionSets, out: str | Path,
                   config: DissectConfig | None = None, *, discriminator: nn.Module | None = None,
                   model_name: str = "", progress: bool = False,
                   log: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Run the pipeline and write its tables, figures and ``report/index.html`` under ``out``.

    Parameters
    ----------
    generator : torch.nn.Module
        The deblender generator (or any image-to-image generator returning its branches).
    sets : DissectionSets
        From :func:`load_sets`.
    out : path-like
        Output folder: ``units.csv``, ``concepts.csv``, ``ablation_curves.csv`` / ``.png``,
        ``headline.csv``, ``artifact_*.csv``, ``summary.json``, ``report/``, ``cache/``.
    config : DissectConfig, optional
    discriminator : torch.nn.Module, optional
        For the ``dlogit`` and ``plrp`` artifact scores.
    model_name : str
        Shown in the report.

    Returns
    -------
    dict
        The summary written to ``summary.json`` plus ``report`` (the HTML path).
    """
    from galaxai.dissect.gallery import write_report

    config = config or DissectConfig()
    say = log or (lambda _msg: None)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    generator = generator.eval()
    layers = list(config.layers) if config.layers else _default_layers(generator)
    with torch.inference_mode(), record(generator, layers):
        pass  # unknown layer names fail here, before any work
    blends_digest = hashlib.sha256(np.ascontiguousarray(sets.blends).tobytes()).hexdigest()[:16]
    cache = _Cache(out / "cache", {"weights": _weights_digest(generator), "blends": blends_digest,
                                   "rows": len(sets.blends), "seed": config.seed,
                                   "batch": config.batch_size})
    bs = config.batch_size
    thr_rows, dis_rows = sets.threshold_rows, sets.dissection_rows
    say(f"dissecting {len(layers)} layers: thresholds on {len(thr_rows)} blends, IoU on "
        f"{len(dis_rows)}")
    result: UnitDissection = cache.get("units", lambda: dissect_units(
        generator, sets.concept_set(thr_rows, bs), sets.concept_set(dis_rows, bs), layers,
        progress=progress, seed=config.seed), layers=layers)
    units = _units_table(result)
    atomic_write_text(out / "units.csv", units.to_csv(index=False))

    score_rows = dis_rows[:config.effect_n]
    held_rows = thr_rows[:config.effect_n]
    scoring = sets.effect_set(score_rows, bs)
    held = sets.effect_set(held_rows, bs)
    names = sets.concepts.names
    chosen = list(config.concepts) if config.concepts else [
        c for c in ("galaxy_B", _best_component(result, sets.concepts.categories)) if c]
    for c in chosen:
        sets.concepts.index(c)  # KeyError naming the choices
    sizes_needed = min(max(config.sizes), HEADLINE_N)

    ranking_rows, curves, ace = [], [], {}
    for c in names:
        r = result.ranking(c, "iou")[:config.top]
        ranking_rows += [{"concept": c, "by": "iou", "rank": i + 1, "layer": row.layer,
                          "unit": int(row.unit), "score": row.iou} for i, row in enumerate(
                              r.itertuples())]
    for c in chosen:
        layer = config.concept_layer or _concept_layer(result, c, sizes_needed)
        if layer not in result.iou:
            raise KeyError(f"concept_layer {layer!r} was not dissected; choose one of {layers}")
        k = names.index(c)
        iou = result.iou[layer][:, k]
        iou_order = [int(u) for u in np.argsort(-iou, kind="stable")]
        rankings = {"iou": iou_order}
        if config.ace_epochs > 0:
            say(f"ACE α optimisation for {c} at {layer}")
            init = iou / iou.max() if iou.max() > 0 else None
            alpha, history = cache.get("ace", lambda: ace_alpha(
                generator, scoring, layer, c, init=init, epochs=config.ace_epochs,
                seed=config.seed, progress=progress), concept=c, layer=layer,
                epochs=config.ace_epochs, rows=score_rows.tolist())
            ace[c] = {"layer": layer, "alpha": alpha.tolist(),
                      "units_above_half": int((alpha > 0.5).sum()),
                      "history": history.to_dict(orient="records")}
            rankings["ace"] = [int(u) for u in np.argsort(-alpha, kind="stable")]
            ranking_rows += [{"concept": c, "by": "ace", "rank": i + 1, "layer": layer,
                              "unit": u, "score": float(alpha[u])}
                             for i, u in enumerate(rankings["ace"][:config.top])]
        say(f"ablation curves for {c} at {layer}")
        for j, (by, order) in enumerate(rankings.items()):
            n_random = config.n_random if j == 0 else 0  # one set of random draws per concept
            curves.append(cache.get("curve", lambda: ablation_curve(
                generator, held, layer, order, c, sizes=config.sizes, n_random=n_random,
                seed=config.seed, ranking=by, progress=progress), concept=c, layer=layer, by=by,
                order=order, sizes=list(config.sizes), n_random=n_random,
                rows=held_rows.tolist()))
    concepts_table = pd.DataFrame(ranking_rows,
                                  columns=["concept", "by", "rank", "layer", "unit", "score"])
    atomic_write_text(out / "concepts.csv", concepts_table.to_csv(index=False))
    curves_table = pd.concat(curves, ignore_index=True) if curves else pd.DataFrame()
    head = headline(curves_table) if len(curves_table) else pd.DataFrame()
    if len(curves_table):
        atomic_write_text(out / "ablation_curves.csv", curves_table.to_csv(index=False))
        atomic_write_text(out / "headline.csv", head.to_csv(index=False))

    artifacts: dict[str, pd.DataFrame] = {}
    if config.artifacts:
        say(f"artifact scores: {len(units)} unit ablations on {len(score_rows)} blends")
        scores = cache.get("artifact_scores", lambda: artifact_scores(
            generator, scoring, layers, result.thresholds, discriminator=discriminator,
            progress=progress), layers=layers, rows=score_rows.tolist(),
            discriminator=_weights_digest(discriminator) if discriminator is not None else None)
        top = artifact_top(scores, config.top)
        pool = list(zip(units.layer, units.unit.astype(int)))
        removals, random_sets = [], {}  # set size -> the random rows (same seed, same sets)
        for score, g in top.groupby("score", sort=False):
            chosen_units = list(zip(g.layer, g.unit.astype(int)))[:config.artifact_k]
            say(f"removing the top {len(chosen_units)} '{score}' artifact units")
            n_random = 0 if len(chosen_units) in random_sets else config.n_random
            part = cache.get("artifact_removal", lambda: artifact_removal(
                generator, held, chosen_units, pool, n_random=n_random, seed=config.seed,
                label=score, progress=progress), units=chosen_units, n_random=n_random,
                rows=held_rows.tolist(), pool=pool, label=score)
            random_sets.setdefault(len(chosen_units), part[part["kind"] == "random"])
            part = pd.concat([part[part["kind"] != "random"], random_sets[len(chosen_units)]],
                             ignore_index=True)
            removals.append(part.assign(score=score))
        removal = pd.concat(removals, ignore_index=True)
        artifacts = {"scores": scores, "top": top, "overlap": artifact_overlap(top),
                     "removal": removal, "removal_summary": _removal_summary(removal)}
        for name, table in artifacts.items():
            atomic_write_text(out / f"artifact_{name}.csv", table.to_csv(index=False))

    labels = units[units.interpretable].label.value_counts()
    summary: dict[str, Any] = {
        "model": model_name, "data": sets.source, "layers": layers,
        "threshold_blends": int(len(thr_rows)), "dissection_blends": int(len(dis_rows)),
        "scoring_blends": int(len(score_rows)), "held_out_blends": int(len(held_rows)),
        "units": int(len(units)), "interpretable": int(units.interpretable.sum()),
        "labels": {str(k): int(v) for k, v in labels.items()}, "concepts": chosen,
        "headline": head.to_dict(orient="records"),
        "ace": {c: {k: v for k, v in a.items() if k != "history"} for c, a in ace.items()},
        "artifact_removal": (artifacts["removal_summary"].to_dict(orient="records")
                             if artifacts else []),
        "config": asdict(config), "notes": sets.notes,
    }
    atomic_write_json(out / "summary.json", json.loads(json.dumps(summary, default=_plain)))
    say("writing the report")
    report = write_report(out, generator, sets, result, summary, curves_table, artifacts,
                          config, progress=progress)
    return {**summary, "report": str(report)}


def _plain(x: Any) -> Any:
    if isinstance(x, (np.integer, np.floating)):
        return x.item()
    if isinstance(x, np.ndarray):
        return x.tolist()
    return str(x)


def demo_section(report, work_dir: str | Path, *, quick: bool, seed: int, progress: bool,
                 title: str = "Dissection of the generator") -> None:
    """One demo section (``title``): dissection of the shipped generator on a few fresh blends.

    The most interpretable units with their top samples, one ablation curve (``galaxy_B``, units
    ranked by IoU, against random sets) and one generator-LRP map of branch B. Sample sizes are
    tiny (24 blends, 8 with ``quick``) and said so in the text; the full numbers come from
    ``galaxai dissect``.
    """
    from galaxai import api
    from galaxai.data.blend import BlendConfig
    from galaxai.data.simulate import SimConfig
    from galaxai.data.store import build_store
    from galaxai.dissect.gallery import lrp_figure

    work = Path(work_dir) / "dissect"
    n = 8 if quick else 24
    store = build_store(work / "store", n, seed=seed, sim_config=SimConfig.preset("small"),
                        blend_config=BlendConfig.preset("small"), chunk=n, test_fraction=1.0)
    generator = api.generator("small", "cpu")
    config = DissectConfig(n=n // 2, effect_n=n // 2, sizes=(1, 4) if quick else (1, 2, 4, 8),
                           n_random=2 if quick else 5, ace_epochs=0, concepts=("galaxy_B",),
                           artifacts=False, gallery_units=4, gallery_top=6, seed=seed)
    sets = load_sets(store, config.n)
    summary = run_dissection(generator, sets, work / "out", config, model_name="small",
                             progress=progress)
    out = work / "out"
    units = pd.read_csv(out / "units.csv")
    best = units[units.interpretable].sort_values("iqr", ascending=False)[:6]
    head = summary["headline"][0] if summary["headline"] else None
    report.add_section(
        title,
        f"GAN Dissection (Bau et al. 2019) of the shipped 'small' generator on {n} fresh "
        f"simulated blends only ({n // 2} set the unit thresholds, {n // 2} are dissected and "
        "ablated): a quick look, not a measurement. "
        f"{summary['interpretable']} of {summary['units']} units match a truth concept "
        "(IQR > 0.01, IoU > 0.05). `galaxai dissect small --data STORE --out DIR` runs the "
        "full pipeline (1,000-blend sets, ACE ranking, artifact units).")
    report.add_table(best[["layer", "unit", "label", "iou", "iqr"]],
                     "Most interpretable units (highest IQR)")
    for row in best[:2].itertuples():
        report.add_figure(out / "gallery" / f"unit-{row.layer}-{row.unit}.png",
                          f"{row.layer} unit {row.unit} ({row.label}): top samples, the region "
                          "above its threshold outlined")
    if head is not None:
        report.add_figure(out / "ablation_curves.png",
                          f"Share of galaxy_B flux removed from branch B by ablating the top-n "
                          f"IoU units of {head['layer']} vs {config.n_random} random sets per n "
                          f"({n // 2} held-out blends). Top {HEADLINE_N}: "
                          f"{head['share_iou']:.2f}; random {head['random_mean']:.2f} "
                          f"[{head['random_min']:.2f}, {head['random_max']:.2f}].")
    report.add_figure(lrp_figure(generator, sets.blends[:1], work / "lrp.png"),
                      "Generator LRP (epsilon rule): relevance of each blend pixel for branch "
                      "B's output (red: raises it, blue: lowers it), beside the blend.")
