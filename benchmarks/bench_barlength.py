"""Algorithm 1 "fast" vs "paper" on 224² maps, and SmoothGrad vs its gradient-cost limits.

Part 1 runs both bar-length methods on the same maps (Ferrers bars at several position angles
and axis ratios, round and elongated Gaussians, smoothed-noise maps, noisy bar + bulge maps like
SmoothGrad output), checks that they return identical results, and prints the per-map and total
speed-up of ``"fast"`` (goal ≥ 100×). Maps that stop at the first threshold (T = 0.5) give the
paper loop a single iteration, so their speed-up is small; the table shows them separately.

Part 2 (when ``galaxai.explain.smoothgrad`` is importable) times SmoothGrad of the ``Class3.1``
logit of a tiny VGG16-style classifier against (a) the N × batched-gradient limit: the time of
``ceil(N / chunk)`` forward/backward passes over ``chunk`` noisy copies per image, measured with
plain autograd, and (b) a per-sample loop, one forward/backward per noisy copy.

Usage: ``python benchmarks/bench_barlength.py [n_samples] [repeats] [parts]`` (defaults 256, the
paper's N; 3; ``barlength,smoothgrad``); the best of ``repeats`` timings is reported for the
fast paths.
"""
from __future__ import annotations

import math
import sys
import time

import numpy as np
import torch
from scipy.ndimage import gaussian_filter

from galaxai.models.morphology import build_classifier, gz_column_index
from galaxai.morphology import bar_lengths, measure_bar

SIZE = 224
T_C, T_L = 0.85, 40


def _coords(pa_deg: float):
    c = (SIZE - 1) / 2
    yy, xx = np.mgrid[:SIZE, :SIZE].astype(float)
    t = math.radians(pa_deg)
    u = (xx - c) * math.cos(t) + (yy - c) * math.sin(t)
    return u, -(xx - c) * math.sin(t) + (yy - c) * math.cos(t)


def _minmax(m: np.ndarray) -> np.ndarray:
    return (m - m.min()) / (m.max() - m.min())


def ferrers(pa: float, a: float = 30.0, q: float = 0.25) -> np.ndarray:
    u, v = _coords(pa)
    m2 = (u / a) ** 2 + (v / (q * a)) ** 2
    return _minmax(np.where(m2 < 1, np.abs(1 - m2) ** 2.5, 0.0))


def gaussian(sigma: float, q: float = 1.0, pa: float = 0.0) -> np.ndarray:
    u, v = _coords(pa)
    return _minmax(np.exp(-0.5 * ((u / sigma) ** 2 + (v / (q * sigma)) ** 2)))


def saliency_like(seed: int, pa: float) -> np.ndarray:
    """Bar + bulge + correlated noise, min–max: the look of a SmoothGrad bar map."""
    rng = np.random.default_rng(seed)
    noise = gaussian_filter(rng.normal(size=(SIZE, SIZE)), 2.0)
    return _minmax(0.8 * ferrers(pa, a=rng.uniform(15, 40), q=rng.uniform(0.2, 0.45))
                   + 0.5 * gaussian(6.0) + 0.6 * noise / noise.std() * 0.15)


def maps() -> list[tuple[str, np.ndarray]]:
    rng = np.random.default_rng(0)
    out = [(f"ferrers pa={pa:g} q={q:g}", ferrers(pa, q=q))
           for pa, q in ((0, 0.25), (10, 0.25), (20, 0.25), (45, 0.4), (45, 0.25), (90, 0.3))]
    out += [("gaussian round", gaussian(10.0)), ("gaussian q=0.5 pa=30", gaussian(10.0, 0.5, 30))]
    out += [(f"smooth noise s={s:g}", _minmax(gaussian_filter(rng.normal(size=(SIZE, SIZE)), s)))
            for s in (4.0, 8.0)]
    out += [(f"saliency-like {i}", saliency_like(i, pa))
            for i, pa in enumerate((15.0, 60.0, 100.0))]
    return out


