"""galaxai app: time to serve a Polarized-LRP map of the ``small`` discriminator over HTTP.

Targets (issue 17): the first map of an image ≤ 1 s, a cached one ≤ 50 ms, on this CPU. A short
run of the ``small`` preset (80 px) is trained here (1 burn-in + 2 adversarial iterations), served
by uvicorn on the loopback interface, and requested with httpx: first map of each of 5 images
(computed), the same maps again (in-memory PNG cache), and from a second server on the same
cache folder (disk cache). Median and max of each are printed.
"""
from __future__ import annotations

import os
import socket
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import torch
import uvicorn

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "app"))


def _serve(app):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    threading.Thread(target=server.run, daemon=True).start()
    while not server.started:
        time.sleep(0.05)
    return server, f"http://127.0.0.1:{port}"


def _times(base: str, urls: list[str]) -> list[float]:
    out = []
    with httpx.Client(base_url=base, timeout=120) as client:
        for url in urls:
            t0 = time.perf_counter()
            response = client.get(url)
            out.append(time.perf_counter() - t0)
            assert response.status_code == 200, response.text
    return out


def main() -> None:
    torch.set_num_threads(1)
    from galaxai.app import create_app
    from galaxai.data.blend import BlendConfig, make_blends
    from galaxai.data.simulate import SimConfig, simulate
    from galaxai.data.store import write_store
    from galaxai.train.gan import GANTrainConfig, train
    from conftest import _Items  # the test fixture's dataset of a BlendBatch

    root = Path(tempfile.mkdtemp(prefix="bench-app-"))
    galaxies = simulate(16, seed=5, config=SimConfig.preset("tiny"))
    batch = make_blends(galaxies.display[:8], galaxies.display[8:], seed=5,
                        config=BlendConfig.preset("paper"))
    store = write_store(root / "blends", batch, split="test")
    cfg = GANTrainConfig.preset("small", burn_in=1, iterations=2, checkpoint_every=3,
                                perceptual="multiscale")
    train(_Items(batch), root / "run", cfg)
    it = max(int(p.name) for p in (root / "run" / "checkpoints").iterdir())
    urls = [f"/api/runs/run/checkpoints/{it}/images/blends/{i}/target_a/maps/polarized_lrp.png"
            for i in range(5)]
    server, base = _serve(create_app([root / "run"], [store], root / "cache"))
    first = _times(base, urls)
    cached = _times(base, urls)
    server.should_exit = True
    server2, base2 = _serve(create_app([root / "run"], [store], root / "cache"))
    disk = _times(base2, urls)
    server2.should_exit = True
    print(f"small discriminator, 80 px, Polarized-LRP, {len(urls)} images, one thread "
          f"(OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')})")
    for name, t, target in [("first map (computed)", first, 1.0), ("cached (memory)", cached, 0.05),
                            ("cached (disk, new server)", disk, 0.05)]:
        print(f"{name:28s} median {statistics.median(t) * 1e3:8.1f} ms  max {max(t) * 1e3:8.1f} ms"
              f"  target ≤ {target * 1e3:.0f} ms: {'met' if max(t) <= target else 'MISSED'}")
    print(f"first of all (includes zennit import): {first[0] * 1e3:.1f} ms; "
          f"median first / median cached = {np.median(first) / np.median(cached):.0f}×")


if __name__ == "__main__":
    main()
