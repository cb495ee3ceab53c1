"""Generator-side LRP: an independent LRP-epsilon reference, conservation, the deblender's output
skip, region masks, bad input, and the wrong-galaxy report."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from galaxai.explain import GeneratorLRP, generator_lrp, wrong_galaxy_share
from galaxai.explain.generator_lrp import footprint
from galaxai.models.deblender import DeblenderConfig, build_generator


def _conv_net(bias: bool, seed: int = 0) -> nn.Sequential:
    torch.manual_seed(seed)
    net = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1, bias=bias), nn.PReLU(4, init=0.25),
                        nn.Conv2d(4, 4, 3, padding=1, bias=bias), nn.PReLU(4, init=-0.1),
                        nn.Conv2d(4, 2, 3, padding=1, bias=bias), nn.Tanh())
    return net.double().eval()


def _reference_epsilon(net: nn.Sequential, x: torch.Tensor, seed: torch.Tensor, eps: float):
    """LRP-epsilon written from the equations, contribution by contribution.

    ``R_i = sum_j z_ij / (z_j + eps * sign(z_j)) R_j`` with ``z_ij = x_i w_ij`` and
    ``z_j = sum_i z_ij + b_j`` (sign(0) = +1); element-wise activations hand relevance through.
    Convolutions are unrolled with ``unfold`` (every input-patch element times its weight) and the
    per-patch relevance is folded back onto the input grid.
    """
    acts = [x]
    with torch.no_grad():
        for layer in net:
            acts.append(layer(acts[-1]))
    rel = seed
    for layer, a in zip(reversed(list(net)), reversed(acts[:-1])):
        if not isinstance(layer, nn.Conv2d):
            continue  # PReLU / Tanh: pass-through
        b, _, h, w = a.shape
        cols = F.unfold(a, 3, padding=1)                                   # (B, Cin*9, L)
        weight = layer.weight.reshape(layer.out_channels, -1)              # (Cout, Cin*9)
        contrib = cols[:, None, :, :] * weight[None, :, :, None]           # (B, Cout, Cin*9, L)
        z = contrib.sum(2)
        if layer.bias is not None:
            z = z + layer.bias.view(1, -1, 1)
        stab = z + eps * torch.where(z >= 0, 1.0, -1.0)
        r_out = rel.reshape(b, layer.out_channels, -1)                     # (B, Cout, L)
        r_cols = (contrib / stab[:, :, None, :] * r_out[:, :, None, :]).sum(1)
        rel = F.fold(r_cols, (h, w), 3, padding=1)
    return rel


@pytest.mark.parametrize("bias", [True, False])
def test_matches_hand_written_epsilon_reference(bias):
    net = _conv_net(bias)
    x = torch.rand(2, 3, 8, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    region = torch.zeros(8, 8, dtype=torch.bool)
    region[2:6, 1:5] = True
    res = generator_lrp(net, x, region=region, rule="epsilon", epsilon=0.05)
    with torch.no_grad():
        y = net(x)
    expected = _reference_epsilon(net, x, y * region, eps=0.05)
    torch.testing.assert_close(res.maps, expected, rtol=1e-6, atol=1e-9)  # zennit sums in another order
    torch.testing.assert_close(res.logits, (y * region).sum((1, 2, 3)))


def test_conservation_is_tight_without_biases_and_skips():
    net = _conv_net(bias=False, seed=3)
    x = torch.rand(3, 3, 10, 10, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    res = generator_lrp(net, x, rule="zero")
    torch.testing.assert_close(res.maps.sum((1, 2, 3)), res.logits, rtol=1e-9, atol=1e-9)
    # with biases the bias terms keep b_j / z_j of each neuron's relevance: no longer conserved
    biased = generator_lrp(_conv_net(bias=True, seed=3), x, rule="zero")
    gap = (biased.maps.sum((1, 2, 3)) - biased.logits).abs()
    assert (gap > 1e-3 * biased.logits.abs()).all()


def _deblender(output_skip: bool, zero_shifts: bool, **model) -> nn.Module:
    cfg = DeblenderConfig.preset("tiny", output_skip=output_skip, **model)
    g = build_generator(cfg, seed=4).double()
    gen = torch.Generator().manual_seed(5)
    for m in g.modules():
        if isinstance(m, nn.Conv2d):
            m.weight.data = torch.randn(m.weight.shape, generator=gen, dtype=torch.float64) * 0.2
            m.bias.data = (torch.zeros_like(m.bias) if zero_shifts else
                           torch.randn(m.bias.shape, generator=gen, dtype=torch.float64) * 0.1)
        elif isinstance(m, nn.BatchNorm2d):  # random scales; shifts only when asked
            m.running_var.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
            m.weight.data.copy_(torch.randn(m.num_features, generator=gen) * 0.5 + 1.0)
            if not zero_shifts:
                m.running_mean.copy_(torch.randn(m.num_features, generator=gen) * 0.3)
                m.bias.data.copy_(torch.randn(m.num_features, generator=gen) * 0.3)
        elif isinstance(m, nn.PReLU):
            m.weight.data.fill_(0.2)
    return g.eval()


@pytest.mark.parametrize("branch", ["A", 1])
def test_deblender_with_output_skip_conserves_without_shifts(branch):
    """Residual sums, the long trunk skip and the output skip split relevance without loss: on a
    deblender whose convolutions and merged BatchNorms have no shift, LRP-0 conserves ``f``."""
    g = _deblender(output_skip=True, zero_shifts=True)
    x = torch.rand(2, 3, 16, 16, dtype=torch.float64, generator=torch.Generator().manual_seed(6))
    x[0, :, :3] = 0.0  # blend pixels exactly 0: the skip's "2x - 1" still routes to them
    res = generator_lrp(g, x, branch=branch, rule="zero")
    torch.testing.assert_close(res.maps.sum((1, 2, 3)), res.logits, rtol=1e-7, atol=1e-7)
    with torch.no_grad():
        y = g(x)[0 if branch == "A" else 1]
    torch.testing.assert_close(res.logits, y.sum((1, 2, 3)))


def test_centre_offset_planes_take_only_the_relevance_their_weights_give_them():
    """A generator with ``coord_channels`` whose head gives the offset planes zero weight is the
    plain generator: same maps. With weight on them, their share is absorbed (not conserved)."""
    plain = _deblender(output_skip=True, zero_shifts=True)
    coords = _deblender(output_skip=True, zero_shifts=True, coord_channels=True)
    state = plain.state_dict()
    widened = torch.zeros_like(coords.head[0].weight)
    widened[:, :3] = state["head.0.weight"]
    coords.load_state_dict({**state, "head.0.weight": widened})
    x = torch.rand(2, 3, 16, 16, dtype=torch.float64, generator=torch.Generator().manual_seed(6))
    want = generator_lrp(plain, x, branch="A", rule="zero")
    got = generator_lrp(coords, x, branch="A", rule="zero")
    torch.testing.assert_close(got.maps, want.maps)
    with torch.no_grad():
        coords.head[0].weight[:, 3:] = 0.3
    res = generator_lrp(coords, x, branch="A", rule="zero")
    gap = (res.maps.sum((1, 2, 3)) - res.logits).abs()
    assert (gap > 1e-3 * res.logits.abs()).all()


def test_deblender_shifts_absorb_relevance():
    g = _deblender(output_skip=True, zero_shifts=False)
    x = torch.rand(2, 3, 16, 16, dtype=torch.float64, generator=torch.Generator().manual_seed(6))
    res = generator_lrp(g, x, branch=0, rule="zero")
    gap = (res.maps.sum((1, 2, 3)) - res.logits).abs()
    assert (gap > 1e-3 * res.logits.abs()).all()


def test_copy_the_blend_generator_routes_everything_through_the_skip():
    """A freshly built output-skip deblender has zero last convolutions: it copies the blend,
    ``y = clamp(2x - 1)``, so each output pixel's relevance ``m y`` must land on the same blend
    pixel and channel, and nothing elsewhere."""
    cfg = DeblenderConfig.preset("tiny", output_skip=True)
    g = build_generator(cfg, seed=0)
    x = torch.rand(2, 3, 12, 12, generator=torch.Generator().manual_seed(7))
    region = torch.zeros(2, 12, 12)
    region[0, 3:8, 2:9] = 1.0
    region[1, :, 6:] = 0.5
    res = generator_lrp(g, x, branch="B", region=region, rule="epsilon")
    expected = (2 * x - 1).clamp(-0.999, 0.999) * region[:, None]
    torch.testing.assert_close(res.maps, expected, rtol=1e-5, atol=1e-6)


def test_region_masks():
    net = _conv_net(bias=False, seed=8)
    x = torch.rand(2, 3, 12, 12, dtype=torch.float64, generator=torch.Generator().manual_seed(9))
    with GeneratorLRP(net, rule="zero") as explain:
        empty = explain(x, region=np.zeros((12, 12), dtype=bool))
        left_mask = torch.zeros(12, 12, dtype=torch.bool)
        left_mask[:, :6] = True
        left, right, whole = explain(x, region=left_mask), explain(x, region=~left_mask), explain(x)
    assert torch.count_nonzero(empty.maps) == 0 and torch.count_nonzero(empty.logits) == 0
    # three 3x3 layers: the left half's relevance reaches at most 3 columns past the border
    assert torch.count_nonzero(left.maps[..., 9:]) == 0
    assert torch.count_nonzero(right.maps[..., :3]) == 0
    assert left.maps[..., :6].abs().sum() > 0 and right.maps[..., 6:].abs().sum() > 0
    torch.testing.assert_close(left.maps + right.maps, whole.maps)
    torch.testing.assert_close(left.maps.sum((1, 2, 3)), left.logits)


def test_channel_reduction():
    net = _conv_net(bias=False, seed=10)
    x = torch.rand(1, 3, 8, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(11))
    with GeneratorLRP(net, rule="zero") as explain:
        c0, c1, both = explain(x, channel=0), explain(x, channel=1), explain(x, channel=[1.0, 1.0])
    with torch.no_grad():
        y = net(x)
    torch.testing.assert_close(c0.logits, y[:, 0].sum((1, 2)))
    torch.testing.assert_close(c0.maps + c1.maps, both.maps)


def test_bad_input_names_the_argument():
    g = build_generator(DeblenderConfig.preset("tiny"), seed=0)
    x = torch.rand(1, 3, 8, 8)
    with pytest.raises(ValueError, match="branch"):
        generator_lrp(g, x)  # a tuple-returning generator needs a branch
    with pytest.raises(ValueError, match="branch"):
        generator_lrp(g, x, branch=2)
    with pytest.raises(ValueError, match="branch"):
        generator_lrp(g, x, branch="C")
    with pytest.raises(ValueError, match="branch"):
        generator_lrp(_conv_net(bias=False).float(), x, branch=0)
    with pytest.raises(ValueError, match="region"):
        generator_lrp(g, x, branch="A", region=np.ones((8, 7), dtype=bool))
    with pytest.raises(ValueError, match="region"):
        generator_lrp(g, x, branch="A", region=np.ones((2, 8, 8), dtype=bool))
    with pytest.raises(ValueError, match="channel"):
        generator_lrp(g, x, branch="A", channel=3)
    with pytest.raises(ValueError, match="rule"):
        generator_lrp(g, x, branch="A", rule="nonsense")
    gated = build_generator(DeblenderConfig.preset("tiny", output_skip=True, skip_gate=True))
    with pytest.raises(NotImplementedError, match="skip_gate"):
        generator_lrp(gated, x, branch="A")


def test_footprint_threshold():
    flux = np.zeros((2, 3, 4, 4))
    flux[0, 1, 1, 1], flux[1, 1, 2, 2], flux[1, 0, 0, 0] = 5.0, 3.0, 99.0
    got = footprint(flux, [5.0, 4.0])
    assert got[0, 1, 1] and got.sum() == 1  # 5 >= 1 x 5; 3 < 4; band g ignored


def test_wrong_galaxy_share_on_copy_the_blend():
    """Copy-the-blend: positive relevance lies exactly on blend pixels above 0.5. Put those in
    A's footprint only: branch B then takes all its positive relevance from the wrong galaxy, and
    branch A all from its own."""
    g = build_generator(DeblenderConfig.preset("tiny", output_skip=True), seed=0)
    n = 6
    gen = torch.Generator().manual_seed(12)
    blends = torch.rand(n, 3, 12, 12, generator=gen) * 0.4  # all below 0.5: negative relevance
    fa = np.zeros((n, 12, 12), dtype=bool)
    fb = np.zeros((n, 12, 12), dtype=bool)
    fa[:, 2:6, 2:6] = True
    fb[:, 6:10, 6:10] = True
    blends[:, :, 3:5, 3:5] = 0.9  # bright core of A
    sep = np.array([5.0, 6.0, 7.0, 15.0, 16.0, 17.0])
    table = wrong_galaxy_share(g, blends, fa, fb, sep, bins=[0, 10, 20], batch_size=4)
    assert list(table["n"]) == [3, 3, 3, 3]
    a_rows, b_rows = table[table.branch == "A"], table[table.branch == "B"]
    np.testing.assert_allclose(a_rows["own"], 1.0, atol=1e-6)
    np.testing.assert_allclose(b_rows["other"], 1.0, atol=1e-6)
    np.testing.assert_allclose(b_rows["other_se"], 0.0, atol=1e-6)
    np.testing.assert_allclose(b_rows["area_other"], 16 / 144)


def test_wrong_galaxy_share_bad_input():
    g = build_generator(DeblenderConfig.preset("tiny", output_skip=True), seed=0)
    blends = torch.rand(2, 3, 8, 8)
    fa = np.zeros((2, 8, 8), dtype=bool)
    with pytest.raises(ValueError, match="footprint_b"):
        wrong_galaxy_share(g, blends, fa, fa[:1], [1.0, 2.0])
    with pytest.raises(ValueError, match="separation"):
        wrong_galaxy_share(g, blends, fa, fa, [1.0])
    with pytest.raises(ValueError, match="bins"):
        wrong_galaxy_share(g, blends, fa, fa, [1.0, 2.0], bins=[3, 1])


def test_user_model_untouched():
    g = _deblender(output_skip=True, zero_shifts=False)
    before = {k: v.clone() for k, v in g.state_dict().items()}
    generator_lrp(g, torch.rand(1, 3, 8, 8, dtype=torch.float64), branch="A")
    for k, v in g.state_dict().items():
        assert torch.equal(v, before[k]), k
