"""Mask CycleGAN networks: presets, shapes, the fusion paths and the flux-space mask."""
from __future__ import annotations

import math

import pytest
import torch

from galaxai.models.cyclegan import (FLUX_STRETCH, CycleGANConfig, MaskGenerator,
                                     PatchDiscriminator, apply_mask, build_cyclegan)


def test_paper_preset_is_the_reference_commit():
    cfg = CycleGANConfig.preset("paper")
    assert (cfg.ngf, cfg.ndf, cfg.n_blocks) == (64, 64, 16)
    g = MaskGenerator(cfg)
    blocks = [m for m in g.body if type(m).__name__ == "_ResidualBlock"]
    assert len(blocks) == 16
    assert blocks[0].body[1].in_channels == 8 * 64  # blocks at 8·ngf after three stride-2 convs
    assert (g.fuse_mask.in_channels, g.fuse_mask.out_channels, g.fuse_mask.kernel_size) == (6, 3, (1, 1))


def test_shapes_and_the_context_path_adds_to_the_tanh_output():
    cfg = CycleGANConfig.preset("tiny")
    nets = build_cyclegan(cfg, seed=0)
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    m = 1 + 0.02 * torch.randn_like(x)
    out, main = nets["G_AB"](x, m, parts=True)
    assert out.shape == main.shape == x.shape and main.abs().max() <= 1
    g = nets["G_AB"]
    context = g.fuse_context(torch.cat([(1 - m) * x, 1 - m], 1))
    torch.testing.assert_close(out, main + context)
    assert nets["D_B"](x).shape == (2, 1, 2, 2)  # 32 → 16 → 8 → 4 → 3 → 2 patches
    assert isinstance(nets["D_A_mask"], PatchDiscriminator)


def test_build_is_seeded_and_leaves_the_global_rng_alone():
    cfg = CycleGANConfig.preset("tiny")
    state = torch.get_rng_state()
    a, b = build_cyclegan(cfg, 3), build_cyclegan(cfg, 3)
    assert torch.equal(state, torch.get_rng_state())
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
    c = build_cyclegan(cfg, 4)
    assert not torch.equal(next(a.parameters()), next(c.parameters()))


def test_flux_mask_scales_flux_and_leaves_empty_sky_alone():
    x = torch.tensor([-1.0, 0.0, 1.0])
    m = torch.tensor([1.3, 1.1, 0.9])
    got = apply_mask(x, m, "flux")
    # independent: flux f = sinh(β(x+1)/2)/sinh β, display of m·f by the inverse
    beta = FLUX_STRETCH
    want = [2 * math.asinh(mi * math.sinh(beta * (xi + 1) / 2)) / beta - 1
            for xi, mi in zip(x.tolist(), m.tolist())]
    torch.testing.assert_close(got, torch.tensor(want))
    assert got[0] == -1.0  # zero flux stays zero whatever the mask
    torch.testing.assert_close(apply_mask(x, torch.ones(3), "flux"), x)
    torch.testing.assert_close(apply_mask(x, m, "pixel"), m * x)


def test_bad_settings_are_named():
    with pytest.raises(ValueError, match="image_size"):
        CycleGANConfig(image_size=20)
    with pytest.raises(ValueError, match="mask_space"):
        CycleGANConfig(mask_space="log")
    with pytest.raises(ValueError, match="preset"):
        CycleGANConfig.preset("huge")
