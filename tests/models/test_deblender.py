"""Tests of the deblender generator and discriminator against the layer tables of the spec."""
from __future__ import annotations

import dataclasses
import math

import pytest
import torch
from torch import nn

from galaxai.models.deblender import (
    DeblenderConfig,
    build_discriminator,
    build_generator,
    config_hash,
    count_parameters,
)


def conv(k: int, cin: int, cout: int) -> int:
    return k * k * cin * cout + cout


def bn(c: int) -> int:
    return 2 * c  # gamma and beta; running statistics are buffers


def res_block(c: int) -> int:
    return 2 * conv(3, c, c) + 2 * bn(c) + c  # + per-channel PReLU


def test_paper_generator_parameter_count_matches_spec_table():
    head = conv(9, 3, 64) + 64
    assert head == 15_616 + 64
    assert res_block(64) == 74_176  # spec: 74.2k each
    tail = conv(3, 64, 64) + bn(64)
    branch = 6 * res_block(64) + conv(9, 64, 3)
    assert round(branch / 1e3, 1) == 460.6
    expected = head + 10 * res_block(64) + tail + 2 * branch
    g = build_generator("paper")
    assert count_parameters(g) == expected
    assert round(expected / 1e6, 3) == 1.716


def test_paper_discriminator_parameter_count_matches_spec_table():
    filters = [64, 64, 128, 128, 256, 256, 512, 512]
    blocks = sum(conv(3, a, b) + bn(b) for a, b in zip(filters[:-1], filters[1:]))
    dense1 = 512 * 5 * 5 * 1024 + 1024
    expected = conv(3, 3, 64) + blocks + dense1 + 1024 + 1
    d = build_discriminator("paper")
    assert count_parameters(d) == expected
    assert count_parameters(d.classifier[1]) == dense1
    assert round(dense1 / 1e6, 1) == 13.1
    assert round(expected / 1e6, 1) == 17.8


@pytest.mark.parametrize("preset", DeblenderConfig.PRESETS)
def test_forward_shapes_all_presets(preset):
    cfg = DeblenderConfig.preset(preset)
    g, d = build_generator(cfg).eval(), build_discriminator(cfg).eval()
    n = 1 if preset == "paper" else 2  # keep the paper forward cheap on a shared CPU
    x = torch.rand(n, 3, cfg.image_size, cfg.image_size)
    with torch.no_grad():
        a, b = g(x)
        logits = d(a)
    assert a.shape == b.shape == x.shape
    assert a.abs().max() <= 1 and b.abs().max() <= 1
    assert logits.shape == (n, 1)
    # unshared branches (output_skip starts both at copy-the-blend, so compare their parameters)
    w1, w2 = (torch.cat([p.flatten() for p in br.parameters()]) for br in g.branches)
    assert not torch.equal(w1, w2)
    if not cfg.output_skip:
        assert not torch.equal(a, b)


def test_small_and_tiny_are_smaller_than_paper():
    n = {p: count_parameters(build_generator(p)) for p in DeblenderConfig.PRESETS}
    assert n["tiny"] < n["small"] < n["paper"]


@pytest.mark.parametrize("size,feature", [(32, 2), (48, 3), (80, 5), (81, 6)])
def test_discriminator_dense_input_follows_image_size(size, feature):
    cfg = DeblenderConfig.preset("tiny", image_size=size)
    assert cfg.d_feature_size() == feature
    d = build_discriminator(cfg)
    assert d.classifier[1].in_features == cfg.d_filters[-1] * feature**2
    assert d(torch.rand(3, 3, size, size)).shape == (3, 1)
    g = build_generator(cfg)
    assert g(torch.rand(1, 3, size, size))[0].shape == (1, 3, size, size)


def test_discriminator_strides_give_spec_sizes():
    d = build_discriminator("paper")
    sizes = []
    x = torch.zeros(1, 3, 80, 80)
    for layer in d.features:
        x = layer(x)
        sizes.append(x.shape[-1])
    assert sizes[2:] == [40, 40, 20, 20, 10, 10, 5]


@pytest.mark.parametrize(
    "order,types",
    [
        ("conv-bn-act", (nn.Conv2d, nn.BatchNorm2d, nn.LeakyReLU)),
        ("conv-act-bn", (nn.Conv2d, nn.LeakyReLU, nn.BatchNorm2d)),
    ],
)
def test_block_order_option(order, types):
    d = build_discriminator(DeblenderConfig.preset("tiny", d_block_order=order))
    assert isinstance(d.features[0], nn.Conv2d) and isinstance(d.features[1], nn.LeakyReLU)
    blocks = list(d.features)[2:]
    assert len(blocks) == 7
    for block in blocks:
        assert tuple(type(m) for m in block) == types


