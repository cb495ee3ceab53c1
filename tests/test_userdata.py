"""Tests of `galaxai deblend` for users' files (galaxai.userdata) and the API's size handling."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from astropy.io import fits
from click.testing import CliRunner
from PIL import Image

import galaxai
from galaxai.api import StampSizeWarning
from galaxai.cli import main
from galaxai.data.sources import SourceError
from galaxai.userdata import cut_pair_stamps, find_blended_pairs, read_stamps


def _gauss(shape, x0, y0, sigma, flux):
    yy, xx = np.mgrid[:shape[0], :shape[1]]
    return flux * np.exp(-((xx - x0) ** 2 + (yy - y0) ** 2) / (2 * sigma ** 2))


def _field(separation=14.0, seed=0):
    """A 3-band field: one touching pair (A brighter, at 150,150) and one isolated source."""
    rng = np.random.default_rng(seed)
    f = (_gauss((300, 300), 150, 150, 4, 100) + _gauss((300, 300), 150 + separation, 150, 3, 60)
         + _gauss((300, 300), 60, 60, 4, 80))
    return np.stack([f * 0.6, f * 0.8, f]) + rng.normal(0, 1, (3, 300, 300))


def test_touching_sources_make_one_pair_with_the_brighter_as_a():
    pairs = find_blended_pairs(_field())
    assert len(pairs) == 1
    p = pairs[0]
    assert abs(p.x_a - 150) < 1 and abs(p.x_b - 164) < 1.5 and p.flux_a > p.flux_b
    # isolated sources alone, or sources far apart, make no pair
    assert find_blended_pairs(_field(separation=40)) == []


def test_pair_stamps_are_centred_on_a_and_grow_for_wide_pairs():
    data = _field()
    pairs = find_blended_pairs(data)
    stamps, sides = cut_pair_stamps(data, pairs)
    assert stamps.shape == (1, 3, 80, 80) and sides == [80]
    np.testing.assert_allclose(stamps[0, :, 40, 40], data[:, 150, 150])
    wide, sides = cut_pair_stamps(data, pairs, separation_in_stamp=7.0)
    assert sides[0] == int(np.ceil(80 * pairs[0].separation / 7.0)) > 80


def test_read_stamps_formats(tmp_path):
    rgb = np.zeros((80, 80, 3), dtype=np.uint8)
    rgb[35:45, 35:45] = 200
    Image.fromarray(rgb).save(tmp_path / "s.png")
    np.testing.assert_allclose(read_stamps(tmp_path / "s.png")[0], rgb / 255.0, atol=1e-6)
    np.save(tmp_path / "s.npy", np.full((2, 80, 80, 3), 0.5, dtype=np.float32))
    assert read_stamps(tmp_path / "s.npy").shape == (2, 80, 80, 3)
    np.save(tmp_path / "bad.npy", np.full((80, 80, 3), 7.0))
    with pytest.raises(SourceError, match="outside"):
        read_stamps(tmp_path / "bad.npy")
    # one file per band is read as one cube: i (brightest here) shows as red
    g = _gauss((80, 80), 39.5, 39.5, 4, 100) + np.random.default_rng(1).normal(0, 1, (80, 80))
    for band, f in zip("gri", (0.3, 0.6, 1.0)):
        fits.PrimaryHDU((g * f).astype(np.float32)).writeto(tmp_path / f"obj_{band}.fits")
    stamp = read_stamps(tmp_path / "obj_r.fits")[0]
    assert stamp.shape == (80, 80, 3) and stamp[40, 40, 0] > stamp[40, 40, 2]
    with pytest.raises(SourceError, match="unknown file type"):
        read_stamps(tmp_path / "x.tiff")


def test_deblend_resamples_other_sizes_with_a_warning_and_refuses_non_square():
    x = np.random.default_rng(0).uniform(0, 1, (2, 64, 64, 3)).astype(np.float32)
    with pytest.warns(StampSizeWarning, match="64×64"):
        a, b = galaxai.deblend(x)
    assert a.shape == b.shape == x.shape
    with pytest.raises(ValueError, match="square"):
        galaxai.deblend(x[:, :, :40])


def test_discriminate_matches_the_discriminator_by_hand():
    import torch

    from galaxai.api import DEFAULT_DISCRIMINATOR
    from galaxai.train.checkpoints import load_discriminator

    x = np.random.default_rng(2).uniform(0, 1, (3, 80, 80, 3)).astype(np.float32)
    p = galaxai.discriminate(x)
    D, _ = load_discriminator(DEFAULT_DISCRIMINATOR)
    with torch.no_grad():
        # D reads [-1, 1]: the display values scaled by hand
        want = torch.sigmoid(D(torch.from_numpy(2 * x - 1).permute(0, 3, 1, 2)).reshape(-1)).numpy()
    assert p.shape == (3,) and p.dtype == np.float32
    np.testing.assert_allclose(p, want, rtol=1e-5)
    assert float(galaxai.discriminate(x[0])) == pytest.approx(float(p[0]), rel=1e-4, abs=1e-6)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        galaxai.discriminate(x * 3)


def test_cli_deblend_writes_outputs_and_skips_bad_files(tmp_path):
    fits.PrimaryHDU(_field().astype(np.float32)).writeto(tmp_path / "field.fits")
    rgb = (np.random.default_rng(0).uniform(0, 0.2, (80, 80, 3)) * 255).astype(np.uint8)
    Image.fromarray(rgb).save(tmp_path / "stamp.png")
    (tmp_path / "broken.fits").write_bytes(b"not fits")
    out = tmp_path / "out"
    result = CliRunner().invoke(main, ["deblend", str(tmp_path / "field.fits"),
                                       str(tmp_path / "stamp.png"), str(tmp_path / "broken.fits"),
                                       "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "broken.fits" in result.output
    cat = pd.read_parquet(out / "catalogue.parquet")
    assert len(cat) == 2 and cat.equals(pd.read_csv(out / "catalogue.csv").astype(cat.dtypes))
    field_row = cat[cat["input"].str.endswith("field.fits")].iloc[0]
    assert field_row["separation_px"] == pytest.approx(14, abs=1.5)
    assert cat["p_real_a"].between(0, 1).all() and cat["p_real_b"].between(0, 1).all()
    for name in cat["pair_id"]:
        with fits.open(out / f"{name}_a.fits") as hdul:
            assert hdul[0].data.shape == (3, 80, 80)
        assert (out / f"{name}.png").is_file()


def test_deblend_and_discriminate_take_channel_first_input():
    x = np.random.default_rng(3).uniform(0, 1, (2, 80, 80, 3)).astype(np.float32)
    a_last, b_last = galaxai.deblend(x)
    a_first, b_first = galaxai.deblend(np.moveaxis(x, -1, 1), channel_axis=1)
    assert a_first.shape == (2, 3, 80, 80)
    np.testing.assert_allclose(np.moveaxis(a_first, 1, -1), a_last, atol=1e-6)
    np.testing.assert_allclose(np.moveaxis(b_first, 1, -1), b_last, atol=1e-6)
    np.testing.assert_allclose(galaxai.discriminate(np.moveaxis(x, -1, 1), channel_axis=1),
                               galaxai.discriminate(x), rtol=1e-4)
    with pytest.raises(ValueError, match="channel-first"):
        galaxai.deblend(x, channel_axis=1)
    with pytest.raises(ValueError, match="channel_axis"):
        galaxai.deblend(x, channel_axis=2)


def test_shipped_models_are_selected_by_name():
    from galaxai.api import DEFAULT_MODEL, shipped_models

    names = shipped_models()
    assert {"small", "realsky", DEFAULT_MODEL} <= set(names)
    x = np.random.default_rng(4).uniform(0, 1, (2, 80, 80, 3)).astype(np.float32)
    a_default, _ = galaxai.deblend(x)
    a_named, _ = galaxai.deblend(x, checkpoint=DEFAULT_MODEL)
    a_small, _ = galaxai.deblend(x, checkpoint="small")
    np.testing.assert_array_equal(a_default, a_named)
    assert not np.array_equal(a_default, a_small)
    np.testing.assert_array_equal(galaxai.discriminate(x, checkpoint=DEFAULT_MODEL),
                                  galaxai.discriminate(x))
    assert not np.array_equal(galaxai.discriminate(x, checkpoint="small"), galaxai.discriminate(x))
    with pytest.raises(FileNotFoundError, match="shipped model name"):
        galaxai.deblend(x, checkpoint="nonesuch")


def test_the_default_ships_its_architecture_and_beats_sep_on_held_out_real_blends():
    """The shipped default loads with the generator it was trained as (dilated trunk,
    centre-offset inputs), runs as a self-ensemble as its sidecar says, and deblends real
    test-split galaxies better than SEP."""
    from galaxai.api import DEFAULT_MODEL
    from galaxai.data.real import RealFrames, cosmos_frames, hdf_frames, real_blends
    from galaxai.metrics import psnr
    from galaxai.models.classical import sep_deblend
    from galaxai.train.checkpoints import load_generator, shipped_file

    G, info = load_generator(shipped_file(DEFAULT_MODEL, "deblender"))
    assert G.config.coord_channels and G.config.shared_dilations == (1, 3, 9)
    assert info["config"]["pixel_loss"] == "log-mse"
    assert info["inference"] == {"self_ensemble": True}
    frames = RealFrames.concat([hdf_frames("test", seed=5), cosmos_frames("test", seed=5)])
    batch = real_blends(frames, 48, seed=5)
    blend = np.moveaxis(batch.blend, 1, -1)
    truth = [np.moveaxis(t, 1, -1) for t in (batch.target_a, batch.target_b)]

    def pooled(outputs):
        return np.mean([psnr(o, t, channel_axis=-1).mean() for o, t in zip(outputs, truth)])

    default, sep = pooled(galaxai.deblend(blend)), pooled(sep_deblend(blend))
    single_pass = pooled(galaxai.deblend(blend, self_ensemble=False))
    print(f"default {default:.2f} dB, one pass {single_pass:.2f}, SEP {sep:.2f}")
    assert default > sep + 1.0
    assert default > single_pass


def test_inputs_sharing_a_stem_do_not_overwrite_each_other(tmp_path):
    from galaxai.userdata import deblend_files

    rgb = (np.random.default_rng(1).uniform(0, 0.3, (80, 80, 3)) * 255).astype(np.uint8)
    Image.fromarray(rgb).save(tmp_path / "obj.png")
    np.save(tmp_path / "obj.npy", np.full((80, 80, 3), 0.2, dtype=np.float32))
    job = deblend_files([tmp_path / "obj.png", tmp_path / "obj.npy"], tmp_path / "out",
                        checkpoint="realsky")
    assert len(job.catalogue) == 2 and job.catalogue["pair_id"].is_unique
    for name in job.catalogue["pair_id"]:
        assert (tmp_path / "out" / f"{name}_a.fits").is_file()
    # D is the one shipped with the chosen generator
    a = fits.getdata(tmp_path / "out" / f"{job.catalogue['pair_id'][0]}_a.fits")
    want = galaxai.discriminate(np.moveaxis(a, 0, -1), checkpoint="realsky")
    assert job.catalogue["p_real_a"][0] == pytest.approx(float(want), rel=1e-5)


def test_big_endian_arrays_from_fits_are_accepted():
    x = np.random.default_rng(5).uniform(0, 1, (1, 80, 80, 3)).astype(">f4")
    a, _ = galaxai.deblend(x)
    a_native, _ = galaxai.deblend(x.astype("<f4"))
    np.testing.assert_array_equal(a, a_native)
    assert galaxai.discriminate(x)[0] == galaxai.discriminate(x.astype("<f4"))[0]
