"""The dissection report: unit gallery, tables and curves as one static HTML page.

The gallery shows, per unit, the dissection-set blends where the unit's spatial maximum is
largest, each with the region where the unit exceeds its threshold ``t_u`` outlined
(:func:`galaxai.viz.render.outline`).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd
import torch
from torch import nn

from galaxai.dissect.hooks import record
from galaxai.dissect.units import UnitDissection, _featuremaps

__all__ = ["unit_gallery", "curve_figure", "lrp_figure", "write_report"]


def _spatial_max(model: nn.Module, blends: np.ndarray, layers: Sequence[str], batch: int
                 ) -> dict[str, np.ndarray]:
    """Per layer, ``(N, d)`` spatial maxima of every unit."""
    device = next(model.parameters()).device
    out: dict[str, list[np.ndarray]] = {layer: [] for layer in layers}
    with torch.inference_mode(), record(model, layers) as seen:
        for lo in range(0, len(blends), batch):
            model(torch.from_numpy(blends[lo:lo + batch]).to(device))
            for layer in layers:
                out[layer].append(seen[layer].float().amax(dim=(2, 3)).cpu().numpy())
    return {layer: np.concatenate(v) for layer, v in out.items()}


def unit_gallery(model: nn.Module, blends: np.ndarray, units: pd.DataFrame, folder: Path, *,
                 top: int = 20, batch: int = 16, progress: bool = False) -> list[Path]:
    """Write one PNG row per unit of ``units`` (columns ``layer, unit, threshold``).

    Each row holds the ``top`` blends with the largest spatial maximum of the unit, the region
    above its threshold outlined. Returns the paths, ``folder/unit-<layer>-<unit>.png``.
    """
    from tqdm.auto import tqdm

    from galaxai.viz.render import montage, outline, save_png, stretch_image

    if not len(units):
        return []
    layers = list(dict.fromkeys(units.layer))
    peaks = _spatial_max(model, blends, layers, batch)
    device = next(model.parameters()).device
    size = tuple(blends.shape[-2:])
    paths = []
    for layer in tqdm(layers, desc="gallery", disable=not progress, leave=False):
        rows = units[units.layer == layer]
        picks = {int(u): np.argsort(-peaks[layer][:, int(u)], kind="stable")[:top]
                 for u in rows.unit}
        needed = np.unique(np.concatenate(list(picks.values())))
        masks: dict[tuple[int, int], np.ndarray] = {}
        with torch.inference_mode(), record(model, [layer]) as seen:
            for lo in range(0, len(needed), batch):
                idx = needed[lo:lo + batch]
                model(torch.from_numpy(blends[idx]).to(device))
                r = _featuremaps({layer: seen[layer].cpu()}, size)[layer].numpy()
                for row in rows.itertuples():
                    for j, i in enumerate(idx):
                        if i in picks[int(row.unit)]:
                            masks[(int(row.unit), int(i))] = r[j, int(row.unit)] > row.threshold
        for row in rows.itertuples():
            u = int(row.unit)
            tiles = [outline(stretch_image(np.moveaxis(blends[i], 0, -1), "asinh"),
                             masks[(u, int(i))]) for i in picks[u]]
            paths.append(save_png(montage(tiles, ncols=len(tiles), pad=1),
                                  folder / f"unit-{layer}-{u}.png"))
    return paths


def curve_figure(curves: pd.DataFrame, path: Path) -> Path:
    """Share removed against unit-set size: the top sets per ranking, the random sets' mean, max."""
    from galaxai.viz.render import curve_plot

    sizes = sorted(curves.n.unique())
    lines: dict[str, np.ndarray] = {}
    for concept, g in curves.groupby("concept", sort=False):
        for by, h in g[g.kind == "top"].groupby("ranking", sort=False):
            lines[f"{concept}: top by {by.upper()}"] = h.set_index("n").share_removed.reindex(sizes)
        rnd = g[g.kind == "random"].groupby("n").share_removed
        if len(g[g.kind == "random"]):
            lines[f"{concept}: random mean"] = rnd.mean().reindex(sizes)
            lines[f"{concept}: random max"] = rnd.max().reindex(sizes)
    return curve_plot(sizes, {k: v.to_numpy() for k, v in lines.items()},
                      xlabel="units ablated (n)", ylabel="share of concept flux removed",
                      title="Ablation curves", path=path)


