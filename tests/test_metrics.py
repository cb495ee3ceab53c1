"""Tests of galaxai.metrics against independent references (explicit formulas, scikit-image)."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from skimage.metrics import structural_similarity

from galaxai.metrics import PSNR, SSIM, DeblendScorer, deblend_scores, psnr, ssim


@pytest.fixture
def pair():
    rng = np.random.default_rng(1234)
    target = rng.random((5, 3, 24, 20))
    pred = np.clip(target + 0.05 * rng.standard_normal(target.shape), 0.0, 1.0)
    return pred, target


def _psnr_reference(pred, target, data_range):
    """PSNR written out pixel by pixel, independent of the vectorised implementation."""
    out = []
    for p, t in zip(pred, target):
        total, count = 0.0, 0
        for v_p, v_t in zip(p.ravel().tolist(), t.ravel().tolist()):
            total += (v_p - v_t) ** 2
            count += 1
        out.append(10.0 * math.log10(data_range**2 / (total / count)))
    return np.array(out)


def test_psnr_matches_independent_formula(pair):
    pred, target = pair
    np.testing.assert_allclose(psnr(pred, target), _psnr_reference(pred, target, 1.0), rtol=1e-12)
    np.testing.assert_allclose(psnr(pred, target, 2.0), _psnr_reference(pred, target, 2.0), rtol=1e-12)


def test_psnr_known_case_uniform_error():
    target = np.full((2, 3, 8, 8), 0.5)
    np.testing.assert_allclose(psnr(target + 0.01, target), [40.0, 40.0], rtol=1e-9)
    # data_range 2 adds 20 log10 2 dB
    np.testing.assert_allclose(psnr(target + 0.01, target, 2.0), 40.0 + 20 * math.log10(2), rtol=1e-9)
    assert np.all(np.isinf(psnr(target, target)))


def test_layouts_and_torch_inputs_agree(pair):
    pred, target = pair
    last = (np.moveaxis(pred, 1, -1), np.moveaxis(target, 1, -1))
    np.testing.assert_allclose(psnr(*last, channel_axis=-1), psnr(pred, target))
    np.testing.assert_allclose(ssim(*last, channel_axis=-1), ssim(pred, target), rtol=1e-12)
    tp, tt = torch.from_numpy(pred).float().requires_grad_(), torch.from_numpy(target).float()
    np.testing.assert_allclose(ssim(tp, tt), ssim(pred.astype(np.float32), target.astype(np.float32)))
    # a single image counts as a batch of one
    np.testing.assert_allclose(ssim(pred[0], target[0], channel_axis=0), ssim(pred, target)[:1])
    np.testing.assert_allclose(psnr(last[0][0], last[1][0], channel_axis=-1), psnr(pred, target)[:1])


@pytest.mark.parametrize("data_range", [1.0, 2.0])
def test_ssim_equals_skimage_per_channel_mean(pair, data_range):
    pred, target = pair
    ours = ssim(pred, target, data_range)
    for i in range(len(pred)):
        per_channel = [
            structural_similarity(pred[i, c], target[i, c], data_range=data_range)
            for c in range(pred.shape[1])
        ]
        assert ours[i] == pytest.approx(np.mean(per_channel), abs=1e-12)
        # and skimage's own channel handling gives the same mean
        assert ours[i] == pytest.approx(
            structural_similarity(pred[i], target[i], data_range=data_range, channel_axis=0), abs=1e-12
        )


def test_ssim_float32_close_to_skimage(pair):
    pred, target = (x.astype(np.float32) for x in pair)
    ref = [structural_similarity(p, t, data_range=1.0, channel_axis=0) for p, t in zip(pred, target)]
    np.testing.assert_allclose(ssim(pred, target), ref, atol=1e-5)


def test_large_batches_are_scored_in_chunks_identically():
    rng = np.random.default_rng(9)
    target = rng.random((300, 3, 8, 8)).astype(np.float32)
    pred = np.clip(target + 0.1 * rng.standard_normal(target.shape), 0, 1).astype(np.float32)
    values = ssim(pred, target)
    for i in (0, 150, 299):
        assert values[i] == pytest.approx(ssim(pred[i : i + 1], target[i : i + 1])[0], abs=1e-12)
    np.testing.assert_allclose(psnr(pred, target)[[0, 299]], _psnr_reference(pred[[0, 299]], target[[0, 299]], 1.0))


def test_ssim_range_two_inflates(pair):
    pred, target = pair
    assert np.all(ssim(pred, target, 2.0) > ssim(pred, target, 1.0))
    np.testing.assert_allclose(ssim(target, target), 1.0)


def test_deblend_scores_pooled_is_mean_of_branches(pair):
    pred, target = pair
    rng = np.random.default_rng(7)
    pred_b = np.clip(target + 0.1 * rng.standard_normal(target.shape), 0, 1)
    scores = deblend_scores(pred, pred_b, target, target)
    table, summary = scores.per_blend, scores.summary
    assert list(table.columns) == [
        "psnr_a", "psnr_b", "ssim_a_dr1", "ssim_a_dr2", "ssim_b_dr1", "ssim_b_dr2"
    ]
    np.testing.assert_allclose(table["psnr_a"], psnr(pred, target))
    np.testing.assert_allclose(table["ssim_b_dr2"], ssim(pred_b, target, 2.0))
    for base, a, b in (("psnr_pooled", "psnr_a", "psnr_b"),
                       ("ssim_pooled_dr1", "ssim_a_dr1", "ssim_b_dr1"),
                       ("ssim_pooled_dr2", "ssim_a_dr2", "ssim_b_dr2")):
        assert summary[f"{base}_mean"] == pytest.approx((table[a].mean() + table[b].mean()) / 2)
        assert summary[f"{base}_median"] == pytest.approx(np.median(np.r_[table[a], table[b]]))
        assert summary[f"{a}_median"] == pytest.approx(np.median(table[a]))


def test_class_wrappers_accumulate_over_batches(pair):
    pred, target = pair
    m_psnr, m_ssim, scorer = PSNR(), SSIM(data_range=2.0), DeblendScorer()
    for sl in (slice(0, 2), slice(2, 5)):
        m_psnr.update(pred[sl], target[sl])
        m_ssim.update(pred[sl], target[sl])
        scorer.update(pred[sl], target[sl], target[sl], pred[sl])
    assert m_psnr.compute() == pytest.approx(psnr(pred, target).mean())
    assert m_ssim.compute() == pytest.approx(ssim(pred, target, 2.0).mean())
    np.testing.assert_allclose(m_psnr.values, psnr(pred, target))
    whole = deblend_scores(pred, target, target, pred)
    assert scorer.compute().summary == pytest.approx(whole.summary)
    m_psnr.reset()
    with pytest.raises(ValueError, match="before any update"):
        m_psnr.compute()


def test_bad_inputs_raise_clear_errors(pair):
    pred, target = pair
    with pytest.raises(ValueError, match="same shape"):
        psnr(pred[:, :, :10], target)
    bad = pred.copy()
    bad[0, 0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        ssim(bad, target)
    with pytest.raises(ValueError, match="channel_axis"):
        ssim(np.moveaxis(pred, 1, -1), np.moveaxis(target, 1, -1))  # forgot channel_axis=-1
    with pytest.raises(ValueError, match="data_range"):
        psnr(pred, target, data_range=0)
    with pytest.raises(ValueError, match="shape"):
        psnr(pred[0, 0], target[0, 0])
    with pytest.raises(ValueError, match="one shape"):
        deblend_scores(pred, pred[:2], target, target)
