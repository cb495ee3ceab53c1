"""Bar lengths of saliency map files and their report against a catalogue (step 3).

:func:`measure_bars` (``galaxai morphology bars``) runs Algorithm 1
(:func:`galaxai.morphology.measure_bar`) on every map of one or more maps files
(:mod:`.saliency_maps`), with fixed thresholds or a grid search on the catalogue's validation
split (:func:`galaxai.morphology.grid_search`), writes the per-galaxy lengths (CSV or Parquet)
and, with a catalogue (:mod:`.catalogues`), the §7 report
(:func:`galaxai.morphology.rho_report`: faithful ρ, the constant-length null, ρ in scaled units,
partial ρ controlling for R90, Spearman, permutation null, bootstrap intervals), the
through-origin fit and a static HTML report with the analogues of the paper's Fig. 3 (image |
saliency | isolated bar) and Fig. 4 (measured vs catalogue length).

Units
-----
Measured lengths are ``L424`` (pixels of the 424² GZ2 frame,
:func:`galaxai.morphology.bar_length`); the catalogue enters as ``length_scaled`` and, when a
``petroR90_r`` column (or ``--r90`` table) is given, R90 (spec ``smoothgrad_barlength.md`` §6).
Without R90 only the statistics that need no galaxy size are reported (ρ of ``L424/100`` vs
``length_scaled``, Spearman), since ``L424/100`` is already a length in units of 2·R90
(R90 = 50 px at 424²).

``T_l`` counts map pixels. The published values (40; the grid 10 … 50) are for 224² maps; the
defaults here scale them with the map area, ``round(T_l · (S/224)²)``, so the ``paper`` preset
uses them unchanged.

References
----------
P. Bhambra, B. Joachimi, O. Lahav, MNRAS 511, 5032 (2022), arXiv:2110.08288.
D. Hoyle et al., MNRAS 415, 3627 (2011), arXiv:1104.5394.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from galaxai._atomic import atomic_write, atomic_write_json, atomic_write_text
from galaxai.morphology._common import InputError, _progress
from galaxai.morphology.barlength import GZ_FRAME_SIZE, measure_bar
from galaxai.morphology.catalogues import read_bar_catalogue
from galaxai.morphology.gridsearch import (
    OriginFit,
    bootstrap_rho,
    fit_through_origin,
    grid_search,
    measurement_table,
    origin_fit_weights,
    paper_plot_units,
    rho_report,
    split_catalogue,
)
from galaxai.morphology.saliency_maps import MapSet, read_maps

__all__ = [
    "scaled_t_l",
    "BarsResult",
    "measure_bars",
]

_PUBLISHED_T_C, _PUBLISHED_T_L = 0.85, 40
_GRID_T_C = (0.70, 0.75, 0.80, 0.85, 0.90)
_GRID_T_L = (10, 20, 30, 40, 50)
_AUTHORS_MAP_SIZE = 224


def scaled_t_l(t_l: int | Sequence[int], map_size: int) -> int | list[int]:
    """Scale published ``T_l`` pixel counts (for 224² maps) to ``map_size``² maps.

    ``max(1, round(T_l · (map_size/224)²))``; a sequence gives the sorted distinct values.
    """
    factor = (int(map_size) / _AUTHORS_MAP_SIZE) ** 2
    if isinstance(t_l, (int, np.integer)):
        return max(1, int(round(t_l * factor)))
    return sorted({max(1, int(round(v * factor))) for v in t_l})


def _write_table(df: pd.DataFrame, path: Path) -> Path:
    if path.suffix == ".parquet":
        return atomic_write(path, lambda tmp: df.to_parquet(tmp, index=False))
    return atomic_write_text(path, df.to_csv(index=False))


@dataclass(frozen=True)
class BarsResult:
    """What :func:`measure_bars` wrote and computed.

    Attributes
    ----------
    lengths : pandas.DataFrame
        One row per galaxy (also written to ``table_path``).
    settings : dict
        Method, ``t_c``, ``t_l`` (map pixels), ``x_input``, how they were chosen, counts.
    rho : pandas.DataFrame or None
        ``statistic, value, low, high`` on the evaluated galaxies (with a catalogue).
    fit : OriginFit or None
        Weighted fit through the origin of measured on catalogue length.
    grid : pandas.DataFrame or None
        The grid-search table (validation ρ per setting, best first).
    table_path, report_path : Path
    """

    lengths: pd.DataFrame
    settings: dict
    rho: pd.DataFrame | None
    fit: OriginFit | None
    grid: pd.DataFrame | None
    table_path: Path
    report_path: Path


def _aligned(sets: list[MapSet]) -> tuple[list[int], list[np.ndarray]]:
    """Ids present in every map set (first set's order) and each set's row index for them."""
    common = set(sets[0].ids.tolist())
    for s in sets[1:]:
        common &= set(s.ids.tolist())
    ids = [int(i) for i in sets[0].ids if int(i) in common]
    if not ids:
        raise InputError("the maps files share no galaxy id; average only maps of the same "
                         "galaxies", "maps")
    rows = []
    for s in sets:
        pos = {int(g): k for k, g in enumerate(s.ids)}
        rows.append(np.array([pos[i] for i in ids], dtype=np.int64))
    return ids, rows


def _labels(sets: list[MapSet]) -> list[str]:
    labels = []
    for k, s in enumerate(sets):
        base = str(s.meta.get("architecture") or f"model{k}")
        labels.append(base if base not in labels else f"{base}{k}")
    return labels


def _grid(sets, rows, ids, cat, method, n_boot, n_perm, seed, have_r90):
    """Grid search over (x_input, T_c, T_l) on the catalogue's validation split (spec §5)."""
    size = sets[0].map_size
    t_l = scaled_t_l(_GRID_T_L, size)
    tables = []
    for s, r in zip(sets, rows):
        for xi in (False, True):
            tables.append(measurement_table(s.measured_maps(xi)[r], ids, t_c=_GRID_T_C, t_l=t_l,
                                            method=method, x_input=xi))
    table = pd.concat(tables, ignore_index=True)
    table = table.groupby(["id", "x_input", "t_c", "t_l"], as_index=False)["length_px"].mean()
    validation, test = split_catalogue(cat)
    cat_in = cat[["id", "length_scaled"]].assign(r90=cat["r90"] if have_r90 else 1.0)
    try:
        result = grid_search(table, cat_in, list(validation["id"]), list(test["id"]),
                             settings=["x_input", "t_c", "t_l"],
                             units="faithful" if have_r90 else "scaled", n_boot=n_boot,
                             n_perm=n_perm, seed=seed)
    except ValueError as exc:
        raise InputError(f"grid search impossible: {exc}. The catalogue is split like the "
                         "authors' (shuffle seed 123, first third validation); measure more of "
                         "its galaxies or give fixed thresholds", "grid_search") from None
    best = result.best
    split_of = {**dict.fromkeys(validation["id"], "validation"),
                **dict.fromkeys(test["id"], "test")}
    return bool(best["x_input"]), float(best["t_c"]), int(best["t_l"]), result.table, split_of


def _rho_table(measured: np.ndarray, cat: pd.DataFrame, have_r90: bool, n_boot: int,
               n_perm: int, seed: int) -> tuple[pd.DataFrame, OriginFit, dict]:
    ls = cat["length_scaled"].to_numpy(float)
    if have_r90:
        r90 = cat["r90"].to_numpy(float)
        report = rho_report(measured, ls, r90, n_boot=n_boot, n_perm=n_perm, seed=seed)
        table = report.to_frame()
        y, x = paper_plot_units(measured * r90, ls * r90)
        extra = {"permutation_p": report.permutation_p,
                 "axes": ("catalogue length (authors' plot units, 'h⁻¹ kpc')",
                          "measured length (authors' plot units, 'h⁻¹ kpc')")}
    else:
        rows = []
        for name, how in (("scaled units (L424/100 vs length_scaled)", "pearson"),
                          ("Spearman (scaled units)", "spearman")):
            est = bootstrap_rho(measured / 100.0, ls, method=how, n_boot=n_boot, seed=seed)
            rows.append((name, est.value, est.low, est.high))
        table = pd.DataFrame(rows, columns=["statistic", "value", "low", "high"])
        x, y = ls, measured / 100.0
        extra = {"axes": ("catalogue length_scaled (bar length / 2 R90)",
                          "measured L424 / 100 (bar length / 2 R90)")}
    fit = fit_through_origin(x, y, origin_fit_weights(x))
    return table, fit, {**extra, "x": x, "y": y}


def _figures(out: Path, images: np.ndarray, maps: np.ndarray, t_c: float, t_l: int,
             method: str, scatter: dict | None, fit: OriginFit | None) -> dict[str, Path]:
    """Fig. 3 analogue (image | map | mask per row) and, with a fit, the Fig. 4 analogue."""
    from galaxai.viz.render import heatmap, montage, scatter_plot

    figures = {}
    tiles = []
    for image, m in zip(images, maps):
        image = image.astype(np.float32) / 255.0
        mask = measure_bar(m, t_c, t_l, method).mask
        tiles += [image, heatmap(m), np.repeat(mask[..., None].astype(np.float32), 3, -1)]
    if tiles:
        figures["fig3"] = montage(tiles, ncols=3, size=160, path=out / "fig3_saliency_bars.png")
    if scatter is not None and fit is not None:
        xlabel, ylabel = scatter["axes"]
        figures["fig4"] = scatter_plot(
            {f"galaxies (n = {fit.n})": (scatter["x"], scatter["y"])},
            lines={"1:1": 1.0, f"fit through origin, slope {fit.slope:.3f}": fit.slope},
            xlabel=xlabel, ylabel=ylabel, title="measured vs catalogue bar length",
            path=out / "fig4_measured_vs_catalogue.png")
    return figures


def measure_bars(maps: str | os.PathLike | Sequence[str | os.PathLike], out: str | os.PathLike,
                 *, catalogue: str | os.PathLike | None = None,
                 r90: str | os.PathLike | None = None, t_c: float | None = None,
                 t_l: int | None = None, use_grid_search: bool = False, method: str = "fast",
                 table_format: str = "csv", n_figure: int = 6, n_boot: int = 2000,
                 n_perm: int = 2000, seed: int = 0, progress: bool = False) -> BarsResult:
    """Bar lengths of every map, the ρ report against a catalogue and an HTML report (step 3).

    Parameters
    ----------
    maps : path-like or sequence of path-like
        Maps files of :func:`~galaxai.morphology.saliency_maps.compute_saliency`. Several files
        (one per model, same map size) are averaged as the authors' ``averagemeasurements``: the
        mean of the per-model lengths.
    out : path-like
        Output directory: ``bar_lengths.csv`` (or ``.parquet``), ``rho.csv``, ``grid_search.csv``,
        ``summary.json``, the figures and ``report/index.html``.
    catalogue : path-like, optional
        Bar-length catalogue with ``length_scaled``
        (:func:`~galaxai.morphology.catalogues.read_bar_catalogue`), e.g. Hoyle et al. (2011);
        enables ρ, the fit and the Fig. 4 analogue.
    r90 : path-like, optional
        Table of ``petroR90_r`` per galaxy, for the faithful ρ and its nulls.
    t_c, t_l : float, int, optional
        Fixed thresholds (default 0.85 and 40 scaled to the map area, :func:`scaled_t_l`).
        ``t_l`` counts map pixels.
    use_grid_search : bool
        Choose ``(x_input, t_c, t_l)`` by validation ρ on the authors' catalogue split instead;
        ρ is then reported on the test split only.
    method : {"paper", "fast", "elongation"}
        Algorithm 1 (``fast`` gives the same lengths as ``paper``) or the rotation-invariant
        variant.
    table_format : {"csv", "parquet"}
    n_figure : int
        Galaxies in the Fig. 3 analogue.
    n_boot, n_perm, seed : int
        Bootstrap resamples, permutations and their seed.
    progress : bool
        tqdm bar over galaxies.

    Returns
    -------
    BarsResult
    """
    paths = [maps] if isinstance(maps, (str, os.PathLike)) else list(maps)
    _check_bars_arguments(paths, catalogue, r90, t_c, t_l, use_grid_search, table_format)
    sets = [read_maps(p) for p in paths]
    sizes = sorted({s.map_size for s in sets})
    if len(sizes) > 1:
        raise InputError(f"the maps files have different map sizes {sizes}; average only maps of "
                         "models with one input size", "maps")
    ids, rows = _aligned(sets)
    cat = read_bar_catalogue(catalogue, r90=r90) if catalogue is not None else None
    have_r90, notes = _match_catalogue(cat, ids, catalogue)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    grid, split_of = None, {}
    if use_grid_search:
        usable = cat[cat["length_scaled"].notna() & (cat["r90"].notna() if have_r90 else True)]
        use_xi, t_c, t_l, grid, split_of = _grid(sets, rows, ids, usable, method, n_boot, n_perm,
                                                 seed, have_r90)
        chosen = "grid search (validation ρ)"
        atomic_write_text(out / "grid_search.csv", grid.to_csv(index=False))
    else:
        use_xi = bool(sets[0].meta.get("x_input", False))
        chosen = ("published T_c" if t_c is None else "given T_c") + ", " + (
            "published T_l scaled to the map area" if t_l is None else "given T_l")
        t_c = _PUBLISHED_T_C if t_c is None else float(t_c)
        t_l = scaled_t_l(_PUBLISHED_T_L, sizes[0]) if t_l is None else int(t_l)
    labels = _labels(sets)
    measured = [s.measured_maps(use_xi)[r] for s, r in zip(sets, rows)]
    logits = np.mean([s.logits[r] for s, r in zip(sets, rows)], axis=0)
    lengths = _length_table(ids, measured, labels, logits, t_c, t_l, method, progress)
    lengths = lengths.assign(method=method, t_c=t_c, t_l=t_l, x_input=use_xi)
    if cat is not None:
        lengths = lengths.merge(cat[["id", "length_scaled", "r90"]], on="id", how="left")
        if split_of:
            lengths["split"] = lengths["id"].map(split_of).fillna("")
    table_path = _write_table(lengths, out / f"bar_lengths.{table_format}")

    rho = fit = scatter = None
    evaluated = lengths.iloc[0:0]
    if cat is not None:
        keep = lengths["length_scaled"].notna() & (lengths["r90"].notna() if have_r90 else True)
        evaluated = lengths[keep & (lengths["split"] == "test" if split_of else True)]
        if len(evaluated) >= 3:
            rho, fit, scatter = _rho_table(evaluated["length_424"].to_numpy(float), evaluated,
                                           have_r90, n_boot, n_perm, seed)
            atomic_write_text(out / "rho.csv", rho.to_csv(index=False))
        else:
            notes.append(f"Only {len(evaluated)} measured galaxies have catalogue lengths: too "
                         "few (< 3) for ρ.")
    position = {gid: k for k, gid in enumerate(ids)}
    fig_rows = [position[int(i)] for i in (evaluated["id"] if len(evaluated) else ids)][:n_figure]
    figures = _figures(out, sets[0].images[rows[0][fig_rows]], measured[0][fig_rows], t_c, t_l,
                       method, scatter, fit)
    skipped = [item for s in sets for item in s.meta.get("skipped", [])]
    settings = {"maps": [str(s.path) for s in sets], "models": labels, "method": method,
                "t_c": t_c, "t_l": int(t_l), "x_input": use_xi, "thresholds": chosen,
                "map_size": sizes[0], "n_measured": len(ids), "n_evaluated": int(len(evaluated)),
                "faithful_units": have_r90, "catalogue": None if catalogue is None
                else str(catalogue), "n_skipped_in_maps": len(skipped)}
    report_path = _report(out, settings, lengths, rho, fit, grid, figures, notes, skipped)
    atomic_write_json(out / "summary.json", {
        **settings, "rho": None if rho is None else rho.to_dict(orient="records"),
        "fit": None if fit is None else {"slope": fit.slope, "rmse": fit.rmse,
                                         "rmse_identity": fit.rmse_identity, "n": fit.n},
        "permutation_p": None if scatter is None else scatter.get("permutation_p"),
        "notes": notes, "table": str(table_path), "report": str(report_path)})
    return BarsResult(lengths, settings, rho, fit, grid, table_path, report_path)


def _check_bars_arguments(paths, catalogue, r90, t_c, t_l, use_grid_search, table_format) -> None:
    if not paths:
        raise InputError("no maps file given", "maps")
    if table_format not in ("csv", "parquet"):
        raise InputError(f"table format must be 'csv' or 'parquet', got {table_format!r}",
                         "table_format")
    if use_grid_search and (t_c is not None or t_l is not None):
        raise InputError("give either fixed thresholds (t_c, t_l) or the grid search, not both",
                         "grid_search")
    if t_c is not None and not 0.0 <= float(t_c) <= 1.0:
        raise InputError(f"t_c must be in [0, 1] (a correlation threshold), got {t_c}", "t_c")
    if t_l is not None and (int(t_l) != t_l or t_l < 0):
        raise InputError(f"t_l must be a non-negative pixel count, got {t_l}", "t_l")
    if use_grid_search and catalogue is None:
        raise InputError("the grid search chooses thresholds by ρ with true lengths: pass a "
                         "catalogue with length_scaled", "grid_search")
    if r90 is not None and catalogue is None:
        raise InputError("an R90 table is used only with a catalogue; pass the catalogue too",
                         "r90")


def _match_catalogue(cat: pd.DataFrame | None, ids: list[int], source) -> tuple[bool, list[str]]:
    """Whether the measured galaxies have R90 (faithful units), and notes for the report."""
    if cat is None:
        return False, []
    matched = cat[cat["id"].isin(set(ids))]
    if matched.empty:
        raise InputError(f"none of the {len(ids)} measured galaxies is in the catalogue {source} "
                         f"(maps ids e.g. {ids[:3]}, catalogue ids e.g. "
                         f"{cat['id'].head(3).tolist()}); use the catalogue of these galaxies",
                         "catalogue")
    missing = int(matched["r90"].isna().sum())
    if missing == len(matched):
        return False, ["No R90 (petroR90_r) given: the faithful ρ, the constant-length null and "
                       "the partial ρ need it (add a petroR90_r column or an R90 table); shown "
                       "are the statistics in scaled units, which need no galaxy size."]
    notes = [f"{missing} catalogue galaxies without R90 are left out of ρ."] if missing else []
    return True, notes


def _length_table(ids: list[int], measured: list[np.ndarray], labels: list[str],
                  logits: np.ndarray, t_c: float, t_l: int, method: str,
                  progress: bool) -> pd.DataFrame:
    """One row per galaxy: the (model-averaged) length and, for one model, how it stopped."""
    records = []
    for k in _progress(range(len(ids)), progress, desc="bar lengths", unit="galaxy"):
        bars = [measure_bar(m[k], t_c, t_l, method) for m in measured]
        rec = {"id": ids[k], "length_px": float(np.mean([b.length_px for b in bars])),
               "length_424": float(np.mean([b.length(GZ_FRAME_SIZE) for b in bars]))}
        if len(bars) == 1:
            b = bars[0]
            rec.update(threshold=b.threshold, stopped_by=b.stopped_by, statistic=b.statistic,
                       mask_pixels=b.count)
        else:
            rec.update({f"length_424_{lab}": b.length(GZ_FRAME_SIZE)
                        for lab, b in zip(labels, bars)})
        rec["p_target"] = 1.0 / (1.0 + math.exp(-float(logits[k])))
        records.append(rec)
    return pd.DataFrame(records)


def _report(out: Path, settings: dict, lengths: pd.DataFrame, rho, fit, grid, figures, notes,
            skipped) -> Path:
    from galaxai.viz.report import Report

    report = Report("galaxai bar lengths", ", ".join(settings["maps"]))
    report.add_section(
        "Bar lengths",
        f"{settings['n_measured']} galaxies measured by Algorithm 1 (method "
        f"{settings['method']}) on {'x_input' if settings['x_input'] else 'SmoothGrad'} maps of "
        f"{settings['map_size']}² pixels, T_c = {settings['t_c']}, T_l = {settings['t_l']} map "
        f"pixels ({settings['thresholds']}). Lengths are L424, pixels of the 424² Galaxy Zoo "
        "frame; with several models they are the mean of the per-model lengths.")
    report.add_table(lengths.describe().T[["count", "mean", "std", "min", "50%", "max"]]
                     .loc[["length_424", "p_target"]], "Distribution of the measured lengths "
                     "and of the model's target probability")
    if rho is not None:
        report.add_section(
            "Correlation with the catalogue",
            f"On {settings['n_evaluated']} galaxies"
            f"{' of the test split' if grid is not None else ''}, with bootstrap 95 % intervals. "
            "The faithful ρ multiplies both sides by R90, a shared size factor: compare it with "
            "the constant-length null (one length for every galaxy) and the partial ρ "
            "controlling for R90.")
        report.add_table(rho, "ρ with bootstrap 95 % intervals (permutation null: its interval)",
                         float_format="{:.3f}")
        if settings["faithful_units"]:
            faithful, null = rho["value"].iloc[0], rho["value"].iloc[1]
            if np.isfinite(faithful) and np.isfinite(null) and null >= faithful - 0.05:
                report.add_note(f"The constant-length null (ρ = {null:.3f}) is within 0.05 of the "
                                f"faithful ρ ({faithful:.3f}): most of the correlation is galaxy "
                                "size, not the measured bar.", kind="warning")
    for note in notes:
        report.add_note(note, kind="warning")
    if "fig3" in figures:
        report.add_section("Saliency and isolated bars (Fig. 3 analogue)",
                           "Each row: the network input | its SmoothGrad map"
                           f"{' × grayscale image (x_input)' if settings['x_input'] else ''} | "
                           "the mask at Algorithm 1's stopping threshold (its largest extent "
                           "is the bar length). With several models, the first model's map.")
        report.add_figure(figures["fig3"], "image | saliency | isolated bar")
    if "fig4" in figures:
        report.add_section(
            "Measured vs catalogue length (Fig. 4 analogue)",
            f"Weighted least squares through the origin (weights 1/(0.17·catalogue)): slope "
            f"{fit.slope:.3f}, RMSE {fit.rmse:.3g} about the fit, {fit.rmse_identity:.3g} about "
            "the 1:1 line. "
            + ("The authors' plot units multiply L424·R90 by 0.02·0.396 and the catalogue by "
               "0.7; they change the slope and RMSE, never ρ."
               if settings["faithful_units"] else "Both axes are bar length over 2·R90."))
        report.add_figure(figures["fig4"], "measured vs catalogue bar length")
    if grid is not None:
        report.add_section("Grid search", "Validation ρ of every (x_input, T_c, T_l), best first "
                           "(T_l in map pixels).")
        report.add_table(grid.head(10), float_format="{:.3f}")
    if skipped:
        shown = "; ".join(f"{s['id']}: {s['reason']}" for s in skipped[:5])
        report.add_note(f"{len(skipped)} requested galaxies had no usable image when the maps were "
                        f"made: {shown}{' …' if len(skipped) > 5 else ''}")
    return report.write(out / "report")
