"""Data-parallel training: 2 CPU processes (gloo) against each other and against 1 process."""
from __future__ import annotations

import itertools
import json
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from galaxai.train.checkpoints import load_resume, read_safetensors
from galaxai.train.distributed import CPUSyncBatchNorm2d, RankBatches, World
from galaxai.train.gan import GANTrainer, ResumableBatchSampler, train
from test_gan import Blobs, tiny

pytestmark = pytest.mark.skipif(not dist.is_available() or not dist.is_gloo_available(),
                                reason="torch.distributed with gloo is needed")

# global batch 4 = 2 ranks x 2; 1 burn-in + 3 adversarial iterations, checkpoints every 2
CFG = dict(batch_size=4, burn_in=1, iterations=3, checkpoint_every=2)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, size: int, port: int, jobs: list[tuple]) -> None:
    """One rank: join the gloo group, then run each (run_dir, max_iterations, dump) job."""
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank,
                            world_size=size)
    try:
        data = Blobs(16, seed=0)
        world = World(rank, size)
        for run_dir, max_iterations, dump in jobs:
            if dump is None:
                train(data, run_dir, tiny(**CFG), device="cpu", max_iterations=max_iterations)
                continue
            trainer = GANTrainer(data, run_dir, tiny(**CFG), device="cpu", world=world)
            trainer.run(max_iterations)
            torch.save({"G": trainer.G.state_dict(), "D": trainer.D.state_dict()},
                       f"{dump}-rank{rank}.pt")
        dist.barrier()  # tearing gloo down while a peer still talks to it aborts that peer
    finally:
        dist.destroy_process_group()


def _spawn(jobs: list[tuple]) -> None:
    mp.spawn(_worker, args=(2, _free_port(), jobs), nprocs=2, join=True)


def _weights(run, it):
    ck = run / "checkpoints" / f"{it:09d}"
    return {n: read_safetensors(ck / f"{n}.safetensors")[0] for n in "GD"}


