"""Wall-time cost of xAI-CycleGAN saliency per training iteration, measured side by side.

Builds one Mask CycleGAN trainer per arm (baseline, saliency, and its controls if asked) on the
same random stamps and preset, then times ``CycleGANTrainer.step`` in interleaved rounds so that
load on a shared machine hits every arm alike. Saliency is on from iteration 0 (pass 1 with the
mask discriminators' saliency, then both discriminators' saliency for the gradient map: four
extra backward passes through a PatchGAN per step). Prints the median seconds per iteration of
each arm and its ratio to the baseline.

Usage::

    python benchmarks/bench_cyclegan.py [--preset small] [--rounds 30] [--arms baseline saliency]
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from galaxai.train.cyclegan import CycleGANTrainer, StampSets, arm_config


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="small")
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--arms", nargs="+", default=["baseline", "saliency"])
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    cfgs = {arm: arm_config(arm, args.preset, 10_000, 0, log_every=0) for arm in args.arms}
    size = next(iter(cfgs.values())).model.image_size
    rng = np.random.default_rng(0)
    sets = StampSets(*(np.tanh(rng.normal(size=(64, 3, size, size))).astype(np.float32)
                       for _ in range(4)))
    times: dict[str, list[float]] = {arm: [] for arm in cfgs}
    with tempfile.TemporaryDirectory() as tmp:
        trainers = {arm: CycleGANTrainer(sets, Path(tmp) / arm, cfg, label=arm)
                    for arm, cfg in cfgs.items()}
        for r in range(args.rounds + 1):
            for arm, trainer in trainers.items():
                t0 = time.perf_counter()
                trainer.step()
                if r:  # round 0 warms up
                    times[arm].append(time.perf_counter() - t0)
    first = next(iter(cfgs.values()))
    ref = float(np.median(times[args.arms[0]]))
    print(f"preset {args.preset}, batch {first.batch_size}, {size} px, {args.threads} thread(s), "
          f"{args.rounds} interleaved rounds (median s/iteration, ratio to {args.arms[0]})")
    for arm, values in times.items():
        med = float(np.median(values))
        print(f"{arm:>10}: {med:.4f} s/it  ratio {med / ref:.2f}x  (IQR "
              f"{np.percentile(values, 25):.4f}-{np.percentile(values, 75):.4f})")


if __name__ == "__main__":
    main()
