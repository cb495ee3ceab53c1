"""`morphology train --shift/--augment-validation/--activation` and `morphology saliency --chunk`:
each flag reaches the config and the run's record; bad values are click errors naming it."""
import json

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from galaxy_zoo_layout import galaxy_rgb, write_kaggle_layout
from torch import nn

from galaxai.cli import main
from galaxai.morphology import InputError
from galaxai.morphology.classifier_runs import load_classifier
from galaxai.morphology.saliency_maps import compute_saliency, read_maps

IDS = [200000 + k for k in range(12)]


@pytest.fixture(scope="module")
def kaggle(tmp_path_factory):
    """12 drawn galaxies at 64², two thirds barred."""
    root = tmp_path_factory.mktemp("gz")
    write_kaggle_layout(root, {gid: galaxy_rgb(k, 64, bar=k % 3 != 0)[0]
                               for k, gid in enumerate(IDS)})
    return root


def _invoke(*args):
    return CliRunner().invoke(main, ["morphology", *map(str, args)])


def _train(kaggle, out, *flags):
    result = _invoke("train", "--data", kaggle, "--preset", "tiny", "--epochs", 1, "--out", out,
                     *flags)
    assert result.exit_code == 0, (result.output, result.exception)
    return json.loads((out / "model.json").read_text())


@pytest.fixture(scope="module")
def default_run(kaggle, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "default"
    return out, _train(kaggle, out)


def test_train_defaults_are_the_faithful_recipe(default_run):
    out, info = default_run
    assert info["train_config"]["shift"] == 0.1
    assert info["train_config"]["augment_validation"] is True
    assert info["model_config"]["activation"] == "swish"
    model, _ = load_classifier(out)
    assert any(isinstance(m, nn.SiLU) for m in model.modules())
    # The validation loss of the last epoch was measured on augmented images: not the clean RMSE.
    assert info["val_rmse_augmented_last"] != pytest.approx(info["val_rmse"], rel=1e-4)


def test_train_flags_reach_the_configs_the_sidecar_and_the_model(kaggle, tmp_path):
    info = _train(kaggle, tmp_path / "run", "--shift", 0.005, "--no-augment-validation",
                  "--activation", "relu")
    assert info["train_config"]["shift"] == 0.005
    assert info["train_config"]["augment_validation"] is False
    assert info["model_config"]["activation"] == "relu"
    model, loaded = load_classifier(tmp_path / "run")
    assert model.config.activation == "relu" and loaded == info
    assert any(isinstance(m, nn.ReLU) for m in model.modules())
    assert not any(isinstance(m, nn.SiLU) for m in model.modules())
    # Un-augmented validation: the last epoch's validation RMSE is the clean one.
    assert info["val_rmse_augmented_last"] == pytest.approx(info["val_rmse"], rel=1e-4)


def test_saliency_chunk_is_recorded_and_leaves_the_maps_unchanged(default_run, kaggle, tmp_path):
    out, _ = default_run
    ids = ",".join(map(str, IDS[:3]))
    maps = {}
    for chunk in (64, 3):
        path = tmp_path / f"maps{chunk}.npz"
        flags = [] if chunk == 64 else ["--chunk", chunk]
        result = _invoke("saliency", "--model", out, "--data", kaggle, "--ids", ids, "--out", path,
                         "--n-samples", 5, *flags)
        assert result.exit_code == 0, (result.output, result.exception)
        maps[chunk] = read_maps(path)
        assert maps[chunk].meta["chunk"] == chunk       # default 64 when the flag is absent
    np.testing.assert_allclose(maps[3].saliency, maps[64].saliency, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("command, flags, option", [
    ("train", ["--shift", "0.5"], "--shift"),
    ("train", ["--shift", "-0.01"], "--shift"),
    ("train", ["--activation", "tanh"], "--activation"),
    ("saliency", ["--chunk", "0"], "--chunk"),
    ("saliency", ["--chunk", "two"], "--chunk"),
])
def test_bad_flag_values_are_click_errors_naming_the_option(default_run, kaggle, tmp_path,
                                                            command, flags, option):
    out, _ = default_run
    common = {"train": ["--data", kaggle, "--preset", "tiny", "--out", tmp_path / "r"],
              "saliency": ["--model", out, "--data", kaggle, "--ids", IDS[0], "--out",
                           tmp_path / "m.npz"]}[command]
    result = _invoke(command, *common, *flags)
    assert result.exit_code == 2, result.output
    assert f"Invalid value for '{option}'" in result.output
    assert not (tmp_path / "r").exists() and not (tmp_path / "m.npz").exists()


def test_compute_saliency_rejects_a_bad_chunk_naming_it(default_run, kaggle, tmp_path):
    out, _ = default_run
    with pytest.raises(InputError, match="chunk must be >= 1, got 0") as info:
        compute_saliency(out, kaggle, tmp_path / "m.npz", ids=[IDS[0]], chunk=0)
    assert info.value.param == "chunk"


def test_validate_sizes_and_epochs_reach_the_closed_loop(tmp_path):
    from galaxai.config import read_config
    from galaxai.morphology.closedloop import ClosedLoopConfig

    out = tmp_path / "bars"
    result = CliRunner().invoke(main, [
        "morphology", "validate", "--preset", "tiny", "--out", str(out), "--n-train", "40",
        "--n-val", "12", "--n-eval", "12", "--n-control", "8", "--epochs", "1"])
    assert result.exit_code == 0, result.output
    cfg = read_config(ClosedLoopConfig, out / "config.toml")
    assert (cfg.n_train, cfg.n_val, cfg.n_eval, cfg.n_control) == (40, 12, 12, 8)
    assert cfg.train.epochs == cfg.control_train.epochs == 1
    history = (out / "history_xception.csv").read_text().splitlines()
    assert len(history) == 2  # header + one epoch
    # One epoch leaves some methods with one constant length: they are listed, not fatal.
    undefined = json.loads((out / "summary.json").read_text())["undefined_rho"]
    rho = pd.read_csv(out / "rho.csv")
    scored = {f"{m} ({a})" for m, a in zip(rho["method"], rho["algorithm"])}
    assert undefined and not set(undefined) & scored
    assert f"Left out: {', '.join(undefined)}" in (out / "report" / "index.html").read_text()
    bad = CliRunner().invoke(main, ["morphology", "validate", "--preset", "tiny", "--out",
                                    str(tmp_path / "bad"), "--n-eval", "6"])
    assert bad.exit_code != 0 and "fewer than 3 galaxies in a split" in bad.output
