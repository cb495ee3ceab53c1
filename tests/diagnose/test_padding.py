"""Tests of galaxai.diagnose.padding: the phantom-boundary audit, its masks and the planting tools.

Fixtures are made here: noisy galaxies (flux, and display images with mild, dark and fully black
clipped skies), warped about the centre with bilinear interpolation like the paper's recipe and
filled with exact zeros, sky-like noise, or a mirror image.
"""
from __future__ import annotations

import numpy as np
import pytest
import zarr
from scipy import ndimage

from galaxai.diagnose import (
    PaddingAudit,
    add_padded_band,
    add_rotated_frame,
    audit_padding,
    audit_store,
    padded_band_mask,
)

SIZE = 64
SIGMA = 1.0  # sky noise in flux units


def galaxies(n: int, seed: int, *, corr: float = 0.0, amp=(20.0, 200.0), size: int = SIZE):
    """(n, 3, size, size) flux images: an exponential disc and Gaussian sky noise of SIGMA.

    ``corr`` is the correlation of the noise between channels (1: identical in all channels).
    """
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size].astype(float)
    out = np.empty((n, 3, size, size))
    for i in range(n):
        cx, cy = size / 2 + rng.uniform(-3, 3, 2)
        q, pa = rng.uniform(0.3, 1.0), rng.uniform(0, np.pi)
        r_e = rng.uniform(2.5, 7.0) * size / 64
        dx, dy = xx - cx, yy - cy
        r = np.hypot(dx * np.cos(pa) + dy * np.sin(pa), (-dx * np.sin(pa) + dy * np.cos(pa)) / q)
        profile = rng.uniform(*amp) * np.exp(-r / r_e)
        common = rng.normal(size=(size, size))
        for c in range(3):
            noise = np.sqrt(corr) * common + np.sqrt(1 - corr) * rng.normal(size=(size, size))
            out[i, c] = profile * (0.8 + 0.1 * c) + SIGMA * noise
    return out


def display(flux, pedestal: float, top: float = 300.0):
    """Asinh stretch to [0, 1], clipped; ``pedestal`` (in sigma) sets how much sky clips at 0."""
    return np.clip(np.arcsinh((flux + pedestal * SIGMA) / 3.0) / np.arcsinh(top / 3.0),
                   0, 1).astype(np.float32)


def warp(flux, scale, angle, shift, padding, rng, to_display=None):
    """The recipe's warp of one (3, S, S) flux image; returns (image, fill mask).

    ``zero`` fills with 0 after the display stretch (the paper warps display images), ``noise``
    replaces the filled pixels in flux, before the stretch, with an independent sky-noise field
    warped the same way (so interpolation lowers its scatter as it does the frame's), ``reflect``
    mirrors.
    """
    t = np.radians(angle)
    m = scale * np.array([[np.cos(t), -np.sin(t)], [np.sin(t), np.cos(t)]])  # on (row, col)
    inv = np.linalg.inv(m)
    c = (np.array(flux.shape[1:]) - 1) / 2
    offset = c - inv @ (c + np.asarray(shift, float))
    mode = "mirror" if padding == "reflect" else "grid-constant"
    src = flux if to_display is None or padding != "zero" else to_display(flux)
    out = np.stack([ndimage.affine_transform(p, inv, offset, order=1, mode=mode, cval=0.0)
                    for p in src])
    fill = ndimage.affine_transform(np.zeros(flux.shape[1:]), inv, offset, order=1,
                                    mode="grid-constant", cval=1.0) > 0
    if padding == "noise":
        for plane in out:
            sky = ndimage.affine_transform(SIGMA * rng.normal(size=plane.shape), inv, offset,
                                           order=1, mode="grid-wrap")
            plane[fill] = sky[fill]
    if to_display is not None and padding != "zero":
        out = to_display(out)
    return out.astype(np.float32), fill


