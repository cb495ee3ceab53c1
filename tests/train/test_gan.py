"""Tests of the deblender trainer: schedule, run directory, exact resume, errors."""
from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch

from galaxai.config import read_config
from galaxai.models.deblender import DeblenderConfig
from galaxai.train.checkpoints import list_checkpoints, load_resume, read_safetensors
from galaxai.train.gan import (
    ResumableBatchSampler,
    GANTrainConfig,
    data_fingerprint,
    new_run_dir,
    pixel_loss,
    train,
)

SIZE = 32


class Blobs(torch.utils.data.Dataset):
    """Smooth Gaussian blob pairs: A centred, B offset; blend = pixel-wise maximum."""

    def __init__(self, n: int = 24, size: int = SIZE, seed: int = 0) -> None:
        rng = np.random.default_rng(seed)
        yy, xx = np.mgrid[:size, :size]

        def blob(cx, cy, sigma, colour):
            im = np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * sigma**2))
            im = im[None] * np.asarray(colour)[:, None, None]
            return torch.from_numpy(im.astype(np.float32))

        self.items = []
        for _ in range(n):
            c = size / 2
            a = blob(c, c, rng.uniform(2, 4), rng.uniform(0.4, 1, 3))
            dx, dy = rng.uniform(-9, 9, 2)
            b = blob(c + dx, c + dy, rng.uniform(1, 3), rng.uniform(0.4, 1, 3))
            item = {"blend": torch.maximum(a, b), "target_a": a, "target_b": b}
            self.items.append({**item, "index": len(self.items)})  # extra keys are ignored

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> dict:
        return self.items[i]


def tiny(**kw) -> GANTrainConfig:
    """The tiny preset at 32×32, 2 burn-in + 4 adversarial iterations, checkpoints every 3."""
    base = dict(burn_in=2, iterations=4, checkpoint_every=3)
    return GANTrainConfig.preset(
        "tiny", model=DeblenderConfig.preset("tiny", image_size=SIZE), **{**base, **kw}
    )


@pytest.fixture(scope="module")
def data():
    return Blobs(24, seed=0), Blobs(8, seed=1)


def _weights(run, it):
    ck = run / "checkpoints" / f"{it:09d}"
    return {n: read_safetensors(ck / f"{n}.safetensors")[0] for n in "GD"}


def _assert_same(w1, w2):
    for net in "GD":
        assert w1[net].keys() == w2[net].keys()
        for k in w1[net]:
            assert torch.equal(w1[net][k], w2[net][k]), f"{net}.{k}"


def _stats(run):
    return [json.loads(line) for line in (run / "stats.jsonl").read_text().splitlines()]


def test_presets_follow_the_spec():
    paper = GANTrainConfig.preset("paper")
    assert (paper.batch_size, paper.burn_in, paper.iterations) == (16, 2000, 200_000)
    assert paper.checkpoint_every == 1000 and paper.log_every == 100
    assert paper.betas == (0.9, 0.999) and paper.adam_eps == 1e-8 and paper.adv_weight == 1e-3
    assert paper.content == "pixel" and paper.model == DeblenderConfig()
    assert paper.lr_at(0) == paper.lr_at(2000 + 99_999) == 1e-4
    assert paper.lr_at(2000 + 100_000) == paper.lr_at(201_999) == 1e-5
    assert GANTrainConfig.preset("small").model == DeblenderConfig.preset("small")
    with pytest.raises(ValueError, match="unknown GANTrainConfig preset"):
        GANTrainConfig.preset("medium")
    with pytest.raises(ValueError, match="content"):
        GANTrainConfig(content="vgg")
    with pytest.raises(ValueError, match="perceptual"):
        GANTrainConfig(perceptual="resnet")


