"""Explanation-quality measures: Gini, localisation, MoRF/LeRF, randomisation, sensitivity."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from galaxai.explain import (Attribution, bootstrap_mean, pixel_flipping, decision_maps, faithfulness_scores, gini,
                             map_similarity, noise_sensitivity, randomised_models,
                             relevance_mass_accuracy, relevance_rank_accuracy)
from galaxai.explain.quality import randomisable_layers
from test_faithfulness import Planted  # the planted-evidence model of the AOPC tests


def _gini_reference(a: np.ndarray) -> float:
    """Gini as half the relative mean absolute difference (a definition without sorting)."""
    a = np.abs(a.ravel()).astype(np.float64)
    return np.abs(a[:, None] - a[None, :]).sum() / (2 * a.size ** 2 * a.mean())


def test_gini_matches_mean_difference_definition_and_limits():
    rng = np.random.default_rng(0)
    maps = rng.normal(size=(3, 2, 6, 5))
    np.testing.assert_allclose(gini(maps).numpy(), [_gini_reference(m) for m in maps], rtol=1e-12)
    assert float(gini(np.ones((1, 4, 4)))[0]) == pytest.approx(0.0, abs=1e-12)
    spike = np.zeros((1, 4, 4))
    spike[0, 1, 2] = -3.0
    assert float(gini(spike)[0]) == pytest.approx(1 - 1 / 16)
    assert np.isnan(float(gini(np.zeros((1, 3, 3)))[0]))


def test_mass_and_rank_accuracy_on_a_hand_made_map():
    rel = torch.zeros(1, 4, 4)
    rel[0, 0, 0], rel[0, 0, 1], rel[0, 3, 3] = 3.0, 1.0, 4.0
    mask = torch.zeros(4, 4, dtype=torch.bool)
    mask[0, :2] = True  # the two pixels holding 3 and 1
    assert float(relevance_mass_accuracy(rel, mask)[0]) == pytest.approx(0.5)
    # top-2 pixels are (3,3)=4 and (0,0)=3: one of the two lies inside
    assert float(relevance_rank_accuracy(rel, mask)[0]) == pytest.approx(0.5)
    neg = -rel
    assert float(relevance_rank_accuracy(neg, mask, mode="abs")[0]) == pytest.approx(0.5)
    assert np.isnan(float(relevance_mass_accuracy(neg, mask, mode="positive")[0]))
    with pytest.raises(ValueError, match="mask is empty"):
        relevance_rank_accuracy(rel, torch.zeros(4, 4, dtype=torch.bool))


def test_morf_lerf_and_their_difference_rank_an_oracle_over_its_inverse():
    model = Planted()
    x = 0.2 + torch.rand(4, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    oracle = (x * model.weight).sum(1)
    sign = torch.ones(4)
    good = faithfulness_scores(model, x, oracle, sign, patch=4, steps=6, fill="zero", repeats=3)
    bad = faithfulness_scores(model, x, -oracle, sign, patch=4, steps=6, fill="zero",
                              random_aopc=good["random"])
    assert (good["morf_vs_random"] > 0).all() and (good["lerf_vs_random"] < 0).all()
    assert (good["morf_minus_lerf"] > 0).all()
    torch.testing.assert_close(bad["morf_minus_lerf"], -good["morf_minus_lerf"])
    torch.testing.assert_close(good["morf_vs_random"] - good["lerf_vs_random"], good["morf_minus_lerf"])
    with pytest.raises(ValueError, match="order"):
        pixel_flipping(model, x, oracle, patch=4, order="random")


def test_decision_maps_orient_signed_maps_by_the_logit():
    maps = torch.ones(2, 3, 4, 4)
    signed = Attribution(maps, torch.tensor([2.0, -1.0]), "lrp")
    out = decision_maps(signed)
    assert out.shape == (2, 4, 4) and float(out[0, 0, 0]) == 3.0 and float(out[1, 0, 0]) == -3.0
    polar = Attribution(maps, torch.tensor([2.0, -1.0]), "polarized_lrp", polarity=torch.tensor([1, -1]))
    assert (decision_maps(polar) == 3.0).all()
    assert (decision_maps(signed, magnitude_only=True) == 3.0).all()


def _net():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Conv2d(4, 4, 3), nn.ReLU(), nn.Flatten(),
                         nn.Linear(4 * 4 * 4, 1))


def _changed(a: nn.Module, b: nn.Module) -> list[str]:
    return [name for (name, p), (_, q) in zip(a.named_parameters(), b.named_parameters())
            if name.endswith("weight") and not torch.equal(p, q)]


def test_cascading_and_independent_randomisation():
    net = _net()
    original = {k: v.clone() for k, v in net.state_dict().items()}
    assert randomisable_layers(net) == ["5", "2", "0"]
    cascade = [(name, _changed(net, m)) for name, m in randomised_models(net, "cascading", seed=3)]
    assert cascade == [("5", ["5.weight"]), ("2", ["2.weight", "5.weight"]),
                       ("0", ["0.weight", "2.weight", "5.weight"])]
    single = [(name, _changed(net, m)) for name, m in randomised_models(net, "independent", seed=3)]
    assert single == [("5", ["5.weight"]), ("2", ["2.weight"]), ("0", ["0.weight"])]
    last_cascade = list(randomised_models(net, "cascading", seed=3))[-1][1]
    first_single = next(randomised_models(net, "independent", seed=3))[1]
    torch.testing.assert_close(last_cascade[5].weight, first_single[5].weight)  # same draw per layer
    for k, v in net.state_dict().items():
        assert torch.equal(v, original[k])
    with pytest.raises(ValueError, match="mode"):
        next(randomised_models(net, "top"))


def test_map_similarity_identical_negated_and_unrelated():
    rng = np.random.default_rng(1)
    a = torch.from_numpy(rng.random((2, 40, 40)))
    same = map_similarity(a, -a)  # absolute maps: a sign flip is no change
    np.testing.assert_allclose(same["ssim"], 1.0)
    np.testing.assert_allclose(same["spearman"], 1.0)
    other = map_similarity(a, torch.from_numpy(rng.random((2, 40, 40))))
    assert (np.abs(other["spearman"]) < 0.1).all() and (other["ssim"] < 0.2).all()
    with pytest.raises(ValueError, match="shape"):
        map_similarity(a, a[:, :20])


def test_noise_sensitivity_zero_for_a_constant_map_and_expected_for_identity():
    gen = torch.Generator().manual_seed(2)
    x = 1.0 + 0.1 * torch.randn(3, 2, 32, 32, generator=gen)
    assert (noise_sensitivity(lambda imgs: torch.ones(len(imgs), 5), x) == 0).all()
    # identity map: ||sigma n|| / ||x|| with sigma ~ 0.1 (the frame's noise) and ||x|| ~ sqrt(N)
    sens = noise_sensitivity(lambda imgs: imgs, x, draws=4)
    expected = 0.1 * np.sqrt(x[0].numel()) / x.reshape(3, -1).norm(dim=1).numpy()
    np.testing.assert_allclose(sens.numpy(), expected, rtol=0.1)


def test_bootstrap_mean_interval_and_nans():
    values = np.r_[np.random.default_rng(3).normal(2.0, 1.0, 400), np.nan]
    mean, lo, hi = bootstrap_mean(values, n_boot=500)
    assert mean == pytest.approx(np.nanmean(values))
    se = np.nanstd(values) / np.sqrt(400)
    assert lo < mean < hi and hi - lo == pytest.approx(2 * 1.96 * se, rel=0.2)
    assert all(np.isnan(v) for v in bootstrap_mean([np.nan]))
