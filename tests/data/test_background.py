"""Tests of galaxai.data.background: sky statistics away from sources and noise filling."""
from __future__ import annotations

import numpy as np
import pytest

from galaxai.data.background import noise_fill, sky_statistics, source_mask

H = 96
SIGMA = np.array([2.0, 3.0, 5.0])
MEAN = np.array([10.0, -1.0, 0.5])


def _galaxy_batch(n: int = 4, seed: int = 0) -> np.ndarray:
    """(n, 3, H, H) Gaussian sky of known mean/sigma per channel plus a bright extended source."""
    rng = np.random.default_rng(seed)
    sky = MEAN[None, :, None, None] + SIGMA[None, :, None, None] * rng.standard_normal((n, 3, H, H))
    y, x = np.mgrid[:H, :H]
    source = 400.0 * np.exp(-0.5 * (((x - 40) / 6.0) ** 2 + ((y - 52) / 4.0) ** 2))
    return sky + source[None, None]


def test_sky_statistics_recovers_known_sigma_despite_a_source():
    images = _galaxy_batch()
    mean, median, std = sky_statistics(images)
    assert mean.shape == median.shape == std.shape == (4, 3)
    np.testing.assert_allclose(std, np.broadcast_to(SIGMA, (4, 3)), rtol=0.04)
    assert (np.abs(mean - MEAN) < 0.1 * SIGMA).all()
    assert (np.abs(median - MEAN) < 0.1 * SIGMA).all()
    # Faint extended wings survive sigma clipping; the source mask removes them.
    y, x = np.mgrid[:H, :H]
    halo = images + 6.0 * SIGMA[None, :, None, None] * np.exp(-np.hypot(x - 40, y - 52) / 15.0)
    _, _, raw = sky_statistics(halo, detect=False)
    _, _, masked = sky_statistics(halo)
    assert (raw > 1.08 * SIGMA).all()
    np.testing.assert_allclose(masked, np.broadcast_to(SIGMA, (4, 3)), rtol=0.05)


def test_channel_last_gives_the_same_statistics():
    images = _galaxy_batch(2)
    first = sky_statistics(images, channel_axis=1)
    last = sky_statistics(np.moveaxis(images, 1, -1), channel_axis=-1)
    for a, b in zip(first, last):
        np.testing.assert_allclose(a, b)


def test_explicit_mask_excludes_pixels():
    images = _galaxy_batch(2, seed=1)
    images[:, :, :30, :30] = 1e4  # a bright artefact, e.g. a padded region
    mask = np.zeros((H, H), bool)
    mask[:30, :30] = True
    _, _, std = sky_statistics(images, mask=mask, detect=False, sigma=10.0)
    _, _, std_source = sky_statistics(images, mask=mask)  # mask + detection together
    np.testing.assert_allclose(std_source, np.broadcast_to(SIGMA, (2, 3)), rtol=0.05)
    assert (std > 2 * SIGMA).all()  # the galaxy is still in when detection is off


def test_source_mask_covers_the_source_only():
    images = _galaxy_batch(2)
    m = source_mask(images)
    assert m.shape == (2, H, H) and m.dtype == bool
    assert m[:, 52, 40].all() and m[:, 52, 55].all()
    # Pure sky: noise peaks are not sources.
    sky = np.random.default_rng(3).normal(0, 1, (4, 3, H, H))
    assert source_mask(sky).mean() < 0.01
    assert 0.03 < m.mean() < 0.4


def test_statistics_nan_when_everything_is_masked():
    images = _galaxy_batch(2)
    mask = np.zeros((2, 1, H, H), bool)
    mask[0] = True
    mean, median, std = sky_statistics(images, mask=mask)
    assert np.isnan(mean[0]).all() and np.isnan(std[0]).all()
    assert np.isfinite(std[1]).all()


