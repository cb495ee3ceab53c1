"""Training loop of the Galaxy Deblender GAN (Reiman & Göhre 2019), resumable bit-exactly.

Schedule (``specs/deblender_gan.md``): ``burn_in`` generator-only steps on a perceptual loss
``MSE(φ(A), φ(G₁)) + MSE(φ(B), φ(G₂))``, then ``iterations`` adversarial iterations, each one
discriminator step followed by one generator step, each on a fresh mini-batch:

- D loss ½·[BCE(D(A),1) + BCE(D(B),1) + BCE(D(G₁),0) + BCE(D(G₂),0)], D called on each tensor
  separately (BatchNorm statistics per call);
- G loss ½·(pixel + 10⁻³·adv), pixel = MSE(A,G₁) + MSE(B,G₂) on the [−1, 1] scale (plus the
  perceptual term with ``content="vgg+pixel"``), adv = BCE(D(G₁),1) + BCE(D(G₂),1).

With ``GANTrainConfig.guide`` set (xAI-GAN, :mod:`galaxai.guided`), from the guide's first
iteration on each branch's output gradient is scaled by ``1 + α·M_k`` in the generator step,
``M_k`` explaining ``D(G_k(x))`` (see :class:`galaxai.guided.GuideConfig`).

Branch 1 is always the centred galaxy A. Targets arrive in [0, 1] and are mapped to 2v−1; the blend
stays in [0, 1]. Three Adam optimisers (D, G adversarial, G burn-in); the learning rate drops from
``lr`` to ``lr_late`` after ``lr_drop`` adversarial iterations (half of them by default).

A run directory holds ``config.toml``, ``stats.jsonl`` (one JSON object per logged iteration, and
one per event such as an ``"extend"`` of the schedule), ``checkpoints/<iteration>/`` every
``checkpoint_every`` iterations (all kept) and ``resume.pt``. Calling :func:`train` again on a run
directory with ``resume.pt`` continues from it (with the same config, or ``extend=True`` for more
iterations; anything else is refused, as is a fresh start over old checkpoints); the data order
comes from a seeded sampler whose position is saved, so an interrupted and resumed run ends with
the same weights, bit for bit, as one never interrupted (on the same device and thread count).

Examples
--------
>>> from galaxai.train.gan import GANTrainConfig, train
>>> result = train(dataset, "runs/00001-small-deblender", GANTrainConfig.preset("small"),
...                eval_dataset=held_out, progress=True)            # doctest: +SKIP
"""
from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import math
import re
import signal
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Iterator, Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset, Sampler
from tqdm.auto import tqdm

from galaxai._atomic import atomic_write_text, remove_stale_temporaries
from galaxai.choices import PIXEL_LOSSES
from galaxai.config import config_from_mapping, config_to_dict, read_config, write_config
from galaxai.guided.core import Guide, GuideConfig
from galaxai.metrics import psnr
from galaxai.models.deblender import (
    DeblenderConfig,
    build_discriminator,
    build_generator,
    config_hash,
    from_network,
    to_network,
)
from galaxai.models.perceptual import PERCEPTUAL_BACKENDS, build_perceptual
from galaxai.train.checkpoints import (
    RESUME_FILE,
    capture_rng_state,
    checkpoint_dir,
    list_checkpoints,
    load_resume,
    load_state,
    read_checkpoint_info,
    read_safetensors,
    restore_rng_state,
    rewrite_stats,
    save_checkpoint,
    save_resume,
    init_source,
    shipped_file,
    shipped_models,
)
from galaxai.train.distributed import RankBatches, World, process_group, sync_batchnorm
from galaxai.train.runlock import run_lock

__all__ = [
    "GANTrainConfig",
    "TrainResult",
    "GANTrainer",
    "TrainingTerminated",
    "CONTENT_LOSSES",
    "ResumableBatchSampler",
    "train",
    "evaluate",
    "data_fingerprint",
    "new_run_dir",
    "config_digest",
]

#: Accepted values of ``GANTrainConfig.content``.
CONTENT_LOSSES = ("pixel", "vgg+pixel")
#: Floor of a per-image MSE (on the [-1, 1] scale) inside the ``log-mse`` weights: ~60 dB.
_LOG_MSE_FLOOR = 4e-6
_KEYS = ("blend", "target_a", "target_b")


