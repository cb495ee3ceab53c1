"""Tests of checkpoint files: safetensors + sidecar, validation, listing, resume state."""
from __future__ import annotations

import json
import random

import numpy as np
import pytest
import torch
from safetensors import safe_open

from galaxai.models.deblender import DeblenderConfig, build_discriminator, build_generator
from galaxai.train.checkpoints import (
    RESUME_FILE,
    capture_rng_state,
    checkpoint_dir,
    export_generator,
    export_network,
    latest_checkpoint,
    list_checkpoints,
    load_discriminator,
    load_generator,
    load_resume,
    load_state,
    read_checkpoint_info,
    restore_rng_state,
    save_checkpoint,
    save_resume,
)

CFG = DeblenderConfig.preset("tiny", image_size=32)


def _save(run, iteration, seed=0, **kw):
    g, d = build_generator(CFG, seed=seed), build_discriminator(CFG, seed=seed + 1)
    # make BN buffers non-trivial so that they are checked too
    g.train()(torch.rand(2, 3, 32, 32))
    path = save_checkpoint(
        run, iteration, g, d, config={"batch_size": 4}, config_digest="abc123", data_hash="data42",
        metrics={"psnr_a": 20.5}, perceptual_backend="multiscale", **kw,
    )
    return path, g, d


def test_layout_metadata_and_sidecar(tmp_path):
    path, g, _ = _save(tmp_path, 1000)
    assert path == tmp_path / "checkpoints" / "000001000" == checkpoint_dir(tmp_path, 1000)
    assert sorted(p.name for p in path.iterdir()) == ["D.safetensors", "G.safetensors", "checkpoint.json"]
    with safe_open(str(path / "G.safetensors"), framework="pt") as fh:
        meta = fh.metadata()
    assert meta["iteration"] == "1000" and meta["config_hash"] == "abc123"
    assert meta["galaxai_network"] == "G"
    assert json.loads(meta["model_config"])["g_filters"] == CFG.g_filters
    info = read_checkpoint_info(path)
    assert info["iteration"] == 1000
    assert info["config"] == {"batch_size": 4}
    assert info["data_hash"] == "data42"
    assert info["metrics"] == {"psnr_a": 20.5}
    assert info["perceptual_backend"] == "multiscale"
    assert info["code_version"] and info["model_config"]["image_size"] == 32
    assert not list(path.glob(".*tmp"))  # atomic writes leave no temporaries


def test_round_trip_is_bit_exact_including_buffers(tmp_path):
    path, g, d = _save(tmp_path, 5)
    g2, info = load_generator(path)
    d2, _ = load_discriminator(path)
    assert not g2.training and info["iteration"] == 5
    for a, b in ((g, g2), (d, d2)):
        sa, sb = a.state_dict(), b.state_dict()
        assert sa.keys() == sb.keys()
        for k in sa:
            assert torch.equal(sa[k], sb[k]), k
    assert g.shared[0].bn1.running_mean.abs().sum() > 0
    # a lone G.safetensors (no sidecar) is loadable from its header alone
    lone = tmp_path / "lone.safetensors"
    lone.write_bytes((path / "G.safetensors").read_bytes())
    g3, info3 = load_generator(lone)
    assert info3 == {} and torch.equal(g3.head[0].weight, g.head[0].weight)


def test_listing_skips_incomplete_directories(tmp_path):
    assert list_checkpoints(tmp_path) == [] and latest_checkpoint(tmp_path) is None
    for it in (2000, 1000, 3000):
        _save(tmp_path, it)
    incomplete = checkpoint_dir(tmp_path, 4000)
    incomplete.mkdir()
    (incomplete / "G.safetensors").write_bytes(b"")
    (tmp_path / "checkpoints" / "notes").mkdir()
    refs = list_checkpoints(tmp_path)
    assert [r.iteration for r in refs] == [1000, 2000, 3000]
    assert latest_checkpoint(tmp_path).path == checkpoint_dir(tmp_path, 3000)


def test_other_architecture_names_mismatching_tensors(tmp_path):
    path, _, _ = _save(tmp_path, 1)
    wide = build_generator(DeblenderConfig.preset("tiny", g_filters=16))
    with pytest.raises(ValueError, match=r"another architecture.*head\.0\.weight"):
        load_state(wide, path / "G.safetensors")
    deeper = build_generator(DeblenderConfig.preset("tiny", image_size=32, n_shared=2))
    with pytest.raises(ValueError, match=r"missing: shared\.1\."):
        load_state(deeper, path / "G.safetensors")
    with pytest.raises(ValueError, match="unexpected"):
        load_state(build_generator(CFG), path / "D.safetensors")


