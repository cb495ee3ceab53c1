"""Tests of galaxai.data.sources on fixture JPEGs and FITS files made here (nothing downloads)."""
import numpy as np
import pandas as pd
import pytest
from astropy.coordinates import SkyCoord
from astropy.io import fits
from astropy.wcs import WCS
from galaxy_zoo_layout import smooth_rgb, write_kaggle_layout

from galaxai.data.sources import (
    GALAXY_ZOO_CLASSES,
    SourceError,
    fits_cutouts,
    load_fits_dir,
    load_galaxy_zoo,
    paper_crop,
    read_fits_stamp,
    read_galaxy_zoo_labels,
    read_jpeg,
)


@pytest.fixture
def kaggle(tmp_path):
    """A small Kaggle layout: 3 good images, one corrupt, one truncated, one grey, one too small,
    one without a CSV row."""
    good = [100008, 100023, 100053]
    originals = {gid: smooth_rgb(k) for k, gid in enumerate(good)}
    odd = {100122: smooth_rgb(5)[..., 0], 100123: smooth_rgb(6, size=100),
           999999: smooth_rgb(7)}  # grey, too small, no label row
    ids = good + [100078, 100090, 100122, 100123]
    table = write_kaggle_layout(tmp_path, {**originals, **odd}, label_ids=ids)
    img_dir = tmp_path / "images_training_rev1"
    (img_dir / "100078.jpg").write_bytes(b"this is not a jpeg")
    full = (img_dir / "100008.jpg").read_bytes()
    (img_dir / "100090.jpg").write_bytes(full[: len(full) // 2])
    return tmp_path, originals, table


def test_galaxy_zoo_class_names():
    assert len(GALAXY_ZOO_CLASSES) == 37
    assert GALAXY_ZOO_CLASSES[0] == "Class1.1" and GALAXY_ZOO_CLASSES[-1] == "Class11.6"
    assert "Class8.7" in GALAXY_ZOO_CLASSES and "Class8.8" not in GALAXY_ZOO_CLASSES


def test_load_galaxy_zoo_skips_and_reports_bad_files(kaggle):
    root, originals, table = kaggle
    data = load_galaxy_zoo(root)
    assert data.frames.shape == (3, 424, 424, 3) and data.frames.dtype == np.float32
    assert 0 <= data.frames.min() and data.frames.max() <= 1
    assert data.ids.tolist() == [100008, 100023, 100053]
    for frame, gid in zip(data.frames, data.ids):
        assert np.abs(frame - originals[gid] / 255.0).mean() < 0.02
    expected = table.set_index("GalaxyID").loc[data.ids]
    np.testing.assert_allclose(data.labels.to_numpy(), expected.to_numpy())
    assert list(data.labels.columns) == list(GALAXY_ZOO_CLASSES)
    skipped = dict(data.report.skipped)
    assert len(skipped) == 5 and not data.report.ok
    reasons = {p.rsplit("/", 1)[-1]: r for p, r in skipped.items()}
    assert "not a readable JPEG" in reasons["100078.jpg"]
    assert "not a readable JPEG" in reasons["100090.jpg"]
    assert "RGB" in reasons["100122.jpg"]
    assert "expected 424x424" in reasons["100123.jpg"]
    assert "no row in training_solutions_rev1.csv" in reasons["999999.jpg"]
    assert "5 skipped" in data.report.summary()


def test_load_galaxy_zoo_ids_limit_and_unlabelled(kaggle):
    root, _, _ = kaggle
    data = load_galaxy_zoo(root, ids=[100053, 100008, 424242], labels=True)
    assert data.ids.tolist() == [100053, 100008]
    assert data.report.skipped[0][0].endswith("424242.jpg")
    assert load_galaxy_zoo(root, limit=1).ids.tolist() == [100008]
    no_labels = load_galaxy_zoo(root, labels=False)
    assert no_labels.labels is None and 999999 in no_labels.ids.tolist()


def test_galaxy_zoo_directory_errors(kaggle, tmp_path):
    root, _, _ = kaggle
    with pytest.raises(SourceError, match="does not exist"):
        load_galaxy_zoo(tmp_path / "nowhere")
    with pytest.raises(SourceError, match="images_test_rev1"):
        load_galaxy_zoo(root, split="test")
    (root / "training_solutions_rev1.csv").unlink()
    with pytest.raises(SourceError, match="training_solutions_rev1.csv not found.*labels=False"):
        load_galaxy_zoo(root)
    with pytest.raises(SourceError, match=r"100078\.jpg is not a readable JPEG"):
        read_jpeg(root / "images_training_rev1" / "100078.jpg")
    empty = tmp_path / "empty"
    (empty / "images_training_rev1").mkdir(parents=True)
    (empty / "images_training_rev1" / "1.jpg").write_bytes(b"junk")
    with pytest.raises(SourceError, match="no Galaxy Zoo image could be read"):
        load_galaxy_zoo(empty, labels=False)


def test_bad_label_file(tmp_path):
    pd.DataFrame({"GalaxyID": [1], "Class1.1": [0.5]}).to_csv(tmp_path / "t.csv", index=False)
    with pytest.raises(SourceError, match="lacks vote-fraction column"):
        read_galaxy_zoo_labels(tmp_path / "t.csv")
    pd.DataFrame({"id": [1]}).to_csv(tmp_path / "u.csv", index=False)
    with pytest.raises(SourceError, match="expected 'GalaxyID'"):
        read_galaxy_zoo_labels(tmp_path / "u.csv")


def test_paper_crop():
    frames = np.random.default_rng(1).random((2, 424, 424, 3)).astype(np.float32)
    out = paper_crop(frames)
    assert out.shape == (2, 80, 80, 3) and out.dtype == np.float32
    np.testing.assert_allclose(out, frames[:, 92:332, 92:332][:, 1::3, 1::3], atol=1e-6)
    with pytest.raises(ValueError, match=r"\(N, F, F, 3\)"):
        paper_crop(frames[..., 0])


def celestial_header(size, ra=189.2, dec=62.2, scale=0.04 / 3600):
    w = WCS(naxis=2)
    w.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    w.wcs.crval = [ra, dec]
    w.wcs.crpix = [(size + 1) / 2, (size + 1) / 2]
    w.wcs.cdelt = [-scale, scale]
    return w.to_header()


@pytest.fixture
def fits_dir(tmp_path):
    d = tmp_path / "stamps"
    d.mkdir()
    rng = np.random.default_rng(0)
    cubes = {}
    for name in ("g1", "g2", "g3"):
        cube = rng.normal(size=(3, 32, 32)).astype(np.float32)
        cubes[name] = cube
        fits.PrimaryHDU(cube, header=celestial_header(32)).writeto(d / f"{name}.fits")
    # data in the first extension, empty primary
    ext = rng.normal(size=(3, 32, 32)).astype(np.float32)
    cubes["g4"] = ext
    fits.HDUList([fits.PrimaryHDU(), fits.ImageHDU(ext)]).writeto(d / "g4.fits")
    fits.PrimaryHDU(np.zeros((16, 16), np.float32)).writeto(d / "small.fits")
    nan = rng.normal(size=(3, 32, 32)).astype(np.float32)
    nan[1, 4:6, 4:6] = np.nan
    cubes["nan"] = nan
    fits.PrimaryHDU(nan).writeto(d / "nan.fits")
    (d / "corrupt.fits").write_bytes(b"SIMPLE = nonsense" * 10)
    good = (d / "g1.fits").read_bytes()
    (d / "truncated.fits").write_bytes(good[:4000])
    fits.PrimaryHDU(np.zeros((2, 2, 8, 8), np.float32)).writeto(d / "hyper.fits")
    return d, cubes


def test_load_fits_dir(fits_dir):
    d, cubes = fits_dir
    res = load_fits_dir(d)
    names = [p.rsplit("/", 1)[-1] for p in res.report.loaded]
    assert names == ["g1.fits", "g2.fits", "g3.fits", "g4.fits"]
    assert res.images.shape == (4, 3, 32, 32)
    for img, name in zip(res.images, names):
        np.testing.assert_array_equal(img, cubes[name[:-5]])
    cat = res.catalogue
    assert cat.hdu.tolist() == [0, 0, 0, 1]
    assert cat.has_wcs.tolist() == [True, True, True, False]
    assert cat.ra[0] == pytest.approx(189.2) and cat.dec[0] == pytest.approx(62.2)
    assert "CTYPE1" in cat.wcs[0] and "NAXIS" in cat.header[0]
    reasons = {p.rsplit("/", 1)[-1]: r for p, r in res.report.skipped}
    assert set(reasons) == {"small.fits", "nan.fits", "corrupt.fits", "truncated.fits", "hyper.fits"}
    assert "differs from the most common shape" in reasons["small.fits"]
    assert "4 NaN/inf pixel(s)" in reasons["nan.fits"] and "nan_policy" in reasons["nan.fits"]
    assert "not a readable FITS file" in reasons["corrupt.fits"]
    assert "re-download" in reasons["truncated.fits"]
    assert "(H, W) or a (C, H, W) cube" in reasons["hyper.fits"]


def test_fits_nan_policies(fits_dir):
    d, cubes = fits_dir
    kept = load_fits_dir(d, nan_policy="keep")
    row = kept.catalogue.file.str.endswith("nan.fits").to_numpy()
    assert kept.catalogue.n_nan[row].item() == 4
    assert np.isnan(kept.images[row]).sum() == 4
    filled = load_fits_dir(d, nan_policy="noise")
    img = filled.images[filled.catalogue.file.str.endswith("nan.fits").to_numpy()][0]
    assert np.isfinite(img).all()
    good = np.isfinite(cubes["nan"])
    np.testing.assert_array_equal(img[good], cubes["nan"][good])
    assert np.abs(img[~good]).max() < 6  # sky-like values for unit-sigma noise
    with pytest.raises(ValueError, match="nan_policy"):
        load_fits_dir(d, nan_policy="drop")


def test_fits_errors(fits_dir, tmp_path):
    d, _ = fits_dir
    with pytest.raises(SourceError, match="corrupt.fits is not a readable FITS file"):
        read_fits_stamp(d / "corrupt.fits")
    with pytest.raises(SourceError, match="nan.fits contains 4 NaN"):
        read_fits_stamp(d / "nan.fits", allow_nan=False)
    with pytest.raises(SourceError, match="does not exist"):
        load_fits_dir(tmp_path / "missing")
    (tmp_path / "void").mkdir()
    with pytest.raises(SourceError, match="no FITS files"):
        load_fits_dir(tmp_path / "void")
    (tmp_path / "file.txt").write_text("x")
    with pytest.raises(SourceError, match="is not a directory"):
        load_fits_dir(tmp_path / "file.txt")


@pytest.fixture
def deep_field(tmp_path):
    size = 200
    yy, xx = np.mgrid[:size, :size].astype(np.float32)
    paths = []
    for band in range(2):
        fits.PrimaryHDU(xx + 1000 * yy + 1e6 * band, header=celestial_header(size)).writeto(
            tmp_path / f"hdf_b{band}.fits")
        paths.append(tmp_path / f"hdf_b{band}.fits")
    return paths


def test_fits_cutouts_pixel_and_sky_positions(deep_field):
    pos = np.array([[50.0, 60.0], [120.0, 100.0], [5.0, 100.0]])
    res = fits_cutouts(deep_field, pos, 21)
    assert res.images.shape == (2, 2, 21, 21)
    assert [r for r, _ in res.report.skipped] == ["position 2"]
    assert "mode='partial'" in res.report.skipped[0][1]
    # centre pixel of stamp 0 is (x=50, y=60); values encode x + 1000 y (+1e6 per band)
    assert res.images[0, 0, 10, 10] == 50 + 1000 * 60
    assert res.images[0, 1, 10, 10] == 50 + 1000 * 60 + 1e6
    assert res.images[1, 0, 0, 0] == (120 - 10) + 1000 * (100 - 10)
    assert res.catalogue.position.tolist() == [0, 1]
    sky = SkyCoord(res.catalogue.ra.to_numpy(), res.catalogue.dec.to_numpy(), unit="deg")
    again = fits_cutouts(deep_field, sky, 21)
    np.testing.assert_array_equal(again.images, res.images)
    partial = fits_cutouts(deep_field[0], pos, 21, mode="partial", fill_value=-1.0)
    assert partial.images.shape == (3, 1, 21, 21)
    assert (partial.images[2, 0, :, :5] == -1).all() and partial.images[2, 0, 10, 10] == 5 + 100000


def test_fits_cutouts_errors(deep_field, tmp_path):
    with pytest.raises(ValueError, match=r"positions must be \(N, 2\)"):
        fits_cutouts(deep_field, [1.0, 2.0], 11)
    fits.PrimaryHDU(np.zeros((50, 50), np.float32)).writeto(tmp_path / "other.fits")
    with pytest.raises(SourceError, match="share one pixel grid"):
        fits_cutouts([deep_field[0], tmp_path / "other.fits"], [[10, 10]], 11)
    with pytest.raises(SourceError, match="no celestial WCS"):
        fits_cutouts(tmp_path / "other.fits", SkyCoord([189.2], [62.2], unit="deg"), 11)
    with pytest.raises(SourceError, match="no stamp could be cut"):
        fits_cutouts(deep_field, [[-100.0, -100.0]], 11)
