"""Tests of galaxai.data.augment: each stretch from its formula, merges, JPEG, validation."""
from __future__ import annotations

import math

import numpy as np
import pytest

from galaxai.data.augment import DisplayAugment, Look, apply_look, augment_pair, draw_look, jpeg


def _look(stretch, merge="max", param=0.1, gain=1.0, pedestal=0.05, quality=0):
    return Look(stretch, gain, pedestal, param, merge, quality)


@pytest.mark.parametrize("stretch,f", [
    ("linear", lambda u: u),
    ("sqrt", lambda u: math.copysign(math.sqrt(abs(u)), u)),
    ("log", lambda u: math.copysign(math.log(1 + 100 * abs(u)) / math.log(101), u)),
    ("asinh", lambda u: math.asinh(u / 100) / math.asinh(1 / 100)),
])
def test_stretches_follow_their_formulas(stretch, f):
    signal = np.array([-0.01, 0.0, 0.003, 0.1, 0.4]).reshape(1, 1, 5)
    look = _look(stretch, param=100.0 if stretch in ("log", "asinh") else 0.1, gain=1.5,
                 pedestal=0.08)
    got = apply_look(signal, look).ravel()
    want = [min(max(0.08 + 0.92 * f(1.5 * u), 0.0), 1.0) for u in signal.ravel()]
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)


def _pair():
    a = np.full((3, 8, 8), 0.05)
    b = np.full((3, 8, 8), 0.04)
    a[:, 3:5, 3:5] = 0.6
    b[:, 2:6, 4:6] = 0.5
    return a, b, np.full(3, 0.05), np.full(3, 0.04)


def test_identity_max_is_the_paper_blend_and_sum_adds_light():
    a, b, sa, sb = _pair()
    blend, ta, tb = augment_pair(a, b, sa, sb, _look("identity"))
    np.testing.assert_allclose(blend, np.maximum(a, b), atol=1e-7)
    np.testing.assert_allclose(ta, a, atol=1e-7)
    blend, _, _ = augment_pair(a, b, sa, sb, _look("identity", merge="sum"))
    np.testing.assert_allclose(blend, np.clip(a + b - 0.04, 0, 1), atol=1e-7)


def test_sum_merge_adds_signals_before_the_stretch():
    a, b, sa, sb = _pair()
    look = _look("sqrt", merge="sum")
    blend, ta, tb = augment_pair(a, b, sa, sb, look)
    np.testing.assert_allclose(blend, apply_look((a - 0.05) + (b - 0.04), look), atol=1e-6)
    np.testing.assert_allclose(ta, apply_look(a - 0.05, look), atol=1e-6)
    # a stretched max blend is the max of the stretched targets (monotone stretch)
    blend, ta, tb = augment_pair(a, b, sa, sb, _look("sqrt"))
    np.testing.assert_allclose(blend, np.maximum(ta, tb), atol=1e-7)


def test_jpeg_quantises_and_compresses():
    rng = np.random.default_rng(0)
    image = np.clip(0.3 + 0.1 * rng.standard_normal((3, 16, 16)), 0, 1)
    out = jpeg(image, 50)
    assert out.shape == image.shape and out.dtype == np.float32
    assert np.allclose(out * 255, np.rint(out * 255), atol=1e-4)  # 8-bit values
    assert 0.005 < np.abs(out - image).mean() < 0.1  # lossy, yet the same image
    a, b, sa, sb = _pair()
    blend, ta, tb = augment_pair(a, b, sa, sb, _look("identity", quality=60))
    np.testing.assert_allclose(ta, jpeg(a, 60))


def test_draws_are_seeded_and_cover_the_choices():
    cfg = DisplayAugment()
    looks = [draw_look(np.random.default_rng([1, i]), cfg) for i in range(400)]
    assert looks[:5] == [draw_look(np.random.default_rng([1, i]), cfg) for i in range(5)]
    assert {lk.stretch for lk in looks} == set(cfg.stretches)
    assert {lk.merge for lk in looks} == {"max", "sum"}
    share_jpeg = np.mean([lk.jpeg_quality > 0 for lk in looks])
    assert 0.4 < share_jpeg < 0.6
    assert all(40 <= lk.jpeg_quality <= 95 for lk in looks if lk.jpeg_quality)


@pytest.mark.parametrize("kwargs,match", [
    ({"stretches": ("gamma",)}, "stretches"),
    ({"stretches": ()}, "stretches"),
    ({"p_sum": 1.5}, "p_sum"),
    ({"jpeg_quality": (0, 50)}, "jpeg_quality"),
])
def test_bad_settings_are_named(kwargs, match):
    with pytest.raises(ValueError, match=match):
        DisplayAugment(**kwargs)


def test_mild_preset_keeps_more_of_the_stored_look():
    full, mild = DisplayAugment.preset("full"), DisplayAugment.preset("mild")
    assert full == DisplayAugment()
    looks = [draw_look(np.random.default_rng([2, i]), mild) for i in range(600)]
    share = {s: np.mean([lk.stretch == s for lk in looks]) for s in ("identity", "sqrt", "log")}
    assert 0.42 < share["identity"] < 0.58 and share["sqrt"] == share["log"] == 0
    assert 0.24 < np.mean([lk.merge == "sum" for lk in looks]) < 0.36
    assert all(lk.jpeg_quality == 0 or lk.jpeg_quality >= 60 for lk in looks)
    with pytest.raises(ValueError, match="unknown augmentation preset"):
        DisplayAugment.preset("strong")
