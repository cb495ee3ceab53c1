"""A tiny training run (32 px, four checkpoints) and a blend store of the same size for the app."""
from __future__ import annotations

import numpy as np
import pytest
import torch

SIZE = 32
ITERATIONS = (2, 4, 6, 8)


class _Items(torch.utils.data.Dataset):
    def __init__(self, batch) -> None:
        self.batch = batch

    def __len__(self) -> int:
        return len(self.batch.blend)

    def __getitem__(self, i: int) -> dict:
        return {k: torch.from_numpy(np.ascontiguousarray(getattr(self.batch, k)[i]))
                for k in ("blend", "target_a", "target_b")}


@pytest.fixture(scope="session")
def app_data(tmp_path_factory):
    """``(run_dir, store_dir)``: checkpoints at iterations 2, 4, 6, 8 and 8 test blends."""
    from galaxai.data.blend import BlendConfig, make_blends
    from galaxai.data.simulate import SimConfig, simulate
    from galaxai.data.store import write_store
    from galaxai.models.deblender import DeblenderConfig
    from galaxai.train.gan import GANTrainConfig, train

    root = tmp_path_factory.mktemp("app")
    galaxies = simulate(16, seed=3, config=SimConfig.preset("tiny"))
    batch = make_blends(galaxies.display[:8], galaxies.display[8:], seed=3,
                        config=BlendConfig.preset("paper", out_size=SIZE))
    store = write_store(root / "blends", batch, split="test")
    cfg = GANTrainConfig.preset("tiny", model=DeblenderConfig.preset("tiny", image_size=SIZE),
                                burn_in=2, iterations=6, checkpoint_every=2, log_every=1)
    train(_Items(batch), root / "run-1", cfg)
    return root / "run-1", store


@pytest.fixture()
def client(app_data, tmp_path):
    """A TestClient of an app serving the run and the store, with a fresh map cache."""
    pytest.importorskip("fastapi")
    pytest.importorskip("httpx")
    from fastapi.testclient import TestClient

    from galaxai.app import create_app

    run, store = app_data
    with TestClient(create_app([run], [store], tmp_path / "cache")) as test_client:
        yield test_client
