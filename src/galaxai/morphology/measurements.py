"""Bar-length measurements over a settings grid, for single models and model averages.

:func:`measurement_table` measures one stack of saliency maps over ``T_c × T_l``;
:func:`method_measurements` measures every method of spec §5 (each model, and the two model
averages ``averageheatmaps`` and ``averagemeasurements``) over ``S × x_input × T_c × T_l``, as
the long tables that :func:`galaxai.morphology.search.grid_search` scores.

References
----------
P. Bhambra, B. Joachimi, O. Lahav, MNRAS 511, 5032 (2022), arXiv:2110.08288
(``measure_barlengths.py``).
"""
from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

from galaxai.morphology.barlength import GZ_FRAME_SIZE, bar_lengths, x_input

__all__ = [
    "measurement_table",
    "AVERAGE_METHODS",
    "average_heatmaps",
    "source_maps",
    "source_lengths",
    "method_measurements",
]


def measurement_table(maps, ids: Sequence, *, t_c: Sequence[float] = (0.70, 0.75, 0.80, 0.85, 0.90),
                      t_l: Sequence[int] = (10, 20, 30, 40, 50), method: str = "fast",
                      scale_to: int | None = GZ_FRAME_SIZE, renormalise: bool = False,
                      **labels: Any) -> pd.DataFrame:
    """Bar lengths of a stack of maps over the (T_c, T_l) grid, as a long DataFrame.

    Parameters
    ----------
    maps : array_like, shape (B, H, W)
        One saliency map per galaxy.
    ids : sequence, length B
        Galaxy identifiers (e.g. ``objid``).
    t_c, t_l : sequences
        Grid values (defaults: the authors' grid).
    method, scale_to, renormalise
        As in :func:`galaxai.morphology.bar_length`.
    **labels
        Constant setting columns to add (e.g. ``s_noise=0.1, x_input=False, model="vgg16"``).

    Returns
    -------
    pandas.DataFrame
        Columns ``id, t_c, t_l, *labels, length_px``; ``length_px`` is ``L424`` by default.
    """
    grid = bar_lengths(maps, list(t_c), list(t_l), method, scale_to=scale_to,
                       renormalise=renormalise)
    return _grid_frame(grid, ids, t_c, t_l, labels)


def _grid_frame(grid: np.ndarray, ids: Sequence, t_c: Sequence[float], t_l: Sequence[int],
                labels: Mapping[str, Any]) -> pd.DataFrame:
    """Long table of a ``(B, n_c, n_l)`` length grid: ``id, t_c, t_l, *labels, length_px``."""
    ids = list(ids)
    if len(ids) != grid.shape[0]:
        raise ValueError(f"got {len(ids)} ids for {grid.shape[0]} maps")
    b, i, j = np.meshgrid(np.arange(len(ids)), np.arange(len(t_c)), np.arange(len(t_l)),
                          indexing="ij")
    table = pd.DataFrame({"id": np.asarray(ids, dtype=object)[b.ravel()],
                          "t_c": np.asarray(t_c, dtype=float)[i.ravel()],
                          "t_l": np.asarray(t_l)[j.ravel()]})
    for name, value in labels.items():
        table[name] = value
    table["length_px"] = grid.ravel()
    return table


# --------------------------------------------------------------------------------------------
# the spec §5 methods: single models and the two model averages

#: The model averages of spec §3/§5: mean of the models' maps (not renormalised) and mean of
#: the models' lengths.
AVERAGE_METHODS = ("averageheatmaps", "averagemeasurements")


def average_heatmaps(stacks: Sequence[np.ndarray]) -> np.ndarray:
    """The authors' ``averageheatmaps``: the mean of several models' maps of the same galaxies.

    Not renormalised (faithful, spec §3): the mean of maps with maxima at different pixels has
    a maximum below 1, and one at or below 0.5 measures 1 pixel at ``T = 0.5``.

    Parameters
    ----------
    stacks : sequence of array_like, each shape (B, H, W)
        One stack per model, the galaxies in the same order; at least two.

    Returns
    -------
    numpy.ndarray, shape (B, H, W), float64
    """
    arrays = [np.asarray(s, dtype=np.float64) for s in stacks]
    if len(arrays) < 2:
        raise ValueError(f"averageheatmaps needs the maps of at least two models, got "
                         f"{len(arrays)}")
    shapes = {a.shape for a in arrays}
    if len(shapes) != 1:
        raise ValueError(f"the models' map stacks differ in shape {sorted(shapes)}; average "
                         "only maps of the same galaxies at one map size")
    return np.mean(arrays, axis=0)


def _models_at(maps: Mapping[tuple[str, float], np.ndarray], s_noise: float) -> list[str]:
    return [m for m, s in maps if s == s_noise and m not in AVERAGE_METHODS]


def _with_x_input(stack: np.ndarray, images, use_x_input: bool) -> np.ndarray:
    if not use_x_input:
        return np.asarray(stack, dtype=np.float64)
    if images is None:
        raise ValueError("x_input maps need the images (B, H, W, 3) in [0, 1]")
    return np.stack([x_input(np.asarray(m, np.float64), np.asarray(im, np.float64))
                     for m, im in zip(stack, images)])


