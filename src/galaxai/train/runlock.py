"""An exclusive lock on a run directory, so that two trainers never write one run.

The lock is an advisory ``fcntl.flock`` on ``run/train.lock``; the file holds the PID and host of
the process that holds it, so a refused process can say who is training. The operating system
releases the lock when the holder exits, however it exits, so a killed run never leaves a stale
lock behind (the file stays, with the last holder's details, and is simply locked again).
"""
from __future__ import annotations

import contextlib
import fcntl
import os
import socket
from pathlib import Path
from typing import Iterator

__all__ = ["LOCK_FILE", "RunLockedError", "run_lock"]

LOCK_FILE = "train.lock"


class RunLockedError(RuntimeError):
    """Another process holds the run directory's lock; the message names it and the fix."""


@contextlib.contextmanager
def run_lock(run_dir: str | os.PathLike) -> Iterator[Path]:
    """Hold an exclusive lock on ``run_dir`` (created if missing) for the ``with`` block.

    Parameters
    ----------
    run_dir : path-like
        The run directory; the lock file is ``run_dir/train.lock``.

    Yields
    ------
    pathlib.Path
        The lock file.

    Raises
    ------
    RunLockedError
        If another process (or another open of the lock in this one) holds it; the message names
        the holder's PID and host.
    """
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / LOCK_FILE
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 256, 0).decode("utf-8", "replace").strip() or "unknown process"
            raise RunLockedError(
                f"{run_dir} is being trained by another process ({holder}); wait for it to "
                "finish, or choose another run directory (--run)"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"PID {os.getpid()} on host {socket.gethostname()}\n".encode(), 0)
        yield path
    finally:
        os.close(fd)  # closing the descriptor releases the lock
