"""Data-parallel training across processes: the process group, rank sharding and synchronised BN.

:func:`process_group` joins the group that ``torchrun`` describes in the environment (``RANK``,
``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``/``MASTER_PORT``): NCCL when training on CUDA, gloo
on CPU. Without those variables (or with ``WORLD_SIZE=1``) it yields the single-process
:class:`World`, whose collectives do nothing, so the trainer has one code path.

Design decisions (they decide what "the same run on N processes" means):

- ``GANTrainConfig.batch_size`` is the **global** batch: every iteration draws one batch of the
  seeded :class:`~galaxai.train.gan.ResumableBatchSampler` and rank ``r`` of ``N`` trains on its
  ``r``-th contiguous slice (:class:`RankBatches`; the batch size must divide by ``N``). The data
  order, the position saved for resume and the learning-rate schedule are therefore those of a
  1-process run, and a run may be resumed with another number of processes (not bit-exactly).
- BatchNorm is **synchronised** when the world has more than one process
  (:func:`sync_batchnorm`): batch statistics are those of the global batch, as in a 1-process run.
  With per-rank statistics, each process would normalise by the statistics of ``batch/N`` images,
  a different model from the one the config describes (and the deblender has BN in every block of
  G and D). On CUDA this is :class:`torch.nn.SyncBatchNorm`; on CPU, where torch refuses it
  ("SyncBatchNorm expected input tensor to be on GPU"), :class:`CPUSyncBatchNorm2d` computes the
  same statistics with differentiable all-reduces.
- Gradients are averaged by :class:`~torch.nn.parallel.DistributedDataParallel` (each rank's loss
  is the mean over its slice, so the average is the mean over the global batch).

Examples
--------
>>> with process_group("cpu") as world:                                # doctest: +SKIP
...     print(world.rank, world.size)
"""
from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from typing import Any, Callable, Iterator, TypeVar

import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import Sampler

__all__ = ["World", "process_group", "RankBatches", "CPUSyncBatchNorm2d", "sync_batchnorm",
           "launch"]

T = TypeVar("T")


@dataclass(frozen=True)
class World:
    """This process's place in the training group (rank 0 of 1 when not distributed).

    Parameters
    ----------
    rank : int
        Global rank; rank 0 takes the run lock and writes every file.
    size : int
        Number of processes.
    local_rank : int
        Rank on this node (picks the CUDA device).
    """

    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        """Whether this process writes the run directory (rank 0)."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        """Whether there is more than one process."""
        return self.size > 1

    def barrier(self) -> None:
        """Wait for every rank (no-op on one process)."""
        if self.distributed:
            dist.barrier()

    def mean(self, tensor: torch.Tensor) -> torch.Tensor:
        """The element-wise mean of ``tensor`` over ranks (a new tensor)."""
        out = tensor.detach().clone()
        if self.distributed:
            dist.all_reduce(out, op=dist.ReduceOp.SUM)
            out /= self.size
        return out

    def any(self, flag: bool, device: torch.device) -> bool:
        """Whether ``flag`` is true on any rank."""
        if not self.distributed:
            return bool(flag)
        value = torch.tensor([int(flag)], device=device)
        dist.all_reduce(value, op=dist.ReduceOp.MAX)
        return bool(value.item())

    def gather(self, obj: Any) -> list[Any]:
        """Every rank's ``obj`` (picklable), in rank order."""
        if not self.distributed:
            return [obj]
        out: list[Any] = [None] * self.size
        dist.all_gather_object(out, obj)
        return out

    def agree(self, fn: Callable[[], T]) -> T:
        """Call ``fn`` on every rank; if it raised on any rank, raise that error on all of them.

        Checks that read the run directory (config, data fingerprint, lock) then fail together,
        instead of one rank leaving while the others wait for it in a collective.
        """
        try:
            value, error = fn(), None
        except Exception as exc:  # noqa: BLE001 - re-raised below, on every rank
            value, error = None, exc
        if self.distributed:
            errors = [e for e in self.gather(error) if e is not None]
            if errors and error is None:
                raise errors[0]
        if error is not None:
            raise error
        return value  # type: ignore[return-value]

    def device(self, requested: str | torch.device | None) -> torch.device:
        """The device of this rank: ``requested`` (default CUDA when available), and on CUDA
        the GPU of index ``local_rank`` when distributed."""
        dev = torch.device(requested) if requested is not None else torch.device(
            "cuda" if torch.cuda.is_available() else "cpu")
        if dev.type == "cuda" and self.distributed:
            dev = torch.device("cuda", self.local_rank)
        return dev


