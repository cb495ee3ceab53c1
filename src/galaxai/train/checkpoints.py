"""Checkpoints of the deblender: safetensors weights, JSON sidecars and resume state.

Layout inside a run directory (``specs/ecosystem.md``)::

    run/checkpoints/000001000/  G.safetensors  D.safetensors  checkpoint.json
    run/resume.pt

The safetensors header of each weights file repeats the iteration, the config hash and the model
config, so a lone ``G.safetensors`` stays identifiable and loadable. ``checkpoint.json`` holds the
run config, iteration, data hash, code version, metrics and the perceptual backend.
``checkpoint.json`` is written last, so a directory without it is incomplete and ignored.

``resume.pt`` holds optimiser, RNG and sampler states as plain containers (dicts, lists, tensors,
numbers, strings), written with ``torch.save`` and read with ``weights_only=True``; the network
weights of a resume point are read from the checkpoint it names. Weights are only ever read from
safetensors: no user-supplied file is unpickled. Every write is atomic (:mod:`galaxai._atomic`).
"""
from __future__ import annotations

import json
import os
import random
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch
from safetensors import SafetensorError, safe_open
from torch import nn

import galaxai
from galaxai._atomic import atomic_write, atomic_write_json, atomic_write_safetensors, atomic_write_text
from galaxai.config import config_from_mapping, config_to_dict
from galaxai.models.deblender import (
    DeblenderConfig,
    DeblenderGenerator,
    Discriminator,
    build_discriminator,
    build_generator,
    config_hash,
)

__all__ = [
    "CheckpointRef",
    "RESUME_FILE",
    "checkpoint_dir",
    "save_checkpoint",
    "list_checkpoints",
    "latest_checkpoint",
    "read_checkpoint_info",
    "lineage",
    "SHIPPED_WEIGHTS",
    "shipped_models",
    "shipped_file",
    "init_source",
    "read_safetensors",
    "load_state",
    "load_generator",
    "load_discriminator",
    "export_generator",
    "export_network",
    "save_resume",
    "load_resume",
    "rewrite_stats",
    "capture_rng_state",
    "restore_rng_state",
]

RESUME_FILE = "resume.pt"
_SIDECAR = "checkpoint.json"
_DIR_RE = re.compile(r"^\d{9}$")
_RESUME_FORMAT = "galaxai-resume-v1"


@dataclass(frozen=True)
class CheckpointRef:
    """A complete checkpoint directory of a run and its iteration."""

    iteration: int
    path: Path


def checkpoint_dir(run_dir: str | os.PathLike, iteration: int) -> Path:
    """``run_dir/checkpoints/<iteration zero-padded to 9 digits>``."""
    return Path(run_dir) / "checkpoints" / f"{int(iteration):09d}"


def save_checkpoint(
    run_dir: str | os.PathLike,
    iteration: int,
    generator: DeblenderGenerator,
    discriminator: Discriminator,
    *,
    config: Mapping[str, Any] | None = None,
    config_digest: str = "",
    data_hash: str | None = None,
    metrics: Mapping[str, Any] | None = None,
    perceptual_backend: str | None = None,
    extra: Mapping[str, Any] | None = None,
) -> Path:
    """Write ``G.safetensors``, ``D.safetensors`` and then ``checkpoint.json`` for ``iteration``.

    Parameters
    ----------
    run_dir : path-like
        Run directory; the checkpoint goes to :func:`checkpoint_dir`.
    iteration : int
        Completed training iterations (burn-in included).
    generator, discriminator : nn.Module
        The networks; their ``config`` attribute (a :class:`DeblenderConfig`) is recorded.
    config : mapping, optional
        The resolved training config (TOML-safe dict).
    config_digest : str
        Hash of the training config, repeated in the safetensors headers.
    data_hash : str, optional
        Fingerprint of the training data.
    metrics : mapping, optional
        Held-out metrics at this iteration.
    perceptual_backend : str, optional
        Which burn-in feature extractor was used (``vgg19``, ``multiscale`` or ``pixel``).
    extra : mapping, optional
        More sidecar entries.

    Returns
    -------
    pathlib.Path
        The checkpoint directory.
    """
    out = checkpoint_dir(run_dir, iteration)
    out.mkdir(parents=True, exist_ok=True)
    model_cfg = generator.config
    model_cfg_json = json.dumps(config_to_dict(model_cfg), sort_keys=True)
    for name, net in (("G", generator), ("D", discriminator)):
        meta = {
            "format": "pt",
            "galaxai_network": name,
            "galaxai_version": galaxai.__version__,
            "iteration": str(int(iteration)),
            "config_hash": config_digest,
            "model_config": model_cfg_json,
            "model_config_hash": config_hash(model_cfg),
        }
        atomic_write_safetensors(out / f"{name}.safetensors", net, meta)
    sidecar = {
        "iteration": int(iteration),
        "config": dict(config or {}),
        "config_hash": config_digest,
        "model_config": config_to_dict(model_cfg),
        "model_config_hash": config_hash(model_cfg),
        "data_hash": data_hash,
        "code_version": galaxai.__version__,
        "torch_version": torch.__version__,
        "metrics": dict(metrics or {}),
        "perceptual_backend": perceptual_backend,
        **dict(extra or {}),
    }
    atomic_write_json(out / _SIDECAR, sidecar)
    return out


