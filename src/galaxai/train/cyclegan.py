"""Training of (xAI-)Mask CycleGAN between simulated (A) and real (B) galaxy stamps.

Domain A is GalSim stamps (:func:`galaxai.data.simulate.simulate`), domain B real galaxies of
the real-skies sources (:mod:`galaxai.data.real`: HDF left half and COSMOS, *training splits*);
both are the central cut of 142-px frames resampled to the model's stamp size, in [−1, 1].
Evaluation uses held-out stamps: simulated galaxies of later indices and the real sources' test
splits.

One iteration (``specs/xai_guided_training.md``, xAI-CycleGAN bef56ce with its bugs fixed):

1. draw soft masks ``m_A, m_B ~ N(1, σ²)`` per pixel and channel (σ = 0.02);
2. guided only: pass 1 without gradient (fakes, mask-discriminator losses and saliency) and the
   mask update ``m ← m + c(L_Dm)·S_Dm``;
3. pass 2: ``fake_B = G_AB(x_A, m_A)``, ``fake_A = G_BA(x_B, m_B)``; adversarial LSGAN loss
   ``λ_adv·[r·MSE(D_mask(fake ⊙ m), 1) + (1 − r)·MSE(D(fake), 1)]`` (r = 0.7); cycle loss
   ``λ_cyc·[ρ·L1_m + (1 − ρ)·L1_{|1−m|}]`` (ρ = 0.3) where ``L1_w = Σ w|rec − x| / Σ w`` is a
   *weighted mean* (the coded sums make the ``(1 − m)`` term ≈ 2 % of its weight, spec bug 6);
   identity ``λ_id·L1(G_AB(x_B), x_B)`` (and for A); guided: ``M`` of each domain (its own D
   and D_mask and their losses, spec bug 1) hooked on the generator's tanh output with
   :func:`galaxai.guided.core.scale_gradient`; backward; Adam step of both generators;
4. per domain, one optimiser for D and D_mask on *detached* fakes drawn once from a 50-image
   pool (spec bug 2): ``(1 − r)·½[MSE(D(real), 1) + MSE(D(pool), 0)] + r·(the same for D_mask on
   ⊙ m inputs)``.

Randomness (data order, masks, pool) is drawn from ``(seed, iteration)``, so a resumed run
continues exactly. Checkpoints are ``run/checkpoints/<iteration>/cyclegan.safetensors`` plus
``checkpoint.json``; ``run/resume.pt`` holds the optimisers and the pools; ``run/stats.jsonl``
one row per log or evaluation.
"""
from __future__ import annotations

import hashlib
import json
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from galaxai.choices import CYCLEGAN_ARMS, CYCLEGAN_DIRECTIONS
from galaxai.guided.cyclegan import XaiCycleGANConfig, XaiExplainer
from galaxai.models.cyclegan import CycleGANConfig, apply_mask, build_cyclegan

__all__ = [
    "CycleGANTrainConfig",
    "StampSets",
    "ImagePool",
    "CycleGANTrainer",
    "TranslationEvaluator",
    "stamp_sets",
    "load_translator",
    "translate",
    "run_arm",
    "arm_config",
    "train_and_evaluate",
]

_WEIGHTS = "cyclegan.safetensors"


