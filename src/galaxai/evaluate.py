"""Evaluation tables for deblenders: per-example scores, summaries, binned scores, comparisons.

Pure functions on arrays. Inputs follow the store's layout: ``blends``, ``target_a`` and
``target_b`` are channel-first ``(N, 3, H, W)`` display images in [0, 1] (NumPy or torch). The
deblender under test has the signature of :func:`galaxai.deblend` (channel-last
``(N, H, W, 3)`` in, ``(a, b)`` out), so the blends are transposed for it and its outputs back.
Scores follow :mod:`galaxai.metrics` (``specs/deblender_gan.md``, Evaluation): each blend and
each branch against its own target, PSNR at data_range 1, SSIM at data_range 1 and 2, means and
medians per branch and pooled. Wall-clock seconds per blend are measured around the deblender
call only (batch time divided by the batch size). Outputs are scored batch by batch and not
kept, so memory stays bounded by the inputs.

Binned scores group the examples by the catalogue's ``separation_px`` (distance between the two
galaxies' centres) and ``flux_ratio`` (brightness ratio of A and B), the cheap extras of the
spec; the default bins are quartiles, so every bin holds about a quarter of the examples.
"""
from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import pandas as pd

from galaxai.metrics import DeblendScorer

__all__ = ["BIN_COLUMNS", "EvaluationResult", "evaluate_deblender", "binned_scores",
           "evaluate_methods", "compare_methods", "paired_differences"]

BIN_COLUMNS = ("separation_px", "flux_ratio")
"""Catalogue columns used for binned scores by default."""

_SCORE_COLUMNS = ("psnr_a", "psnr_b", "ssim_a_dr1", "ssim_a_dr2", "ssim_b_dr1", "ssim_b_dr2")
_POOLED = {"psnr_pooled": ("psnr_a", "psnr_b"),
           "ssim_pooled_dr1": ("ssim_a_dr1", "ssim_b_dr1"),
           "ssim_pooled_dr2": ("ssim_a_dr2", "ssim_b_dr2")}


@dataclass(frozen=True)
class EvaluationResult:
    """Result of :func:`evaluate_deblender`.

    Attributes
    ----------
    per_example : pandas.DataFrame
        One row per blend (index = position in the inputs): ``psnr_a``, ``psnr_b``,
        ``ssim_a_dr1``, ``ssim_a_dr2``, ``ssim_b_dr1``, ``ssim_b_dr2``, ``seconds`` and the
        catalogue columns used for binning.
    summary : dict[str, float]
        :attr:`galaxai.metrics.DeblendScores.summary` plus ``n`` and ``seconds_per_blend``.
    binned : dict[str, pandas.DataFrame]
        Per binning column, the table of :func:`binned_scores`.
    """

    per_example: pd.DataFrame
    summary: dict[str, float]
    binned: dict[str, pd.DataFrame]


def _images(x: Any, name: str) -> np.ndarray:
    if hasattr(x, "detach") and hasattr(x, "cpu"):
        x = x.detach().cpu().numpy()
    arr = np.asarray(x, dtype=np.float32)
    if arr.ndim != 4 or arr.shape[1] not in (1, 3):
        raise ValueError(
            f"{name}: expected channel-first (N, 3, H, W) display images as in the store, got "
            f"shape {arr.shape}; transpose channel-last arrays with .transpose(0, 3, 1, 2)"
        )
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} contains NaN or infinite values")
    return arr


def _outputs(out: Any, expected: tuple[int, ...], name: str) -> np.ndarray:
    """Validate one deblender output (N, H, W, C) in [0, 1] and return it channel-first."""
    if hasattr(out, "detach") and hasattr(out, "cpu"):
        out = out.detach().cpu().numpy()
    arr = np.asarray(out, dtype=np.float32)
    if arr.shape != expected:
        raise ValueError(f"{name}: the deblender returned shape {arr.shape}, expected {expected} "
                         "(channel-last, like its input)")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name}: the deblender returned NaN or infinite values")
    lo, hi = float(arr.min()), float(arr.max())
    if lo < -1e-6 or hi > 1 + 1e-6:
        raise ValueError(f"{name}: the deblender returned values in [{lo:.4g}, {hi:.4g}], outside "
                         "[0, 1]; map outputs to [0, 1] first, e.g. (v + 1) / 2")
    return np.moveaxis(np.clip(arr, 0.0, 1.0), -1, 1)


