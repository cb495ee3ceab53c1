"""train → saliency → bars on a tiny Kaggle-layout fixture, through the CLI and the library."""
import json

import numpy as np
import pandas as pd
import pytest
import torch
from click.testing import CliRunner
from galaxy_zoo_layout import galaxy_rgb, write_kaggle_layout

import galaxai.data
import galaxai.morphology
import galaxai.morphology.classifier_runs
from galaxai.cli import main
from galaxai.data.sources import read_jpeg
from galaxai.explain import smoothgrad
from galaxai.models.morphology import GZ_COLUMNS, gz_column_index
from galaxai.morphology import InputError, bar_length, measure_bar
from galaxai.morphology.bars import measure_bars, scaled_t_l
from galaxai.morphology.catalogues import find_hoyle_catalogue, parse_ids, read_bar_catalogue
from galaxai.morphology.classifier_runs import load_classifier, train_classifier
from galaxai.morphology.saliency_maps import compute_saliency, read_maps

N_GALAXIES = 30
CORRUPT = 100000 + N_GALAXIES - 1       # a JPEG that cannot be read
NO_IMAGE = 999                           # in the catalogue, but no image


@pytest.fixture(scope="module")
def kaggle(tmp_path_factory):
    """30 drawn galaxies (two thirds barred) at 72², bar votes following the bar, one corrupt
    JPEG, and a catalogue of 12 of them (plus the corrupt one and one without an image)."""
    root = tmp_path_factory.mktemp("gz")
    images, lengths = {}, {}
    labels = np.random.default_rng(0).random((N_GALAXIES, len(GZ_COLUMNS))) * 0.2
    for k in range(N_GALAXIES):
        images[100000 + k], lengths[100000 + k] = galaxy_rgb(k, 72, bar=k % 3 != 0)
        labels[k, gz_column_index("Class3.1")] = 0.8 if lengths[100000 + k] else 0.05
    write_kaggle_layout(root, images, labels=labels)
    (root / "images_training_rev1" / f"{CORRUPT}.jpg").write_bytes(b"not a jpeg at all")
    chosen = [100000 + k for k in range(1, 25, 2)] + [CORRUPT, NO_IMAGE]
    cat = pd.DataFrame({"objid": chosen,
                        "length_scaled": [lengths.get(i, 10.0) / 72 + 0.1 for i in chosen],
                        "petroR90_r": np.linspace(4.0, 12.0, len(chosen))})
    cat.to_csv(root / "catalogue.csv", index=False)
    return root


@pytest.fixture(scope="module")
def pipeline(kaggle, tmp_path_factory):
    """The three commands, as a user runs them."""
    out = tmp_path_factory.mktemp("runs")
    runner = CliRunner()
    results = {}
    for name, args in (
        ("train", ["morphology", "train", "--data", str(kaggle), "--model", "vgg16", "--preset",
                   "tiny", "--epochs", "1", "--out", str(out / "run")]),
        ("saliency", ["morphology", "saliency", "--model", str(out / "run"), "--data", str(kaggle),
                      "--catalogue", str(kaggle / "catalogue.csv"), "--out",
                      str(out / "maps.npz"), "--n-samples", "4", "--batch-size", "4"]),
        ("bars", ["morphology", "bars", "--maps", str(out / "maps.npz"), "--out",
                  str(out / "bars"), "--catalogue", str(kaggle / "catalogue.csv")]),
    ):
        results[name] = runner.invoke(main, args)
        assert results[name].exit_code == 0, (name, results[name].output, results[name].exception)
    return out, results


def test_train_writes_weights_sidecar_and_split(pipeline):
    out, results = pipeline
    run = out / "run"
    info = json.loads((run / "model.json").read_text())
    assert info["epochs"] == 1 and info["architecture"] == "vgg16" and info["preset"] == "tiny"
    assert info["n_train"] + info["n_val"] == N_GALAXIES - 1       # the corrupt JPEG is left out
    assert info["n_val"] == 6 and info["n_skipped"] == 1
    assert np.isfinite(info["val_rmse"]) and 0 < info["val_rmse"] < 1
    assert info["init"].startswith("from scratch")
    assert info["model_config"]["image_size"] == 64 and info["train_config"]["epochs"] == 1
    split = pd.read_csv(run / "split.csv")
    assert CORRUPT not in set(split["GalaxyID"]) and (split["split"] == "validation").sum() == 6
    assert len(pd.read_csv(run / "history.csv")) == 1
    assert f"{CORRUPT}" in results["train"].output and "not a readable JPEG" in results["train"].output
    model, loaded_info = load_classifier(run)
    assert loaded_info == info and not model.training and model.config.architecture == "vgg16"


