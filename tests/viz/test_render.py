"""Tests of galaxai.viz.render: sizes, colour scales, stretches and file writing."""
from __future__ import annotations

import matplotlib
import numpy as np
import pytest
from PIL import Image

from galaxai.viz.render import (
    animated_gif,
    asinh_stretch,
    blend_grid,
    curve_plot,
    deblend_panel,
    enlarge,
    explanation_panel,
    heatmap,
    lupton_rgb,
    montage,
    outline,
    save_png,
    scatter_plot,
    signed_heatmap,
    stretch_image,
    symmetric_vmax,
)


@pytest.fixture
def stamps():
    rng = np.random.default_rng(3)
    return rng.random((2, 20, 20, 3)).astype(np.float32)


def _png_size(path):
    with Image.open(path) as im:
        assert im.format == "PNG"
        return im.size  # (width, height)


def test_enlarge_nearest_to_256():
    small = np.arange(80 * 80, dtype=np.float32).reshape(80, 80)
    big = enlarge(small)
    assert big.shape == (256, 256)
    assert set(np.unique(big)) <= set(np.unique(small))  # nearest: no new values
    # every source pixel appears, corners map to corners
    assert np.unique(big).size == small.size
    assert big[0, 0] == small[0, 0] and big[-1, -1] == small[-1, -1]
    checker = np.indices((2, 2)).sum(0) % 2
    np.testing.assert_array_equal(enlarge(checker, 8), np.kron(checker, np.ones((4, 4), int)))
    assert enlarge(np.zeros((10, 10, 3)), 64, smooth=True).shape == (64, 64, 3)


def test_signed_heatmap_maps_zero_to_centre_and_shares_scale():
    cmap = matplotlib.colormaps["bwr"]
    maps = np.array([[[0.0, 1.0], [-1.0, 0.5]], [[0.0, 4.0], [-4.0, 2.0]]])
    rgb = signed_heatmap(maps)  # one scale for both maps: vmax = 4
    np.testing.assert_allclose(rgb[0, 0, 0], cmap(0.5)[:3], atol=1e-6)
    np.testing.assert_allclose(rgb[1, 0, 1], cmap(1.0)[:3], atol=1e-6)
    np.testing.assert_allclose(rgb[1, 1, 0], cmap(0.0)[:3], atol=1e-6)
    np.testing.assert_allclose(rgb[0, 0, 1], cmap(0.5 + 0.5 * 1 / 4)[:3], atol=1e-6)
    # a shared vmax across separate calls gives identical colours for identical values
    vmax = symmetric_vmax(maps[0], maps[1])
    assert vmax == 4.0
    np.testing.assert_allclose(signed_heatmap(maps[0], vmax=vmax), rgb[0])
    with pytest.raises(ValueError, match="vmax"):
        signed_heatmap(maps, vmax=-1)


def test_heatmap_normalises_each_map():
    cmap = matplotlib.colormaps["viridis"]
    maps = np.stack([np.linspace(0, 1, 16).reshape(4, 4), 100 + 50 * np.linspace(0, 1, 16).reshape(4, 4)])
    rgb = heatmap(maps)
    assert rgb.shape == (2, 4, 4, 3)
    np.testing.assert_allclose(rgb[0], rgb[1], atol=1e-6)
    np.testing.assert_allclose(rgb[1, -1, -1], cmap(1.0)[:3], atol=1e-6)
    # channel sum for (N, C, H, W)
    assert heatmap(np.ones((2, 3, 5, 5)), channel_axis=1).shape == (2, 5, 5, 3)


def test_stretches_clip_to_unit_interval():
    x = np.linspace(-1, 10, 100).reshape(10, 10)
    for s in ("asinh", "linear", "sqrt", "zscale"):
        y = stretch_image(x, s, vmin=0, vmax=5) if s != "zscale" else stretch_image(x, s)
        assert y.min() >= 0 and y.max() <= 1
    y = asinh_stretch(x, vmin=0, vmax=5)
    assert y.min() == 0 and y.max() == 1 and np.all(np.diff(y.ravel()) >= 0)
    rgb = lupton_rgb(np.abs(np.random.default_rng(0).normal(size=(3, 12, 12))))
    assert rgb.shape == (12, 12, 3) and rgb.min() >= 0 and rgb.max() <= 1
    with pytest.raises(ValueError, match="stretch"):
        stretch_image(x, "cube")


def test_deblend_panel_png_size_and_array(tmp_path, stamps):
    blend, a = stamps
    b = a[::-1]
    sizes = {}
    for panel in (64, 96):
        path = deblend_panel(blend, a, b, a, b, 30.0, 31.0, path=tmp_path / f"p{panel}.png", panel=panel)
        sizes[panel] = _png_size(path)
    # five panels side by side, one row: each panel is exactly `panel` pixels
    assert sizes[96][0] - sizes[64][0] == 5 * 32
    assert sizes[96][1] - sizes[64][1] == 32
    arr = deblend_panel(blend, a, b, a, b, 30.0, 31.0, panel=64)
    assert arr.dtype == np.uint8 and arr.shape == (sizes[64][1], sizes[64][0], 3)
    # channel-first input and computed PSNR work too
    assert deblend_panel(*(np.moveaxis(x, -1, 0) for x in (blend, a, b, a, b)), panel=64).shape == arr.shape
    assert not [p for p in tmp_path.iterdir() if p.suffix == ".tmp"]  # atomic writes leave no temp