# (scale, angle in degrees, (dy, dx)): bands of width 6, 3 and 1, rotated corners, frames wholly
# inside the image (closed chains), shrunk and shifted frames
GEOMETRIES = [
    (1.0, 0.0, (0.0, 6.0)),
    (1.0, 0.0, (3.0, 0.0)),
    (1.0, 0.0, (0.0, -1.5)),
    (1.0, 20.0, (0.0, 0.0)),
    (0.8, 35.0, (4.0, -5.0)),
    (0.55, 60.0, (2.0, 3.0)),
    (0.6, 10.0, (-3.0, 1.0)),
    (1.3, 45.0, (10.0, 10.0)),
    (0.7, 100.0, (-8.0, 12.0)),
    (1.1, 170.0, (-12.0, -3.0)),
    (1.5, 30.0, (14.0, -14.0)),
    (0.45, 250.0, (-6.0, -8.0)),
]
SPACES = {
    "flux": None,
    "display": lambda x: display(x, pedestal=3.0),  # mild: ~0.1 % of sky pixels clip at 0
}


def padded_batch(padding: str, space: str, seed: int = 1):
    """One image per geometry, warped with ``padding``; returns (images, fill masks)."""
    rng = np.random.default_rng(seed)
    flux = galaxies(len(GEOMETRIES), seed)
    images, masks = zip(*(warp(f, s, a, t, padding, rng, SPACES[space])
                          for f, (s, a, t) in zip(flux, GEOMETRIES)))
    return np.stack(images), np.stack(masks)


@pytest.fixture(scope="module", params=sorted(SPACES))
def zero_padded(request):
    images, fill = padded_batch("zero", request.param)
    return images, fill, audit_padding(images)


# ---------------------------------------------------------------------------------------------
# detection


def test_every_zero_padded_fixture_is_flagged(zero_padded):
    images, fill, audit = zero_padded
    exact = np.all(images == 0, axis=1)
    assert (exact.sum(axis=(1, 2)) >= 0.01 * SIZE**2).all(), "every fixture has a real fill"
    assert audit.flagged.all()
    assert audit.affected_fraction == 1.0 and audit.verdict
    # flagged pixels are constant fill, and every fill region above the documented minimum area
    # on clean sky (2·min_run pixels) is flagged whole
    assert not (audit.masks & ~exact).any()
    for zeros, flagged in zip(exact, audit.masks):
        labels, n = ndimage.label(zeros, structure=np.ones((3, 3)))
        for k in range(1, n + 1):
            region = labels == k
            if region.sum() >= 2 * audit.min_run:
                assert flagged[region].all()
    np.testing.assert_allclose(audit.fractions, audit.masks.mean(axis=(1, 2)))
    assert (audit.fill_values == 0).all()
    assert "PHANTOM BOUNDARY FOUND" in audit.summary and 'padding="noise"' in audit.summary


def test_zero_padded_patches_differ_from_sky(zero_padded):
    _, _, audit = zero_padded
    assert audit.region_source == "detected"
    assert audit.ks_pvalue < 1e-10 and audit.ks_statistic > 0.5
    assert audit.hist_padded.shape == audit.hist_background.shape == (len(audit.hist_edges) - 1,)
    assert audit.hist_padded.sum() == pytest.approx(1)
    assert audit.hist_background.sum() == pytest.approx(1)
    assert audit.hist_padded.max() == 1.0  # every padded value in one bin: the constant 0
    assert audit.n_patches == len(GEOMETRIES)


@pytest.mark.parametrize("space", sorted(SPACES))
@pytest.mark.parametrize("padding", ["noise", "reflect"])
def test_noise_and_reflect_padding_are_not_flagged(padding, space):
    images, fill = padded_batch(padding, space)
    audit = audit_padding(images, fill_mask=fill)
    assert not audit.flagged.any() and not audit.masks.any()
    assert audit.region_source == "fill_mask"
    if padding == "noise":
        # sky-like noise cannot be told from the sky: p is uniform under the null, so 1e-4 fails a
        # correct audit once in 10,000 seeds, while a constant fill gives p < 1e-10
        assert audit.ks_pvalue > 1e-4 and not audit.verdict
        assert "No phantom boundary" in audit.summary


