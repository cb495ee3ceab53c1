"""`galaxai dissect` and `galaxai dissect apply` end to end on a tiny store and checkpoint."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from galaxai.cli import main

SIZE = 32
LAYERS = "root.0,trunk,branch2.0"


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """``(run_dir, store)``: an untrained tiny generator/discriminator and 12 simulated blends."""
    from galaxai.data.blend import BlendConfig
    from galaxai.data.simulate import SimConfig
    from galaxai.data.store import build_store
    from galaxai.models.deblender import DeblenderConfig, build_discriminator, build_generator
    from galaxai.train.checkpoints import save_checkpoint

    root = tmp_path_factory.mktemp("dissect")
    store = build_store(root / "store", 12, seed=5, sim_config=SimConfig.preset("tiny"),
                        blend_config=BlendConfig.preset("paper", out_size=SIZE), chunk=12,
                        test_fraction=1.0)
    cfg = DeblenderConfig.preset("tiny", image_size=SIZE)
    save_checkpoint(root / "run", 1, build_generator(cfg, seed=1), build_discriminator(cfg, seed=2),
                    config={"batch_size": 4})
    return root / "run", store


def _dissect(run, store, out, *extra):
    args = ["dissect", str(run), "--data", str(store), "--out", str(out), "--n", "6",
            "--effect-n", "4", "--ace-epochs", "1", "--gallery-units", "2", "--layers", LAYERS,
            *extra]
    return CliRunner().invoke(main, args, catch_exceptions=False)


def test_dissect_writes_the_tables_and_the_report_and_a_rerun_skips_the_costly_parts(
        tiny, tmp_path, monkeypatch):
    run, store = tiny
    out = tmp_path / "out"
    result = _dissect(run, store, out)
    assert result.exit_code == 0, result.output
    units = pd.read_csv(out / "units.csv")
    assert list(units.columns[:7]) == ["layer", "unit", "threshold", "label", "iou", "iqr",
                                       "interpretable"]
    assert list(dict.fromkeys(units.layer)) == LAYERS.split(",")
    d = (units.layer == "trunk").sum()
    assert d > 4 and len(units) == 3 * d
    concepts = pd.read_csv(out / "concepts.csv")
    assert {"iou", "ace"} == set(concepts.by)
    assert "galaxy_B" in set(concepts[concepts.by == "ace"].concept)
    curves = pd.read_csv(out / "ablation_curves.csv")
    random = curves[curves.kind == "random"]
    assert (random.groupby(["concept", "n"]).size() == 5).all()
    assert set(curves[curves.kind == "top"].ranking) == {"iou", "ace"}
    summary = json.loads((out / "summary.json").read_text())
    assert summary["threshold_blends"] == summary["dissection_blends"] == 6
    assert summary["headline"][0]["random_sets"] == 5
    for name in ("scores", "top", "overlap", "removal", "removal_summary"):
        assert (out / f"artifact_{name}.csv").is_file()
    assert set(pd.read_csv(out / "artifact_top.csv").score) == {"dpsnr", "dlogit", "plrp"}
    html = (out / "report" / "index.html").read_text()
    assert "Unit gallery" in html and "Ablation curves" in html and "Artifact units" in html
    assert len(list((out / "gallery").glob("unit-*.png"))) == 2
    assert (out / "ablation_curves.png").is_file()

    import galaxai.dissect.workflow as workflow

    def costly(*args, **kwargs):
        raise AssertionError("a cached part was computed again")

    for name in ("dissect_units", "ace_alpha", "ablation_curve", "artifact_scores",
                 "artifact_removal"):
        monkeypatch.setattr(workflow, name, costly)
    again = _dissect(run, store, out)
    assert again.exit_code == 0, again.output
    pd.testing.assert_frame_equal(pd.read_csv(out / "units.csv"), units)
    # another set of layers is new work
    with pytest.raises(AssertionError, match="computed again"):
        _dissect(run, store, out, "--layers", "root.0")


def test_apply_renders_before_and_after_with_per_branch_scores(tiny, tmp_path):
    run, store = tiny
    spec = tmp_path / "iv.json"
    spec.write_text(json.dumps({"layer": "branch2.0", "units": list(range(8))}))
    out = tmp_path / "apply"
    result = CliRunner().invoke(main, ["dissect", "apply", str(run), "--intervention", str(spec),
                                       "--data", str(store), "--out", str(out), "--n", "3"],
                                catch_exceptions=False)
    assert result.exit_code == 0, result.output
    effects = pd.read_csv(out / "effects.csv").set_index("concept")
    # a branch-2 intervention reaches only branch B: branch A is bit-identical
    assert effects.loc["galaxy_A", "share_removed"] == 0
    assert effects.loc["galaxy_A", "dpsnr_0"] == 0 and effects.loc["galaxy_B", "dpsnr_0"] == 0
    assert effects.loc["galaxy_B", "share_removed"] != 0
    assert (out / "before_after.png").is_file() and (out / "report" / "index.html").is_file()
    from PIL import Image

    with Image.open(out / "before_after.png") as image:
        w, h = image.size
    assert w > h  # five columns, three rows


@pytest.mark.parametrize("change, words", [
    ({"run": "no-such-run"}, ["RUN", "shipped"]),
    ({"data": "run"}, ["--data", "blend store"]),
    ({"data": "pool"}, ["--data", "galaxy pool", "galaxai data blend"]),
    ({"layer": "nonsense"}, ["nonsense", "root.0"]),
    ({"units": [999]}, ["999"]),
])
def test_bad_input_is_named(tiny, tmp_path, change, words):
    run, store = tiny
    spec = tmp_path / "iv.json"
    spec.write_text(json.dumps({"layer": change.get("layer", "trunk"),
                                "units": change.get("units", [0])}))
    data = {"run": run}.get(change.get("data"), store)
    if change.get("data") == "pool":
        from galaxai.data.pool import build_galaxy_pool
        from galaxai.data.simulate import SimConfig

        data = build_galaxy_pool(tmp_path / "pool", 2, seed=0, sim_config=SimConfig.preset("tiny"),
                                 chunk=2)
    result = CliRunner().invoke(main, ["dissect", "apply", change.get("run", str(run)),
                                       "--intervention", str(spec), "--data", str(data),
                                       "--out", str(tmp_path / "o")])
    assert result.exit_code == 2, result.output
    for w in words:
        assert w in result.output


def test_headline_compares_the_top_set_with_the_random_sets():
    from galaxai.dissect.workflow import headline

    curves = pd.DataFrame({
        "concept": "galaxy_B", "layer": "trunk", "n": [4, 4, 4, 4, 4, 2],
        "kind": ["top", "top", "random", "random", "random", "random"],
        "ranking": ["iou", "ace", "iou", "iou", "iou", "iou"], "units": "0 1 2 3",
        "share_removed": [0.5, 0.7, 0.1, 0.3, -0.1, 0.9]})
    row = headline(curves).iloc[0]
    assert row.share_iou == 0.5 and row.share_ace == 0.7
    assert row.random_mean == pytest.approx(0.1) and row.random_sets == 3
    assert (row.random_min, row.random_max) == (-0.1, 0.3)
    assert np.isfinite(row.random_mean)
