"""The run-folder lock: one training process per run directory."""
from __future__ import annotations

import multiprocessing as mp
import os
import socket

import pytest

from galaxai.train.runlock import RunLockedError, run_lock


def _hold(run, ready, release):
    with run_lock(run):
        ready.set()
        release.wait(30)


def _try(run, queue):
    try:
        with run_lock(run):
            queue.put("acquired")
    except RunLockedError as exc:
        queue.put(str(exc))


def test_second_process_is_refused_naming_the_holder_and_lock_is_released(tmp_path):
    ctx = mp.get_context("spawn")
    ready, release, queue = ctx.Event(), ctx.Event(), ctx.Queue()
    holder = ctx.Process(target=_hold, args=(tmp_path, ready, release))
    holder.start()
    try:
        assert ready.wait(60)
        contender = ctx.Process(target=_try, args=(tmp_path, queue))
        contender.start()
        contender.join(60)
        message = queue.get(timeout=10)
        assert f"PID {holder.pid}" in message and socket.gethostname() in message
        assert str(tmp_path) in message and "--run" in message and "wait" in message
    finally:
        release.set()
        holder.join(60)
    # the holder has exited: the folder can be locked again
    with run_lock(tmp_path):
        assert f"PID {os.getpid()}" in (tmp_path / "train.lock").read_text()


def test_lock_is_released_when_the_body_raises(tmp_path):
    with pytest.raises(RuntimeError, match="boom"):
        with run_lock(tmp_path):
            raise RuntimeError("boom")
    with run_lock(tmp_path):
        pass
