"""Exceptions raised for bad user input; the CLI turns them into clear messages."""


class MsMetaError(Exception):
    """Base class of the errors ms-meta raises for bad input or unusable files."""


class WorkloadSpecError(MsMetaError, ValueError):
    """A workload name or spec string that cannot be parsed."""


class TargetError(MsMetaError, ValueError):
    """A target that cannot be parsed or is not supported."""


class WeightsError(MsMetaError):
    """Model weights that are missing, corrupt or incompatible with this build."""


class DatabaseError(MsMetaError):
    """A tuning database that is missing, malformed or inconsistent."""


def first_line(err: BaseException) -> str:
    """The first line of an exception's message (TVM errors carry long tracebacks), or its type
    name when the message is empty."""
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__
