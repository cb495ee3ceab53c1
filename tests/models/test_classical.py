"""Tests of the classical deblenders on synthetic blends of Gaussian blobs."""
from __future__ import annotations

from functools import partial

import numpy as np
import pytest
import torch

from galaxai.metrics import psnr
from galaxai.models.classical import (
    DEBLENDERS,
    SCARLET2_AVAILABLE,
    choose_a_b,
    copy_blend,
    get_deblender,
    photutils_deblend,
    sep_deblend,
    split_by_segments,
)

SIZE = 80


def _blob(x0, y0, sigma, amp, colour):
    yy, xx = np.mgrid[:SIZE, :SIZE]
    return amp * np.exp(-((xx - x0) ** 2 + (yy - y0) ** 2) / (2 * sigma**2))[..., None] * np.asarray(colour)


@pytest.fixture(scope="module")
def separated():
    """Two display-space blends: A centred, B well separated (B brighter in the second one)."""
    rng = np.random.default_rng(5)
    c = (SIZE - 1) / 2
    specs = [((c, c, 5.0, 0.7), (c + 22, c - 18, 4.0, 0.5)),
             ((c + 1, c - 1, 4.0, 0.4), (c - 20, c + 21, 5.0, 0.9))]
    a, b = [], []
    for spec_a, spec_b in specs:
        a.append(np.clip(_blob(*spec_a, (1.0, 0.8, 0.6)) + 0.01 * rng.standard_normal((SIZE, SIZE, 3)), 0, 1))
        b.append(np.clip(_blob(*spec_b, (0.6, 0.8, 1.0)) + 0.01 * rng.standard_normal((SIZE, SIZE, 3)), 0, 1))
    a, b = np.asarray(a, np.float32), np.asarray(b, np.float32)
    return np.maximum(a, b), a, b, [s[1][:2] for s in specs]


def _centroid(img):
    w = img.sum(-1)
    yy, xx = np.indices(w.shape)
    return (xx * w).sum() / w.sum(), (yy * w).sum() / w.sum()


@pytest.mark.parametrize("method", [photutils_deblend, sep_deblend])
def test_segmentation_recovers_each_blob(separated, method):
    blend, a_true, b_true, b_pos = separated
    out_a, out_b = method(blend, unassigned="zero")
    assert out_a.shape == blend.shape and out_b.shape == blend.shape and out_a.dtype == np.float32
    assert out_a.min() >= 0 and out_a.max() <= 1 and out_b.min() >= 0 and out_b.max() <= 1
    copy_a, copy_b = copy_blend(blend)
    for out, truth, floor in ((out_a, a_true, copy_a), (out_b, b_true, copy_b)):
        gain = psnr(out, truth, channel_axis=-1) - psnr(floor, truth, channel_axis=-1)
        assert np.all(gain > 10.0), gain
    for i, (bx, by) in enumerate(b_pos):
        # A is the centred blob even when B is brighter; B is the other blob
        assert np.hypot(*np.subtract(_centroid(out_a[i]), (SIZE - 1) / 2)) < 1.5
        assert np.hypot(*np.subtract(_centroid(out_b[i]), (bx, by))) < 1.5


def test_unassigned_copy_removes_only_the_other_segment(separated):
    blend = separated[0]
    zero_a, zero_b = sep_deblend(blend, unassigned="zero")
    copy_a, copy_b = sep_deblend(blend)  # the default
    in_b = zero_b.sum(-1) > 0
    np.testing.assert_array_equal(copy_a[~in_b], blend[~in_b])
    assert np.all(copy_a[in_b] == 0)
    np.testing.assert_array_equal(copy_a[zero_a.sum(-1) > 0], zero_a[zero_a.sum(-1) > 0])
    with pytest.raises(ValueError, match="unassigned"):
        sep_deblend(blend, unassigned="share")


def test_choose_a_b_rules():
    labels = np.zeros((9, 9), int)
    labels[0:2, 0:2] = 1          # bright corner source
    labels[4, 4] = 2              # faint source at the centre -> A
    labels[7:9, 7:9] = 3          # medium source
    lum = np.where(labels == 1, 5.0, 0.0) + np.where(labels == 2, 0.1, 0.0) + np.where(labels == 3, 1.0, 0.0)
    assert choose_a_b(labels, lum) == (2, 1)
    assert choose_a_b(np.zeros((9, 9), int), lum) == (0, 0)
    only = (labels == 3).astype(int)
    assert choose_a_b(only, lum) == (1, 0)
    a, b = split_by_segments(np.ones((9, 9, 3)), only, lum, unassigned="zero")
    assert a.sum() == 3 * 4 and b.sum() == 0


@pytest.mark.parametrize("name", ["photutils", "sep"])
def test_edge_cases_blank_and_single_source(name):
    fn = partial(DEBLENDERS[name], unassigned="zero")
    blank = np.zeros((1, 32, 32, 3), np.float32)
    a, b = fn(blank)
    assert np.all(a == 0) and np.all(b == 0)
    single = _blob(39.5, 39.5, 5, 0.8, (1, 1, 1))[None].astype(np.float32)
    a, b = fn(torch.from_numpy(single))  # torch input accepted
    assert psnr(a, single, channel_axis=-1)[0] > 40 and np.all(b == 0)


def test_registry_and_bad_input(separated):
    assert {"copy", "photutils", "sep"} <= set(DEBLENDERS)
    assert get_deblender("sep") is sep_deblend
    with pytest.raises(KeyError, match="available"):
        get_deblender("sextractor")
    blend = separated[0]
    with pytest.raises(ValueError, match="channel-first"):
        photutils_deblend(np.moveaxis(blend, -1, 1))
    bad = blend.copy()
    bad[0, 0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        sep_deblend(bad)
    a, b = copy_blend(blend)
    np.testing.assert_array_equal(a, blend)
    np.testing.assert_array_equal(b, blend)


@pytest.mark.skipif(SCARLET2_AVAILABLE, reason="scarlet2 is installed")
def test_scarlet2_skipped_cleanly_when_missing():
    assert "scarlet2" not in DEBLENDERS
    with pytest.raises(ImportError, match="scarlet2.*pip install"):
        get_deblender("scarlet2")


@pytest.mark.skipif(not SCARLET2_AVAILABLE, reason="optional scarlet2 stack not installed")
def test_scarlet2_beats_copy(separated):
    blend, a_true, _, _ = separated
    out_a, _ = DEBLENDERS["scarlet2"](blend[:1], max_iter=50)
    assert psnr(out_a, a_true[:1], channel_axis=-1)[0] > psnr(blend[:1], a_true[:1], channel_axis=-1)[0]
