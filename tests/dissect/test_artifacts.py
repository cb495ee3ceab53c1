"""Artifact units on a toy generator where one planted unit paints a checkerboard."""
import numpy as np
import pytest
import torch
from torch import nn

from galaxai.dissect import Concepts
from galaxai.dissect.artifacts import artifact_overlap, artifact_removal, artifact_scores, artifact_top
from galaxai.dissect.effects import EffectSet

SIZE, GAIN = 24, 0.3


class Toy(nn.Module):
    """Units 0/1 draw galaxies A/B, unit 2 adds a checkerboard to branch A, unit 3 does nothing."""

    def __init__(self):
        super().__init__()
        self.feat = nn.Identity()
        self.scale = nn.Parameter(torch.ones(1))

    def forward(self, x):
        r = self.feat(x) * self.scale
        a = 0.1 + 0.6 * r[:, :1] + GAIN * r[:, 2:3]
        b = 0.1 + 0.6 * r[:, 1:2] + 0.0 * r[:, 3:4]
        return 2 * a.expand(-1, 3, -1, -1) - 1, 2 * b.expand(-1, 3, -1, -1) - 1


def _critic():
    """A discriminator that calls high-frequency structure fake: logit = −mean|Laplacian|₊."""
    conv = nn.Conv2d(3, 1, 3, padding=1, bias=False)
    lap = torch.tensor([[0.0, -1.0, 0.0], [-1.0, 4.0, -1.0], [0.0, -1.0, 0.0]])
    conv.weight.data[:] = lap / 3
    head = nn.Linear(SIZE * SIZE, 1, bias=False)
    head.weight.data[:] = -1.0 / SIZE ** 2
    return nn.Sequential(conv, nn.ReLU(), nn.Flatten(), head).eval()


def _data(n=6, seed=0):
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:SIZE, :SIZE]
    x = np.zeros((n, 4, SIZE, SIZE), np.float32)
    for i in range(n):
        for k in (0, 1):
            cx, cy = rng.uniform(6, SIZE - 6, 2)
            x[i, k] = np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * rng.uniform(2, 4) ** 2))
    patch = (yy < 8) & (xx < 8)
    x[:, 2] = ((yy + xx) % 2 == 0) & patch                   # the planted artifact
    x[:, 3] = rng.uniform(0, 1, (n, SIZE, SIZE))             # an idle unit
    masks = np.stack([x[:, 0] > 0.2, x[:, 1] > 0.2], axis=1)
    concepts = Concepts(("galaxy_A", "galaxy_B"), ("region", "region"), masks)
    noise = rng.normal(0, 0.02, (2, n, 1, SIZE, SIZE)).astype(np.float32)
    targets = [np.repeat(0.1 + 0.6 * x[:, k:k + 1] + noise[k], 3, axis=1) for k in (0, 1)]
    return EffectSet(torch.from_numpy(x), concepts, targets=targets, batch_size=4), x, targets


def _psnr(pred, target):
    mse = ((pred - target) ** 2).reshape(len(pred), -1).mean(axis=1)
    return 10 * np.log10(1.0 / mse)


def test_ablating_the_planted_unit_improves_psnr_by_the_hand_computed_amount():
    data, x, targets = _data()
    scores = artifact_scores(Toy(), data, ["feat"]).set_index("unit")
    with_artifact = np.repeat(0.1 + 0.6 * x[:, :1] + GAIN * x[:, 2:3], 3, axis=1)
    clean = np.repeat(0.1 + 0.6 * x[:, :1], 3, axis=1)
    want = np.mean(_psnr(clean, targets[0]) - _psnr(with_artifact, targets[0]))
    assert want > 1
    assert scores.loc[2, "dpsnr_0"] == pytest.approx(want, rel=1e-4)
    assert scores.loc[2, "dpsnr_1"] == pytest.approx(0.0, abs=1e-9)
    assert scores.loc[3, "dpsnr"] == pytest.approx(0.0, abs=1e-9)
    assert scores.loc[0, "dpsnr_0"] < 0                       # removing galaxy A hurts
    assert scores["dpsnr"].idxmax() == 2


def test_the_discriminator_scores_find_the_planted_unit():
    data, x, _ = _data()
    critic = _critic()
    thresholds = {"feat": np.array([0.2, 0.2, 0.5, 2.0])}
    scores = artifact_scores(Toy(), data, ["feat"], thresholds, discriminator=critic
                             ).set_index("unit")
    # logit = −mean(relu(Laplacian)) of each branch (zero padding; 3 equal channels × kernel/3)
    def logit(img):
        p = np.pad(img, ((0, 0), (1, 1), (1, 1)))
        lap = 4 * p[:, 1:-1, 1:-1] - p[:, :-2, 1:-1] - p[:, 2:, 1:-1] - p[:, 1:-1, :-2] - p[:, 1:-1, 2:]
        return -np.maximum(lap, 0).mean(axis=(1, 2))
    a_before = 2 * (0.1 + 0.6 * x[:, 0] + GAIN * x[:, 2]) - 1
    a_after = 2 * (0.1 + 0.6 * x[:, 0]) - 1
    want = (logit(a_after) - logit(a_before)).mean() / 2     # averaged over the two branches
    assert want > 0
    assert scores.loc[2, "dlogit"] == pytest.approx(want, rel=1e-4)
    assert scores["dlogit"].idxmax() == 2
    assert scores.loc[3, "dlogit"] == pytest.approx(0.0, abs=1e-6)
    assert scores["plrp"].idxmax() == 2 and scores.loc[2, "plrp"] > 1
    top = artifact_top(scores.reset_index(), k=2)
    assert set(top.score) == {"dpsnr", "dlogit", "plrp"}
    assert (top[top["rank"] == 1].unit == 2).all()
    overlap = artifact_overlap(top)
    assert len(overlap) == 3 and (overlap.shared >= 1).all()


def test_removing_the_planted_unit_beats_random_sets_of_the_same_size():
    data, _, _ = _data(n=8, seed=1)
    pool = [("feat", u) for u in range(4)]
    table = artifact_removal(Toy(), data, [("feat", 2)], pool, n_random=6, seed=0)
    assert list(table.kind) == ["artifact"] + ["random"] * 6
    top = table.iloc[0]
    assert top.dpsnr_0_lo <= top.dpsnr_0 <= top.dpsnr_0_hi
    assert top.dpsnr_0 > table[table.kind == "random"].dpsnr_0.max() - 1e-9
    assert top.dpsnr_0 > 1
    with pytest.raises(ValueError, match="between 1 and 4"):
        artifact_removal(Toy(), data, pool + pool, pool)
