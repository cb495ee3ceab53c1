"""galaxai's sparseness and region perturbation against Quantus on the same inputs (galaxai[quantus]).

Where the protocols coincide the numbers must agree: Gini sparseness (Quantus adds 1e-7 to every
normalised |a|, hence the tolerance), and MoRF/LeRF curves with a constant zero fill (Quantus
reports f(x) - f(x_k) for k = 1..L; galaxai reports f(x_k) for k = 0..L). See
docs/explain_eval.md for what differs in the default protocols.
"""
import warnings

import numpy as np
import pytest
import torch
from torch import nn

quantus = pytest.importorskip("quantus")

from galaxai.explain import gini, pixel_flipping  # noqa: E402


class TwoClass(nn.Module):
    """Class logits (0, s) of a one-logit discriminator: Quantus's softmax of them is (1 - p, p)."""

    def __init__(self, disc: nn.Module) -> None:
        super().__init__()
        self.disc = disc

    def forward(self, x):
        s = self.disc(x).reshape(-1, 1)
        return torch.cat([torch.zeros_like(s), s], dim=1)


def _disc():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.LeakyReLU(0.2), nn.AvgPool2d(4),
                         nn.Flatten(), nn.Linear(4 * 4 * 4, 1)).eval()


def test_sparseness_matches_quantus():
    rng = np.random.default_rng(0)
    x = rng.random((4, 1, 16, 16)).astype(np.float32)
    a = rng.normal(size=(4, 1, 16, 16)).astype(np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = quantus.Sparseness(disable_warnings=True)(
            model=None, x_batch=x, y_batch=np.zeros(4, dtype=int), a_batch=a.copy())
    np.testing.assert_allclose(gini(a).numpy(), theirs, atol=1e-5)


@pytest.mark.parametrize("order", ["morf", "lerf"])
def test_region_perturbation_matches_quantus_with_zero_fill(order):
    disc = _disc()
    rng = np.random.default_rng(1)
    x = rng.uniform(-1, 1, (3, 3, 16, 16)).astype(np.float32)
    a = rng.normal(size=(3, 1, 16, 16)).astype(np.float32)  # continuous: no ties in the order
    ours = pixel_flipping(disc, torch.from_numpy(x), torch.from_numpy(a[:, 0]), patch=4, steps=6,
                          fill="zero", order=order).numpy()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        metric = quantus.RegionPerturbation(patch_size=4, order=order, regions_evaluation=6,
                                            perturb_baseline=0.0, normalise=False,
                                            disable_warnings=True)
        theirs = np.asarray(metric(model=TwoClass(disc).eval(), x_batch=x, y_batch=np.ones(3, dtype=int),
                                   a_batch=np.repeat(a, 3, axis=1), device="cpu"))
    np.testing.assert_allclose(ours[:, :1] - ours[:, 1:], theirs, atol=1e-5)
