"""Pixel flipping / AOPC on a planted model, sky-like fill, relevance mass ratio."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from galaxai.explain import aopc, pixel_flipping, random_order_curves, relevance_mass_ratio, sky_like



class Planted(nn.Module):
    """Logit = sum of w * x over a planted 8x8 square (w > 0) minus an offset."""

    def __init__(self, size: int = 16) -> None:
        super().__init__()
        weight = torch.zeros(1, 3, size, size)
        weight[..., 4:12, 2:10] = torch.linspace(0.5, 1.5, 64).view(8, 8)
        self.register_buffer("weight", weight)

    def forward(self, x):
        return (x * self.weight).sum((1, 2, 3)) / 20 - 2.0


def test_oracle_relevance_beats_random_order():
    model = Planted()
    x = 0.2 + torch.rand(4, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    oracle = x * model.weight
    curves = pixel_flipping(model, x, oracle, patch=4, fill="zero")
    with torch.no_grad():
        torch.testing.assert_close(curves[:, 0], torch.sigmoid(model(x)))
    assert (curves.diff(dim=1) <= 1e-7).all()  # removing positive evidence only lowers p
    random = random_order_curves(model, x, patch=4, fill="zero", repeats=3)
    assert curves.shape == random.shape == (4, 17)
    assert (aopc(curves) > aopc(random) + 0.05).all()
    anti = pixel_flipping(model, x, -oracle, patch=4, fill="zero")  # least relevant first
    assert (aopc(anti) < aopc(random)).all()


def test_pixel_flipping_steps_sky_fill_and_callable():
    model = Planted()
    x = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    rel = torch.rand(2, 16, 16, generator=torch.Generator().manual_seed(2))
    sky = pixel_flipping(model, x, rel, patch=4, steps=5, fill="sky", seed=3)
    assert sky.shape == (2, 6)
    torch.testing.assert_close(sky, pixel_flipping(model, x, rel, patch=4, steps=5, seed=3))
    const = pixel_flipping(model, x, rel, patch=4, steps=16, fill=lambda imgs: torch.full_like(imgs, 0.5))
    with torch.no_grad():
        assert float(const[0, -1]) == pytest.approx(float(torch.sigmoid(model(torch.full_like(x, 0.5)))[0]))
    with pytest.raises(ValueError, match="multiple of patch"):
        pixel_flipping(model, x, rel, patch=5)
    with pytest.raises(ValueError, match="fill"):
        pixel_flipping(model, x, rel, fill="mean")


def test_sky_like_matches_border_statistics():
    gen = torch.Generator().manual_seed(4)
    x = 3.0 + 0.5 * torch.randn(2, 3, 64, 64, generator=gen)
    x[:, :, 16:48, 16:48] += 10.0  # a bright "galaxy" must not bias the sky estimate
    fill = sky_like(x, border=8, seed=5)
    assert fill.shape == x.shape
    assert float(fill.mean()) == pytest.approx(3.0, abs=0.03)
    assert float(fill.std()) == pytest.approx(0.5, rel=0.05)
    torch.testing.assert_close(fill, sky_like(x, border=8, seed=5))


def test_relevance_mass_ratio_planted_cases():
    mask = np.zeros((10, 10), dtype=bool)
    mask[:, :2] = True  # area share 0.2
    inside = torch.zeros(3, 3, 10, 10)
    inside[..., :2] = torch.rand(3, 3, 10, 2) + 0.1
    torch.testing.assert_close(relevance_mass_ratio(inside, mask), torch.full((3,), 5.0, dtype=torch.float64))
    uniform = torch.ones(10, 10)
    assert float(relevance_mass_ratio(uniform, mask)) == pytest.approx(1.0)
    signed = torch.zeros(10, 10)
    signed[:, :2], signed[:, 2:] = -1.0, 1.0
    assert float(relevance_mass_ratio(signed, mask, mode="abs")) == pytest.approx(1.0)
    assert float(relevance_mass_ratio(signed, mask, mode="positive")) == pytest.approx(0.0)
    per_map = torch.stack([torch.tensor(mask), ~torch.tensor(mask)])[:, None]
    torch.testing.assert_close(relevance_mass_ratio(inside[:2], per_map),
                               torch.tensor([5.0, 0.0], dtype=torch.float64))
    assert torch.isnan(relevance_mass_ratio(torch.zeros(10, 10), mask))
    with pytest.raises(ValueError, match="empty"):
        relevance_mass_ratio(uniform, np.zeros((10, 10), dtype=bool))


def test_aopc_formula_and_polarity():
    curves = torch.tensor([[0.9, 0.6, 0.3], [0.2, 0.5, 0.8]])
    torch.testing.assert_close(aopc(curves), torch.tensor([0.3, -0.3]))
    torch.testing.assert_close(aopc(curves, polarity=[1, -1]), torch.tensor([0.3, 0.3]))
    with pytest.raises(ValueError):
        aopc(torch.ones(3))
