"""Cost of the full explanation-quality evaluation per image, relative to one Polarized-LRP call.

Model: the shipped ``small`` discriminator (80x80x3). Images: ``--n`` real targets and ``--n``
generated outputs as random stand-ins (uniform noise in [-1, 1]; the cost hardly depends
on the content). Timed side by side in one run, single-threaded:

* one Polarized-LRP call (``galaxai.explain.polarized_lrp``) on the same ``2 n`` images, best of
  ``--repeats``;
* :func:`galaxai.explain_eval.evaluate_checkpoint` (every compared method), part by part: maps +
  faithfulness + Gini on all images, then sensitivity, randomisation and localisation each on a
  few images; their cost per image of a 512-image ``small`` evaluation is their cost per
  processed image times the preset's image count for them / 512 (32, 8 and 128 of 512).

Prints seconds per image for each part and the total, and the ratio to one Polarized-LRP call
per image.

Usage::

    python benchmarks/bench_explain_eval.py [--n 16] [--repeats 3]
"""
from __future__ import annotations

import argparse
import dataclasses
import time

import numpy as np
import torch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=16, help="real and generated images each")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(1)

    from galaxai.api import DEFAULT_DISCRIMINATOR
    from galaxai.explain import polarized_lrp
    from galaxai.explain_eval import ExplainEvalConfig, evaluate_checkpoint
    from galaxai.train.checkpoints import load_discriminator

    D, _ = load_discriminator(DEFAULT_DISCRIMINATOR)
    rng = np.random.default_rng(0)
    real = rng.uniform(-1, 1, (args.n, 3, 80, 80)).astype(np.float32)
    generated = rng.uniform(-1, 1, (args.n, 3, 80, 80)).astype(np.float32)
    images = 2 * args.n
    x = torch.from_numpy(np.concatenate([real, generated]))
    polarized_lrp(D, x[:2])  # warm-up
    plrp = []
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        polarized_lrp(D, x)
        plrp.append(time.perf_counter() - t0)
    per_plrp = min(plrp) / images

    # each part on its own: the shared base (maps, faithfulness, Gini on every image), then each
    # sub-measure on `unit` images; per image of a 512-image 'small' evaluation, a sub-measure
    # costs (its time per processed image) x (its image count in the preset) / 512
    full = ExplainEvalConfig.preset("small")
    zero = dict(n_localise=0, n_randomise=0, n_sensitivity=0)
    unit = {"sensitivity": ("n_sensitivity", images), "randomisation": ("n_randomise", 1),
            "localisation": ("n_localise", 4 * images)}
    t0 = time.perf_counter()
    evaluate_checkpoint(D, real, generated, dataclasses.replace(full, **zero))
    base = time.perf_counter() - t0
    rows = [("maps + faithfulness + Gini", base / images)]
    for name, (field, count) in unit.items():
        t0 = time.perf_counter()
        evaluate_checkpoint(D, real, generated, dataclasses.replace(full, **{**zero, field: count}))
        extra = max(time.perf_counter() - t0 - base, 0.0)
        rows.append((f"{name} ({getattr(full, field)} of 512)",
                     extra / count * getattr(full, field) / 512))
    total = sum(seconds for _, seconds in rows)
    print(f"{images} images, shipped small D, 1 thread; cost per image of a 512-image 'small' "
          "evaluation (every compared method)")
    print(f"{'':38s}{'s / image':>12s}{'x Polarized-LRP':>18s}")
    print(f"{'one Polarized-LRP call':38s}{per_plrp:12.4f}{1.0:18.1f}")
    for name, seconds in rows:
        print(f"{'  ' + name:38s}{seconds:12.4f}{seconds / per_plrp:18.1f}")
    print(f"{'full evaluation':38s}{total:12.4f}{total / per_plrp:18.1f}")


if __name__ == "__main__":
    main()