@dataclass(frozen=True)
class GANTrainConfig:
    """Training settings of the deblender GAN.

    Parameters
    ----------
    model : DeblenderConfig
        Architecture of both networks.
    batch_size : int
        Mini-batch size (16; the original code used 1).
    burn_in : int
        Generator-only perceptual steps before the adversarial phase (2,000).
    iterations : int
        Adversarial iterations after burn-in (200,000).
    lr, lr_late : float
        Learning rate before and after the drop (1e-4, 1e-5).
    lr_drop : int, optional
        Adversarial iteration from which ``lr_late`` applies; ``None`` means ``iterations // 2``.
    betas, adam_eps : Adam settings.
    adv_weight : float
        Weight of the adversarial term in the generator loss (1e-3).
    content : {"pixel", "vgg+pixel"}
        Content term of the adversarial-phase generator loss.
    content_weight : float
        Weight of the perceptual term when ``content="vgg+pixel"``.
    pixel_loss : {"mse", "log-mse"}
        Pixel term of the adversarial-phase generator loss: the paper's batch MSE, or the mean
        per-image log-MSE that deblending is scored by (see :func:`pixel_loss`).
    perceptual : {"auto", "vgg19", "multiscale", "pixel"}
        Burn-in feature extractor (see :func:`galaxai.models.perceptual.build_perceptual`).
    perceptual_weights : str, optional
        Local VGG19 weights file.
    perceptual_resize : bool
        Resize to 224² before VGG19 (the paper); ``False`` is far cheaper on CPU.
    checkpoint_every : int
        Iterations (burn-in included) between checkpoints; a checkpoint is also written at the end.
    eval_every : int, optional
        Iterations between held-out evaluations; ``None`` means ``checkpoint_every``.
    eval_size : int
        Held-out examples used per evaluation (the first ones of ``eval_dataset``).
    log_every : int
        Iterations between lines of ``stats.jsonl`` (losses are averaged over the interval).
    seed : int
        Seed of weight initialisation, data order and DataLoader workers.
    num_workers : int
        DataLoader worker processes (0: load in the training process).
    amp : bool
        Mixed precision on CUDA (bfloat16 if supported, else float16 with loss scaling). Ignored
        on CPU.
    init_from : str, optional
        Start a *new* run from these weights instead of a random initialisation (fine-tuning):
        a checkpoint directory holding ``G.safetensors`` (and ``D.safetensors``, else D starts
        random), or a shipped model's name (``"small"``, ``"realsky"``, …; ``"shipped"`` is the
        default ``small``) for its generator and discriminator.
        Recorded in ``config.toml`` like every setting; ignored when resuming.
    guide : GuideConfig, optional
        Explanation-guided generator steps (xAI-GAN); ``None`` trains without guidance. Part of
        the run's settings: a resume with other guide settings is refused.
    """

    model: DeblenderConfig = field(default_factory=DeblenderConfig)
    batch_size: int = 16
    burn_in: int = 2_000
    iterations: int = 200_000
    lr: float = 1e-4
    lr_late: float = 1e-5
    lr_drop: int | None = None
    betas: tuple[float, float] = (0.9, 0.999)
    adam_eps: float = 1e-8
    adv_weight: float = 1e-3
    content: str = "pixel"
    content_weight: float = 1.0
    pixel_loss: str = "mse"
    perceptual: str = "auto"
    perceptual_weights: str | None = None
    perceptual_resize: bool = True
    checkpoint_every: int = 1_000
    eval_every: int | None = None
    eval_size: int = 1_024
    log_every: int = 100
    seed: int = 0
    num_workers: int = 0
    amp: bool = True
    init_from: str | None = None
    guide: GuideConfig | None = None

    PRESETS: ClassVar[tuple[str, ...]] = ("paper", "small", "tiny")

    def __post_init__(self) -> None:
        if self.content not in CONTENT_LOSSES:
            raise ValueError(f"content={self.content!r} is not one of {CONTENT_LOSSES}")
        if self.pixel_loss not in PIXEL_LOSSES:
            raise ValueError(f"pixel_loss={self.pixel_loss!r} is not one of {PIXEL_LOSSES}")
        if self.perceptual not in PERCEPTUAL_BACKENDS:
            raise ValueError(f"perceptual={self.perceptual!r} is not one of {PERCEPTUAL_BACKENDS}")
        for name in ("batch_size", "checkpoint_every", "log_every", "eval_size"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)!r}")
        if self.burn_in < 0 or self.iterations < 0 or self.num_workers < 0:
            raise ValueError("burn_in, iterations and num_workers must be >= 0")
        if self.eval_every is not None and self.eval_every < 1:
            raise ValueError(f"eval_every must be >= 1 or None, got {self.eval_every}")
        if self.guide is not None:
            self.guide.first_iteration(self.burn_in, self.iterations)

    @classmethod
    def preset(cls, name: str, **overrides: Any) -> "GANTrainConfig":
        """Return the named preset (``paper``, ``small`` or ``tiny``), optionally overridden.

        ``paper``: batch 16, 2,000 burn-in + 200,000 adversarial iterations, lr 1e-4 → 1e-5 at
        half, checkpoint every 1,000, logging every 100. ``small``: the ``small`` network and a
        schedule a 2-core CPU completes in about an hour. ``tiny``: seconds, for tests.
        """
        presets = {
            "paper": cls(),
            "small": cls(
                model=DeblenderConfig.preset("small"),
                batch_size=8,
                burn_in=200,
                iterations=1_800,
                # 5x the paper's rates. Measured on the 2,560-galaxy pool with the small network's
                # output_skip: pixel-MSE burn-in at 5e-4 and 1e-3 both reached ~27-28 dB held-out
                # PSNR (batch-statistic BN) within 300 iterations. Without output_skip, 1e-4 was
                # still near 18 dB after 700 iterations and 5e-4 killed branch 2 (tanh at -1).
                lr=5e-4,
                lr_late=5e-5,
                checkpoint_every=100,
                eval_size=256,
                log_every=10,
                perceptual_resize=False,
            ),
            "tiny": cls(
                model=DeblenderConfig.preset("tiny"),
                batch_size=4,
                burn_in=4,
                iterations=8,
                checkpoint_every=4,
                eval_size=16,
                log_every=1,
                perceptual="multiscale",
                perceptual_resize=False,
            ),
        }
        if name not in presets:
            raise ValueError(f"unknown GANTrainConfig preset {name!r}; choose one of {cls.PRESETS}")
        return dataclasses.replace(presets[name], **overrides)

    @property
    def total_iterations(self) -> int:
        """Burn-in plus adversarial iterations."""
        return self.burn_in + self.iterations

    def lr_at(self, iteration: int) -> float:
        """Learning rate used at global ``iteration`` (0-based, burn-in included)."""
        drop = self.iterations // 2 if self.lr_drop is None else self.lr_drop
        adversarial = iteration - self.burn_in
        return self.lr_late if adversarial >= drop else self.lr

#: The name this class had before the morphology classifiers got their own config; kept so that
#: existing scripts keep working.
TrainConfig = GANTrainConfig


@dataclass(frozen=True)
class TrainResult:
    """What :func:`train` returns: where the run stands after the call."""

    run_dir: Path
    iteration: int
    checkpoint: Path | None
    stats: dict[str, Any]
    metrics: dict[str, float]
    perceptual_backend: str | None


class TrainingTerminated(Exception):
    """SIGTERM stopped :func:`train`, after it wrote a checkpoint and ``resume.pt``."""


@contextlib.contextmanager
def _sigterm_event() -> Iterator[threading.Event]:
    """While active, SIGTERM only sets the yielded event (signals need the main thread; in any
    other thread the event is never set and SIGTERM keeps its usual effect)."""
    event = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        yield event
        return
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: event.set())
    try:
        yield event
    finally:
        signal.signal(signal.SIGTERM, previous)


