"""`galaxai cyclegan train|translate` on the tiny preset, and the demo section."""
from __future__ import annotations

import json

import numpy as np
from astropy.io import fits
from click.testing import CliRunner
from PIL import Image
from stamp_blobs import blob_stamps

from galaxai.cli import main
from galaxai.train.cyclegan import StampSets


def _data(tmp_path):
    sets = StampSets(blob_stamps(6, seed=0), blob_stamps(6, sigma=2.0, axis_ratio=0.5, seed=1),
                     blob_stamps(3, seed=2), blob_stamps(3, sigma=2.0, axis_ratio=0.5, seed=3))
    return sets.save(tmp_path / "stamps.npz")


def test_train_then_translate_files(tmp_path):
    run = tmp_path / "run"
    result = CliRunner().invoke(main, ["cyclegan", "train", "--preset", "tiny", "--iterations", "2",
                                       "--eval-every", "2", "--data", str(_data(tmp_path)),
                                       "--out", str(run), "--mask-space", "flux"])
    assert result.exit_code == 0, result.output
    assert "kid" in result.output and "morph_distance" in result.output
    info = json.loads((run / "checkpoints" / "000000002" / "checkpoint.json").read_text())
    assert info["config"]["model"]["mask_space"] == "flux" and info["iteration"] == 2
    png = tmp_path / "galaxy.png"
    Image.fromarray((np.random.default_rng(0).random((40, 40, 3)) * 255).astype(np.uint8)).save(png)
    npy = tmp_path / "two.npy"
    np.save(npy, np.random.default_rng(1).random((2, 32, 32, 3)).astype(np.float32))
    out = tmp_path / "out"
    result = CliRunner().invoke(main, ["cyclegan", "translate", str(run), str(png), str(npy),
                                       "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "3 stamp(s) translated (sim2real)" in result.output
    names = sorted(p.name for p in out.iterdir())
    assert names == ["galaxy_0000.fits", "galaxy_0000.png", "two_0000.fits", "two_0000.png",
                     "two_0001.fits", "two_0001.png"]
    data = fits.getdata(out / "two_0001.fits")
    assert data.shape == (3, 32, 32) and 0 <= data.min() and data.max() <= 1
    with Image.open(out / "galaxy_0000.png") as shown:  # input | translated, side by side
        assert shown.size[0] > shown.size[1]


def test_translate_errors_are_one_line(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    stamp = tmp_path / "x.npy"
    np.save(stamp, np.zeros((32, 32, 3), np.float32))
    result = CliRunner().invoke(main, ["cyclegan", "translate", str(empty), str(stamp),
                                       "--out", str(tmp_path / "o")])
    assert result.exit_code == 1 and "holds no CycleGAN checkpoint" in result.output


def test_demo_section_quick(tmp_path):
    from galaxai.cli_cyclegan import demo_section
    from galaxai.viz.report import Report

    report = Report("demo")
    demo_section(report, tmp_path, quick=True, seed=0, progress=False)
    html = report.write(tmp_path / "report").read_text()
    assert "Simulated → real translation" in html and "raw simulations" in html
    assert (tmp_path / "cyclegan_grid.png").is_file()
