"""Ablation / insertion effects, curves and the ACE α optimisation on a hand-made two-branch net."""
import numpy as np
import pytest
import torch
from torch import nn

from galaxai.dissect import Concepts, Intervention
from galaxai.dissect.effects import EffectSet, ablation_curve, ace_alpha, intervention_effects

SKY, GAIN = 0.1, 0.8


class TwoBranch(nn.Module):
    """Unit 0 draws galaxy A into branch A, unit 1 galaxy B into branch B (display values).

    With ``leak``, branch A shows ``leak`` × B's footprint wherever unit 0 is off everywhere.
    """

    def __init__(self, leak: float = 0.0):
        super().__init__()
        self.feat = nn.Identity()
        self.scale = nn.Parameter(torch.ones(1))
        self.leak = leak

    def forward(self, x):
        r = self.feat(x) * self.scale
        on = r[:, :1].flatten(1).amax(dim=1).view(-1, 1, 1, 1)
        a = SKY + GAIN * r[:, :1] + self.leak * (1 - on) * x[:, 1:2]
        b = SKY + GAIN * r[:, 1:2]
        return 2 * a.expand(-1, 3, -1, -1) - 1, 2 * b.expand(-1, 3, -1, -1) - 1


def _data(n=8, size=32, seed=0, with_targets=False):
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    masks = np.zeros((n, 3, size, size), bool)
    for i in range(n):
        for k, (cx, cy) in enumerate([(size / 2, size / 2), rng.uniform(4, size - 4, 2)]):
            masks[i, k] = (xx - cx) ** 2 + (yy - cy) ** 2 <= rng.uniform(3, 6) ** 2
    masks[:, 2] = ~(masks[:, 0] | masks[:, 1])
    concepts = Concepts(("galaxy_A", "galaxy_B", "background"), ("region",) * 3, masks)
    x = torch.tensor(masks[:, :2], dtype=torch.float32)
    targets = None
    if with_targets:
        targets = [np.repeat(SKY + GAIN * masks[:, k:k + 1].astype(np.float32), 3, axis=1)
                   for k in (0, 1)]
    return EffectSet(x, concepts, targets=targets, batch_size=4)


def test_ablating_the_unit_that_draws_a_concept_removes_all_of_it_and_nothing_else():
    data = _data(with_targets=True)
    model = TwoBranch()
    full = intervention_effects(model, data, [Intervention("feat", (0,))], "galaxy_A")
    assert full["share_removed"] == pytest.approx(1.0)
    assert full["dpsnr_1"] == pytest.approx(0.0)
    assert full["dpsnr_0"] < 0
    half = intervention_effects(model, data, [Intervention("feat", (0,), alpha=0.5)], "galaxy_A")
    assert half["share_removed"] == pytest.approx(0.5)
    other = intervention_effects(model, data, [Intervention("feat", (1,))], "galaxy_A")
    assert other["share_removed"] == pytest.approx(0.0)
    assert intervention_effects(model, data, [Intervention("feat", (1,))],
                                "galaxy_B")["share_removed"] == pytest.approx(1.0)


def test_leakage_measures_the_other_galaxy_rising_in_a_branch():
    data = _data()
    effect = intervention_effects(TwoBranch(leak=0.4), data, [Intervention("feat", (0,))],
                                  "galaxy_A")
    masks = data.concepts.masks
    b_only = (masks[:, 1] & ~masks[:, 0]).sum()
    assert b_only > 0
    # B's pixels outside A rise by 0.4 in branch A; B's own flux in branch B is 0.8 per pixel.
    assert effect["leak_b_into_a"] == pytest.approx(0.4 * b_only / (GAIN * masks[:, 1].sum()))
    assert effect["leak_a_into_b"] == pytest.approx(0.0, abs=1e-7)
    quiet = intervention_effects(TwoBranch(leak=0.4), data, [Intervention("feat", (1,))],
                                 "galaxy_B")
    assert quiet["leak_b_into_a"] == pytest.approx(0.0, abs=1e-7)


def test_the_curve_compares_top_units_with_random_sets_of_the_same_size():
    data = _data()
    curve = ablation_curve(TwoBranch(), data, "feat", [0, 1], "galaxy_A", sizes=(1, 2, 4),
                           n_random=3)
    assert set(curve["n"]) == {1, 2}
    top1 = curve[(curve.kind == "top") & (curve.n == 1)].iloc[0]
    assert top1["units"] == "0" and top1["share_removed"] == pytest.approx(1.0)
    assert (curve.kind == "random").sum() == 6


def test_ace_raises_the_causal_unit_and_lets_the_idle_one_decay():
    data = _data(n=12, seed=3)
    alpha, history = ace_alpha(TwoBranch(), data, "feat", "galaxy_A", init=[0.5, 0.5], epochs=3,
                               batch=2, accumulate=1, lr=0.05, cell=8)
    assert alpha[0] > 0.9
    assert alpha[1] < 0.5
    assert history["units_above_half"].iloc[-1] == 1
    assert ((alpha >= 0) & (alpha <= 1)).all()
