"""Type stubs of the native module `mehr._native` (the Rust core). Import from `mehr`."""

from __future__ import annotations

import asyncio
import os
from types import TracebackType
from typing import Any, AsyncIterator, Awaitable, Callable, Dict, Iterator, List, Literal, Optional, Sequence, Type, Union, final

from mehr.serving import Service

__version__: str

#: What calls accept as bytes: `str` is sent as UTF-8; buffers (memoryview, arrays) are copied.
Payload = Union[bytes, bytearray, memoryview, str]
#: An id given as lowercase hex or as raw bytes.
Id = Union[str, bytes]
PathLike = Union[str, "os.PathLike[str]"]
#: Which known path a message leaves by (`None`: the one Reticulum's rules keep).
RoutePolicy = Literal["cheapest", "fastest", "balanced"]

@final
class ApiEndpoint:
    """One place where the daemon serves its API."""

    @property
    def kind(self) -> str:
        """`unix` or `tcp`."""
    @property
    def address(self) -> str:
        """A socket path or `host:port`."""
    @property
    def tls(self) -> bool: ...
    @property
    def requires_token(self) -> bool: ...

@final
class NodeInfo:
    """The node: identity, version, participation level and API endpoints."""

    @property
    def node_id(self) -> str:
        """The identity hash (16 bytes) in hex."""
    @property
    def x25519_public_key(self) -> bytes: ...
    @property
    def ed25519_public_key(self) -> bytes: ...
    @property
    def version(self) -> str: ...
    @property
    def participation_level(self) -> str:
        """`l0_transport`, `l1_relay` or `l2_full`."""
    @property
    def uptime_seconds(self) -> int: ...
    @property
    def data_dir(self) -> str: ...
    @property
    def api_endpoints(self) -> List[ApiEndpoint]: ...
    @property
    def started_at_unix_ms(self) -> int: ...

@final
class Neighbour:
    """A Mehr node one hop away."""

    @property
    def node_id(self) -> str: ...
    @property
    def destination(self) -> str: ...
    @property
    def interface_id(self) -> int: ...
    @property
    def last_heard_seconds(self) -> int: ...

@final
class FunctionInfo:
    """A function the node offers."""

    @property
    def function_id(self) -> str: ...
    @property
    def function_hash(self) -> str:
        """Blake3 of the id, in hex: what the marketplace advertises."""
    @property
    def kind(self) -> str:
        """`wasm` or `served`."""
    @property
    def description(self) -> str: ...
    @property
    def price_per_invocation_umhr(self) -> Optional[int]:
        """Flat price per call in μMHR (served functions)."""
    @property
    def price_per_million_fuel_umhr(self) -> Optional[int]:
        """Price per million fuel in μMHR (WASM functions)."""
    @property
    def max_concurrency(self) -> int: ...
    @property
    def max_input_bytes(self) -> int: ...
    @property
    def in_flight(self) -> int: ...
    @property
    def queued(self) -> int: ...
    @property
    def module_id(self) -> Optional[str]: ...
    @property
    def available_since_unix_ms(self) -> int: ...

@final
class Metering:
    """Who ran a call and what it used."""

    @property
    def kind(self) -> str: ...
    @property
    def provider_node_id(self) -> str: ...
    @property
    def fuel_used(self) -> int: ...
    @property
    def duration_us(self) -> int: ...

@final
class ProviderResult:
    """One provider's part in a call that ran on the mesh."""

    @property
    def node_id(self) -> str: ...
    @property
    def agreement_id(self) -> Optional[str]: ...
    @property
    def output_hash(self) -> Optional[str]: ...
    @property
    def outcome(self) -> str:
        """`agreed`, `dissented`, `missing` or `unsettled`."""
    @property
    def error(self) -> Optional[str]: ...