def test_block_order_and_config_validation():
    with pytest.raises(ValueError, match="d_block_order"):
        DeblenderConfig(d_block_order="bn-conv-act")
    with pytest.raises(ValueError, match="d_filters"):
        DeblenderConfig(d_filters=(8, 8))
    with pytest.raises(ValueError, match="unknown DeblenderConfig preset"):
        DeblenderConfig.preset("huge")
    with pytest.raises(ValueError, match="head_kernel"):
        DeblenderConfig(head_kernel=4)


def test_leaky_slope_and_batchnorm_port_settings():
    cfg = DeblenderConfig.preset("tiny", leaky_slope=0.3)
    d, g = build_discriminator(cfg), build_generator(cfg)
    slopes = {m.negative_slope for m in d.modules() if isinstance(m, nn.LeakyReLU)}
    assert slopes == {0.3}
    assert DeblenderConfig().leaky_slope == 0.2
    for m in list(d.modules()) + list(g.modules()):
        if isinstance(m, nn.BatchNorm2d):
            assert m.momentum == 0.01 and m.eps == 1e-3


def test_initialisation_glorot_zero_bias_prelu_zero():
    g, d = build_generator("tiny", seed=3), build_discriminator("tiny", seed=4)
    for m in list(g.modules()) + list(d.modules()):
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            fan_in = m.weight[0].numel()
            fan_out = m.weight.shape[0] * (m.weight[0, 0].numel())
            bound = math.sqrt(6.0 / (fan_in + fan_out))
            assert m.weight.abs().max() <= bound + 1e-7
            assert m.weight.abs().max() > 0.5 * bound
            assert torch.count_nonzero(m.bias) == 0
        if isinstance(m, nn.PReLU):
            assert m.weight.shape == (m.num_parameters,) and m.num_parameters > 1
            assert torch.count_nonzero(m.weight) == 0
        if isinstance(m, nn.Conv2d):
            assert m.padding == (m.kernel_size[0] // 2,) * 2


def test_seeded_init_is_deterministic_and_leaves_global_rng_alone():
    torch.manual_seed(123)
    before = torch.get_rng_state()
    g1, g2 = build_generator("tiny", seed=7), build_generator("tiny", seed=7)
    assert torch.equal(torch.get_rng_state(), before)
    for (k, v), (_, w) in zip(g1.state_dict().items(), g2.state_dict().items()):
        assert torch.equal(v, w), k
    g3 = build_generator("tiny", seed=8)
    assert not torch.equal(g1.head[0].weight, g3.head[0].weight)


def test_every_activation_is_a_module_seen_by_hooks():
    cfg = DeblenderConfig.preset("tiny")
    g, d = build_generator(cfg), build_discriminator(cfg)
    calls = []
    acts = (nn.PReLU, nn.LeakyReLU, nn.Tanh)
    for net in (g, d):
        for m in net.modules():
            if isinstance(m, acts):
                m.register_forward_hook(lambda mod, i, o: calls.append(type(mod)))
    a, _ = g(torch.rand(1, 3, 80, 80))
    d(a)
    # generator: head + (1 shared + 2 branch blocks) PReLUs + 2 tanh; discriminator: 1 + 7 + 1
    assert calls.count(nn.PReLU) == 1 + cfg.n_shared + 2 * cfg.n_branch
    assert calls.count(nn.Tanh) == 2
    assert calls.count(nn.LeakyReLU) == 9


def test_config_hash_depends_on_values():
    tiny = DeblenderConfig.preset("tiny")
    assert config_hash(tiny) == config_hash(DeblenderConfig.preset("tiny"))
    assert config_hash(tiny) != config_hash(dataclasses.replace(tiny, leaky_slope=0.3))


def test_output_skip_starts_from_copy_the_blend_and_learns_a_correction():
    cfg = dataclasses.replace(DeblenderConfig.preset("tiny"), output_skip=True)
    g = build_generator(cfg, seed=3).eval()
    blend = torch.rand(2, 3, cfg.image_size, cfg.image_size) * 0.9 + 0.05
    g1, g2 = g(blend)
    # tanh(atanh(v)) = v: at initialisation both branches return the blend on the [-1, 1] scale
    torch.testing.assert_close(g1, 2 * blend - 1, atol=1e-5, rtol=0)
    torch.testing.assert_close(g2, 2 * blend - 1, atol=1e-5, rtol=0)
    # the correction is trainable: one gradient step moves branch 1 towards a darker target
    opt = torch.optim.SGD(g.parameters(), lr=0.1)
    target = torch.full_like(blend, -1.0)
    loss = lambda: (g(blend)[0] - target).pow(2).mean()  # noqa: E731
    before = loss().item()
    for _ in range(3):
        opt.zero_grad()
        loss().backward()
        opt.step()
    assert loss().item() < before
    # saturated inputs stay finite
    edge = torch.zeros(1, 3, cfg.image_size, cfg.image_size)
    edge[..., :10] = 1.0
    assert torch.isfinite(torch.stack(g(edge))).all()


def test_output_skip_is_off_in_the_paper_preset_and_needs_the_blend():
    assert DeblenderConfig.preset("paper").output_skip is False
    cfg = dataclasses.replace(DeblenderConfig.preset("tiny"), output_skip=True)
    branch = build_generator(cfg).branches[0]
    with pytest.raises(ValueError, match="needs the blend"):
        branch(torch.zeros(1, cfg.g_filters, 8, 8))


def test_skip_gate_starts_at_copy_the_blend_and_can_replace_pixels():
    cfg = DeblenderConfig.preset("tiny", output_skip=True, skip_gate=True)
    g = build_generator(cfg, seed=0).eval()
    x = torch.rand(2, 3, cfg.image_size, cfg.image_size) * 0.9 + 0.05
    with torch.no_grad():
        g1, g2 = g(x)
    # gate sigmoid(-6) and a zero correction: 0.25 % of the way from the blend to tanh(0) = 0
    for out in (g1, g2):
        torch.testing.assert_close(out, (2 * x - 1) * (1 - torch.sigmoid(torch.tensor(-6.0))))
    # an open gate replaces the blend by the branch's own value, pixel by pixel
    branch = g.branches[0]
    with torch.no_grad():
        branch.conv.bias[-1] = 30.0
        branch.conv.bias[:-1] = 0.5
        g1, _ = g(x)
    torch.testing.assert_close(g1, torch.full_like(g1, math.tanh(0.5)), atol=1e-6, rtol=0)
    with pytest.raises(ValueError, match="skip_gate=True needs output_skip"):
        DeblenderConfig.preset("tiny", output_skip=False, skip_gate=True)


def _reach(generator: nn.Module, size: int = 96) -> int:
    """Largest |dx| of an input pixel whose value changes output A's centre pixel (by autograd)."""
    generator.eval()
    x = torch.rand(1, 3, size, size, requires_grad=True)
    a, _ = generator(x)
    a[0, :, size // 2, size // 2].sum().backward()
    cols = torch.nonzero(x.grad.abs().sum(dim=(0, 1, 2)) > 0).flatten()
    return int((cols - size // 2).abs().max())


def test_shared_dilations_widen_the_receptive_field_at_the_same_parameter_count():
    plain = DeblenderConfig.preset("small")
    dilated = DeblenderConfig.preset("small", shared_dilations=(1, 2, 4))
    g0, g1 = build_generator(plain), build_generator(dilated)
    for g in (g0, g1):  # a non-zero last layer, so that gradients reach the input
        for branch in g.branches:
            nn.init.normal_(branch.conv.weight, std=0.01)
    assert count_parameters(g0) == count_parameters(g1)
    # by hand: heads 9x9 (4 + 4 px), tail 3x3 (1), two branch blocks (4), three shared blocks
    # of two 3x3 convolutions dilated by d each (2d per side)
    assert _reach(g0) == 4 + 4 + 1 + 4 + 2 * (1 + 1 + 1)
    assert _reach(g1) == 4 + 4 + 1 + 4 + 2 * (1 + 2 + 4)
    a, b = g1(torch.rand(2, 3, 80, 80))
    assert a.shape == b.shape == (2, 3, 80, 80)


def test_shared_dilations_are_validated():
    with pytest.raises(ValueError, match="one dilation >= 1 per shared block"):
        DeblenderConfig.preset("small", shared_dilations=(1, 2))
    with pytest.raises(ValueError, match="one dilation >= 1 per shared block"):
        DeblenderConfig.preset("small", shared_dilations=(0, 1, 2))


def test_centre_offsets_are_the_pixel_offsets_from_the_centre_over_half_the_size():
    from galaxai.models.deblender import CentreOffsets

    x = torch.rand(2, 3, 4, 6)
    out = CentreOffsets()(x)
    assert out.shape == (2, 5, 4, 6) and torch.equal(out[:, :3], x)
    # centre of a 6-wide row is between columns 2 and 3: offsets -2.5 … 2.5 over 3
    assert torch.allclose(out[1, 3, 0], torch.tensor([-2.5, -1.5, -0.5, 0.5, 1.5, 2.5]) / 3)
    assert torch.allclose(out[0, 4, :, 0], torch.tensor([-1.5, -0.5, 0.5, 1.5]) / 2)


def test_coord_channels_make_the_generator_know_where_the_centre_is():
    cfg = DeblenderConfig.preset("tiny", coord_channels=True)
    g = build_generator(cfg).eval()
    assert g.head[0].in_channels == 5
    x = torch.zeros(1, 3, 32, 32)
    x[..., 4:8, 4:8] = 1.0  # one blob, seen centred and off-centre
    a_off, _ = g(x)
    a_centred, _ = g(torch.roll(x, (10, 10), dims=(2, 3)))
    # a translation-equivariant network would give the rolled output; this one does not
    assert not torch.allclose(torch.roll(a_off, (10, 10), dims=(2, 3))[..., 8:24, 8:24],
                              a_centred[..., 8:24, 8:24], atol=1e-4)