class ResumableBatchSampler(Sampler[list[int]]):
    """Endless shuffled mini-batches whose position can be saved and restored exactly.

    Epoch ``e`` is the permutation ``numpy.random.default_rng([seed, e]).permutation(n)`` cut into
    ``n // batch_size`` batches (the remainder is dropped). Iteration starts at batch ``start``
    counted from the first batch of epoch 0, so the state is the single integer of batches consumed.

    Parameters
    ----------
    n : int
        Dataset length.
    batch_size : int
        Batch size (``<= n``).
    seed : int
        Seed of the permutations.
    start : int
        Batches already consumed.
    """

    def __init__(self, n: int, batch_size: int, seed: int, start: int = 0) -> None:
        if batch_size > n:
            raise ValueError(f"batch_size {batch_size} is larger than the dataset ({n} examples)")
        self.n, self.batch_size = int(n), int(batch_size)
        self.seed, self.start = int(seed), int(start)
        self.per_epoch = self.n // self.batch_size

    def permutation(self, epoch: int) -> np.ndarray:
        """The example order of ``epoch``."""
        return np.random.default_rng([self.seed, int(epoch)]).permutation(self.n)

    def __iter__(self) -> Iterator[list[int]]:  # noqa: D105
        batch = self.start
        epoch, perm = -1, np.empty(0, dtype=np.int64)
        while True:
            e, pos = divmod(batch, self.per_epoch)
            if e != epoch:
                epoch, perm = e, self.permutation(e)
            yield perm[pos * self.batch_size:(pos + 1) * self.batch_size].tolist()
            batch += 1


