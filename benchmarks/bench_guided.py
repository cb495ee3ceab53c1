"""Wall-time cost of xAI-GAN guidance per adversarial iteration, measured side by side.

Builds one deblender trainer per arm (baseline, and guidance with each explainer asked for) on the
same in-memory blob pairs and preset, then times ``GANTrainer.adversarial_step`` in interleaved
rounds (baseline, guided, baseline, guided, ...) so that load on a shared machine hits every arm
alike. Guidance is forced on (``gate=False``: every fake explained, the worst case; with gating
only the fakes D still rejects are explained). Prints the median seconds per iteration of each arm
and its ratio to the baseline. xAI-GAN reported 2.7x for saliency on MNIST.

Usage::

    python benchmarks/bench_guided.py [--preset small] [--rounds 20] [--explainers saliency]
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader

from galaxai.guided import GuideConfig
from galaxai.train.gan import GANTrainConfig, GANTrainer, ResumableBatchSampler

from bench_train import BlobPairs


def _trainer(cfg: GANTrainConfig, data, run: Path) -> GANTrainer:
    trainer = GANTrainer(data, run, cfg, None, "cpu")
    sampler = ResumableBatchSampler(len(data), cfg.batch_size, seed=0)  # endless, same per arm
    trainer._batches = iter(DataLoader(data, batch_sampler=sampler))
    return trainer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="small")
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--explainers", nargs="+", default=["saliency"])
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    base = GANTrainConfig.preset(args.preset, burn_in=0, iterations=10_000, perceptual="pixel")
    data = BlobPairs(n=max(64, 4 * base.batch_size), size=base.model.image_size)
    arms = {"baseline": base}
    for name in args.explainers:
        arms[name] = GANTrainConfig.preset(
            args.preset, burn_in=0, iterations=10_000, perceptual="pixel",
            guide=GuideConfig(explainer=name, start=0, gate=False, smoothgrad_n=8))
    times: dict[str, list[float]] = {name: [] for name in arms}
    with tempfile.TemporaryDirectory() as tmp:
        trainers = {name: _trainer(cfg, data, Path(tmp) / name) for name, cfg in arms.items()}
        for r in range(args.rounds + 1):
            for name, trainer in trainers.items():
                t0 = time.perf_counter()
                trainer.adversarial_step(trainer.cfg.lr, iteration=r)
                if r:  # round 0 warms up
                    times[name].append(time.perf_counter() - t0)
    ref = float(np.median(times["baseline"]))
    print(f"preset {args.preset}, batch {base.batch_size}, {base.model.image_size} px, "
          f"{args.threads} thread(s), {args.rounds} interleaved rounds (median s/iteration)")
    for name, values in times.items():
        med = float(np.median(values))
        print(f"{name:>14}: {med:.4f} s/it  ratio {med / ref:.2f}x  (IQR {np.percentile(values, 25):.4f}"
              f"-{np.percentile(values, 75):.4f})")


if __name__ == "__main__":
    main()
