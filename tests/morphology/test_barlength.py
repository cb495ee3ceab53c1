"""Tests of galaxai.morphology.barlength (Algorithm 1 of Bhambra, Joachimi & Lahav 2022).

The reference maps are built here from the Ferrers and Gaussian formulas, independently of the
package; the "paper" method is the reference for "fast".
"""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.ndimage import gaussian_filter

from galaxai.morphology import (
    STOP_THRESHOLDS,
    bar_length,
    bar_lengths,
    measure_bar,
    rescale_length,
    x_input,
)


def ferrers_map(pa_deg: float, a: float = 30.0, q: float = 0.25, n: float = 2.0,
                size: int = 224) -> np.ndarray:
    """Min–max Ferrers bar (1 − m²)^(n + 1/2), m² = (u/a)² + (v/(q a))², centred on the frame."""
    centre = (size - 1) / 2.0
    yy, xx = np.mgrid[0:size, 0:size].astype(float)
    t = math.radians(pa_deg)
    u = (xx - centre) * math.cos(t) + (yy - centre) * math.sin(t)
    v = -(xx - centre) * math.sin(t) + (yy - centre) * math.cos(t)
    m2 = (u / a) ** 2 + (v / (q * a)) ** 2
    sigma = np.where(m2 < 1.0, np.abs(1.0 - m2) ** (n + 0.5), 0.0)
    return (sigma - sigma.min()) / (sigma.max() - sigma.min())


def gaussian_map(size: int, sigma: float, q: float = 1.0, pa_deg: float = 0.0) -> np.ndarray:
    centre = (size - 1) / 2.0
    yy, xx = np.mgrid[0:size, 0:size].astype(float)
    t = math.radians(pa_deg)
    u = (xx - centre) * math.cos(t) + (yy - centre) * math.sin(t)
    v = -(xx - centre) * math.sin(t) + (yy - centre) * math.cos(t)
    g = np.exp(-0.5 * ((u / sigma) ** 2 + (v / (q * sigma)) ** 2))
    return (g - g.min()) / (g.max() - g.min())


def smooth_map(seed: int, size: int, sigma: float) -> np.ndarray:
    g = gaussian_filter(np.random.default_rng(seed).normal(size=(size, size)), sigma)
    return (g - g.min()) / (g.max() - g.min())


def assert_same(p, f) -> None:
    assert f.threshold_index == p.threshold_index
    assert f.threshold == p.threshold
    assert f.stopped_by == p.stopped_by
    assert f.count == p.count
    assert np.array_equal(f.mask, p.mask)
    assert f.length_px == p.length_px
    assert (math.isnan(f.statistic) and math.isnan(p.statistic)) or f.statistic == p.statistic


def _cases():
    rng = np.random.default_rng(2022)
    settings = [(0.85, 40), (0.7, 10), (0.9, 50), (0.75, 20), (0.8, 30)]
    cases = []
    for i in range(8):
        size = (48, 64)[i % 2]
        m = smooth_map(i, size, rng.uniform(2.0, 8.0))
        cases.append((f"smooth{i}", m, settings[i % 5]))
    for i in range(3):  # quantised maps: many exactly tied values
        m = smooth_map(100 + i, 48, 4.0)
        cases.append((f"ties{i}", np.round(m, 2), settings[(i + 1) % 5]))
    for i in range(7):  # Ferrers bars at many angles and axis ratios
        pa, q, a = rng.uniform(0, 180), rng.uniform(0.15, 0.7), rng.uniform(8, 28)
        m = ferrers_map(pa, a=a, q=q, size=64)
        cases.append((f"ferrers{i}_pa{pa:.0f}_q{q:.2f}", m, settings[i % 5]))
    for i, (q, pa) in enumerate([(1.0, 0.0), (0.5, 30.0), (0.3, 75.0)]):
        cases.append((f"gauss{i}", gaussian_map(48, 6.0, q, pa), settings[i]))
    one = np.zeros((32, 32))
    one[5, 7] = 1.0
    two = one.copy()
    two[20, 3] = 0.8
    cases += [
        ("single_pixel", one, (0.85, 40)),
        ("single_pixel_tl0", one, (0.85, 0)),
        ("two_pixels", two, (0.85, 1)),
        ("zeros", np.zeros((40, 40)), (0.85, 40)),
        ("const_0.7", np.full((40, 40), 0.7), (0.85, 40)),
        ("const_1", np.ones((24, 24)), (0.85, 10)),
        ("float32_smooth", smooth_map(7, 48, 4.0).astype(np.float32), (0.85, 40)),
    ]
    return cases