def _stats(run):
    return [json.loads(line) for line in (run / "stats.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Every 2-rank run of this file, in one spawn: a plain run dumping each rank's networks,
    an uninterrupted run, and one stopped at iteration 3 then resumed (by a second train call)."""
    root = tmp_path_factory.mktemp("ddp")
    _spawn([(root / "ranks", None, root / "ranks"),
            (root / "full", None, None),
            (root / "cut", 3, None),
            (root / "cut", None, None)])
    return root


def test_parameters_and_buffers_are_identical_across_ranks(runs):
    r0, r1 = (torch.load(runs / f"ranks-rank{r}.pt", weights_only=True) for r in (0, 1))
    for net in "GD":
        assert r0[net].keys() == r1[net].keys()
        for k in r0[net]:
            assert torch.equal(r0[net][k], r1[net][k]), f"{net}.{k}"
    # and they trained: the weights moved away from the shared initialisation
    fresh = GANTrainer(Blobs(16), runs / "fresh", tiny(**CFG), device="cpu")
    moved = [k for k, v in fresh.G.state_dict().items()
             if v.is_floating_point() and not torch.equal(v, r0["G"][k])]
    assert moved


def _loss_free_parameters(cfg) -> set[str]:
    """Names of parameters the training loss does not depend on: biases of convolutions that a
    BatchNorm follows (in training mode BN subtracts them again). Found numerically: their
    float64 gradient of an arbitrary loss is zero."""
    from galaxai.models.deblender import build_discriminator, build_generator

    free = set()
    x = torch.rand(4, 3, cfg.model.image_size, cfg.model.image_size, dtype=torch.float64)
    for net, model in (("G", build_generator(cfg.model)), ("D", build_discriminator(cfg.model))):
        model = model.double().train()
        out = model(x)
        sum((o * torch.linspace(-1, 2, o.numel(), dtype=torch.float64).reshape(o.shape)).sum()
            for o in (out if isinstance(out, tuple) else (out,))).backward()
        free |= {f"{net}.{k}" for k, p in model.named_parameters()
                 if p.grad.abs().max() < 1e-12 * p.numel()}
    return free


def test_two_ranks_match_one_process_with_the_same_global_batch(runs, tmp_path):
    """With synchronised BatchNorm, 2 ranks of batch 2 are the 1-process run of batch 4 up to
    float32 summation order. Exception: parameters the loss does not depend on (biases before
    BN) have pure rounding-noise gradients that Adam's normalisation turns into full steps, in
    both runs alike; they and the running means that absorb them are left out."""
    train(Blobs(16, seed=0), tmp_path / "one", tiny(**CFG), device="cpu")
    one, two = _weights(tmp_path / "one", 4), _weights(runs / "full", 4)
    free = _loss_free_parameters(tiny(**CFG))
    assert free and all(name.endswith(".bias") for name in free)
    compared = 0
    for net in "GD":
        for k, v in one[net].items():
            absorbs = k.endswith("running_mean")
            if f"{net}.{k}" in free or absorbs or not v.is_floating_point():
                continue
            # the weights move by ~1e-4 per Adam step, so 1e-6 is far below one step
            assert torch.allclose(v, two[net][k], rtol=1e-4, atol=1e-6), f"{net}.{k}"
            compared += 1
    assert compared > 50
    losses_one = [s for s in _stats(tmp_path / "one") if "n" in s]
    losses_two = [s for s in _stats(runs / "full") if "n" in s]
    assert len(losses_one) == len(losses_two) == 4
    for a, b in zip(losses_one, losses_two):
        keys = [k for k in a if k.startswith("loss_")]
        assert keys and keys == [k for k in b if k.startswith("loss_")]
        for key in keys:
            assert b[key] == pytest.approx(a[key], rel=1e-4), key


def test_interrupted_two_rank_run_resumes_to_the_same_weights(runs):
    full, cut = _weights(runs / "full", 4), _weights(runs / "cut", 4)
    for net in "GD":
        for k in full[net]:
            assert torch.equal(full[net][k], cut[net][k]), f"{net}.{k}"
    state = load_resume(runs / "cut")
    assert state["world_size"] == 2 and len(state["rng_ranks"]) == 2
    assert [s["iteration"] for s in _stats(runs / "cut")] == [1, 2, 3, 4]


def test_rank_batches_partition_each_global_batch():
    batches = ResumableBatchSampler(12, 6, seed=3)
    parts = [iter(RankBatches(batches, World(r, 3))) for r in range(3)]
    for want in itertools.islice(iter(batches), 4):
        got = [next(p) for p in parts]
        assert [len(g) for g in got] == [2, 2, 2]
        assert sum(got, []) == want


def test_a_batch_that_does_not_divide_among_ranks_is_refused(tmp_path):
    with pytest.raises(ValueError, match="multiple of the number of processes"):
        GANTrainer(Blobs(16), tmp_path, tiny(batch_size=3), device="cpu", world=World(0, 2))


def _bn_worker(rank: int, size: int, port: int, x: torch.Tensor, out: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank,
                            world_size=size)
    try:
        bn = CPUSyncBatchNorm2d(3, eps=1e-3, momentum=0.1)
        with torch.no_grad():
            bn.weight.copy_(torch.tensor([1.0, 2.0, 0.5]))
            bn.bias.copy_(torch.tensor([0.0, -1.0, 0.3]))
        mine = x[rank * 2:(rank + 1) * 2].clone().requires_grad_(True)
        y = bn(mine)
        (y * torch.arange(y.numel()).reshape(y.shape)).sum().backward()
        torch.save({"y": y.detach(), "grad": mine.grad, "wgrad": bn.weight.grad,
                    "mean": bn.running_mean, "var": bn.running_var}, f"{out}-{rank}.pt")
        dist.barrier()  # tearing gloo down while a peer still talks to it aborts that peer
    finally:
        dist.destroy_process_group()


def test_cpu_sync_batchnorm_equals_batchnorm_over_the_whole_batch(tmp_path):
    """Reference: the BN equations on the 4-image batch, y = γ(x−μ)/√(σ²+ε)+β with the biased
    variance, running variance updated with the unbiased one; gradients by autograd on it."""
    x = torch.randn(4, 3, 5, 5, generator=torch.Generator().manual_seed(0)) * 3 + 1
    mp.spawn(_bn_worker, args=(2, _free_port(), x, str(tmp_path / "bn")), nprocs=2, join=True)
    ref_x = x.clone().requires_grad_(True)
    gamma = torch.tensor([1.0, 2.0, 0.5], requires_grad=True)
    beta = torch.tensor([0.0, -1.0, 0.3])
    mu = ref_x.mean((0, 2, 3), keepdim=True)
    var = ((ref_x - mu) ** 2).mean((0, 2, 3), keepdim=True)
    y = gamma[None, :, None, None] * (ref_x - mu) / torch.sqrt(var + 1e-3) + beta[None, :, None, None]
    # each rank weighted its own outputs by arange over its own slice
    weights = torch.cat([torch.arange(y[:2].numel()).reshape(y[:2].shape)] * 2).float()
    (y * weights).sum().backward()
    n = 4 * 25
    for rank in (0, 1):
        got = torch.load(tmp_path / f"bn-{rank}.pt", weights_only=True)
        torch.testing.assert_close(got["y"], y.detach()[rank * 2:(rank + 1) * 2])
        torch.testing.assert_close(got["grad"], ref_x.grad[rank * 2:(rank + 1) * 2])
        torch.testing.assert_close(got["mean"], 0.1 * mu.flatten().detach())
        torch.testing.assert_close(got["var"], 0.9 + 0.1 * var.flatten().detach() * n / (n - 1))
    # DDP averages parameter gradients over ranks; the whole batch's γ-gradient is their sum
    total = sum(torch.load(tmp_path / f"bn-{r}.pt", weights_only=True)["wgrad"] for r in (0, 1))
    torch.testing.assert_close(total, gamma.grad)


def test_cli_nproc_relaunches_the_same_command_under_torchrun(tmp_path, monkeypatch):
    from click.testing import CliRunner

    import galaxai.train.distributed as distributed
    from galaxai.cli import main
    from galaxai.data.simulate import SimConfig
    from galaxai.data.store import build_store

    store = build_store(tmp_path / "store", 8, seed=0, sim_config=SimConfig.preset("tiny"))
    calls = []
    monkeypatch.chdir(tmp_path)  # the default run folder is ./runs/<id>-tiny-deblender
    monkeypatch.setattr(distributed, "launch", lambda n, argv: calls.append((n, argv)) or 3)
    result = CliRunner().invoke(main, ["train", "--data", str(store), "--preset", "tiny",
                                       "--nproc", "2", "--iterations", "1", "--device", "cpu"])
    assert result.exit_code == 3  # the launcher's status is the command's
    [(n, argv)] = calls
    run = argv[argv.index("--run") + 1]
    assert n == 2 and "--nproc" not in argv and run.startswith("runs")
    assert argv[:argv.index("--run")] == ["train", "--data", str(store), "--preset", "tiny",
                                          "--iterations", "1", "--device", "cpu"]
    assert (tmp_path / run).is_dir() and not (tmp_path / run / "checkpoints").exists()
