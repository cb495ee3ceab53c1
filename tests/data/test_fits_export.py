import numpy as np
import pytest
from astropy.io import fits

from galaxai.data.fits_export import write_fits_image, write_fits_stamps


def test_roundtrip_keeps_data_and_keywords(tmp_path):
    data = np.arange(2 * 5 * 4, dtype=np.float32).reshape(2, 5, 4)
    path = write_fits_image(tmp_path / "x.fits", data, {"GXMETHOD": "plrp", "GXPOLAR": -1})
    with fits.open(path) as hdul:
        np.testing.assert_array_equal(hdul[0].data, data)
        assert hdul[0].header["GXMETHOD"] == "plrp"
        assert hdul[0].header["GXPOLAR"] == -1


def test_long_keyword_rejected(tmp_path):
    with pytest.raises(ValueError, match="longer than 8"):
        write_fits_image(tmp_path / "x.fits", np.zeros((3, 3)), {"TOOLONGKEY": 1})
    assert not list(tmp_path.iterdir())


def test_stamps_one_file_each(tmp_path):
    stamps = np.random.default_rng(0).normal(size=(3, 3, 4, 4)).astype(np.float32)
    paths = write_fits_stamps(tmp_path, stamps, ["a", "b", "c"])
    assert [p.name for p in paths] == ["a.fits", "b.fits", "c.fits"]
    np.testing.assert_array_equal(fits.getdata(paths[1]), stamps[1])


def test_bad_shape(tmp_path):
    with pytest.raises(ValueError, match=r"\(H, W\)"):
        write_fits_image(tmp_path / "x.fits", np.zeros(4))