def test_sampler_is_seeded_and_resumable():
    full = ResumableBatchSampler(10, 3, seed=5)
    it = iter(full)
    batches = [next(it) for _ in range(9)]  # 3 epochs of 3 batches, one example dropped each
    for epoch in range(3):
        seen = sum(batches[3 * epoch:3 * epoch + 3], [])
        assert len(set(seen)) == 9 and set(seen) <= set(range(10))
    assert batches[:3] != batches[3:6]
    resumed = iter(ResumableBatchSampler(10, 3, seed=5, start=4))
    assert [next(resumed) for _ in range(5)] == batches[4:]
    other = iter(ResumableBatchSampler(10, 3, seed=6))
    assert [next(other) for _ in range(3)] != batches[:3]
    with pytest.raises(ValueError, match="larger than the dataset"):
        ResumableBatchSampler(2, 3, seed=0)


def test_run_directory_contents(tmp_path, data):
    train_ds, eval_ds = data
    cfg = tiny()
    result = train(train_ds, tmp_path / "run", cfg, eval_dataset=eval_ds)
    run = tmp_path / "run"
    assert result.iteration == cfg.total_iterations == 6
    assert read_config(GANTrainConfig, run / "config.toml") == cfg
    assert [r.iteration for r in list_checkpoints(run)] == [3, 6]
    lines = _stats(run)
    assert [s["iteration"] for s in lines] == list(range(1, 7))
    assert {"time", "elapsed", "lr", "phase"} <= set(lines[0])
    assert "loss_g_burnin" in lines[0] and lines[0]["phase"] == "burn-in"
    assert {"loss_d", "loss_g", "loss_g_pixel", "loss_g_adv"} <= set(lines[-1])
    assert lines[2]["lr"] == 1e-4 and lines[-1]["lr"] == 1e-5  # drop after 2 of 4 adversarial
    assert set(lines[2]["eval"]) == {"psnr_a", "psnr_b", "psnr", "mse_a", "mse_b"}
    info = json.loads((run / "checkpoints" / "000000006" / "checkpoint.json").read_text())
    assert info["perceptual_backend"] == "multiscale" == result.perceptual_backend
    assert info["metrics"]["psnr_a"] == pytest.approx(lines[-1]["eval"]["psnr_a"])
    assert info["data_hash"] == data_fingerprint(train_ds)
    assert info["config"]["model"]["image_size"] == SIZE
    state = load_resume(run)
    assert state["iteration"] == 6 and state["sampler"]["consumed"] == 2 + 2 * 4
    assert set(state["optimizers"]) == {"D", "G", "G_burnin"}
    # a finished run is a no-op
    again = train(train_ds, run, None)
    assert again.iteration == 6 and len(_stats(run)) == 6


def test_tiny_run_learns(tmp_path, data):
    train_ds, _ = data
    cfg = tiny(
        burn_in=10, iterations=6, lr=2e-3, lr_late=2e-3, checkpoint_every=100, perceptual="pixel"
    )
    train(train_ds, tmp_path / "run", cfg)
    lines = _stats(tmp_path / "run")
    burn = [s["loss_g_burnin"] for s in lines if "loss_g_burnin" in s]
    pixel = [s["loss_g_pixel"] for s in lines if "loss_g_pixel" in s]
    assert len(burn) == 10 and len(pixel) == 6
    assert np.mean(burn[-3:]) < 0.7 * np.mean(burn[:3])
    # burn-in with the pixel backend is MSE on [0, 1]; the pixel loss is on [-1, 1] (4x larger)
    assert np.mean(pixel[-3:]) < 4 * 0.7 * np.mean(burn[:3])
    assert all(np.isfinite(s["loss_d"]) for s in lines if "loss_d" in s)


class _Killer(torch.utils.data.Dataset):
    """Wraps a dataset and raises KeyboardInterrupt after ``budget`` item reads (a kill)."""

    def __init__(self, base, budget):
        self.base, self.budget = base, budget
        self.data_hash = data_fingerprint(base)

    def __len__(self):
        return len(self.base)

    def __getitem__(self, i):
        self.budget -= 1
        if self.budget < 0:
            raise KeyboardInterrupt
        return self.base[i]


