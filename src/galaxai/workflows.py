"""Jobs shared by the CLI and the demo: run one analysis and add it to a :class:`Report`.

Each function here composes the library (data, models, explain, metrics, viz) into one
user-facing result — tables, figures and files — so ``galaxai evaluate`` and ``make demo`` show
exactly the same thing. Functions take arrays in the store's convention (channel-first display
images in [0, 1]) and never train anything.
"""
from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np
import pandas as pd

from galaxai.evaluate import compare_methods, evaluate_deblender
from galaxai.viz.render import deblend_panel
from galaxai.viz.report import Report

__all__ = ["deblenders_for", "evaluation_section"]

Deblender = Callable[[np.ndarray], tuple[Any, Any]]


def deblenders_for(checkpoint: str | Path | None, *, classical: bool = True) -> dict[str, Deblender]:
    """The GAN at ``checkpoint`` (``None``: the shipped model) plus, optionally, classical peers."""
    from galaxai.api import deblend
    from galaxai.models.classical import DEBLENDERS

    methods: dict[str, Deblender] = {"GAN (galaxai)": partial(deblend, checkpoint=checkpoint)}
    if classical:
        methods.update({name: fn for name, fn in DEBLENDERS.items()})
    return methods


def evaluation_section(report: Report, methods: Mapping[str, Deblender], blends: np.ndarray,
                       target_a: np.ndarray, target_b: np.ndarray, catalogue: pd.DataFrame | None,
                       out_dir: Path, *, title: str, n_panels: int = 3) -> pd.DataFrame:
    """Score every method on the same blends; add the comparison, bins and Fig. 1 panels.

    The first method is the one binned and drawn. Writes ``comparison.csv`` and
    ``per_example.csv`` into ``out_dir`` and returns the comparison table.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    table = compare_methods(methods, blends, target_a, target_b)
    table.to_csv(out_dir / "comparison.csv")
    name, main = next(iter(methods.items()))
    result = evaluate_deblender(main, blends, target_a, target_b, catalogue)
    result.per_example.to_csv(out_dir / "per_example.csv")
    report.add_section(title, f"{len(blends)} held-out blends; every method sees the same blends. "
                       "PSNR uses data_range 1; SSIM is given for data_range 1 and for the legacy 2 "
                       "that old scikit-image used silently (it inflates SSIM).")
    report.add_table(table, "Method × PSNR (dB) × SSIM × seconds per blend")
    for column, binned in result.binned.items():
        report.add_table(binned, f"{name}: scores binned by {column}")
    out_a, out_b = (np.asarray(x) for x in main(np.moveaxis(blends[:n_panels], 1, -1)))
    for i in range(min(n_panels, len(blends))):
        path = deblend_panel(blends[i], target_a[i], target_b[i], out_a[i], out_b[i],
                             float(result.per_example["psnr_a"].iloc[i]),
                             float(result.per_example["psnr_b"].iloc[i]),
                             path=out_dir / f"panel_{i:03d}.png")
        report.add_figure(path, f"{name}, blend {i}: true A | true B | blend | output A | output B "
                          "(PSNR against the truths)")
    return table