def test_weights_round_trip_exactly(kaggle, tmp_path):
    run = tmp_path / "run"
    trained = train_classifier(kaggle, run, architecture="xception", preset="tiny",
                               epochs=1, limit=12, seed=3, layout="timm")
    assert trained.model.config.layout == "timm"
    assert trained.info["model_config"]["layout"] == "timm"
    x = torch.rand(2, 3, 64, 64)
    for config_from in ("sidecar", "header"):
        if config_from == "header":  # no model.json: the config in the safetensors header
            (run / "model.json").rename(run / "sidecar.json")
        loaded, _ = load_classifier(run / "model.safetensors")
        assert loaded.config == trained.model.config
        with torch.no_grad():
            torch.testing.assert_close(loaded(x), trained.model(x), rtol=0, atol=0)
    # a run saved before MorphologyConfig.layout existed loads in the (then only) Keras layout
    info = json.loads((run / "sidecar.json").read_text())
    del info["model_config"]["layout"]
    (run / "model.json").write_text(json.dumps(info))
    old, _ = load_classifier(run)
    assert old.config.layout == "keras" and old.config.architecture == "xception"
    assert trained.info["n_train"] + trained.info["n_val"] == 12
    with pytest.raises(InputError, match="already holds a trained model"):
        train_classifier(kaggle, tmp_path / "run", preset="tiny", epochs=1, limit=4)


def test_saliency_ids_follow_the_catalogue_and_maps_match_smoothgrad(pipeline, kaggle):
    out, results = pipeline
    maps = read_maps(out / "maps.npz")
    cat = pd.read_csv(kaggle / "catalogue.csv")
    expected = [i for i in cat["objid"] if i not in (CORRUPT, NO_IMAGE)]
    assert maps.ids.tolist() == expected
    assert maps.saliency.shape == (len(expected), 64, 64) and maps.images.shape[1:] == (64, 64, 3)
    np.testing.assert_allclose(maps.saliency.max(axis=(1, 2)), 1.0, rtol=1e-6)
    # default ids: the catalogue's galaxies found in the data; the unreadable one is reported
    skipped = {s["id"]: s["reason"] for s in maps.meta["skipped"]}
    assert set(skipped) == {str(CORRUPT)} and "not a readable JPEG" in skipped[str(CORRUPT)]
    assert f"skipped 1 galaxies:\n  {CORRUPT}: " in results["saliency"].output
    assert maps.meta["n_samples"] == 4 and maps.meta["target"] == "Class3.1"
    # the 5th stored map is SmoothGrad of galaxy expected[4] (ids and maps are aligned)
    model, _ = load_classifier(out / "run")
    frame = read_jpeg(kaggle / "images_training_rev1" / f"{expected[4]}.jpg", size=None)
    x = torch.nn.functional.interpolate(torch.from_numpy(frame).permute(2, 0, 1)[None],
                                        size=(64, 64), mode="bilinear", align_corners=False)
    direct = smoothgrad(model, x, target=gz_column_index("Class3.1"), n=4, noise=0.1).maps[0]
    np.testing.assert_allclose(maps.saliency[4], direct.numpy(), rtol=1e-4, atol=1e-5)
    assert not (out / "maps.npz.partial").exists()


def test_bars_table_rho_and_report(pipeline):
    out, results = pipeline
    maps = read_maps(out / "maps.npz")
    table = pd.read_csv(out / "bars" / "bar_lengths.csv")
    assert table["id"].tolist() == maps.ids.tolist()
    t_l = scaled_t_l(40, 64)
    assert t_l == 3 and (table["t_l"] == t_l).all() and (table["t_c"] == 0.85).all()
    expected = [bar_length(m, 0.85, t_l, method="fast") for m in maps.saliency]
    np.testing.assert_allclose(table["length_424"], expected)
    assert table["length_scaled"].notna().all() and table["r90"].notna().all()
    rho = pd.read_csv(out / "bars" / "rho.csv")
    assert rho["statistic"].str.startswith("constant-length null").any()
    assert rho["statistic"].str.startswith("partial").any()
    html = (out / "bars" / "report" / "index.html").read_text()
    assert "Fig. 3 analogue" in html and "Fig. 4 analogue" in html
    assert len(list((out / "bars" / "report" / "figures").glob("fig-*.png"))) == 2
    summary = json.loads((out / "bars" / "summary.json").read_text())
    assert summary["n_evaluated"] == len(maps.ids) and summary["faithful_units"]
    assert "constant-length null" in results["bars"].output