def test_resume_is_bit_exact(tmp_path, data):
    train_ds, _ = data
    cfg = tiny()
    train(train_ds, tmp_path / "a", cfg)
    reference = _weights(tmp_path / "a", 6)
    # stopped on purpose between checkpoints (max_iterations), then resumed with config=None
    train(train_ds, tmp_path / "b", cfg, max_iterations=4)
    assert load_resume(tmp_path / "b")["iteration"] == 4
    train(train_ds, tmp_path / "b", None)
    _assert_same(reference, _weights(tmp_path / "b", 6))
    # killed in the middle of iteration 5 (reads: 2 burn-in batches + 2 per adversarial iteration)
    batch = cfg.batch_size
    with pytest.raises(KeyboardInterrupt):
        train(_Killer(train_ds, batch * (2 + 2 * 2) + 3), tmp_path / "c", cfg)
    assert load_resume(tmp_path / "c")["iteration"] == 3
    train(train_ds, tmp_path / "c", cfg)
    _assert_same(reference, _weights(tmp_path / "c", 6))
    # the stats of the lost iteration 4 are rewritten, not duplicated
    assert [s["iteration"] for s in _stats(tmp_path / "c")] == list(range(1, 7))


def test_workers_give_the_same_result(tmp_path, data):
    train_ds, _ = data
    cfg = tiny(burn_in=1, iterations=1)
    train(train_ds, tmp_path / "w0", cfg)
    train(train_ds, tmp_path / "w2", dataclasses.replace(cfg, num_workers=2))
    _assert_same(_weights(tmp_path / "w0", 2), _weights(tmp_path / "w2", 2))


def test_vgg_plus_pixel_content_and_progress(tmp_path, data, capsys):
    train_ds, _ = data
    cfg = tiny(burn_in=0, iterations=2, content="vgg+pixel", checkpoint_every=2)
    result = train(train_ds, tmp_path / "run", cfg, progress=True)
    assert "loss_g_perceptual" in result.stats
    assert "deblender" in capsys.readouterr().err


def test_resume_refuses_other_config_or_data(tmp_path, data):
    train_ds, eval_ds = data
    train(train_ds, tmp_path / "run", tiny(), max_iterations=1)
    with pytest.raises(ValueError, match=r"different config.*batch_size: 4 -> 2"):
        train(train_ds, tmp_path / "run", tiny(batch_size=2))
    with pytest.raises(ValueError, match="fingerprint"):
        train(Blobs(24, seed=9), tmp_path / "run", tiny())
    with pytest.raises(ValueError, match="config.toml does not exist"):
        train(train_ds, tmp_path / "fresh", None)


def test_bad_datasets_raise_clear_errors(tmp_path):
    good = Blobs(6)
    with pytest.raises(ValueError, match=r"shape \(3, 32, 32\).*expects \(3, 80, 80\)"):
        train(good, tmp_path / "r1", GANTrainConfig.preset("tiny"))
    missing = [{"blend": good[0]["blend"], "target_a": good[0]["target_a"]}] * 6
    with pytest.raises(ValueError, match="target_b"):
        train(missing, tmp_path / "r2", tiny())
    with pytest.raises(ValueError, match="larger than the dataset"):
        train(Blobs(3), tmp_path / "r3", tiny())
    with pytest.raises(ValueError, match="empty"):
        train([], tmp_path / "r4", tiny())


def test_new_run_dir_increments(tmp_path):
    first = new_run_dir(tmp_path, "small-deblender")
    second = new_run_dir(tmp_path, "paper-deblender")
    assert first.name == "00000-small-deblender" and second.name == "00001-paper-deblender"


