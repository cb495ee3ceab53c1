"""Seconds per blend of the classical deblenders vs the copy-the-blend floor, measured in one run.

Blends are 80×80 display images: simulated galaxies (:mod:`galaxai.data.simulate`) blended by
:mod:`galaxai.data.blend` when those modules are importable, otherwise two max-merged Gaussian
blobs with clipped sky noise. Each method runs on the same blends; the script prints seconds per
blend, the ratio to copy-the-blend, and the pooled PSNR / SSIM (data_range 1) for context.

Usage: ``python benchmarks/bench_classical.py [n_blends] [repeats]`` (defaults 48 and 3; the
best of ``repeats`` timings is reported).
"""
from __future__ import annotations

import sys

import numpy as np

from galaxai.evaluate import evaluate_deblender
from galaxai.models.classical import DEBLENDERS

SIZE = 80


def simulated_blends(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray, str]:
    """(blend, target_a, target_b) channel-first in [0, 1] from the galaxai simulator."""
    from galaxai.data.blend import BlendConfig, make_blends
    from galaxai.data.simulate import SimConfig, simulate

    sample = simulate(2 * n, seed=seed, config=SimConfig.preset("small"))
    batch = make_blends(sample.display[:n], sample.display[n:], seed, BlendConfig.preset("paper"))
    return batch.blend, batch.target_a, batch.target_b, "galaxai.data.simulate + galaxai.data.blend (paper recipe)"


def gaussian_blends(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray, str]:
    """Two Gaussian blobs per blend (A centred, B offset 8–25 px), sky noise 0.01, max merge."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:SIZE, :SIZE]
    c = (SIZE - 1) / 2

    def blob(x0, y0):
        sigma, amp = rng.uniform(2.5, 6.0), rng.uniform(0.3, 0.9)
        colour = rng.uniform(0.5, 1.0, size=3)
        img = amp * np.exp(-((xx - x0) ** 2 + (yy - y0) ** 2) / (2 * sigma**2))[None] * colour[:, None, None]
        return np.clip(img + 0.01 * rng.standard_normal(img.shape), 0.0, 1.0)

    ta, tb = [], []
    for _ in range(n):
        r, phi = rng.uniform(8, 25), rng.uniform(0, 2 * np.pi)
        ta.append(blob(c, c))
        tb.append(blob(c + r * np.cos(phi), c + r * np.sin(phi)))
    ta, tb = np.asarray(ta, np.float32), np.asarray(tb, np.float32)
    return np.maximum(ta, tb), ta, tb, "synthetic Gaussian blobs (galaxai.data not usable)"


def main(n: int = 48, repeats: int = 3) -> None:
    try:
        blends, ta, tb, source = simulated_blends(n)
    except ImportError as exc:  # the data pipeline is optional for this benchmark
        blends, ta, tb, source = gaussian_blends(n)
        source += f"; reason: {exc}"
    print(f"data: {len(blends)} blends of {blends.shape[-1]}x{blends.shape[-2]} px from {source}")
    rows = {}
    for name, fn in DEBLENDERS.items():
        fn(np.ascontiguousarray(np.moveaxis(blends[:1], 1, -1)))  # warm-up (imports, caches)
        best = None
        for _ in range(repeats):
            result = evaluate_deblender(fn, blends, ta, tb, batch_size=len(blends))
            if best is None or result.summary["seconds_per_blend"] < best.summary["seconds_per_blend"]:
                best = result
        rows[name] = best.summary
    floor = rows["copy"]["seconds_per_blend"]
    print(f"{'method':<10} {'s/blend':>10} {'x copy':>10} {'PSNR dB':>8} {'SSIM dr1':>9} {'SSIM dr2':>9}")
    for name, s in rows.items():
        print(f"{name:<10} {s['seconds_per_blend']:>10.2e} {s['seconds_per_blend'] / floor:>10.0f} "
              f"{s['psnr_pooled_mean']:>8.2f} {s['ssim_pooled_dr1_mean']:>9.3f} {s['ssim_pooled_dr2_mean']:>9.3f}")
    for name in rows:
        if name != "copy":
            ratio = rows[name]["seconds_per_blend"] / floor
            print(f"ratio {name}/copy seconds per blend: {ratio:.0f}")


if __name__ == "__main__":
    args = [int(a) for a in sys.argv[1:3]]
    main(*args)