def _line_maps(lengths, size=64, anti=False):
    """Maps with one diagonal (or anti-diagonal) line each: Algorithm 1 stops at T = 0.5
    (|ρ| = 1)."""
    maps = np.zeros((len(lengths), size, size), np.float32)
    for k, n in enumerate(lengths):
        i = np.arange(10, 10 + n)
        maps[k, i, size - 1 - i if anti else i] = 1.0
    return maps


def _write_maps_file(path, ids, maps, architecture="vgg16", x_input=False, noise=0.1):
    n, s = maps.shape[:2]
    meta = {"format": "galaxai-saliency-v1", "architecture": architecture, "x_input": x_input,
            "noise": noise, "target": "Class3.1", "skipped": []}
    np.savez(path, ids=np.asarray(ids, np.int64), saliency=maps,
             images=np.full((n, s, s, 3), 128, np.uint8), logits=np.zeros(n, np.float32),
             meta=np.array(json.dumps(meta)))
    return path


def test_bars_on_known_maps_average_models_and_scaled_units(tmp_path):
    ids = list(range(500, 530))
    n_px = np.arange(5, 35)                                  # line of n pixels: length (n-1)·√2
    a = _write_maps_file(tmp_path / "a.npz", ids, _line_maps(n_px))
    b = _write_maps_file(tmp_path / "b.npz", ids[::-1], _line_maps(n_px[::-1] + 4), "xception")
    true = (n_px - 1) * np.sqrt(2) * 424 / 64 / 100
    noise = np.random.default_rng(1).normal(0, 0.02, len(ids))
    pd.DataFrame({"objid": ids, "length_scaled": true + noise}).to_csv(tmp_path / "cat.csv",
                                                                       index=False)
    one = measure_bars(a, tmp_path / "one", catalogue=tmp_path / "cat.csv", n_boot=200,
                       n_perm=200)
    np.testing.assert_allclose(one.lengths["length_px"], (n_px - 1) * np.sqrt(2))
    assert (one.lengths["stopped_by"] == "statistic").all()
    # no R90: only the size-free statistics, and a note saying why
    assert list(one.rho["statistic"]) == ["scaled units (L424/100 vs length_scaled)",
                                          "Spearman (scaled units)"]
    assert one.rho["value"].iloc[0] > 0.95 and abs(one.fit.slope - 1) < 0.05
    assert "No R90" in (tmp_path / "one" / "report" / "index.html").read_text()
    both = measure_bars([a, b], tmp_path / "both", t_c=0.85, t_l=3, table_format="parquet")
    table = pd.read_parquet(tmp_path / "both" / "bar_lengths.parquet")
    np.testing.assert_allclose(table["length_px"], (n_px + 1) * np.sqrt(2))   # mean of n-1, n+3
    assert {"length_424_vgg16", "length_424_xception"} <= set(table.columns)
    assert both.rho is None and both.settings["models"] == ["vgg16", "xception"]


def test_grid_search_reports_on_the_test_split_only(tmp_path):
    ids = list(range(1000, 1030))
    n_px = np.random.default_rng(2).integers(5, 40, len(ids))
    maps = _write_maps_file(tmp_path / "m.npz", ids, _line_maps(n_px))
    r90 = np.random.default_rng(3).uniform(4, 12, len(ids))
    cat = pd.DataFrame({"objid": ids, "length_scaled": n_px / 30.0, "petroR90_r": r90})
    cat.to_csv(tmp_path / "cat.csv", index=False)
    res = measure_bars(maps, tmp_path / "g", catalogue=tmp_path / "cat.csv", use_grid_search=True,
                       n_boot=100, n_perm=100)
    assert res.settings["thresholds"].startswith("grid search") and res.grid is not None
    assert len(res.grid) == 2 * 5 * len(scaled_t_l([10, 20, 30, 40, 50], 64))
    assert set(res.lengths["split"]) == {"validation", "test"}
    assert res.settings["n_evaluated"] == (res.lengths["split"] == "test").sum() == 20
    assert res.rho["value"].iloc[0] > 0.9      # faithful ρ of exact lengths
    assert (tmp_path / "g" / "grid_search.csv").is_file()