def test_resume_refuses_a_changed_perceptual_backend(tmp_path, data, monkeypatch):
    from galaxai.models.perceptual import PixelFeatures
    from galaxai.train import gan

    train_ds, _ = data
    train(train_ds, tmp_path / "run", tiny(), max_iterations=1)  # stopped inside burn-in
    monkeypatch.setattr(gan, "build_perceptual", lambda *a, **k: PixelFeatures())
    with pytest.raises(ValueError, match=r"perceptual backend 'multiscale'.*'pixel'"):
        train(train_ds, tmp_path / "run", None)


def test_torn_stats_line_is_dropped_on_resume(tmp_path, data):
    train_ds, _ = data
    run = tmp_path / "run"
    train(train_ds, run, tiny(), max_iterations=3)
    with (run / "stats.jsonl").open("a") as fh:
        fh.write('{"iteration": 4, "loss_d": 0.')  # killed while writing
    train(train_ds, run, None)
    assert [s["iteration"] for s in _stats(run)] == list(range(1, 7))


def test_a_locked_run_directory_is_refused_before_anything_is_written(tmp_path, data):
    from galaxai.train.runlock import RunLockedError, run_lock

    train_ds, _ = data
    with run_lock(tmp_path / "run"):  # another trainer (a second open file description)
        with pytest.raises(RunLockedError, match=r"PID \d+ on host .*--run"):
            train(train_ds, tmp_path / "run", tiny())
    assert not (tmp_path / "run" / "stats.jsonl").exists()
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_starting_from_scratch_over_old_checkpoints_is_refused(tmp_path, data):
    train_ds, _ = data
    run = tmp_path / "run"
    train(train_ds, run, tiny(), max_iterations=3)
    (run / "resume.pt").unlink()  # e.g. deleted, or a run written by other code
    before = _weights(run, 3)
    with pytest.raises(ValueError, match=r"run.*holds checkpoints .*3.*another run directory"):
        train(train_ds, run, tiny(seed=1))
    _assert_same(before, _weights(run, 3))
    assert [s["iteration"] for s in _stats(run)] == [1, 2, 3]


def test_resume_refuses_changed_settings_unless_an_extension_is_asked_for(tmp_path, data):
    train_ds, _ = data
    run = tmp_path / "run"
    train(train_ds, run, tiny())  # 2 burn-in + 4 adversarial, lr drop after 2 adversarial
    with pytest.raises(ValueError, match=r"iterations: 4 -> 6.*extend=True"):
        train(train_ds, run, tiny(iterations=6))
    with pytest.raises(ValueError, match=r"seed: 0 -> 1") as refused:
        train(train_ds, run, tiny(iterations=6, seed=1), extend=True)
    assert "extend" not in str(refused.value)  # not a lengthening: no such hint
    with pytest.raises(ValueError, match=r"iterations: 4 -> 3"):
        train(train_ds, run, tiny(iterations=3), extend=True)
    result = train(train_ds, run, tiny(iterations=6), extend=True)
    assert result.iteration == 8
    stats = _stats(run)
    event = [s for s in stats if s.get("event") == "extend"]
    assert event == [{**event[0], "iteration": 6, "iterations_from": 4, "iterations_to": 6,
                      "lr_drop": 2}]
    cfg = read_config(GANTrainConfig, run / "config.toml")
    assert (cfg.iterations, cfg.lr_drop) == (6, 2)
    late = [s["lr"] for s in stats if s["iteration"] > 6 and "lr" in s]
    assert late == [cfg.lr_late, cfg.lr_late]  # the schedule's drop did not move to 3
    # the extended run resumes with its own (recorded) settings
    assert train(train_ds, run, None).iteration == 8


def test_stale_temporary_files_of_interrupted_writes_are_removed_on_the_next_run(tmp_path, data):
    train_ds, _ = data
    run = tmp_path / "run"
    train(train_ds, run, tiny(), max_iterations=3)
    # what a process killed inside atomic_write leaves behind
    stale = [run / ".resume.pt.k1ll3d.tmp", run / "checkpoints" / "000000003" / ".G.safetensors.x.tmp"]
    for path in stale:
        path.write_bytes(b"torn")
    other = run / "explanations" / ".map.fits.y.tmp"  # not the trainer's: left alone
    other.parent.mkdir()
    other.write_bytes(b"someone else's")
    train(train_ds, run, None)
    assert not any(path.exists() for path in stale) and other.exists()


