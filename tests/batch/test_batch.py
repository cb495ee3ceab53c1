"""Batch jobs: the local engine against the API, idempotent reruns, bad stamps, Ray = local."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from PIL import Image

import galaxai
from galaxai.batch import read_results, run_batch_job
from galaxai.batch.engines import read_arrays
from galaxai.data.simulate import SimConfig
from galaxai.data.store import BlendStore, build_store


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return build_store(tmp_path_factory.mktemp("b") / "store", 10, seed=3,
                       sim_config=SimConfig.preset("tiny"), chunk=5)


@pytest.fixture(scope="module")
def blends(store):
    return BlendStore(store).to_arrays(names=("blend",))["blend"].transpose(0, 2, 3, 1)


def _catalogue():
    # row 42 does not exist in the 10-row store: recorded as an error, not fatal
    return pd.DataFrame({"row": [0, 1, 2, 42, 4, 5, 6, 7, 8], "mag": np.arange(9) * 0.5})


def test_deblend_writes_the_api_outputs_by_stamp_id_and_records_bad_stamps(store, blends, tmp_path):
    results = run_batch_job("deblend", _catalogue(), store, tmp_path, batch_size=4)
    assert list(results["id"]) == [0, 1, 2, 4, 5, 6, 7, 8, 42]
    assert list(results["mag"]) == [0, 0.5, 1, 2, 2.5, 3, 3.5, 4, 1.5]  # carried through
    bad = results.set_index("id").loc[42]
    assert bad["status"] == "error" and "42" in bad["error"]
    assert (results["status"] == "ok").sum() == 8
    ids, a = read_arrays(tmp_path, "a")
    _, b = read_arrays(tmp_path, "b")
    want_a, want_b = galaxai.deblend(blends[ids])
    np.testing.assert_array_equal(a, want_a)
    np.testing.assert_array_equal(b, want_b)
    np.testing.assert_allclose(results.set_index("id").loc[ids, "flux_a"],
                               want_a.sum((1, 2, 3)), rtol=1e-6)
    assert (tmp_path / "results.parquet").is_file()


def test_a_rerun_skips_finished_stamps_and_redoes_failed_and_unfinished_parts(store, tmp_path):
    run_batch_job("discriminate", _catalogue(), store, tmp_path, batch_size=4)
    parts = tmp_path / "parts"
    before = {p.name: p.stat().st_mtime_ns for p in parts.glob("*.parquet")}
    assert len(before) == 3
    run_batch_job("discriminate", _catalogue(), store, tmp_path, batch_size=4)
    after = {p.name: p.stat().st_mtime_ns for p in parts.glob("*.parquet")}
    # only the failed stamp (id 42) was tried again, as a part of its own
    assert {k: v for k, v in after.items() if k in before} == before
    assert set(after) - set(before) == {"000000000042-000000000042.parquet"}
    # a part whose table is missing (killed before its last write) is redone
    (parts / "000000000004-000000000007.parquet").unlink()
    results = run_batch_job("discriminate", _catalogue(), store, tmp_path, batch_size=4)
    assert sorted(results["id"]) == [0, 1, 2, 4, 5, 6, 7, 8, 42]
    assert list(results.loc[results["status"] == "ok", "id"]) == [0, 1, 2, 4, 5, 6, 7, 8]
    # the to-do list (42, 4, 5, 6, 7 in catalogue order) made the new parts
    assert {p.name for p in parts.glob("*.parquet")} - set(after) == {
        "000000000042-000000000006.parquet", "000000000007-000000000007.parquet"}


def test_explain_and_stamp_files_named_by_path(blends, tmp_path):
    folder = tmp_path / "stamps"
    folder.mkdir()
    for i in range(3):
        Image.fromarray((blends[i] * 255).round().astype(np.uint8)).save(folder / f"s{i}.png")
    (folder / "broken.png").write_bytes(b"not a png")
    cat = pd.DataFrame({"path": ["s0.png", "s1.png", "broken.png", "s2.png"], "name": list("wxyz")})
    results = run_batch_job("explain", cat, folder, tmp_path / "out", batch_size=8)
    assert list(results["status"]) == ["ok", "ok", "error", "ok"]
    assert "broken.png" in results.loc[2, "error"]
    ids, maps = read_arrays(tmp_path / "out", "relevance")
    assert list(ids) == [0, 1, 3] and maps.shape == (3, 80, 80)
    x = np.stack([np.asarray(Image.open(folder / f"s{i}.png"), np.float32) / 255 for i in range(3)])
    # D reads the networks' range [-1, 1]
    attribution = galaxai.explain.polarized_lrp(galaxai.api.discriminator(),
                                                galaxai.api.torch.from_numpy(2 * x.transpose(0, 3, 1, 2) - 1))
    np.testing.assert_allclose(maps, attribution.maps.sum(1).numpy(), rtol=1e-5, atol=1e-7)


def test_a_catalogue_without_row_or_path_is_refused(store, tmp_path):
    with pytest.raises(ValueError, match="'row' column"):
        run_batch_job("deblend", pd.DataFrame({"x": [1]}), store, tmp_path)


@pytest.mark.filterwarnings("ignore::DeprecationWarning:ray.*",
                            "ignore::FutureWarning:ray.*")
def test_ray_engine_gives_the_local_engine_results_bit_for_bit(store, tmp_path):
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        local = run_batch_job("deblend", _catalogue(), store, tmp_path / "local", batch_size=4)
        remote = run_batch_job("deblend", _catalogue(), store, tmp_path / "ray", engine="ray",
                               batch_size=4, actors=2)
    finally:
        ray.shutdown()
    pd.testing.assert_frame_equal(local, remote)
    for name in ("a", "b"):
        ids_l, local_values = read_arrays(tmp_path / "local", name)
        ids_r, remote_values = read_arrays(tmp_path / "ray", name)
        np.testing.assert_array_equal(ids_l, ids_r)
        np.testing.assert_array_equal(local_values, remote_values)


def test_cli_runs_a_batch_job_and_reports_failed_stamps(store, tmp_path):
    from click.testing import CliRunner

    from galaxai.cli import main

    _catalogue().to_parquet(tmp_path / "cat.parquet")
    result = CliRunner().invoke(main, ["batch", "discriminate", "--catalogue",
                                       str(tmp_path / "cat.parquet"), "--stamps", str(store),
                                       "--out", str(tmp_path / "out"), "--batch-size", "4"])
    assert result.exit_code == 0, result.output
    assert "8 stamp(s) done, 1 failed" in result.output
    assert len(read_results(tmp_path / "out")) == 9
    bad = CliRunner().invoke(main, ["batch", "deblend", "--catalogue", str(tmp_path / "cat.parquet"),
                                    "--stamps", str(store), "--out", str(tmp_path / "o2"),
                                    "--engine", "warp"])
    assert bad.exit_code == 2
