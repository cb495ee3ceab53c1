"""Galaxy-Zoo-style votes of simulated galaxies (galaxai.data.votes)."""
import dataclasses

import numpy as np
import pandas as pd
import pytest

from galaxai.data.simulate import SimConfig, simulate
from galaxai.data.votes import (GZ_PARENTS, VoteConfig, answer_probabilities,
                                bar_vote_probability, simulate_votes, tree_residuals)
from galaxai.models.morphology import GZ_COLUMNS, GZ_QUESTIONS


@pytest.fixture(scope="module")
def catalogue():
    cfg = dataclasses.replace(SimConfig.preset("tiny"), bar_fraction=1.0)
    return simulate(60, 5, cfg).catalogue


def test_tree_sums_hold_with_volunteers(catalogue):
    votes = simulate_votes(catalogue, seed=3)
    assert list(votes.columns) == list(GZ_COLUMNS)
    assert tree_residuals(votes).max() <= 1e-12
    # integer volunteer counts: every fraction is a multiple of 1/40
    counts = votes.to_numpy() * 40
    np.testing.assert_allclose(counts, np.round(counts), atol=1e-9)
    assert votes.to_numpy().min() >= 0 and votes.to_numpy().max() <= 1


def test_tree_sums_hold_noise_free_and_probabilities_normalised(catalogue):
    votes = simulate_votes(catalogue, VoteConfig(n_volunteers=None))
    assert tree_residuals(votes).max() <= 1e-12
    for q, p in answer_probabilities(catalogue).items():
        assert p.shape == (len(catalogue), GZ_QUESTIONS[q])
        np.testing.assert_allclose(p.sum(axis=1), 1.0, atol=1e-12)


def test_tree_residuals_detect_a_violation(catalogue):
    votes = simulate_votes(catalogue, seed=0)
    votes.iloc[0, GZ_COLUMNS.index("Class3.1")] += 0.1
    res = tree_residuals(votes)
    assert res["Class3"] == pytest.approx(0.1)
    assert res.drop("Class3").max() <= 1e-12
    assert GZ_PARENTS["Class3"] == "Class2.2"


def test_seeded_and_per_galaxy(catalogue):
    a = simulate_votes(catalogue, seed=1)
    pd.testing.assert_frame_equal(a, simulate_votes(catalogue, seed=1))
    assert not a.equals(simulate_votes(catalogue, seed=2))
    # a galaxy's votes do not depend on the other galaxies voted on
    pd.testing.assert_frame_equal(a.iloc[10:20], simulate_votes(catalogue.iloc[10:20], seed=1))


def test_strong_bars_get_more_bar_votes(catalogue):
    barred = catalogue[catalogue["has_bar"]].copy()
    assert len(barred) >= 5
    strong, weak = barred.copy(), barred.copy()
    strong["frac_bar"], strong["bar_q"] = 0.25, 0.2
    weak["frac_bar"], weak["bar_q"] = 0.05, 0.45
    assert np.all(bar_vote_probability(strong) > bar_vote_probability(weak))
    unbarred = barred.copy()
    unbarred["has_bar"] = False
    votes_s = simulate_votes(strong, seed=4)["Class3.1"].mean()
    votes_u = simulate_votes(unbarred, seed=4)["Class3.1"].mean()
    assert votes_s > votes_u + 0.2


def test_bad_input_is_named():
    with pytest.raises(ValueError, match="lacks column"):
        simulate_votes(pd.DataFrame({"index": [0]}))
    with pytest.raises(ValueError, match="n_volunteers"):
        VoteConfig(n_volunteers=0)