@pytest.fixture()
def four_map_files(tmp_path):
    """Two models × two S on 30 galaxies: only vgg16 at S 0.1 measures the true lengths."""
    ids = list(range(2000, 2030))
    rng = np.random.default_rng(4)
    n_true = rng.integers(5, 40, len(ids))
    files = {}
    for arch, s in (("vgg16", 0.1), ("xception", 0.1), ("vgg16", 0.2), ("xception", 0.2)):
        n = n_true if (arch, s) == ("vgg16", 0.1) else rng.integers(5, 40, len(ids))
        files[(arch, s)] = _write_maps_file(tmp_path / f"{arch}_{s}.npz", ids, _line_maps(n),
                                            arch, noise=s), n
    cat = pd.DataFrame({"objid": ids, "length_scaled": n_true / 30.0,
                        "petroR90_r": rng.uniform(4, 12, len(ids))})
    cat.to_csv(tmp_path / "cat.csv", index=False)
    return tmp_path, ids, files


def test_grid_search_over_models_s_and_averages(four_map_files):
    tmp_path, ids, files = four_map_files
    paths = [p for p, _ in files.values()]
    res = measure_bars(paths, tmp_path / "g", catalogue=tmp_path / "cat.csv",
                       use_grid_search=True, n_boot=100, n_perm=100)
    st = res.settings
    assert (st["source"], st["s_noise"], st["x_input"]) == ("vgg16", 0.1, False)
    n_tl = len(scaled_t_l([10, 20, 30, 40, 50], 64))
    assert len(res.grid) == 4 * 2 * 2 * 5 * n_tl          # 4 methods × 2 S × x_input × T_c × T_l
    assert res.grid["rho_validation"].is_monotonic_decreasing
    methods = res.per_method.set_index("method")
    assert set(methods.index) == {"vgg16", "xception", "averageheatmaps", "averagemeasurements"}
    assert methods.loc["vgg16", "s_noise"] == 0.1 and methods.loc["vgg16", "rho_test"] > 0.9
    assert methods.loc["xception", "rho_test"] < methods.loc["vgg16", "rho_test"]
    for col in ("constant_null", "partial_r90", "scaled", "spearman"):
        assert np.isfinite(methods[col]).all()
    # the chosen method's test ρ is the one reported for it in the per-method table
    assert res.rho["value"].iloc[0] == pytest.approx(methods.loc["vgg16", "rho_test"])
    test = res.lengths[res.lengths["split"] == "test"]
    assert res.settings["n_evaluated"] == len(test) == 20
    n_true = dict(zip(ids, files[("vgg16", 0.1)][1]))
    np.testing.assert_allclose(res.lengths["length_px"],
                               [(n_true[i] - 1) * np.sqrt(2) for i in res.lengths["id"]])
    assert (tmp_path / "g" / "grid_search_methods.csv").is_file()
    html = (tmp_path / "g" / "report" / "index.html").read_text()
    assert "best setting per method" in html and "averageheatmaps" in html
    assert json.loads((tmp_path / "g" / "summary.json").read_text())["per_method"][0][
        "method"] == "vgg16"
    # only the averages searched: the best of them is chosen
    avg = measure_bars(paths, tmp_path / "a", catalogue=tmp_path / "cat.csv",
                       use_grid_search=True, sources=["averagemeasurements", "averageheatmaps"],
                       n_boot=50, n_perm=50)
    assert set(avg.per_method["method"]) == {"averagemeasurements", "averageheatmaps"}
    assert avg.settings["source"] == avg.per_method["method"].iloc[0]