def _best(fn, repeats: int) -> float:
    best = math.inf
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def bench_barlength(repeats: int) -> None:
    print(f"== Algorithm 1 on {SIZE}² maps, T_c={T_C}, T_l={T_L}: 'paper' loop vs 'fast' ==")
    print(f"{'map':<24} {'stop T':>7} {'by':>9} {'L224':>7} {'paper s':>8} {'fast ms':>8} "
          f"{'ratio':>7}")
    rows = []
    for name, m in maps():
        t0 = time.perf_counter()
        p = measure_bar(m, T_C, T_L, "paper")
        t_paper = time.perf_counter() - t0
        f = measure_bar(m, T_C, T_L, "fast")
        same = (p.threshold_index == f.threshold_index and p.length_px == f.length_px
                and np.array_equal(p.mask, f.mask))
        if not same:
            raise SystemExit(f"MISMATCH on {name}: paper {p} vs fast {f}")
        t_fast = _best(lambda: measure_bar(m, T_C, T_L, "fast"), repeats)
        rows.append((p.threshold_index, t_paper, t_fast))
        print(f"{name:<24} {p.threshold:7.4f} {p.stopped_by:>9} {p.length_px:7.2f} "
              f"{t_paper:8.3f} {1e3 * t_fast:8.2f} {t_paper / t_fast:6.0f}x")
    idx, paper_t, fast_t = (np.array(c) for c in zip(*rows))
    looped = idx > 0
    print(f"all {len(rows)} maps identical. total speed-up {paper_t.sum() / fast_t.sum():.0f}x; "
          f"median per map {np.median(paper_t / fast_t):.0f}x")
    if looped.any():
        print(f"maps that loop past T=0.5 ({looped.sum()}): median "
              f"{np.median(paper_t[looped] / fast_t[looped]):.0f}x, "
              f"min {np.min(paper_t[looped] / fast_t[looped]):.0f}x")
    if (~looped).any():
        print(f"maps stopping at T=0.5 ({(~looped).sum()}): median "
              f"{np.median(paper_t[~looped] / fast_t[~looped]):.1f}x (one paper iteration)")
    stack = np.stack([m for _, m in maps()])
    t_grid = _best(lambda: bar_lengths(stack, (0.7, 0.75, 0.8, 0.85, 0.9), (10, 20, 30, 40, 50)),
                   1)
    print(f"'fast' full 5x5 (T_c, T_l) grid: {1e3 * t_grid / len(stack):.1f} ms per map "
          f"(paper loop: about 25 x {paper_t.mean():.2f} s per map)")


def bench_smoothgrad(n: int, repeats: int) -> None:
    print(f"\n== SmoothGrad (N={n}) on a tiny VGG16-style classifier, Class3.1 logit ==")
    try:
        from galaxai.explain import smoothgrad
    except ImportError as exc:
        print(f"PENDING: galaxai.explain.smoothgrad is not available yet ({exc})")
        return
    torch.set_num_threads(1)  # stable timings on a shared CPU; all three timings alike
    torch.manual_seed(0)
    model = build_classifier("vgg16", "tiny").eval()
    size = model.config.image_size
    target = gz_column_index("Class3.1")
    batch, chunk = 4, 32
    x = torch.rand(batch, 3, size, size)

    def run_smoothgrad():
        return smoothgrad(model, x, target=target, n=n, noise=0.1, chunk=chunk, seed=0)

    def batched_limit():
        noisy = x[:1].expand(chunk, -1, -1, -1).clone().requires_grad_(True)
        (g,) = torch.autograd.grad(model.logits(noisy)[:, target].sum(), noisy)
        return g

    def per_sample_loop():
        sigma = 0.1 * (x.amax(dim=(1, 2, 3)) - x.amin(dim=(1, 2, 3)))
        acc = torch.zeros_like(x)
        for b in range(batch):
            for _ in range(n):
                xi = (x[b:b + 1] + sigma[b] * torch.randn_like(x[b:b + 1])).requires_grad_(True)
                (g,) = torch.autograd.grad(model.logits(xi)[0, target], xi)
                acc[b] += g[0].abs()
        return acc

    t_sg = _best(run_smoothgrad, repeats)
    t_chunk = _best(batched_limit, repeats)
    limit = batch * math.ceil(n / chunk) * t_chunk
    t_loop = _best(per_sample_loop, 1)
    print(f"{batch} images {size}², chunk {chunk}, 1 torch thread: smoothgrad {t_sg:.3f} s; "
          f"N x batched-gradient limit {limit:.3f} s (ratio {t_sg / limit:.2f}); "
          f"per-sample loop {t_loop:.3f} s (speed-up {t_loop / t_sg:.1f}x)")


def main(argv: list[str]) -> None:
    n = int(argv[1]) if len(argv) > 1 else 256
    repeats = int(argv[2]) if len(argv) > 2 else 3
    parts = argv[3].split(",") if len(argv) > 3 else ["barlength", "smoothgrad"]
    if "barlength" in parts:
        bench_barlength(repeats)
    if "smoothgrad" in parts:
        bench_smoothgrad(n, repeats)


if __name__ == "__main__":
    main(sys.argv)