def test_init_from_starts_a_new_run_from_another_runs_weights(tmp_path, data):
    train_set, _ = data
    first = train(train_set, tmp_path / "a", tiny())
    source = first.checkpoint
    # a second run from those weights with a vanishing learning rate stays on them
    cfg = tiny(burn_in=0, iterations=3, lr=1e-12, lr_late=1e-12, seed=7, init_from=str(source))
    second = train(train_set, tmp_path / "b", cfg)
    start = {n: read_safetensors(source / f"{n}.safetensors")[0] for n in "GD"}
    after = _weights(tmp_path / "b", 3)
    for net in "GD":
        for k, v in start[net].items():
            if v.is_floating_point() and "running" not in k:
                torch.testing.assert_close(after[net][k], v, atol=1e-8, rtol=0)
    # without init_from the same seed starts elsewhere
    fresh = train(train_set, tmp_path / "c", tiny(burn_in=0, iterations=3, lr=1e-12,
                                                     lr_late=1e-12, seed=7))
    w = read_safetensors(fresh.checkpoint / "G.safetensors")[0]
    assert any(not torch.allclose(w[k], start["G"][k]) for k in w if w[k].is_floating_point())
    assert read_config(GANTrainConfig, tmp_path / "b" / "config.toml").init_from == str(source)
    assert second.iteration == 3
    with pytest.raises(FileNotFoundError, match="init_from"):
        train(train_set, tmp_path / "d", tiny(init_from=str(tmp_path / "nowhere")))


def test_init_from_a_network_with_another_head_loads_what_fits(tmp_path, data):
    train_set, _ = data
    plain = dict(model=DeblenderConfig.preset("tiny", image_size=SIZE, output_skip=True))
    first = train(train_set, tmp_path / "a", GANTrainConfig.preset(
        "tiny", burn_in=2, iterations=4, checkpoint_every=3, **plain))
    gated = DeblenderConfig.preset("tiny", image_size=SIZE, output_skip=True, skip_gate=True)
    with pytest.warns(UserWarning, match=r"branches\.0\.conv\.bias"):
        second = train(train_set, tmp_path / "b", GANTrainConfig.preset(
            "tiny", model=gated, burn_in=0, iterations=1, checkpoint_every=1, lr=1e-12,
            lr_late=1e-12, init_from=str(first.checkpoint)))
    before = read_safetensors(first.checkpoint / "G.safetensors")[0]
    after = read_safetensors(second.checkpoint / "G.safetensors")[0]
    shared = [k for k in before if k.startswith("shared") and "running" not in k
              and before[k].is_floating_point()]
    assert shared
    for k in shared:
        torch.testing.assert_close(after[k], before[k], atol=1e-8, rtol=0)
    assert after["branches.0.conv.weight"].shape[0] == before["branches.0.conv.weight"].shape[0] + 1


def _outputs_and_targets(seed=0):
    g = torch.Generator().manual_seed(seed)
    outs = [torch.rand(5, 3, 8, 8, generator=g, requires_grad=True) for _ in range(2)]
    # per-image errors spanning two decades, so batch MSE and per-image log-MSE disagree
    scale = torch.logspace(-2, 0, 5).view(5, 1, 1, 1)
    targets = [(o.detach() + scale * torch.randn(o.shape, generator=g)) for o in outs]
    return outs, targets


def test_mse_pixel_loss_is_the_sum_of_branch_mses():
    outs, targets = _outputs_and_targets()
    expected = sum(((o - t) ** 2).mean() for o, t in zip(outs, targets))
    assert torch.allclose(pixel_loss(outs, targets, "mse"), expected)


