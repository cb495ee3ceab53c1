"""Cost of the full explanation-quality evaluation per image, relative to one Polarized-LRP call.

Model: the shipped ``small`` discriminator (80x80x3). Images: ``--n`` real targets and ``--n``
generated outputs as random stand-ins (uniform noise in [-1, 1]; the cost hardly depends
on the content). Timed side by side in one run, single-threaded:

* one Polarized-LRP call (``galaxai.explain.polarized_lrp``) on the same ``2 n`` images, best of
  ``--repeats``;
* :func:`galaxai.explain_eval.evaluate_checkpoint` with the ``small`` sizes scaled to ``n``
  (every compared method; faithfulness, sparseness, sensitivity, randomisation, localisation),
  once, and each of its parts once more on its own so the ratio per part is printed.

Prints seconds per image for each and the ratio evaluation / Polarized-LRP.

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

    # the 'small' sizes for 512 images, scaled to this many images
    scale = images / 512
    full = ExplainEvalConfig.preset("small")
    sized = dataclasses.replace(full, n_localise=max(4, round(full.n_localise * scale)),
                                n_randomise=max(1, round(full.n_randomise * scale)),
                                n_sensitivity=max(1, round(full.n_sensitivity * scale)))
    parts = {
        "faithfulness + sparseness": dict(n_localise=0, n_randomise=0, n_sensitivity=0),
        "sensitivity": dict(n_localise=0, n_randomise=0),
        "randomisation": dict(n_localise=0, n_sensitivity=0),
        "localisation": dict(n_randomise=0, n_sensitivity=0),
    }
    timings = {}
    t0 = time.perf_counter()
    evaluate_checkpoint(D, real, generated, sized)
    timings["full evaluation"] = time.perf_counter() - t0
    for name, zeroed in parts.items():
        t0 = time.perf_counter()
        evaluate_checkpoint(D, real, generated, dataclasses.replace(sized, **zeroed))
        timings[name] = time.perf_counter() - t0
    base = timings["faithfulness + sparseness"]
    print(f"{images} images (shipped small D, 1 thread); sub-measures as 'small' at 512 images: "
          f"localise {sized.n_localise}, randomise {sized.n_randomise}, "
          f"sensitivity {sized.n_sensitivity}")
    print(f"{'':34s}{'s / image':>12s}{'x Polarized-LRP':>18s}")
    print(f"{'one Polarized-LRP call':34s}{per_plrp:12.4f}{1.0:18.1f}")
    for name, seconds in timings.items():
        if name in ("sensitivity", "randomisation", "localisation"):
            seconds = max(seconds - base, 0.0)  # the part alone: its run minus the shared base
            name = f"  of which {name}"
        elif name == "faithfulness + sparseness":
            name = "  of which maps + faithfulness + Gini"
        print(f"{name:34s}{seconds / images:12.4f}{seconds / images / per_plrp:18.1f}")


if __name__ == "__main__":
    main()
