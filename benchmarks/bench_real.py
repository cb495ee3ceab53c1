"""Real-sky robustness: deblenders against SEP, photutils and copy-the-blend under survey looks.

Takes a blend store of real galaxies (``galaxai data blend --source hdf --source cosmos ...``) and
re-displays its targets with fixed looks (:mod:`galaxai.data.augment`): as stored, linear, sqrt,
log and asinh stretches, a sum merge, and JPEG at quality 50. For each look it prints the pooled
PSNR of every method on the same blends and the paired differences GAN − SEP and GAN − photutils
(mean ± s.e.).

``--single-pass`` adds, for each GAN, the same network run once per blend
(``self_ensemble=False``) beside its default (the shipped default runs as a self-ensemble over
the stamp's eight symmetries): the gain of the self-ensemble and its cost in seconds per blend.

``--normalise REF_STORE`` adds, for each GAN, a variant that first maps every blend's sky level
and 99.5th percentile onto those of REF_STORE's blends (e.g. the simulated stamps the model was
trained on) and maps the outputs back: the "normalisation step" alternative to augmentation.

Usage: ``python benchmarks/bench_real.py [STORE [CHECKPOINT ...]] [--n N] [--normalise REF]
[--looks "as stored,sum merge"] [--single-pass]`` (checkpoints: folders
or ``G.safetensors``; default the shipped model). Without a store, 128 blends of the HDF and
COSMOS test galaxies are made in a temporary folder. About a minute per look for 400 blends on
one core.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from functools import partial
from pathlib import Path

import numpy as np

from galaxai.api import deblend
from galaxai.data.augment import Look, augment_pair
from galaxai.data.real import frame_sky
from galaxai.data.store import BlendStore
from galaxai.evaluate import evaluate_methods, paired_differences
from galaxai.models.classical import DEBLENDERS

LOOKS = {
    "as stored": Look("identity", 1.0, 0.0, 0.0, "max", 0),
    "linear x2": Look("linear", 2.0, 0.05, 0.0, "max", 0),
    "sqrt": Look("sqrt", 1.0, 0.05, 0.0, "max", 0),
    "log a=100": Look("log", 1.0, 0.05, 100.0, "max", 0),
    "asinh b=0.1": Look("asinh", 1.0, 0.05, 0.1, "max", 0),
    "sum merge": Look("identity", 1.0, 0.0, 0.0, "sum", 0),
    "JPEG q=50": Look("identity", 1.0, 0.0, 0.0, "max", 50),
}


def normalised(fn, reference: np.ndarray, q: float = 99.5):
    """``fn`` applied to blends whose sky and ``q``-th percentile are mapped onto ``reference``'s
    (per channel, medians over its blends), with the outputs mapped back."""
    ref_sky = np.median(reference, axis=(0, 2, 3))
    ref_top = np.median(np.percentile(reference, q, axis=(2, 3)), axis=0)

    def run(blends: np.ndarray):
        sky = np.median(blends, axis=(1, 2), keepdims=True)
        top = np.percentile(blends, q, axis=(1, 2), keepdims=True)
        scale = (ref_top - ref_sky) / np.maximum(top - sky, 1e-3)
        a, b = fn(np.clip(ref_sky + (blends - sky) * scale, 0, 1).astype(np.float32))
        return tuple(np.clip(sky + (np.asarray(y) - ref_sky) / scale, 0, 1).astype(np.float32)
                     for y in (a, b))
    return run


def relook(arrays: dict, sky_a: np.ndarray, sky_b: np.ndarray, look: Look
           ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The store's targets (sky levels ``sky_a``, ``sky_b``) re-displayed with ``look`` and
    merged again."""
    ta, tb = arrays["target_a"], arrays["target_b"]
    out = [augment_pair(ta[i], tb[i], sky_a[i], sky_b[i], look) for i in range(len(ta))]
    return tuple(np.stack(x) for x in zip(*out))


