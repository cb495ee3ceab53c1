"""The (xAI-)Mask CycleGAN trainer: the loss on a 1-pixel toy, detached fakes, M = 0, resume,
run_arm."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from stamp_blobs import blob_stamps
from torch import nn

from galaxai.train.cyclegan import (CycleGANTrainer, ImagePool, StampSets, arm_config, run_arm,
                                    train_and_evaluate)


def _sets(n: int = 6, seed: int = 0) -> StampSets:
    return StampSets(blob_stamps(n, seed=seed), blob_stamps(n, sigma=2.0, axis_ratio=0.5,
                                                            seed=seed + 1),
                     blob_stamps(4, seed=seed + 2), blob_stamps(4, sigma=2.0, axis_ratio=0.5,
                                                                seed=seed + 3))


class _ToyG(nn.Module):
    """out = tanh(w·m·x) + c·(1 − m)·x on one pixel (a Mask CycleGAN generator in miniature)."""

    def __init__(self, w: float, c: float) -> None:
        super().__init__()
        self.w, self.c = nn.Parameter(torch.tensor(w)), nn.Parameter(torch.tensor(c))

    def forward(self, x, m, parts=False):
        main = torch.tanh(self.w * m * x)
        out = main + self.c * (1 - m) * x
        return (out, main) if parts else out


class _ToyD(nn.Module):
    def __init__(self, v: float, b: float) -> None:
        super().__init__()
        self.v, self.b = nn.Parameter(torch.tensor(v)), nn.Parameter(torch.tensor(b))

    def forward(self, x):
        return self.v * x + self.b


def _toy_trainer(tmp_path):
    trainer = CycleGANTrainer(_sets(), tmp_path / "run", arm_config("baseline", "tiny", 4, 0,
                                                                    pool_size=0))
    trainer.nets = nn.ModuleDict({"G_AB": _ToyG(0.8, 0.5), "G_BA": _ToyG(-0.6, 0.3),
                                  "D_A": _ToyD(0.9, 0.1), "D_A_mask": _ToyD(-0.4, 0.2),
                                  "D_B": _ToyD(0.7, -0.3), "D_B_mask": _ToyD(1.2, 0.05)})
    return trainer


XA, XB = [0.5, -0.2], [0.1, 0.8]
MA, MB = [1.01, 0.97], [0.99, 1.03]


def _t(values):
    return torch.tensor(values).view(2, 1, 1, 1)


def test_generator_loss_matches_a_hand_computation_on_a_one_pixel_toy(tmp_path):
    trainer = _toy_trainer(tmp_path)
    out = {k: v.detach() for k, v in trainer.generator_losses(_t(XA), _t(XB), _t(MA),
                                                               _t(MB)).items()}

    def g(w, c, x, m):
        return math.tanh(w * m * x) + c * (1 - m) * x

    fb = [g(0.8, 0.5, x, m) for x, m in zip(XA, MA)]
    fa = [g(-0.6, 0.3, x, m) for x, m in zip(XB, MB)]
    adv = 0.0
    for fakes, masks, (v, b), (vm, bm) in ((fb, MA, (0.7, -0.3), (1.2, 0.05)),
                                           (fa, MB, (0.9, 0.1), (-0.4, 0.2))):
        adv += np.mean([0.7 * (vm * m * f + bm - 1) ** 2 for f, m in zip(fakes, masks)])
        adv += np.mean([0.3 * (v * f + b - 1) ** 2 for f in fakes])
    cycle = 0.0
    for fakes, xs, masks, (w, c) in ((fb, XA, MA, (-0.6, 0.3)), (fa, XB, MB, (0.8, 0.5))):
        err = [abs(g(w, c, f, m) - x) for f, x, m in zip(fakes, xs, masks)]
        on = sum(m * e for m, e in zip(masks, err)) / sum(masks)
        off = sum(abs(1 - m) * e for m, e in zip(masks, err)) / sum(abs(1 - m) for m in masks)
        cycle += 0.3 * on + 0.7 * off
    identity = (np.mean([abs(g(0.8, 0.5, x, m) - x) for x, m in zip(XB, MB)])
                + np.mean([abs(g(-0.6, 0.3, x, m) - x) for x, m in zip(XA, MA)]))
    assert float(out["adv"]) == pytest.approx(1.5 * adv, rel=1e-5)
    assert float(out["cycle"]) == pytest.approx(10 * cycle, rel=1e-5)
    assert float(out["identity"]) == pytest.approx(3 * identity, rel=1e-5)
    assert float(out["total"]) == pytest.approx(1.5 * adv + 10 * cycle + 3 * identity, rel=1e-5)


def test_discriminator_loss_matches_a_hand_computation_and_fakes_are_detached(tmp_path):
    trainer = _toy_trainer(tmp_path)
    xa, xb, ma, mb = _t(XA), _t(XB), _t(MA), _t(MB)
    out = trainer.generator_losses(xa, xb, ma, mb)
    for p in trainer.nets["G_AB"].parameters():
        p.grad = None
    fb = out["fake_B"].detach().flatten().tolist()
    assert out["fake_B"].requires_grad  # handed over still attached to G's graph
    got = trainer.discriminator_step(xa, xb, out["fake_A"], out["fake_B"], ma, mb,
                                     np.random.default_rng(0))
    want = 0.3 * 0.5 * (np.mean([(0.7 * x - 0.3 - 1) ** 2 for x in XB])
                        + np.mean([(0.7 * f - 0.3) ** 2 for f in fb])) \
        + 0.7 * 0.5 * (np.mean([(1.2 * m * x + 0.05 - 1) ** 2 for x, m in zip(XB, MA)])
                       + np.mean([(1.2 * m * f + 0.05) ** 2 for f, m in zip(fb, MA)]))
    assert got["loss_D_B"] == pytest.approx(want, rel=1e-5)
    assert all(p.grad is None for g in ("G_AB", "G_BA") for p in trainer.nets[g].parameters())


def _g_grads(trainer, batch, masks=None):
    for p in trainer.nets.parameters():
        p.grad = None
    out = trainer.generator_losses(*batch)
    handles = [] if masks is None else [trainer_hook(out[f"main_{d}"], masks[d]) for d in "AB"]
    out["total"].backward()
    for h in handles:
        h.remove()
    return [p.grad.clone() for g in ("G_AB", "G_BA") for p in trainer.nets[g].parameters()], out


def trainer_hook(output, mask):
    from galaxai.guided.core import scale_gradient

    return scale_gradient(output, mask, 1.0)


def test_zero_map_leaves_generator_gradients_bit_identical(tmp_path):
    trainer = CycleGANTrainer(_sets(), tmp_path / "run", arm_config("saliency", "tiny", 4, 0))
    batch = trainer._batch(np.random.default_rng(1))
    plain, _ = _g_grads(trainer, batch)
    zeros = {d: torch.zeros_like(batch[0]) for d in "AB"}
    hooked, _ = _g_grads(trainer, batch, zeros)
    assert all(torch.equal(a, b) for a, b in zip(plain, hooked))


def test_map_reaches_the_generator_only_through_its_tanh_output(tmp_path, monkeypatch):
    """Reference: the plain gradient plus the VJP of the tanh output with g ⊙ αM."""
    trainer = CycleGANTrainer(_sets(), tmp_path / "run", arm_config("saliency", "tiny", 4, 0))
    trainer.nets.double()  # float64: the reference differs only by rounding
    batch = [t.double() for t in trainer._batch(np.random.default_rng(2))]
    masks = {d: torch.rand_like(batch[0]) * 2 - 1 for d in "AB"}
    hooked, _ = _g_grads(trainer, batch, masks)
    for p in trainer.nets.parameters():
        p.grad = None
    out = trainer.generator_losses(*batch)
    params = [p for g in ("G_AB", "G_BA") for p in trainer.nets[g].parameters()]
    mains = [out["main_A"], out["main_B"]]
    g_main = torch.autograd.grad(out["total"], mains, retain_graph=True)
    base = torch.autograd.grad(out["total"], params, retain_graph=True)
    extra = torch.autograd.grad(mains, params, grad_outputs=[g_main[0] * masks["A"],
                                                             g_main[1] * masks["B"]],
                                allow_unused=True)
    for got, b, e in zip(hooked, base, extra):
        want = b if e is None else b + e
        torch.testing.assert_close(got, want, rtol=1e-9, atol=1e-12)
    assert any(not torch.allclose(a, b) for a, b in zip(hooked, base))
    trainer.nets.float()
    # a guided training step never installs a module backward hook
    for name in ("register_full_backward_hook", "register_backward_hook"):
        monkeypatch.setattr(nn.Module, name, lambda *a, **k: pytest.fail(f"{name} was used"))
    trainer.step()
    assert not any(m._backward_hooks for m in trainer.nets.modules())


def test_resume_continues_exactly(tmp_path):
    cfg = arm_config("shuffled", "tiny", 4, 0, log_every=1)
    straight = CycleGANTrainer(_sets(), tmp_path / "a", cfg)
    straight.run()
    first = CycleGANTrainer(_sets(), tmp_path / "b", cfg)
    first.run(until=2)
    first.checkpoint()
    first.step()  # work after the checkpoint is lost on resume ...
    resumed = CycleGANTrainer(_sets(), tmp_path / "b", cfg)
    assert resumed.iteration == 2
    resumed.run()
    for (k, a), b in zip(straight.nets.state_dict().items(), resumed.nets.state_dict().values()):
        assert torch.equal(a, b), k
    rows = [json.loads(x) for x in (tmp_path / "b" / "stats.jsonl").read_text().splitlines()]
    assert [r["iteration"] for r in rows] == [1, 2, 3, 4]  # ... and so are its stats rows
    with pytest.raises(ValueError, match="another run"):
        CycleGANTrainer(_sets(), tmp_path / "b", arm_config("baseline", "tiny", 4, 0))


def test_image_pool_fills_then_swaps_half():
    pool, rng = ImagePool(3), np.random.default_rng(0)
    first = torch.arange(3.0).view(3, 1)
    assert torch.equal(pool.query(first, rng), first)
    later = pool.query(torch.full((200, 1), 9.0), rng)
    swapped = int((later != 9).sum())
    assert 0 < swapped <= 3  # only the three stored fakes can come back, once each


def test_run_arm_rows_columns_and_resume(tmp_path):
    data = _sets().save(tmp_path / "stamps.npz")
    kw = dict(preset="tiny", iterations=2, eval_every=1, guide_from=1, data=data,
              out=tmp_path / "arm", progress=False)
    df = run_arm("saliency", 0, **kw)
    assert list(df["iteration"]) == [1, 2, 3]  # guide_from + iterations in all
    assert {"iteration", "wall_s", "kid", "morph_distance", "kid_raw",
            "morph_distance_raw"} <= set(df.columns)
    assert df.attrs == {"primary": "kid", "higher_is_better": False}
    assert df["wall_s"].is_monotonic_increasing and (df["wall_s"] > 0).all()
    assert df["explain_s"].iloc[0] == 0 and df["explain_s"].iloc[1] > 0  # guidance from 1
    assert np.isfinite(df["kid"]).all() and np.isfinite(df["morph_distance_raw"]).all()
    again = run_arm("saliency", 0, **kw)  # resumed: nothing left to train
    assert again[["iteration", "kid"]].equals(df[["iteration", "kid"]])
    with pytest.raises(ValueError, match="arm"):
        run_arm("lime", 0, **kw)


def test_train_and_evaluate_rejects_bad_data(tmp_path):
    sets = _sets()
    sets.real_train = sets.real_train[:, :, :16, :16]
    with pytest.raises(ValueError, match="real_train"):
        train_and_evaluate(sets, arm_config("baseline", "tiny", 2, 0), tmp_path / "r")


def test_run_arm_keeps_one_row_per_evaluation_after_a_repeated_one(tmp_path):
    # a run killed between its stats row and its checkpoint evaluates that iteration again
    data = _sets().save(tmp_path / "stamps.npz")
    kw = dict(preset="tiny", iterations=2, eval_every=1, guide_from=0, data=data,
              out=tmp_path / "arm", progress=False)
    first = run_arm("baseline", 0, **kw)
    stats = tmp_path / "arm" / "stats.jsonl"
    lines = stats.read_text().splitlines()
    stale = json.loads([line for line in lines if '"eval"' in line][0])
    stale["kid"] = -1.0
    stats.write_text("\n".join([*lines[:1], json.dumps(stale), *lines[1:]]) + "\n")
    again = run_arm("baseline", 0, **kw)
    assert list(again["iteration"]) == [1, 2]
    assert (again["kid"] >= 0).all() and again["kid"].tolist() == first["kid"].tolist()


def test_device_is_checked_and_cpu_is_explicit(tmp_path):
    cfg = arm_config("baseline", "tiny", 2, 0)
    with pytest.raises(ValueError, match="device='gpu0'"):
        CycleGANTrainer(_sets(), tmp_path / "bad", cfg, device="gpu0")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            CycleGANTrainer(_sets(), tmp_path / "cuda", cfg, device="cuda")
    trainer = CycleGANTrainer(_sets(), tmp_path / "cpu", cfg, device="cpu")
    assert {p.device.type for p in trainer.nets.parameters()} == {"cpu"}


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_steps_match_cpu_steps(tmp_path):
    # same data order and masks (drawn on the CPU): the losses agree up to float rounding
    cfg = arm_config("saliency", "tiny", 3, 0, guide_from=0)
    cpu = CycleGANTrainer(_sets(), tmp_path / "cpu", cfg, device="cpu")
    gpu = CycleGANTrainer(_sets(), tmp_path / "gpu", cfg, device="cuda")
    for _ in range(2):
        a, b = cpu.step(), gpu.step()
        assert b["loss_G"] == pytest.approx(a["loss_G"], rel=1e-3)
    gpu.checkpoint()
    assert gpu.translate(torch.zeros(2, 3, 32, 32)).device.type == "cpu"
