"""Nothing lost, nothing silent: the `galaxai` command's refusals and its one error path."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from galaxai.cli import main


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    path = tmp_path_factory.mktemp("cli") / "store"
    result = CliRunner().invoke(main, ["data", "blend", "--n", "16", "--seed", "2", "--preset",
                                       "tiny", "--chunk", "8", "--test-fraction", "0.25",
                                       "--out", str(path)])
    assert result.exit_code == 0, result.output
    return path


def _train(store, run, *options):
    return CliRunner().invoke(main, ["train", "--data", str(store), "--run", str(run),
                                     "--device", "cpu", *options])


def _refused(result, *needles):
    """Exit status 2 and one line on stderr holding every needle, no traceback."""
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.output, result.stderr
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    return lines[0]


def _stats(run):
    return [json.loads(line) for line in (run / "stats.jsonl").read_text().splitlines()]


def test_resume_refuses_changed_options_and_extends_only_when_asked(store, tmp_path):
    run = tmp_path / "run"
    first = ["--preset", "tiny", "--burn-in", "1"]
    assert _train(store, run, *first, "--iterations", "2").exit_code == 0
    _refused(_train(store, run, *first, "--iterations", "4"),
             str(run), "iterations: 2 -> 4", "--extend")
    _refused(_train(store, run, "--seed", "5"), "seed: 0 -> 5")
    _refused(_train(store, run, "--preset", "small"), "different config", "batch_size: 4 -> 8")
    result = _train(store, run, "--iterations", "4", "--extend")
    assert result.exit_code == 0, result.output
    assert "iteration 5" in result.stdout
    assert [s for s in _stats(run) if s.get("event") == "extend"][0]["iterations_to"] == 4
    result = _train(store, run)  # options left out keep the run's (extended) values
    assert result.exit_code == 0 and "iteration 5" in result.stdout, result.output


def test_locked_run_and_fresh_start_over_checkpoints_are_refused(store, tmp_path):
    from galaxai.train.runlock import run_lock

    run = tmp_path / "run"
    with run_lock(run):
        _refused(_train(store, run, "--preset", "tiny"), "PID", "another process", "--run")
    assert not (run / "stats.jsonl").exists()
    assert _train(store, run, "--preset", "tiny", "--iterations", "0", "--burn-in", "1"
                  ).exit_code == 0
    (run / "resume.pt").unlink()
    _refused(_train(store, run, "--preset", "tiny"), str(run), "holds checkpoints")


def test_debug_shows_the_traceback(store, tmp_path):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "resume.pt").write_bytes(b"not a resume file")
    _refused(_train(store, tmp_path / "run", "--preset", "tiny"), "resume.pt")
    result = CliRunner().invoke(main, ["--debug", "train", "--data", str(store), "--run",
                                       str(tmp_path / "run"), "--preset", "tiny"])
    assert isinstance(result.exception, ValueError) and "resume.pt" in str(result.exception)


def test_sigterm_saves_a_last_checkpoint_and_resume_point(store, tmp_path):
    import os
    import signal
    import subprocess
    import sys
    import time

    from galaxai.train.checkpoints import latest_checkpoint, load_generator, load_resume

    run = tmp_path / "run"
    cmd = [sys.executable, "-m", "galaxai.cli", "train", "--data", str(store), "--run", str(run),
           "--device", "cpu", "--preset", "tiny", "--burn-in", "1", "--iterations", "100000",
           "--checkpoint-every", "3"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    with open(tmp_path / "stderr.txt", "w") as stderr:  # a file: a full pipe would block it
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=stderr)
        try:
            deadline = time.monotonic() + 300  # a guard against hanging, not a timing assertion
            while latest_checkpoint(run) is None and proc.poll() is None:
                assert time.monotonic() < deadline, "no checkpoint appeared"
                time.sleep(0.05)
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=300)
        finally:
            proc.kill()
    err = (tmp_path / "stderr.txt").read_text()
    assert proc.returncode == 128 + signal.SIGTERM, err
    last = latest_checkpoint(run)
    assert f"stopped by SIGTERM at iteration {last.iteration}" in err
    # the signal came after checkpoint 3: the iteration under way was finished and saved
    assert load_resume(run)["iteration"] == last.iteration >= 4
    assert _stats(run)[-1]["iteration"] == last.iteration
    load_generator(last.path)


def test_export_defaults_to_the_installed_weights_folder_and_says_so(tmp_path, monkeypatch):
    import galaxai.api
    from galaxai.models.deblender import DeblenderConfig, build_discriminator, build_generator
    from galaxai.train.checkpoints import save_checkpoint

    cfg = DeblenderConfig.preset("tiny", image_size=32)
    save_checkpoint(tmp_path / "run", 3, build_generator(cfg), build_discriminator(cfg))
    shipped = tmp_path / "site-packages" / "galaxai" / "weights"  # stands in for the installation
    monkeypatch.setattr(galaxai.api, "DEFAULT_WEIGHTS", shipped / "deblender_small.safetensors")
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(main, ["export", str(tmp_path / "run"), "--name", "t"])
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in shipped.iterdir()) == [
        "deblender_t.json", "deblender_t.safetensors", "discriminator_t.json",
        "discriminator_t.safetensors"]
    assert not (tmp_path / "src").exists()
    assert str(shipped) in result.stdout


def _damaged_copy(store, tmp_path, chunk_of_row=0, array="target_a"):
    """A copy of ``store`` with one byte of ``array`` flipped in the chunk holding test row
    ``chunk_of_row``; returns the copy and that chunk."""
    import shutil

    import pandas as pd

    path = Path(shutil.copytree(store, tmp_path / "damaged"))
    cat = pd.read_parquet(path / "catalogue.parquet")
    c = int(cat[cat["split"] == "test"]["chunk"].iloc[chunk_of_row])
    shard = path / "blends.zarr" / array / "c" / str(c) / "0" / "0" / "0"
    data = bytearray(shard.read_bytes())
    data[len(data) // 2] ^= 0xFF
    shard.write_bytes(bytes(data))
    return path, c


def test_evaluate_refuses_a_damaged_or_incomplete_store_in_one_line(store, tmp_path):
    path, c = _damaged_copy(store, tmp_path)
    out = tmp_path / "out"
    args = ["evaluate", "--data", str(path), "--out", str(out), "--no-classical"]
    _refused(CliRunner().invoke(main, args), str(path), f"chunk {c}", "forget_chunks")
    (path / "blends.zarr" / "blend" / "c" / "0" / "0" / "0" / "0").unlink()
    _refused(CliRunner().invoke(main, args), "blends.zarr/blend/c/0", "read as zeros")
    (path / "catalogue.parquet").write_bytes(b"PAR1 torn")
    _refused(CliRunner().invoke(main, args), "catalogue.parquet")
    (path / "manifest.json").write_text("{torn")
    _refused(CliRunner().invoke(main, args), "manifest.json")


def test_audit_exits_2_on_an_unfinished_or_damaged_store_not_1(store, tmp_path):
    from galaxai.data.store import forget_chunks

    path, c = _damaged_copy(store, tmp_path, array="target_b")
    _refused(CliRunner().invoke(main, ["audit", str(path)]), f"chunk {c}", "forget_chunks")
    forget_chunks(path, [0])
    _refused(CliRunner().invoke(main, ["audit", str(path)]), "unfinished build")


def test_generator_options_reach_the_run_config_and_bad_ones_are_refused(store, tmp_path):
    from galaxai.config import read_config
    from galaxai.train.gan import GANTrainConfig

    run = tmp_path / "run"
    result = _train(store, run, "--preset", "tiny", "--burn-in", "0", "--iterations", "1",
                    "--shared-dilations", "2", "--coord-channels", "--pixel-loss", "log-mse")
    assert result.exit_code == 0, result.output
    cfg = read_config(GANTrainConfig, run / "config.toml")
    assert cfg.model.shared_dilations == (2,) and cfg.model.coord_channels
    assert cfg.pixel_loss == "log-mse"
    usage = _train(store, tmp_path / "bad", "--preset", "tiny", "--shared-dilations", "1,x")
    assert usage.exit_code == 2
    assert "'--shared-dilations': '1,x' is not a comma-separated list of dilations" in usage.stderr
    _refused(_train(store, tmp_path / "bad", "--preset", "tiny", "--shared-dilations", "1,2"),
             "shared_dilations", "(1, 2)")
