"""Polarized-LRP cost against a plain input gradient on the paper's deblender discriminator.

Model: the ``paper`` SRGAN discriminator (80x80x3 input, conv0 + seven conv/BN/LeakyReLU blocks,
dense 12800 -> 1024 (13.1 M parameters) -> 1), from ``galaxai.models.deblender`` when that module
is importable, otherwise an equivalent ``nn.Sequential`` built here. Eval mode, 2 CPU threads.

Timed, side by side in one run, at batch 16 and 64: one warm-up call each, then ``--repeats``
interleaved rounds; the best wall time and the best process CPU time are reported (robust to other
processes sharing the CPU):

* ``input_gradient``: ``galaxai.explain.input_gradient`` (forward + backward to the input only);
* Polarized-LRP, fused engine, explainer kept ready across batches (``PolarizedLRP``);
* Polarized-LRP, fused engine, functional ``polarized_lrp`` (snapshot + canonisation per call);
* Polarized-LRP, ``engine="zennit"`` (stock zennit ``BasicHook`` rules, composite per call);
* zennit's generic ZPlus composite (``SequentialMergeBatchNorm`` canonizer, ``Pass`` on
  activations) entered per call through ``zennit.attribution.Gradient`` — the reference path of
  specs/polarized_lrp.md;
* captum's ``LRP`` (epsilon rule) as it comes (it rejects LeakyReLU: the error is reported as
  measured), and on a copy whose LeakyReLU and Flatten modules are given captum's ``IdentityRule`` by hand.

Peak memory: each method runs once in a fresh subprocess (the PolarizedLRP explainer is built
inside the measured call, so its snapshot of the weights counts). After building the model and
input and running one no-grad forward pass, the kernel's peak-RSS mark is reset
(``/proc/self/clear_refs``); the report is the peak RSS during the call minus the RSS before it.
Coarse (allocator caching, page granularity) but real; ``tracemalloc`` does not see torch's
allocations.

Usage::

    python benchmarks/bench_lrp.py [--batches 16 64] [--repeats 3] [--no-memory]
"""
from __future__ import annotations

import argparse
import copy
import json
import resource
import subprocess
import sys
import time

import torch
from torch import nn

from galaxai.explain import PolarizedLRP, input_gradient, polarized_lrp

THREADS = 2


def build_paper_discriminator() -> tuple[nn.Module, str]:
    """The paper discriminator, from galaxai.models if available, else an equivalent copy."""
    try:
        from galaxai.models.deblender import build_discriminator

        return build_discriminator("paper").eval(), "galaxai.models.deblender.build_discriminator('paper')"
    except ImportError:
        pass
    torch.manual_seed(1)
    widths, strides = (64, 128, 128, 256, 256, 512, 512), (2, 1, 2, 1, 2, 1, 2)
    layers: list[nn.Module] = [nn.Conv2d(3, 64, 3, padding=1), nn.LeakyReLU(0.2)]
    cin = 64
    for cout, stride in zip(widths, strides):
        layers += [nn.Conv2d(cin, cout, 3, stride, 1), nn.BatchNorm2d(cout), nn.LeakyReLU(0.2)]
        cin = cout
    layers += [nn.Flatten(), nn.Linear(512 * 5 * 5, 1024), nn.LeakyReLU(0.2), nn.Linear(1024, 1)]
    return nn.Sequential(*layers).eval(), "equivalent nn.Sequential built in bench_lrp.py"