def list_checkpoints(run_dir: str | os.PathLike) -> list[CheckpointRef]:
    """All complete checkpoints of a run, sorted by iteration (empty if there are none)."""
    root = Path(run_dir) / "checkpoints"
    if not root.is_dir():
        return []
    refs = [
        CheckpointRef(int(p.name), p)
        for p in root.iterdir()
        if _DIR_RE.match(p.name) and (p / _SIDECAR).is_file()
    ]
    return sorted(refs, key=lambda r: r.iteration)


def latest_checkpoint(run_dir: str | os.PathLike) -> CheckpointRef | None:
    """The checkpoint with the highest iteration, or ``None``."""
    refs = list_checkpoints(run_dir)
    return refs[-1] if refs else None


def read_checkpoint_info(path: str | os.PathLike) -> dict[str, Any]:
    """Read the JSON sidecar of a checkpoint directory (or a ``.json`` sidecar file)."""
    path = Path(path)
    file = path / _SIDECAR if path.is_dir() else path
    if not file.is_file():
        raise FileNotFoundError(
            f"checkpoint sidecar {file} does not exist; the checkpoint is incomplete or the path "
            "is not a galaxai checkpoint directory"
        )
    try:
        return json.loads(file.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ValueError(f"checkpoint sidecar {file} is not valid JSON: {exc}") from None


def read_safetensors(path: str | os.PathLike) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Read all tensors and the string metadata of a safetensors file, with clear errors.

    Raises
    ------
    FileNotFoundError
        If the file does not exist.
    ValueError
        If the file is truncated or not a safetensors file.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"weights file {path} does not exist")
    try:
        with safe_open(str(path), framework="pt", device="cpu") as fh:
            metadata = dict(fh.metadata() or {})
            tensors = {k: fh.get_tensor(k) for k in fh.keys()}
    except (SafetensorError, OSError, RuntimeError, ValueError) as exc:
        raise ValueError(
            f"weights file {path} is truncated or not a valid safetensors file ({exc}); copy it "
            "again or use another checkpoint"
        ) from None
    return tensors, metadata


def load_state(module: nn.Module, path: str | os.PathLike) -> dict[str, str]:
    """Load a safetensors file into ``module`` after checking names and shapes.

    Returns
    -------
    dict
        The file's metadata.

    Raises
    ------
    ValueError
        If the file belongs to another architecture; the message names the mismatching tensors.
    """
    tensors, metadata = read_safetensors(path)
    expected = module.state_dict()
    missing = sorted(set(expected) - set(tensors))
    unexpected = sorted(set(tensors) - set(expected))
    wrong = [
        f"{k}: file {tuple(tensors[k].shape)} vs model {tuple(expected[k].shape)}"
        for k in expected
        if k in tensors and tensors[k].shape != expected[k].shape
    ]
    if missing or unexpected or wrong:
        parts = []
        for label, items in (("missing", missing), ("unexpected", unexpected), ("shape mismatch", wrong)):
            if items:
                shown = ", ".join(items[:8]) + (f" (+{len(items) - 8} more)" if len(items) > 8 else "")
                parts.append(f"{label}: {shown}")
        hint = metadata.get("model_config", "unknown")
        raise ValueError(
            f"weights file {path} does not fit this {type(module).__name__} (another architecture); "
            + "; ".join(parts)
            + f". The file was written for model config {hint}"
        )
    module.load_state_dict(tensors)
    return metadata


