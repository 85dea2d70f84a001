"""Names a package exports but imports on first use.

TVM takes seconds to import, and the learnable core (``ms_meta.model.gnn``) must stay
importable without it, so the packages that wrap TVM export their names lazily: the module
that defines a name is imported when the name is first read. One helper for every package,
so each ``__init__`` lists only its names.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["lazy_exports"]


def lazy_exports(
    package: str, exports: Mapping[str, str], namespace: dict[str, Any]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """Module-level ``__getattr__`` and ``__dir__`` for ``package``.

    Parameters
    ----------
    package : str
        The package's ``__name__``.
    exports : mapping of str to str
        Public name -> the module that defines it, relative to ``package`` (``"builder"``) or
        absolute (``"ms_meta.store"``). A module exported under its own name (value equal to
        the key, absolute) is returned itself.
    namespace : dict
        The package's ``globals()``: a name read once is cached there.

    Returns
    -------
    (__getattr__, __dir__)
    """

    def __getattr__(name: str) -> Any:
        module = exports.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        full = module if module.startswith("ms_meta") else f"{package}.{module}"
        imported = importlib.import_module(full)
        value = imported if full.rsplit(".", 1)[-1] == name else getattr(imported, name)
        namespace[name] = value
        return value

    def __dir__() -> list[str]:
        return sorted([*namespace, *exports])

    return __getattr__, __dir__