CASES = _cases()


@pytest.mark.parametrize("name,m,setting", CASES, ids=[c[0] for c in CASES])
def test_fast_equals_paper(name, m, setting):
    t_c, t_l = setting
    p = measure_bar(m, t_c, t_l, "paper")
    f = measure_bar(m, t_c, t_l, "fast")
    assert_same(p, f)
    assert bar_length(m, t_c, t_l, "fast") == bar_length(m, t_c, t_l, "paper")


def _cases_224():
    """The authors' 224² maps: exact ties stopping on ρ, a bar in smooth noise on the count."""
    bar = 0.7 * ferrers_map(15.0, a=35.0, q=0.3) + 0.3 * smooth_map(5, 224, 6.0)
    return [("ties224", np.round(smooth_map(13, 224, 8.0), 2), (0.8, 30)),
            ("bar_noise224", (bar - bar.min()) / (bar.max() - bar.min()), (0.85, 40))]


CASES_224 = _cases_224()


@pytest.mark.parametrize("name,m,setting", CASES_224, ids=[c[0] for c in CASES_224])
def test_fast_equals_paper_224(name, m, setting):
    """One "paper" run per map (~1–2 s each at 224²); the stop rule differs between the two."""
    p = measure_bar(m, *setting, "paper")
    assert_same(p, measure_bar(m, *setting, "fast"))
    assert p.stopped_by == {"ties224": "statistic", "bar_noise224": "count"}[name]
    assert m.shape == (224, 224) and p.count > 1


def _reference_stats(m):
    out = []
    for t in STOP_THRESHOLDS:
        r, c = np.nonzero(m > t)
        if r.size < 2:
            out.append(np.nan)
            continue
        with np.errstate(all="ignore"):
            out.append(abs(np.corrcoef(r, c)[1, 0]))
    return np.array(out)


def test_fast_equals_paper_on_exact_ties_with_t_c():
    """t_c equal to (or one ulp below) an attained |ρ| exercises the near-tie re-evaluation."""
    m = 0.75 * gaussian_map(40, 6.0, q=0.5, pa_deg=35.0)  # empty mask from T = 0.75 on
    rho = _reference_stats(m)
    top = np.nanmax(rho)
    k_top = int(np.nanargmax(rho))
    k_empty = int(np.argmax(STOP_THRESHOLDS >= 0.75))
    for t_c, expected in ((float(top), k_empty), (float(np.nextafter(top, -np.inf)), k_top)):
        p = measure_bar(m, t_c, 1, "paper")
        f = measure_bar(m, t_c, 1, "fast")
        assert_same(p, f)
        assert p.threshold_index == expected
        # strict >: the maximum itself never passes; one ulp below it, it does
        assert p.stopped_by == ("count" if expected == k_empty else "statistic")
    mid = float(rho[800])  # an intermediate attained value
    assert_same(measure_bar(m, mid, 1, "paper"), measure_bar(m, mid, 1, "fast"))


# §4 table of specs/smoothgrad_barlength.md: Ferrers n=2, a=30, q=0.25, 224², T_c 0.85, T_l 40
TABLE = {0: (0.887, 11.0, 29.0), 10: (0.878, 13.3, 29.4), 20: (0.875, 12.1, 29.2),
         30: (0.5, 29.2, 29.2), 45: (0.5, 28.3, 28.3), 60: (0.5, 29.2, 29.2),
         90: (0.887, 11.0, 29.0)}


@pytest.mark.parametrize("pa", sorted(TABLE))
def test_section4_table(pa):
    stop_t, length_paper, length_elong = TABLE[pa]
    m = ferrers_map(pa)
    p = measure_bar(m, 0.85, 40, "paper")
    assert p.threshold == pytest.approx(stop_t, abs=6e-4)
    assert p.length_px == pytest.approx(length_paper, abs=0.05)
    assert p.stopped_by == ("statistic" if stop_t == 0.5 else "count")
    e = measure_bar(m, 0.85, 40, "elongation")
    assert e.length_px == pytest.approx(length_elong, abs=0.05)
    assert e.threshold == 0.5 and e.stopped_by == "statistic"


def test_ferrers_45_stops_at_half_gives_049_of_true_length():
    a = 60.0
    for method in ("paper", "fast", "elongation"):
        r = measure_bar(ferrers_map(45.0, a=a), 0.85, 40, method)
        assert r.threshold == 0.5 and r.stopped_by == "statistic"
        expected = math.sqrt(1.0 - 0.5 ** 0.4) * 2 * a  # (1 - m²)^2.5 = 0.5 at m² = 1 - 0.5^0.4
        assert r.length_px == pytest.approx(expected, abs=2.0)
        assert r.length_px / (2 * a) == pytest.approx(0.49, abs=0.015)