def _model_config(weights: Path, sidecar: Path | None) -> tuple[DeblenderConfig, dict[str, Any]]:
    info: dict[str, Any] = {}
    if sidecar is not None and sidecar.is_file():
        info = read_checkpoint_info(sidecar)
    values = info.get("model_config")
    if values is None:
        metadata = _read_metadata(weights)
        if "model_config" not in metadata:
            raise ValueError(
                f"{weights} has no model config in its header and no sidecar JSON beside it; it "
                "was not written by galaxai"
            )
        values = json.loads(metadata["model_config"])
    return config_from_mapping(DeblenderConfig, values, source=f"model_config of {weights}"), info


def _read_metadata(path: Path) -> dict[str, str]:
    if not path.is_file():
        raise FileNotFoundError(f"weights file {path} does not exist")
    try:
        with safe_open(str(path), framework="pt", device="cpu") as fh:
            return dict(fh.metadata() or {})
    except (SafetensorError, OSError, RuntimeError, ValueError) as exc:
        raise ValueError(
            f"weights file {path} is truncated or not a valid safetensors file ({exc})"
        ) from None


def _resolve(path: str | os.PathLike, network: str) -> tuple[Path, Path | None]:
    path = Path(path)
    if path.is_dir():
        return path / f"{network}.safetensors", path / _SIDECAR
    if not path.exists():
        raise FileNotFoundError(
            f"checkpoint {path} does not exist (expected a checkpoint directory or a .safetensors file)"
        )
    beside = path.parent / _SIDECAR
    same_stem = path.with_suffix(".json")
    return path, same_stem if same_stem.is_file() else (beside if beside.is_file() else None)


def load_generator(
    path: str | os.PathLike, device: str | torch.device | None = None
) -> tuple[DeblenderGenerator, dict[str, Any]]:
    """Build a generator from a checkpoint and load its weights; returned in eval mode.

    Parameters
    ----------
    path : path-like
        A checkpoint directory, its ``G.safetensors``, or an exported ``<name>.safetensors`` with
        ``<name>.json`` beside it.
    device : str or torch.device, optional
        Where to put the network (CPU by default).

    Returns
    -------
    (DeblenderGenerator, dict)
        The network and the sidecar contents (empty if there is none).
    """
    weights, sidecar = _resolve(path, "G")
    cfg, info = _model_config(weights, sidecar)
    model = build_generator(cfg)
    load_state(model, weights)
    return model.to(device or "cpu").eval(), info


def load_discriminator(
    path: str | os.PathLike, device: str | torch.device | None = None
) -> tuple[Discriminator, dict[str, Any]]:
    """Like :func:`load_generator`, for ``D.safetensors``."""
    weights, sidecar = _resolve(path, "D")
    cfg, info = _model_config(weights, sidecar)
    model = build_discriminator(cfg)
    load_state(model, weights)
    return model.to(device or "cpu").eval(), info


#: Folder of the models shipped in the package (``deblender_<name>`` / ``discriminator_<name>``).
SHIPPED_WEIGHTS = Path(galaxai.__file__).resolve().parent / "weights"


def shipped_models() -> list[str]:
    """Names of the models shipped in the package: ``checkpoint=<name>`` selects one
    (``galaxai.api.DEFAULT_MODEL`` is the default; the README says how each was trained and
    measured)."""
    return sorted(p.stem.removeprefix("deblender_")
                  for p in SHIPPED_WEIGHTS.glob("deblender_*.safetensors"))


