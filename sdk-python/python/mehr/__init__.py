"""The Mehr SDK for Python: serve functions to the Mehr network and use it.

Connect to the local daemon (its Unix socket, found like the ``mehr`` CLI finds it), or to
one elsewhere with an endpoint and token::

    import mehr

    client = mehr.connect()                       # or mehr.connect("10.0.0.5:7440", token=...)
    print(client.info().node_id)
    print(client.invoke("upper", b"hello").output)

    @mehr.function("upper", max_concurrency=8)
    def upper(text: str) -> str:
        return text.upper()

    mehr.run(upper)                               # serve until Ctrl-C

    @mehr.function("embed", batch=mehr.Batch(max_size=64, max_wait=0.002))
    def embed(texts: list[str]) -> list:          # concurrent calls merged into one list
        return model.encode(texts).tolist()

Every call has an awaitable twin on :class:`AsyncClient` (``await mehr.connect_async()``).
Failures raise :class:`MehrError` subclasses named after the gRPC status code
(:class:`NotFound`, :class:`InvalidArgument`, …) carrying ``.code`` and ``.message``.

The SDK's connections live on threads of the process that made them: after ``fork()`` the
child must connect again (objects from the parent raise :class:`FailedPrecondition`).
"""

from __future__ import annotations

from pkgutil import extend_path
from typing import Any, Optional, Union
import os

# Python code generated from the daemon's proto files lives in the package `mehr.v1`; keeping
# `mehr` extensible lets such generated modules sit on sys.path next to the SDK.
__path__ = extend_path(__path__, __name__)

from mehr._native import (  # noqa: E402
    ApiEndpoint,
    AsyncClient,
    Call,
    Client,
    DeployedModule,
    FunctionInfo,
    InvokeResult,
    Message,
    Metering,
    Neighbour,
    NodeInfo,
    ObjectInfo,
    Offer,
    Balance,
    Channel,
    Placement,
    Shard,
    ChallengeResult,
    ObjectPage,
    OutputStream,
    ProviderResult,
    PutResult,
    RemoteCall,
    SendResult,
    Serving,
    Subscription,
    __version__,
)
from mehr.errors import (  # noqa: E402
    Aborted,
    AlreadyExists,
    Cancelled,
    DataLoss,
    DeadlineExceeded,
    FailedPrecondition,
    Internal,
    InvalidArgument,
    MehrError,
    NotFound,
    OutOfRange,
    PermissionDenied,
    ResourceExhausted,
    StatusCode,
    Unauthenticated,
    Unavailable,
    Unimplemented,
    Unknown,
)
from mehr.serving import Batch, FunctionSpec, Service, function  # noqa: E402

__all__ = [
    "__version__",
    # connecting
    "connect",
    "connect_async",
    "Client",
    "AsyncClient",
    # serving
    "function",
    "Batch",
    "FunctionSpec",
    "Service",
    "Serving",
    "Call",
    "serve",
    "run",
    # results
    "NodeInfo",
    "ApiEndpoint",
    "FunctionInfo",
    "InvokeResult",
    "Metering",
    "RemoteCall",
    "ProviderResult",
    "OutputStream",
    "DeployedModule",
    "ObjectInfo",
    "PutResult",
    "ObjectPage",
    "SendResult",
    "Message",
    "Subscription",
    "Neighbour",
    "Offer",
    "Balance",
    "Channel",
    "Placement",
    "Shard",
    "ChallengeResult",
    # errors
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

_PathLike = Union[str, "os.PathLike[str]"]


def connect(
    endpoint: Optional[str] = None,
    *,
    data_dir: Optional[_PathLike] = None,
    token: Optional[str] = None,
    ca_cert: Optional[_PathLike] = None,
    tls_domain: Optional[str] = None,
    connect_timeout: Optional[float] = None,
) -> Client:
    """Connects to a daemon; see :meth:`Client.connect`."""
    return Client.connect(
        endpoint,
        data_dir=data_dir,
        token=token,
        ca_cert=ca_cert,
        tls_domain=tls_domain,
        connect_timeout=connect_timeout,
    )


async def connect_async(
    endpoint: Optional[str] = None,
    *,
    data_dir: Optional[_PathLike] = None,
    token: Optional[str] = None,
    ca_cert: Optional[_PathLike] = None,
    tls_domain: Optional[str] = None,
    connect_timeout: Optional[float] = None,
) -> AsyncClient:
    """Connects to a daemon from async code; see :meth:`Client.connect`."""
    return await AsyncClient.connect(
        endpoint,
        data_dir=data_dir,
        token=token,
        ca_cert=ca_cert,
        tls_domain=tls_domain,
        connect_timeout=connect_timeout,
    )


def serve(*items: Any, client: Optional[Client] = None, reconnect: bool = True) -> Serving:
    """Serves functions in the background (see :class:`Service`); returns the :class:`Serving`."""
    return Service(*items).serve(client, reconnect)


def run(*items: Any, client: Optional[Client] = None, reconnect: bool = True) -> None:
    """Serves functions until Ctrl-C, then unregisters them cleanly (see :meth:`Service.run`)."""
    Service(*items).run(client, reconnect)
