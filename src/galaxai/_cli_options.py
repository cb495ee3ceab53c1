"""Option parsers shared by the ``galaxai`` command modules (import-light: click only)."""
from __future__ import annotations

from typing import Any, Callable

import click

__all__ = ["comma_list", "self_ensemble_option"]

#: ``--self-ensemble/--no-self-ensemble`` of the commands that run the deblender (``None`` when
#: left out: :func:`galaxai.deblend` then follows the model's sidecar).
self_ensemble_option = click.option(
    "--self-ensemble/--no-self-ensemble", default=None,
    help="Average the GAN over the eight rotations and mirror images of each stamp "
         "(default: as the model's sidecar says; on for the shipped default).")


def comma_list(kind: str, convert: Callable[[str], Any]) -> Callable[..., list | None]:
    """A click callback parsing ``"a,b,c"`` into ``[convert("a"), ...]``.

    A value ``convert`` cannot read (``ValueError``) or an empty list is a ``BadParameter`` naming
    ``kind`` (plural, e.g. ``"seeds"``); an option left out (``None``) stays ``None``.
    """
    def parse(ctx: click.Context, param: click.Parameter, value: str | None) -> list | None:
        if value is None:
            return None
        try:
            items = [convert(v.strip()) for v in value.split(",") if v.strip()]
        except ValueError:
            raise click.BadParameter(f"{value!r} is not a comma-separated list of {kind}") from None
        if not items:
            raise click.BadParameter(f"give at least one {kind[:-1]}")
        return items
    return parse
