"""Tests of the public ``deblend`` call."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from galaxai import api
from galaxai.api import deblend
from galaxai.models.deblender import DeblenderConfig, build_discriminator, build_generator
from galaxai.train.checkpoints import export_generator, save_checkpoint

CFG = DeblenderConfig.preset("tiny", image_size=32)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    g, d = build_generator(CFG, seed=0), build_discriminator(CFG)
    g.train()(torch.rand(4, 3, 32, 32))  # non-trivial BN running statistics
    run = tmp_path_factory.mktemp("run")
    return save_checkpoint(run, 10, g, d, config_digest="x"), g.eval()


def _blends(n=5, seed=0):
    return np.random.default_rng(seed).random((n, 32, 32, 3), dtype=np.float64).astype(np.float32)


def test_numpy_shapes_range_and_values(checkpoint):
    path, g = checkpoint
    x = _blends()
    a, b = deblend(x, checkpoint=path, device="cpu")
    assert isinstance(a, np.ndarray) and a.dtype == np.float32
    assert a.shape == b.shape == x.shape
    assert a.min() >= 0 and a.max() <= 1 and b.min() >= 0 and b.max() <= 1
    with torch.no_grad():
        g1, g2 = g(torch.from_numpy(x).permute(0, 3, 1, 2))
    np.testing.assert_allclose(a, ((g1 + 1) / 2).permute(0, 2, 3, 1).numpy(), atol=1e-6)
    np.testing.assert_allclose(b, ((g2 + 1) / 2).permute(0, 2, 3, 1).numpy(), atol=1e-6)


def test_batching_single_image_and_torch_input(checkpoint):
    path, _ = checkpoint
    x = _blends(5, seed=1)
    a, b = deblend(x, checkpoint=path, batch_size=64)
    a2, b2 = deblend(x, checkpoint=path, batch_size=2)
    np.testing.assert_allclose(a, a2, atol=1e-6)
    np.testing.assert_allclose(b, b2, atol=1e-6)
    one_a, one_b = deblend(x[0], checkpoint=path)
    assert one_a.shape == (32, 32, 3)
    np.testing.assert_allclose(one_a, a[0], atol=1e-6)
    ta, tb = deblend(torch.from_numpy(x), checkpoint=path)
    assert isinstance(ta, torch.Tensor) and ta.shape == x.shape and ta.dtype == torch.float32
    np.testing.assert_allclose(ta.numpy(), a, atol=1e-6)
    x64 = x.astype(np.float64)
    np.testing.assert_allclose(deblend(x64, checkpoint=path)[0], a, atol=1e-6)
    empty_a, _ = deblend(np.zeros((0, 32, 32, 3), np.float32), checkpoint=path)
    assert empty_a.shape == (0, 32, 32, 3)


def test_checkpoint_forms(checkpoint, tmp_path):
    path, _ = checkpoint
    x = _blends(2)
    ref, _ = deblend(x, checkpoint=path)
    np.testing.assert_array_equal(deblend(x, checkpoint=path / "G.safetensors")[0], ref)
    exported = export_generator(path, tmp_path / "deblender_small")
    np.testing.assert_array_equal(deblend(x, checkpoint=exported)[0], ref)


@pytest.mark.parametrize(
    "bad,match",
    [
        (np.zeros((2, 3, 32, 32), np.float32), r"\(N, H, W, 3\)"),
        (np.zeros((32, 32), np.float32), r"\(N, H, W, 3\)"),
        (np.zeros((2, 32, 32, 3), np.uint8), "dtype uint8.*255"),
        (torch.zeros((2, 32, 32, 3), dtype=torch.int64), "dtype torch.int64"),
        (np.full((2, 32, 32, 3), np.nan, np.float32), "NaN"),
        (np.full((2, 32, 32, 3), 2.0, np.float32), r"\[0, 1\]"),
        (np.full((2, 32, 32, 3), -0.5, np.float32), r"\[0, 1\]"),
        (np.array([["a"]], dtype=object), "dtype object"),
    ],
)
def test_bad_input_raises_clear_value_errors(checkpoint, bad, match):
    with pytest.raises(ValueError, match=match):
        deblend(bad, checkpoint=checkpoint[0])


def test_bad_arguments_and_missing_checkpoints(checkpoint, tmp_path, monkeypatch):
    with pytest.raises(ValueError, match="batch_size"):
        deblend(_blends(1), checkpoint=checkpoint[0], batch_size=0)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        deblend(_blends(1), checkpoint=tmp_path / "missing")
    monkeypatch.setattr(api, "DEFAULT_WEIGHTS", tmp_path / "weights" / "deblender_small.safetensors")
    with pytest.raises(FileNotFoundError, match=r"default model.*galaxai export RUN --name"):
        deblend(_blends(1))


def test_batch_statistics_normalise_by_the_pass_and_leave_the_model_alone(checkpoint):
    import copy

    path, g = checkpoint
    x = _blends(n=6, seed=3)
    stored = [b.clone() for b in api.generator(path, "cpu").buffers()]
    a, b = deblend(x, checkpoint=path, device="cpu", batch_statistics=True, batch_size=3)
    # reference: a train-mode copy normalises each pass by its own batch statistics
    ref = copy.deepcopy(g).train()
    with torch.no_grad():
        outs = [ref(torch.from_numpy(c).permute(0, 3, 1, 2)) for c in (x[:3], x[3:])]
    ref_a = torch.cat([(o[0] + 1) / 2 for o in outs]).clamp(0, 1).permute(0, 2, 3, 1).numpy()
    np.testing.assert_allclose(a, ref_a, atol=1e-5)
    running, _ = deblend(x, checkpoint=path, device="cpu")
    assert np.abs(running - a).max() > 1e-3  # running statistics give different outputs
    after = list(api.generator(path, "cpu").buffers())
    assert all(torch.equal(s, t) for s, t in zip(stored, after))


def _dihedral_mean(fn, x):
    """Mean of the eight rotated/mirrored runs of ``fn`` on channel-last ``x``, written with NumPy."""
    total = None
    for turns in range(4):
        for mirror in (False, True):
            y = np.rot90(x, turns, axes=(1, 2))
            y = y[:, :, ::-1] if mirror else y
            outs = fn(np.ascontiguousarray(y))
            back = []
            for o in outs:
                o = o[:, :, ::-1] if mirror else o
                back.append(np.rot90(o, -turns, axes=(1, 2)))
            total = back if total is None else [t + b for t, b in zip(total, back)]
    return [t / 8 for t in total]


def test_self_ensemble_averages_the_eight_symmetries(checkpoint):
    path, _ = checkpoint
    x = _blends(3, seed=4)
    plain = deblend(x, checkpoint=path)
    a, b = deblend(x, checkpoint=path, self_ensemble=True)
    # reference: the network's raw [-1, 1] outputs averaged, then mapped and clipped once
    g = api.generator(path, "cpu")

    def raw(y):
        with torch.no_grad():
            return [o.permute(0, 2, 3, 1).numpy() for o in g(torch.from_numpy(y).permute(0, 3, 1, 2))]

    ref_a, ref_b = (np.clip((m + 1) / 2, 0, 1) for m in _dihedral_mean(raw, x))
    np.testing.assert_allclose(a, ref_a, atol=1e-5)
    np.testing.assert_allclose(b, ref_b, atol=1e-5)
    assert np.abs(a - plain[0]).max() > 1e-3  # an untrained network is far from equivariant


def test_self_ensemble_follows_the_sidecar_unless_told(checkpoint, tmp_path):
    from galaxai.train.checkpoints import export_network, read_checkpoint_info

    path, _ = checkpoint
    x = _blends(2, seed=5)
    on = export_network(path, tmp_path / "deblender_se", "G", inference={"self_ensemble": True})
    assert read_checkpoint_info(on.with_suffix(".json"))["inference"] == {"self_ensemble": True}
    off = export_network(path, tmp_path / "deblender_plain", "G")
    assert "inference" not in read_checkpoint_info(off.with_suffix(".json"))
    ensembled = deblend(x, checkpoint=path, self_ensemble=True)[0]
    plain = deblend(x, checkpoint=path)[0]
    np.testing.assert_array_equal(deblend(x, checkpoint=on)[0], ensembled)
    np.testing.assert_array_equal(deblend(x, checkpoint=on, self_ensemble=False)[0], plain)
    np.testing.assert_array_equal(deblend(x, checkpoint=off)[0], plain)
    with pytest.raises(ValueError, match="generator"):
        export_network(path, tmp_path / "discriminator_se", "D", inference={"self_ensemble": True})


def test_evaluation_deblenders_pass_the_self_ensemble_choice_on(checkpoint):
    from galaxai.workflows import deblenders_for

    path, _ = checkpoint
    x = _blends(2, seed=6)
    methods = deblenders_for(path, classical=False, self_ensemble=True)
    assert sorted(methods) == ["GAN (galaxai)", "GAN, batch-statistic BN (check)"]
    np.testing.assert_array_equal(methods["GAN (galaxai)"](x)[0],
                                  deblend(x, checkpoint=path, self_ensemble=True)[0])
    np.testing.assert_array_equal(
        methods["GAN, batch-statistic BN (check)"](x)[0],
        deblend(x, checkpoint=path, self_ensemble=True, batch_statistics=True)[0])
    one_pass = deblenders_for(path, classical=False, self_ensemble=False)["GAN (galaxai)"](x)[0]
    np.testing.assert_array_equal(one_pass, deblend(x, checkpoint=path)[0])
