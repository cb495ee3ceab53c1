import numpy as np
import pytest
import torch

from galaxai.data import pool as pool_mod
from galaxai.data.blend import BlendConfig
from galaxai.data.pool import BlendStream, GalaxyPool, build_galaxy_pool, chunk_mode
from galaxai.data.simulate import SimConfig, simulate
from galaxai.data.store import StoreError

TINY = SimConfig.preset("tiny")


@pytest.fixture(scope="module")
def tiny_pool(tmp_path_factory):
    return build_galaxy_pool(tmp_path_factory.mktemp("pool") / "p", 6, seed=3, sim_config=TINY, chunk=4)


def test_pool_holds_the_simulator_galaxies(tiny_pool):
    pool = GalaxyPool(tiny_pool)
    ref = simulate(6, seed=3, config=TINY)
    np.testing.assert_array_equal(pool.display, ref.display)
    np.testing.assert_array_equal(pool.noiseless, ref.noiseless)
    assert list(pool.catalogue["pool_index"]) == list(range(6))


def test_interrupted_build_resumes_to_same_bytes(tmp_path, tiny_pool, monkeypatch):
    real = pool_mod._simulate_chunk
    calls = []

    def fail_on_second(args):
        calls.append(args[0])
        if len(calls) == 2:
            raise KeyboardInterrupt("killed")
        return real(args)

    monkeypatch.setattr(pool_mod, "_simulate_chunk", fail_on_second)
    with pytest.raises(KeyboardInterrupt):
        build_galaxy_pool(tmp_path / "p", 6, seed=3, sim_config=TINY, chunk=4)
    with pytest.raises(StoreError, match="not a finished galaxy pool"):
        GalaxyPool(tmp_path / "p")
    monkeypatch.setattr(pool_mod, "_simulate_chunk", real)
    build_galaxy_pool(tmp_path / "p", 6, seed=3, sim_config=TINY, chunk=4)
    np.testing.assert_array_equal(GalaxyPool(tmp_path / "p").display, GalaxyPool(tiny_pool).display)


def test_changed_settings_refused(tmp_path, tiny_pool):
    with pytest.raises(StoreError, match="different settings"):
        build_galaxy_pool(tiny_pool, 6, seed=4, sim_config=TINY, chunk=4)


def test_stream_is_deterministic_and_pairs_differ(tiny_pool):
    pool = GalaxyPool(tiny_pool)
    cfg = BlendConfig.preset("tiny")
    s1, s2 = BlendStream(pool, 50, seed=1, blend_config=cfg), BlendStream(pool, 50, seed=1, blend_config=cfg)
    for i in (0, 7, 49):
        a, b = s1.pair(i)
        assert a != b
        x, y = s1[i], s2[i]
        for key in ("blend", "target_a", "target_b", "fill_mask_b"):
            assert torch.equal(x[key], y[key])
    assert not torch.equal(s1[0]["blend"], s1[1]["blend"])
    item = s1[3]
    # max merge: the blend is the per-channel maximum of the two targets
    torch.testing.assert_close(item["blend"], torch.maximum(item["target_a"], item["target_b"]))
    with pytest.raises(IndexError):
        s1[50]


def test_chunk_mode_share():
    modes = [chunk_mode(c, 0.25) for c in range(40)]
    assert modes.count("cosmos") == 10
    assert all(chunk_mode(c, 0.0) == "parametric" for c in range(10))


def test_reproduction_error_flags_a_pool_from_other_simulator_code(tmp_path, tiny_pool):
    import shutil

    import zarr

    from galaxai.data.pool import reproduction_error

    assert reproduction_error(tiny_pool) == 0.0
    stale = tmp_path / "stale"
    shutil.copytree(tiny_pool, stale)
    display = zarr.open_group(store=str(stale / "galaxies.zarr"), mode="r+")["display"]
    display[0] = display[0] * 0.7  # what an older display stretch would have stored
    expected = float(np.abs(display[0] / 0.7 - display[0]).max())
    assert reproduction_error(stale) == pytest.approx(expected, rel=1e-5)
    with pytest.raises(StoreError, match="not a finished galaxy pool"):
        reproduction_error(tmp_path)


# ------------------------------------------------------------------- real pools and mixtures
@pytest.fixture(scope="module")
def real_pool(tmp_path_factory):
    from galaxai.data.pool import build_real_pool
    from galaxai.data.real import cosmos_frames

    frames = cosmos_frames("test", seed=0)
    return build_real_pool(tmp_path_factory.mktemp("real") / "p", frames, source="cosmos",
                           chunk=8), frames