@dataclass(frozen=True)
class CycleGANTrainConfig:
    """Settings of one Mask CycleGAN run (bef56ce defaults unless noted).

    Parameters
    ----------
    model : CycleGANConfig
    iterations : int
    batch_size : int
        1 in bef56ce; the CPU presets use 4 (the shuffled control needs a batch).
    lr_g, lr_d : float
        Adam learning rates (2e-4, 5e-5), β = ``betas``; linear decay to 0 from iteration
        ``decay_from · iterations``.
    lambda_adv, lambda_cycle, lambda_id : float
        Loss weights (1.5, 10, 3).
    mask_sigma : float
        Standard deviation of the soft noise mask around 1 (0.02).
    mask_ratio_adv : float
        Weight ``r`` of the mask discriminators in the adversarial and D losses (0.7).
    mask_ratio_cycle : float
        Weight ``ρ`` of the ``m``-weighted cycle term (0.3).
    pool_size : int
        Image pool of past fakes (50).
    guide : XaiCycleGANConfig, optional
        xAI-CycleGAN saliency (``None``: plain Mask CycleGAN).
    guide_from : int
        First iteration with saliency.
    checkpoint_every, log_every : int
        Intervals (0: checkpoint only at the end).
    seed : int
    """

    model: CycleGANConfig = field(default_factory=lambda: CycleGANConfig.preset("small"))
    iterations: int = 2000
    batch_size: int = 4
    lr_g: float = 2e-4
    lr_d: float = 5e-5
    betas: tuple[float, float] = (0.5, 0.999)
    decay_from: float = 0.5
    lambda_adv: float = 1.5
    lambda_cycle: float = 10.0
    lambda_id: float = 3.0
    mask_sigma: float = 0.02
    mask_ratio_adv: float = 0.7
    mask_ratio_cycle: float = 0.3
    pool_size: int = 50
    guide: XaiCycleGANConfig | None = None
    guide_from: int = 0
    checkpoint_every: int = 0
    log_every: int = 50
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("iterations", "batch_size"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"CycleGANTrainConfig.{name} must be >= 1, got "
                                 f"{getattr(self, name)!r}")
        for name in ("guide_from", "checkpoint_every", "log_every", "pool_size", "seed"):
            if int(getattr(self, name)) < 0:
                raise ValueError(f"CycleGANTrainConfig.{name} must be >= 0, got "
                                 f"{getattr(self, name)!r}")
        for name in ("decay_from", "mask_ratio_adv", "mask_ratio_cycle"):
            if not 0 <= getattr(self, name) <= 1:
                raise ValueError(f"CycleGANTrainConfig.{name} must lie in [0, 1], got "
                                 f"{getattr(self, name)!r}")

    @classmethod
    def preset(cls, name: str, **overrides: Any) -> "CycleGANTrainConfig":
        """``paper`` (the paper networks, batch 1), ``small`` (batch 4) or ``tiny`` (batch 2)."""
        batch = {"paper": 1, "small": 4, "tiny": 2}
        if name not in batch:
            raise ValueError(f"unknown CycleGAN preset {name!r}; choose one of {sorted(batch)}")
        model = overrides.pop("model", None) or CycleGANConfig.preset(name)
        return cls(**{"model": model, "batch_size": batch[name], **overrides})

    def to_dict(self) -> dict[str, Any]:
        """JSON-able settings (nested configs as dicts)."""
        out = asdict(self)
        out["betas"] = list(self.betas)
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "CycleGANTrainConfig":
        """Inverse of :meth:`to_dict`."""
        data = dict(data)
        data["model"] = CycleGANConfig(**data["model"])
        data["guide"] = None if data.get("guide") is None else XaiCycleGANConfig(**data["guide"])
        data["betas"] = tuple(data["betas"])
        return cls(**data)

    def lr_factor(self, iteration: int) -> float:
        """Multiplier of both learning rates: 1, then linear to 0 from ``decay_from``."""
        start = int(self.decay_from * self.iterations)
        if iteration < start:
            return 1.0
        return max(0.0, (self.iterations - iteration) / max(self.iterations - start, 1))


@dataclass
class StampSets:
    """Training and held-out stamps ``(N, 3, S, S)`` float32 in [−1, 1] of both domains."""

    sim_train: np.ndarray
    real_train: np.ndarray
    sim_eval: np.ndarray
    real_eval: np.ndarray

    def save(self, path: str | Path) -> Path:
        """Write the four arrays to an ``.npz`` file atomically."""
        from galaxai._atomic import atomic_write

        def write(tmp: Path) -> None:
            with open(tmp, "wb") as fh:
                np.savez(fh, **asdict(self))

        return atomic_write(path, write)

    @classmethod
    def load(cls, path: str | Path) -> "StampSets":
        """Read :meth:`save`'s file."""
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"stamp sets {path} do not exist; write them with "
                                    "StampSets.save or pass data=None to build them")
        with np.load(path) as data:
            missing = {"sim_train", "real_train", "sim_eval", "real_eval"} - set(data.files)
            if missing:
                raise ValueError(f"{path} lacks the arrays {sorted(missing)}")
            return cls(**{k: data[k].astype(np.float32) for k in data.files})

    def digest(self) -> str:
        """Short hash of the four arrays (identifies the data of a run)."""
        h = hashlib.sha256()
        for arr in asdict(self).values():
            h.update(np.ascontiguousarray(arr).tobytes())
        return h.hexdigest()[:16]


