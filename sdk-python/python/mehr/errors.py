"""Errors: every failure of a call is a :class:`MehrError` carrying the gRPC status code.

The daemon answers each failed call with a gRPC status; the SDK raises the subclass named
after its code (``NOT_FOUND`` → :class:`NotFound`, …), so callers catch what they can handle::

    try:
        client.invoke("embed", b"text")
    except mehr.NotFound:
        ...  # nobody serves `embed` here
    except mehr.MehrError as error:
        print(error.code.name, error.message)

Errors from the daemon also carry its stable :attr:`MehrError.reason` (``OBJECT_NOT_FOUND``,
``FUNCTION_BUSY``, …; docs/API.md lists them), which programs branch on rather than on the
message, and :attr:`MehrError.retry_delay` where the daemon says a retry may succeed::

    except mehr.ResourceExhausted as error:
        if error.reason == "FUNCTION_BUSY":
            time.sleep(error.retry_delay or 1.0)

Failures on this side map to the code gRPC itself would use: a daemon that cannot be reached
is :class:`Unavailable`, a malformed endpoint or id :class:`InvalidArgument`, an unreadable
token file :class:`Unauthenticated`. Some classes also derive from the matching built-in
exception (:class:`InvalidArgument` is a :class:`ValueError`, :class:`DeadlineExceeded` a
:class:`TimeoutError`, …) so generic handlers keep working.
"""

from __future__ import annotations

import enum
from typing import Dict, Mapping, Optional, Type

__all__ = [
    "StatusCode",
    "MehrError",
    "Cancelled",
    "Unknown",
    "InvalidArgument",
    "DeadlineExceeded",
    "NotFound",
    "AlreadyExists",
    "PermissionDenied",
    "ResourceExhausted",
    "FailedPrecondition",
    "Aborted",
    "OutOfRange",
    "Unimplemented",
    "Internal",
    "Unavailable",
    "DataLoss",
    "Unauthenticated",
]


class StatusCode(enum.IntEnum):
    """The gRPC status codes, with their numeric values."""

    OK = 0
    CANCELLED = 1
    UNKNOWN = 2
    INVALID_ARGUMENT = 3
    DEADLINE_EXCEEDED = 4
    NOT_FOUND = 5
    ALREADY_EXISTS = 6
    PERMISSION_DENIED = 7
    RESOURCE_EXHAUSTED = 8
    FAILED_PRECONDITION = 9
    ABORTED = 10
    OUT_OF_RANGE = 11
    UNIMPLEMENTED = 12
    INTERNAL = 13
    UNAVAILABLE = 14
    DATA_LOSS = 15
    UNAUTHENTICATED = 16


class MehrError(Exception):
    """A failed call: :attr:`code` is the gRPC status code, :attr:`message` says what failed,
    :attr:`reason` why, as a stable name a program can act on.

    ``str(error)`` is ``"CODE: message"``, as grpcurl and the ``mehr`` CLI print it.
    """

    #: The code of this class; instances may carry another one only on :class:`MehrError`.
    default_code: StatusCode = StatusCode.UNKNOWN

    code: StatusCode
    message: str
    #: The daemon's ``ErrorInfo.reason`` (``OBJECT_NOT_FOUND``, …); None for failures on this
    #: side and for daemons that send none.
    reason: Optional[str]
    #: The ``ErrorInfo.domain`` of :attr:`reason` (``"mehr.v1"``).
    domain: Optional[str]
    #: The ``ErrorInfo.metadata``: facts for programs (``function_id``, ``id``, ``field``, …).
    metadata: Dict[str, str]
    #: Seconds to wait before retrying, where the daemon says a retry may succeed.
    retry_delay: Optional[float]

    def __init__(
        self,
        message: str,
        code: StatusCode | int | None = None,
        reason: Optional[str] = None,
        domain: Optional[str] = None,
        metadata: Optional[Mapping[str, str]] = None,
        retry_delay: Optional[float] = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code = StatusCode(self.default_code if code is None else code)
        self.reason = reason
        self.domain = domain
        self.metadata = dict(metadata or {})
        self.retry_delay = retry_delay

    def __str__(self) -> str:
        return f"{self.code.name}: {self.message}"

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.message!r})"

    def __reduce__(self):  # type: ignore[no-untyped-def]
        # Exceptions cross process boundaries (multiprocessing, concurrent.futures).
        return (
            type(self),
            (self.message, int(self.code), self.reason, self.domain, self.metadata, self.retry_delay),
        )