def test_real_pool_round_trip(real_pool):
    path, frames = real_pool
    pool = GalaxyPool(path)
    np.testing.assert_array_equal(pool.display, frames.display)
    np.testing.assert_array_equal(pool.sky[:, 0], frames.sky_mean)
    assert pool.noiseless is None and pool.source == "cosmos"
    assert pool_mod.reproduction_error(path) is None
    with pytest.raises(StoreError, match="not empty"):
        pool_mod.build_real_pool(path, frames, source="cosmos")


def test_augmented_stream_is_reproducible_and_changes_the_look(real_pool):
    from galaxai.data.augment import DisplayAugment

    pool = GalaxyPool(real_pool[0])
    plain = BlendStream(pool, 100, seed=2)
    aug1 = BlendStream(pool, 100, seed=2, augment=DisplayAugment())
    aug2 = BlendStream(pool, 100, seed=2, augment=DisplayAugment())
    changed = 0
    for i in range(12):
        x, y, z = plain[i], aug1[i], aug2[i]
        assert torch.equal(y["blend"], z["blend"]) and torch.equal(y["target_b"], z["target_b"])
        assert torch.equal(x["fill_mask_b"], y["fill_mask_b"])  # same pair and geometry
        changed += not torch.equal(x["target_a"], y["target_a"])
    assert changed >= 6
    with pytest.raises(ValueError, match="without flux models"):
        BlendStream(pool, 10, seed=0, blend_config=BlendConfig.preset("small", merge="sum"))


def test_mixed_stream_draws_by_weight(tiny_pool, real_pool):
    from galaxai.data.pool import MixedStream

    a = BlendStream(GalaxyPool(tiny_pool), 400, seed=0, blend_config=BlendConfig.preset("tiny"))
    b = BlendStream(GalaxyPool(real_pool[0]), 500, seed=0)
    mix = MixedStream([a, b], [0.25, 0.75], seed=4)
    assert len(mix) == 400
    sources = np.array([mix.source(i) for i in range(400)])
    assert abs((sources == 1).mean() - 0.75) < 0.07
    i = int(np.argmax(sources == 0))
    assert torch.equal(mix[i]["blend"], a[i]["blend"])
    with pytest.raises(ValueError, match="weight per stream"):
        MixedStream([a, b], [1.0], seed=0)


def test_batched_items_equal_items_made_one_by_one(tiny_pool, real_pool):
    from galaxai.data.augment import DisplayAugment
    from galaxai.data.pool import MixedStream

    sim = BlendStream(GalaxyPool(tiny_pool), 64, seed=3, blend_config=BlendConfig.preset("tiny"))
    real = BlendStream(GalaxyPool(real_pool[0]), 64, seed=3, augment=DisplayAugment())
    mix = MixedStream([sim, real], [0.5, 0.5], seed=1)
    indices = [5, 0, 63, 17, 17, 30]
    for stream in (sim, real, mix):
        batch = stream.__getitems__(indices)
        for i, item in zip(indices, batch):
            single = stream[i]
            assert item["index"] == i
            for key in ("blend", "target_a", "target_b", "fill_mask_b"):
                assert torch.equal(item[key], single[key]), key
    loader = torch.utils.data.DataLoader(real, batch_size=4)
    first = next(iter(loader))
    assert torch.equal(first["blend"][2], real[2]["blend"])


def test_stream_noise_padding_passes_the_phantom_boundary_audit(tmp_path):
    """The fast fill (per-galaxy sky statistics, only B's cut warped) must look like sky."""
    from galaxai.diagnose.padding import audit_padding

    pool = GalaxyPool(build_galaxy_pool(tmp_path / "p", 24, seed=5,
                                        sim_config=SimConfig.preset("small"), chunk=12))
    stream = BlendStream(pool, 96, seed=2)
    items = stream.__getitems__(list(range(96)))
    targets = np.stack([it["target_b"].numpy() for it in items])
    masks = np.stack([it["fill_mask_b"].numpy()[0] for it in items])
    assert masks.any(axis=(1, 2)).sum() >= 20
    clean = audit_padding(targets, fill_mask=masks)
    assert not clean.verdict and clean.ks_statistic < 0.25, clean.summary
    # every filled value is one of the unpadded pixels of that stamp's outer 8-px ring
    ring = np.ones((80, 80), dtype=bool)
    ring[8:-8, 8:-8] = False
    for t, m in zip(targets, masks):
        if m.any() and (ring & ~m).sum() >= 16:
            for c in range(3):
                assert np.isin(t[c][m], t[c][ring & ~m]).all()
    zero = BlendStream(pool, 96, seed=2, blend_config=BlendConfig.preset("small", padding="zero"))
    zero_targets = np.stack([it["target_b"].numpy() for it in zero.__getitems__(list(range(96)))])
    assert audit_padding(zero_targets, fill_mask=masks).verdict  # the audit can fail