def test_blend_grid_and_explanation_panel_sizes(tmp_path, stamps):
    mask = np.zeros((2, 1, 20, 20), bool)
    mask[:, :, :, :5] = True
    w1, h1 = _png_size(blend_grid(stamps, stamps, stamps, mask, path=tmp_path / "g.png", panel=64))
    w2, h2 = _png_size(blend_grid(stamps[0], stamps[0], stamps[0], mask[0], path=tmp_path / "g1.png", panel=64))
    assert w1 == w2 and h1 > h2  # four columns either way, one row per blend
    maps = np.random.default_rng(0).normal(size=(2, 3, 20, 20))
    one = explanation_panel(stamps, {"lrp": maps}, ["real", "generated"], channel_axis=1, panel=64)
    two = explanation_panel(stamps, {"lrp": maps, "grad": -maps}, ["real", "generated"],
                            channel_axis=1, panel=64, scale="per_method")
    assert two.shape[0] == one.shape[0] and two.shape[1] - one.shape[1] > 64
    path = explanation_panel(stamps, {"lrp": maps.sum(1)}, signed=False, path=tmp_path / "e.png")
    assert _png_size(path)[0] > 0
    with pytest.raises(ValueError, match="expected 2 maps"):
        explanation_panel(stamps, {"lrp": maps[:1, 0]})


def test_montage_gif_curve_and_png(tmp_path, stamps):
    grid = montage(np.concatenate([stamps, stamps, stamps]), ncols=3, pad=2)
    assert grid.shape == (2 * 20 + 3 * 2, 3 * 20 + 4 * 2, 3)
    path = animated_gif(np.stack([stamps[0], stamps[1], stamps[0]]), tmp_path / "t.gif", size=64)
    with Image.open(path) as im:
        assert im.format == "GIF" and im.n_frames == 3 and im.size == (64, 64)
    path = curve_plot(np.arange(5), {"loss D": np.arange(5.0), "loss G": np.ones(5)},
                      xlabel="iteration", path=tmp_path / "c.png", size=(300, 200))
    assert _png_size(path) == (300, 200)
    path = save_png(stamps[0], tmp_path / "s.png")
    with Image.open(path) as im:
        np.testing.assert_array_equal(np.asarray(im), np.round(stamps[0] * 255).astype(np.uint8))
    with pytest.raises(ValueError, match="points"):
        curve_plot(np.arange(5), [np.arange(4)])


def test_nan_image_rejected(stamps):
    bad = stamps[0].copy()
    bad[0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        deblend_panel(bad, stamps[0], stamps[0], stamps[0], stamps[0], 1.0, 1.0)


def test_scatter_plot_with_lines(tmp_path):
    x = np.array([1.0, 2.0, 3.0])
    path = scatter_plot({"galaxies": (x, 2 * x)}, lines={"1:1": 1.0, "fit": 2.0},
                        xlabel="catalogue", ylabel="measured", path=tmp_path / "s.png",
                        size=(300, 240))
    assert _png_size(path) == (300, 240)
    array = scatter_plot({"a": (x, x)})
    assert array.dtype == np.uint8 and array.shape[2] == 3
    with pytest.raises(ValueError, match="3 points but y has 2"):
        scatter_plot({"bad": (x, x[:2])})
    with pytest.raises(ValueError, match="at least one"):
        scatter_plot({})


def test_lupton_rgb_and_to_display_are_one_mapping():
    """Same Lupton mapping, different defaults (``galaxai._lupton``): equal bytes when aligned."""
    from galaxai.data.simulate import DISPLAY_Q, DISPLAY_STRETCH, to_display

    flux = np.random.default_rng(3).normal(size=(3, 10, 9)) * 50.0
    flux[:, :2] = 0.0  # zero intensity: no 0/0 warning escapes either function
    same = lupton_rgb(flux, stretch=DISPLAY_STRETCH, q=DISPLAY_Q)
    assert same.tobytes() == to_display(flux, weights=(1.0, 1.0, 1.0)).tobytes()
    assert lupton_rgb(flux).tobytes() != to_display(flux).tobytes()  # the defaults differ


def test_outline_paints_the_border_of_a_region_only():
    image = np.zeros((3, 8, 8), np.float32)
    mask = np.zeros((8, 8), bool)
    mask[2:6, 1:8] = True  # touches the right edge of the frame
    out = outline(image, mask, colour=(1.0, 0.0, 0.0))
    assert out.shape == (8, 8, 3) and out.dtype == np.float32
    painted = out[..., 0] == 1
    inner = np.zeros((8, 8), bool)
    inner[3:5, 2:7] = True
    np.testing.assert_array_equal(painted, mask & ~inner)
    assert np.all(out[~painted] == 0)
    with pytest.raises(ValueError, match="does not fit"):
        outline(image, mask[:4])


def test_curve_plot_bands_shade_in_the_curve_colour():
    x = np.arange(6.0)
    plain = curve_plot(x, {"mean": np.zeros(6)}, size=(300, 200))
    shaded = curve_plot(x, {"mean": np.zeros(6)}, bands={"mean": (np.full(6, -1.0), np.ones(6))},
                        size=(300, 200))
    # matplotlib's first colour #1f77b4 at alpha 0.2 over white: 255 - 0.2 * (255 - c)
    tint = np.array([255 - 0.2 * (255 - c) for c in (0x1F, 0x77, 0xB4)])
    near = lambda img: int((np.abs(img.astype(float) - tint).max(axis=-1) <= 2).sum())  # noqa: E731
    assert near(plain) == 0 and near(shaded) > 1000
    with pytest.raises(ValueError, match=r"bands\[0\] must be a \(low, high\) pair"):
        curve_plot(x, [np.zeros(6)], bands=[np.zeros(6)])
    with pytest.raises(ValueError, match="not curve labels"):
        curve_plot(x, {"a": np.zeros(6)}, bands={"b": (x, x)})
