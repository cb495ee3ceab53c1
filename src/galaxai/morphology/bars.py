"""Bar lengths of saliency map files and their report against a catalogue (step 3).

:func:`measure_bars` (``galaxai morphology bars``) runs Algorithm 1
(:func:`galaxai.morphology.measure_bar`) on every map of one or more maps files
(:mod:`.saliency_maps`), with fixed thresholds or the grid search of spec §5 on the catalogue's
validation split: method (each model, ``averageheatmaps``, ``averagemeasurements``;
:func:`galaxai.morphology.method_measurements`) × SmoothGrad ``S`` (one maps file per model and
``S``) × ``x_input`` × ``T_c`` × ``T_l``, the best of each method
(:func:`galaxai.morphology.grid_search_by`) and the best overall. It writes the per-galaxy
lengths (CSV or Parquet)
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
defaults here scale them with the map area, ``round(T_l · (size/224)²)``, so the ``paper`` preset
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
from galaxai.morphology.measurements import AVERAGE_METHODS, method_measurements, source_maps
from galaxai.morphology.search import grid_search_by, split_catalogue
from galaxai.morphology.statistics import (
    OriginFit,
    bootstrap_rho,
    fit_through_origin,
    origin_fit_weights,
    paper_plot_units,
    rho_report,
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
        The grid-search table (validation ρ per method and setting, best first).
    per_method : pandas.DataFrame or None
        With the grid search, one row per method: its best setting, validation ρ and test ρ
        with bootstrap intervals and the §7 companions (``rho_test`` is the faithful ρ, or ρ in
        scaled units without R90).
    table_path, report_path : Path
    """

    lengths: pd.DataFrame
    settings: dict
    rho: pd.DataFrame | None
    fit: OriginFit | None
    grid: pd.DataFrame | None
    per_method: pd.DataFrame | None
    table_path: Path
    report_path: Path


def _aligned(sets: list[MapSet]) -> tuple[list[int], list[np.ndarray]]:
    """The galaxy ids (first file's order) and each file's row index for them.

    Every file must hold the same galaxies (in any order): averages and the grid search compare
    methods on the same galaxies.
    """
    ids = [int(i) for i in sets[0].ids]
    first = set(ids)
    for s in sets[1:]:
        other = set(s.ids.tolist())
        if other != first:
            only_first, only_other = sorted(first - other), sorted(other - first)
            raise InputError(
                f"maps file {s.path} holds other galaxies than {sets[0].path}: "
                f"{len(only_first)} ids only in the first (e.g. {only_first[:3]}), "
                f"{len(only_other)} only in {s.path.name} (e.g. {only_other[:3]}). Write every "
                "maps file for the same galaxies (`galaxai morphology saliency` with the same "
                "--ids or --catalogue and --data)", "maps")
    rows = []
    for s in sets:
        pos = {int(g): k for k, g in enumerate(s.ids)}
        rows.append(np.array([pos[i] for i in ids], dtype=np.int64))
    return ids, rows


def _model_keys(sets: list[MapSet], need_noise: bool) -> list[tuple[str, float | None]]:
    """``(model label, S)`` of every maps file; the label is the architecture (made unique
    when two different models share one)."""
    targets = {str(s.meta.get("target", "Class3.1")) for s in sets}
    if len(targets) > 1:
        raise InputError("the maps files explain different outputs ("
                         + ", ".join(f"{s.path.name}: {s.meta.get('target')}" for s in sets)
                         + "); measure bars only on maps of one target (Class3.1)", "maps")
    identity = [s.meta.get("model_sha256") or s.meta.get("model")
                or s.meta.get("architecture") or str(s.path) for s in sets]
    archs = [str(s.meta.get("architecture") or f"model{k}") for k, s in enumerate(sets)]
    models: dict[str, str] = {}                       # identity → label
    for ident, arch in zip(identity, archs):
        if ident not in models:
            models[ident] = arch if arch not in models.values() else f"{arch}-{len(models)}"
    keys, seen = [], {}
    for s, ident in zip(sets, identity):
        noise = s.meta.get("noise")
        if noise is None and need_noise:
            raise InputError(f"maps file {s.path} records no SmoothGrad S ('noise'); several "
                             "files and the grid search group maps by S. Rewrite it with "
                             "`galaxai morphology saliency`", "maps")
        key = (models[ident], None if noise is None else float(noise))
        if key in seen:
            raise InputError(f"maps files {seen[key]} and {s.path} are both of model {key[0]} "
                             f"at S = {key[1]}; pass one maps file per model and S", "maps")
        seen[key] = s.path
        keys.append(key)
    return keys


