"""Planted artefacts: exact masks, values kept in [0, 1], inputs untouched."""
import numpy as np
import pytest

from galaxai.diagnose.artefacts import ARTEFACTS, add_colour_blotch, add_ringing_patch, plant_artefact


@pytest.fixture()
def images():
    return np.random.default_rng(0).uniform(0.1, 0.6, (6, 3, 40, 40)).astype(np.float32)


@pytest.mark.parametrize("kind", ARTEFACTS)
def test_mask_is_exactly_the_changed_pixels(images, kind):
    before = images.copy()
    planted = plant_artefact(images, kind, seed=4)
    np.testing.assert_array_equal(images, before)
    changed = (planted.images != images).any(1)
    np.testing.assert_array_equal(changed, planted.mask)
    assert planted.images.dtype == images.dtype and planted.mask.any(axis=(1, 2)).all()
    assert planted.images.min() >= 0 and planted.images.max() <= 1


def test_kind_specific_content(images):
    band = plant_artefact(images, "zero_band", seed=1)
    assert (band.images[:, :, band.mask[0]][0] == 0).all() and band.mask[0].sum() == 40 * 5
    blotch = add_colour_blotch(images, radius=3, amplitude=0.2, channel=1)
    inside = blotch.mask
    np.testing.assert_allclose(blotch.images[:, 1][inside], images[:, 1][inside] + 0.2, rtol=1e-6)
    np.testing.assert_array_equal(blotch.images[:, 0], images[:, 0])
    assert inside[0].sum() == 29  # lattice points with dy^2 + dx^2 <= 9
    ring = add_ringing_patch(images, size=8, amplitude=0.05, period=4.0)
    rows, cols = np.nonzero(ring.mask[0])
    diff = ring.images[0, 0, rows.min(), cols.min():cols.max() + 1] - images[0, 0, rows.min(), cols.min():cols.max() + 1]
    np.testing.assert_allclose(diff, 0.05 * np.cos(2 * np.pi * (np.arange(8) + 0.5) / 4), atol=1e-6)


def test_channel_last_and_bad_input(images):
    last = np.moveaxis(images, 1, -1)
    planted = plant_artefact(last, "colour_blotch", channel_axis=-1, seed=2)
    np.testing.assert_array_equal(planted.mask, plant_artefact(images, "colour_blotch", seed=2).mask)
    with pytest.raises(ValueError, match="artefact kind"):
        plant_artefact(images, "scratch")
    with pytest.raises(ValueError, match="channel"):
        add_colour_blotch(images, channel=5)
