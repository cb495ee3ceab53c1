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
