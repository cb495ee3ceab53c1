"""Which share of each deblender branch's positive LRP relevance comes from the wrong galaxy.

Measures :func:`galaxai.explain.wrong_galaxy_share` on the shipped ``small`` generator over a
held-out blend store with component truth, and the conservation ratio (input relevance sum over
the explained output sum) of :func:`galaxai.explain.generator_lrp` on the same blends.

Usage::

    galaxai data blend --out STORE --n 256 --seed 9001 --preset small --test-fraction 1
    python benchmarks/generator_lrp_share.py STORE [--n 256] [--rule epsilon] [--bins 5 10 15 20 25]
"""
from __future__ import annotations

import argparse

import numpy as np
import torch

from galaxai.api import _generator
from galaxai.data.store import BlendStore
from galaxai.explain import GeneratorLRP, wrong_galaxy_share
from galaxai.explain.generator_lrp import footprint


def main() -> None:  # noqa: D103
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("store")
    parser.add_argument("--n", type=int, default=256)
    parser.add_argument("--rule", default="epsilon")
    parser.add_argument("--bins", type=float, nargs="+", default=[5, 10, 15, 20, 25])
    args = parser.parse_args()
    torch.set_num_threads(1)
    store = BlendStore(args.store, components=True)
    comps = [k for k in store.names if k.startswith("comp_")]
    arrays = store.to_arrays(args.n, names=["blend", *comps])
    cat = store.catalogue.iloc[: len(arrays["blend"])]
    flux = {g: sum(arrays[k] for k in comps if k.startswith(f"comp_{g}_")) for g in "ab"}
    fa = footprint(flux["a"], cat["a_sky_sigma_r"].to_numpy())
    fb = footprint(flux["b"], cat["b_sky_sigma_r"].to_numpy())
    G = _generator(None, torch.device("cpu"))
    blends = torch.from_numpy(arrays["blend"])
    print(f"# {len(blends)} blends from {args.store}, shipped 'small' generator, rule={args.rule}")
    for b in "AB":
        ratios = []
        with GeneratorLRP(G, branch=b, rule=args.rule) as explain:
            for lo in range(0, len(blends), 32):
                res = explain(blends[lo:lo + 32])
                ratios.append((res.maps.sum((1, 2, 3)) / res.logits).numpy())
        r = np.concatenate(ratios)
        print(f"conservation branch {b}: sum(R_in)/f median {np.median(r):.3f}, "
              f"5-95% {np.percentile(r, 5):.3f}-{np.percentile(r, 95):.3f}")
    table = wrong_galaxy_share(G, blends, fa, fb, cat["separation_px"].to_numpy(),
                               bins=args.bins, rule=args.rule, progress=True)
    with np.printoptions(precision=3):
        print(table.round(3).to_string(index=False))


if __name__ == "__main__":
    main()
