"""Options and helpers shared by the ms-meta commands (defined once, as in pip-tools)."""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from ms_meta.errors import MsMetaError

target_option = click.option(
    "--target",
    "target_json",
    default=None,
    metavar="JSON",
    help='Target as a JSON dict, e.g. \'{"kind": "llvm", "mcpu": "rocketlake", "num-cores": 2}\'. '
    "Default: this machine's CPU.",
)

work_dir_option = click.option(
    "--work-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Where MetaSchedule writes its database and logs. Default: a new temporary directory.",
)

seed_option = click.option("--seed", type=int, default=0, show_default=True, help="Random seed.")


def none_or(value: str | None) -> str | None:
    """``None`` for the word ``none`` (any case) or no value, else the value: how the
    PATH|default|none options (``--weights``, ``--library``, ``--one-shot-library``) say "none"."""
    return None if value is None or value.lower() == "none" else value


def library_errors(func: Callable[..., Any]) -> Callable[..., Any]:
    """Turn ms-meta's own errors into a one-line message and exit code 1 (no traceback)."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except MsMetaError as err:
            raise click.ClickException(str(err)) from None

    return wrapper


def quiet_meta_schedule() -> None:
    """MetaSchedule prints INFO tables to stdout; keep the terminal for our own output."""
    logging.getLogger("tvm.s_tir.meta_schedule").setLevel(logging.WARNING)
