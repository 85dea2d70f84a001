"""Convert TVM FFI containers and scalars into plain Python (for JSON and keys)."""

from __future__ import annotations

from typing import Any

__all__ = [
    "to_plain",
]


def to_plain(obj: Any) -> Any:
    """Recursively turn Array/Map/IntImm/FloatImm/String into list/dict/int/float/str."""
    if obj is None:
        return None
    # FFI strings and numbers subclass the builtins; return the builtins themselves so that
    # the result pickles/serializes anywhere (e.g. torch.load(weights_only=True)).
    if isinstance(obj, bool):
        return bool(obj)
    if isinstance(obj, int):
        return int(obj)
    if isinstance(obj, float):
        return float(obj)
    if isinstance(obj, str):
        return str(obj)
    if hasattr(obj, "items") and callable(obj.items):
        return {str(to_plain(k)): to_plain(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple) or type(obj).__name__ in ("Array", "List"):
        return [to_plain(v) for v in obj]
    if hasattr(obj, "value") and type(obj).__name__ in ("IntImm", "FloatImm", "StringImm"):
        return obj.value
    if type(obj).__name__ in ("String",):
        return str(obj)
    return str(obj)