def test_known_zero_fill_mask_gives_tiny_ks_pvalue():
    images, fill = padded_batch("zero", "display")
    audit = audit_padding(images, fill_mask=fill[:, None])  # singleton channel axis accepted
    assert audit.region_source == "fill_mask" and audit.ks_pvalue < 1e-10 and audit.verdict


def _clipped(flux, pedestal):
    return display(flux, pedestal=pedestal)


SKIES = {
    # name: (images, minimum share of all-channel exact zeros in the sky, to prove the test bites)
    "flux": (lambda: galaxies(24, 5).astype(np.float32), 0.0),
    "display-mild": (lambda: _clipped(galaxies(24, 6), 3.0), 0.0),
    "display-dark": (lambda: _clipped(galaxies(24, 7, corr=0.8), 0.0), 0.3),
    "display-very-dark": (lambda: _clipped(galaxies(24, 8, corr=0.8), -1.0), 0.6),
    "display-black": (lambda: _clipped(galaxies(24, 9, corr=0.8), -8.0), 0.95),
    "display-smooth-dark": (
        lambda: _clipped(ndimage.gaussian_filter(galaxies(24, 10, corr=0.8), (0, 0, 1, 1)) * 3.5,
                         0.0), 0.25),
    "saturated-cores": (lambda: _clipped(galaxies(24, 11, amp=(3000, 6000)), 0.5)[:, [0, 0, 0]],
                        0.0),
}


@pytest.mark.parametrize("sky", sorted(SKIES))
def test_unpadded_galaxies_are_not_flagged(sky):
    make, min_zero_share = SKIES[sky]
    images = make()
    exact_zero = np.all(images == 0, axis=1)
    border = np.ones((SIZE, SIZE), dtype=bool)
    border[1:-1, 1:-1] = False
    assert exact_zero[:, border].mean() >= min_zero_share
    if sky == "saturated-cores":
        assert (np.all(images == 1, axis=1).sum(axis=(1, 2)) >= 20).all()
    audit = audit_padding(images)
    assert not audit.flagged.any(), f"{sky} sky flagged in {np.flatnonzero(audit.flagged)}"
    assert not audit.verdict and audit.affected_fraction == 0.0
    assert np.isnan(audit.ks_pvalue) and audit.hist_edges is None


def test_upsampled_padding_is_found_and_upsampled_sky_is_not():
    # ×3 bilinear upsampling (e.g. a 27-px crop resized to 80) turns frame edges into staircases
    rng = np.random.default_rng(3)
    small = galaxies(6, 12, size=22)
    zero = np.stack([warp(f, 0.7, a, (2.0, -3.0), "zero", rng, lambda x: display(x, 3.0))[0]
                     for f, a in zip(small, (15, 50, 80, 120, 200, 300))])
    up = lambda x: ndimage.zoom(x, (1, 1, 3, 3), order=1, grid_mode=True, mode="grid-constant")
    assert audit_padding(up(zero)).flagged.all()
    assert not audit_padding(up(display(small, 3.0))).flagged.any()


# ---------------------------------------------------------------------------------------------
# planting and the exact band mask


@pytest.mark.parametrize("side", ["left", "right", "top", "bottom"])
@pytest.mark.parametrize("width", [1, 7])
def test_padded_band_mask_equals_planted_band(side, width):
    flux = galaxies(2, 20).astype(np.float32)
    planted = add_padded_band(flux, width, side)
    assert planted.images.dtype == flux.dtype and planted.mask.shape == (2, SIZE, SIZE)
    assert planted.mask.sum() == 2 * width * SIZE
    for img, mask in zip(planted.images, planted.mask):
        np.testing.assert_array_equal(padded_band_mask(img), mask)
    np.testing.assert_array_equal(audit_padding(planted.images).masks, planted.mask)
    assert not np.shares_memory(planted.images, flux) and not (flux == 0).any()


