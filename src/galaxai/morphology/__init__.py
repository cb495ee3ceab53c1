"""galaxai.morphology: saliency-based galaxy measurements.

Bar lengths from saliency maps by Algorithm 1 of Bhambra, Joachimi & Lahav (2022,
arXiv:2110.08288) and its fast and rotation-invariant variants (:mod:`.barlength`), and the grid
search and honest correlation reports used to compare them with the Hoyle et al. (2011) catalogue
(:mod:`.gridsearch`).
"""
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
]
