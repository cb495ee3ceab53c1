"""xAI-GAN guidance inside the deblender trainer: effect, bookkeeping, hooks and detached fakes."""
from __future__ import annotations

import dataclasses
import json

import pytest
import torch
import torch.nn.functional as F

from galaxai.guided import GuideConfig
from galaxai.models.deblender import DeblenderConfig, to_network
from galaxai.train.checkpoints import read_safetensors
from galaxai.train.gan import GANTrainConfig, GANTrainer, train

SIZE = 32


class Smooth(torch.utils.data.Dataset):
    """Blurred random targets A and B; the blend is their pixel-wise maximum."""

    def __init__(self, n: int = 16, seed: int = 0) -> None:
        gen = torch.Generator().manual_seed(seed)
        kernel = torch.ones(3, 1, 5, 5) / 25

        def smooth():
            noise = torch.rand(n, 3, SIZE, SIZE, generator=gen)
            return F.conv2d(noise, kernel, padding=2, groups=3)

        self.a, self.b = smooth(), smooth()

    def __len__(self) -> int:
        return len(self.a)

    def __getitem__(self, i: int) -> dict:
        return {"blend": torch.maximum(self.a[i], self.b[i]), "target_a": self.a[i],
                "target_b": self.b[i]}


def cfg(guide: GuideConfig | None = None, **kw) -> GANTrainConfig:
    base = dict(burn_in=1, iterations=4, checkpoint_every=5, log_every=1, perceptual="pixel")
    return GANTrainConfig.preset("tiny", model=DeblenderConfig.preset("tiny", image_size=SIZE),
                                 guide=guide, **{**base, **kw})


@pytest.fixture(scope="module")
def data():
    return Smooth(16)


def _weights(run):
    return read_safetensors(run / "checkpoints" / f"{5:09d}" / "G.safetensors")[0]


def test_alpha_zero_is_bit_identical_and_guidance_changes_training(tmp_path, data):
    train(data, tmp_path / "base", cfg())
    train(data, tmp_path / "zero", cfg(GuideConfig(alpha=0.0, start=1, gate=False)))
    train(data, tmp_path / "guided", cfg(GuideConfig(alpha=5.0, start=1, gate=False)))
    base, zero, guided = (_weights(tmp_path / r) for r in ("base", "zero", "guided"))
    assert all(torch.equal(base[k], zero[k]) for k in base)
    assert any(not torch.equal(base[k], guided[k]) for k in base)
    rows = [json.loads(line) for line in (tmp_path / "guided" / "stats.jsonl").read_text().splitlines()]
    assert [r["guide"] for r in rows] == [None, "saliency", "saliency", "saliency", "saliency"]
    assert all(r["guide_explained"] == 1.0 and r["guide_m_mean"] > 0 for r in rows[1:])
    toml = (tmp_path / "guided" / "config.toml").read_text()
    assert "[guide]" in toml and 'explainer = "saliency"' in toml


def test_guidance_starts_at_its_iteration_and_resume_refuses_other_guide_settings(tmp_path, data):
    guide = GuideConfig(start=3, gate=False, control="shuffled")
    train(data, tmp_path / "run", cfg(guide), max_iterations=2)
    with pytest.raises(ValueError, match=r"different config.*guide\.alpha: 0\.2 -> 0\.3"):
        train(data, tmp_path / "run", cfg(dataclasses.replace(guide, alpha=0.3)))
    with pytest.raises(ValueError, match="different config.*guide"):
        train(data, tmp_path / "run", cfg())
    train(data, tmp_path / "run", None)  # the run's own settings (config.toml) resume
    rows = [json.loads(line) for line in (tmp_path / "run" / "stats.jsonl").read_text().splitlines()]
    assert [r["guide"] for r in rows] == [None, None, None, "saliency/shuffled", "saliency/shuffled"]
    with pytest.raises(ValueError, match="inside the burn-in"):
        cfg(GuideConfig(start=0))


def test_the_generator_sees_alpha_and_m_only_through_the_output_hook(tmp_path, data):
    """One guided iteration checked against a hand-made gradient; fakes detached for D's step."""
    guide = GuideConfig(alpha=0.9, start=0, gate=False)
    trainer = GANTrainer(data, tmp_path / "run", cfg(guide, burn_in=0), None, "cpu")
    loader = torch.utils.data.DataLoader(data, batch_size=trainer.cfg.batch_size)
    trainer._batches = iter(loader)
    batches, masks, grads, checks = [], [], {}, {}
    next_batch, mask_of = trainer._next_batch, trainer.guide.mask
    trainer._next_batch = lambda: batches.append(next_batch()) or batches[-1]
    trainer.guide.mask = lambda *a, **k: masks.append(mask_of(*a, **k)[0]) or (masks[-1], {
        "explained": 1.0, "m_mean": 0.0, "seconds": 0.0})
    step = trainer._step

    def spy(name, loss):
        G = trainer.G
        if name == "D":
            for p in G.parameters():
                p.grad = None
            step(name, loss)
            checks["g_untouched_by_d_step"] = all(p.grad is None for p in G.parameters())
            return
        checks["no_module_hooks"] = not any(
            m._backward_hooks or m._backward_pre_hooks or m._forward_hooks
            or m._forward_pre_hooks for net in (G, trainer.D) for m in net.modules())
        G.zero_grad(set_to_none=True)
        loss.backward()  # no optimiser step: the weights stay those of the forward pass
        grads.update({k: p.grad.clone() for k, p in G.named_parameters()})

    trainer._step = spy
    trainer.adversarial_step(lr=1e-4, iteration=0)
    assert checks == {"g_untouched_by_d_step": True, "no_module_hooks": True}
    assert len(masks) == 2
    # reference: the same G-step batch, the loss split by hand, the rule applied at the outputs
    blend, ta, tb = batches[1]
    G, D, w = trainer.G, trainer.D, trainer.cfg.adv_weight
    G.zero_grad(set_to_none=True)
    g1, g2 = G(blend)
    D.requires_grad_(False)
    pixel = 0.5 * (F.mse_loss(g1, to_network(ta)) + F.mse_loss(g2, to_network(tb)))
    adv = 0.5 * w * sum(F.binary_cross_entropy_with_logits(D(g), torch.ones(len(g), 1))
                        for g in (g1, g2))
    pix = torch.autograd.grad(pixel, (g1, g2), retain_graph=True)
    advg = torch.autograd.grad(adv, (g1, g2), retain_graph=True)
    torch.autograd.backward((g1, g2), tuple(p + a * (1 + 0.9 * m)
                                            for p, a, m in zip(pix, advg, masks)))
    for name, p in G.named_parameters():
        torch.testing.assert_close(grads[name], p.grad, rtol=1e-4, atol=1e-9, msg=name)
