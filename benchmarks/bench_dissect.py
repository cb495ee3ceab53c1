"""Dissection speed: time per blend of ``dissect_units`` on every layer vs one generator forward.

The work of a dissection is forward passes plus counting: the threshold set runs once for the
activation quantiles (its first ``quantile_images`` blends) and once for the (unit, concept,
threshold) tables, the dissection set once for the IoU tables. Both timings are taken in the same
process, one thread, same batches, ``torch.inference_mode``; the ratio is

    dissect_units(threshold set of N, dissection set of N) / (forward passes over the 2N blends).

Usage::

    galaxai data blend --out STORE --n 1000 --seed 9001 --preset small --test-fraction 1
    python benchmarks/bench_dissect.py STORE [--n 500] [--model small] [--repeat 2]
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from galaxai.api import _generator
from galaxai.dissect import deblender_layers, dissect_units
from galaxai.dissect.workflow import load_sets


def main() -> None:  # noqa: D103
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("store")
    parser.add_argument("--n", type=int, default=500, help="blends per set")
    parser.add_argument("--model", default="small")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(1)
    G = _generator(args.model, torch.device("cpu"))
    sets = load_sets(args.store, args.n)
    thr = sets.concept_set(sets.threshold_rows, args.batch_size)
    dis = sets.concept_set(sets.dissection_rows, args.batch_size)
    layers = list(deblender_layers(G))
    blends = torch.from_numpy(sets.blends)
    n_total = len(blends)
    forward, dissect = [], []
    for _ in range(args.repeat):   # interleaved, so both see the same machine load
        t0 = time.perf_counter()
        with torch.inference_mode():
            for lo in range(0, n_total, args.batch_size):
                G(blends[lo:lo + args.batch_size])
        forward.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        result = dissect_units(G, thr, dis, layers)
        dissect.append(time.perf_counter() - t0)
    f, d = min(forward), min(dissect)
    units = len(result.units)
    print(f"# {args.model} generator, {len(layers)} layers, {units} units; threshold set "
          f"{len(thr)} + dissection set {len(dis)} blends, 1 thread, best of {args.repeat}")
    print(f"forward over {n_total} blends: {f:.2f} s ({1e3 * f / n_total:.1f} ms/blend)")
    print(f"dissect_units: {d:.2f} s ({1e3 * d / n_total:.1f} ms/blend)")
    print(f"ratio (time per blend / one forward pass): {d / f:.2f}")
    print(f"interpretable units: {int(np.sum(result.units.interpretable))}")


if __name__ == "__main__":
    main()