def test_noise_fill_replaces_only_masked_pixels_with_matching_statistics():
    images = _galaxy_batch(3).astype(np.float32)
    mask = np.zeros((3, 1, H, H), bool)
    mask[:, :, :, -25:] = True  # a padded strip on the right (no source there)
    out = noise_fill(images, mask, np.random.default_rng(5))
    assert out.shape == images.shape and out.dtype == np.float32
    keep = ~np.broadcast_to(mask, images.shape)
    assert np.array_equal(out[keep], images[keep])
    filled = out[:, :, :, -25:].astype(np.float64)
    assert (np.abs(filled.mean(axis=(0, 2, 3)) - MEAN) < 0.05 * SIGMA).all()
    np.testing.assert_allclose(filled.std(axis=(0, 2, 3)), SIGMA, rtol=0.04)
    # Deterministic for a seed, different for another.
    again = noise_fill(images, mask, np.random.default_rng(5))
    other = noise_fill(images, mask, np.random.default_rng(6))
    assert again.tobytes() == out.tobytes() and not np.array_equal(other, out)


def test_noise_fill_channel_last_display_images_stay_in_range():
    rng = np.random.default_rng(2)
    # Display-like sky: a zero-clipped Gaussian in [0, 1], channel-last.
    disp = np.clip(rng.normal(0.0, 0.05, (2, 64, 64, 3)), 0, 1).astype(np.float32)
    disp[:, 20:40, 20:40] = 0.8  # a "galaxy"
    mask = np.zeros((2, 64, 64), bool)
    mask[:, :, :12] = True
    for method in ("gaussian", "resample"):
        out = noise_fill(disp, mask, rng, channel_axis=-1, method=method)
        assert out.shape == disp.shape and out.min() >= 0 and out.max() <= 1
        assert np.array_equal(out[:, :, 12:], disp[:, :, 12:])
    # Resampling reproduces the non-Gaussian sky: about half the pixels are exactly 0.
    out = noise_fill(disp, mask, rng, channel_axis=-1, method="resample")
    zero_share = (out[:, :, :12] == 0).mean()
    assert zero_share == pytest.approx((disp[:, 45:, 45:] == 0).mean(), abs=0.05)
    # clip=None lets Gaussian values leave the data range.
    free = noise_fill(disp, mask, rng, channel_axis=-1, clip=None)
    assert free[:, :, :12].min() < 0


def test_noise_fill_uses_batch_statistics_for_a_fully_masked_image():
    images = _galaxy_batch(3, seed=4)
    mask = np.zeros((3, 1, H, H), bool)
    mask[1] = True
    out = noise_fill(images, mask, 0, clip=None)
    np.testing.assert_allclose(out[1].std(axis=(1, 2)), SIGMA, rtol=0.05)
    assert (np.abs(out[1].mean(axis=(1, 2)) - MEAN) < 0.1 * SIGMA).all()


def test_noise_fill_empty_mask_returns_a_copy():
    images = _galaxy_batch(1)
    out = noise_fill(images, np.zeros((H, H), bool), 0)
    assert np.array_equal(out, images) and out is not images


@pytest.mark.parametrize("images, mask, kwargs, error, match", [
    (np.zeros((3, H, H)), np.zeros((H, H), bool), {}, ValueError, "batch"),
    (np.full((1, 3, 8, 8), np.nan), np.zeros((8, 8), bool), {}, ValueError, "NaN"),
    (np.zeros((1, 3, 8, 8)), np.zeros((8, 8)), {}, TypeError, "boolean"),
    (np.zeros((1, 3, 8, 8)), np.zeros((2, 3, 8, 8), bool), {}, ValueError, "does not fit"),
    (np.zeros((1, 3, 8, 8)), np.zeros((8, 8), bool), {"channel_axis": 2}, ValueError,
     "channel_axis"),
    (np.zeros((1, 3, 8, 8)), np.zeros((8, 8), bool), {"method": "median"}, ValueError, "method"),
    (np.zeros((1, 3, 8, 8)), np.zeros((8, 8), bool), {"clip": (1, 0)}, ValueError, "clip"),
    (np.zeros((1, 3, 8, 8)), np.ones((8, 8), bool), {}, ValueError, "no image in the batch"),
])
def test_noise_fill_bad_input(images, mask, kwargs, error, match):
    with pytest.raises(error, match=match):
        noise_fill(images, mask, 0, **kwargs)


def test_source_mask_bad_parameters():
    with pytest.raises(ValueError, match="nsigma"):
        source_mask(np.zeros((1, 3, 8, 8)), nsigma=0)
    with pytest.raises(ValueError, match="dilate"):
        source_mask(np.zeros((1, 3, 8, 8)), dilate=-1)