def main(store: str, checkpoints: list[str], n: int | None, reference: str | None = None,
         looks: list[str] | None = None, single_pass: bool = False) -> None:
    arrays = BlendStore(store, split="test").to_arrays(n)
    gans = {f"GAN {'/'.join(Path(c).parts[-2:]) if c else 'shipped'}": partial(deblend, checkpoint=c)
            for c in checkpoints or [None]}
    if single_pass:
        gans.update({f"{name} one pass": partial(fn, self_ensemble=False)
                     for name, fn in list(gans.items())})
    if reference is not None:
        ref = BlendStore(reference, split="test").to_arrays()["blend"]
        gans.update({f"{name} +norm": normalised(fn, ref) for name, fn in list(gans.items())})
    peers = ("sep", "photutils")
    methods = {**gans, **{p: DEBLENDERS[p] for p in peers}, "copy": DEBLENDERS["copy"]}
    print(f"{store}: {len(arrays['blend'])} blends; pooled PSNR (dB); paired GAN − peer ± s.e.")
    sky_a = frame_sky(np.moveaxis(arrays["target_a"], 1, -1))[0]
    sky_b = frame_sky(np.moveaxis(arrays["target_b"], 1, -1))[0]
    for name in looks or list(LOOKS):
        blend, ta, tb = relook(arrays, sky_a, sky_b, LOOKS[name])
        results = evaluate_methods(methods, blend, ta, tb)
        scores = "  ".join(f"{m}: {r.summary['psnr_pooled_mean']:.2f}" for m, r in results.items())
        print(f"  {name:12s} {scores}")
        if single_pass:
            for gan in [g for g in gans if not g.endswith(" one pass")]:
                one = results[f"{gan} one pass"].summary
                both = results[gan].summary
                print(f"  {'':12s} {gan} − one pass {both['psnr_pooled_mean'] - one['psnr_pooled_mean']:+.2f} dB"
                      f" at {both['seconds_per_blend'] / one['seconds_per_blend']:.1f}× the seconds per blend")
        for peer in peers:
            paired = paired_differences(results, peer)
            diffs = "  ".join(f"{row.method.split(' − ')[1]} − {peer} {-row.psnr_pooled_diff:+.2f}"
                              f" ± {row.psnr_pooled_se:.2f}" for row in paired.itertuples()
                              if row.method.split(" − ")[1] in gans)
            print(f"  {'':12s} {diffs}")


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("store", nargs="?", help="real blend store (default: 128 test blends)")
    parser.add_argument("checkpoints", nargs="*", help="checkpoint folders, G.safetensors or "
                        "shipped names (default: the shipped model)")
    parser.add_argument("--n", type=int, default=None, help="score only the first N blends")
    parser.add_argument("--normalise", metavar="REF", default=None,
                        help="add each GAN with sky/percentile normalisation onto REF's blends")
    parser.add_argument("--single-pass", action="store_true",
                        help="add each GAN run as one forward pass (self_ensemble=False)")
    parser.add_argument("--looks", default=None, metavar="NAME,NAME",
                        help=f"only these looks (of: {', '.join(LOOKS)})")
    return parser.parse_args()


if __name__ == "__main__":
    args = _arguments()
    looks = args.looks.split(",") if args.looks else list(LOOKS)
    unknown = sorted(set(looks) - set(LOOKS))
    if unknown:
        sys.exit(f"--looks: unknown look(s) {unknown}; choose from {list(LOOKS)}")
    if args.store:
        main(args.store, args.checkpoints, args.n, args.normalise, looks, args.single_pass)
    else:
        from galaxai.data.real import RealFrames, cosmos_frames, hdf_frames, real_blends
        from galaxai.data.store import write_store

        frames = RealFrames.concat([hdf_frames("test", seed=77), cosmos_frames("test", seed=77)])
        with tempfile.TemporaryDirectory() as tmp:
            path = write_store(Path(tmp) / "real_test", real_blends(frames, 128, seed=77),
                               split="test")
            main(str(path), [], args.n, looks=looks, single_pass=args.single_pass)