def test_round_gaussian_stops_on_count():
    m = gaussian_map(96, 10.0)
    r = measure_bar(m, 0.85, 40, "fast")
    assert r.stopped_by == "count" and r.count < 40
    assert int(np.sum(m > STOP_THRESHOLDS[r.threshold_index - 1])) >= 40
    assert r.statistic < 0.85 or math.isnan(r.statistic)
    # the mask is a small disc: its diameter is about sqrt(4 count / pi)
    assert r.length_px == pytest.approx(math.sqrt(4 * r.count / math.pi), abs=2.0)
    e = measure_bar(m, 0.85, 40, "elongation")
    assert e.threshold_index == r.threshold_index and e.stopped_by == "count"


def test_elongation_same_length_at_every_angle():
    lengths = [measure_bar(ferrers_map(pa), 0.85, 40, "elongation").length_px
               for pa in range(0, 180, 5)]
    assert max(lengths) - min(lengths) <= 1.5
    assert np.median(lengths) == pytest.approx(math.sqrt(1 - 0.5 ** 0.4) * 60, abs=1.0)
    paper = [bar_length(ferrers_map(pa), 0.85, 40, "fast", scale_to=None) for pa in (0, 45)]
    assert paper[1] - paper[0] > 15  # the orientation bias that "elongation" removes


def test_elongation_matches_covariance_eigenvalue_loop():
    """An independent loop with e = (λ1 − λ2)/(λ1 + λ2) from numpy.linalg.eigvalsh."""
    for m, t_c, t_l in ((gaussian_map(48, 6.0, q=0.6, pa_deg=20.0), 0.8, 20),
                        (smooth_map(3, 48, 4.0), 0.85, 40),
                        (ferrers_map(0.0, a=15, q=0.5, size=64), 0.85, 30)):
        for t in STOP_THRESHOLDS:
            r, c = np.nonzero(m > t)
            e = np.nan
            if r.size >= 2:
                lo, hi = np.linalg.eigvalsh(np.cov(np.vstack([r, c]).astype(float)))
                e = (hi - lo) / (hi + lo)
            if e > t_c or r.size < t_l:
                break
        d = max([1.0] + [math.dist(p1, p2) for p1 in zip(r, c) for p2 in zip(r, c)])
        res = measure_bar(m, t_c, t_l, "elongation")
        assert res.threshold == t and res.count == r.size
        assert res.length_px == pytest.approx(d, abs=1e-12)


def test_strict_greater_than():
    m = np.zeros((32, 32))
    idx = np.arange(20)
    m[idx, idx] = 0.5  # a perfect diagonal exactly at the first threshold: excluded
    for method in ("paper", "fast", "elongation"):
        r = measure_bar(m, 0.85, 1, method)
        assert r.threshold == 0.5 and r.count == 0 and r.stopped_by == "count"
        assert r.length_px == 1.0
    disc = np.zeros((32, 32))
    yy, xx = np.mgrid[0:32, 0:32]
    disc[(yy - 16) ** 2 + (xx - 16) ** 2 <= 25] = STOP_THRESHOLDS[100]
    for method in ("paper", "fast"):
        r = measure_bar(disc, 0.99, 10, method)
        assert r.threshold_index == 100 and r.count == 0 and r.length_px == 1.0


def test_floor_of_one_and_scaling():
    one = np.zeros((224, 224))
    one[50, 60] = 1.0
    for m in (one, np.zeros((224, 224))):
        for method in ("paper", "fast", "elongation"):
            assert bar_length(m, 0.85, 40, method, scale_to=None) == 1.0
            assert bar_length(m, 0.85, 40, method) == 424 / 224
    line = np.zeros((224, 224))
    line[100, 90:130] = 1.0  # 40 pixels in one row
    l224 = bar_length(line, 0.85, 40, "fast", scale_to=None)
    assert l224 == 39.0
    assert bar_length(line, 0.85, 40, "fast") == 39.0 * 424 / 224 == rescale_length(l224, 224)
    assert measure_bar(line, 0.85, 40, "fast").length(scale_to=None) == l224
    with pytest.raises(ValueError, match="square"):
        bar_length(np.zeros((20, 30)), 0.85, 40)
    assert bar_length(np.zeros((20, 30)), 0.85, 40, scale_to=None) == 1.0