@final
class RemoteCall:
    """How a call ran on the mesh: the providers asked and what this node was charged."""

    @property
    def providers(self) -> List[ProviderResult]: ...
    @property
    def output_hash(self) -> str: ...
    @property
    def audited(self) -> bool: ...
    @property
    def escalated(self) -> bool: ...
    @property
    def charged_umhr(self) -> int: ...

@final
class Offer:
    """A provider found by `discover`."""

    @property
    def node_id(self) -> str: ...
    @property
    def unit_price_umhr(self) -> Optional[int]: ...
    @property
    def ring(self) -> int: ...
    @property
    def hops(self) -> int: ...
    @property
    def path_cost_umhr(self) -> int: ...
    @property
    def reputation(self) -> int:
        """0–10000."""
    @property
    def load(self) -> Optional[int]:
        """0 idle – 255 saturated, when the provider said."""

@final
class Balance:
    """This node's money, μMHR."""

    @property
    def genesis_umhr(self) -> int: ...
    @property
    def settled_umhr(self) -> int: ...
    @property
    def escrowed_umhr(self) -> int: ...
    @property
    def free_umhr(self) -> int: ...
    @property
    def in_channels_umhr(self) -> int: ...
    @property
    def committed_umhr(self) -> int: ...

@final
class Channel:
    """A payment channel with another Mehr node, at its latest co-signed state (μMHR)."""

    @property
    def channel_id(self) -> str: ...
    @property
    def peer(self) -> str: ...
    @property
    def role(self) -> str:
        """`opener` or `acceptor`."""
    @property
    def phase(self) -> str:
        """`open`, `disputing` or `closed`."""
    @property
    def seq(self) -> int: ...
    @property
    def balance_umhr(self) -> int: ...
    @property
    def peer_balance_umhr(self) -> int: ...
    @property
    def deposit_umhr(self) -> int: ...
    @property
    def paid_umhr(self) -> int: ...
    @property
    def received_umhr(self) -> int: ...
    @property
    def owed_umhr(self) -> int: ...

@final
class Shard:
    """One shard of a placed object."""

    @property
    def index(self) -> int: ...
    @property
    def root(self) -> str: ...
    @property
    def length(self) -> int: ...
    @property
    def provider(self) -> str: ...
    @property
    def health(self) -> str:
        """`healthy`, `suspect` or `lost`."""
    @property
    def challenges_passed(self) -> int: ...
    @property
    def challenges_failed(self) -> int: ...
    @property
    def owed_umhr(self) -> int: ...
    @property
    def paid_umhr(self) -> int: ...

@final
class Placement:
    """Where an object is placed: its erasure code and one shard per provider."""

    @property
    def data_shards(self) -> int: ...
    @property
    def parity_shards(self) -> int: ...
    @property
    def expires_at_unix_s(self) -> int: ...
    @property
    def shards(self) -> List[Shard]: ...
    @property
    def spare_providers(self) -> List[str]: ...

@final
class ChallengeResult:
    """The outcome of challenging one shard."""

    @property
    def index(self) -> int: ...
    @property
    def provider(self) -> str: ...
    @property
    def passed(self) -> bool: ...
    @property
    def detail(self) -> Optional[str]: ...
    @property
    def health(self) -> str: ...

@final
class InvokeResult:
    """A function's output; `bytes(result)` is the output."""

    @property
    def output(self) -> bytes: ...
    @property
    def metering(self) -> Optional[Metering]: ...
    @property
    def remote(self) -> Optional[RemoteCall]:
        """For a call that ran on the mesh: the providers and the charge."""
    def text(self) -> str:
        """The output decoded as UTF-8."""
    def json(self) -> Any:
        """The output parsed as JSON."""
    def __bytes__(self) -> bytes: ...

@final
class DeployedModule:
    """A deployed WebAssembly module."""

    @property
    def module_id(self) -> str: ...
    @property
    def name(self) -> Optional[str]: ...
    @property
    def function_ids(self) -> List[str]: ...
    @property
    def created(self) -> bool: ...

