"""Tests of galaxai.data.blend on synthetic Gaussian blobs (references computed independently)."""
import dataclasses
import math

import numpy as np
import pytest
from skimage.transform import AffineTransform, warp

from galaxai.data.blend import (
    BlendConfig,
    BlendTransform,
    crop_and_resize,
    crop_size,
    draw_pairs,
    make_blends,
    warp_planes,
)


def blobs(n, frame=142, seed=0, sky=0.2, noise=0.02):
    """Display-like frames (N, F, F, 3): a centred elliptical blob on a noisy, positive sky."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:frame, :frame] - (frame - 1) / 2
    out = np.empty((n, frame, frame, 3), dtype=np.float32)
    for i in range(n):
        q, phi, r = rng.uniform(0.4, 1), rng.uniform(0, np.pi), rng.uniform(3, frame / 8)
        u = xx * np.cos(phi) + yy * np.sin(phi)
        v = -xx * np.sin(phi) + yy * np.cos(phi)
        g = np.exp(-0.5 * (u**2 + (v / q) ** 2) / r**2)
        for ch in range(3):
            out[i, ..., ch] = sky + 0.6 * g * (0.7 + 0.1 * ch) + rng.normal(0, noise, g.shape)
    return np.clip(out, 0, 1)


def skimage_reference(image, t: BlendTransform, frame, cval=0.0):
    """The recipe written with scikit-image, as the authors did: flips, then one warp about the centre."""
    if t.flip_v:
        image = image[::-1]
    if t.flip_h:
        image = image[:, ::-1]
    c = (frame - 1) / 2
    k = frame / 424
    tf = (AffineTransform(translation=(-c, -c))
          + AffineTransform(scale=(t.scale, t.scale), rotation=t.rotation,
                            translation=(t.tx * k, t.ty * k))
          + AffineTransform(translation=(c, c)))
    return warp(image.astype(np.float64), tf.inverse, order=1, mode="constant", cval=cval)


def transform_of(cat, i):
    r = cat.iloc[i]
    return BlendTransform(bool(r.flip_v), bool(r.flip_h), float(r.scale), float(r.rotation),
                          float(r.tx), float(r.ty))


PAPER = BlendConfig.preset("paper")


def test_presets_and_validation():
    assert (PAPER.padding, PAPER.merge, PAPER.resize) == ("zero", "max", "bilinear")
    for name in ("small", "tiny"):
        assert BlendConfig.preset(name).padding == "noise"
    assert BlendConfig().padding == "noise"
    with pytest.raises(ValueError, match="unknown BlendConfig preset"):
        BlendConfig.preset("huge")
    with pytest.raises(ValueError, match="padding"):
        BlendConfig(padding="wrap")
    with pytest.raises(ValueError, match="merge"):
        BlendConfig(merge="mean")
    with pytest.raises(ValueError, match="unknown key"):
        BlendConfig.from_mapping({"paddin": "zero"})
    assert BlendConfig.from_mapping({"padding": "zero"}).padding == "zero"
    vals = PAPER.shift_values()
    assert vals.min() == -50 and vals.max() == 49 and len(vals) == 80
    assert not np.isin(np.arange(-10, 10), vals).any()
    assert crop_size(424) == 240 and crop_size(142) == 80


def test_max_merge_invariants():
    frames = blobs(12)
    batch = make_blends(frames[:6], frames[6:], seed=3, config=PAPER)
    assert batch.blend.shape == batch.target_a.shape == batch.target_b.shape == (6, 3, 80, 80)
    assert batch.blend.dtype == np.float32 and batch.fill_mask_b.dtype == bool
    assert batch.fill_mask_b.shape == (6, 1, 80, 80)
    np.testing.assert_array_equal(batch.blend, np.maximum(batch.target_a, batch.target_b))
    # galaxy A is only cut (142 -> central 80, no resampling)
    np.testing.assert_array_equal(batch.target_a, np.moveaxis(frames[:6], -1, 1)[..., 31:111, 31:111])
    assert 0 <= batch.blend.min() and batch.blend.max() <= 1


def test_warp_matches_scikit_image_reference():
    frames = blobs(10, frame=142)
    batch = make_blends(frames[:5], frames[5:], seed=11, config=PAPER)
    for i in range(5):
        ref = skimage_reference(frames[5 + i], transform_of(batch.catalogue, i), 142)
        ref = np.moveaxis(ref, -1, 0)[:, 31:111, 31:111]
        np.testing.assert_allclose(batch.target_b[i], ref, atol=2e-6)


def test_zero_padding_and_fill_mask_checked_independently():
    frames = blobs(40, frame=142, seed=1)
    batch = make_blends(frames[:20], frames[20:], seed=5, config=PAPER)
    assert batch.fill_mask_b.any()
    for i in range(20):
        t = transform_of(batch.catalogue, i)
        cover = skimage_reference(np.ones((142, 142)), t, 142)[31:111, 31:111]
        mask = batch.fill_mask_b[i, 0]
        clear = np.abs(1 - cover) > 1e-7
        exact = np.abs(1 - cover) < 1e-12
        assert mask[clear].all() and not mask[exact].any()
        assert (clear | exact).mean() > 0.999
        # pixels mapping entirely from outside the frame are exactly zero in B's target
        outside = cover == 0
        assert (batch.target_b[i][:, outside] == 0).all()
        assert batch.catalogue.filled_fraction[i] == pytest.approx(mask.mean())


@pytest.mark.parametrize("method", ["gaussian", "resample"])
def test_noise_padding_fills_with_sky_and_keeps_the_rest(method):
    frames = blobs(16, frame=142, seed=2)
    zero = make_blends(frames[:8], frames[8:], seed=9, config=PAPER)
    noisy = make_blends(frames[:8], frames[8:], seed=9,
                        config=dataclasses.replace(PAPER, padding="noise", noise_method=method))
    np.testing.assert_array_equal(zero.fill_mask_b, noisy.fill_mask_b)
    mask = np.repeat(noisy.fill_mask_b, 3, axis=1)
    assert mask.sum() > 1000
    assert (noisy.target_b[mask] != 0).all()
    np.testing.assert_array_equal(noisy.target_b[~mask], zero.target_b[~mask])
    full = noisy.target_b[np.repeat(zero.fill_mask_b, 3, axis=1) & (zero.target_b == 0)]
    # the fill looks like the sky of the frames (0.2 ± 0.02)
    assert abs(np.median(full) - 0.2) < 0.01 and 0.01 < full.std() < 0.04
    np.testing.assert_array_equal(noisy.blend, np.maximum(noisy.target_a, noisy.target_b))


def test_reflect_padding_mirrors():
    frame = np.zeros((3, 20, 20))
    frame[:, :, 0] = 1.0  # left column lit
    t = BlendTransform(False, False, 1.0, 0.0, tx=3 * 424 / 20, ty=0.0)  # 3 px to the right
    zero, mask = warp_planes(frame, t, padding="zero")
    refl, mask_r = warp_planes(frame, t, padding="reflect")
    np.testing.assert_array_equal(mask, mask_r)
    assert mask[:, :3].all() and not mask[:, 3:].any()
    np.testing.assert_allclose(zero[0, 0], [0, 0, 0, 1] + [0] * 16, atol=1e-12)
    # numpy "reflect" about column 0: columns 0..2 come from source columns 3, 2, 1 (all 0) and
    # column 3 from source column 0 (lit)
    np.testing.assert_allclose(refl[0, 0], np.pad(frame[0, 0], (3, 0), mode="reflect")[:20], atol=1e-12)


def test_pure_shift_moves_a_delta_by_the_recorded_amount():
    cfg = dataclasses.replace(PAPER, p_flip_v=0.0, p_flip_h=0.0, log_scale_min=0.0, log_scale_max=0.0,
                              rotation_min=0.0, rotation_max=0.0, out_size=240)
    frames = np.zeros((4, 424, 424, 3), dtype=np.float32)
    frames[:, 200, 230, :] = 1.0
    batch = make_blends(frames[:2], frames[2:], seed=4, config=cfg)
    for i in range(2):
        r = batch.catalogue.iloc[i]
        assert r.scale == 1.0 and r.rotation == 0.0
        peak = np.unravel_index(np.argmax(batch.target_b[i, 0]), (240, 240))
        assert peak == (200 + r.ty - 92, 230 + r.tx - 92)
        assert batch.target_b[i, 0][peak] == 1.0 and batch.target_b[i].sum() == 3.0
        assert r.separation_px == pytest.approx(math.hypot(r.tx, r.ty))
        assert (r.x_b, r.y_b) == pytest.approx((211.5 + r.tx - 92, 211.5 + r.ty - 92))


def test_rotation_and_flip_are_recorded():
    cfg = dataclasses.replace(PAPER, p_flip_v=1.0, p_flip_h=0.0, log_scale_min=0.0, log_scale_max=0.0,
                              shift_min=0, shift_max=1)  # shift 0 or -1 (424 px) -> tiny
    frame = np.zeros((1, 142, 142, 3), dtype=np.float32)
    frame[0, 70 - 20, 70, :] = 1.0  # 20 px above the centre row 70.5 (off by half a pixel)
    batch = make_blends(frame, frame, seed=0, config=cfg)
    r = batch.catalogue.iloc[0]
    assert r.flip_v and not r.flip_h
    # flip_v: row 50 -> 91; offset from centre (dx, dy) = (-0.5, 20.5); rotate by theta
    k = 142 / 424
    dx, dy = -0.5, 20.5
    x = np.cos(r.rotation) * dx - np.sin(r.rotation) * dy + 70.5 + r.tx * k
    y = np.sin(r.rotation) * dx + np.cos(r.rotation) * dy + 70.5 + r.ty * k
    img = batch.target_b[0, 0].astype(np.float64)
    rows, cols = np.mgrid[:80, :80] + 31
    assert img.sum() > 0.5  # the delta is sampled as a bilinear tent around its new position
    cx, cy = (cols * img).sum() / img.sum(), (rows * img).sum() / img.sum()
    assert abs(cx - x) < 0.5 and abs(cy - y) < 0.5


def test_determinism_and_prefix_stability():
    frames = blobs(8, frame=64, seed=4)
    cfg = dataclasses.replace(PAPER, padding="noise")
    one = make_blends(frames[:4], frames[4:], seed=21, config=cfg)
    two = make_blends(frames[:4], frames[4:], seed=21, config=cfg)
    for name in ("blend", "target_a", "target_b", "fill_mask_b"):
        assert getattr(one, name).tobytes() == getattr(two, name).tobytes()
    assert one.catalogue.equals(two.catalogue)
    other = make_blends(frames[:4], frames[4:], seed=22, config=cfg)
    assert not np.array_equal(other.target_b, one.target_b)
    head = make_blends(frames[:2], frames[4:6], seed=21, config=cfg)
    assert head.target_b.tobytes() == one.target_b[:2].tobytes()
    ss = np.random.SeedSequence([1, 2])
    assert make_blends(frames[:2], frames[4:6], ss, cfg).target_b.tobytes() == \
        make_blends(frames[:2], frames[4:6], ss, cfg).target_b.tobytes()


def test_geometry_and_phantom_boundary_statistics():
    frame = 64
    frames = np.full((2, frame, frame, 3), 0.5, dtype=np.float32)
    n = 400
    ia, ib = draw_pairs(2, n, seed=0)
    batch = make_blends(frames[ia], frames[ib], seed=1, config=PAPER)
    cat = batch.catalogue
    k = (frame / 424) * (80 / crop_size(frame))  # about 1/3
    assert cat.separation_px.min() >= math.hypot(10, 10) * k - 1e-9
    assert cat.separation_px.max() <= math.hypot(50, 50) * k + 1e-9
    assert (np.minimum(abs(cat.tx), abs(cat.ty)) >= 10).all()
    assert cat.scale.between(np.exp(-1), np.exp(0.5)).all()
    assert cat.rotation.between(0, 2 * np.pi).all()
    assert 0.35 < cat.flip_v.mean() < 0.65 and 0.35 < cat.flip_h.mean() < 0.65
    # specs/deblender_gan.md: ~60 % of B targets carry fill, mean area ~15 %, always for s < 0.6
    has_fill = cat.filled_fraction > 0
    assert 0.5 < has_fill.mean() < 0.7
    assert 0.1 < cat.filled_fraction.mean() < 0.2
    assert has_fill[cat.scale < 0.6].all()
    # flux ratio from display sums when no flux is given: uniform frames -> the covered share,
    # at least the unflagged share (flagged pixels may be partly covered)
    assert (cat.flux_ratio <= 1 + 1e-6).all()
    assert (cat.flux_ratio >= 1 - cat.filled_fraction - 1e-6).all()
    assert (cat.flux_ratio[~has_fill] > 1 - 1e-6).all()


def test_flux_ratio_and_components_follow_b():
    frames = blobs(4, frame=142, seed=6)
    flux = np.moveaxis(frames, -1, 1).astype(np.float32)
    cfg = dataclasses.replace(PAPER, rotation_min=0.0, rotation_max=0.0, log_scale_min=0.0,
                              log_scale_max=0.0)
    batch = make_blends(frames[:2], frames[2:], seed=0, config=cfg, flux_a=np.ones_like(flux[:2]),
                        flux_b=2 * np.ones_like(flux[2:]), components_a={"disk": flux[:2]},
                        components_b={"disk": flux[2:]})
    # at s = 1 without rotation B's frame covers the central crop: ratio of uniform fluxes
    np.testing.assert_allclose(batch.catalogue.flux_ratio, 2.0, rtol=1e-12)
    assert not batch.fill_mask_b.any()
    assert sorted(batch.components) == ["a_disk", "b_disk"]
    np.testing.assert_array_equal(batch.components["a_disk"], flux[:2, :, 31:111, 31:111])
    np.testing.assert_allclose(batch.components["b_disk"], batch.target_b, atol=1e-6)


def test_paper_crop_and_resize_samples_every_third_pixel():
    x = np.random.default_rng(0).random((2, 3, 424, 424))
    out = crop_and_resize(x, 80)
    np.testing.assert_allclose(out, x[..., 92:332, 92:332][..., 1::3, 1::3], atol=1e-12)
    area = crop_and_resize(x, 80, resize="area")
    ref = x[..., 92:332, 92:332].reshape(2, 3, 80, 3, 80, 3).mean(axis=(3, 5))
    np.testing.assert_allclose(area, ref, atol=1e-12)
    same = crop_and_resize(x[..., :142, :142], 80)
    np.testing.assert_array_equal(same, x[..., 31:111, 31:111])


def test_bad_input_errors():
    frames = blobs(4, frame=64)
    with pytest.raises(ValueError, match=r"frames_a must be display frames of shape \(N, F, F, 3\)"):
        make_blends(frames[:2, ..., 0], frames[2:], 0, PAPER)
    with pytest.raises(ValueError, match="frames_b has 1 frames, expected 2"):
        make_blends(frames[:2], frames[2:3], 0, PAPER)
    bad = frames[:2].copy()
    bad[0, 3, 3, 1] = np.nan
    with pytest.raises(ValueError, match="frames_a contains NaN"):
        make_blends(bad, frames[2:], 0, PAPER)
    with pytest.raises(ValueError, match=r"in \[0, 1\]"):
        make_blends(frames[:2] * 300, frames[2:], 0, PAPER)
    with pytest.raises(ValueError, match='merge="sum" needs flux_a'):
        make_blends(frames[:2], frames[2:], 0, dataclasses.replace(PAPER, merge="sum"))
    with pytest.raises(ValueError, match="flux_b must have shape"):
        make_blends(frames[:2], frames[2:], 0, PAPER, flux_a=np.ones((2, 3, 64, 64)),
                    flux_b=np.ones((2, 3, 32, 32)))
    with pytest.raises(ValueError, match="at least one pair"):
        make_blends(frames[:0], frames[:0], 0, PAPER)
    with pytest.raises(ValueError, match="same component names"):
        make_blends(frames[:2], frames[2:], 0, PAPER, components_a={"disk": np.ones((2, 3, 64, 64))})


def test_sum_merge_in_flux_space():
    from galaxai.data.simulate import SimConfig, simulate, to_display

    sample = simulate(8, seed=3, config=SimConfig.preset("tiny"))
    a, b = slice(0, 4), slice(4, 8)
    comps = sample.components
    kwargs = dict(flux_a=sample.noiseless[a], flux_b=sample.noiseless[b], sky_sigma=sample.sky_sigma[a],
                  components_a={k: v[a] for k, v in comps.items()},
                  components_b={k: v[b] for k, v in comps.items()})
    cfg = dataclasses.replace(PAPER, merge="sum", padding="noise", out_size=27)  # 48 px -> 27, as is
    summed = make_blends(None, None, seed=2, config=cfg, **kwargs)
    maxed = make_blends(sample.display[a], sample.display[b], seed=2,
                        config=dataclasses.replace(PAPER, out_size=27), **kwargs)
    # same transforms, same fill masks, whatever the merge
    for col in ("flip_v", "flip_h", "scale", "rotation", "tx", "ty", "filled_fraction"):
        assert summed.catalogue[col].equals(maxed.catalogue[col])
    np.testing.assert_array_equal(summed.fill_mask_b, maxed.fill_mask_b)
    assert summed.blend.shape == (4, 3, 27, 27) and 0 <= summed.blend.min() and summed.blend.max() <= 1
    # the blend is the display of A + B (noiseless truth = sum of components) plus noise, and is
    # closer to it than to either galaxy alone
    model_a = sum(summed.components[f"a_{k}"] for k in comps)
    model_b = sum(summed.components[f"b_{k}"] for k in comps)

    def display(flux):
        with np.errstate(invalid="ignore", divide="ignore"):  # 0/0 inside astropy's Lupton map
            return np.moveaxis(to_display(flux), -1, 1)

    err = np.abs(summed.blend - display(model_a + model_b)).mean()
    assert err < np.abs(summed.blend - display(model_a)).mean()
    assert err < np.abs(summed.blend - display(model_b)).mean()
    # flux ratio from the noiseless fluxes inside the stamp
    np.testing.assert_allclose(summed.catalogue.flux_ratio,
                               model_b.sum(axis=(1, 2, 3)) / model_a.sum(axis=(1, 2, 3)), rtol=1e-4)
    # no phantom boundary: B's target carries sky noise where its frame was padded
    mask = np.repeat(summed.fill_mask_b, 3, axis=1)
    if mask.sum() > 50:
        assert (summed.target_b[mask] > 0).mean() > 0.2
        assert (maxed.target_b[mask] == 0).mean() > (summed.target_b[mask] == 0).mean()


@pytest.mark.parametrize("padding", ["zero", "reflect"])
def test_warping_only_the_central_window_equals_cutting_the_warped_frame(padding):
    from galaxai.data.blend import _warp_batch, draw_transform

    rng = np.random.default_rng(3)
    planes = rng.uniform(0, 1, (5, 4, 40, 40))
    cfg = BlendConfig.preset("paper")
    transforms = [draw_transform(np.random.default_rng(i), cfg) for i in range(5)]
    full, full_mask = _warp_batch(planes, transforms, padding, 424)
    part, part_mask = _warp_batch(planes, transforms, padding, 424, window=(9, 22))
    np.testing.assert_array_equal(part, full[..., 9:31, 9:31])
    np.testing.assert_array_equal(part_mask, full_mask[..., 9:31, 9:31])
