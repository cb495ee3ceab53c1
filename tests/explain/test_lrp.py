"""Polarized-LRP against the independent Eq. 1 reference, its invariants, and the LRP baselines."""
from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import eq1_reference as ref
from galaxai.explain import LRP_RULES, METHODS, PolarizedLRP, UnsupportedLayerError, lrp, polarized_lrp



def _state(model: nn.Module) -> dict:
    return {
        "state": {k: v.clone() for k, v in model.state_dict().items()},
        "training": [m.training for m in model.modules()],
        "requires_grad": [p.requires_grad for p in model.parameters()],
        "hooks": [(len(m._forward_hooks), len(m._forward_pre_hooks), len(m._backward_hooks))
                  for m in model.modules()],
        "classes": [type(m) for m in model.modules()],
    }


def _assert_unchanged(model: nn.Module, before: dict) -> None:
    after = _state(model)
    assert after["state"].keys() == before["state"].keys()
    for key, value in before["state"].items():
        assert torch.equal(after["state"][key], value), key
    for field in ("training", "requires_grad", "hooks", "classes"):
        assert after[field] == before[field], field


# ------------------------------------------------------------------------------------------
# exactness against the reference
# ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("engine", ["fused", "zennit"])
@pytest.mark.parametrize("order", ["conv-bn-act", "conv-act-bn"])
@pytest.mark.parametrize("polarity", ["auto", "positive", "negative"])
@pytest.mark.parametrize("bias", ["include", "ignore"])
def test_matches_reference_small_cnn(engine, order, polarity, bias):
    model = ref.small_cnn(order, seed=1).double()
    x = torch.randn(6, 3, 8, 8, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    ref.centre_logits(model, x, model[-1])
    expected, p, pol = ref.reference_polarized(model, x, polarity=polarity, bias=bias)
    if polarity == "auto":
        assert set(pol.tolist()) == {-1, 1}, "the batch must mix both polarities"
    result = polarized_lrp(model, x, polarity=polarity, bias=bias, engine=engine)
    torch.testing.assert_close(result.scores, p, rtol=1e-10, atol=1e-12)
    assert torch.equal(result.polarity, pol)
    torch.testing.assert_close(result.maps, expected, rtol=1e-7, atol=1e-10)


@pytest.mark.parametrize("pool", ["max", "avg"])
def test_matches_reference_with_pooling_and_start_logit(pool):
    model = ref.small_cnn("conv-act-bn", seed=3, pool=pool).double()
    model[4].weight.data.abs_()  # BN before max pooling commutes with it only for scales > 0
    x = torch.randn(4, 3, 8, 8, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    ref.centre_logits(model, x, model[-1])
    for start in ("probability", "logit"):
        expected, _, _ = ref.reference_polarized(model, x, start=start)
        result = polarized_lrp(model, x, start=start)
        torch.testing.assert_close(result.maps, expected, rtol=1e-7, atol=1e-10)


def test_first_layer_uses_signed_pixels():
    """Inputs of both signs at the first layer (e.g. images mapped to [-1, 1])."""
    model = ref.small_cnn(seed=5).double()
    x = torch.rand(3, 3, 8, 8, generator=torch.Generator().manual_seed(6), dtype=torch.float64) * 2 - 1
    expected, _, _ = ref.reference_polarized(model, x, polarity="negative")
    torch.testing.assert_close(polarized_lrp(model, x, polarity="negative").maps, expected,
                               rtol=1e-7, atol=1e-10)


# ------------------------------------------------------------------------------------------
# invariants
# ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("order", ["conv-bn-act", "conv-act-bn"])
def test_conservation_and_non_negativity_deblender_like(order):
    model = ref.deblender_like(order, widths=(4, 8, 8, 8, 8, 16, 16), size=32, dense=16)
    x = torch.rand(6, 3, 32, 32, generator=torch.Generator().manual_seed(0)) * 2 - 1
    ref.centre_logits(model, x, model[-1])
    explain = PolarizedLRP(model, bias="ignore")
    result = explain(x)
    assert set(result.polarity.tolist()) == {-1, 1}
    assert (result.maps >= 0).all()
    torch.testing.assert_close(result.maps.sum((1, 2, 3)), result.scores, rtol=2e-4, atol=1e-6)
    with_bias = polarized_lrp(model, x)  # the paper's default: bias terms absorb relevance
    assert (with_bias.maps >= 0).all()
    assert (with_bias.maps.sum((1, 2, 3)) <= with_bias.scores * (1 + 1e-5)).all()


def _zero_biases(model):
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.bias.data.zero_()
            m.running_mean.zero_()
        elif getattr(m, "bias", None) is not None:
            m.bias.data.zero_()
    return model


def test_conservation_with_zero_biases_relu():
    model = _zero_biases(ref.small_cnn(seed=7, pool="avg").double())
    for i, m in enumerate(model):
        if isinstance(m, nn.LeakyReLU):
            model[i] = nn.ReLU()
    x = torch.randn(5, 3, 8, 8, generator=torch.Generator().manual_seed(8), dtype=torch.float64)
    result = polarized_lrp(model, x)  # bias="include", but every bias is 0
    torch.testing.assert_close(result.maps.sum((1, 2, 3)), result.scores, rtol=1e-9, atol=1e-12)


def test_leaky_relu_loses_relevance_only_at_zero_denominators():
    """With LeakyReLU a neuron whose inputs all contribute <= 0 still passes relevance upwards
    (its negative output times a negative weight), but its own Eq. 1 denominator is 0, so that
    relevance stops there (0/0 := 0): the sum is <= p, exactly as the reference computes it."""
    model = _zero_biases(ref.small_cnn(seed=7, pool="avg").double())
    x = torch.randn(5, 3, 8, 8, generator=torch.Generator().manual_seed(8), dtype=torch.float64)
    result = polarized_lrp(model, x)
    expected, _, _ = ref.reference_polarized(model, x)
    torch.testing.assert_close(result.maps, expected, rtol=1e-7, atol=1e-10)
    assert (result.maps.sum((1, 2, 3)) <= result.scores * (1 + 1e-12)).all()


def test_model_unchanged_and_explainer_reusable():
    model = ref.deblender_like("conv-act-bn", widths=(4, 4, 8, 8, 8, 8, 8), size=16, dense=8)
    model.train()  # the user's flag must survive
    model[0].register_forward_hook(lambda m, i, o: None)
    before = _state(model)
    x = torch.randn(4, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    explain = PolarizedLRP(model)
    first, second = explain(x[:2]), explain(x[2:])
    fresh = polarized_lrp(model, x)
    torch.testing.assert_close(torch.cat([first.maps, second.maps]), fresh.maps)
    lrp(model, x, rule="composite")
    _assert_unchanged(model, before)
    explain.close()


def test_one_pass_mixed_batch_equals_separate_batches():
    model = ref.small_cnn(seed=9)
    x = torch.randn(8, 3, 8, 8, generator=torch.Generator().manual_seed(10))
    ref.centre_logits(model, x, model[-1])
    mixed = polarized_lrp(model, x)
    pos = mixed.polarity > 0
    torch.testing.assert_close(polarized_lrp(model, x[pos], polarity="positive").maps, mixed.maps[pos])
    torch.testing.assert_close(polarized_lrp(model, x[~pos], polarity="negative").maps, mixed.maps[~pos])


# ------------------------------------------------------------------------------------------
# discriminator families
# ------------------------------------------------------------------------------------------
class DCGANDiscriminator(nn.Module):
    """DCGAN discriminator (Radford et al. 2016) ending in an nn.Sigmoid module."""

    def __init__(self, nc: int = 3, ndf: int = 4) -> None:
        super().__init__()
        self.main = nn.Sequential(
            nn.Conv2d(nc, ndf, 4, 2, 1, bias=False), nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(ndf, ndf * 2, 4, 2, 1, bias=False), nn.BatchNorm2d(ndf * 2),
            nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(ndf * 2, 1, 4, 1, 0, bias=False), nn.Sigmoid())

    def forward(self, x):
        return self.main(x).view(-1, 1).squeeze(1)


def test_dcgan_final_sigmoid_is_pass_through():
    torch.manual_seed(0)
    model = DCGANDiscriminator().eval()
    with torch.no_grad():
        model.main[3].running_var.uniform_(0.5, 2.0)
    x = torch.randn(4, 3, 16, 16)
    result = polarized_lrp(model, x, bias="ignore")
    with torch.no_grad():
        p = model(x)
    torch.testing.assert_close(result.scores, p)
    torch.testing.assert_close(result.logits, torch.logit(p.double()).float(), rtol=1e-4, atol=1e-4)
    without_sigmoid = nn.Sequential(*list(copy.deepcopy(model.main))[:-1], nn.Flatten(0))
    torch.testing.assert_close(polarized_lrp(without_sigmoid, x, bias="ignore").maps, result.maps)
    torch.testing.assert_close(result.maps.sum((1, 2, 3)), p, rtol=1e-4, atol=1e-6)


class ResidualDiscriminator(nn.Module):
    """Two residual blocks (one with an in-place add, one with a 1x1 projection), functional act."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 4, 3, padding=1)
        self.body1 = nn.Sequential(nn.Conv2d(4, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 4, 3, padding=1))
        self.body2 = nn.Sequential(nn.Conv2d(4, 6, 3, stride=2, padding=1), nn.LeakyReLU(0.2),
                                   nn.Conv2d(6, 6, 3, padding=1))
        self.skip2 = nn.Conv2d(4, 6, 1, stride=2)
        self.head = nn.Linear(6, 1)

    def forward(self, x):
        h = F.leaky_relu(self.stem(x), 0.2)
        out = self.body1(h)
        out += h
        h = F.leaky_relu(out, 0.2)
        h = F.leaky_relu(self.body2(h) + self.skip2(h), 0.2)
        return self.head(h.mean(dim=(2, 3)))


def _split(a, b, r, positive):
    ca, cb = (a.clamp(min=0), b.clamp(min=0)) if positive else (a.clamp(max=0), b.clamp(max=0))
    den = ca + cb
    safe = torch.where(den == 0, torch.ones_like(den), den)
    return torch.where(den == 0, 0.0, ca / safe) * r, torch.where(den == 0, 0.0, cb / safe) * r


@pytest.mark.parametrize("engine", ["fused", "zennit"])
def test_residual_discriminator_matches_hand_reference(engine):
    torch.manual_seed(1)
    model = ResidualDiscriminator().double().eval()
    x = torch.randn(4, 3, 8, 8, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    with torch.no_grad():
        model.head.bias -= model(x).median()
    result = polarized_lrp(model, x, bias="ignore", engine=engine)
    assert set(result.polarity.tolist()) == {-1, 1}
    assert (result.maps >= 0).all() and (result.maps.sum((1, 2, 3)) <= result.scores).all()

    # hand reference: Eq. 1 layers via the shared reference (single-layer Sequentials), sums split
    def layer(module, inp, r, positive):
        return _layer_relevance(nn.Sequential(module), inp, r, positive)

    for i in range(x.shape[0]):
        xi = x[i : i + 1]
        positive = bool(result.polarity[i] > 0)
        s0 = model.stem(xi)
        h0 = F.leaky_relu(s0, 0.2)
        b1 = model.body1(h0)
        h1 = F.leaky_relu(b1 + h0, 0.2)
        b2, k2 = model.body2(h1), model.skip2(h1)
        h2 = F.leaky_relu(b2 + k2, 0.2)
        pooled = h2.mean(dim=(2, 3))
        r = result.scores[i].reshape(1, 1)
        r = layer(model.head, pooled, r, positive)  # dense
        # mean over space: positive-weight linear map
        part = h2.clamp(min=0) if positive else h2.clamp(max=0)
        den = part.sum(dim=(2, 3), keepdim=True)
        r = torch.where(den == 0, 0.0, part / torch.where(den == 0, 1.0, den)) * r[..., None, None]
        r_b2, r_k2 = _split(b2, k2, r, positive)
        r_h1 = layer(model.skip2, h1, r_k2, positive)
        r_c = layer(model.body2[2], model.body2[1](model.body2[0](h1)), r_b2, positive)
        r_h1 = r_h1 + layer(model.body2[0], h1, r_c, positive)
        r_b1, r_h0 = _split(b1, h0, r_h1, positive)
        r_c = layer(model.body1[2], model.body1[1](model.body1[0](h0)), r_b1, positive)
        r_h0 = r_h0 + layer(model.body1[0], h0, r_c, positive)
        r_x = layer(model.stem, xi, r_h0, positive)
        torch.testing.assert_close(result.maps[i : i + 1], r_x.detach(), rtol=1e-7, atol=1e-10)


def _layer_relevance(seq, inp, r, positive):
    """Eq. 1 through one layer using the shared reference's per-layer routines."""
    op = ref._plan(seq)[0]
    fn = ref._eq1_conv if op["kind"] == "conv" else ref._eq1_linear
    return fn(op, inp[0].detach(), r[0].detach(), positive, False)[None]


class FunctionalActs(nn.Module):
    def __init__(self, inplace: bool) -> None:
        super().__init__()
        self.inplace = inplace
        self.conv, self.head = nn.Conv2d(3, 4, 3, padding=1), nn.Linear(4 * 8 * 8, 1)

    def forward(self, x):
        h = F.leaky_relu(self.conv(x), 0.2, self.inplace)
        return self.head(torch.flatten(h * 0.5, 1))


@pytest.mark.parametrize("inplace", [False, True])
def test_functional_activations_and_scaling_pass_relevance(inplace):
    torch.manual_seed(3)
    model = FunctionalActs(inplace).eval()
    modular = nn.Sequential(model.conv, nn.LeakyReLU(0.2), nn.Flatten(), model.head)
    x = torch.randn(3, 3, 8, 8, generator=torch.Generator().manual_seed(4))
    ours = polarized_lrp(model, x, polarity="positive", bias="ignore")
    theirs = polarized_lrp(modular, x, polarity="positive", bias="ignore")
    # scaling by 0.5 changes p but not the Eq. 1 shares (biases ignored)
    torch.testing.assert_close(ours.maps / ours.scores.view(-1, 1, 1, 1),
                               theirs.maps / theirs.scores.view(-1, 1, 1, 1))
    assert not torch.allclose(ours.scores, theirs.scores)


class ParamSpectralD(nn.Module):
    def __init__(self, legacy: bool) -> None:
        super().__init__()
        sn = nn.utils.spectral_norm if legacy else nn.utils.parametrizations.spectral_norm
        self.net = nn.Sequential(sn(nn.Conv2d(3, 4, 3, 2, 1)), nn.LeakyReLU(0.1),
                                 sn(nn.Conv2d(4, 4, 3, 2, 1)), nn.LeakyReLU(0.1), nn.Flatten(),
                                 sn(nn.Linear(4 * 4 * 4, 1)))

    def forward(self, x):
        return self.net(x)


@pytest.mark.parametrize("legacy", [False, True])
def test_spectral_norm_resolved_to_plain_weights(legacy):
    torch.manual_seed(2)
    model = ParamSpectralD(legacy)
    x = torch.randn(3, 3, 16, 16)
    model.train()
    with torch.no_grad():
        for _ in range(3):
            model(x)  # power iterations move u, v
    model.eval()
    before = _state(model)
    plain = nn.Sequential(nn.Conv2d(3, 4, 3, 2, 1), nn.LeakyReLU(0.1), nn.Conv2d(4, 4, 3, 2, 1),
                          nn.LeakyReLU(0.1), nn.Flatten(), nn.Linear(4 * 4 * 4, 1))
    with torch.no_grad():
        for src, dst in zip([model.net[0], model.net[2], model.net[5]], [plain[0], plain[2], plain[5]]):
            dst.weight.copy_(src.weight)
            dst.bias.copy_(src.bias)
    result = polarized_lrp(model, x)
    torch.testing.assert_close(result.maps, polarized_lrp(plain, x).maps)
    _assert_unchanged(model, before)
    if not legacy:
        assert nn.utils.parametrize.is_parametrized(model.net[0])


# ------------------------------------------------------------------------------------------
# errors and debugging aid
# ------------------------------------------------------------------------------------------
def test_unsupported_layer_is_named():
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.LeakyReLU(), nn.Flatten(), nn.LayerNorm(4 * 6 * 6),
                          nn.Linear(4 * 6 * 6, 1))
    with pytest.raises(UnsupportedLayerError, match=r"layer '3' \(LayerNorm\)"):
        polarized_lrp(model, torch.randn(2, 3, 8, 8))


class Gated(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a, self.b = nn.Conv2d(3, 2, 3), nn.Conv2d(3, 2, 3)
        self.head = nn.Linear(2 * 6 * 6, 1)

    def forward(self, x):
        return self.head((self.a(x) * torch.sigmoid(self.b(x))).flatten(1))


def test_unsupported_operation_is_named():
    with pytest.raises(UnsupportedLayerError, match=r"operation 'mul'.*module '<model>'"):
        polarized_lrp(Gated(), torch.randn(2, 3, 8, 8))


def test_unmergeable_batchnorm_is_named():
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.BatchNorm2d(4), nn.ReLU(),
                          nn.Flatten(), nn.Linear(4 * 6 * 6, 1)).eval()
    with pytest.raises(UnsupportedLayerError, match=r"BatchNorm '2'"):
        polarized_lrp(model, torch.randn(2, 3, 8, 8))


def test_describe_names_rule_per_layer_and_guarded_ops():
    explain = PolarizedLRP(ResidualDiscriminator().eval())
    assert "not prepared" in explain.describe()
    explain(torch.randn(2, 3, 8, 8))
    text = explain.describe()
    assert "stem" in text and "PolarizedEq1" in text
    assert "'add_'" in text and "Eq.1 sum split" in text
    assert "leaky_relu" in text and "pass-through" in text
    small = PolarizedLRP(ref.small_cnn("conv-act-bn"))
    small(torch.randn(2, 3, 8, 8))
    assert "BatchNorm '4' (after an activation) merged into following '6'" in small.describe()
    assert "Pass" in small.describe()


def test_bad_arguments_are_rejected():
    model = ref.small_cnn()
    with pytest.raises(ValueError, match="polarity"):
        polarized_lrp(model, torch.randn(1, 3, 8, 8), polarity="both")
    with pytest.raises(ValueError, match="bias"):
        PolarizedLRP(model, bias="yes")
    with pytest.raises(ValueError, match="NaN"):
        polarized_lrp(model, torch.full((1, 3, 8, 8), float("nan")))
    with pytest.raises(ValueError, match="rule"):
        lrp(model, torch.randn(1, 3, 8, 8), rule="gamma")


# ------------------------------------------------------------------------------------------
# baselines
# ------------------------------------------------------------------------------------------
def test_registries_list_the_methods():
    assert set(LRP_RULES) == {"zero", "epsilon", "alpha1beta0", "composite"}
    assert {"polarized_lrp", "lrp", "input_gradient", "smoothgrad", "integrated_gradients",
            "grad_cam"} <= set(METHODS)


def test_lrp_zero_is_gradient_times_input_for_relu_nets():
    torch.manual_seed(4)
    model = nn.Sequential(nn.Conv2d(3, 4, 3, bias=False), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                          nn.Linear(4 * 3 * 3, 5, bias=False), nn.ReLU(), nn.Linear(5, 1, bias=False))
    model = model.double()
    x = torch.randn(3, 3, 8, 8, dtype=torch.float64, requires_grad=True)
    (grad,) = torch.autograd.grad(model(x).sum(), x)
    result = lrp(model, x.detach(), rule="zero")
    torch.testing.assert_close(result.maps, (grad * x).detach(), rtol=1e-8, atol=1e-10)
    torch.testing.assert_close(result.maps.sum((1, 2, 3)), result.logits, rtol=1e-8, atol=1e-10)


@pytest.mark.parametrize("rule", sorted(LRP_RULES))
def test_every_baseline_runs_on_deblender_like(rule):
    model = ref.deblender_like("conv-act-bn", widths=(4, 4, 8, 8, 8, 8, 8), size=16, dense=8)
    result = lrp(model, torch.rand(2, 3, 16, 16), rule=rule)
    assert result.maps.shape == (2, 3, 16, 16) and torch.isfinite(result.maps).all()
    assert result.method == f"lrp_{rule}" and result.polarity is None


def test_alpha1beta0_equals_positive_polarized_with_logit_start():
    """z+ for every sample is the positive Polarized rule started from the logit."""
    model = ref.small_cnn(seed=11).double()
    x = torch.rand(3, 3, 8, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    ref.centre_logits(model, x, model[-1])
    base = lrp(model, x, rule="alpha1beta0")
    polar = polarized_lrp(model, x, polarity="positive", start="logit")
    sign = torch.sign(base.logits).view(-1, 1, 1, 1)
    torch.testing.assert_close(base.maps * sign, polar.maps, rtol=1e-6, atol=1e-9)