def test_fixed_averageheatmaps_measures_the_mean_map(four_map_files):
    tmp_path, ids, files = four_map_files
    (a, n_a), (b, n_b) = files[("vgg16", 0.2)], files[("xception", 0.2)]
    res = measure_bars([a, b], tmp_path / "h", sources=["averageheatmaps"], t_c=0.85, t_l=3)
    # the mean map is 1 on the overlap of the two diagonal lines (the shorter one), else 0.5
    np.testing.assert_allclose(res.lengths["length_px"], (np.minimum(n_a, n_b) - 1) * np.sqrt(2))
    assert res.settings["source"] == "averageheatmaps" and res.settings["s_noise"] == 0.2
    mean = measure_bars([a, b], tmp_path / "m", t_c=0.85, t_l=3)      # default: averagemeasurements
    np.testing.assert_allclose(mean.lengths["length_px"], (n_a + n_b - 2) / 2 * np.sqrt(2))


def test_a_method_without_finite_rho_is_left_out_with_a_note(tmp_path):
    ids = list(range(3000, 3030))
    n_px = np.random.default_rng(5).integers(5, 40, len(ids))
    a = _write_maps_file(tmp_path / "a.npz", ids, _line_maps(n_px))
    b = _write_maps_file(tmp_path / "b.npz", ids, _line_maps(n_px, anti=True), "xception")
    pd.DataFrame({"objid": ids, "length_scaled": n_px / 30.0}).to_csv(tmp_path / "cat.csv",
                                                                      index=False)
    # no R90: averageheatmaps of crossing lines has max 0.5 and measures 1 px everywhere
    res = measure_bars([a, b], tmp_path / "g", catalogue=tmp_path / "cat.csv",
                       use_grid_search=True, n_boot=50, n_perm=50)
    assert "averageheatmaps" not in set(res.per_method["method"])
    assert "Left out of the grid search: averageheatmaps" in (
        tmp_path / "g" / "report" / "index.html").read_text()
    with pytest.raises(InputError, match="grid search impossible.*undefined validation"):
        measure_bars([a, b], tmp_path / "h", catalogue=tmp_path / "cat.csv",
                     use_grid_search=True, sources=["averageheatmaps"], n_boot=50, n_perm=50)


def test_map_file_errors_name_the_file_and_the_fix(four_map_files):
    tmp_path, ids, files = four_map_files
    (a, n_a), (b, _) = files[("vgg16", 0.1)], files[("xception", 0.1)]
    a2 = files[("vgg16", 0.2)][0]
    short = _write_maps_file(tmp_path / "short.npz", ids[:-2], _line_maps(n_a[:-2]), "xception")
    cat = tmp_path / "cat.csv"
    with pytest.raises(InputError, match=r"short.npz holds other galaxies .* 2 ids only in the "
                                         r"first .* same --ids") as err:
        measure_bars([a, short], tmp_path / "x", t_c=0.85, t_l=3)
    assert err.value.param == "maps"
    with pytest.raises(InputError, match=r"averageheatmaps averages .* vgg16 at S 0.1 "
                                         r"\(vgg16_0.1.npz\).* --noise"):
        measure_bars([a, a2], tmp_path / "x", catalogue=cat, use_grid_search=True,
                     sources=["averageheatmaps"])
    copy = _write_maps_file(tmp_path / "again.npz", ids, _line_maps(n_a))
    with pytest.raises(InputError, match="both of model vgg16 at S = 0.1"):
        measure_bars([a, copy], tmp_path / "x", t_c=0.85, t_l=3)
    with pytest.raises(InputError, match=r"several SmoothGrad S \[0.1, 0.2\]; pass --grid-search"):
        measure_bars([a, a2], tmp_path / "x", t_c=0.85, t_l=3)
    with pytest.raises(InputError, match="'resnet50v2': no maps file of that model") as err:
        measure_bars([a, b], tmp_path / "x", catalogue=cat, use_grid_search=True,
                     sources=["resnet50v2"])
    assert err.value.param == "source"
    with pytest.raises(InputError, match="one method"):
        measure_bars([a, b], tmp_path / "x", sources=["vgg16", "xception"])
    result = CliRunner().invoke(main, ["morphology", "bars", "--maps", str(a), "--maps", str(a2),
                                       "--out", str(tmp_path / "c"), "--catalogue", str(cat),
                                       "--grid-search", "--source", "averagemeasurements"])
    assert result.exit_code == 2 and "'--maps'" in result.output
    assert "no S has maps of two models" in " ".join(result.output.split())


