"""Tests of galaxai.data.store: layout, determinism, interrupted builds, the torch Dataset."""
import json
import os
import pickle
import signal
import multiprocessing
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
import zarr

from galaxai.data import store as store_mod
from galaxai.data.blend import BlendConfig, make_blends
from galaxai.data.simulate import SimConfig
from galaxai.data.store import (
    ARRAYS,
    BlendStore,
    ChunkShuffleSampler,
    StoreError,
    build_store,
    open_store,
    write_store,
)

SIM = SimConfig.preset("tiny")
BLEND = BlendConfig.preset("paper", out_size=32)
N, CHUNK = 10, 4


def tree_bytes(path: Path) -> dict[str, bytes]:
    """Every file of a store, by relative path."""
    return {str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    path = tmp_path_factory.mktemp("stores") / "ref"
    return build_store(path, N, seed=7, sim_config=SIM, blend_config=BLEND, chunk=CHUNK,
                       test_fraction=0.3)


def test_layout_and_contents(built):
    manifest = json.loads((built / "manifest.json").read_text())
    assert manifest["complete"] and manifest["chunks_done"] == [0, 1, 2]
    assert manifest["n"] == N and manifest["seed"] == 7 and manifest["blend_config"]["padding"] == "zero"
    assert len(manifest["data_hash"]) == 64
    root = zarr.open_group(str(built / "blends.zarr"), mode="r")
    for name in ("blend", "target_a", "target_b"):
        assert root[name].shape == (N, 3, 32, 32) and root[name].dtype == np.float32
    assert root["fill_mask_b"].shape == (N, 1, 32, 32) and root["fill_mask_b"].dtype == bool
    comps = sorted(k for k in root.array_keys() if k.startswith("comp_"))
    assert "comp_a_bulge" in comps and "comp_b_disk" in comps and len(comps) == 10
    ds = BlendStore(built)
    cat = ds.catalogue
    assert cat["index"].tolist() == list(range(N))
    assert set(cat.split) <= {"train", "test"} and cat.chunk.tolist() == [0] * 4 + [1] * 4 + [2] * 2
    assert {"scale", "rotation", "tx", "ty", "filled_fraction", "flux_ratio", "a_bt", "b_bt"} <= set(cat)
    # A and B are galaxies 2lo..2hi-1 of the simulator stream, A first
    assert cat.id_a.tolist()[:4] == [0, 1, 2, 3] and cat.id_b.tolist()[:4] == [4, 5, 6, 7]
    assert (cat.a_index == cat.id_a).all() and (cat.b_index == cat.id_b).all()
    blend = root["blend"][:]
    np.testing.assert_array_equal(blend, np.maximum(root["target_a"][:], root["target_b"][:]))
    mask = root["fill_mask_b"][:]
    np.testing.assert_allclose(cat.filled_fraction, mask.reshape(N, -1).mean(axis=1))


def test_dataset_items_and_modes(built):
    mem = BlendStore(built)
    assert mem.in_memory and len(mem) == N
    item = mem[3]
    assert set(item) == {*ARRAYS, "index"} and item["index"] == 3
    assert item["blend"].dtype == torch.float32 and item["blend"].shape == (3, 32, 32)
    assert item["fill_mask_b"].dtype == torch.bool and item["fill_mask_b"].shape == (1, 32, 32)
    for kwargs in ({"in_memory": False}, {"in_memory": False, "cache_chunks": 2}):
        lazy = BlendStore(built, **kwargs)
        for i in (0, 5, 9, 4):
            for k in ARRAYS:
                assert torch.equal(lazy[i][k], mem[i][k])
    full = BlendStore(built, components=True, in_memory=False)
    assert "comp_b_disk" in full[2] and full[2]["comp_b_disk"].shape == (3, 32, 32)
    assert mem[-1]["index"] == N - 1
    with pytest.raises(IndexError):
        mem[N]
    clone = pickle.loads(pickle.dumps(BlendStore(built, in_memory=False)))
    assert torch.equal(clone[7]["target_b"], mem[7]["target_b"])
    batch = next(iter(torch.utils.data.DataLoader(mem, batch_size=4)))
    assert batch["blend"].shape == (4, 3, 32, 32) and batch["index"].tolist() == [0, 1, 2, 3]
    assert open_store(built).data_hash == mem.manifest["data_hash"]


def test_to_arrays_stacks_the_items(built):
    for kwargs in ({}, {"in_memory": False}):
        test = BlendStore(built, split="test", **kwargs)
        arrays = test.to_arrays()
        assert sorted(arrays) == ["blend", "target_a", "target_b"]
        for k, v in arrays.items():
            np.testing.assert_array_equal(v, np.stack([test[i][k].numpy() for i in range(len(test))]))
        first = BlendStore(built, **kwargs).to_arrays(2, names=("fill_mask_b",))
        assert list(first) == ["fill_mask_b"] and first["fill_mask_b"].shape == (2, 1, 32, 32)
        np.testing.assert_array_equal(first["fill_mask_b"][1], BlendStore(built)[1]["fill_mask_b"])
    assert len(BlendStore(built).to_arrays(10_000)["blend"]) == N
    with pytest.raises(ValueError, match="comp_a_disk.*components=True"):
        BlendStore(built).to_arrays(names=("comp_a_disk",))
    with pytest.raises(ValueError, match="n must be ≥ 0"):
        BlendStore(built).to_arrays(-1)


def test_splits(built):
    train, test = BlendStore(built, split="train"), BlendStore(built, split="test")
    assert len(train) + len(test) == N and len(test) > 0
    assert set(train.indices).isdisjoint(test.indices)
    assert train.data_hash != test.data_hash
    assert (test.catalogue.split == "test").all()
    assert torch.equal(test[0]["blend"], BlendStore(built)[int(test.indices[0])]["blend"])
    with pytest.raises(StoreError, match="no rows with split='valid'"):
        BlendStore(built, split="valid")


def test_chunk_shuffle_sampler(built):
    ds = BlendStore(built, in_memory=False, cache_chunks=1)
    sampler = ChunkShuffleSampler(ds, seed=1)
    order = list(sampler)
    assert sorted(order) == list(range(N))
    chunks = [ds.indices[i] // CHUNK for i in order]
    assert sum(a != b for a, b in zip(chunks, chunks[1:])) == 2  # each chunk visited once
    sampler.set_epoch(1)
    assert sorted(list(sampler)) == list(range(N))


class Interrupt(Exception):
    pass


def test_interrupted_build_resumes_to_identical_bytes(built, tmp_path, monkeypatch):
    """Also the determinism test: the resumed build must equal the uninterrupted one byte for byte."""
    path = tmp_path / "interrupted"
    real = store_mod._write_catalogue
    calls = []

    def flaky(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:  # chunk 1: arrays written, catalogue and manifest not yet
            raise Interrupt("killed")
        return real(*args, **kwargs)

    monkeypatch.setattr(store_mod, "_write_catalogue", flaky)
    with pytest.raises(Interrupt):
        build_store(path, N, seed=7, sim_config=SIM, blend_config=BLEND, chunk=CHUNK, test_fraction=0.3)
    manifest = json.loads((path / "manifest.json").read_text())
    assert manifest["chunks_done"] == [0] and not manifest["complete"]
    with pytest.raises(StoreError, match=r"unfinished build \(1 of 3 chunks\).*same arguments"):
        BlendStore(path)
    # a torn shard file of the chunk in progress must not survive the resume
    shard = path / "blends.zarr" / "target_b" / "c" / "1" / "0" / "0" / "0"
    shard.write_bytes(b"torn")
    monkeypatch.setattr(store_mod, "_write_catalogue", real)
    with pytest.raises(StoreError, match="different settings.*seed"):
        build_store(path, N, seed=8, sim_config=SIM, blend_config=BLEND, chunk=CHUNK, test_fraction=0.3)
    build_store(path, N, seed=7, sim_config=SIM, blend_config=BLEND, chunk=CHUNK, test_fraction=0.3)
    assert tree_bytes(path) == tree_bytes(built)


def _build_reference_args(path):
    torch.set_num_threads(1)
    build_store(path, N, seed=7, sim_config=SIM, blend_config=BLEND, chunk=CHUNK, test_fraction=0.3)


@pytest.mark.skipif(sys.platform == "win32", reason="needs fork and SIGKILL")
def test_killed_process_resumes(built, tmp_path):
    """A real kill (SIGKILL, no clean-up) of a build in a forked child, then resume."""
    path = tmp_path / "killed"
    ctx = multiprocessing.get_context("fork")  # inherits the imports: no start-up cost
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # Python >= 3.12: fork with threads
        proc = ctx.Process(target=_build_reference_args, args=(path,))
        proc.start()
    manifest = path / "manifest.json"
    deadline = time.monotonic() + 120
    try:
        while time.monotonic() < deadline and proc.is_alive():
            if manifest.exists() and json.loads(manifest.read_text())["chunks_done"]:
                break
            time.sleep(0.01)
        assert proc.is_alive(), "the build finished before it could be killed"
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.join()
    done = json.loads(manifest.read_text())
    assert not done["complete"] and done["chunks_done"]
    build_store(path, N, seed=7, sim_config=SIM, blend_config=BLEND, chunk=CHUNK, test_fraction=0.3)
    assert tree_bytes(path) == tree_bytes(built)


def test_write_store_from_batch(tmp_path):
    rng = np.random.default_rng(0)
    frames = rng.random((6, 64, 64, 3)).astype(np.float32)
    batch = make_blends(frames[:3], frames[3:], seed=0, config=BlendConfig.preset("paper"))
    path = write_store(tmp_path / "real", batch, split="test", chunk=2, metadata={"source": "fixture"})
    ds = BlendStore(path, split="test")
    assert len(ds) == 3 and ds.manifest["metadata"] == {"source": "fixture"}
    for i in range(3):
        np.testing.assert_array_equal(ds[i]["blend"].numpy(), batch.blend[i])
        np.testing.assert_array_equal(ds[i]["fill_mask_b"].numpy(), batch.fill_mask_b[i])
    assert ds.catalogue.scale.tolist() == batch.catalogue.scale.tolist()
    with pytest.raises(StoreError, match="already exists.*overwrite=True"):
        write_store(path, batch)
    write_store(path, batch, split=["train", "test", "train"], overwrite=True)
    assert len(BlendStore(path, split="train")) == 2
    assert [p.name for p in tmp_path.iterdir()] == ["real"]  # no temporary debris
    with pytest.raises(StoreError, match="written by write_store"):
        build_store(path, 3, seed=0, sim_config=SIM, blend_config=BLEND)
    with pytest.raises(ValueError, match="one label or 3 labels"):
        write_store(tmp_path / "x", batch, split=["train"])


def test_not_a_store_errors(tmp_path):
    with pytest.raises(StoreError, match=r"nowhere is not a blend store.*build_store"):
        BlendStore(tmp_path / "nowhere")
    (tmp_path / "plain").mkdir()
    with pytest.raises(StoreError, match=r"plain is not a blend store \(no manifest.json\).*build_store"):
        BlendStore(tmp_path / "plain")
    (tmp_path / "plain" / "notes.txt").write_text("mine")
    with pytest.raises(StoreError, match="exists and is not a galaxai blend store"):
        build_store(tmp_path / "plain", 4, seed=0, sim_config=SIM, blend_config=BLEND)
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "manifest.json").write_text("{not json")
    with pytest.raises(StoreError, match="unreadable"):
        BlendStore(tmp_path / "bad")
    with pytest.raises(ValueError, match="n must be a positive integer"):
        build_store(tmp_path / "zero", 0, seed=0)


def _copy(built, tmp_path):
    import shutil

    return Path(shutil.copytree(built, tmp_path / "copy"))


def test_a_lost_chunk_file_is_refused_on_open_and_rebuilt_exactly(built, tmp_path):
    path = _copy(built, tmp_path)
    lost = path / "blends.zarr" / "target_b" / "c" / "1" / "0" / "0" / "0"
    lost.unlink()  # would read as zeros
    for verify in (False, True):
        with pytest.raises(StoreError, match=r"copy: chunk 1 \(rows 4–7\) .*lost its Zarr file.*"
                           r"target_b.*forget_chunks\(.*\[1\]\).*build_store"):
            BlendStore(path, verify=verify)
    store_mod.forget_chunks(path, [1])
    with pytest.raises(StoreError, match="unfinished build"):
        BlendStore(path)
    build_store(path, N, seed=7, sim_config=SIM, blend_config=BLEND, chunk=CHUNK,
                test_fraction=0.3)
    assert tree_bytes(path) == tree_bytes(built)


def test_chunks_of_fill_values_only_have_no_file_and_are_fine(built):
    # zarr writes no file for an all-zero chunk: such chunks verify against their hash
    empty = [p for p in (built / "blends.zarr").glob("comp_*")
             if not (p / "c").exists() or len(list((p / "c").iterdir())) < -(-N // CHUNK)]
    assert empty, "the fixture has component arrays with chunks of zeros"
    assert len(BlendStore(built, verify=True).to_arrays()["blend"]) == N


def test_changed_bytes_are_caught_when_verifying(built, tmp_path):
    path = _copy(built, tmp_path)
    shard = path / "blends.zarr" / "target_a" / "c" / "1" / "0" / "0" / "0"
    data = bytearray(shard.read_bytes())
    data[len(data) // 2] ^= 0xFF
    shard.write_bytes(bytes(data))
    BlendStore(path, in_memory=False)  # every file is there: it opens
    with pytest.raises(StoreError, match=r"copy: chunk 1 \(rows 4–7\) (does not match its hash|"
                                         r"cannot be decoded).*forget_chunks"):
        BlendStore(path, verify=True).to_arrays()
    with pytest.raises(StoreError, match="chunk 1"):
        BlendStore(path, in_memory=False, verify=True)[int(np.argmax(
            BlendStore(path, in_memory=False).indices >= 4))]
    only_chunk_0 = BlendStore(path, in_memory=False, verify=True).to_arrays(4)["blend"]
    np.testing.assert_array_equal(only_chunk_0, BlendStore(built).to_arrays(4)["blend"])


def test_store_and_source_errors_share_one_data_error_base(tmp_path):
    from galaxai.data import DataError
    from galaxai.data.real import ReservedDataError
    from galaxai.data.sources import SourceError, read_fits_stamp

    assert issubclass(StoreError, DataError) and issubclass(SourceError, DataError)
    assert issubclass(ReservedDataError, DataError) and issubclass(DataError, ValueError)
    with pytest.raises(DataError, match="does not exist"):
        read_fits_stamp(tmp_path / "missing.fits")