@pytest.mark.parametrize("angle, shift, scale", [
    (17.0, (0.0, 0.0), 1.0),
    (-25.0, (6.0, -6.0), 0.8),
    (-40.0, (0.0, 0.0), 0.9),
    (30.0, (1.0, 2.0), 0.6),   # wholly inside the image: a closed ring of fill
    (95.0, (-9.0, 4.0), 1.2),
])
def test_padded_band_mask_equals_planted_rotated_frame(angle, shift, scale):
    flux = galaxies(2, 21)
    planted = add_rotated_frame(flux, angle, shift, scale=scale)
    assert planted.mask.any()
    for img, mask in zip(planted.images, planted.mask):
        np.testing.assert_array_equal(padded_band_mask(img), mask)
        assert (img[:, mask] == 0).all() and (img[:, ~mask] != 0).all()


def test_rotated_frame_geometry_and_per_image_parameters():
    flux = galaxies(3, 22)
    none = add_rotated_frame(flux, 0.0, (0.0, 0.0))
    assert not none.mask.any()
    np.testing.assert_array_equal(none.images, flux)
    shifted = add_rotated_frame(flux, [0.0, 0.0, 90.0], [(0.0, 5.0), (-3.0, 0.0), (0.0, 0.0)])
    assert shifted.mask[0, :, :5].all() and not shifted.mask[0, :, 5:].any()  # left band
    assert shifted.mask[1, -3:].all() and not shifted.mask[1, :-3].any()      # bottom band
    assert not shifted.mask[2].any()                       # a square turned by 90° covers itself


def test_noise_fill_is_a_control_not_a_boundary():
    flux = galaxies(4, 23)
    disp = display(flux, pedestal=3.0)
    zero = add_rotated_frame(disp, 25.0, (4.0, -6.0), scale=0.8)
    noise = add_rotated_frame(disp, 25.0, (4.0, -6.0), scale=0.8, fill="noise", seed=1)
    np.testing.assert_array_equal(zero.mask, noise.mask)
    assert audit_padding(zero.images).flagged.all()
    controlled = audit_padding(noise.images, fill_mask=noise.mask)
    assert not controlled.flagged.any() and controlled.ks_pvalue > 1e-4
    # noise pixels are copies of the image's own sky values, so the range is kept
    assert noise.images.min() >= disp.min() and noise.images.max() <= disp.max()
    band = add_padded_band(disp, 5, "top", "noise", seed=2)
    assert not audit_padding(band.images).flagged.any()
    np.testing.assert_array_equal(add_padded_band(disp, 5, "top", "noise", seed=2).images,
                                  band.images)


def test_channel_last_layout_and_other_fill_values():
    flux = galaxies(3, 24).astype(np.float32)
    planted = add_padded_band(flux.transpose(0, 2, 3, 1), 4, "right", value=-1.0, channel_axis=-1)
    assert planted.images.shape == (3, SIZE, SIZE, 3) and (planted.images[:, :, -4:] == -1).all()
    audit = audit_padding(planted.images, channel_axis=-1)
    np.testing.assert_array_equal(audit.masks, planted.mask)
    assert (audit.fill_values == -1).all()
    np.testing.assert_array_equal(padded_band_mask(planted.images[0], channel_axis=-1),
                                  planted.mask[0])
    gray = padded_band_mask(planted.images[0, :, :, 0])  # (H, W)
    np.testing.assert_array_equal(gray, planted.mask[0])


def test_same_seed_same_result_and_patch_size():
    images, _ = padded_batch("zero", "display")
    a, b = audit_padding(images, seed=4), audit_padding(images, seed=4)
    assert a.ks_statistic == b.ks_statistic and a.ks_pvalue == b.ks_pvalue
    np.testing.assert_array_equal(a.hist_background, b.hist_background)
    small = audit_padding(images, patch=6)
    np.testing.assert_array_equal(small.masks, a.masks)


# ---------------------------------------------------------------------------------------------
# bad input