def _zennit_zplus(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    from zennit.attribution import Gradient
    from zennit.canonizers import SequentialMergeBatchNorm
    from zennit.composites import LayerMapComposite
    from zennit.rules import Pass, ZPlus
    from zennit.types import Activation, Convolution

    composite = LayerMapComposite(
        [(Activation, Pass()), (Convolution, ZPlus()), (nn.Linear, ZPlus())],
        canonizers=[SequentialMergeBatchNorm()])
    with Gradient(model=model, composite=composite) as attributor:
        _, relevance = attributor(x, torch.ones((x.shape[0], 1)))
    return relevance


def _captum_lrp(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    from captum.attr import LRP

    return LRP(model).attribute(x.clone().requires_grad_(True), target=0)


def _with_identity_rules(twin: nn.Module) -> nn.Module:
    """Give LeakyReLU and Flatten captum's ``IdentityRule`` (captum deletes rules after a call)."""
    from captum.attr._utils.lrp_rules import IdentityRule

    for module in twin.modules():
        if isinstance(module, (nn.LeakyReLU, nn.Flatten)):
            module.rule = IdentityRule()
    return twin


def methods(model: nn.Module) -> dict:
    """name -> callable(x); the explainer is built once (kept ready across batches)."""
    ready = PolarizedLRP(model)
    ready_zennit = PolarizedLRP(model, engine="zennit")
    captum_twin = copy.deepcopy(model)
    return {
        "input_gradient": lambda x: input_gradient(model, x),
        "polarized_lrp (PolarizedLRP, kept ready)": lambda x: ready(x),
        "polarized_lrp (functional, per call)": lambda x: polarized_lrp(model, x),
        "polarized_lrp (engine='zennit')": lambda x: ready_zennit(x),
        "zennit ZPlus composite per call": lambda x: _zennit_zplus(model, x),
        "captum LRP (epsilon)": lambda x: _captum_lrp(model, x),
        "captum LRP (eps., IdentityRule on LReLU/Flatten)": lambda x: _captum_lrp(_with_identity_rules(captum_twin), x),
    }


def time_methods(table: dict, x: torch.Tensor, repeats: int) -> dict:
    """Best-of-``repeats`` wall and CPU seconds per method, the methods interleaved per round.

    The minimum over interleaved rounds is the least disturbed by other processes sharing the
    CPU; process CPU time (both threads) is reported next to wall time for the same reason.
    """
    results: dict = {}
    for name, fn in table.items():
        try:
            fn(x)  # warm-up (prepares explainers, allocator)
        except Exception as err:  # noqa: BLE001 - report whatever the peer raises
            results[name] = f"fails: {type(err).__name__}: {str(err).splitlines()[0][:100]}"
    for _ in range(repeats):
        for name, fn in table.items():
            if isinstance(results.get(name), str):
                continue
            wall, cpu = time.perf_counter(), time.process_time()
            fn(x)
            wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
            best = results.get(name, (float("inf"), float("inf")))
            results[name] = (min(best[0], wall), min(best[1], cpu))
    return results


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def child_memory(name: str, batch: int) -> None:
    """Subprocess entry: print the peak RSS growth (MiB) of one call of ``name``.

    The kernel's peak-RSS mark is reset (``/proc/self/clear_refs``, value 5) after building the
    model and input, so the reported peak belongs to the call alone; without that interface the
    growth of ``ru_maxrss`` over the process's earlier peak is printed (a lower bound).
    """
    torch.set_num_threads(THREADS)
    model, _ = build_paper_discriminator()
    x = torch.rand(batch, 3, 80, 80, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        model(x)
    table = {
        "input_gradient": lambda: input_gradient(model, x),
        "polarized_lrp": lambda: PolarizedLRP(model)(x),
        "zennit_zplus": lambda: _zennit_zplus(model, x),
    }
    try:
        with open("/proc/self/clear_refs", "w") as refs:
            refs.write("5")
        before = _status_kib("VmRSS")
        table[name]()
        growth, how = (_status_kib("VmHWM") - before) / 1024, "VmHWM"
    except OSError:
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        table[name]()
        growth = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
        how = "ru_maxrss"
    print(json.dumps({"mib": growth, "how": how}))


def memory(name: str, batch: int) -> tuple[float, str]:
    out = subprocess.run([sys.executable, __file__, "--child", name, str(batch)], check=True,
                         capture_output=True, text=True).stdout
    record = json.loads(out.strip().splitlines()[-1])
    return record["mib"], record["how"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, nargs="+", default=[16, 64])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--no-memory", action="store_true")
    parser.add_argument("--child", nargs=2, metavar=("METHOD", "BATCH"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child_memory(args.child[0], int(args.child[1]))
        return
    torch.set_num_threads(THREADS)
    model, origin = build_paper_discriminator()
    dense = max((m for m in model.modules() if isinstance(m, nn.Linear)), key=lambda m: m.weight.numel())
    print(f"model: {origin}; {sum(p.numel() for p in model.parameters()) / 1e6:.1f} M parameters, "
          f"largest dense layer {dense.weight.numel() / 1e6:.1f} M; torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads")
    table = methods(model)
    for batch in args.batches:
        x = torch.rand(batch, 3, 80, 80, generator=torch.Generator().manual_seed(0))
        results = time_methods(table, x, args.repeats)
        wall0, cpu0 = results["input_gradient"]
        print(f"\nbatch {batch} (80x80), best of {args.repeats} interleaved rounds "
              "(wall / process CPU time, ratio to the input gradient):")
        for name, value in results.items():
            if isinstance(value, str):
                print(f"  {name:<42} {value}")
            else:
                print(f"  {name:<42} {value[0] * 1e3:8.1f} ms {value[0] / wall0:5.2f}x | "
                      f"CPU {value[1] * 1e3:8.1f} ms {value[1] / cpu0:5.2f}x")
        if not args.no_memory:
            grad_mem, how = memory("input_gradient", batch)
            print(f"  peak memory of one call (RSS growth, {how}, fresh process per method):")
            print(f"    input_gradient                           {grad_mem:8.1f} MiB")
            for name in ("polarized_lrp", "zennit_zplus"):
                mib, _ = memory(name, batch)
                print(f"    {name:<40} {mib:8.1f} MiB  {mib / grad_mem:5.2f}x input gradient")


if __name__ == "__main__":
    main()
