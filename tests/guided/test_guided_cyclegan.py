"""xAI-CycleGAN's ramp, patch saliency, gradient map, mask update and controls."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from galaxai.guided.cyclegan import XaiCycleGANConfig, XaiExplainer, loss_ramp, patch_saliency


def _patch_d(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(3, 4, 3, 2, 1), nn.LeakyReLU(0.2), nn.Conv2d(4, 1, 3, 1, 1))


@pytest.mark.parametrize("gamma, x, want", [
    (0.5, 0.1, 0.8944271909999159), (0.5, 0.4, 0.4472135954999579),  # spec table, "fast_start"
    (1.0, 0.3, 0.4), (2.0, 0.1, 0.64), (2.0, 0.3, 0.16),
    (0.5, 0.0, 1.0), (0.5, 0.5, 0.0), (0.5, 2.0, 0.0), (0.5, -1.0, 1.0)])
def test_loss_ramp_matches_the_spec_table(gamma, x, want):
    assert loss_ramp(x, gamma) == pytest.approx(want, abs=1e-12)


@pytest.mark.parametrize("pool", ["max", "mean"])
def test_patch_saliency_is_the_signed_gradient_of_the_pooled_patch_map(pool):
    d = _patch_d()
    x = torch.randn(3, 3, 8, 8)
    got = patch_saliency(d, x, pool)
    ref = []
    for k in range(3):  # one sample at a time, by hand
        xk = x[k:k + 1].clone().requires_grad_(True)
        patches = d(xk).flatten()
        (patches.max() if pool == "max" else patches.mean()).backward()
        ref.append(xk.grad[0])
    torch.testing.assert_close(got, torch.stack(ref))
    assert (got < 0).any() and (got > 0).any()  # signed, not |·|


def test_gradient_map_formula_and_normalisation():
    d, dm = _patch_d(1), _patch_d(2)
    fake = torch.randn(2, 3, 8, 8)
    masked = fake * (1 + 0.02 * torch.randn_like(fake))
    loss_d, loss_m = 0.1, 0.3
    raw = XaiExplainer(XaiCycleGANConfig(normalise="none")).gradient_map(
        d, dm, fake, masked, loss_d, loss_m, iteration=0, domain=1)
    s_d, s_dm = patch_saliency(d, fake), patch_saliency(dm, masked)
    c_d, c_m = (1 - 2 * 0.1) ** 0.5, (1 - 2 * 0.3) ** 0.5
    torch.testing.assert_close(raw, (0.3 * c_d * s_d + 0.7 * c_m * s_dm) / 2)
    scaled = XaiExplainer(XaiCycleGANConfig()).gradient_map(
        d, dm, fake, masked, loss_d, loss_m, iteration=0, domain=1)
    peaks = scaled.abs().flatten(1).amax(1)
    torch.testing.assert_close(peaks, torch.ones(2))
    torch.testing.assert_close(scaled * raw.abs().flatten(1).amax(1).view(-1, 1, 1, 1), raw)


def test_mask_update_is_zero_for_a_losing_discriminator_and_saliency_otherwise():
    dm = _patch_d(3)
    masked = torch.randn(2, 3, 8, 8)
    explainer = XaiExplainer(XaiCycleGANConfig())
    assert torch.equal(explainer.mask_update(dm, masked, 0.5, iteration=0, domain=0),
                       torch.zeros_like(masked))
    got = explainer.mask_update(dm, masked, 0.02, iteration=0, domain=0)
    torch.testing.assert_close(got, (1 - 0.04) ** 0.5 * patch_saliency(dm, masked))
    off = XaiExplainer(XaiCycleGANConfig(mask_update=False))
    assert torch.equal(off.mask_update(dm, masked, 0.02, iteration=0, domain=0),
                       torch.zeros_like(masked))


def test_controls_keep_the_values_and_drop_the_information():
    d, dm = _patch_d(4), _patch_d(5)
    fake = torch.randn(6, 3, 8, 8)
    args = (d, dm, fake, fake, 0.1, 0.1)
    plain = XaiExplainer(XaiCycleGANConfig()).gradient_map(*args, iteration=3, domain=0)
    const = XaiExplainer(XaiCycleGANConfig(control="constant")).gradient_map(*args, iteration=3,
                                                                             domain=0)
    torch.testing.assert_close(const, torch.full_like(plain, float(plain.mean())))
    shuffled = XaiExplainer(XaiCycleGANConfig(control="shuffled"), seed=1).gradient_map(
        *args, iteration=3, domain=0)
    rows = {tuple(r.flatten().tolist()) for r in plain}
    assert {tuple(r.flatten().tolist()) for r in shuffled} == rows
    assert not torch.equal(shuffled, plain)


def test_bad_settings_are_named():
    with pytest.raises(ValueError, match="pool"):
        XaiCycleGANConfig(pool="median")
    with pytest.raises(ValueError, match="lambda_mask"):
        XaiCycleGANConfig(lambda_mask=1.5)
    with pytest.raises(ValueError, match="control"):
        XaiCycleGANConfig(control="random")
