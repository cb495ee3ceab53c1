"""galaxai.app: a local browser app over runs, images and relevance maps (``galaxai app RUN``).

A FastAPI server (:mod:`.server`) over a functional core (:mod:`.engine`; :mod:`.units` for the
Units view's GAN Dissection) that uses the library's own deblending, verdicts, attribution
methods, dissection and colour maps, and a front end of a few no-build ES modules and CSS in
``static/`` (no CDN, web fonts or analytics: it works offline). Only runs and image sets
registered at start-up (:mod:`.registry`) are served, by id. Needs the ``app`` extra
(``pip install 'galaxai[app]'``).
"""
from __future__ import annotations

from pathlib import Path

__all__ = ["create_app", "serve", "default_cache_dir"]


def default_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/galaxai/app`` (``~/.cache/galaxai/app``): relevance maps, unit tables."""
    import os

    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "galaxai" / "app"


def create_app(runs, stores=(), cache_dir=None):
    """Register ``runs`` (training run folders) and ``stores`` and build the FastAPI app."""
    from galaxai.app.registry import Registry
    from galaxai.app.server import create_app as make

    return make(Registry(runs, stores), cache_dir or default_cache_dir())


def serve(app, host: str = "127.0.0.1", port: int = 8765) -> None:
    """Run ``app`` with uvicorn until interrupted (bound to the loopback interface by default)."""
    import uvicorn

    uvicorn.run(app, host=host, port=port, log_level="warning")