class Cancelled(MehrError):
    """The call was cancelled (by the caller, or because serving stopped)."""

    default_code = StatusCode.CANCELLED


class Unknown(MehrError):
    """An error without a more precise code."""

    default_code = StatusCode.UNKNOWN


class InvalidArgument(MehrError, ValueError):
    """An argument is invalid; the message names the field and why."""

    default_code = StatusCode.INVALID_ARGUMENT


class DeadlineExceeded(MehrError, TimeoutError):
    """The call's deadline passed before it completed."""

    default_code = StatusCode.DEADLINE_EXCEEDED


class NotFound(MehrError, LookupError):
    """What the call names (a function, an object) does not exist."""

    default_code = StatusCode.NOT_FOUND


class AlreadyExists(MehrError):
    """What the call creates exists already (for example a function id served twice)."""

    default_code = StatusCode.ALREADY_EXISTS


class PermissionDenied(MehrError, PermissionError):
    """The caller may not do this."""

    default_code = StatusCode.PERMISSION_DENIED


class ResourceExhausted(MehrError):
    """A quota or limit is reached (queue full, output too large, disk full)."""

    default_code = StatusCode.RESOURCE_EXHAUSTED


class FailedPrecondition(MehrError):
    """The system is not in the state the call needs (for example: used after ``fork()``)."""

    default_code = StatusCode.FAILED_PRECONDITION


class Aborted(MehrError):
    """The operation was aborted; for an invocation, the function itself failed."""

    default_code = StatusCode.ABORTED


class OutOfRange(MehrError):
    """A value is outside the valid range."""

    default_code = StatusCode.OUT_OF_RANGE


class Unimplemented(MehrError):
    """The daemon does not implement this call (an older daemon)."""

    default_code = StatusCode.UNIMPLEMENTED


class Internal(MehrError):
    """An internal error in the daemon or the SDK."""

    default_code = StatusCode.INTERNAL


class Unavailable(MehrError, ConnectionError):
    """The daemon, or the node providing a function, cannot be reached now."""

    default_code = StatusCode.UNAVAILABLE


class DataLoss(MehrError):
    """Stored data is damaged."""

    default_code = StatusCode.DATA_LOSS


class Unauthenticated(MehrError, PermissionError):
    """The call carries no valid credentials (API token)."""

    default_code = StatusCode.UNAUTHENTICATED


_BY_CODE: Dict[int, Type[MehrError]] = {
    cls.default_code: cls
    for cls in (
        Cancelled,
        Unknown,
        InvalidArgument,
        DeadlineExceeded,
        NotFound,
        AlreadyExists,
        PermissionDenied,
        ResourceExhausted,
        FailedPrecondition,
        Aborted,
        OutOfRange,
        Unimplemented,
        Internal,
        Unavailable,
        DataLoss,
        Unauthenticated,
    )
}


def error_for(
    code: int,
    message: str,
    reason: Optional[str] = None,
    domain: Optional[str] = None,
    metadata: Optional[Mapping[str, str]] = None,
    retry_delay: Optional[float] = None,
) -> MehrError:
    """The exception for a status ``code`` (an unknown code gives :class:`MehrError`), with
    the daemon's error details when it sent them."""
    details = (reason, domain, metadata, retry_delay)
    cls = _BY_CODE.get(code)
    if cls is None:
        known = code in StatusCode._value2member_map_
        return MehrError(message, code if known else StatusCode.UNKNOWN, *details)
    return cls(message, None, *details)
