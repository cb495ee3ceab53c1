"""Property-based tests of Algorithm 1 (:func:`galaxai.morphology.bar_length`) on random smooth maps.

Maps are sums of one to three elongated Gaussian blobs (random centre, size, axis ratio, angle,
amplitude) scaled to a maximum of 1, the shape of single-model SmoothGrad maps.
"""
from __future__ import annotations

import math

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from galaxai.morphology import bar_length, measure_bar

_SETTINGS = settings(max_examples=25, deadline=None)


@st.composite
def smooth_maps(draw) -> np.ndarray:
    size = draw(st.sampled_from([16, 20, 24]))
    rows, cols = np.mgrid[0:size, 0:size].astype(np.float64)
    total = np.zeros((size, size))
    for _ in range(draw(st.integers(1, 3))):
        r0 = draw(st.floats(0.2, 0.8)) * (size - 1)
        c0 = draw(st.floats(0.2, 0.8)) * (size - 1)
        sigma = draw(st.floats(1.0, size / 3))
        q = draw(st.floats(0.15, 1.0))
        angle = math.radians(draw(st.floats(0.0, 180.0)))
        amplitude = draw(st.floats(0.3, 1.0))
        u = (rows - r0) * math.cos(angle) + (cols - c0) * math.sin(angle)
        v = -(rows - r0) * math.sin(angle) + (cols - c0) * math.cos(angle)
        total += amplitude * np.exp(-0.5 * ((u / sigma) ** 2 + (v / (q * sigma)) ** 2))
    return total / total.max()


thresholds = st.tuples(st.floats(0.5, 0.99), st.integers(0, 40))


@_SETTINGS
@given(smooth_maps(), thresholds)
def test_fast_takes_the_same_decision_as_paper(m, t):
    t_c, t_l = t
    paper, fast = measure_bar(m, t_c, t_l, "paper"), measure_bar(m, t_c, t_l, "fast")
    assert fast.threshold == paper.threshold
    assert fast.count == paper.count
    assert fast.length(None) == paper.length(None)
    assert bar_length(m, t_c, t_l, "fast") == bar_length(m, t_c, t_l, "paper")


@_SETTINGS
@given(smooth_maps(), thresholds, st.sampled_from(["paper", "fast", "elongation"]))
def test_length_is_at_least_one_pixel_and_at_most_the_diagonal(m, t, method):
    length = bar_length(m, *t, method, scale_to=None)
    assert 1.0 <= length <= math.hypot(m.shape[0] - 1, m.shape[1] - 1) + 1e-12


@_SETTINGS
@given(smooth_maps(), thresholds, st.sampled_from(["paper", "fast", "elongation"]),
       st.integers(-20, 20))
def test_renormalised_length_is_invariant_to_positive_scaling(m, t, method, power):
    """With ``renormalise=True`` the map's scale is irrelevant (powers of two: exact arithmetic).

    The faithful default compares the map with absolute thresholds 0.5 … 0.9999, so there a
    scaled map is a different measurement by design.
    """
    scale = 2.0 ** power
    assert (bar_length(m * scale, *t, method, renormalise=True)
            == bar_length(m, *t, method, renormalise=True))
