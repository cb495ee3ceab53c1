"""Tests of the discriminator-verdict helpers used by the demo (accuracy, AUC, picking)."""
import numpy as np
import torch

from galaxai.workflows import discriminator_verdicts, pick_by_verdict


class MeanBrightness(torch.nn.Module):
    """A toy discriminator: logit = 10 · (mean pixel − 0.0)."""

    def forward(self, x):
        return 10 * x.mean(dim=(1, 2, 3))


def test_accuracy_and_auc_from_their_definitions():
    rng = np.random.default_rng(0)
    real = rng.uniform(0.0, 0.2, (40, 3, 4, 4)) + np.linspace(-0.1, 0.1, 40)[:, None, None, None]
    gen = rng.uniform(-0.2, 0.0, (30, 3, 4, 4)) + np.linspace(-0.05, 0.15, 30)[:, None, None, None]
    table, p = discriminator_verdicts(MeanBrightness(), real, gen)
    pr = 1 / (1 + np.exp(-10 * real.mean(axis=(1, 2, 3))))
    pg = 1 / (1 + np.exp(-10 * gen.mean(axis=(1, 2, 3))))
    np.testing.assert_allclose(p["real"], pr, rtol=1e-5)
    acc = (np.sum(pr >= 0.5) + np.sum(pg < 0.5)) / 70
    auc = np.mean([(a > b) + 0.5 * (a == b) for a in pr for b in pg])
    assert table.loc[0, "accuracy"].startswith(f"{acc:.3f}")
    assert table.loc[0, "ROC AUC"].startswith(f"{auc:.3f}")
    shown_real, shown_gen = pick_by_verdict(real, gen, p, 3)
    assert np.array_equal(shown_real[0], real[np.argmax(pr)])
    assert np.array_equal(shown_gen[0], gen[np.argmin(pg)])


def test_pick_by_verdict_shows_each_image_once():
    real = np.stack([np.full((3, 2, 2), v) for v in (0.9, 0.9, 0.5, 0.2)])
    p = {"real": np.array([0.95, 0.95, 0.7, 0.4]), "generated": np.array([0.1])}
    shown, gen = pick_by_verdict(real, real[:1], p, 3)
    assert len(shown) == 3 and len({x.tobytes() for x in shown}) == 3
    np.testing.assert_array_equal(shown[:, 0, 0, 0], [0.9, 0.5, 0.2])
    assert len(gen) == 1