def data_fingerprint(dataset: Dataset) -> str:
    """A short hash identifying a dataset.

    Uses ``dataset.data_hash`` when the dataset provides one (e.g. a stamp store's manifest hash);
    otherwise hashes the length and the first, middle and last examples' tensors.
    """
    own = getattr(dataset, "data_hash", None)
    if callable(own):
        own = own()
    if own:
        return str(own)
    n = len(dataset)  # type: ignore[arg-type]
    digest = hashlib.sha256(str(n).encode())
    for i in sorted({0, n // 2, n - 1}):
        item = dataset[i]
        for key in _KEYS:
            values = torch.as_tensor(item[key]).float().contiguous().numpy()
            digest.update(values.tobytes())
    return digest.hexdigest()[:16]


def new_run_dir(root: str | Path, description: str) -> Path:
    """Create ``root/<next 5-digit id>-<description>`` (never reuses an existing id)."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    ids = [int(m.group(1)) for p in root.iterdir() if (m := re.match(r"^(\d{5})-", p.name))]
    path = root / f"{max(ids, default=-1) + 1:05d}-{description}"
    path.mkdir()
    return path


def _check_dataset(dataset: Dataset, cfg: GANTrainConfig, label: str) -> None:
    try:
        n = len(dataset)  # type: ignore[arg-type]
    except TypeError:
        raise TypeError(f"{label} must be a map-style torch Dataset with __len__") from None
    if n == 0:
        raise ValueError(f"{label} is empty")
    if label == "dataset" and n < cfg.batch_size:
        raise ValueError(
            f"batch_size {cfg.batch_size} is larger than the dataset ({n} examples)"
        )
    item = dataset[0]
    if not isinstance(item, Mapping) or any(k not in item for k in _KEYS):
        got = sorted(item) if isinstance(item, Mapping) else type(item).__name__
        raise ValueError(f"{label} items must be dicts with keys {_KEYS}; got {got}")
    size = cfg.model.image_size
    want = (cfg.model.channels, size, size)
    for key in _KEYS:
        shape = tuple(torch.as_tensor(item[key]).shape)
        if shape != want:
            raise ValueError(
                f"{label}[0][{key!r}] has shape {shape}, but the model config expects {want}; "
                "set GANTrainConfig.model.image_size/channels to match the data"
            )


def pixel_loss(outputs: Sequence[torch.Tensor], targets: Sequence[torch.Tensor],
               kind: str = "mse") -> torch.Tensor:
    """Pixel term of the generator loss, summed over the branches.

    ``"mse"`` is the paper's ``Σ_branch MSE(G_k, T_k)`` over the batch. ``"log-mse"`` follows the
    gradient of ``Σ_branch mean_i log MSE_i``, the per-image log-MSE: deblenders are scored by
    the *mean of per-image PSNRs* (``-10 log10 MSE_i``), which the batch MSE weights by each
    image's error, so a few large, badly-fit galaxies dominate it and faint, small ones (whose
    PSNR counts as much) are neglected. It is computed as ``mean_i w_i MSE_i`` with detached
    weights ``w_i = mean(MSE) / MSE_i``: the value and the gradient scale stay those of the MSE
    (the adversarial weight keeps its meaning), the gradient's direction is log-MSE's.

    Parameters
    ----------
    outputs, targets : sequence of torch.Tensor
        One ``(B, C, H, W)`` output and target per branch, on the same scale.
    kind : {"mse", "log-mse"}
        Which pixel term.
    """
    if kind not in PIXEL_LOSSES:
        raise ValueError(f"pixel loss {kind!r} is not one of {PIXEL_LOSSES}")
    per_image = torch.stack([(o.float() - t.float()).pow(2).flatten(1).mean(1)
                             for o, t in zip(outputs, targets)])  # (branches, B)
    if kind == "log-mse":
        weights = (per_image.mean() / per_image.clamp_min(_LOG_MSE_FLOOR)).detach()
        per_image = weights * per_image
    return per_image.mean(1).sum()


def _only_more_inputs(source: torch.Tensor, own: torch.Tensor) -> bool:
    """Whether ``own`` is a convolution weight like ``source`` but with more input channels."""
    return (source.ndim == own.ndim == 4 and source.shape[0] == own.shape[0]
            and source.shape[2:] == own.shape[2:] and source.shape[1] < own.shape[1])


def _widened_inputs(source: torch.Tensor, own: torch.Tensor) -> torch.Tensor:
    """``source``'s weights on the leading input channels and zeros on the extra ones: the
    widened layer computes what ``source`` did until training gives the new inputs weight
    (e.g. a generator gaining ``coord_channels`` starts as the network it was loaded from)."""
    widened = torch.zeros_like(own)
    widened[:, : source.shape[1]] = source
    return widened


def _config_diff(a: Mapping[str, Any], b: Mapping[str, Any], prefix: str = "") -> list[str]:
    diff = []
    for key in sorted(set(a) | set(b)):
        va, vb = a.get(key), b.get(key)
        if isinstance(va, Mapping) and isinstance(vb, Mapping):
            diff += _config_diff(va, vb, f"{prefix}{key}.")
        elif va != vb:
            diff.append(f"{prefix}{key}: {va!r} -> {vb!r}")
    return diff


def _run_config(run_dir: Path, state: Mapping[str, Any]) -> GANTrainConfig:
    """The config a run had at its resume point (from that checkpoint's sidecar)."""
    ckpt = checkpoint_dir(run_dir, state["iteration"])
    values = read_checkpoint_info(ckpt).get("config", {})
    return config_from_mapping(GANTrainConfig, values, source=f"config of {ckpt}")


def _extension(old: GANTrainConfig, new: GANTrainConfig) -> GANTrainConfig | None:
    """``new`` as a lengthening of ``old``, or ``None`` if it changes anything else.

    Only ``iterations`` may grow; the learning-rate drop stays where ``old`` had it (``lr_drop``
    is pinned), so the iterations already trained keep their schedule.
    """
    drop = old.iterations // 2 if old.lr_drop is None else old.lr_drop
    if new.iterations < old.iterations or new.lr_drop not in (None, drop):
        return None
    longer = dataclasses.replace(new, lr_drop=drop, guide=_pinned_guide(old, new.guide))
    same = dataclasses.replace(longer, iterations=old.iterations) == dataclasses.replace(
        old, lr_drop=drop, guide=_pinned_guide(old, old.guide))
    return longer if same else None


def _pinned_guide(old: GANTrainConfig, guide: GuideConfig | None) -> GuideConfig | None:
    """``guide`` with a default start pinned where ``old``'s schedule put it (as ``lr_drop``)."""
    if guide is None or guide.start is not None:
        return guide
    return dataclasses.replace(guide, start=guide.first_iteration(old.burn_in, old.iterations))


#: Settings added after runs existed, left out of the config hash at these (default) values, so
#: runs started before them keep their hash and resume: (path in ``asdict``, default).
_LATER_SETTINGS = ((("guide",), None), (("pixel_loss",), "mse"),
                   (("model", "shared_dilations"), ()), (("model", "coord_channels"), False))


def config_digest(cfg: GANTrainConfig) -> str:
    """The run's config hash; settings added later are left out at their defaults (guidance
    off, MSE pixel loss, undilated trunk, no centre offsets), so runs started before them keep
    their hash."""
    values = dataclasses.asdict(cfg)
    for path, default in _LATER_SETTINGS:
        holder = values
        for key in path[:-1]:
            holder = holder[key]
        if holder.get(path[-1]) == default:
            holder.pop(path[-1])
    return config_hash(values)


def _batch(batch: Mapping[str, torch.Tensor], device: torch.device) -> tuple[torch.Tensor, ...]:
    blend, ta, tb = (batch[k].to(device, non_blocking=True).float() for k in _KEYS)
    return blend, ta, tb


@torch.no_grad()
def evaluate(
    generator: torch.nn.Module,
    dataset: Dataset,
    *,
    limit: int | None = None,
    batch_size: int = 32,
    device: str | torch.device | None = None,
) -> dict[str, float]:
    """Mean per-image PSNR (data_range 1) of each branch against its own target, in eval mode.

    PSNR comes from :func:`galaxai.metrics.psnr` (MSE jointly over C×H×W of one image, data
    range 1, outputs mapped to [0, 1] by (v+1)/2). Returns ``psnr_a``, ``psnr_b``, ``psnr``
    (pooled) and ``mse_a``, ``mse_b`` on the [0, 1] scale.
    The generator's train/eval mode is restored afterwards.
    """
    device = torch.device(device) if device is not None else next(generator.parameters()).device
    n = len(dataset) if limit is None else min(limit, len(dataset))  # type: ignore[arg-type]
    loader = DataLoader(
        torch.utils.data.Subset(dataset, range(n)), batch_size=batch_size, shuffle=False,
        generator=torch.Generator(),  # a private generator: never draws from the global RNG
    )
    was_training = generator.training
    generator.eval()
    psnr_a, psnr_b, mse_a, mse_b = [], [], [], []
    try:
        for batch in loader:
            blend, ta, tb = _batch(batch, device)
            g1, g2 = generator(blend)
            pa, pb = from_network(g1), from_network(g2)
            psnr_a.append(psnr(pa.float(), ta, data_range=1.0))
            psnr_b.append(psnr(pb.float(), tb, data_range=1.0))
            mse_a.append((pa - ta).pow(2).flatten(1).mean(1).cpu().numpy())
            mse_b.append((pb - tb).pow(2).flatten(1).mean(1).cpu().numpy())
    finally:
        generator.train(was_training)
    a, b = np.concatenate(psnr_a), np.concatenate(psnr_b)
    return {
        "psnr_a": float(a.mean()),
        "psnr_b": float(b.mean()),
        "psnr": float(np.concatenate([a, b]).mean()),
        "mse_a": float(np.concatenate(mse_a).mean()),
        "mse_b": float(np.concatenate(mse_b).mean()),
    }


def _load_initial_weights(G: torch.nn.Module, D: torch.nn.Module, source: str) -> None:
    """Load ``GANTrainConfig.init_from`` weights into fresh networks (see its docstring)."""
    name = init_source(source)
    shipped = shipped_file(name, "deblender")
    if shipped is not None:
        g_file, d_file = shipped, shipped_file(name, "discriminator")
    else:
        folder = Path(source)
        g_file, d_file = folder / "G.safetensors", folder / "D.safetensors"
    if not g_file.is_file():
        raise FileNotFoundError(f"init_from={source!r}: {g_file} does not exist; pass a checkpoint "
                                "directory (run/checkpoints/000001000) or a shipped model's name "
                                f"({', '.join(shipped_models())}; 'shipped' is 'small')")
    for module, path in ((G, g_file), (D, d_file)):
        if path.is_file():
            _load_matching(module, path)


def _load_matching(module: torch.nn.Module, path: Path) -> None:
    """Load the tensors of ``path`` whose names and shapes fit ``module``; warn about the rest.

    A network that differs only in some layers (e.g. a branch head with a gate channel) then
    starts from every layer the two share, and the others keep their fresh initialisation. A
    convolution that only gained input channels (``coord_channels``) keeps the source's weights
    on the old inputs and zeros on the new ones.
    """
    import warnings

    tensors, _ = read_safetensors(path)
    own = module.state_dict()
    fits = {k: v for k, v in tensors.items() if k in own and own[k].shape == v.shape}
    fits.update({k: _widened_inputs(v, own[k]) for k, v in tensors.items()
                 if k in own and k not in fits and _only_more_inputs(v, own[k])})
    if not fits:
        raise ValueError(f"init_from: no tensor of {path} fits this network; is it another "
                         "architecture?")
    module.load_state_dict(fits, strict=False)
    left = sorted(set(own) - set(fits))
    if left:
        warnings.warn(f"init_from: {len(left)} of {len(own)} tensors keep their fresh "
                      f"initialisation (not in {path.name} or of another shape): "
                      f"{', '.join(left[:6])}{' …' if len(left) > 6 else ''}", stacklevel=3)


def _resolve_config(config: GANTrainConfig | str | None, run_dir: Path) -> GANTrainConfig:
    if isinstance(config, GANTrainConfig):
        return config
    if isinstance(config, str):
        return GANTrainConfig.preset(config)
    if config is None and (run_dir / "config.toml").is_file():
        return read_config(GANTrainConfig, run_dir / "config.toml")
    raise ValueError(
        f"no config given and {run_dir / 'config.toml'} does not exist; pass a GANTrainConfig or a "
        f"preset name ({', '.join(GANTrainConfig.PRESETS)})"
    )


def train(
    dataset: Dataset,
    run_dir: str | Path,
    config: GANTrainConfig | str | None = None,
    eval_dataset: Dataset | None = None,
    progress: bool = False,
    device: str | torch.device | None = None,
    max_iterations: int | None = None,
    extend: bool = False,
) -> TrainResult:
    """Train (or resume training) the deblender GAN in ``run_dir``.

    Parameters
    ----------
    dataset : torch.utils.data.Dataset
        Map-style dataset whose items are dicts with ``blend``, ``target_a``, ``target_b``
        ``(3, S, S)`` float tensors in [0, 1] (extra keys are ignored).
    run_dir : path-like
        Run directory. If it holds ``resume.pt`` training continues from there (the config must
        be the same as the run's; the data must have the same fingerprint).
    config : GANTrainConfig or str, optional
        Settings or a preset name; ``None`` reads ``run_dir/config.toml``.
    eval_dataset : Dataset, optional
        Held-out data scored every ``eval_every`` iterations (PSNR per branch).
    progress : bool
        Show a tqdm progress bar.
    device : str or torch.device, optional
        ``"cuda"`` when available, else ``"cpu"``.
    max_iterations : int, optional
        Stop once this many iterations (burn-in included, counted from the start of the run)
        are done, writing a checkpoint and ``resume.pt`` there; a later call continues.
    extend : bool
        When resuming, accept a ``config`` that differs from the run's only by more
        ``iterations``: the run is lengthened, its learning-rate drop kept where it was
        (``lr_drop`` pinned), and the extension recorded in ``stats.jsonl`` (an ``"event":
        "extend"`` line) and ``config.toml``. Any other change is refused, as without it.

    Returns
    -------
    TrainResult

    Raises
    ------
    galaxai.train.runlock.RunLockedError
        If another process is training in ``run_dir`` (see :func:`~galaxai.train.runlock.run_lock`).
    TrainingTerminated
        If the process received SIGTERM (called from the main thread): the iteration under way is
        finished and a checkpoint and ``resume.pt`` are written first, so a later call continues.

    Notes
    -----
    Temporary files of atomic writes that a killed run left in ``run_dir`` and its checkpoint
    folders are deleted first (the lock guarantees that no other trainer is writing them).

    Under ``torchrun`` (``WORLD_SIZE`` > 1 in the environment, or a process group the caller
    initialised) every process calls :func:`train` with the same arguments and the run is
    data-parallel (:mod:`galaxai.train.distributed`): ``batch_size`` stays the global batch, split
    over the ranks, BatchNorm is synchronised, G and D are each wrapped in
    DistributedDataParallel. Rank 0 alone takes the lock and writes ``config.toml``,
    ``stats.jsonl`` (losses averaged over ranks) and checkpoints; the other ranks wait at a
    barrier until a checkpoint is written. An error of any rank in the set-up checks is raised on
    all of them; SIGTERM on any rank stops all of them at the same iteration, after the checkpoint.
    """
    run_dir = Path(run_dir)
    with process_group(device) as world, contextlib.ExitStack() as held:
        world.agree(lambda: held.enter_context(run_lock(run_dir)) if world.is_main else None)
        with _sigterm_event() as sigterm:
            if world.is_main:
                for folder in (run_dir, *sorted((run_dir / "checkpoints").glob("*"))):
                    remove_stale_temporaries(folder)
            world.barrier()
            trainer = world.agree(lambda: GANTrainer(dataset, run_dir, config, eval_dataset,
                                                     device, extend, world=world))
            return trainer.run(max_iterations, progress, sigterm)


class GANTrainer:
    """One deblender training run: set-up and resume, steps, logging and checkpoints.

    :func:`train` is the entry point (it takes the run lock and the SIGTERM handler first); the
    class splits the run into methods that each do one job. Construction checks the config and
    the data against the run directory, builds the networks, optimisers and loss scaler, and
    restores them from ``resume.pt`` (or ``GANTrainConfig.init_from`` for a new run). ``world``
    is this process's rank in a data-parallel run (see :func:`train`); only rank 0 writes.
    """

    def __init__(self, dataset: Dataset, run_dir: Path, config: GANTrainConfig | str | None,
                 eval_dataset: Dataset | None = None, device: str | torch.device | None = None,
                 extend: bool = False, world: World | None = None) -> None:
        self.run_dir, self.dataset, self.eval_dataset = run_dir, dataset, eval_dataset
        self.world = world = world or World()
        cfg = _resolve_config(config, run_dir)
        self.dev = world.device(device)
        _check_dataset(dataset, cfg, "dataset")
        if cfg.batch_size % world.size:
            raise ValueError(
                f"batch_size {cfg.batch_size} (the global batch) does not divide among "
                f"{world.size} processes; choose a batch size that is a multiple of the number "
                "of processes (--nproc / torchrun --nproc-per-node x nodes)"
            )
        if eval_dataset is not None:
            _check_dataset(eval_dataset, cfg, "eval_dataset")
        self.digest = config_digest(cfg)
        self.data_hash = data_fingerprint(dataset)
        self.state = state = load_resume(run_dir)
        if state is None and (done := list_checkpoints(run_dir)):
            raise ValueError(
                f"{run_dir} holds checkpoints (iterations {done[0].iteration}-{done[-1].iteration}) "
                f"but no {RESUME_FILE} to continue them; starting from scratch there would mix two "
                "runs. Choose another run directory (--run), or delete this one to start over"
            )
        self.extended_from = None
        if state is not None and state.get("config_hash") != self.digest:
            old = _run_config(run_dir, state)
            longer = _extension(old, cfg)
            if extend and longer is not None:
                self.extended_from, cfg, self.digest = old.iterations, longer, config_digest(longer)
            else:
                diff = _config_diff(config_to_dict(old), config_to_dict(cfg))
                hint = ("; to train it longer, extend it explicitly (extend=True, `galaxai train "
                        "--extend`)") if longer is not None else ""
                raise ValueError(
                    f"{run_dir} holds a run with a different config ({'; '.join(diff)}); resume "
                    "with the run's settings (config=None reads them; `galaxai train` keeps the "
                    f"options you leave out) or start a new run directory{hint}"
                )
        if state is not None and state.get("data_hash") != self.data_hash:
            raise ValueError(
                f"{run_dir} was trained on data with fingerprint {state.get('data_hash')}, but "
                f"this dataset has {self.data_hash}; resume with the same data or start a new run "
                "directory"
            )
        self.cfg = cfg
        if world.is_main:
            write_config(run_dir / "config.toml", cfg)
        self._build()
        self.stats_path = run_dir / "stats.jsonl"
        self.start, self.consumed, self.elapsed = 0, 0, 0.0
        self.resume()

    def _build(self) -> None:
        """Networks, perceptual features, optimisers and the AMP loss scaler."""
        cfg, dev, state = self.cfg, self.dev, self.state
        self.G = build_generator(cfg.model, seed=cfg.seed).to(dev).train()
        self.D = build_discriminator(cfg.model, seed=cfg.seed + 1).to(dev).train()
        if self.world.distributed:
            sync_batchnorm(self.G, dev), sync_batchnorm(self.D, dev)
        # the modules the training steps call: DistributedDataParallel wrappers once run() starts
        self.G_step, self.D_step = self.G, self.D
        self.phi = None
        if cfg.burn_in > 0 or cfg.content == "vgg+pixel":
            self.phi = build_perceptual(
                cfg.perceptual, cfg.perceptual_weights, resize=cfg.perceptual_resize,
                channels=cfg.model.channels, seed=cfg.seed,
            ).to(dev)
        self.backend = getattr(self.phi, "backend", None)
        self.guide = None if cfg.guide is None else Guide(cfg.guide, seed=cfg.seed)
        self.guide_start = (None if cfg.guide is None
                            else cfg.guide.first_iteration(cfg.burn_in, cfg.iterations))
        resuming_burn_in = state is not None and state["iteration"] < cfg.burn_in
        needs_phi = cfg.content == "vgg+pixel" or resuming_burn_in
        if state is not None and needs_phi and state.get("perceptual_backend") != self.backend:
            raise ValueError(
                f"{self.run_dir} was trained with perceptual backend "
                f"{state.get('perceptual_backend')!r} but {self.backend!r} is available now; "
                "provide the same backend (e.g. set GANTrainConfig.perceptual explicitly, or the "
                "VGG19 weights file) to resume"
            )
        adam = dict(lr=cfg.lr, betas=tuple(cfg.betas), eps=cfg.adam_eps)
        self.opt = {
            "D": torch.optim.Adam(self.D.parameters(), **adam),
            "G": torch.optim.Adam(self.G.parameters(), **adam),
            "G_burnin": torch.optim.Adam(self.G.parameters(), **adam),
        }
        self.use_amp = cfg.amp and dev.type == "cuda"
        self.amp_dtype = (torch.bfloat16 if self.use_amp and torch.cuda.is_bf16_supported()
                          else torch.float16)
        self.scaler = torch.amp.GradScaler(
            "cuda", enabled=self.use_amp and self.amp_dtype == torch.float16)

    def resume(self) -> None:
        """Restore weights, optimisers, RNG and sampler position from ``resume.pt`` (or start
        from ``init_from`` weights, or fresh), and trim or start ``stats.jsonl``."""
        state, cfg, main = self.state, self.cfg, self.world.is_main
        if state is None:
            if cfg.init_from:
                _load_initial_weights(self.G, self.D, cfg.init_from)
            if main:
                atomic_write_text(self.stats_path, "")
            return
        ckpt = checkpoint_dir(self.run_dir, state["iteration"])
        load_state(self.G, ckpt / "G.safetensors")
        load_state(self.D, ckpt / "D.safetensors")
        for name, o in self.opt.items():
            o.load_state_dict(state["optimizers"][name])
        if state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
        ranks = state.get("rng_ranks") or []
        restore_rng_state(ranks[self.world.rank] if len(ranks) == self.world.size
                          else state["rng"])
        self.start, self.consumed = state["iteration"], state["sampler"]["consumed"]
        self.elapsed = state["elapsed"]
        if not main:
            return
        rewrite_stats(self.stats_path, self.start)
        if self.extended_from is not None:
            self._append_stats({
                "iteration": self.start, "event": "extend", "time": time.time(),
                "iterations_from": self.extended_from, "iterations_to": cfg.iterations,
                "lr_drop": cfg.lr_drop,
            })

    # ------------------------------------------------------------------ one iteration
    def _next_batch(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        self.consumed += 1
        return _batch(next(self._batches), self.dev)

    def _autocast(self) -> contextlib.AbstractContextManager:
        return (torch.autocast("cuda", dtype=self.amp_dtype) if self.use_amp
                else contextlib.nullcontext())

    def _step(self, name: str, loss: torch.Tensor) -> None:
        self.opt[name].zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.step(self.opt[name])
        self.scaler.update()

    def _features_loss(self, g1: torch.Tensor, g2: torch.Tensor, ta: torch.Tensor,
                       tb: torch.Tensor) -> torch.Tensor:
        # φ takes [0, 1] images: generator outputs are mapped back by (v+1)/2
        with torch.no_grad():
            fa, fb = self.phi(ta), self.phi(tb)
        return (F.mse_loss(self.phi(from_network(g1)), fa)
                + F.mse_loss(self.phi(from_network(g2)), fb))

    @staticmethod
    def _bce(logits: torch.Tensor, real: bool) -> torch.Tensor:
        target = torch.ones_like(logits) if real else torch.zeros_like(logits)
        return F.binary_cross_entropy_with_logits(logits.float(), target)

    def burn_in_step(self) -> dict[str, torch.Tensor]:
        """One generator-only step on the perceptual loss."""
        blend, ta, tb = self._next_batch()
        with self._autocast():
            g1, g2 = self.G_step(blend)
            loss = self._features_loss(g1, g2, ta, tb)
        self._step("G_burnin", loss)
        return {"g_burnin": loss}

    def adversarial_step(self, lr: float, iteration: int | None = None) -> dict[str, torch.Tensor]:
        """One discriminator step, then one generator step on a fresh mini-batch.

        The D step trains ``D_step`` on fakes made without gradients (detached); the G step
        trains ``G_step`` through the bare D, whose parameters are frozen for it (so a
        DistributedDataParallel D never waits for gradients it will not get). ``iteration``
        (global, 0-based) switches guidance on from the guide's first iteration.
        """
        cfg, G, D, bce = self.cfg, self.G, self.D, self._bce
        for name in ("D", "G"):
            for group in self.opt[name].param_groups:
                group["lr"] = lr
        blend, ta, tb = self._next_batch()
        a, b = to_network(ta), to_network(tb)
        with self._autocast():
            with torch.no_grad():
                g1, g2 = G(blend)
            # D is called on each tensor separately: BatchNorm statistics per call
            Dt = self.D_step
            real = bce(Dt(a), True) + bce(Dt(b), True)
            d_loss = 0.5 * (real + bce(Dt(g1), False) + bce(Dt(g2), False))
        self._step("D", d_loss)
        blend, ta, tb = self._next_batch()
        a, b = to_network(ta), to_network(tb)
        losses: dict[str, torch.Tensor] = {}
        D.requires_grad_(False)
        guiding = (self.guide is not None and iteration is not None
                   and iteration >= self.guide_start)
        with self._autocast():
            g1, g2 = self.G_step(blend)
            # D sees views of the outputs; guidance hooks them (apply_to="adversarial"), or the
            # outputs themselves when every loss term uses the views (apply_to="total")
            d1, d2 = (g1.view_as(g1), g2.view_as(g2)) if guiding else (g1, g2)
            if guiding and self.guide.config.apply_to == "total":
                g1, g2 = d1, d2
            pixel = pixel_loss((g1, g2), (a, b), cfg.pixel_loss)
            s1, s2 = D(d1), D(d2)
            adv = bce(s1, True) + bce(s2, True)
            content = pixel
            if cfg.content == "vgg+pixel":
                losses["g_perceptual"] = self._features_loss(g1, g2, ta, tb)
                content = pixel + cfg.content_weight * losses["g_perceptual"]
            g_loss = 0.5 * (content + cfg.adv_weight * adv)
        if guiding:
            losses.update(self._guide_outputs(((d1, s1), (d2, s2)), iteration))
        self._step("G", g_loss)
        D.requires_grad_(True)
        losses.update(d=d_loss, g=g_loss, g_pixel=pixel, g_adv=adv)
        return losses

    def _guide_outputs(self, pairs: tuple[tuple[torch.Tensor, torch.Tensor], ...],
                       iteration: int) -> dict[str, torch.Tensor]:
        """Explain each branch's fakes and hook its D input; return the guidance statistics."""
        info: dict[str, float] = {"explained": 0.0, "m_mean": 0.0, "seconds": 0.0}
        for branch, (out, logits) in enumerate(pairs):
            mask, stats = self.guide.mask(self.D, out.detach(), logits, iteration=iteration,
                                          branch=branch)
            self.guide.hook(out, mask)
            for key in info:
                info[key] += stats[key] / (1 if key == "seconds" else len(pairs))
        return {f"guide_{k}": torch.tensor(v) for k, v in info.items()}

    # ------------------------------------------------------------ logging, checkpoints
    def _append_stats(self, record: dict[str, Any]) -> None:
        with self.stats_path.open("a", encoding="utf-8") as fh:
            fh.write(json.dumps(record) + "\n")

    def log(self, it: int, lr: float, sums: dict[str, torch.Tensor], count: int,
            metrics: dict[str, float] | None) -> dict[str, Any]:
        """Append the interval's mean losses (and held-out metrics) to ``stats.jsonl``; raise
        :class:`FloatingPointError` when a loss is not finite.

        Called on every rank: the losses are averaged over ranks (each rank's is the mean over
        its slice, so the average is the global batch's), and rank 0 writes the line."""
        now = time.perf_counter()
        self.elapsed += now - self._t0
        self._t0 = now
        names = sorted(sums)
        means = self.world.mean(torch.stack([sums[k] for k in names])) if names else []
        stats = {
            "iteration": it,
            "phase": "burn-in" if it <= self.cfg.burn_in else "adversarial",
            "time": time.time(),
            "elapsed": round(self.elapsed, 3),
            "lr": lr,
            "n": count,
            **{k if k.startswith("guide_") else f"loss_{k}": float(v) / count
               for k, v in zip(names, means)},
        }
        if self.guide is not None:
            stats["guide"] = self.guide.config.label if it > self.guide_start else None
        if metrics is not None:
            stats["eval"] = metrics
        if self.world.is_main:
            self._append_stats(stats)
        bad = [k for k, v in stats.items() if k.startswith("loss_") and not math.isfinite(v)]
        if bad:
            raise FloatingPointError(
                f"training in {self.run_dir} diverged at iteration {it}: non-finite {bad}; lower "
                "the learning rate or check the data for NaNs (see stats.jsonl)"
            )
        return stats

    def checkpoint(self, it: int, metrics: dict[str, float]) -> Path:
        """Write checkpoint ``it`` (weights + sidecar) and ``resume.pt``; return its folder.

        Called on every rank: rank 0 writes (with every rank's RNG state in ``resume.pt``), the
        others wait for it at a barrier, so no rank goes on (or exits) before the checkpoint
        exists."""
        cfg, world = self.cfg, self.world
        phase = "burn-in" if it <= cfg.burn_in else "adversarial"
        path = checkpoint_dir(self.run_dir, it)
        rng = world.gather(capture_rng_state()) if world.distributed else None
        if world.is_main:
            self._write_checkpoint(it, phase, metrics, rng)
        world.barrier()
        return path

    def _write_checkpoint(self, it: int, phase: str, metrics: dict[str, float],
                          rng_ranks: list[dict[str, Any]] | None) -> None:
        cfg = self.cfg
        save_checkpoint(
            self.run_dir, it, self.G, self.D, config=config_to_dict(cfg),
            config_digest=self.digest, data_hash=self.data_hash, metrics=metrics,
            perceptual_backend=self.backend, extra={"phase": phase, "elapsed": self.elapsed},
        )
        save_resume(self.run_dir, {
            "iteration": it,
            "config_hash": self.digest,
            "data_hash": self.data_hash,
            "optimizers": {k: o.state_dict() for k, o in self.opt.items()},
            "scaler": self.scaler.state_dict() if self.scaler.is_enabled() else {},
            "rng": capture_rng_state(),
            **({"rng_ranks": rng_ranks} if rng_ranks else {}),
            "world_size": self.world.size,
            "sampler": {"seed": cfg.seed, "consumed": self.consumed, "batch_size": cfg.batch_size},
            "elapsed": self.elapsed,
            "perceptual_backend": self.backend,
        })

    # ----------------------------------------------------------------------- the loop
    def run(self, max_iterations: int | None = None, progress: bool = False,
            sigterm: threading.Event | None = None) -> TrainResult:
        """Train up to ``max_iterations`` (default: the config's total); see :func:`train`."""
        cfg, run_dir = self.cfg, self.run_dir
        start = self.start
        total = cfg.total_iterations
        stop = total if max_iterations is None else min(total, int(max_iterations))
        eval_every = cfg.eval_every or cfg.checkpoint_every
        last_ckpt = checkpoint_dir(run_dir, start) if self.state is not None else None
        last_stats: dict[str, Any] = {}
        metrics: dict[str, float] = {}
        if start >= stop:
            return TrainResult(run_dir, start, last_ckpt, last_stats, metrics, self.backend)
        n = len(self.dataset)  # type: ignore[arg-type]
        self._distribute()
        world = self.world
        loader = DataLoader(
            self.dataset,
            batch_sampler=RankBatches(
                ResumableBatchSampler(n, cfg.batch_size, cfg.seed, start=self.consumed), world),
            num_workers=cfg.num_workers,
            pin_memory=self.dev.type == "cuda",
            generator=torch.Generator().manual_seed(cfg.seed),  # worker seeds: private, seeded
        )
        self._batches = iter(loader)
        sums: dict[str, torch.Tensor] = {}
        count = 0
        bar = tqdm(total=stop, initial=start, disable=not (progress and world.is_main),
                   desc="deblender", unit="it")
        self._t0 = time.perf_counter()
        it = start
        try:
            while it < stop:
                lr = cfg.lr_at(it)
                losses = (self.burn_in_step() if it < cfg.burn_in
                          else self.adversarial_step(lr, iteration=it))
                for k, v in losses.items():
                    sums[k] = sums.get(k, 0.0) + v.detach().float()
                count += 1
                it += 1
                bar.update(1)
                evaluated = self.eval_dataset is not None and (it % eval_every == 0 or it == stop)
                if evaluated and world.is_main:
                    metrics = evaluate(
                        self.G, self.eval_dataset, limit=cfg.eval_size,
                        batch_size=max(cfg.batch_size, 32), device=self.dev,
                    )
                terminated = world.any(sigterm is not None and sigterm.is_set(), self.dev)
                checkpoint_now = it % cfg.checkpoint_every == 0 or it == stop or terminated
                if it % cfg.log_every == 0 or evaluated or checkpoint_now:
                    last_stats = self.log(it, lr, sums, count, metrics if evaluated else None)
                    sums, count = {}, 0
                    if progress:
                        bar.set_postfix({k: f"{v:.4g}" for k, v in last_stats.items()
                                         if k.startswith("loss_")})
                if checkpoint_now:
                    last_ckpt = self.checkpoint(it, metrics if evaluated else {})
                if terminated:
                    raise TrainingTerminated(
                        f"training in {run_dir} stopped by SIGTERM at iteration {it}, after "
                        f"writing checkpoint {last_ckpt} and {RESUME_FILE}; run the same command "
                        "again to continue"
                    )
        finally:
            bar.close()
        return TrainResult(run_dir, it, last_ckpt, last_stats, metrics, self.backend)

    def _distribute(self) -> None:
        """Wrap G and D separately in DistributedDataParallel (once; nothing on one process).

        Both wrappers broadcast rank 0's weights (and buffers) at construction, but not buffers at
        each forward: the BatchNorm running statistics are synchronised already (the same global
        statistics on every rank).
        """
        if not self.world.distributed or self.G_step is not self.G:
            return
        from torch.nn.parallel import DistributedDataParallel as DDP

        ids = [self.dev.index] if self.dev.type == "cuda" else None
        self.G_step = DDP(self.G, device_ids=ids, forward_sync_buffers=False)
        self.D_step = DDP(self.D, device_ids=ids, forward_sync_buffers=False)