def test_nan_images_are_skipped_and_reported():
    images, _ = padded_batch("zero", "flux")
    images[2, 1, 5, 5] = np.nan
    images[4] = np.inf
    audit = audit_padding(images)
    assert set(audit.skipped) == {2, 4} and "NaN" in audit.skipped[2]
    assert not audit.flagged[[2, 4]].any() and np.isnan(audit.fractions[[2, 4]]).all()
    assert audit.flagged.sum() == len(GEOMETRIES) - 2 and audit.affected_fraction == 1.0
    assert "2 item(s) skipped" in audit.summary and "#2" in audit.summary
    with pytest.raises(ValueError, match="no image of images could be audited"):
        audit_padding(np.full((2, 3, 8, 8), np.nan))
    with pytest.raises(ValueError, match="NaN"):
        padded_band_mask(images[2])
    with pytest.raises(ValueError, match="NaN"):
        add_padded_band(images, 2)


@pytest.mark.parametrize("call, error, match", [
    (lambda x: audit_padding(x[0]), ValueError, "4-D"),
    (lambda x: audit_padding(x[None]), ValueError, "4-D"),
    (lambda x: audit_padding(x, channel_axis=2), ValueError, "channel_axis"),
    (lambda x: audit_padding(x.astype(complex)), TypeError, "real numbers"),
    (lambda x: audit_padding(x > 0), TypeError, "real numbers"),
    (lambda x: audit_padding(x, fill_mask=np.zeros((2, 8, 8), bool)), ValueError, "fill_mask"),
    (lambda x: audit_padding(x, min_run=1), ValueError, "min_run"),
    (lambda x: audit_padding(x, patch=0), ValueError, "patch"),
    (lambda x: audit_padding(x[:, :, :2, :2]), ValueError, "3×3"),
    (lambda x: padded_band_mask(x), ValueError, "for a batch"),
    (lambda x: add_padded_band(x, 0), ValueError, "width"),
    (lambda x: add_padded_band(x, SIZE), ValueError, "width"),
    (lambda x: add_padded_band(x, 2, side="middle"), ValueError, "side"),
    (lambda x: add_padded_band(x, 2, value="zeros"), ValueError, "noise"),
    (lambda x: add_padded_band(x, 2, value=np.nan), ValueError, "finite"),
    (lambda x: add_rotated_frame(x, 10.0, scale=0.0), ValueError, "scale"),
    (lambda x: add_rotated_frame(x, [1.0, 2.0, 3.0]), ValueError, "angle"),
])
def test_bad_input_raises_clear_errors(call, error, match):
    with pytest.raises(error, match=match):
        call(galaxies(2, 25).astype(np.float32))


def test_result_is_frozen_and_printable():
    images, _ = padded_batch("zero", "flux")
    audit = audit_padding(images, name="target_b")
    assert isinstance(audit, PaddingAudit) and str(audit) == audit.summary
    assert "target_b" in audit.summary and audit.min_run == 8
    with pytest.raises(AttributeError):
        audit.verdict = False


# ---------------------------------------------------------------------------------------------
# stores


def _write_store(path, target_b, target_a, fill, chunk=4):
    root = zarr.open_group(str(path / "blends.zarr"), mode="w")
    for name, arr in (("target_b", target_b), ("target_a", target_a), ("fill_mask_b", fill)):
        z = root.create_array(name, shape=arr.shape, dtype=arr.dtype,
                              chunks=(chunk,) + arr.shape[1:])
        z[:] = arr
    return path


def test_audit_store_reads_the_documented_layout(tmp_path):
    target_b, fill = padded_batch("zero", "display")
    target_a = display(galaxies(len(GEOMETRIES), 30), 3.0)
    _write_store(tmp_path, target_b, target_a, fill[:, None])
    results = audit_store(tmp_path)
    assert set(results) == {"target_b", "target_a"}
    assert results["target_b"].flagged.all() and results["target_b"].region_source == "fill_mask"
    assert not results["target_a"].flagged.any() and not results["target_a"].verdict
    np.testing.assert_array_equal(results["target_b"].masks, audit_padding(target_b).masks)
    assert "blends.zarr/target_b" in results["target_b"].summary
    only = audit_store(tmp_path / "blends.zarr", arrays=("target_b", "blend"), max_items=5)
    assert set(only) == {"target_b"} and only["target_b"].masks.shape[0] == 5