def lrp_figure(generator: nn.Module, blend: np.ndarray, path: Path, *, branch: str = "B") -> Path:
    """The blend beside its generator-LRP map for ``branch``'s output.

    Diverging colours centred on 0, limits at the 99th percentile of ``|R|`` (a few pixels would
    otherwise set the scale).
    """
    from galaxai.explain import generator_lrp
    from galaxai.viz.render import montage, save_png, signed_heatmap, stretch_image, symmetric_vmax

    res = generator_lrp(generator, torch.from_numpy(blend[:1]), branch=branch)
    relevance = res.maps[0].sum(0).cpu().numpy()
    heat = signed_heatmap(relevance, vmax=symmetric_vmax(relevance, percentile=99.0))
    image = stretch_image(np.moveaxis(blend[0], 0, -1), "asinh")
    return save_png(montage([image, heat], ncols=2, size=240, pad=2), path)


def _gallery_units(units: pd.DataFrame, limit: int) -> pd.DataFrame:
    good = units[units.interpretable].sort_values("iqr", ascending=False, kind="stable")
    if not len(good):
        good = units.sort_values("iou", ascending=False, kind="stable")
    return good[:limit]


def write_report(out: Path, generator: nn.Module, sets, result: UnitDissection,
                 summary: dict[str, Any], curves: pd.DataFrame,
                 artifacts: dict[str, pd.DataFrame], config, *, progress: bool = False) -> Path:
    """Write ``out/report/index.html`` (and the gallery and curve PNGs); return its path."""
    from galaxai.viz.report import Report

    units = result.units
    page = Report(f"GAN Dissection of {summary['model'] or 'a generator'}",
                  f"data: {summary['data']}")
    page.add_section(
        "Setup",
        f"Thresholds from {summary['threshold_blends']} blends, IoU / IQR on "
        f"{summary['dissection_blends']} others; the α optimisation and artifact scores on "
        f"{summary['scoring_blends']} dissection blends; ablation curves and artifact removal on "
        f"{summary['held_out_blends']} held-out blends of the threshold set. Layers: "
        f"{', '.join(summary['layers'])}.")
    for note in summary["notes"]:
        page.add_note(note, kind="warning")
    page.add_section("Units", f"{summary['interpretable']} of {summary['units']} units are "
                     "interpretable (IQR > 0.01, IoU > 0.05, optimal fraction ≤ 0.5).")
    page.add_table(pd.DataFrame([{"label": k, "units": v} for k, v in summary["labels"].items()]),
                   "Interpretable units per label")
    per_layer = units.groupby("layer", sort=False).interpretable.agg(["sum", "size"]).reset_index()
    page.add_table(per_layer.rename(columns={"sum": "interpretable", "size": "units"}),
                   "Interpretable units per layer")
    page.add_table(units.sort_values("iqr", ascending=False)[:30][
        ["layer", "unit", "label", "iou", "iqr", "threshold", "interpretable"]].reset_index(
            drop=True), "The 30 units with the highest IQR")
    if len(curves):
        page.add_section("Ablation curves",
                         "Share of each concept's flux removed from the branch that should hold "
                         "it when the top-n units of one layer (ranked by IoU, and by ACE α) are "
                         f"zeroed over the whole featuremap, against {config.n_random} random "
                         "sets of n units of the same layer.")
        page.add_figure(curve_figure(curves, out / "ablation_curves.png"), "Ablation curves")
        page.add_table(pd.DataFrame(summary["headline"]),
                       f"Top-{summary['headline'][0]['n'] if summary['headline'] else ''} "
                       "units vs random sets (interval: min–max over the random sets)")
        ranks = pd.read_csv(out / "concepts.csv")
        for c in summary["concepts"]:
            page.add_table(ranks[(ranks.concept == c) & (ranks["rank"] <= 10)],
                           f"{c}: units ranked by IoU and by ACE α")
    if artifacts:
        page.add_section("Artifact units",
                         "Units scored cheapest first: ΔPSNR when ablated alone, change of D's "
                         "mean logit, and the share of D's negative Polarized-LRP relevance inside "
                         "the unit's region over its area share. The top units of each score are "
                         "removed on held-out blends against random sets of the same size "
                         "(intervals: 95 % bootstrap over blends; random: min–max over sets).")
        page.add_table(artifacts["removal_summary"], "Removal of the top artifact units")
        page.add_table(artifacts["overlap"], "Shared units between the top lists")
        page.add_table(artifacts["top"], f"Top {config.top} units per score")
    chosen = _gallery_units(units, config.gallery_units)
    page.add_section("Unit gallery",
                     f"Top {config.gallery_top} dissection blends per unit by spatial maximum, "
                     f"the region above the unit's threshold outlined ({len(chosen)} most "
                     "interpretable units).")
    dis = sets.blends[sets.dissection_rows]
    for path, row in zip(unit_gallery(generator, dis, chosen, out / "gallery",
                                      top=config.gallery_top, batch=config.batch_size,
                                      progress=progress), chosen.itertuples()):
        page.add_figure(path, f"{row.layer} unit {row.unit}: {row.label}, IoU {row.iou:.3f}, "
                              f"IQR {row.iqr:.3f}")
    return page.write(out / "report")