@final
class ObjectInfo:
    """A stored object."""

    @property
    def id(self) -> str:
        """The object id (32 bytes) in hex."""
    @property
    def length(self) -> int: ...
    @property
    def chunk_count(self) -> int: ...
    @property
    def created_at_unix_ms(self) -> int: ...
    @property
    def name(self) -> Optional[str]: ...

@final
class PutResult:
    """The result of a put."""

    @property
    def object(self) -> ObjectInfo: ...
    @property
    def already_stored(self) -> bool:
        """True when the node had these bytes already (nothing new was stored)."""

@final
class ObjectPage:
    """One page of the object list."""

    @property
    def objects(self) -> List[ObjectInfo]: ...
    @property
    def next_page_token(self) -> Optional[str]: ...

@final
class SendResult:
    """The outcome of a send."""

    @property
    def method(self) -> str:
        """`packet` or `link`."""
    @property
    def delivered(self) -> bool: ...
    @property
    def rtt_ms(self) -> Optional[int]: ...
    @property
    def packet_hash(self) -> Optional[str]: ...
    @property
    def next_hop(self) -> Optional[str]:
        """The next hop it left through, in hex (when a path was known)."""
    @property
    def hops(self) -> Optional[int]: ...
    @property
    def cost_per_byte(self) -> Optional[float]:
        """That way's relay fees from here, μMHR per byte (Mehr nodes' destinations only)."""

@final
class Message:
    """A message that arrived for a listened destination; `bytes(message)` is the payload."""

    @property
    def payload(self) -> bytes: ...
    @property
    def link_id(self) -> Optional[str]:
        """For messages that came over a link: its id in hex, for `reply`."""
    @property
    def interface_id(self) -> Optional[int]: ...
    def __bytes__(self) -> bytes: ...

@final
class Subscription:
    """Messages for a listened destination: iterate with `for` or `async for`."""

    @property
    def destination(self) -> str:
        """The destination hash in hex: give it to senders."""
    def close(self) -> None: ...
    def __iter__(self) -> Iterator[Message]: ...
    def __next__(self) -> Message: ...
    def __aiter__(self) -> AsyncIterator[Message]: ...
    def __anext__(self) -> Awaitable[Message]: ...
    def __enter__(self) -> Subscription: ...
    def __exit__(self, kind: Optional[Type[BaseException]], value: Optional[BaseException], tb: Optional[TracebackType]) -> bool: ...
    def __aenter__(self) -> Awaitable[Subscription]: ...
    def __aexit__(self, kind: Optional[Type[BaseException]], value: Optional[BaseException], tb: Optional[TracebackType]) -> Awaitable[bool]: ...

@final
class OutputStream:
    """A streamed invocation's output: `bytes` chunks; `metering` once read to the end."""

    @property
    def metering(self) -> Optional[Metering]: ...
    def close(self) -> None: ...
    def __iter__(self) -> Iterator[bytes]: ...
    def __next__(self) -> bytes: ...
    def __aiter__(self) -> AsyncIterator[bytes]: ...
    def __anext__(self) -> Awaitable[bytes]: ...
    def __enter__(self) -> OutputStream: ...
    def __exit__(self, kind: Optional[Type[BaseException]], value: Optional[BaseException], tb: Optional[TracebackType]) -> bool: ...
    def __aenter__(self) -> Awaitable[OutputStream]: ...
    def __aexit__(self, kind: Optional[Type[BaseException]], value: Optional[BaseException], tb: Optional[TracebackType]) -> Awaitable[bool]: ...