def source_maps(maps: Mapping[tuple[str, float], np.ndarray], source: str, s_noise: float, *,
                images=None, use_x_input: bool = False) -> dict[str, np.ndarray]:
    """The map stacks whose lengths one method of spec §5 averages, at one noise level ``S``.

    A model gives its own maps; ``averageheatmaps`` one stack, :func:`average_heatmaps` of
    every model's maps at ``S``; ``averagemeasurements`` every model's maps (its length is the
    mean of their lengths, :func:`source_lengths`). With ``use_x_input`` each stack is
    multiplied by the grayscale image (:func:`~galaxai.morphology.x_input`), after averaging.

    Parameters
    ----------
    maps : mapping
        ``(model, S) → (B, H, W)`` maps of the same galaxies in the same order.
    source : str
        A model name, ``"averageheatmaps"`` or ``"averagemeasurements"``.
    s_noise : float
        SmoothGrad ``S`` of the maps to use.
    images : array_like, shape (B, H, W, 3), optional
        The network inputs in [0, 1]; needed for ``use_x_input``.
    use_x_input : bool

    Returns
    -------
    dict
        Name (model or ``"averageheatmaps"``) → stack.
    """
    models = _models_at(maps, s_noise)
    if source in AVERAGE_METHODS:
        if len(models) < 2:
            raise ValueError(f"{source} needs the maps of at least two models at S = {s_noise}, "
                             f"got {models or 'none'}")
        if source == "averageheatmaps":
            stacks = {source: average_heatmaps([maps[(m, s_noise)] for m in models])}
        else:
            stacks = {m: maps[(m, s_noise)] for m in models}
    elif source in models:
        stacks = {source: maps[(source, s_noise)]}
    else:
        raise ValueError(f"no maps of {source!r} at S = {s_noise}; models there: {models}")
    return {k: _with_x_input(v, images, use_x_input) for k, v in stacks.items()}


def source_lengths(maps: Mapping[tuple[str, float], np.ndarray], source: str, s_noise: float,
                   t_c, t_l, *, method: str = "fast", images=None, use_x_input: bool = False,
                   scale_to: int | None = GZ_FRAME_SIZE, renormalise: bool = False
                   ) -> np.ndarray:
    """Bar lengths of one method of spec §5: the mean over its :func:`source_maps` stacks.

    ``t_c``, ``t_l``, ``method``, ``scale_to`` and ``renormalise`` are as in
    :func:`~galaxai.morphology.bar_lengths` (scalars give shape ``(B,)``).
    """
    stacks = source_maps(maps, source, s_noise, images=images, use_x_input=use_x_input)
    return np.mean([bar_lengths(st, t_c, t_l, method, scale_to=scale_to, renormalise=renormalise)
                    for st in stacks.values()], axis=0)


def method_measurements(maps: Mapping[tuple[str, float], np.ndarray], ids: Sequence, *,
                        images=None, x_input: Sequence[bool] = (False,),
                        sources: Sequence[str] | None = None,
                        t_c: Sequence[float] = (0.70, 0.75, 0.80, 0.85, 0.90),
                        t_l: Sequence[int] = (10, 20, 30, 40, 50), method: str = "fast",
                        scale_to: int | None = GZ_FRAME_SIZE, renormalise: bool = False,
                        **labels: Any) -> pd.DataFrame:
    """Bar lengths of every method of spec §5 over the grid ``S × x_input × T_c × T_l``.

    The methods are the models and, at every ``S`` with maps of two or more models,
    ``averageheatmaps`` and ``averagemeasurements`` (:func:`source_maps`). Each model's lengths
    are computed once per ``(S, x_input)`` and reused by ``averagemeasurements``.

    Parameters
    ----------
    maps : mapping
        ``(model, S) → (B, H, W)`` maps of the galaxies ``ids``, in that order.
    ids : sequence, length B
    images : array_like, shape (B, H, W, 3), optional
        Network inputs in [0, 1], for ``x_input``.
    x_input : sequence of bool
        Whether the map is multiplied by the grayscale image (searched).
    sources : sequence of str, optional
        Methods to measure (default: all available). A model is measured at every ``S`` it has
        maps for, an average at every ``S`` with two or more models.
    t_c, t_l, method, scale_to, renormalise
        As in :func:`measurement_table`.
    **labels
        Constant setting columns to add (e.g. ``algorithm="fast"``).

    Returns
    -------
    pandas.DataFrame
        Columns ``id, t_c, t_l, source, s_noise, x_input, *labels, length_px``.

    Raises
    ------
    ValueError
        A requested method has no maps at any ``S`` (e.g. an average with one model only).
    """
    levels = sorted({s for _, s in maps})
    available = {s: _models_at(maps, s) + (list(AVERAGE_METHODS)
                                            if len(_models_at(maps, s)) >= 2 else [])
                 for s in levels}
    if sources is not None:
        for src in sources:
            if not any(src in av for av in available.values()):
                need = (" (it needs the maps of at least two models at one S)"
                        if src in AVERAGE_METHODS else "")
                raise ValueError(f"method {src!r} has no maps{need}; available per S: "
                                 f"{available}")
    def grid_of(src: str, s: float, xi: bool) -> np.ndarray:
        [stack] = source_maps(maps, src, s, images=images, use_x_input=xi).values()
        return bar_lengths(stack, list(t_c), list(t_l), method, scale_to=scale_to,
                           renormalise=renormalise)

    tables = []
    for s in levels:
        for xi in map(bool, x_input):
            per_model: dict[str, np.ndarray] = {}  # each model's grid once per (S, x_input)

            def model_grid(model: str) -> np.ndarray:
                if model not in per_model:
                    per_model[model] = grid_of(model, s, xi)
                return per_model[model]

            for src in available[s]:
                if sources is not None and src not in sources:
                    continue
                if src == "averagemeasurements":
                    grid = np.mean([model_grid(m) for m in _models_at(maps, s)], axis=0)
                elif src == "averageheatmaps":
                    grid = grid_of(src, s, xi)
                else:
                    grid = model_grid(src)
                tables.append(_grid_frame(grid, ids, t_c, t_l, dict(
                    source=src, s_noise=float(s), x_input=xi, **labels)))
    return pd.concat(tables, ignore_index=True)