def _check_sources(sources: list[str] | None, keys: list[tuple[str, float | None]],
                   sets: list[MapSet], use_grid_search: bool) -> None:
    """Requested methods exist in the maps files (error names the files and the fix)."""
    if not sources:
        return
    if not use_grid_search and len(sources) > 1:
        raise InputError(f"without --grid-search give one method, got {sources}", "source")
    files = ", ".join(f"{k[0]} at S {k[1]} ({s.path.name})" for k, s in zip(keys, sets))
    for src in sources:
        if src in AVERAGE_METHODS:
            per_s: dict = {}
            for model, level in keys:
                per_s.setdefault(level, []).append(model)
            if max(len(v) for v in per_s.values()) < 2:
                raise InputError(
                    f"{src} averages several models' maps at one S, but no S has maps of two "
                    f"models: {files}. Add maps files of other models at the same S "
                    "(`galaxai morphology saliency --model <run> --noise S`), or leave "
                    f"{src} out of --source", "maps")
        elif src not in {m for m, _ in keys}:
            raise InputError(f"method {src!r}: no maps file of that model ({files}); choose "
                             f"one of {sorted({m for m, _ in keys})} or {list(AVERAGE_METHODS)}",
                             "source")


def _grid(maps, images, ids, cat, method, sources, n_boot, n_perm, seed, have_r90):
    """Grid search over (method, S, x_input, T_c, T_l) on the catalogue's validation split
    (spec §5); the best setting of each method and the overall best."""
    size = next(iter(maps.values())).shape[-1]
    table = method_measurements(maps, ids, images=images, x_input=(False, True),
                                sources=sources, t_c=_GRID_T_C,
                                t_l=scaled_t_l(_GRID_T_L, size), method=method)
    validation, test = split_catalogue(cat)
    cat_in = cat[["id", "length_scaled"]].assign(r90=cat["r90"] if have_r90 else 1.0)
    kwargs = dict(by=["source"], settings=["s_noise", "x_input", "t_c", "t_l"],
                  units="faithful" if have_r90 else "scaled", n_boot=n_boot, n_perm=n_perm,
                  seed=seed)
    val_ids, test_ids = list(validation["id"]), list(test["id"])
    advice = ("The catalogue is split like the authors' (shuffle seed 123, first third "
              "validation); measure more of its galaxies or give fixed thresholds")
    try:  # methods without a finite validation ρ are left out; if all are, say why
        results = grid_search_by(table, cat_in, val_ids, test_ids, skip_failed=True, **kwargs)
    except ValueError as exc:
        raise InputError(f"grid search impossible: {exc}. {advice}", "grid_search") from None
    if not results:
        raise InputError("grid search impossible: every method has an undefined validation ρ "
                         f"(constant lengths?). {advice}", "grid_search")
    failed = [m for m in table["source"].unique() if m not in results]
    notes = [f"Left out of the grid search: {', '.join(failed)}: no setting gives a finite "
             "validation ρ (the same length for every galaxy, e.g. averageheatmaps of maps "
             "whose mean stays ≤ 0.5 measures 1 px everywhere)."] if failed else []
    source = max(results, key=lambda k: results[k].rho_validation)
    best = {"source": source, **results[source].best}
    grid = pd.concat([r.table.assign(source=k) for k, r in results.items()], ignore_index=True)
    grid = grid[["source", *grid.columns[:-1]]].sort_values(
        "rho_validation", ascending=False, kind="stable").reset_index(drop=True)
    split_of = {**dict.fromkeys(validation["id"], "validation"),
                **dict.fromkeys(test["id"], "test")}
    return best, grid, _per_method(results, have_r90), split_of, notes


