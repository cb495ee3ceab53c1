"""Training speed of the deblender GAN on this machine, per preset, and the data loader's share.

For each preset (``tiny``, ``small``, ``paper``) this runs the real trainer (``galaxai.train.gan``)
for a few burn-in and adversarial iterations in a temporary run directory and reads the per-iteration
wall times from ``stats.jsonl`` (the first iteration of each phase is warm-up and not counted). It
then times the trainer's data path alone (same sampler, batch size and workers; two mini-batches per
adversarial iteration) and prints the loader's share of an adversarial iteration.

Data: a ``galaxai.data.store.BlendStore`` built from a few simulated blends if that module is
available, otherwise an in-memory dataset of smooth blob pairs.

Usage::

    python benchmarks/bench_train.py [--presets tiny small paper] [--paper-iterations 2]
                                     [--threads N]
"""
from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from galaxai.models.deblender import build_discriminator, build_generator, count_parameters
from galaxai.train.gan import ResumableBatchSampler, GANTrainConfig, train


class BlobPairs(Dataset):
    """In-memory blob pairs (A centred, B offset, blend = maximum), 3×80×80 float32 in [0, 1]."""

    def __init__(self, n: int = 128, size: int = 80, seed: int = 0) -> None:
        rng = np.random.default_rng(seed)
        yy, xx = np.mgrid[:size, :size]
        c = size / 2

        def blob(cx: float, cy: float, sigma: float) -> torch.Tensor:
            im = np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * sigma**2))
            colour = rng.uniform(0.3, 1.0, 3)[:, None, None]
            return torch.from_numpy((im[None] * colour).astype(np.float32))

        self.items = []
        for _ in range(n):
            a = blob(c, c, rng.uniform(3, 9))
            b = blob(c + rng.uniform(-20, 20), c + rng.uniform(-20, 20), rng.uniform(2, 7))
            self.items.append({"blend": torch.maximum(a, b), "target_a": a, "target_b": b})

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> dict:
        return self.items[i]


def make_dataset(tmp: Path) -> tuple[Dataset, str]:
    """A BlendStore when the data pipeline provides one, else in-memory blob pairs."""
    try:
        from galaxai.data.store import BlendStore, build_store
    except ImportError:
        return BlobPairs(), "in-memory blob pairs (galaxai.data.store not available)"
    try:
        path = build_store(tmp / "store", n=128, seed=0)
        return BlendStore(path), f"BlendStore of 128 simulated blends at {path}"
    except Exception as exc:  # noqa: BLE001 - report and fall back, the benchmark still runs
        return BlobPairs(), f"in-memory blob pairs (building a BlendStore failed: {exc})"


def time_training(dataset: Dataset, preset: str, burn_in: int, adversarial: int, tmp: Path) -> dict:
    """Seconds per burn-in and per adversarial iteration, from the trainer's own stats."""
    cfg = GANTrainConfig.preset(
        preset, burn_in=burn_in, iterations=adversarial, log_every=1,
        checkpoint_every=10**9, perceptual="multiscale",
    )
    run = tmp / f"run-{preset}"
    start = time.perf_counter()
    train(dataset, run, cfg, device="cpu")
    total = time.perf_counter() - start
    lines = [json.loads(x) for x in (run / "stats.jsonl").read_text().splitlines()]
    t = [0.0] + [x["elapsed"] for x in lines]
    burn = np.diff(t[: burn_in + 1])[1:]
    adv = np.diff(t[burn_in:])[1:]
    return {
        "cfg": cfg,
        "burn_s": float(np.mean(burn)) if burn.size else float("nan"),
        "adv_s": float(np.mean(adv)) if adv.size else float("nan"),
        "total_s": total,
    }


def time_loader(dataset: Dataset, cfg: GANTrainConfig, iterations: int) -> float:
    """Seconds to deliver the two mini-batches of one adversarial iteration (trainer's loader)."""
    loader = DataLoader(
        dataset, batch_sampler=ResumableBatchSampler(len(dataset), cfg.batch_size, cfg.seed),
        num_workers=cfg.num_workers, generator=torch.Generator().manual_seed(cfg.seed),
    )
    batches = iter(loader)
    next(batches)  # warm-up
    start = time.perf_counter()
    for _ in range(2 * iterations):
        batch = next(batches)
        _ = [batch[k].float() for k in ("blend", "target_a", "target_b")]
    return (time.perf_counter() - start) / iterations


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--presets", nargs="+", default=["tiny", "small", "paper"])
    parser.add_argument("--paper-iterations", type=int, default=2,
                        help="adversarial iterations timed for the paper preset (first is warm-up)")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    schedule = {"tiny": (3, 10), "small": (3, 5), "paper": (2, max(2, args.paper_iterations))}
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        dataset, source = make_dataset(tmp)
        load = ", ".join(f"{v:.1f}" for v in os.getloadavg())
        print(f"deblender training speed on CPU ({torch.get_num_threads()} torch threads, "
              f"load average {load})")
        print(f"data: {source}")
        print("burn-in timed with the multi-scale perceptual fallback (VGG19 needs a local file)")
        header = (f"{'preset':<7} {'G params':>10} {'D params':>11} {'batch':>5} "
                  f"{'burn-in s/it':>12} {'adv s/it':>9} {'adv it/s':>9} {'samples/s':>9} "
                  f"{'loader s/it':>11} {'loader share':>12}")
        print(header)
        print("-" * len(header))
        for preset in args.presets:
            burn_in, adversarial = schedule[preset]
            r = time_training(dataset, preset, burn_in, adversarial, tmp)
            cfg = r["cfg"]
            g = count_parameters(build_generator(cfg.model))
            d = count_parameters(build_discriminator(cfg.model))
            loader_s = time_loader(dataset, cfg, iterations=5)
            share = loader_s / r["adv_s"]
            samples = 2 * cfg.batch_size / r["adv_s"]
            print(f"{preset:<7} {g:>10,} {d:>11,} {cfg.batch_size:>5} {r['burn_s']:>12.3f} "
                  f"{r['adv_s']:>9.3f} {1 / r['adv_s']:>9.3f} {samples:>9.1f} "
                  f"{loader_s:>11.4f} {share:>11.1%}", flush=True)
            if preset in ("small", "paper"):
                full = GANTrainConfig.preset(preset)
                hours = (full.burn_in * r["burn_s"] + full.iterations * r["adv_s"]) / 3600
                print(f"        -> full '{preset}' schedule ({full.burn_in:,} burn-in + "
                      f"{full.iterations:,} adversarial) would take ~{hours:.2f} h here")


if __name__ == "__main__":
    main()
