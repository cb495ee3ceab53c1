"""The guidance primitive g' = g * (1 + alpha*M), its maps, gating, normalisation and controls."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from galaxai.guided import Guide, GuideConfig
from galaxai.guided.core import apply_control, explanation_map, guidance_mask, scale_gradient

B, C, S = 4, 3, 8


def _nets(seed: int = 0) -> tuple[nn.Module, nn.Module]:
    torch.manual_seed(seed)
    G = nn.Sequential(nn.Conv2d(C, 6, 3, padding=1), nn.ReLU(), nn.Conv2d(6, C, 3, padding=1),
                      nn.Tanh())
    D = nn.Sequential(nn.Conv2d(C, 4, 3, stride=2, padding=1), nn.BatchNorm2d(4), nn.LeakyReLU(0.2),
                      nn.Flatten(), nn.Linear(4 * (S // 2) ** 2, 1))
    return G, D


def _grads(G, D, x, target, mask=None, alpha=0.2) -> list[torch.Tensor]:
    """Parameter gradients of pixel + adversarial loss; the adversarial view hooked if ``mask``."""
    G.zero_grad(set_to_none=True)
    out = G(x)
    view = out.view_as(out)
    if mask is not None:
        scale_gradient(view, mask, alpha)
    loss = (out - target).pow(2).mean() + 1e-3 * nn.functional.softplus(-D(view)).mean()
    loss.backward()
    return [p.grad.clone() for p in G.parameters()]


def test_zero_map_leaves_gradients_bit_identical():
    G, D = _nets()
    x, t = torch.rand(B, C, S, S), torch.rand(B, C, S, S) * 2 - 1
    plain = _grads(G, D, x, t)
    hooked = _grads(G, D, x, t, mask=torch.zeros(B, C, S, S))
    assert all(torch.equal(a, b) for a, b in zip(plain, hooked))
    # and alpha = 0 with any map
    hooked = _grads(G, D, x, t, mask=torch.rand(B, C, S, S), alpha=0.0)
    assert all(torch.equal(a, b) for a, b in zip(plain, hooked))


def test_hook_scales_only_the_adversarial_gradient():
    """Reference: g = g_pixel + g_adv * (1 + alpha*M) at the output, back-propagated by hand."""
    G, D = _nets(1)
    x, t = torch.rand(B, C, S, S), torch.rand(B, C, S, S) * 2 - 1
    mask, alpha = torch.rand(B, C, S, S), 0.7
    hooked = _grads(G, D, x, t, mask=mask, alpha=alpha)
    G.zero_grad(set_to_none=True)
    out = G(x)
    (g_pix,) = torch.autograd.grad((out - t).pow(2).mean(), out, retain_graph=True)
    (g_adv,) = torch.autograd.grad(1e-3 * nn.functional.softplus(-D(out)).mean(), out,
                                   retain_graph=True)
    out.backward(g_pix + g_adv * (1 + alpha * mask))
    for got, want in zip(hooked, (p.grad for p in G.parameters())):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-8)
    # the rule changes something: without the hook the gradients differ
    plain = _grads(G, D, x, t)
    assert any(not torch.allclose(a, b) for a, b in zip(plain, hooked))


def test_scale_gradient_rejects_detached_outputs_and_wrong_shapes():
    out = torch.rand(B, C, S, S)
    with pytest.raises(ValueError, match="does not require grad"):
        scale_gradient(out, torch.zeros_like(out), 0.2)
    with pytest.raises(ValueError, match="mask shape"):
        scale_gradient(out.requires_grad_(), torch.zeros(B, 1, S, S), 0.2)


def test_saliency_map_is_the_absolute_eval_mode_input_gradient():
    _, D = _nets(2)
    D.train()
    x = torch.randn(B, C, S, S)
    ref_net = _nets(2)[1].eval()
    ref_net.load_state_dict(D.state_dict())
    xg = x.clone().requires_grad_(True)
    ref_net(xg).sum().backward()
    got = explanation_map(D, x, "saliency")
    torch.testing.assert_close(got, xg.grad.abs())
    assert D.training and all(m.training for m in D.modules())  # flags restored


@pytest.mark.parametrize("explainer", ["smoothgrad", "polarized_lrp"])
def test_other_explainers_give_non_negative_maps_of_the_input_shape(explainer):
    _, D = _nets(3)
    x = torch.randn(2, C, S, S)
    maps = explanation_map(D, x, explainer, smoothgrad_n=2)
    assert maps.shape == x.shape and bool((maps >= 0).all()) and float(maps.sum()) > 0


def test_sample_normalisation_scales_explained_rows_and_zeroes_the_rest():
    maps = torch.tensor([[[[1.0, 3.0], [5.0, 9.0]]], [[[2.0, 2.0], [2.0, 4.0]]]])
    explained = torch.tensor([True, False, True])
    mask = guidance_mask(maps, explained, "sample")
    want = np.array([[[[0, 0.25], [0.5, 1]]], [[[0, 0], [0, 0]]], [[[0, 0], [0, 1]]]])
    np.testing.assert_allclose(mask.numpy(), want)


def test_repo_normalisation_reproduces_the_published_batch_min_max():
    maps = torch.tensor([[[[0.0, 0.5], [0.25, 0.0]]], [[[0.1, 0.1], [0.2, 0.3]]]])
    explained = torch.tensor([False, True, True])
    mask = guidance_mask(maps, explained, "repo")
    # ones everywhere, rows 1 and 2 overwritten, then (M - 0) / (1 - 0): the un-explained row keeps
    # the maximum (1 -> full boost) while the explained saliency values stay small
    want = np.array([[[[1, 1], [1, 1]]], [[[0, 0.5], [0.25, 0]]], [[[0.1, 0.1], [0.2, 0.3]]]])
    np.testing.assert_allclose(mask.numpy(), want, atol=1e-7)
    # fewer than two explained fakes: no change at all
    one = guidance_mask(maps[:1], torch.tensor([False, True, False]), "repo")
    assert not one.any()


def test_controls_keep_the_mean_or_the_rows():
    mask = torch.rand(6, C, S, S)
    const = apply_control(mask, "constant")
    assert torch.allclose(const, torch.full_like(mask, float(mask.mean())))
    shuffled = apply_control(mask, "shuffled", torch.Generator().manual_seed(3))
    rows = sorted(tuple(r.flatten().tolist()) for r in shuffled)
    assert rows == sorted(tuple(r.flatten().tolist()) for r in mask)
    again = apply_control(mask, "shuffled", torch.Generator().manual_seed(3))
    assert torch.equal(shuffled, again) and not torch.equal(shuffled, mask)


def test_guide_gates_on_the_discriminators_verdict():
    _, D = _nets(4)
    fakes = torch.randn(B, C, S, S)
    logits = torch.tensor([-1.0, 2.0, -0.5, 0.0])  # D(G(x)) < 0.5 only for rows 0 and 2
    mask, info = Guide(GuideConfig()).mask(D, fakes, logits, iteration=0)
    assert info["explained"] == 0.5
    assert not mask[1].any() and not mask[3].any()
    for row in (0, 2):
        assert float(mask[row].min()) == 0.0 and float(mask[row].max()) == 1.0
    nothing, info = Guide(GuideConfig()).mask(D, fakes, torch.ones(B), iteration=0)
    assert info["explained"] == 0 and not nothing.any()


def test_bad_settings_are_refused_by_name():
    with pytest.raises(ValueError, match="explainer"):
        GuideConfig(explainer="lime")
    with pytest.raises(ValueError, match="alpha"):
        GuideConfig(alpha=-1)
    with pytest.raises(ValueError, match="inside the burn-in"):
        GuideConfig(start=3).first_iteration(burn_in=10, iterations=20)
    assert GuideConfig().first_iteration(burn_in=10, iterations=20) == 20