@final
class Call:
    """The context of one invocation, for handlers that take a `call` parameter (batched
    handlers: a `calls` parameter, one per input)."""

    @property
    def invocation_id(self) -> int: ...
    @property
    def function_id(self) -> str: ...
    @property
    def remaining(self) -> float:
        """Seconds left until the caller's deadline."""
    @property
    def cancelled(self) -> bool:
        """True once the call was withdrawn (deadline, caller gone, serving stopped)."""
    def send(self, data: Payload) -> None:
        """Sends a partial output (blocking; sync handlers). Raises `mehr.Cancelled` once the
        call is over, `mehr.FailedPrecondition` for a call of a batch (which cannot stream)."""
    def send_async(self, data: Payload) -> Awaitable[None]:
        """Sends a partial output (async handlers)."""

@final
class Serving:
    """Functions being served from this process."""

    @property
    def functions(self) -> List[str]: ...
    @property
    def done(self) -> bool: ...
    @property
    def connected(self) -> bool:
        """True while the functions are registered with the daemon."""
    @property
    def reconnects(self) -> int:
        """How many times serving registered again after the daemon went away."""
    def batch_stats(self) -> Dict[str, Dict[str, int]]:
        """For each batched function: batches run, calls in them, the largest batch, calls
        withdrawn (deadline, caller gone) while they waited for their batch, and calls refused
        because `max_queue` calls were waiting (`batches`, `calls`, `largest`,
        `withdrawn_while_queued`, `rejected_queue_full`)."""
    def wait(self, timeout: Optional[float] = None) -> bool:
        """Blocks until serving ends (True) or `timeout` passes (False); raises the error that
        ended it. Ctrl-C stops cleanly, then raises KeyboardInterrupt."""
    def stop(self) -> None:
        """Unregisters the functions, lets running calls finish, and waits until done."""
    def shutdown(self) -> None:
        """Begins stopping; returns at once."""
    def wait_async(self) -> Awaitable[None]: ...
    def stop_async(self) -> Awaitable[None]: ...
    def __enter__(self) -> Serving: ...
    def __exit__(self, kind: Optional[Type[BaseException]], value: Optional[BaseException], tb: Optional[TracebackType]) -> bool: ...
    def __aenter__(self) -> Awaitable[Serving]: ...
    def __aexit__(self, kind: Optional[Type[BaseException]], value: Optional[BaseException], tb: Optional[TracebackType]) -> Awaitable[None]: ...