def shipped_file(name: Any, network: str, suffix: str = ".safetensors") -> Path | None:
    """The shipped file of ``network`` (``"deblender"`` or ``"discriminator"``) of the model
    ``name``, or ``None`` when ``name`` is no shipped model or is an existing path (a local folder
    wins over a shipped name)."""
    if not isinstance(name, str) or name not in shipped_models() or Path(name).exists():
        return None
    return SHIPPED_WEIGHTS / f"{network}_{name}{suffix}"


def init_source(init_from: str) -> str:
    """``GANTrainConfig.init_from`` with its older alias resolved: ``"shipped"`` is ``"small"``."""
    return "small" if init_from == "shipped" else init_from


#: File in a run directory describing the training data (written by ``galaxai train``); exports
#: copy it into the shipped sidecar as ``data_recipe``.
DATA_RECIPE = "data.json"


def export_network(checkpoint: str | os.PathLike, dest: str | os.PathLike, network: str = "G",
                   inference: Mapping[str, Any] | None = None) -> Path:
    """Copy a checkpoint's ``G`` or ``D`` to ``<dest>.safetensors`` plus its sidecar ``<dest>.json``.

    This is how the shipped models (``galaxai/weights/deblender_<name>`` and
    ``discriminator_<name>``) are produced. The run's ``data.json`` (how its training data were
    made), when present, goes into the sidecar as ``data_recipe``. ``inference`` (generator
    only) records how the model is meant to be run, e.g. ``{"self_ensemble": True}``, which
    :func:`galaxai.deblend` follows by default. Returns the weights' path.
    """
    if network not in ("G", "D"):
        raise ValueError(f"network must be 'G' or 'D', got {network!r}")
    if inference and network != "G":
        raise ValueError("inference settings belong to the generator (network='G')")
    weights, sidecar = _resolve(checkpoint, network)
    tensors, metadata = read_safetensors(weights)
    cfg, info = _model_config(weights, sidecar)
    build = build_generator if network == "G" else build_discriminator
    load_state(build(cfg), weights)  # validate before shipping
    dest = Path(dest)
    out = dest.with_suffix(".safetensors")
    atomic_write_safetensors(out, tensors, metadata)
    sidecar_out = {**info, "model_config": config_to_dict(cfg)}
    if inference:
        sidecar_out["inference"] = dict(inference)
    if Path(checkpoint).is_dir():
        stages = lineage(checkpoint)
        if stages[0]["data_recipe"] is not None:
            sidecar_out["data_recipe"] = stages[0]["data_recipe"]
        if len(stages) > 1:
            sidecar_out["lineage"] = stages[1:]
    atomic_write_json(dest.with_suffix(".json"), sidecar_out)
    return out


#: Most ``init_from`` stages :func:`lineage` follows (a guard against cycles).
_MAX_STAGES = 16


def _stage(source: str | os.PathLike) -> dict[str, Any]:
    """One training stage: a checkpoint directory's (or a shipped model's) iteration,
    settings and data recipe, from its sidecar and its run's ``data.json``."""
    shipped = shipped_file(init_source(str(source)), "deblender", ".json")
    sidecar = shipped or Path(source) / _SIDECAR
    if not sidecar.is_file():
        raise FileNotFoundError(f"{sidecar} does not exist")
    info = json.loads(sidecar.read_text())
    recipe = info.get("data_recipe")
    run_recipe = None if shipped else Path(source).resolve().parents[1] / DATA_RECIPE
    if recipe is None and run_recipe is not None and run_recipe.is_file():
        recipe = json.loads(run_recipe.read_text())
    stage = {"checkpoint": str(source), "iteration": info.get("iteration"),
             "config": info.get("config"), "data_recipe": recipe}
    return {**stage, **({"lineage": info["lineage"]} if "lineage" in info else {})}