def test_nan_statistic_never_passes():
    line = np.zeros((64, 64))
    line[30, 5:55] = 1.0  # zero row variance: Pearson is NaN at every threshold
    for method in ("paper", "fast"):
        r = measure_bar(line, 0.5, 40, method)
        assert math.isnan(r.statistic)
        assert r.stopped_by == "none" and r.threshold_index == STOP_THRESHOLDS.size - 1
        assert r.count == 50 and r.length_px == 49.0
    e = measure_bar(line, 0.5, 40, "elongation")  # a line is perfectly elongated
    assert e.statistic == pytest.approx(1.0) and e.threshold == 0.5 and e.length_px == 49.0


def test_batch_helper_matches_single_calls():
    maps = np.stack([smooth_map(s, 48, 4.0) for s in range(3)] + [ferrers_map(30, a=12, size=48)])
    t_cs, t_ls = [0.7, 0.85], [10, 40, 50]
    grid = bar_lengths(maps, t_cs, t_ls, "fast")
    assert grid.shape == (4, 2, 3)
    for b in range(4):
        for i, tc in enumerate(t_cs):
            for j, tl in enumerate(t_ls):
                assert grid[b, i, j] == bar_length(maps[b], tc, tl, "fast")
    assert bar_lengths(maps, 0.85, 40).shape == (4,)
    assert bar_lengths(maps, t_cs, 40, scale_to=None).shape == (4, 2)
    assert bar_lengths(maps, 0.85, t_ls, "elongation").shape == (4, 3)
    assert np.array_equal(bar_lengths(maps[:1], 0.85, 40, "paper"), bar_lengths(maps[:1], 0.85, 40))


def test_inputs_renormalise_and_x_input():
    m = ferrers_map(45.0, a=20, size=96)
    halved = m * 0.4  # max 0.4: empty mask at T = 0.5, length 1 (faithful)
    assert bar_length(halved, 0.85, 40, "fast", scale_to=None) == 1.0
    assert (bar_length(halved, 0.85, 40, "fast", renormalise=True)
            == bar_length(m, 0.85, 40, "fast"))
    t = torch.from_numpy(m.astype(np.float32))
    assert bar_length(t, 0.85, 40, "fast") == bar_length(m.astype(np.float32), 0.85, 40, "paper")
    image = np.zeros((96, 96, 3))
    image[..., 0], image[..., 1], image[..., 2] = 0.5, 1.0, 0.25
    luma = 0.2989 * 0.5 + 0.5870 * 1.0 + 0.1140 * 0.25
    assert np.allclose(x_input(m, image), m * luma)
    with pytest.raises(ValueError, match="channel-last"):
        x_input(m, image.transpose(2, 0, 1))


@pytest.mark.parametrize("kwargs,error,match", [
    (dict(saliency=np.zeros((2, 8, 8))), ValueError, "2-D"),
    (dict(saliency=np.zeros(8)), ValueError, "2-D"),
    (dict(saliency=np.full((8, 8), np.nan)), ValueError, "NaN"),
    (dict(saliency=np.array([[1.0, np.inf], [0, 0]])), ValueError, "NaN or infinite"),
    (dict(saliency=np.zeros((0, 4))), ValueError, "empty"),
    (dict(saliency=np.array([["a"]])), TypeError, "numeric"),
    (dict(t_c=1.5), ValueError, "t_c"),
    (dict(t_c=-0.1), ValueError, "t_c"),
    (dict(t_c="0.8"), TypeError, "t_c"),
    (dict(t_l=-1), ValueError, "t_l"),
    (dict(t_l=2.5), ValueError, "t_l"),
    (dict(method="median"), ValueError, "method"),
])
def test_bad_input(kwargs, error, match):
    args = dict(saliency=np.zeros((8, 8)), t_c=0.85, t_l=40, method="fast") | kwargs
    with pytest.raises(error, match=match):
        bar_length(**args)


def test_bad_batch_input():
    with pytest.raises(ValueError, match="B, H, W"):
        bar_lengths(np.zeros((8, 8)), 0.85, 40)
    with pytest.raises(ValueError, match="non-empty"):
        bar_lengths(np.zeros((1, 8, 8)), [], 40)
    with pytest.raises(ValueError, match="t_l"):
        bar_lengths(np.zeros((1, 8, 8)), 0.85, [10, -3])
    with pytest.raises(ValueError, match="positive integer"):
        rescale_length(10.0, 0)
