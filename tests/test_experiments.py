"""The phantom-boundary experiment runs end to end on tiny data and records what it measured."""
import json

import numpy as np

from galaxai.data.pool import build_galaxy_pool
from galaxai.data.simulate import SimConfig
from galaxai.data.store import build_store
from galaxai.experiments import phantom_boundary_experiment


def test_phantom_boundary_experiment_tiny(tmp_path):
    tiny = SimConfig.preset("tiny")
    pool = build_galaxy_pool(tmp_path / "pool", 8, seed=1, sim_config=tiny, chunk=8)
    heldout = build_store(tmp_path / "eval", 6, seed=2, sim_config=tiny, chunk=6, test_fraction=1.0)
    result = phantom_boundary_experiment(pool, heldout, tmp_path / "exp", preset="tiny", n_eval=6)
    saved = json.loads((tmp_path / "exp" / "result.json").read_text())
    assert set(saved["runs"]) == {"zero", "noise"}
    for run in saved["runs"].values():
        assert np.isfinite(run["psnr_pooled"])
        labels = [row["images"] for row in run["shortcut"]]
        assert labels == ["clean", "zero band", "noise band"]
        assert all(0.0 <= row["D p(real) mean"] <= 1.0 for row in run["shortcut"])
    # both runs share seed and budget but not padding, so their weights must differ
    assert saved["runs"]["zero"]["checkpoint"] != saved["runs"]["noise"]["checkpoint"]
    assert (tmp_path / "exp" / "report" / "index.html").is_file()
    assert result["iterations"] == 8


def test_rerun_with_other_settings_is_refused_not_silently_resumed(tmp_path):
    import pytest

    tiny = SimConfig.preset("tiny")
    pool = build_galaxy_pool(tmp_path / "pool", 8, seed=1, sim_config=tiny, chunk=8)
    heldout = build_store(tmp_path / "eval", 6, seed=2, sim_config=tiny, chunk=6, test_fraction=1.0)
    phantom_boundary_experiment(pool, heldout, tmp_path / "exp", preset="tiny", n_eval=6)
    # the same call again resumes the finished runs (nothing to do) ...
    again = phantom_boundary_experiment(pool, heldout, tmp_path / "exp", preset="tiny", n_eval=6)
    assert again["iterations"] == 8
    # ... but another budget in the same folder is refused, naming the difference
    with pytest.raises(ValueError, match="iterations"):
        phantom_boundary_experiment(pool, heldout, tmp_path / "exp", preset="tiny", n_eval=6,
                                    iterations=12)