def _to_stamps(display: np.ndarray, size: int) -> np.ndarray:
    """``(N, F, F, 3)`` display frames → their central cut at ``size`` px, ``(N, 3, S, S)`` in [−1, 1]."""
    from galaxai.data.blend import crop_and_resize
    from galaxai.models.deblender import to_network

    cut = crop_and_resize(np.moveaxis(np.asarray(display, np.float32), -1, 1), size, resize="area")
    return to_network(cut).astype(np.float32)


def stamp_sets(seed: int, *, n_sim: int = 400, n_eval: int = 48, image_size: int = 32,
               real_copies: int = 2, real_sources: tuple[str, ...] = ("hdf", "cosmos"),
               progress: bool = False) -> StampSets:
    """Simulated and real stamp sets built in memory from the package's sources.

    ``sim_train``: ``n_sim`` GalSim galaxies (``SimConfig.preset("small")``, stream ``seed``);
    ``sim_eval``: the next ``n_eval`` of that stream. ``real_train``: the training splits of
    ``real_sources`` (HDF left half, COSMOS), ``real_copies`` zoom draws per galaxy;
    ``real_eval``: ``n_eval`` frames of their test splits (one zoom draw, a seeded subset).
    """
    from galaxai.data.real import RealFrames, real_frames
    from galaxai.data.simulate import SimConfig, simulate

    if not real_sources or set(real_sources) - {"hdf", "cosmos"}:
        raise ValueError(f"real_sources must name 'hdf' and/or 'cosmos', got {real_sources!r}")
    sim = simulate(n_sim + n_eval, seed, SimConfig.preset("small"), progress=progress).display
    train = RealFrames.concat([real_frames(s, "train", copies=real_copies, seed=seed)
                               for s in real_sources])
    test = RealFrames.concat([real_frames(s, "test", seed=seed) for s in real_sources])
    pick = np.sort(np.random.default_rng(seed).permutation(len(test))[:n_eval])
    return StampSets(_to_stamps(sim[:n_sim], image_size), _to_stamps(train.display, image_size),
                     _to_stamps(sim[n_sim:], image_size), _to_stamps(test.display[pick], image_size))


