"""Tests of galaxai.data.real: the reserved HDF half, isolated frames, COSMOS as observed, stamps."""
from __future__ import annotations

import numpy as np
import pytest
from astropy.io import fits
from PIL import Image

from galaxai.data import real
from galaxai.data.real import (HDF_RESERVED_COLUMN, HDF_TEST_ROW, RealFrames, ReservedDataError,
                               cosmos_frames, frames_from_dir, hdf_frames, hubble_deep_field,
                               real_blends)
from galaxai.data.sources import SourceError


@pytest.mark.parametrize("columns", [(0, 501), (400, 600), (500, 1000), (999, 1000), (-1, 10)])
def test_the_right_half_of_the_hdf_is_refused(columns):
    with pytest.raises(ReservedDataError, match="reserved for an independent evaluation"):
        hubble_deep_field(columns)


def test_hdf_reader_never_touches_the_right_half(monkeypatch):
    """Overwrite the right half of the image skimage returns: nothing galaxai makes may change."""
    from skimage import data

    original = data.hubble_deep_field

    def poisoned():
        image = original().copy()
        image[:, HDF_RESERVED_COLUMN:] = 255  # overwritten, never read
        return image

    clean = hdf_frames("test", seed=1)
    monkeypatch.setattr(data, "hubble_deep_field", poisoned)
    assert hubble_deep_field().shape[1] == HDF_RESERVED_COLUMN
    again = hdf_frames("test", seed=1)
    np.testing.assert_array_equal(clean.display, again.display)


@pytest.fixture(scope="module")
def hdf_train():
    return hdf_frames("train", copies=2, seed=3)


def test_hdf_frames_are_centred_isolated_and_split_by_row(hdf_train):
    test = hdf_frames("test", seed=3)
    assert (hdf_train.catalogue["y"] < HDF_TEST_ROW).all()
    assert (test.catalogue["y"] >= HDF_TEST_ROW).all()
    assert len(hdf_train) > 100 and len(test) > 30
    d = hdf_train.display
    assert d.shape[1:] == (142, 142, 3) and d.dtype == np.float32
    assert 0.0 <= d.min() and d.max() <= 1.0
    # the galaxy is centred: the brightest 5x5 patch of the mean frame sits at the centre
    mean = d.mean(axis=(0, 3))
    peak = np.unravel_index(np.argmax(mean), mean.shape)
    assert abs(peak[0] - 70.5) <= 3 and abs(peak[1] - 70.5) <= 3
    # the sky statistics describe the frame borders
    border = d[:, :10].reshape(len(d), -1, 3)
    np.testing.assert_allclose(hdf_train.sky_mean.mean(0), np.median(border, axis=1).mean(0),
                               atol=0.02)


def test_hdf_sizes_follow_the_requested_range(hdf_train):
    cat = hdf_train.catalogue
    np.testing.assert_allclose(cat["hlr_px"], cat["hlr_native"] * cat["zoom"], rtol=0.02)
    assert cat["zoom"].between(0.5 - 1e-6, 4.0 + 0.2).all()
    assert cat["hlr_px"].min() >= 1.9 and cat["hlr_px"].max() > 10


def test_cosmos_frames_split_and_look():
    train, test = cosmos_frames("train", seed=0), cosmos_frames("test", seed=0)
    ks_train = {int(o.split(":")[1]) for o in train.catalogue["origin"]}
    ks_test = {int(o.split(":")[1]) for o in test.catalogue["origin"]}
    assert len(ks_train) == 80 and len(ks_test) == 20 and not ks_train & ks_test
    assert all(k % 5 == 4 for k in ks_test)
    # a dark sky with HST noise, brighter centre
    assert np.median(train.sky_mean) < 0.12 and (train.sky_std > 0).all()
    centre = train.display[:, 66:76, 66:76].mean()
    assert centre > train.sky_mean.mean() + 0.05


def _write_stamps(folder, n=3):
    folder.mkdir()
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:48, :48]
    for i in range(n):
        galaxy = 200.0 * np.exp(-((yy - 23.5) ** 2 + (xx - 23.5) ** 2) / (2 * (3 + i) ** 2))
        cube = np.stack([galaxy * f for f in (0.6, 0.8, 1.0)]) + rng.normal(5, 1, (3, 48, 48))
        fits.PrimaryHDU(cube.astype(np.float32)).writeto(folder / f"g{i}.fits")
    (folder / "broken.fits").write_bytes(b"not a fits file")


def test_fits_directory_frames_skip_bad_files(tmp_path):
    _write_stamps(tmp_path / "stamps")
    frames = frames_from_dir(tmp_path / "stamps", "fits", seed=0)
    assert len(frames) == 3
    assert [p for p, _ in frames.report.skipped] == [str(tmp_path / "stamps" / "broken.fits")]
    centre = frames.display[:, 68:74, 68:74].mean(axis=(1, 2, 3))
    assert (centre > frames.sky_mean.mean(axis=1) + 0.2).all()
    # i (the brightest band here) is shown as red
    assert frames.display[:, 70, 70, 0].mean() > frames.display[:, 70, 70, 2].mean()


def test_jpeg_directory_and_empty_folder(tmp_path):
    folder = tmp_path / "jpegs"
    folder.mkdir()
    img = np.zeros((64, 64, 3), dtype=np.uint8)
    img[28:36, 28:36] = 230
    Image.fromarray(img).save(folder / "a.jpg", quality=95)
    Image.fromarray(img).save(folder / "b.png")
    frames = frames_from_dir(folder, "jpeg")
    assert len(frames) == 2 and frames.display[:, 71, 71].min() > 0.7
    with pytest.raises(SourceError, match="holds no fits stamps"):
        frames_from_dir(folder, "fits")


def test_real_blends_pair_two_different_galaxies(hdf_train):
    batch = real_blends(hdf_train, 40, seed=5)
    cat = batch.catalogue
    assert (cat["id_a"] != cat["id_b"]).all()
    assert batch.blend.shape == (40, 3, 80, 80)
    np.testing.assert_array_equal(batch.blend, np.maximum(batch.target_a, batch.target_b))
    summed = real_blends(hdf_train, 40, seed=5, merge="sum")
    np.testing.assert_array_equal(summed.target_a, batch.target_a)
    sky_b = hdf_train.sky_mean[cat["id_b"].to_numpy()][:, :, None, None]
    np.testing.assert_allclose(summed.blend, np.clip(batch.target_a + batch.target_b - sky_b, 0, 1),
                               atol=1e-6)
    # noise padding of B comes from B's own sky statistics, not zeros
    filled = batch.fill_mask_b[:, 0]
    assert filled.any()
    assert batch.target_b.transpose(0, 2, 3, 1)[filled].mean() > 0.02


def test_concat_keeps_rows_aligned(hdf_train):
    both = RealFrames.concat([hdf_train, cosmos_frames("test")])
    assert len(both) == len(both.catalogue) == len(both.sky_mean)
    assert set(both.catalogue["source"]) == {"hdf", "cosmos"}


def test_unknown_source_is_named():
    with pytest.raises(ValueError, match="source must be one of"):
        real.real_frames("sdss")
    with pytest.raises(ValueError, match="needs directory"):
        real.real_frames("fits")