def test_log_mse_pixel_loss_keeps_the_mse_value_and_follows_the_log_mse_gradient():
    outs, targets = _outputs_and_targets(1)
    loss = pixel_loss(outs, targets, "log-mse")
    per = torch.stack([((o - t) ** 2).mean(dim=(1, 2, 3)) for o, t in zip(outs, targets)])
    assert torch.allclose(loss, per.mean(1).sum())  # same value as the batch MSE
    grads = torch.autograd.grad(loss, outs)
    # reference from the equations: d/dθ of mean(MSE) · Σ_branch mean_i log MSE_i
    reference = per.detach().mean() * torch.log(per).mean(1).sum()
    expected = torch.autograd.grad(reference, outs)
    mse_grads = torch.autograd.grad(pixel_loss(outs, targets, "mse"), outs)
    for got, want, plain in zip(grads, expected, mse_grads):
        assert torch.allclose(got, want, rtol=1e-4, atol=1e-8)
        assert not torch.allclose(got, plain, rtol=1e-2)  # and not the MSE's gradient


def test_pixel_loss_is_a_recorded_setting_and_a_bad_name_is_refused(tmp_path, data):
    with pytest.raises(ValueError, match="pixel_loss"):
        tiny(pixel_loss="l1")
    with pytest.raises(ValueError, match="log-mse"):
        pixel_loss([torch.zeros(1, 1, 2, 2)], [torch.zeros(1, 1, 2, 2)], "l1")
    train_ds, _ = data
    cfg = tiny(burn_in=0, iterations=2, pixel_loss="log-mse", checkpoint_every=2)
    result = train(train_ds, tmp_path / "run", cfg)
    assert read_config(GANTrainConfig, tmp_path / "run" / "config.toml").pixel_loss == "log-mse"
    assert np.isfinite(result.stats["loss_g_pixel"])


def test_loading_into_a_generator_with_coord_channels_starts_as_the_source_network(tmp_path, data):
    from galaxai.models.deblender import build_generator
    from galaxai.train.gan import _load_matching

    train_ds, _ = data
    train(train_ds, tmp_path / "source", tiny(burn_in=0, iterations=2, checkpoint_every=2))
    path = tmp_path / "source" / "checkpoints" / f"{2:09d}" / "G.safetensors"
    old = build_generator(DeblenderConfig.preset("tiny", image_size=SIZE)).eval()
    old.load_state_dict(read_safetensors(path)[0])
    new = build_generator(DeblenderConfig.preset("tiny", image_size=SIZE, coord_channels=True))
    _load_matching(new, path)
    new.eval()
    weight = new.head[0].weight
    assert weight.shape[1] == 5 and not weight[:, 3:].any()
    assert torch.equal(weight[:, :3], old.head[0].weight)
    x = torch.rand(3, 3, SIZE, SIZE)
    for o, n in zip(old(x), new(x)):
        assert torch.allclose(o, n, atol=1e-6)


def test_init_from_takes_a_shipped_models_name(tmp_path):
    from galaxai.models.deblender import build_discriminator, build_generator
    from galaxai.train.checkpoints import SHIPPED_WEIGHTS, read_safetensors
    from galaxai.train.gan import _load_initial_weights

    cfg = DeblenderConfig.preset("small")
    for name, model in (("realsky", "realsky"), ("shipped", "small"), ("small", "small")):
        G, D = build_generator(cfg, seed=3), build_discriminator(cfg, seed=4)
        _load_initial_weights(G, D, name)
        want = read_safetensors(SHIPPED_WEIGHTS / f"deblender_{model}.safetensors")[0]
        assert torch.equal(G.state_dict()["branches.1.conv.weight"], want["branches.1.conv.weight"])
    with pytest.raises(FileNotFoundError, match="realsky"):
        _load_initial_weights(G, D, str(tmp_path / "nowhere"))