@contextlib.contextmanager
def process_group(device: str | torch.device | None = None) -> Iterator[World]:
    """Join the process group described by torchrun's environment for the ``with`` block.

    Parameters
    ----------
    device : str or torch.device, optional
        Training device; CUDA picks the NCCL backend, anything else gloo. ``None`` means CUDA
        when available.

    Yields
    ------
    World
        This process's rank and the world size. A group that the caller initialised already is
        used as it is (and left open); one initialised here is destroyed on exit.
    """
    if dist.is_available() and dist.is_initialized():
        yield World(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", 0)))
        return
    size = int(os.environ.get("WORLD_SIZE", "1"))
    if size <= 1:
        yield World()
        return
    world = World(int(os.environ["RANK"]), size, int(os.environ.get("LOCAL_RANK", "0")))
    dev = world.device(device)
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    dist.init_process_group("nccl" if dev.type == "cuda" else "gloo",
                            device_id=dev if dev.type == "cuda" else None)
    try:
        yield world
        dist.barrier()  # no rank tears gloo down while a peer still talks to it (SIGABRT)
    finally:
        dist.destroy_process_group()


class RankBatches(Sampler[list[int]]):
    """This rank's slice of every batch of a batch sampler.

    Rank ``r`` of ``size`` gets ``batch[r*k:(r+1)*k]`` with ``k = len(batch) // size``, so the
    ranks together see exactly the batches of the wrapped sampler.

    Parameters
    ----------
    batches : Sampler of list of int
        Global batches, all of a length divisible by ``size``.
    world : World
        This rank and the world size.
    """

    def __init__(self, batches: Sampler[list[int]], world: World) -> None:
        self.batches, self.world = batches, world

    def __iter__(self) -> Iterator[list[int]]:  # noqa: D105
        rank, size = self.world.rank, self.world.size
        for batch in self.batches:
            k = len(batch) // size
            yield batch[rank * k:(rank + 1) * k]


class CPUSyncBatchNorm2d(nn.BatchNorm2d):
    """BatchNorm2d whose training statistics are those of the batch of every rank together.

    Hand-written because :class:`torch.nn.SyncBatchNorm` refuses CPU tensors (torch 2.14), and
    gloo-on-CPU is how data-parallel training is tested and how CPU clusters run it. Two
    differentiable all-reduces (:func:`torch.distributed.nn.functional.all_reduce`, whose backward
    sums the gradients of every rank) give the global mean, then the global biased variance
    (two passes, as :func:`torch.nn.functional.batch_norm` computes it, rather than
    E[x²] − E[x]²). Running statistics are updated as in BatchNorm2d (unbiased variance).
    Outside training, or on one process, it is exactly BatchNorm2d; its state dict has the same
    keys, so checkpoints load into either.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        if not (self.training and dist.is_available() and dist.is_initialized()
                and dist.get_world_size() > 1):
            return super().forward(x)
        dims = (0, 2, 3)
        local = torch.cat([x.sum(dims), x.new_tensor([x.numel() // x.shape[1]])])
        total = _summed(local)
        n = total[-1]
        mean = total[:-1] / n
        centred = x - mean[None, :, None, None]
        var = _summed(centred.pow(2).sum(dims)) / n
        if self.track_running_stats:
            self.num_batches_tracked.add_(1)
            factor = (1.0 / float(self.num_batches_tracked) if self.momentum is None
                      else self.momentum)
            with torch.no_grad():
                self.running_mean.lerp_(mean.detach(), factor)
                self.running_var.lerp_(var.detach() * n / (n - 1), factor)
        y = centred * torch.rsqrt(var + self.eps)[None, :, None, None]
        if self.affine:
            y = y * self.weight[None, :, None, None] + self.bias[None, :, None, None]
        return y


def _summed(tensor: torch.Tensor) -> torch.Tensor:
    """Sum over ranks, differentiable (the backward sums the ranks' gradients)."""
    import warnings

    from torch.distributed.nn.functional import all_reduce

    # torch 2.14 marks it deprecated in favour of the private _functional_collectives, whose
    # all_reduce has no autograd; the autograd one is what synchronised BN needs
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "torch.distributed.nn.functional.all_reduce",
                                FutureWarning)
        return all_reduce(tensor)


def sync_batchnorm(module: nn.Module, device: torch.device) -> nn.Module:
    """Make every BatchNorm2d of ``module`` synchronise its statistics across ranks (in place).

    CUDA: :meth:`torch.nn.SyncBatchNorm.convert_sync_batchnorm`; CPU: :class:`CPUSyncBatchNorm2d`.
    Parameters and buffers are the same tensor objects afterwards (optimisers built before stay
    valid) and the state-dict keys are unchanged.
    """
    if device.type == "cuda":
        return nn.SyncBatchNorm.convert_sync_batchnorm(module)
    if isinstance(module, nn.BatchNorm2d) and not isinstance(module, CPUSyncBatchNorm2d):
        out = CPUSyncBatchNorm2d(module.num_features, module.eps, module.momentum, module.affine,
                                 module.track_running_stats)
        for name in ("weight", "bias"):
            setattr(out, name, getattr(module, name))
        for name in ("running_mean", "running_var", "num_batches_tracked"):
            setattr(out, name, getattr(module, name))
        out.train(module.training)
        return out
    for name, child in module.named_children():
        module.add_module(name, sync_batchnorm(child, device))
    return module


def launch(nproc: int, argv: list[str]) -> int:
    """Run ``galaxai <argv>`` on ``nproc`` local processes with torchrun's launcher; return the
    exit status (0, or the first failed rank's).

    This is ``torchrun --standalone --nproc-per-node nproc -m galaxai.cli <argv>`` through its
    Python API (:func:`torch.distributed.launcher.api.elastic_launch`): a c10d rendezvous on a
    free local port, one process per rank, the whole group stopped when one rank fails, SIGTERM
    forwarded to every rank, no restarts. (The torchrun command line itself cannot carry
    ``--run``: its argument parser takes it for an abbreviation of its own ``--run-path``.)
    """
    import sys
    import uuid

    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.launcher.api import LaunchConfig, elastic_launch

    config = LaunchConfig(min_nodes=1, max_nodes=1, nproc_per_node=int(nproc),
                          rdzv_backend="c10d", rdzv_endpoint="localhost:0",
                          run_id=str(uuid.uuid4()), max_restarts=0)
    try:
        elastic_launch(config, sys.executable)("-m", "galaxai.cli", *argv)
    except ChildFailedError as exc:
        return next((f.exitcode for f in exc.failures.values() if f.exitcode), 1)
    return 0