def lineage(checkpoint: str | os.PathLike) -> list[dict[str, Any]]:
    """The training stages behind a checkpoint directory, newest first.

    Each stage holds its ``checkpoint``, ``iteration``, ``config`` (with the ``init_from`` it
    started from) and ``data_recipe``. The next stage is the one its ``init_from`` names: a
    checkpoint directory (a relative path is read from the current directory, where the run was
    started) or a shipped model's name (its sidecar; ``"shipped"`` is ``small``). A stage whose sidecar holds a
    ``lineage`` of its own (an exported model) ends the walk with it; one that cannot be read ends
    it with ``{"checkpoint": ..., "unresolved": reason}``. :func:`export_network` writes the
    stages before the exported one into the shipped sidecar, so a model fine-tuned in several
    runs records how every run was made.
    """
    stages = [_stage(checkpoint)]
    while len(stages) < _MAX_STAGES and "lineage" not in stages[-1]:
        source = (stages[-1]["config"] or {}).get("init_from")
        if source is None:
            break
        try:
            stages.append(_stage(source))
        except (FileNotFoundError, json.JSONDecodeError) as exc:
            stages.append({"checkpoint": str(source), "unresolved": str(exc)})
            break
    return stages


def export_generator(checkpoint: str | os.PathLike, dest: str | os.PathLike) -> Path:
    """:func:`export_network` of the generator (kept for the default-model recipe)."""
    return export_network(checkpoint, dest, "G")


def capture_rng_state() -> dict[str, Any]:
    """The torch (CPU and CUDA), NumPy and Python global RNG states as plain containers."""
    np_state = np.random.get_state(legacy=False)
    py_version, py_state, py_gauss = random.getstate()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": {
            "bit_generator": np_state["bit_generator"],
            "key": [int(v) for v in np_state["state"]["key"]],
            "pos": int(np_state["state"]["pos"]),
            "has_gauss": int(np_state["has_gauss"]),
            "gauss": float(np_state["gauss"]),
        },
        "python": [py_version, list(py_state), py_gauss],
    }


def restore_rng_state(state: Mapping[str, Any]) -> None:
    """Restore the states captured by :func:`capture_rng_state`."""
    torch.set_rng_state(state["torch"])
    if state.get("cuda") and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    npst = state["numpy"]
    np.random.set_state(
        {
            "bit_generator": npst["bit_generator"],
            "state": {"key": np.asarray(npst["key"], dtype=np.uint32), "pos": npst["pos"]},
            "has_gauss": npst["has_gauss"],
            "gauss": npst["gauss"],
        }
    )
    version, py_state, gauss = state["python"]
    random.setstate((version, tuple(py_state), gauss))


def save_resume(run_dir: str | os.PathLike, state: Mapping[str, Any]) -> Path:
    """Write ``run_dir/resume.pt`` atomically (plain containers only)."""
    payload = {"format": _RESUME_FORMAT, **state}
    return atomic_write(Path(run_dir) / RESUME_FILE, lambda tmp: torch.save(payload, tmp))


def rewrite_stats(path: str | os.PathLike, up_to: int) -> None:
    """Drop ``stats.jsonl`` lines after iteration ``up_to`` (and a torn last line) when a run
    resumes; the file is rewritten atomically."""
    path = Path(path)
    if not path.is_file():
        return
    keep = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            if json.loads(line).get("iteration", 0) <= up_to:
                keep.append(line)
        except json.JSONDecodeError:
            continue
    atomic_write_text(path, "".join(line + "\n" for line in keep))


def load_resume(run_dir: str | os.PathLike) -> dict[str, Any] | None:
    """Read ``run_dir/resume.pt`` with ``weights_only=True``; ``None`` if there is none.

    Raises
    ------
    ValueError
        If the file is corrupt, holds anything but plain containers, or is not a galaxai resume file.
    """
    path = Path(run_dir) / RESUME_FILE
    if not path.is_file():
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any failure means the file is unusable
        raise ValueError(
            f"resume file {path} cannot be read safely ({exc}); restore it from a backup, "
            "or start over in a new run directory"
        ) from None
    if not isinstance(state, dict) or state.get("format") != _RESUME_FORMAT:
        raise ValueError(f"{path} is not a galaxai resume file (format {_RESUME_FORMAT})")
    return state
