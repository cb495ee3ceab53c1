"""Atomic file writes: a reader never sees a half-written file.

Every writer in galaxai (checkpoints, sidecars, catalogues, reports) goes through these helpers so
that a process killed mid-write leaves either the old file or the new one, never a torn one.
"""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any, Callable

__all__ = [
    "atomic_write",
    "atomic_write_bytes",
    "atomic_write_text",
    "atomic_write_json",
    "atomic_write_safetensors",
    "remove_stale_temporaries",
]


def atomic_write(path: str | os.PathLike, write: Callable[[Path], None]) -> Path:
    """Call ``write(tmp_path)`` on a temporary file beside ``path``, then rename it into place.

    Parameters
    ----------
    path : path-like
        Final destination. Its parent directory is created if missing.
    write : callable
        Receives the temporary path and must write the complete file there.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        write(tmp_path)
        # mkstemp creates 0600 files; give the result the permissions a plain open() would.
        os.chmod(tmp_path, 0o666 & ~_umask())
        with open(tmp_path, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp_path, path)
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise
    return path


def remove_stale_temporaries(folder: str | os.PathLike) -> list[Path]:
    """Delete the temporary files that interrupted :func:`atomic_write` calls left in ``folder``.

    Only call this while no other process writes there (e.g. under a run directory's lock): a
    live writer's temporary file looks the same. Subfolders are not searched.

    Returns
    -------
    list of pathlib.Path
        The files removed.
    """
    folder = Path(folder)
    stale = sorted(folder.glob(".*.tmp")) if folder.is_dir() else []
    for tmp in stale:
        tmp.unlink(missing_ok=True)
    return stale


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically."""
    return atomic_write(path, lambda tmp: tmp.write_bytes(data))


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """Write UTF-8 ``text`` to ``path`` atomically."""
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike, obj: Any) -> Path:
    """Write ``obj`` as indented JSON to ``path`` atomically."""
    return atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


def atomic_write_safetensors(path: str | os.PathLike, weights: Any,
                             metadata: dict[str, str] | None = None) -> Path:
    """Write a ``torch.nn.Module``'s state dict (or a dict of tensors) as safetensors, atomically.

    Tensors are detached, moved to the CPU and made contiguous first. ``metadata`` goes into the
    file header (strings only).
    """
    from safetensors.torch import save_file  # imported here: keeps this module free of torch

    tensors = weights.state_dict() if hasattr(weights, "state_dict") else weights
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in tensors.items()}
    return atomic_write(path, lambda tmp: save_file(tensors, str(tmp), metadata=metadata))