class ImagePool:
    """The CycleGAN buffer of past fakes: until full, fakes pass and are stored; then each is,
    with probability ½, swapped for a random stored one (which it replaces)."""

    def __init__(self, size: int) -> None:
        self.size, self.images = int(size), []

    def query(self, fakes: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
        """The batch to show the discriminator (detached)."""
        fakes = fakes.detach()
        if self.size == 0:
            return fakes
        out = []
        for image in fakes:
            if len(self.images) < self.size:
                self.images.append(image.clone())
                out.append(image)
            elif rng.uniform() < 0.5:
                k = int(rng.integers(self.size))
                out.append(self.images[k].clone())
                self.images[k] = image.clone()
            else:
                out.append(image)
        return torch.stack(out)


def _mse(x: torch.Tensor, target: float) -> torch.Tensor:
    return (x - target).pow(2).mean()


def _weighted_l1(a: torch.Tensor, b: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    return (w * (a - b).abs()).sum() / w.sum().clamp_min(1e-12)


def _device(device: str | torch.device | None) -> torch.device:
    """``device`` as a torch device (default: ``cuda`` when available, else ``cpu``)."""
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        out = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ValueError(f"device={device!r} is not a torch device; use 'cpu' or 'cuda'") from exc
    if out.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device={device!r} but CUDA is not available here; use device='cpu'")
    return out


class CycleGANTrainer:
    """One (xAI-)Mask CycleGAN run in ``run_dir`` (see the module docstring).

    Parameters
    ----------
    data : StampSets
    run_dir : path-like
        Holds ``config.json``, ``stats.jsonl``, ``checkpoints/`` and ``resume.pt``; a run already
        there is resumed (its config must match).
    config : CycleGANTrainConfig
    label : str
        Arm name written into every ``stats.jsonl`` row.
    device : str or torch.device, optional
        Where the networks train (default: ``cuda`` when available, else ``cpu``). Random draws
        are made on the CPU and moved, so a run's data order and masks do not depend on it.
    """

    def __init__(self, data: StampSets, run_dir: str | Path, config: CycleGANTrainConfig,
                 label: str = "run", device: str | torch.device | None = None) -> None:
        self.data, self.config, self.label = data, config, label
        self.device = _device(device)
        self.run_dir = Path(run_dir)
        size = config.model.image_size
        for name, arr in asdict(data).items():
            if arr.ndim != 4 or arr.shape[1:] != (3, size, size) or len(arr) < 2:
                raise ValueError(f"data.{name} must hold >= 2 stamps of shape (3, {size}, {size}) "
                                 f"for this model, got {arr.shape}")
        self.nets = build_cyclegan(config.model, config.seed).to(self.device)
        betas = tuple(config.betas)
        self.opt_g = torch.optim.Adam([*self.nets["G_AB"].parameters(),
                                       *self.nets["G_BA"].parameters()], config.lr_g, betas)
        self.opt_d = {d: torch.optim.Adam([*self.nets[f"D_{d}"].parameters(),
                                           *self.nets[f"D_{d}_mask"].parameters()],
                                          config.lr_d, betas) for d in "AB"}
        self.pools = {d: ImagePool(config.pool_size) for d in "AB"}
        self.explainer = None if config.guide is None else XaiExplainer(config.guide, config.seed)
        self.iteration, self.wall_s, self.explain_s = 0, 0.0, 0.0
        self.data_hash = data.digest()
        self._sim, self._real = (torch.from_numpy(data.sim_train).to(self.device),
                                 torch.from_numpy(data.real_train).to(self.device))
        self._setup_run_dir()

    # ------------------------------------------------------------------ run directory / resume
    def _setup_run_dir(self) -> None:
        from galaxai._atomic import atomic_write_json
        from galaxai.train.checkpoints import load_resume

        self.run_dir.mkdir(parents=True, exist_ok=True)
        cfg_file = self.run_dir / "config.json"
        record = {"config": self.config.to_dict(), "data": self.data_hash, "label": self.label}
        if cfg_file.is_file():
            old = json.loads(cfg_file.read_text(encoding="utf-8"))
            if old != json.loads(json.dumps(record)):
                raise ValueError(f"{self.run_dir} holds another run (its config.json differs in "
                                 "config, data or label); use a new run directory")
        else:
            atomic_write_json(cfg_file, record)
        state = load_resume(self.run_dir)
        if state is not None:
            self._restore(state)

    def _restore(self, state: dict[str, Any]) -> None:
        from galaxai.train.checkpoints import load_state, rewrite_stats

        load_state(self.nets, Path(state["checkpoint"]) / _WEIGHTS)
        self.opt_g.load_state_dict(state["opt_g"])
        for d in "AB":
            self.opt_d[d].load_state_dict(state[f"opt_d_{d}"])
            self.pools[d].images = [t.to(self.device) for t in state[f"pool_{d}"]]
        self.iteration, self.wall_s = int(state["iteration"]), float(state["wall_s"])
        self.explain_s = float(state["explain_s"])
        rewrite_stats(self.run_dir / "stats.jsonl", self.iteration)

    def checkpoint(self, metrics: dict[str, float] | None = None) -> Path:
        """Write the weights, ``checkpoint.json`` and ``resume.pt`` at the current iteration."""
        import galaxai
        from galaxai._atomic import atomic_write_json, atomic_write_safetensors
        from galaxai.train.checkpoints import checkpoint_dir, save_resume

        out = checkpoint_dir(self.run_dir, self.iteration)
        out.mkdir(parents=True, exist_ok=True)
        meta = {"galaxai_network": "cyclegan", "iteration": str(self.iteration),
                "model_config": json.dumps(self.config.model.to_dict(), sort_keys=True)}
        atomic_write_safetensors(out / _WEIGHTS, self.nets, meta)
        atomic_write_json(out / "checkpoint.json", {
            "iteration": self.iteration, "network": "cyclegan", "config": self.config.to_dict(),
            "model_config": self.config.model.to_dict(), "data_hash": self.data_hash,
            "code_version": galaxai.__version__, "metrics": dict(metrics or {}),
            "label": self.label})
        save_resume(self.run_dir, {
            "checkpoint": str(out), "iteration": self.iteration, "wall_s": self.wall_s,
            "explain_s": self.explain_s,
            "opt_g": self.opt_g.state_dict(),
            **{f"opt_d_{d}": self.opt_d[d].state_dict() for d in "AB"},
            **{f"pool_{d}": [t.clone() for t in self.pools[d].images] for d in "AB"}})
        return out

    def append_stats(self, record: dict[str, Any]) -> None:
        """Append one row (arm label, seed and iteration added) to ``stats.jsonl``."""
        row = {"arm": self.label, "seed": self.config.seed, "iteration": self.iteration, **record}
        with open(self.run_dir / "stats.jsonl", "a", encoding="utf-8") as fh:
            fh.write(json.dumps(row) + "\n")

    # ---------------------------------------------------------------------------- one step
    def _rng(self, iteration: int) -> np.random.Generator:
        return np.random.default_rng([self.config.seed, int(iteration)])

    def _batch(self, rng: np.random.Generator) -> tuple[torch.Tensor, ...]:
        cfg = self.config
        xa = self._sim[rng.integers(len(self._sim), size=cfg.batch_size)]
        xb = self._real[rng.integers(len(self._real), size=cfg.batch_size)]
        gen = torch.Generator().manual_seed(int(rng.integers(2 ** 62)))
        ma = 1 + cfg.mask_sigma * torch.randn(xa.shape, generator=gen)
        mb = 1 + cfg.mask_sigma * torch.randn(xb.shape, generator=gen)
        return xa, xb, ma.to(self.device), mb.to(self.device)

    def _mask(self, x: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
        return apply_mask(x, m, self.config.model.mask_space)

    def _d_loss(self, d: nn.Module, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
        return (_mse(d(real), 1.0) + _mse(d(fake), 0.0)) / 2

    def generator_losses(self, xa: torch.Tensor, xb: torch.Tensor, ma: torch.Tensor,
                         mb: torch.Tensor) -> dict[str, torch.Tensor]:
        """Pass 2's fakes (``fake_A``, ``fake_B``, their tanh parts ``main_A``, ``main_B``) and
        the generator losses ``adv``, ``cycle``, ``identity`` and ``total``."""
        cfg, n = self.config, self.nets
        r, rho = cfg.mask_ratio_adv, cfg.mask_ratio_cycle
        fake_b, main_b = n["G_AB"](xa, ma, parts=True)
        fake_a, main_a = n["G_BA"](xb, mb, parts=True)
        adv = 0
        for d, fake, m in (("B", fake_b, ma), ("A", fake_a, mb)):
            adv = adv + r * _mse(n[f"D_{d}_mask"](self._mask(fake, m)), 1.0) \
                + (1 - r) * _mse(n[f"D_{d}"](fake), 1.0)
        cycle = 0
        for g, fake, x, m in (("G_BA", fake_b, xa, ma), ("G_AB", fake_a, xb, mb)):
            rec = n[g](fake, m)
            cycle = cycle + rho * _weighted_l1(rec, x, m) \
                + (1 - rho) * _weighted_l1(rec, x, (1 - m).abs())
        identity = (n["G_AB"](xb, mb) - xb).abs().mean() + (n["G_BA"](xa, ma) - xa).abs().mean()
        adv, cycle, identity = cfg.lambda_adv * adv, cfg.lambda_cycle * cycle, cfg.lambda_id * identity
        return {"fake_A": fake_a, "fake_B": fake_b, "main_A": main_a, "main_B": main_b, "adv": adv,
                "cycle": cycle, "identity": identity, "total": adv + cycle + identity}

    def discriminator_step(self, xa: torch.Tensor, xb: torch.Tensor, fake_a: torch.Tensor,
                           fake_b: torch.Tensor, ma: torch.Tensor, mb: torch.Tensor,
                           rng: np.random.Generator, lr_factor: float = 1.0) -> dict[str, float]:
        """One Adam step of each domain's D and D_mask on *detached* fakes from the pools."""
        r, out = self.config.mask_ratio_adv, {}
        for d, real, fake, m in (("B", xb, fake_b, ma), ("A", xa, fake_a, mb)):
            pooled = self.pools[d].query(fake.detach(), rng)  # queried once, used twice
            loss = (1 - r) * self._d_loss(self.nets[f"D_{d}"], real, pooled) \
                + r * self._d_loss(self.nets[f"D_{d}_mask"], self._mask(real, m), self._mask(pooled, m))
            opt = self.opt_d[d]
            for group in opt.param_groups:
                group["lr"] = self.config.lr_d * lr_factor
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            out[f"loss_D_{d}"] = float(loss.detach())
        return out

    def _d_requires_grad(self, flag: bool) -> None:
        for name in ("D_A", "D_A_mask", "D_B", "D_B_mask"):
            self.nets[name].requires_grad_(flag)

    def step(self) -> dict[str, float]:
        """One training iteration; returns its losses and ``explain_s`` (saliency seconds)."""
        cfg, n, it = self.config, self.nets, self.iteration
        rng = self._rng(it)
        xa, xb, ma, mb = self._batch(rng)
        factor = cfg.lr_factor(it)
        guided = self.explainer is not None and it >= cfg.guide_from
        explain_s = 0.0
        self._d_requires_grad(False)
        if guided:  # pass 1: mask discriminators' saliency into the soft masks
            t0 = time.perf_counter()
            with torch.no_grad():
                fb, fa = n["G_AB"](xa, ma), n["G_BA"](xb, mb)
                loss_bm = float(self._d_loss(n["D_B_mask"], self._mask(xb, ma), self._mask(fb, ma)))
                loss_am = float(self._d_loss(n["D_A_mask"], self._mask(xa, mb), self._mask(fa, mb)))
            ma = ma + self.explainer.mask_update(n["D_B_mask"], self._mask(fb, ma), loss_bm,
                                                 iteration=it, domain=1)
            mb = mb + self.explainer.mask_update(n["D_A_mask"], self._mask(fa, mb), loss_am,
                                                 iteration=it, domain=0)
            explain_s += time.perf_counter() - t0
        out = self.generator_losses(xa, xb, ma, mb)
        handles = []
        if guided:
            t0 = time.perf_counter()
            for d, domain, real, m in (("B", 1, xb, ma), ("A", 0, xa, mb)):
                fake = out[f"fake_{d}"].detach()
                with torch.no_grad():
                    loss_d = float(self._d_loss(n[f"D_{d}"], real, fake))
                    loss_m = float(self._d_loss(n[f"D_{d}_mask"], self._mask(real, m),
                                                self._mask(fake, m)))
                grad_map = self.explainer.gradient_map(
                    n[f"D_{d}"], n[f"D_{d}_mask"], fake, self._mask(fake, m), loss_d, loss_m,
                    iteration=it, domain=domain)
                handles.append(self.explainer.hook(out[f"main_{d}"], grad_map))
            explain_s += time.perf_counter() - t0
        for group in self.opt_g.param_groups:
            group["lr"] = cfg.lr_g * factor
        self.opt_g.zero_grad(set_to_none=True)
        out["total"].backward()
        for handle in handles:
            handle.remove()
        self.opt_g.step()
        self._d_requires_grad(True)
        losses = self.discriminator_step(xa, xb, out["fake_A"], out["fake_B"], ma, mb, rng, factor)
        self.iteration += 1
        return {"loss_G": float(out["total"].detach()), "loss_adv": float(out["adv"].detach()),
                "loss_cycle": float(out["cycle"].detach()),
                "loss_identity": float(out["identity"].detach()), **losses,
                "explain_s": explain_s}

    def run(self, until: int | None = None, progress: bool = False) -> None:
        """Train to iteration ``until`` (default: the config's), logging and checkpointing."""
        cfg = self.config
        until = cfg.iterations if until is None else min(int(until), cfg.iterations)
        bar = None
        if progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=until, initial=self.iteration, desc=f"cyclegan {self.label}",
                       unit="it")
        sums: dict[str, float] = {}
        count = 0
        while self.iteration < until:
            t0 = time.perf_counter()
            losses = self.step()
            self.wall_s += time.perf_counter() - t0
            self.explain_s += losses["explain_s"]
            for k, v in losses.items():
                sums[k] = sums.get(k, 0.0) + v
            count += 1
            if bar is not None:
                bar.update(1)
            if cfg.log_every and self.iteration % cfg.log_every == 0:
                self.append_stats({"kind": "train", "wall_s": self.wall_s,
                                   **{k: v / count for k, v in sums.items()}})
                sums, count = {}, 0
            if cfg.checkpoint_every and self.iteration % cfg.checkpoint_every == 0:
                self.checkpoint()
        if bar is not None:
            bar.close()

    def translate(self, images: torch.Tensor, direction: str = "sim2real", seed: int = 0,
                  batch_size: int = 64) -> torch.Tensor:
        """:func:`translate` with this run's generators."""
        return translate(self.nets, images, direction, sigma=self.config.mask_sigma, seed=seed,
                         batch_size=batch_size)


def translate(nets: nn.ModuleDict, images: torch.Tensor | np.ndarray, direction: str = "sim2real",
              *, sigma: float = 0.02, seed: int = 0, batch_size: int = 64) -> torch.Tensor:
    """Translate ``(N, 3, S, S)`` images in [−1, 1] with a fresh soft noise mask ``N(1, σ²)``
    (drawn from ``seed`` on the CPU; no saliency at inference), in eval mode, without gradients,
    on the generator's device; the result is a CPU tensor."""
    if direction not in CYCLEGAN_DIRECTIONS:
        raise ValueError(f"direction={direction!r} is not one of {CYCLEGAN_DIRECTIONS}")
    g = nets["G_AB" if direction == "sim2real" else "G_BA"]
    x = torch.as_tensor(np.asarray(images, dtype=np.float32))
    from galaxai.explain.saliency import eval_mode

    device = next(g.parameters()).device
    gen = torch.Generator().manual_seed(int(seed))
    out = []
    with eval_mode(g), torch.no_grad():
        for chunk in x.split(batch_size):
            m = 1 + sigma * torch.randn(chunk.shape, generator=gen)
            out.append(g(chunk.to(device), m.to(device)).clamp(-1, 1).cpu())
    return torch.cat(out) if out else x.clone()


def load_translator(path: str | Path) -> tuple[nn.ModuleDict, CycleGANTrainConfig]:
    """The networks and config of a checkpoint directory, or of a run (its latest checkpoint)."""
    from galaxai.train.checkpoints import latest_checkpoint, load_state, read_checkpoint_info

    path = Path(path)
    if not (path / _WEIGHTS).is_file():
        ref = latest_checkpoint(path)
        if ref is None or not (ref.path / _WEIGHTS).is_file():
            raise FileNotFoundError(f"{path} holds no CycleGAN checkpoint ({_WEIGHTS}); pass a run "
                                    "folder of `galaxai cyclegan train` or one of its checkpoints")
        path = ref.path
    info = read_checkpoint_info(path)
    cfg = CycleGANTrainConfig.from_dict(info["config"])
    nets = build_cyclegan(cfg.model, cfg.seed)
    load_state(nets, path / _WEIGHTS)
    return nets.eval(), cfg


class TranslationEvaluator:
    """KID and morphology distance of translated held-out sims vs held-out real stamps.

    The real set's features and statmorph table, and the raw sims' scores, are computed once.
    """

    def __init__(self, sim_eval: np.ndarray, real_eval: np.ndarray,
                 extractor: str = "realsky_d") -> None:
        from galaxai.evaluate_translation import features, kid, morphology_distance, morphology_table

        self.sim_eval, self.extractor = sim_eval, extractor
        self.real_features = features(real_eval, extractor)
        self.real_morphology = morphology_table(real_eval)
        raw = morphology_table(sim_eval)
        self.raw = {"kid_raw": kid(features(sim_eval, extractor), self.real_features),
                    "morph_distance_raw": (morphology_distance(raw, self.real_morphology)["mean"]
                                           if min(len(raw), len(self.real_morphology)) >= 2
                                           else float("nan"))}

    def __call__(self, translated: np.ndarray) -> dict[str, float]:
        """``kid``, ``morph_distance``, per-statistic distances ``morph_<stat>``, ``morph_dropped``
        and the raw sims' ``kid_raw`` and ``morph_distance_raw``."""
        from galaxai.evaluate_translation import features, kid, morphology_distance, morphology_table

        table = morphology_table(translated)
        row = {"kid": kid(features(translated, self.extractor), self.real_features)}
        if min(len(table), len(self.real_morphology)) >= 2:
            dist = morphology_distance(table, self.real_morphology)
            row["morph_distance"] = dist.pop("mean")
            row.update({f"morph_{k}": v for k, v in dist.items()})
        else:
            row["morph_distance"] = float("nan")
        row["morph_dropped"] = int(table.attrs["dropped"])
        return {**row, **self.raw}


def arm_config(arm: str, preset: str, iterations: int, seed: int, guide_from: int = 0,
               **overrides: Any) -> CycleGANTrainConfig:
    """The config of one experiment arm: ``baseline`` (Mask CycleGAN), ``saliency``
    (xAI-CycleGAN) or its controls ``constant`` and ``shuffled``."""
    if arm not in CYCLEGAN_ARMS:
        raise ValueError(f"arm={arm!r} is not one of {CYCLEGAN_ARMS}")
    base = overrides.pop("guide", None) or XaiCycleGANConfig()
    guide = None if arm == "baseline" else replace(
        base, control="none" if arm == "saliency" else arm)
    return CycleGANTrainConfig.preset(preset, iterations=iterations, seed=seed, guide=guide,
                                      guide_from=guide_from, **overrides)


#: One evaluator per process, for the last data set seen: its real set's statmorph table and the
#: raw sims' scores are the slow part, shared by the arms of an experiment.
_EVALUATORS: dict[tuple[str, str], TranslationEvaluator] = {}


def run_arm(arm: str, seed: int, *, preset: str, iterations: int, eval_every: int,
            guide_from: int, data: Path | None, out: Path, progress: bool) -> pd.DataFrame:
    """Train one arm and evaluate it every ``eval_every`` iterations (and at the end).

    Parameters
    ----------
    arm : {"baseline", "saliency", "constant", "shuffled"}
    seed : int
        Seeds the networks, data order and masks (and builds the stamps when ``data`` is None).
    preset : {"paper", "small", "tiny"}
    iterations, eval_every, guide_from : int
        The arm trains ``guide_from + iterations`` iterations in all; guidance (if any) starts at
        ``guide_from``, as in the deblender trainer and ``galaxai experiment guided``.
    data : Path, optional
        A :meth:`StampSets.save` file; ``None`` builds the stamp sets in memory with ``seed``
        (:func:`stamp_sets`; a short set for ``tiny``).
    out : Path
        Run directory (resumed if it holds this arm's run).
    progress : bool

    Returns
    -------
    pandas.DataFrame
        One row per evaluation: ``iteration``, ``wall_s`` (training seconds, evaluation
        excluded), ``kid``, ``morph_distance``, per-statistic ``morph_<stat>``, the raw sims'
        ``kid_raw`` and ``morph_distance_raw``, ``explain_s`` (cumulative saliency seconds),
        ``arm`` and ``seed``. ``attrs``: ``primary = "kid"``, ``higher_is_better = False``.
    """
    if data is None:
        small = preset == "tiny"
        sets = stamp_sets(seed, n_sim=64 if small else 400, n_eval=16 if small else 48,
                          image_size=CycleGANConfig.preset(preset).image_size,
                          real_copies=1 if small else 2, progress=progress)
    else:
        sets = StampSets.load(data)
    cfg = arm_config(arm, preset, guide_from + iterations, seed, guide_from,
                     log_every=max(1, min(50, eval_every)))
    return train_and_evaluate(sets, cfg, out, label=arm, eval_every=eval_every, progress=progress)


def train_and_evaluate(sets: StampSets, config: CycleGANTrainConfig, out: str | Path, *,
                       label: str = "run", eval_every: int = 500, progress: bool = False,
                       device: str | torch.device | None = None) -> pd.DataFrame:
    """Train (or resume) a run in ``out`` on ``device`` (see :class:`CycleGANTrainer`),
    evaluating and checkpointing every ``eval_every`` iterations and at the end; the evaluation
    rows as :func:`run_arm` describes."""
    if eval_every < 1:
        raise ValueError(f"eval_every must be >= 1, got {eval_every!r}")
    out = Path(out)
    trainer = CycleGANTrainer(sets, out, config, label=label, device=device)
    key = (trainer.data_hash, "realsky_d")
    if key not in _EVALUATORS:
        _EVALUATORS.clear()
        _EVALUATORS[key] = TranslationEvaluator(sets.sim_eval, sets.real_eval)
    evaluate = _EVALUATORS[key]
    stats = out / "stats.jsonl"
    rows = [json.loads(line) for line in stats.read_text(encoding="utf-8").splitlines()
            if line] if stats.is_file() else []
    rows = [r for r in rows if r.get("kind") == "eval"]
    for target in sorted({*range(eval_every, config.iterations, eval_every), config.iterations}):
        if target <= trainer.iteration:
            continue
        trainer.run(until=target, progress=progress)
        translated = trainer.translate(torch.from_numpy(sets.sim_eval), seed=config.seed).numpy()
        record = {"kind": "eval", "wall_s": trainer.wall_s, "explain_s": trainer.explain_s,
                  **evaluate(translated)}
        trainer.append_stats(record)
        trainer.checkpoint({k: v for k, v in record.items() if isinstance(v, (int, float))})
        rows.append({"arm": label, "seed": config.seed, "iteration": trainer.iteration, **record})
    # a run killed between its stats row and its checkpoint repeats that evaluation on resume:
    # the later row wins
    df = (pd.DataFrame(rows).drop(columns=["kind"], errors="ignore")
          .drop_duplicates("iteration", keep="last").reset_index(drop=True))
    df.attrs["primary"] = "kid"
    df.attrs["higher_is_better"] = False
    return df