def test_audit_store_skips_unreadable_chunks_and_rejects_bad_paths(tmp_path):
    target_b, fill = padded_batch("zero", "flux")
    _write_store(tmp_path, target_b, target_b, fill[:, None])
    chunk_files = sorted(p for p in (tmp_path / "blends.zarr" / "target_b").rglob("*")
                         if p.is_file() and p.name != "zarr.json")
    chunk_files[1].write_bytes(b"not a chunk")
    audit = audit_store(tmp_path, arrays=("target_b",))["target_b"]
    assert set(audit.skipped) == {4, 5, 6, 7} and "unreadable chunk" in audit.skipped[4]
    assert audit.flagged.sum() == len(GEOMETRIES) - 4
    with pytest.raises(FileNotFoundError, match="build_store"):
        audit_store(tmp_path / "missing")
    with pytest.raises(ValueError, match="none of the arrays"):
        audit_store(tmp_path, arrays=("blend",))
    (tmp_path / "plain").mkdir()
    with pytest.raises(ValueError, match="Zarr group"):
        audit_store(tmp_path / "plain")


def test_audit_store_on_a_built_paper_store(tmp_path):
    store = pytest.importorskip("galaxai.data.store")
    from galaxai.data.blend import BlendConfig
    from galaxai.data.simulate import SimConfig

    path = store.build_store(tmp_path / "s", 8, seed=3, sim_config=SimConfig.preset("tiny"),
                             blend_config=BlendConfig.preset("paper", out_size=32), chunk=4)
    results = audit_store(path)
    root = zarr.open_group(str(path / "blends.zarr"), mode="r")
    fill = root["fill_mask_b"][:][:, 0]
    b = results["target_b"]
    assert not results["target_a"].flagged.any()
    assert not (b.masks & ~fill).any()  # flagged pixels are padding
    big = np.all(root["target_b"][:] == 0, axis=1).sum(axis=(1, 2)) >= 0.05 * 32 * 32
    assert big.any() and b.flagged[big].all() and b.verdict
    assert "fill mask marks padding in" in b.summary


def test_blank_images_and_integer_images():
    blank = np.zeros((2, 3, 16, 16), dtype=np.float32)
    audit = audit_padding(blank)
    assert audit.flagged.all() and (audit.fractions == 1).all()  # nothing but noise-free fill
    images, _ = padded_batch("zero", "display")
    as_uint8 = np.round(images * 255).astype(np.uint8)  # an 8-bit JPEG-like copy
    np.testing.assert_array_equal(audit_padding(as_uint8).flagged, audit_padding(images).flagged)


@pytest.fixture(scope="module")
def simulated_pairs():
    from galaxai.data.simulate import SimConfig, simulate

    sample = simulate(32, seed=4, config=SimConfig.preset("tiny"))
    return sample.display[:16], sample.display[16:]


@pytest.mark.parametrize("padding", ["zero", "noise", "reflect"])
def test_galaxai_blends_are_audited_by_padding_mode(simulated_pairs, padding):
    from galaxai.data.blend import BlendConfig, make_blends

    batch = make_blends(*simulated_pairs, seed=2,
                        config=BlendConfig.preset("paper", padding=padding, out_size=32))
    fill = batch.fill_mask_b[:, 0]
    audit = audit_padding(batch.target_b, fill_mask=batch.fill_mask_b, name="target_b")
    assert not audit_padding(batch.target_a).flagged.any()
    assert not (audit.masks & ~fill).any()
    if padding == "zero":
        exact = np.all(batch.target_b == 0, axis=1) & fill
        large = exact.sum(axis=(1, 2)) >= 0.05 * 32 * 32
        assert large.sum() >= 3 and audit.flagged[large].all()
        assert audit.verdict and audit.ks_pvalue < 1e-10
    else:
        assert fill.any(axis=(1, 2)).sum() >= 3
        assert not audit.flagged.any() and not audit.verdict


