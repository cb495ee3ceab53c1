"""Tests of galaxai.evaluate against an independent computation on a small fixture."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from skimage.metrics import structural_similarity

from galaxai.evaluate import binned_scores, compare_methods, evaluate_deblender

N, H = 7, 16


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(11)
    target_a = rng.random((N, 3, H, H)).astype(np.float32)
    target_b = rng.random((N, 3, H, H)).astype(np.float32)
    blends = np.maximum(target_a, target_b)
    catalogue = pd.DataFrame({
        "separation_px": np.array([3.0, 5.0, 8.0, 12.0, 15.0, 20.0, 25.0]),
        "flux_ratio": np.array([0.2, 0.5, 1.0, 2.0, 3.0, 5.0, 9.0]),
    })
    return blends, target_a, target_b, catalogue


def _fake_deblender(calls):
    """Deterministic outputs: a = 0.9 * blend, b = blend ** 2; records the input shapes."""
    def fn(blends):
        calls.append(blends.shape)
        return 0.9 * blends, blends**2
    return fn


def _independent_row(out, truth):
    """PSNR and SSIM of one (H, W, 3) output against its (3, H, W) target, written out directly."""
    t = np.moveaxis(truth.astype(np.float64), 0, -1)
    o = out.astype(np.float64)
    mse = ((o - t) ** 2).sum() / o.size
    ssims = [np.mean([structural_similarity(o[..., c], t[..., c], data_range=r) for c in range(3)])
             for r in (1.0, 2.0)]
    return 10 * math.log10(1.0 / mse), ssims[0], ssims[1]


def test_per_example_equals_independent_computation(data):
    blends, ta, tb, cat = data
    calls = []
    result = evaluate_deblender(_fake_deblender(calls), blends, ta, tb, cat, batch_size=3)
    assert calls == [(3, H, H, 3), (3, H, H, 3), (1, H, H, 3)]  # channel-last batches
    table = result.per_example
    for i in range(N):
        x = np.moveaxis(blends[i], 0, -1)
        pa, sa1, sa2 = _independent_row(0.9 * x, ta[i])
        pb, sb1, sb2 = _independent_row(x**2, tb[i])
        row = table.iloc[i]
        np.testing.assert_allclose(
            [row.psnr_a, row.ssim_a_dr1, row.ssim_a_dr2, row.psnr_b, row.ssim_b_dr1, row.ssim_b_dr2],
            [pa, sa1, sa2, pb, sb1, sb2], rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(table["separation_px"], cat["separation_px"])
    assert np.all(np.isfinite(table["seconds"])) and np.all(table["seconds"] >= 0)
    s = result.summary
    assert s["n"] == N
    assert s["psnr_pooled_mean"] == pytest.approx((table.psnr_a.mean() + table.psnr_b.mean()) / 2)
    assert s["ssim_b_dr2_median"] == pytest.approx(np.median(table.ssim_b_dr2))
    assert s["seconds_per_blend"] == pytest.approx(table.seconds.mean())


def test_binned_scores_equal_manual_grouping(data):
    blends, ta, tb, cat = data
    result = evaluate_deblender(_fake_deblender([]), blends, ta, tb, cat, bins=[0, 10, 30])
    sep = result.binned["separation_px"]
    assert list(sep["n"]) == [3, 4]
    table = result.per_example
    near = table[cat["separation_px"] <= 10]
    assert sep["psnr_a"].iloc[0] == pytest.approx(near.psnr_a.mean())
    assert sep["psnr_pooled"].iloc[0] == pytest.approx(((near.psnr_a + near.psnr_b) / 2).mean())
    assert sep["ssim_pooled_dr2"].iloc[1] == pytest.approx(
        ((table.ssim_a_dr2 + table.ssim_b_dr2) / 2)[cat["separation_px"] > 10].mean())
    quartiles = binned_scores(table, "flux_ratio")
    assert quartiles["n"].sum() == N and len(quartiles) == 4
    with pytest.raises(ValueError, match="not a column"):
        binned_scores(table, "redshift")


def test_compare_methods_table(data):
    blends, ta, tb, _ = data
    def oracle(x):  # returns the truths (all N blends arrive in one batch)
        assert len(x) == N
        return np.moveaxis(ta, 1, -1), np.moveaxis(tb, 1, -1)

    table = compare_methods({"copy": lambda x: (x, x), "fake": _fake_deblender([]), "oracle": oracle},
                            blends, ta, tb)
    assert list(table.index) == ["copy", "fake", "oracle"]
    assert {"psnr_pooled_mean", "ssim_pooled_dr1_mean", "ssim_pooled_dr2_mean", "seconds_per_blend"} <= set(table)
    single = evaluate_deblender(_fake_deblender([]), blends, ta, tb)
    assert table.loc["fake", "psnr_pooled_mean"] == pytest.approx(single.summary["psnr_pooled_mean"])
    assert np.isinf(table.loc["oracle", "psnr_pooled_mean"])
    assert table.loc["oracle", "ssim_pooled_dr1_mean"] == pytest.approx(1.0)
    assert (table["n"] == N).all()


def test_bad_inputs(data):
    blends, ta, tb, cat = data
    copy = lambda x: (x, x)  # noqa: E731
    with pytest.raises(ValueError, match="rows"):
        evaluate_deblender(copy, blends, ta, tb, cat.iloc[:3])
    with pytest.raises(ValueError, match="binning column"):
        evaluate_deblender(copy, blends, ta, tb, cat.drop(columns="flux_ratio"))
    with pytest.raises(ValueError, match=r"\(v \+ 1\) / 2"):
        evaluate_deblender(lambda x: (2 * x - 1, x), blends, ta, tb)
    with pytest.raises(ValueError, match="shape"):
        evaluate_deblender(lambda x: (x[:, :8], x), blends, ta, tb)
    with pytest.raises(ValueError, match="channel-first"):
        evaluate_deblender(copy, np.moveaxis(blends, 1, -1), ta, tb)
    with pytest.raises(ValueError, match="methods is empty"):
        compare_methods({}, blends, ta, tb)


def test_paired_differences_from_their_definition():
    import numpy as np
    import pandas as pd

    from galaxai.evaluate import EvaluationResult, paired_differences

    rng = np.random.default_rng(0)

    def result(offset):
        cols = {c: rng.normal(25 + offset, 2, 40) for c in ("psnr_a", "psnr_b")}
        cols.update({c: rng.uniform(0.5, 0.9, 40) for c in
                     ("ssim_a_dr1", "ssim_b_dr1", "ssim_a_dr2", "ssim_b_dr2")})
        cols["separation_px"] = np.linspace(5, 20, 40)
        return EvaluationResult(per_example=pd.DataFrame(cols), summary={}, binned={})

    results = {"gan": result(1.0), "sep": result(0.0)}
    table = paired_differences(results, "gan")
    g, s = results["gan"].per_example, results["sep"].per_example
    d = (g.psnr_a + g.psnr_b) / 2 - (s.psnr_a + s.psnr_b) / 2
    row = table.iloc[0]
    assert row["method"] == "gan − sep" and row["n"] == 40
    assert row["psnr_pooled_diff"] == pytest.approx(d.mean())
    assert row["psnr_pooled_se"] == pytest.approx(d.std(ddof=1) / np.sqrt(40))
    e = (g.ssim_a_dr1 + g.ssim_b_dr1) / 2 - (s.ssim_a_dr1 + s.ssim_b_dr1) / 2
    assert row["ssim_pooled_dr1_diff"] == pytest.approx(e.mean())
    assert row["psnr_a_diff"] == pytest.approx((g.psnr_a - s.psnr_a).mean())
    binned = paired_differences(results, "gan", by="separation_px", bins=2)
    assert list(binned["n"]) == [20, 20]
    assert binned["psnr_pooled_diff"].iloc[0] == pytest.approx(d[:20].mean())