def test_cli_grid_search_prints_each_methods_best(four_map_files):
    tmp_path, _, files = four_map_files
    args = ["morphology", "bars", "--out", str(tmp_path / "c"), "--catalogue",
            str(tmp_path / "cat.csv"), "--grid-search", "--source", "vgg16", "--source",
            "averagemeasurements"]
    for path, _ in files.values():
        args += ["--maps", str(path)]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    assert "best setting per method" in result.output
    assert "vgg16, S 0.1" in result.output and "averagemeasurements" in result.output


def test_saliency_resumes_after_an_interruption(pipeline, kaggle, tmp_path, monkeypatch):
    out, _ = pipeline
    ids = f"100001,100003,{NO_IMAGE},100005,100007,100009"
    calls = {"n": 0}
    real = smoothgrad

    def flaky(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr("galaxai.morphology.saliency_maps.smoothgrad", flaky)
    target = tmp_path / "maps.zarr"
    with pytest.raises(KeyboardInterrupt):
        compute_saliency(out / "run", kaggle, target, ids=ids, n_samples=4, batch_size=2)
    assert not target.exists() and len(list((tmp_path / "maps.zarr.partial").glob("part-*"))) == 1
    with pytest.raises(InputError, match="other settings"):
        compute_saliency(out / "run", kaggle, target, ids=ids, n_samples=8, batch_size=2)
    run = compute_saliency(out / "run", kaggle, target, ids=ids, n_samples=4, batch_size=2)
    assert run.resumed == 2 and run.ids == [i for i in parse_ids(ids) if i != NO_IMAGE]
    assert [s["id"] for s in run.skipped] == [str(NO_IMAGE)]
    assert f"no {NO_IMAGE}.jpg" in run.skipped[0]["reason"]
    resumed = read_maps(target)
    reference = read_maps(out / "maps.npz")
    rows = [reference.ids.tolist().index(i) for i in run.ids]
    np.testing.assert_allclose(resumed.saliency, reference.saliency[rows], rtol=1e-4, atol=1e-6)
    np.testing.assert_array_equal(resumed.images, reference.images[rows])


def test_train_cli_passes_the_layout(monkeypatch, tmp_path):
    seen: dict = {}

    def fake_train(*args, **kwargs):
        seen.update(kwargs)
        raise InputError("stopped before training", "data")

    monkeypatch.setattr(galaxai.morphology.classifier_runs, "train_classifier", fake_train)
    base = ["morphology", "train", "--data", str(tmp_path), "--model", "resnet50v2",
            "--out", str(tmp_path / "run")]
    for extra, layout in (([], "keras"), (["--layout", "timm"], "timm")):
        result = CliRunner().invoke(main, base + extra)
        assert "stopped before training" in result.output and seen["layout"] == layout
    result = CliRunner().invoke(main, base + ["--layout", "tf"])
    assert result.exit_code == 2 and "'--layout'" in result.output


@pytest.mark.parametrize("args, option, text", [
    (["train", "--data", "{tmp}/nowhere", "--out", "{tmp}/r"], "--data", "does not exist"),
    (["train", "--data", "{tmp}", "--out", "{tmp}/r"], "--data", "images_training_rev1"),
    (["saliency", "--model", "{tmp}", "--data", "{gz}", "--out", "{tmp}/m.npz", "--ids", "1"],
     "--model", "model.safetensors"),
    (["saliency", "--model", "{run}", "--data", "{gz}", "--out", "{tmp}/m.h5", "--ids", "1"],
     "--out", ".npz"),
    (["saliency", "--model", "{run}", "--data", "{gz}", "--out", "{tmp}/m.npz", "--ids", "1,x2"],
     "--ids", "not an integer"),
    (["saliency", "--model", "{run}", "--data", "{gz}", "--out", "{tmp}/m.npz", "--catalogue",
      "{tmp}/hoyle.csv"], "--ids", "Kaggle GalaxyIDs are not SDSS objids"),
    (["saliency", "--model", "{run}", "--data", "{gz}", "--out", "{tmp}/m.npz", "--ids",
      f"{CORRUPT}"], "--data", "no image could be explained"),
    (["bars", "--maps", "{tmp}/junk.npz", "--out", "{tmp}/b"], "--maps", "not a galaxai maps"),
    (["bars", "--maps", "{maps}", "--out", "{tmp}/b", "--catalogue", "{tmp}/hoyle.csv"],
     "--catalogue", "'length_scaled'"),
    (["bars", "--maps", "{maps}", "--out", "{tmp}/b", "--grid-search"], "--grid-search",
     "catalogue"),
])
def test_bad_input_is_a_click_error_naming_the_option(pipeline, kaggle, tmp_path, args, option,
                                                      text):
    out, _ = pipeline
    pd.DataFrame({"objid": [587722981747982465], "ra": [1.0]}).to_csv(tmp_path / "hoyle.csv",
                                                                       index=False)
    np.savez(tmp_path / "junk.npz", x=np.zeros(3))
    fill = dict(tmp=tmp_path, gz=kaggle, run=out / "run", maps=out / "maps.npz")
    result = CliRunner().invoke(main, ["morphology"] + [a.format(**fill) for a in args])
    assert result.exit_code == 2, result.output
    assert option in result.output and text in " ".join(result.output.split())
    assert not (tmp_path / "m.npz").exists() and not (tmp_path / "m.npz.partial").exists()


def test_parse_ids_and_catalogue(tmp_path, monkeypatch):
    assert parse_ids("3, 1,3,2") == [3, 1, 2]
    (tmp_path / "ids.txt").write_text("# chosen\n5\n\n7 # comment\n5\n")
    assert parse_ids(tmp_path / "ids.txt") == [5, 7]
    pd.DataFrame({"ra": [1.0, 2.0], "GalaxyID": [11, 12]}).to_csv(tmp_path / "ids.csv",
                                                                  index=False)
    assert parse_ids(str(tmp_path / "ids.csv")) == [11, 12]
    with pytest.raises(InputError, match="does not exist"):
        parse_ids("missing/ids.txt")
    pd.DataFrame({"objid": [1.0, np.nan], "length_scaled": [0.3, 0.4]}).to_csv(
        tmp_path / "bad.csv", index=False)
    with pytest.raises(InputError, match="floating-point"):
        read_bar_catalogue(tmp_path / "bad.csv")
    pd.DataFrame({"objid": [1, 2], "length_scaled": [0.3, 0.4]}).to_csv(tmp_path / "c.csv",
                                                                       index=False)
    pd.DataFrame({"objid": [2], "petroR90_r": [7.5]}).to_csv(tmp_path / "r.csv", index=False)
    cat = read_bar_catalogue(tmp_path / "c.csv", r90=tmp_path / "r.csv")
    assert cat["id"].tolist() == [1, 2] and np.isnan(cat["r90"][0]) and cat["r90"][1] == 7.5
    monkeypatch.setenv("GALAXAI_HOYLE_CATALOGUE", str(tmp_path / "c.csv"))
    assert find_hoyle_catalogue() == tmp_path / "c.csv"
    monkeypatch.setenv("GALAXAI_HOYLE_CATALOGUE", str(tmp_path / "none.csv"))
    with pytest.raises(InputError, match="not a file"):
        find_hoyle_catalogue()


def test_measure_bar_on_the_figure_mask_matches_the_table(pipeline):
    out, _ = pipeline
    maps = read_maps(out / "maps.npz")
    table = pd.read_csv(out / "bars" / "bar_lengths.csv")
    m = measure_bar(maps.saliency[0], 0.85, 3, "fast")
    assert table["mask_pixels"].iloc[0] == m.count and table["threshold"].iloc[0] == m.threshold


@pytest.mark.parametrize("package, modules", [
    (galaxai.morphology, ("barlength", "gridsearch", "statistics", "measurements", "search",
                           "strata", "training", "closedloop",
                           "_common", "catalogues", "classifier_runs", "saliency_maps", "bars")),
    (galaxai.data, ("votes", "gz_schema", "errors")),
])
def test_package_re_exports(package, modules):
    import importlib

    names = set()
    for mod in modules:
        sub = importlib.import_module(f"{package.__name__}.{mod}")
        names |= set(sub.__all__)
        for name in sub.__all__:
            assert getattr(package, name) is getattr(sub, name), name
    assert set(package.__all__) == names and len(package.__all__) == len(names)
    with pytest.raises(AttributeError):
        package.no_such_name
