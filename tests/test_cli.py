"""The `galaxai` command end to end on tiny data (click's CliRunner, no subprocess)."""
import json

import numpy as np
import pandas as pd
import pytest
from astropy.io import fits
from click.testing import CliRunner

from galaxai.cli import main
from galaxai.data.simulate import SimConfig, simulate


@pytest.fixture(scope="module")
def runner():
    return CliRunner()


def test_data_simulate_writes_fits_cubes_matching_the_simulator(runner, tmp_path):
    result = runner.invoke(main, ["data", "simulate", "--n", "3", "--seed", "5", "--preset", "tiny",
                                  "--out", str(tmp_path / "gal")])
    assert result.exit_code == 0, result.output
    catalogue = pd.read_parquet(tmp_path / "gal" / "catalogue.parquet")
    assert len(catalogue) == 3
    expected = simulate(3, seed=5, config=SimConfig.preset("tiny"))
    cube = fits.getdata(tmp_path / "gal" / catalogue["file"][1])
    np.testing.assert_array_equal(cube, expected.flux[1])
    assert fits.getheader(tmp_path / "gal" / catalogue["file"][1])["GXINDEX"] == 1


@pytest.mark.parametrize("padding, code", [("zero", 1), ("noise", 0)])
def test_audit_exit_code_gates_on_zero_padding(runner, tmp_path, padding, code):
    store = tmp_path / f"blends_{padding}"
    result = runner.invoke(main, ["data", "blend", "--n", "24", "--seed", "1", "--preset", "tiny",
                                  "--padding", padding, "--out", str(store), "--chunk", "12"])
    assert result.exit_code == 0, result.output
    manifest = json.loads((store / "manifest.json").read_text())
    assert manifest["complete"] and manifest["blend_config"]["padding"] == padding
    result = runner.invoke(main, ["audit", str(store)])
    assert result.exit_code == code, result.output
    assert ("PROBLEM FOUND" in result.output) == (code == 1)


def test_bad_store_path_is_a_clear_error(runner, tmp_path):
    (tmp_path / "empty").mkdir()
    result = runner.invoke(main, ["evaluate", "--data", str(tmp_path / "empty"), "--out", str(tmp_path / "o")])
    assert result.exit_code != 0
    assert "empty" in str(result.exception) or "empty" in result.output


def test_real_pool_blend_store_and_mixed_augmented_training(runner, tmp_path):
    """data pool/blend --source cosmos, then train on a simulated + real mix with --augment."""
    from galaxai.data.pool import GalaxyPool
    from galaxai.data.store import BlendStore

    real = tmp_path / "real_pool"
    result = runner.invoke(main, ["data", "pool", "--source", "cosmos", "--split", "test",
                                  "--copies", "1", "--out", str(real)])
    assert result.exit_code == 0, result.output
    pool = GalaxyPool(real)
    assert len(pool) == 20 and pool.source == "cosmos" and pool.noiseless is None
    store = tmp_path / "real_store"
    result = runner.invoke(main, ["data", "blend", "--source", "cosmos", "--split", "test",
                                  "--n", "12", "--merge", "sum", "--out", str(store)])
    assert result.exit_code == 0, result.output
    held_out = BlendStore(store, split="test")
    assert len(held_out) == 12
    assert set(held_out.catalogue["merge"]) == {"sum"}
    sim = tmp_path / "sim_pool"
    result = runner.invoke(main, ["data", "pool", "--n", "8", "--preset", "tiny", "--chunk", "4",
                                  "--workers", "1", "--cosmos-fraction", "0", "--out", str(sim)])
    assert result.exit_code == 0, result.output
    result = runner.invoke(main, ["data", "pool", "--source", "simulated", "--source", "hdf",
                                  "--out", str(tmp_path / "x")])
    assert result.exit_code == 2 and "separately" in result.output
    # the real pool's frames are 142 px like the small simulator's; train the tiny network on it
    run = tmp_path / "run"
    result = runner.invoke(main, ["train", "--data", str(real), "--data", str(real),
                                  "--data-weight", "1", "--data-weight", "3", "--augment", "full",
                                  "--preset", "tiny", "--run", str(run), "--iterations", "2",
                                  "--burn-in", "0"])
    assert result.exit_code == 0, result.output
    stats = [json.loads(line) for line in (run / "stats.jsonl").read_text().splitlines()]
    assert stats[-1]["iteration"] == 2
    recipe = json.loads((run / "data.json").read_text())
    assert [d["source"] for d in recipe["data"]] == ["cosmos", "cosmos"]
    assert recipe["weights"] == [1.0, 3.0] and recipe["augment"]["p_sum"] == 0.5
    result = runner.invoke(main, ["export", str(run), "--dest", str(tmp_path / "shipped")])
    assert result.exit_code == 0, result.output
    sidecar = json.loads((tmp_path / "shipped" / "deblender_small.json").read_text())
    assert sidecar["data_recipe"] == recipe and "inference" not in sidecar
    result = runner.invoke(main, ["export", str(run), "--dest", str(tmp_path / "shipped"),
                                  "--name", "se", "--self-ensemble"])
    assert result.exit_code == 0, result.output
    sidecar = json.loads((tmp_path / "shipped" / "deblender_se.json").read_text())
    assert sidecar["inference"] == {"self_ensemble": True}
    assert "inference" not in json.loads((tmp_path / "shipped" / "discriminator_se.json").read_text())
    result = runner.invoke(main, ["train", "--data", str(real), "--data-weight", "1",
                                  "--data-weight", "2", "--preset", "tiny",
                                  "--run", str(tmp_path / "run2")])
    assert result.exit_code == 2 and "--data-weight" in result.output