@final
class Client:
    """A connection to a daemon whose calls block (the GIL released while waiting)."""

    @staticmethod
    def connect(
        endpoint: Optional[str] = None,
        *,
        data_dir: Optional[PathLike] = None,
        token: Optional[str] = None,
        ca_cert: Optional[PathLike] = None,
        tls_domain: Optional[str] = None,
        connect_timeout: Optional[float] = None,
    ) -> Client:
        """Connects: no arguments means `MEHR_*` variables where set, else the local
        daemon's Unix socket. `endpoint` is `unix:/path`, `host:port`, `http://host:port`
        or `https://host:port`; TCP needs the token (given, or read from `data_dir`)."""
    @property
    def target(self) -> str: ...
    def info(self) -> NodeInfo: ...
    def neighbours(self) -> List[Neighbour]: ...
    def discover(
        self, function: Optional[str] = None, *, kind: Optional[str] = None, max_price: Optional[int] = None, want: int = 1
    ) -> List[Offer]:
        """Providers of `function` (or of `kind`: "storage", "relay", …), nearest ring first."""
    def balance(self) -> Balance: ...
    def channels(self) -> List[Channel]: ...
    def replicate(
        self, object_id: Union[str, bytes], providers: Optional[Sequence[Union[str, bytes]]] = None, *,
        data_shards: Optional[int] = None, parity_shards: Optional[int] = None, duration: Optional[float] = None,
        price_umhr: int = 0, request_id: Optional[Union[str, bytes]] = None,
    ) -> Placement:
        """Places a stored object on providers, erasure coded (none given: the marketplace finds them).
        A retry with the same `request_id` answers with the placement the first call made."""
    def challenge(self, object_id: Union[str, bytes], *, timeout: Optional[float] = None) -> List[ChallengeResult]:
        """Challenges every shard now. With `timeout` (seconds) a provider still silent then is
        reported as not passed but not counted against its health."""
    def open_channel(
        self,
        peer: Union[str, bytes],
        deposit_umhr: int,
        *,
        peer_deposit_umhr: int = 0,
        timeout: Optional[float] = None,
        request_id: Optional[Union[str, bytes]] = None,
    ) -> Channel:
        """Opens a channel; the same `request_id` on a retry converges on the same channel."""
    def pay(
        self,
        peer: Union[str, bytes],
        amount_umhr: int,
        *,
        timeout: Optional[float] = None,
        request_id: Optional[Union[str, bytes]] = None,
    ) -> Channel:
        """Pays a peer through the open channel (the payee gets 98 %); a repeated `request_id`
        moves nothing and answers with the first payment."""
    def functions(self) -> List[FunctionInfo]: ...
    def invoke(
        self, function_id: str, input: Optional[Payload] = None, *, timeout: Optional[float] = None, max_fuel: Optional[int] = None,
        placement: str = "auto", tier: Optional[str] = None, max_price: Optional[int] = None,
    ) -> InvokeResult: ...
    def invoke_stream(
        self, function_id: str, input: Optional[Payload] = None, *, timeout: Optional[float] = None, max_fuel: Optional[int] = None,
        placement: str = "auto", tier: Optional[str] = None, max_price: Optional[int] = None,
    ) -> OutputStream: ...
    def deploy_module(self, wasm: Payload, *, name: Optional[str] = None) -> DeployedModule: ...
    def remove_module(self, module: str) -> List[str]: ...
    def listen(self, name: str, *, announce: bool = False) -> Subscription: ...
    def send(self, destination: Id, payload: Payload, *, timeout: Optional[float] = None, policy: Optional[RoutePolicy] = None) -> SendResult: ...
    def reply(self, link_id: Id, payload: Payload) -> str: ...
    def put(self, data: Payload, *, name: Optional[str] = None) -> PutResult: ...
    def put_file(self, path: PathLike, *, name: Optional[str] = None) -> PutResult: ...
    def get(self, object_id: Id, *, offset: int = 0, length: Optional[int] = None) -> bytes: ...
    def get_to_file(self, object_id: Id, path: PathLike, *, offset: int = 0, length: Optional[int] = None) -> int: ...
    def stat(self, object_id: Id) -> ObjectInfo: ...
    def list_objects(
        self, *, page_size: int = 0, page_token: Optional[str] = None, order: str = "created", placed: bool = False
    ) -> ObjectPage:
        """One page of the objects stored on the node, or with `placed=True` of those it placed on
        providers (always by id)."""
    def delete(self, object_id: Id) -> ObjectInfo: ...
    def serve(self, *items: Union[Callable[..., Any], Service, object], reconnect: bool = True) -> Serving:
        """Serves marked functions, objects with marked methods, or services (see `mehr.Service`)."""
    def _serve(
        self,
        functions: Sequence[Any],
        dispatcher: Any,
        event_loop: Optional[asyncio.AbstractEventLoop],
        reconnect: bool,
        on_finish: Optional[Callable[[], None]],
    ) -> Serving: ...