def binned_scores(per_example: pd.DataFrame, column: str, bins: int | Sequence[float] = 4) -> pd.DataFrame:
    """Mean scores per bin of one column of the per-example table.

    Parameters
    ----------
    per_example : pandas.DataFrame
        Table with the score columns and ``column`` (as in :attr:`EvaluationResult.per_example`).
    column : str
        Column to bin on, e.g. ``"separation_px"`` or ``"flux_ratio"``.
    bins : int or sequence of float, optional
        Number of quantile bins (equal counts, :func:`pandas.qcut`) or explicit bin edges
        (:func:`pandas.cut`, right-closed, lowest edge included).

    Returns
    -------
    pandas.DataFrame
        Indexed by bin interval: ``n`` and the mean of every score column, of ``seconds`` and of
        the pooled scores (``psnr_pooled``, ``ssim_pooled_dr1``, ``ssim_pooled_dr2`` = mean of
        the two branches). Empty bins have ``n = 0`` and NaN means.
    """
    if column not in per_example:
        raise ValueError(f"cannot bin on {column!r}: not a column of the table "
                         f"(columns: {list(per_example.columns)})")
    values = per_example[column]
    if isinstance(bins, (int, np.integer)):
        groups = pd.qcut(values, int(bins), duplicates="drop")
    else:
        groups = pd.cut(values, list(bins), include_lowest=True)
    table = per_example[[c for c in (*_SCORE_COLUMNS, "seconds") if c in per_example]].copy()
    for pooled in _POOLED:
        table[pooled] = _pooled(per_example, pooled)
    grouped = table.groupby(groups, observed=False)
    out = grouped.mean()
    out.insert(0, "n", grouped.size())
    out.index.name = column
    return out