def test_truncated_and_missing_files_give_clear_errors(tmp_path):
    path, _, _ = _save(tmp_path, 1)
    weights = path / "G.safetensors"
    data = weights.read_bytes()
    weights.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match=r"G\.safetensors.*truncated"):
        load_generator(path)
    (path / "D.safetensors").unlink()
    with pytest.raises(FileNotFoundError, match=r"D\.safetensors"):
        load_discriminator(path)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_generator(tmp_path / "nowhere")
    (path / "checkpoint.json").write_text("{broken")
    with pytest.raises(ValueError, match="checkpoint.json"):
        read_checkpoint_info(path)


def test_export_generator_writes_weights_and_sidecar(tmp_path):
    path, g, _ = _save(tmp_path / "run", 7)
    out = export_generator(path, tmp_path / "weights" / "deblender_small")
    assert out.name == "deblender_small.safetensors"
    sidecar = json.loads((tmp_path / "weights" / "deblender_small.json").read_text())
    assert sidecar["iteration"] == 7 and sidecar["model_config"]["image_size"] == 32
    g2, info = load_generator(out)
    assert info["iteration"] == 7
    assert torch.equal(g2.branches[1].conv.weight, g.branches[1].conv.weight)


def test_export_discriminator_round_trips_and_rejects_unknown_network(tmp_path):
    path, _, d = _save(tmp_path / "run", 9)
    out = export_network(path, tmp_path / "weights" / "discriminator_small", "D")
    d2, info = load_discriminator(out)
    assert info["iteration"] == 9
    for (name, p1), (_, p2) in zip(d.state_dict().items(), d2.state_dict().items()):
        assert torch.equal(p1, p2), name
    with pytest.raises(ValueError, match="'G' or 'D'"):
        export_network(path, tmp_path / "x", "E")


def test_rng_state_round_trip_through_resume_file(tmp_path):
    torch.manual_seed(1)
    np.random.seed(2)
    random.seed(3)
    opt = torch.optim.Adam(build_generator(CFG).parameters(), lr=1e-4)
    state = {"iteration": 4, "rng": capture_rng_state(), "optimizers": {"G": opt.state_dict()}}
    expected = (torch.rand(3), np.random.rand(3), [random.random() for _ in range(3)])
    save_resume(tmp_path, state)
    loaded = load_resume(tmp_path)
    assert loaded["iteration"] == 4
    restore_rng_state(loaded["rng"])
    assert torch.equal(torch.rand(3), expected[0])
    np.testing.assert_array_equal(np.random.rand(3), expected[1])
    assert [random.random() for _ in range(3)] == expected[2]
    opt.load_state_dict(loaded["optimizers"]["G"])


class _Evil:
    def __reduce__(self):
        return (print, ("unpickled!",))


def test_resume_file_is_never_unpickled(tmp_path):
    assert load_resume(tmp_path) is None
    torch.save({"format": "galaxai-resume-v1", "payload": _Evil()}, tmp_path / RESUME_FILE)
    with pytest.raises(ValueError, match="cannot be read safely"):
        load_resume(tmp_path)
    torch.save({"something": 1}, tmp_path / RESUME_FILE)
    with pytest.raises(ValueError, match="not a galaxai resume file"):
        load_resume(tmp_path)


def test_export_records_every_fine_tuning_stage_of_its_lineage(tmp_path, monkeypatch):
    def stage(run, iteration, init_from, recipe):
        g, d = build_generator(CFG), build_discriminator(CFG)
        (tmp_path / run).mkdir()
        (tmp_path / run / "data.json").write_text(json.dumps(recipe))
        return save_checkpoint(tmp_path / run, iteration, g, d, config={"init_from": init_from},
                               config_digest=run, data_hash="h", metrics={})

    monkeypatch.chdir(tmp_path)  # init_from paths are relative to where the runs were started
    first = stage("first", 5, "shipped", {"data": ["pool"]})
    second = stage("second", 7, str(first.relative_to(tmp_path)), {"data": ["real"]})
    last = stage("last", 9, str(second.relative_to(tmp_path)), {"data": ["both"]})
    export_generator(last, tmp_path / "out" / "deblender_x")
    sidecar = json.loads((tmp_path / "out" / "deblender_x.json").read_text())
    assert sidecar["data_recipe"] == {"data": ["both"]}
    stages = sidecar["lineage"]
    assert [s["iteration"] for s in stages[:2]] == [7, 5]
    assert [s["data_recipe"] for s in stages[:2]] == [{"data": ["real"]}, {"data": ["pool"]}]
    # the walk ends at the shipped model, whose own sidecar was made from scratch
    assert stages[2]["checkpoint"] == "shipped" and "init_from" not in stages[2]["config"]
    assert len(stages) == 3
    # a stage that cannot be read ends the lineage with the reason
    lost = stage("lost", 3, "gone/checkpoints/000000001", {})
    export_generator(lost, tmp_path / "out" / "deblender_y")
    sidecar = json.loads((tmp_path / "out" / "deblender_y.json").read_text())
    assert sidecar["lineage"][0]["checkpoint"] == "gone/checkpoints/000000001"
    assert "does not exist" in sidecar["lineage"][0]["unresolved"]