def _per_method(results: dict, have_r90: bool) -> pd.DataFrame:
    """One row per method: its chosen setting, validation ρ and test ρ with the §7 extras."""
    rows = []
    for source, r in results.items():
        rep = r.report
        stats = {"rho_test": rep.faithful, "spearman": rep.spearman}
        if have_r90:
            stats.update(constant_null=rep.constant_null, scaled=rep.scaled,
                         partial_r90=rep.partial_r90)
        row = {"method": source, **r.best, "rho_validation": r.rho_validation, "n_test": rep.n}
        for name, est in stats.items():
            row.update({name: est.value, f"{name}_low": est.low, f"{name}_high": est.high})
        rows.append({**row, "permutation_mean": rep.permutation_mean,
                     "permutation_p": rep.permutation_p})
    return (pd.DataFrame(rows).sort_values("rho_validation", ascending=False, kind="stable")
            .reset_index(drop=True))


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
                 t_l: int | None = None, use_grid_search: bool = False,
                 sources: Sequence[str] | None = None, method: str = "fast",
                 table_format: str = "csv", n_figure: int = 6, n_boot: int = 2000,
                 n_perm: int = 2000, seed: int = 0, progress: bool = False) -> BarsResult:
    """Bar lengths of every map, the ρ report against a catalogue and an HTML report (step 3).

    Parameters
    ----------
    maps : path-like or sequence of path-like
        Maps files of :func:`~galaxai.morphology.saliency_maps.compute_saliency`, all of the same
        galaxies and map size: one per model and SmoothGrad ``S`` (both read from the file).
        With fixed thresholds several files (one ``S``) are averaged as the authors'
        ``averagemeasurements`` (the mean of the per-model lengths) unless ``sources`` says
        otherwise.
    out : path-like
        Output directory: ``bar_lengths.csv`` (or ``.parquet``), ``rho.csv``, ``grid_search.csv``
        and ``grid_search_methods.csv`` (grid search), ``summary.json``, the figures and
        ``report/index.html``.
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
        Choose the method, ``S``, ``x_input``, ``t_c`` and ``t_l`` by validation ρ on the
        authors' catalogue split instead (spec §5); ρ is then reported on the test split only,
        for the best setting and for each method's best (``per_method``).
    sources : sequence of str, optional
        Methods of spec §5: model names (the files' architectures), ``"averageheatmaps"`` (mean
        of the models' maps at one ``S``, not renormalised) and ``"averagemeasurements"`` (mean
        of their lengths). With the grid search, those searched (default: every available one;
        the averages need maps of two models at one ``S``); otherwise the one measured.
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
    sources = None if sources is None else list(sources)
    _check_bars_arguments(paths, catalogue, r90, t_c, t_l, use_grid_search, table_format)
    sets = [read_maps(p) for p in paths]
    sizes = sorted({s.map_size for s in sets})
    if len(sizes) > 1:
        raise InputError(f"the maps files have different map sizes {sizes}; average only maps of "
                         "models with one input size", "maps")
    ids, rows = _aligned(sets)
    keys = _model_keys(sets, need_noise=use_grid_search or len(sets) > 1)
    _check_sources(sources, keys, sets, use_grid_search)
    # float32 as stored: measurements converts one stack at a time to float64 when it measures it
    # (the paper's grid, 3 models × 4 S × 3,150 maps of 224², would need ~15 GB as float64).
    model_maps = {k: s.saliency[r] for k, s, r in zip(keys, sets, rows)}
    images = sets[0].images[rows[0]].astype(np.float32) / np.float32(255.0)
    cat = read_bar_catalogue(catalogue, r90=r90) if catalogue is not None else None
    have_r90, notes = _match_catalogue(cat, ids, catalogue)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    grid = per_method = None
    split_of: dict = {}
    if use_grid_search:
        usable = cat[cat["length_scaled"].notna() & (cat["r90"].notna() if have_r90 else True)]
        best, grid, per_method, split_of, grid_notes = _grid(
            model_maps, images, ids, usable, method, sources, n_boot, n_perm, seed, have_r90)
        notes += grid_notes
        source, s_noise, use_xi = best["source"], best["s_noise"], bool(best["x_input"])
        t_c, t_l = float(best["t_c"]), int(best["t_l"])
        chosen = "grid search (validation ρ)"
        atomic_write_text(out / "grid_search.csv", grid.to_csv(index=False))
        atomic_write_text(out / "grid_search_methods.csv", per_method.to_csv(index=False))
    else:
        source, s_noise = _fixed_source(sources, keys)
        use_xi = bool(sets[0].meta.get("x_input", False))
        chosen = ("published T_c" if t_c is None else "given T_c") + ", " + (
            "published T_l scaled to the map area" if t_l is None else "given T_l")
        t_c = _PUBLISHED_T_C if t_c is None else float(t_c)
        t_l = scaled_t_l(_PUBLISHED_T_L, sizes[0]) if t_l is None else int(t_l)
    stacks = source_maps(model_maps, source, s_noise, images=images, use_x_input=use_xi)
    labels, measured = list(stacks), list(stacks.values())
    used = [k for k in keys if k[1] == s_noise and (source in AVERAGE_METHODS or k[0] == source)]
    logits = np.mean([sets[keys.index(k)].logits[rows[keys.index(k)]] for k in used], axis=0)
    lengths = _length_table(ids, measured, labels, logits, t_c, t_l, method, progress)
    lengths = lengths.assign(method=method, source=source, s_noise=s_noise, t_c=t_c, t_l=t_l,
                             x_input=use_xi)
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
    skipped = list({item["id"]: item for s in sets for item in s.meta.get("skipped", [])
                    }.values())  # files of the same galaxies skip the same ones
    settings = {"maps": [str(s.path) for s in sets], "models": sorted({k[0] for k in keys}),
                "source": source, "s_noise": s_noise, "method": method,
                "t_c": t_c, "t_l": int(t_l), "x_input": use_xi, "thresholds": chosen,
                "map_size": sizes[0], "n_measured": len(ids), "n_evaluated": int(len(evaluated)),
                "faithful_units": have_r90, "catalogue": None if catalogue is None
                else str(catalogue), "n_skipped_in_maps": len(skipped)}
    report_path = _report(out, settings, lengths, rho, fit, grid, per_method, figures, notes,
                          skipped)
    atomic_write_json(out / "summary.json", {
        **settings, "rho": None if rho is None else rho.to_dict(orient="records"),
        "per_method": None if per_method is None else per_method.to_dict(orient="records"),
        "fit": None if fit is None else {"slope": fit.slope, "rmse": fit.rmse,
                                         "rmse_identity": fit.rmse_identity, "n": fit.n},
        "permutation_p": None if scatter is None else scatter.get("permutation_p"),
        "notes": notes, "table": str(table_path), "report": str(report_path)})
    return BarsResult(lengths, settings, rho, fit, grid, per_method, table_path, report_path)


def _fixed_source(sources: list[str] | None, keys: list[tuple[str, float | None]]
                  ) -> tuple[str, float | None]:
    """Method and S of a measurement with fixed thresholds: the one model, or the
    ``averagemeasurements`` of several (unless ``sources`` names one)."""
    levels = sorted({k[1] for k in keys})
    if len(levels) > 1:
        raise InputError(f"the maps files are at several SmoothGrad S {levels}; pass "
                         "--grid-search to choose S by validation ρ, or the maps of one S",
                         "maps")
    models = [k[0] for k in keys]
    if sources:
        return sources[0], levels[0]
    return (models[0] if len(models) == 1 else "averagemeasurements"), levels[0]


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


def _report(out: Path, settings: dict, lengths: pd.DataFrame, rho, fit, grid, per_method,
            figures, notes, skipped) -> Path:
    from galaxai.viz.report import Report

    report = Report("galaxai bar lengths", ", ".join(settings["maps"]))
    report.add_section(
        "Bar lengths",
        f"{settings['n_measured']} galaxies measured by Algorithm 1 (method "
        f"{settings['method']}) on {'x_input' if settings['x_input'] else 'SmoothGrad'} maps of "
        f"{settings['map_size']}² pixels of {settings['source']} (S = {settings['s_noise']}), "
        f"T_c = {settings['t_c']}, T_l = {settings['t_l']} map pixels "
        f"({settings['thresholds']}). Lengths are L424, pixels of the 424² Galaxy Zoo frame; "
        "averagemeasurements is the mean of the per-model lengths, averageheatmaps the length "
        "of the mean map (not renormalised).")
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
        report.add_section(
            "Grid search",
            "Each method's best setting by validation ρ, with its test ρ and the §7 companions "
            "(bootstrap 95 % intervals; grid_search_methods.csv). The chosen setting above is "
            "the best of these on the validation split; its test ρ is not a selection "
            "criterion.")
        report.add_table(per_method, "best setting per method (T_l in map pixels)",
                         float_format="{:.3f}")
        report.add_table(grid.head(10), "validation ρ of the ten best (method, S, x_input, T_c, "
                         "T_l) (all: grid_search.csv)", float_format="{:.3f}")
    if skipped:
        shown = "; ".join(f"{s['id']}: {s['reason']}" for s in skipped[:5])
        report.add_note(f"{len(skipped)} requested galaxies had no usable image when the maps were "
                        f"made: {shown}{' …' if len(skipped) > 5 else ''}")
    return report.write(out / "report")