@final
class AsyncClient:
    """A connection to a daemon whose calls are awaitables of the running event loop."""

    @staticmethod
    def connect(
        endpoint: Optional[str] = None,
        *,
        data_dir: Optional[PathLike] = None,
        token: Optional[str] = None,
        ca_cert: Optional[PathLike] = None,
        tls_domain: Optional[str] = None,
        connect_timeout: Optional[float] = None,
    ) -> Awaitable[AsyncClient]: ...
    @property
    def target(self) -> str: ...
    def info(self) -> Awaitable[NodeInfo]: ...
    def neighbours(self) -> Awaitable[List[Neighbour]]: ...
    def discover(
        self, function: Optional[str] = None, *, kind: Optional[str] = None, max_price: Optional[int] = None, want: int = 1
    ) -> Awaitable[List[Offer]]: ...
    def balance(self) -> Awaitable[Balance]: ...
    def channels(self) -> Awaitable[List[Channel]]: ...
    def replicate(
        self, object_id: Union[str, bytes], providers: Optional[Sequence[Union[str, bytes]]] = None, *,
        data_shards: Optional[int] = None, parity_shards: Optional[int] = None, duration: Optional[float] = None,
        price_umhr: int = 0, request_id: Optional[Union[str, bytes]] = None,
    ) -> Awaitable[Placement]: ...
    def challenge(
        self, object_id: Union[str, bytes], *, timeout: Optional[float] = None
    ) -> Awaitable[List[ChallengeResult]]: ...
    def open_channel(
        self,
        peer: Union[str, bytes],
        deposit_umhr: int,
        *,
        peer_deposit_umhr: int = 0,
        timeout: Optional[float] = None,
        request_id: Optional[Union[str, bytes]] = None,
    ) -> Awaitable[Channel]: ...
    def pay(
        self,
        peer: Union[str, bytes],
        amount_umhr: int,
        *,
        timeout: Optional[float] = None,
        request_id: Optional[Union[str, bytes]] = None,
    ) -> Awaitable[Channel]: ...
    def functions(self) -> Awaitable[List[FunctionInfo]]: ...
    def invoke(
        self, function_id: str, input: Optional[Payload] = None, *, timeout: Optional[float] = None, max_fuel: Optional[int] = None,
        placement: str = "auto", tier: Optional[str] = None, max_price: Optional[int] = None,
    ) -> Awaitable[InvokeResult]: ...
    def invoke_stream(
        self, function_id: str, input: Optional[Payload] = None, *, timeout: Optional[float] = None, max_fuel: Optional[int] = None,
        placement: str = "auto", tier: Optional[str] = None, max_price: Optional[int] = None,
    ) -> Awaitable[OutputStream]: ...
    def deploy_module(self, wasm: Payload, *, name: Optional[str] = None) -> Awaitable[DeployedModule]: ...
    def remove_module(self, module: str) -> Awaitable[List[str]]: ...
    def listen(self, name: str, *, announce: bool = False) -> Awaitable[Subscription]: ...
    def send(self, destination: Id, payload: Payload, *, timeout: Optional[float] = None, policy: Optional[RoutePolicy] = None) -> Awaitable[SendResult]: ...
    def reply(self, link_id: Id, payload: Payload) -> Awaitable[str]: ...
    def put(self, data: Payload, *, name: Optional[str] = None) -> Awaitable[PutResult]: ...
    def put_file(self, path: PathLike, *, name: Optional[str] = None) -> Awaitable[PutResult]: ...
    def get(self, object_id: Id, *, offset: int = 0, length: Optional[int] = None) -> Awaitable[bytes]: ...
    def get_to_file(self, object_id: Id, path: PathLike, *, offset: int = 0, length: Optional[int] = None) -> Awaitable[int]: ...
    def stat(self, object_id: Id) -> Awaitable[ObjectInfo]: ...
    def list_objects(
        self, *, page_size: int = 0, page_token: Optional[str] = None, order: str = "created", placed: bool = False
    ) -> Awaitable[ObjectPage]: ...
    def delete(self, object_id: Id) -> Awaitable[ObjectInfo]: ...
    def serve(self, *items: Union[Callable[..., Any], Service, object], reconnect: bool = True) -> Awaitable[Serving]:
        """Serves on the running loop (async handlers run on it)."""
    def _serve(
        self,
        functions: Sequence[Any],
        dispatcher: Any,
        event_loop: Optional[asyncio.AbstractEventLoop],
        reconnect: bool,
        on_finish: Optional[Callable[[], None]],
    ) -> Awaitable[Serving]: ...
