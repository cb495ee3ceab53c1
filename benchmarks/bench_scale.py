"""Scaling past one process: Ray batch deblending (2 actors vs 1 vs local) and DDP training.

1. Batch deblending of the same blend store with the shipped ``small`` model: the local engine
   (one process, one thread), Ray Data with 1 actor and with 2 actors (one thread each). Each is
   timed from the call to :func:`galaxai.batch.run_batch_job` to its return (Ray's actor start
   and model load included; ``ray.init`` not), and after start-up (from the times the output
   parts were written, once every worker finished its first batch). Prints stamps/s and ratios
   ``ray2 / ray1`` (goal >= 1.7 on 2 cores) and ``local / ray1`` (Ray's overhead, goal <= 15 %).
2. The per-stamp cost of ``deblend`` and ``explain`` (Polarized-LRP) on the local engine, for the
   paper-scale estimate in the README.
3. DDP training: the tiny deblender at 80x80, per-rank batch 4, adversarial iterations/s of 1
   process vs 2 processes (gloo, one thread each), read from ``stats.jsonl`` elapsed times (the
   first 2 iterations are warm-up).

Usage::

    python benchmarks/bench_scale.py [--stamps 512] [--batch-size 32] [--iterations 12]
"""
from __future__ import annotations

import argparse
import json
import os
import socket
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch


def _time_job(task, catalogue, store, out, **kw) -> float:
    from galaxai.batch import run_batch_job

    t0 = time.perf_counter()
    results = run_batch_job(task, catalogue, store, out, **kw)
    seconds = time.perf_counter() - t0
    assert (results["status"] == "ok").all(), results[results["status"] != "ok"].head()
    return seconds


def _steady_rate(out: Path, workers: int) -> float:
    """Stamps/s once every worker has finished its first batch (start-up excluded): stamps of
    the parts finished after the first ``workers`` parts over the time between their ends."""
    parts = sorted((out / "parts").glob("*.parquet"), key=lambda p: p.stat().st_mtime_ns)
    ends = [p.stat().st_mtime_ns / 1e9 for p in parts]
    stamps = sum(len(pd.read_parquet(p)) for p in parts[workers:])
    return stamps / (ends[-1] - ends[workers - 1])


def bench_batch(root: Path, n: int, batch_size: int) -> dict[str, float]:
    import ray

    from galaxai.data.simulate import SimConfig
    from galaxai.data.store import build_store

    store = build_store(root / "store", n, seed=0, sim_config=SimConfig.preset("tiny"), chunk=128)
    cat = pd.DataFrame({"row": np.arange(n)})
    times = {"local": _time_job("deblend", cat, store, root / "local", batch_size=batch_size)}
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        for actors in (1, 2):
            times[f"ray{actors}"] = _time_job("deblend", cat, store, root / f"ray{actors}",
                                              engine="ray", actors=actors, batch_size=batch_size)
    finally:
        ray.shutdown()
    explain_n = min(n, 128)
    times["explain"] = _time_job("explain", cat.iloc[:explain_n], store, root / "explain",
                                 batch_size=batch_size) / explain_n
    rates = {k: n / v for k, v in times.items() if k != "explain"}
    steady = {k: _steady_rate(root / k, {"local": 1, "ray1": 1, "ray2": 2}[k]) for k in rates}
    for k, v in rates.items():
        print(f"batch deblend {k:6s}: {v:8.1f} stamps/s end to end ({times[k]:.2f} s for {n} "
              f"stamps), {steady[k]:8.1f} stamps/s after start-up")
    for label, r in (("end to end", rates), ("after start-up", steady)):
        print(f"[{label}] ray 2 actors / 1 actor: {r['ray2'] / r['ray1']:.2f}x (goal >= 1.7); "
              f"local / ray 1 actor: {r['local'] / r['ray1']:.2f} (Ray overhead "
              f"{100 * (r['local'] / r['ray1'] - 1):+.1f} %, goal <= 15 %)")
    print(f"per-stamp CPU cost, 1 thread: deblend {1e3 / rates['local']:.2f} ms, "
          f"explain (Polarized-LRP) {1e3 * times['explain']:.2f} ms")
    return rates


class _Blobs(torch.utils.data.Dataset):
    """Blob pairs at 80x80 (A centred, B offset, blend = maximum)."""

    def __init__(self, n: int = 64, size: int = 80) -> None:
        rng = np.random.default_rng(0)
        yy, xx = np.mgrid[:size, :size]

        def blob(cx, cy, s):
            im = np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * s * s))
            return torch.from_numpy((im[None] * rng.uniform(0.4, 1, (3, 1, 1))).astype(np.float32))

        self.items = []
        for _ in range(n):
            a = blob(40, 40, rng.uniform(3, 6))
            b = blob(40 + rng.uniform(-15, 15), 40 + rng.uniform(-15, 15), rng.uniform(2, 5))
            self.items.append({"blend": torch.maximum(a, b), "target_a": a, "target_b": b})

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> dict:
        return self.items[i]


def _ddp_worker(rank: int, size: int, port: int, run: str, cfg) -> None:
    torch.set_num_threads(1)
    if size > 1:
        os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank),
                          WORLD_SIZE=str(size), LOCAL_RANK=str(rank))
    from galaxai.train.gan import train

    train(_Blobs(), run, cfg, device="cpu")


def bench_ddp(root: Path, iterations: int, per_rank: int) -> dict[int, float]:
    import torch.multiprocessing as mp

    from galaxai.train.gan import GANTrainConfig

    rates = {}
    for size in (1, 2):
        cfg = GANTrainConfig.preset("tiny", batch_size=per_rank * size, burn_in=0,
                                    iterations=iterations, checkpoint_every=iterations,
                                    log_every=1)
        run = root / f"ddp{size}"
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        mp.spawn(_ddp_worker, args=(size, port, str(run), cfg), nprocs=size, join=True)
        stats = [json.loads(x) for x in (run / "stats.jsonl").read_text().splitlines()]
        elapsed = {s["iteration"]: s["elapsed"] for s in stats if "elapsed" in s}
        rates[size] = (iterations - 2) / (elapsed[iterations] - elapsed[2])
        print(f"DDP {size} process(es), batch {per_rank}/rank: {rates[size]:.2f} it/s, "
              f"{rates[size] * per_rank * size:.1f} blend pairs/s")
    print(f"DDP 2 ranks / 1 rank at a fixed per-rank batch: {rates[2] / rates[1]:.2f}x it/s, "
          f"{2 * rates[2] / rates[1]:.2f}x samples/s")
    return rates


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stamps", type=int, default=512)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--iterations", type=int, default=12)
    parser.add_argument("--per-rank-batch", type=int, default=4)
    args = parser.parse_args()
    torch.set_num_threads(1)
    print(f"cores: {os.cpu_count()}, torch {torch.__version__}; one thread per process")
    with tempfile.TemporaryDirectory() as tmp:
        bench_batch(Path(tmp), args.stamps, args.batch_size)
        bench_ddp(Path(tmp), args.iterations, args.per_rank_batch)


if __name__ == "__main__":
    main()