def evaluate_deblender(
    deblend_fn: Callable[[np.ndarray], tuple[Any, Any]],
    blends: Any,
    target_a: Any,
    target_b: Any,
    catalogue: pd.DataFrame | None = None,
    *,
    batch_size: int = 64,
    bin_columns: Sequence[str] = BIN_COLUMNS,
    bins: int | Sequence[float] = 4,
) -> EvaluationResult:
    """Run a deblender on blends and score its outputs against the pre-blend targets.

    Parameters
    ----------
    deblend_fn : callable
        ``deblend_fn(blends (n, H, W, 3) float32 in [0, 1]) -> (a, b)``, each ``(n, H, W, 3)`` in
        [0, 1] (NumPy or torch), e.g. :func:`galaxai.deblend` or a
        :data:`galaxai.models.classical.DEBLENDERS` entry.
    blends, target_a, target_b : array_like
        Channel-first ``(N, 3, H, W)`` display images in [0, 1], as stored.
    catalogue : pandas.DataFrame, optional
        One row per blend, in the same order (the store's catalogue). Needed for binned scores.
    batch_size : int, optional
        Blends per call of ``deblend_fn``.
    bin_columns : sequence of str, optional
        Catalogue columns to bin on when a catalogue is given (default ``separation_px`` and
        ``flux_ratio``); each must exist.
    bins : int or sequence of float, optional
        As in :func:`binned_scores`, used for every binning column.

    Returns
    -------
    EvaluationResult
        Per-example table, summary and binned tables.

    Raises
    ------
    ValueError
        Inputs of wrong or mismatched shape, NaN, a catalogue of the wrong length or without a
        binning column, or deblender outputs of the wrong shape or outside [0, 1].
    """
    x = _images(blends, "blends")
    ta = _images(target_a, "target_a")
    tb = _images(target_b, "target_b")
    if not (x.shape == ta.shape == tb.shape):
        raise ValueError(f"blends, target_a and target_b must have one shape, got "
                         f"{x.shape}, {ta.shape}, {tb.shape}")
    n = x.shape[0]
    if catalogue is not None:
        if len(catalogue) != n:
            raise ValueError(f"catalogue has {len(catalogue)} rows but there are {n} blends; "
                             "pass the catalogue rows of these blends, in order")
        missing = [c for c in bin_columns if c not in catalogue]
        if missing:
            raise ValueError(f"catalogue lacks the binning column(s) {missing}; pass bin_columns= "
                             f"a subset of {list(catalogue.columns)}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    scorer = DeblendScorer(channel_axis=1)
    seconds = np.empty(n)
    for start in range(0, n, batch_size):
        stop = min(start + batch_size, n)
        batch = np.ascontiguousarray(np.moveaxis(x[start:stop], 1, -1))
        t0 = time.perf_counter()
        a, b = deblend_fn(batch)
        seconds[start:stop] = (time.perf_counter() - t0) / (stop - start)
        scorer.update(_outputs(a, batch.shape, "output a"), _outputs(b, batch.shape, "output b"),
                      ta[start:stop], tb[start:stop])
    scores = scorer.compute()
    per_example = scores.per_blend.copy()
    per_example["seconds"] = seconds
    binned: dict[str, pd.DataFrame] = {}
    if catalogue is not None:
        for col in bin_columns:
            per_example[col] = catalogue[col].to_numpy()
            binned[col] = binned_scores(per_example, col, bins)
    summary = {"n": float(n), **scores.summary, "seconds_per_blend": float(seconds.mean())}
    return EvaluationResult(per_example=per_example, summary=summary, binned=binned)


def evaluate_methods(
    methods: Mapping[str, Callable[[np.ndarray], tuple[Any, Any]]],
    blends: Any,
    target_a: Any,
    target_b: Any,
    catalogue: pd.DataFrame | None = None,
    *,
    batch_size: int = 64,
) -> dict[str, EvaluationResult]:
    """:func:`evaluate_deblender` for several deblenders on the same blends, by name."""
    if not methods:
        raise ValueError("methods is empty; pass at least one {name: deblend_fn}")
    return {name: evaluate_deblender(fn, blends, target_a, target_b, catalogue,
                                     batch_size=batch_size)
            for name, fn in methods.items()}


_TABLE_KEYS = ("n", "psnr_a_mean", "psnr_b_mean", "psnr_pooled_mean", "psnr_pooled_median",
               "ssim_a_dr1_mean", "ssim_b_dr1_mean", "ssim_pooled_dr1_mean",
               "ssim_pooled_dr1_median", "ssim_pooled_dr2_mean", "ssim_pooled_dr2_median",
               "seconds_per_blend")


def comparison_table(results: Mapping[str, EvaluationResult]) -> pd.DataFrame:
    """One row per method of :func:`evaluate_methods` results (the columns of :func:`compare_methods`)."""
    table = pd.DataFrame.from_dict({name: {k: r.summary[k] for k in _TABLE_KEYS}
                                    for name, r in results.items()}, orient="index")
    table["n"] = table["n"].astype(int)
    table.index.name = "method"
    return table


def compare_methods(
    methods: Mapping[str, Callable[[np.ndarray], tuple[Any, Any]]],
    blends: Any,
    target_a: Any,
    target_b: Any,
    *,
    batch_size: int = 64,
) -> pd.DataFrame:
    """Evaluate several deblenders on the same blends and tabulate them side by side.

    Parameters
    ----------
    methods : mapping of str to callable
        Deblenders by name (e.g. ``{"GAN": galaxai.deblend, **DEBLENDERS}``).
    blends, target_a, target_b, batch_size
        As in :func:`evaluate_deblender`.

    Returns
    -------
    pandas.DataFrame
        Indexed by method, in the given order: ``n``; PSNR (dB, data_range 1) means per branch,
        pooled mean and median; SSIM pooled mean and median at data_range 1 and 2 and per-branch
        means at data_range 1; ``seconds_per_blend``.
    """
    return comparison_table(evaluate_methods(methods, blends, target_a, target_b,
                                             batch_size=batch_size))


def _pooled(per_example: pd.DataFrame, pooled: str) -> np.ndarray:
    """Per-blend mean of the two branches' scores of ``pooled`` (a key of ``_POOLED``; its mean
    is the pooled mean)."""
    a, b = _POOLED[pooled]
    return 0.5 * (per_example[a].to_numpy() + per_example[b].to_numpy())


def paired_differences(results: Mapping[str, EvaluationResult], reference: str, *,
                       by: str | None = None, bins: int | Sequence[float] = 4) -> pd.DataFrame:
    """Paired differences ``reference − method`` over the same blends, mean ± standard error.

    Parameters
    ----------
    results : mapping of str to EvaluationResult
        From :func:`evaluate_methods` (every method scored on the same blends).
    reference : str
        The method subtracted from (e.g. the GAN).
    by : str, optional
        A catalogue column of the per-example tables (``separation_px``, ``flux_ratio``): one
        row per (method, quantile bin) instead of one per method.
    bins : int or sequence of float
        Quantile bins of ``by`` (int) or explicit edges.

    Returns
    -------
    pandas.DataFrame
        ``n`` and, for PSNR A, B, pooled (dB) and pooled SSIM (data_range 1), ``<score>_diff``
        and ``<score>_se`` (standard error of the mean difference, ``std/√n``).
    """
    if reference not in results:
        raise KeyError(f"reference {reference!r} is not among the methods {list(results)}")
    ref = results[reference].per_example
    rows = []
    for name, result in results.items():
        if name == reference:
            continue
        other = result.per_example
        if len(other) != len(ref):
            raise ValueError(f"{name} was scored on {len(other)} blends, {reference} on {len(ref)}")
        diffs = {
            "psnr_a": ref["psnr_a"].to_numpy() - other["psnr_a"].to_numpy(),
            "psnr_b": ref["psnr_b"].to_numpy() - other["psnr_b"].to_numpy(),
            **{key: _pooled(ref, key) - _pooled(other, key)
               for key in ("psnr_pooled", "ssim_pooled_dr1")},
        }
        if by is None:
            groups = [("all", np.ones(len(ref), dtype=bool))]
        else:
            if by not in ref:
                raise ValueError(f"per-example tables lack {by!r}; evaluate with a catalogue")
            cut = pd.qcut(ref[by], bins, duplicates="drop") if isinstance(bins, int) \
                else pd.cut(ref[by], bins)
            groups = [(str(interval), (cut == interval).to_numpy())
                      for interval in cut.cat.categories]
        for label, mask in groups:
            n = int(mask.sum())
            row = {"method": f"{reference} − {name}", "n": n}
            if by is not None:
                row[by] = label
            for key, d in diffs.items():
                d = d[mask]
                row[f"{key}_diff"] = float(d.mean()) if n else np.nan
                row[f"{key}_se"] = float(d.std(ddof=1) / np.sqrt(n)) if n > 1 else np.nan
            rows.append(row)
    return pd.DataFrame(rows)