def test_known_fill_of_wrong_noise_level_is_reported():
    flux = galaxies(8, 26)
    planted = add_rotated_frame(flux, 30.0, (3.0, -4.0), scale=0.8)
    loud = planted.images.copy()
    rng = np.random.default_rng(0)
    for img, mask in zip(loud, planted.mask):
        img[:, mask] = rng.normal(0.0, 4 * SIGMA, size=(3, int(mask.sum())))  # 4× too noisy
    audit = audit_padding(loud, fill_mask=planted.mask)
    assert not audit.flagged.any() and audit.verdict
    assert audit.ks_statistic >= 0.25 and audit.ks_pvalue < 1e-6
    assert "NON-CONSTANT BUT UNNATURAL FILL" in audit.summary


def test_audit_store_reads_channel_last_arrays(tmp_path):
    target_b, fill = padded_batch("zero", "display")
    target_a = display(galaxies(len(GEOMETRIES), 30), 3.0)
    _write_store(tmp_path, np.moveaxis(target_b, 1, -1), np.moveaxis(target_a, 1, -1),
                 fill[..., None])
    results = audit_store(tmp_path)
    assert results["target_b"].flagged.all() and results["target_b"].region_source == "fill_mask"
    np.testing.assert_array_equal(results["target_b"].masks, audit_padding(target_b).masks)
    assert not results["target_a"].flagged.any()
    square = tmp_path / "square"
    _write_store(square, np.zeros((2, 3, 3, 3), np.float32), np.zeros((2, 3, 3, 3), np.float32),
                 np.zeros((2, 1, 3, 3), bool))
    with pytest.raises(ValueError, match=r"target_b has shape \(2, 3, 3, 3\): cannot tell"):
        audit_store(square)


def test_audit_store_names_the_fill_mask_when_its_chunk_is_unreadable(tmp_path):
    target_b, fill = padded_batch("zero", "flux")
    _write_store(tmp_path, target_b, target_b, fill[:, None])
    chunk_files = sorted(p for p in (tmp_path / "blends.zarr" / "fill_mask_b").rglob("*")
                         if p.is_file() and p.name != "zarr.json")
    chunk_files[1].write_bytes(b"not a chunk")
    audit = audit_store(tmp_path, arrays=("target_b",))["target_b"]
    assert set(audit.skipped) == {4, 5, 6, 7}
    assert "unreadable chunk of fill_mask_b" in audit.skipped[4]


def test_audit_store_refuses_unfinished_or_damaged_stores(tmp_path):
    import shutil

    from galaxai.data.blend import BlendConfig
    from galaxai.data.simulate import SimConfig
    from galaxai.data.store import StoreError, build_store, forget_chunks

    path = build_store(tmp_path / "s", 8, seed=3, sim_config=SimConfig.preset("tiny"),
                       blend_config=BlendConfig.preset("small", out_size=32), chunk=4)
    assert not audit_store(path)["target_b"].verdict  # noise padding: nothing to find
    shard = path / "blends.zarr" / "target_a" / "c" / "1" / "0" / "0" / "0"
    data = bytearray(shard.read_bytes())
    data[len(data) // 2] ^= 0xFF
    shutil.copytree(path, tmp_path / "damaged")
    (tmp_path / "damaged" / shard.relative_to(path)).write_bytes(bytes(data))
    with pytest.raises(StoreError, match=r"damaged: chunk 1 .*forget_chunks"):
        audit_store(tmp_path / "damaged")
    forget_chunks(path, [1])  # as if the build had stopped after chunk 0: chunk 1 reads as zeros
    for where in (path, path / "blends.zarr"):
        with pytest.raises(StoreError, match=r"unfinished build \(1 of 2 chunks\)"):
            audit_store(where)
