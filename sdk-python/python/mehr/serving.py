"""Serving functions from Python.

Mark functions with :func:`function` and serve them::

    import mehr

    @mehr.function("upper", description="Upper-cases text", max_concurrency=8)
    def upper(text: str) -> str:
        return text.upper()

    mehr.run(upper)  # registers with the local daemon, serves until Ctrl-C

or group them in a class whose state (a loaded model) is built once::

    class Embedder:
        def __init__(self) -> None:
            self.model = load_model()

        @mehr.function("embed", max_concurrency=2)
        def embed(self, texts: list) -> list:
            return self.model.encode(texts).tolist()

    with mehr.connect().serve(Embedder()) as serving:
        serving.wait()

Handlers may be plain functions, ``async def`` coroutines, or (async) generators whose
yields are streamed to the caller as partial outputs. The input is ``bytes`` unless the first
parameter is annotated ``str`` (UTF-8) or ``dict``/``list`` (JSON); the return value may be
``bytes``, ``str``, ``None`` or anything JSON can encode. A handler that also takes a ``call``
parameter receives the :class:`mehr.Call` (deadline, cancellation, streaming sends).

A handler that raises fails only its call: the caller gets :class:`mehr.Aborted` with
``"<ExceptionType>: <message>"``, the traceback goes to the ``mehr.serving`` logger, and
serving goes on.

Dynamic batching (``batch=mehr.Batch(max_size=64, max_wait=0.002)``): the handler takes a
list of inputs and returns a list of outputs, one per input, in order. Calls that arrive
within ``max_wait`` seconds of each other (up to ``max_size``) are merged into one handler
call, so a model runs one forward pass for many callers::

    class Embedder:
        @mehr.function("embed", batch=mehr.Batch(max_size=64, max_wait=0.002))
        def embed(self, requests: List[dict]) -> list:
            texts = [r["text"] for r in requests]
            return [{"embedding": v} for v in self.model.encode(texts).tolist()]

Each caller keeps its own deadline, cancellation, metering and error: an input that cannot be
decoded, or an output that is an exception instance, fails only that call; a handler that
raises fails every call of its batch. ``max_concurrency`` counts batches running at once (keep
1 for a model on one GPU); the SDK registers enough calls in flight with the daemon for the
batches to fill.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import logging
import threading
import types
import typing
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Dict, List, Optional, Tuple, TypeVar, Union, overload

if TYPE_CHECKING:
    from mehr._native import AsyncClient, Call, Client, Serving

__all__ = ["Batch", "FunctionSpec", "Service", "function"]

_log = logging.getLogger("mehr.serving")

#: The attribute :func:`function` puts on a marked function.
_MARK = "__mehr_function__"
#: The daemon's limit on descriptions, in bytes.
_MAX_DESCRIPTION_BYTES = 1024

F = TypeVar("F", bound=Callable[..., Any])


#: The daemon's limit on one function's calls in flight, and so on a batch's size.
_MAX_CALLS_IN_FLIGHT = 1024
#: The longest wait a batch may have (the callers' deadlines would pass first).
_MAX_BATCH_WAIT = 10.0
#: The largest queue of calls waiting for a batch.
_MAX_BATCH_QUEUE = 65536


@dataclass(frozen=True)
class Batch:
    """Dynamic batching of a function: concurrent calls merged into one handler call.

    A batch opens with its first call and closes when it holds ``max_size`` calls or
    ``max_wait`` seconds have passed; it then runs as soon as one of the function's
    ``max_concurrency`` handler slots is free, and calls arriving while it waits for a slot
    still join it (up to ``max_size``). ``max_wait=0`` takes the calls queued at that moment.

    A function holds at most ``max_size x max_concurrency`` running calls plus ``max_queue``
    waiting ones (the batch being formed and the next ones while every handler slot is busy;
    running batches smaller than ``max_size`` leave their room to waiting calls). The SDK
    registers that many calls in flight with the daemon (at most 1024), whose own bounded
    queue holds the rest and answers :class:`mehr.ResourceExhausted` when it is full too; a
    call beyond it that reaches the SDK anyway fails with :class:`mehr.Aborted` ("the batch
    queue of `f` is full ...").
    """

    #: The most calls in one handler call (1 to 1024).
    max_size: int = 32
    #: Seconds a batch waits for more calls after its first one (0 to 10).
    max_wait: float = 0.002
    #: The most calls waiting for a batch to run (``max_size`` to 65536); None: ``max_size``,
    #: room for one full batch to be ready when a handler slot frees.
    max_queue: Optional[int] = None

    def __post_init__(self) -> None:
        size = self.max_size
        if not isinstance(size, int) or isinstance(size, bool) or not 1 <= size <= _MAX_CALLS_IN_FLIGHT:
            raise ValueError(f"Batch.max_size must be an int from 1 to {_MAX_CALLS_IN_FLIGHT}, got {size!r}")
        wait = self.max_wait
        if isinstance(wait, bool) or not isinstance(wait, (int, float)) or not 0 <= wait <= _MAX_BATCH_WAIT:
            raise ValueError(f"Batch.max_wait must be 0 to {_MAX_BATCH_WAIT:g} seconds, got {wait!r}")
        queue = self.max_queue
        if queue is not None and (
            not isinstance(queue, int) or isinstance(queue, bool) or not size <= queue <= _MAX_BATCH_QUEUE
        ):
            raise ValueError(
                f"Batch.max_queue must be an int from max_size ({size}) to {_MAX_BATCH_QUEUE}, got {queue!r}"
            )


@dataclass(frozen=True)
class FunctionSpec:
    """How a function is offered: its id and the terms callers see."""

    #: The id callers use (1 to 128 letters, digits, ``.``, ``_``, ``-``); None: the
    #: function's name.
    id: Optional[str] = None
    #: What it does (at most 1024 bytes); None: the first paragraph of the docstring.
    description: Optional[str] = None
    #: Price per call, in μMHR.
    price_umhr: int = 0
    #: Calls handled at once (batches, for a batched function); the daemon queues the rest.
    #: A handler that holds a GPU: 1 runs one call (or batch) on the device at a time;
    #: 2 lets one call's input preparation overlap another's compute.
    max_concurrency: int = 1
    #: Largest input accepted, in bytes; 0: the node's maximum.
    max_input_bytes: int = 0
    #: Dynamic batching: the handler takes a list of inputs and returns a list of outputs.
    batch: Optional[Batch] = None


@overload
def function(id: F, /) -> F: ...


@overload
def function(
    id: Optional[str] = None,
    /,
    *,
    description: Optional[str] = None,
    price_umhr: int = 0,
    max_concurrency: int = 1,
    max_input_bytes: int = 0,
    batch: Optional[Batch] = None,
) -> Callable[[F], F]: ...


def function(
    id: Union[str, Callable[..., Any], None] = None,
    /,
    *,
    description: Optional[str] = None,
    price_umhr: int = 0,
    max_concurrency: int = 1,
    max_input_bytes: int = 0,
    batch: Optional[Batch] = None,
) -> Any:
    """Marks a function or method to be served as a Mehr function.

    Use it bare (``@mehr.function``: the id is the function's name) or with the id and terms
    (``@mehr.function("embed", max_concurrency=4, price_umhr=10)``). The function itself is
    returned unchanged, so it can still be called (and tested) directly.

    With ``batch=mehr.Batch(...)`` the function takes a list of inputs (and, if it has a
    ``calls`` parameter, the list of their :class:`mehr.Call`) and returns a list of outputs
    in the same order; see :class:`Batch`.
    """
    if callable(id):
        return _mark(id, FunctionSpec())
    if batch is not None and not isinstance(batch, Batch):
        raise TypeError(f"batch must be a mehr.Batch, got {type(batch).__name__}")
    spec = FunctionSpec(id, description, price_umhr, max_concurrency, max_input_bytes, batch)

    def decorate(fn: F) -> F:
        return _mark(fn, spec)

    return decorate


def _mark(fn: F, spec: FunctionSpec) -> F:
    if not callable(fn):
        raise TypeError(f"@mehr.function needs a function, got {type(fn).__name__}")
    setattr(fn, _MARK, spec)
    return fn


class _Kind:
    SYNC = "sync"
    GENERATOR = "generator"
    ASYNC = "async"
    ASYNC_GENERATOR = "async generator"


class _Function:
    """A marked callable, resolved: its spec, how it runs, how its input is decoded."""

    def __init__(self, fn: Callable[..., Any], spec: FunctionSpec) -> None:
        self.fn = fn
        target = inspect.unwrap(fn)
        self.id = spec.id or getattr(target, "__name__", None) or ""
        if not self.id:
            raise ValueError(f"{fn!r} has no name: give the function id, @mehr.function('my-id')")
        self.description = spec.description if spec.description is not None else _docstring_summary(target)
        self.price_umhr = _natural(spec.price_umhr, "price_umhr", self.id)
        self.max_concurrency = _natural(spec.max_concurrency, "max_concurrency", self.id)
        self.max_input_bytes = _natural(spec.max_input_bytes, "max_input_bytes", self.id)
        if inspect.isasyncgenfunction(target):
            self.kind = _Kind.ASYNC_GENERATOR
        elif inspect.iscoroutinefunction(target):
            self.kind = _Kind.ASYNC
        elif inspect.isgeneratorfunction(target):
            self.kind = _Kind.GENERATOR
        else:
            self.kind = _Kind.SYNC
        self.is_async = self.kind in (_Kind.ASYNC, _Kind.ASYNC_GENERATOR)
        self.batch = spec.batch
        if self.batch is None:
            self._decode, self._takes_input, self._wants_call = _calling_convention(fn)
        else:
            if self.kind in (_Kind.GENERATOR, _Kind.ASYNC_GENERATOR):
                raise TypeError(
                    f"function `{self.id}`: a batched function returns one list of outputs; "
                    "it cannot be a generator (streaming partial outputs is not batched)"
                )
            if self.max_concurrency < 1:
                raise ValueError(f"function `{self.id}`: a batched function needs max_concurrency >= 1")
            self._decode, self._takes_input, self._wants_call = _batch_calling_convention(fn, self.id)

    # Read by the native layer (`FunctionArg`).
    @property
    def batch_max_size(self) -> int:
        return self.batch.max_size if self.batch is not None else 0

    @property
    def batch_max_wait(self) -> float:
        return float(self.batch.max_wait) if self.batch is not None else 0.0

    @property
    def batch_max_queue(self) -> int:
        """0: the default (``max_size``)."""
        return (self.batch.max_queue or 0) if self.batch is not None else 0

    def arguments(self, data: bytes, call: "Call") -> Tuple[Tuple[Any, ...], Dict[str, Any]]:
        args = (self._decode(data),) if self._takes_input else ()
        kwargs = {"call": call} if self._wants_call else {}
        return args, kwargs

    def batch_arguments(self, inputs: List[Any], calls: List["Call"]) -> Tuple[Tuple[Any, ...], Dict[str, Any]]:
        kwargs = {"calls": calls} if self._wants_call else {}
        return (inputs,), kwargs

    def __repr__(self) -> str:
        return f"<mehr function {self.id!r} ({self.kind})>"


def _natural(value: int, name: str, function_id: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ValueError(f"function `{function_id}`: {name} must be a non-negative int, got {value!r}")
    return value


def _docstring_summary(fn: Callable[..., Any]) -> str:
    doc = inspect.getdoc(fn) or ""
    summary = " ".join(doc.split("\n\n", 1)[0].split())
    encoded = summary.encode()
    if len(encoded) > _MAX_DESCRIPTION_BYTES:
        summary = encoded[: _MAX_DESCRIPTION_BYTES - 3].decode(errors="ignore") + "..."
    return summary


def _calling_convention(fn: Callable[..., Any]) -> Tuple[Callable[[bytes], Any], bool, bool]:
    """How to call `fn`: the input decoder, whether it takes the input, whether it takes `call`."""
    try:
        signature = inspect.signature(fn)
    except (TypeError, ValueError):
        return _as_bytes, True, False
    parameters = list(signature.parameters.values())
    wants_call = any(p.name == "call" for p in parameters)
    positional = [
        p
        for p in parameters
        if p.name != "call"
        and p.kind in (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    ]
    takes_input = bool(positional) or any(p.kind is inspect.Parameter.VAR_POSITIONAL for p in parameters)
    annotation: Any = positional[0].annotation if positional else inspect.Parameter.empty
    if isinstance(annotation, str):
        try:
            hints = typing.get_type_hints(fn)
            annotation = hints.get(positional[0].name, annotation)
        except Exception:  # noqa: BLE001 - unresolvable hints fall back to the raw string
            annotation = {"str": str, "dict": dict, "list": list}.get(annotation, annotation)
    return _decoder_for(annotation), takes_input, wants_call


def _batch_calling_convention(fn: Callable[..., Any], function_id: str) -> Tuple[Callable[[bytes], Any], bool, bool]:
    """How to call a batched `fn`: the decoder of each input (from the annotation of the list
    parameter: ``List[str]``, ``List[dict]``, ``List[bytes]``...), and whether it takes `calls`."""
    try:
        signature = inspect.signature(fn)
    except (TypeError, ValueError):
        return _as_bytes, True, False
    parameters = list(signature.parameters.values())
    wants_calls = any(p.name == "calls" for p in parameters)
    positional = [
        p
        for p in parameters
        if p.name != "calls"
        and p.kind in (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    ]
    if not positional and not any(p.kind is inspect.Parameter.VAR_POSITIONAL for p in parameters):
        raise TypeError(f"function `{function_id}`: a batched function takes the list of inputs as its first argument")
    annotation: Any = positional[0].annotation if positional else inspect.Parameter.empty
    if isinstance(annotation, str):
        try:
            annotation = typing.get_type_hints(fn).get(positional[0].name, annotation)
        except Exception:  # noqa: BLE001 - unresolvable hints: raw bytes per input
            annotation = inspect.Parameter.empty
    items = typing.get_args(annotation)
    element = items[0] if len(items) == 1 else inspect.Parameter.empty
    return _decoder_for(element), True, wants_calls


def _as_bytes(data: bytes) -> bytes:
    return data


def _as_text(data: bytes) -> str:
    return data.decode("utf-8")


def _as_json(data: bytes) -> Any:
    return json.loads(data)


def _decoder_for(annotation: Any) -> Callable[[bytes], Any]:
    if annotation is str:
        return _as_text
    if _is_json_type(annotation):
        return _as_json
    return _as_bytes


def _is_json_type(annotation: Any) -> bool:
    """`dict`, `list` (or their typing forms), or a union of them (`Union[list, dict]`)."""
    origin = typing.get_origin(annotation) or annotation
    if origin is Union or origin is getattr(types, "UnionType", Union):
        members = [a for a in typing.get_args(annotation) if a is not type(None)]
        return bool(members) and all(_is_json_type(a) for a in members)
    return origin in (dict, list, Dict, List)


def _encode(value: Any) -> bytes:
    """A handler's result as the output bytes: bytes as they are, buffers (bytearray,
    memoryview, NumPy arrays) as their raw bytes, text as UTF-8, None as nothing, anything
    else as JSON."""
    if isinstance(value, bytes):
        return value
    if isinstance(value, (bytearray, memoryview)):
        return bytes(value)
    if isinstance(value, str):
        return value.encode("utf-8")
    if value is None:
        return b""
    if not isinstance(value, (dict, list, tuple, int, float)):
        try:
            return memoryview(value).tobytes()
        except TypeError:
            pass
    return json.dumps(value, separators=(",", ":")).encode("utf-8")


def _failure(function: _Function, error: BaseException) -> Tuple[bool, str]:
    _log.error("function `%s` failed", function.id, exc_info=(type(error), error, error.__traceback__))
    return False, f"{type(error).__name__}: {error}"


#: What the native layer gets for one call of a batch: (True, output) or (False, message).
_Answer = Tuple[bool, Any]


class _BatchRun:
    """One batch on its way through a handler: decodes each input on its own, so a bad input
    fails only its call, and matches the handler's outputs back to the calls."""

    def __init__(self, function: _Function, inputs: List[bytes], calls: List["Call"]) -> None:
        self.function = function
        self.answers: List[Optional[_Answer]] = [None] * len(inputs)
        self.positions: List[int] = []
        self.decoded: List[Any] = []
        self.calls: List["Call"] = []
        for position, (data, call) in enumerate(zip(inputs, calls)):
            try:
                self.decoded.append(function._decode(data))
            except Exception as error:  # noqa: BLE001 - a bad input fails its own call only
                self.answers[position] = (False, f"cannot decode the input: {type(error).__name__}: {error}")
                continue
            self.positions.append(position)
            self.calls.append(call)

    @property
    def empty(self) -> bool:
        """No input could be decoded: nothing for the handler to do."""
        return not self.positions

    def arguments(self) -> Tuple[Tuple[Any, ...], Dict[str, Any]]:
        return self.function.batch_arguments(self.decoded, self.calls)

    def finish(self, outputs: Any) -> Tuple[bool, Any]:
        """`(True, answers)`, one per call, or `(False, message)` failing the whole batch."""
        if isinstance(outputs, (str, bytes, bytearray, dict)) or not hasattr(outputs, "__len__"):
            return False, (
                f"function `{self.function.id}` is batched: it must return a list with one output per "
                f"input, got {type(outputs).__name__}"
            )
        outputs = list(outputs)
        if len(outputs) != len(self.positions):
            return False, (
                f"function `{self.function.id}` returned {len(outputs)} outputs for {len(self.positions)} inputs"
            )
        for position, output in zip(self.positions, outputs):
            if isinstance(output, BaseException):
                self.answers[position] = (False, f"{type(output).__name__}: {output}")
                continue
            try:
                self.answers[position] = (True, _encode(output))
            except Exception as error:  # noqa: BLE001 - an output that cannot be encoded fails its call
                self.answers[position] = _failure(self.function, error)
        return True, self.answers


def _is_call_over(error: BaseException) -> bool:
    from mehr.errors import Cancelled

    return isinstance(error, Cancelled)


class _Dispatcher:
    """Runs calls; the native serving loop calls these methods."""

    def __init__(self, functions: Dict[str, _Function]) -> None:
        self._functions = dict(functions)
        self._tasks: Dict[Any, "asyncio.Task[Tuple[bool, Any]]"] = {}

    @property
    def needs_loop(self) -> bool:
        return any(f.is_async for f in self._functions.values())

    def run_sync(self, function_id: str, data: bytes, call: "Call") -> Tuple[bool, Any]:
        """Runs a sync handler on the calling (blocking pool) thread."""
        function = self._functions.get(function_id)
        if function is None:
            return False, f"no handler for `{function_id}` in this process"
        if function.is_async:
            return False, f"`{function_id}` is async, and no event loop runs it"
        try:
            args, kwargs = function.arguments(data, call)
            result = function.fn(*args, **kwargs)
            if function.kind == _Kind.GENERATOR:
                try:
                    for chunk in result:
                        if call.cancelled:
                            break
                        call.send(_encode(chunk))
                finally:
                    result.close()
                return True, b""
            return True, _encode(result)
        except Exception as error:  # noqa: BLE001 - any failure fails this call only
            if _is_call_over(error):
                return False, str(error)
            return _failure(function, error)

    def run_batch_sync(self, function_id: str, inputs: List[bytes], calls: List["Call"]) -> Tuple[bool, Any]:
        """Runs a sync batched handler on the calling (blocking pool) thread."""
        function = self._functions.get(function_id)
        if function is None or function.batch is None:
            return False, f"no batched handler for `{function_id}` in this process"
        if function.is_async:
            return False, f"`{function_id}` is async, and no event loop runs it"
        run = _BatchRun(function, inputs, calls)
        if run.empty:
            return True, run.answers
        try:
            args, kwargs = run.arguments()
            return run.finish(function.fn(*args, **kwargs))
        except Exception as error:  # noqa: BLE001 - any failure fails this batch only
            return _failure(function, error)

    def start_batch_async(
        self, function_id: str, inputs: List[bytes], calls: Tuple["Call", ...], done: Callable[[bool, Any], None]
    ) -> None:
        """Starts an async batched handler as a task (on the loop thread); `done` gets
        `(True, answers)` or `(False, message)`. `calls` (a tuple) is also the key that
        :meth:`cancel_async` cancels it by."""
        if all(call.cancelled for call in calls):
            done(False, "every call of the batch was cancelled")
            return
        self._start(calls, self._run_batch_async(function_id, inputs, list(calls)), done)

    async def _run_batch_async(self, function_id: str, inputs: List[bytes], calls: List["Call"]) -> Tuple[bool, Any]:
        function = self._functions.get(function_id)
        if function is None or function.batch is None:
            return False, f"no batched handler for `{function_id}` in this process"
        run = _BatchRun(function, inputs, calls)
        if run.empty:
            return True, run.answers
        try:
            args, kwargs = run.arguments()
            return run.finish(await function.fn(*args, **kwargs))
        except asyncio.CancelledError:
            raise
        except Exception as error:  # noqa: BLE001 - any failure fails this batch only
            return _failure(function, error)

    def _start(self, key: Any, work: Any, done: Callable[[bool, Any], None]) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self._tasks[key] = task

        def finished(task: "asyncio.Task[Tuple[bool, Any]]") -> None:
            self._tasks.pop(key, None)
            if task.cancelled():
                done(False, "the call was cancelled")
            else:
                ok, value = task.result()
                done(ok, value)

        task.add_done_callback(finished)

    def start_async(self, function_id: str, data: bytes, call: "Call", done: Callable[[bool, Any], None]) -> None:
        """Starts an async handler as a task (on the loop thread); `done` gets its outcome."""
        if call.cancelled:
            # Withdrawn while it was being scheduled: nobody waits for the result.
            done(False, "the call was cancelled")
            return
        self._start(call, self._run_async(function_id, data, call), done)

    def cancel_async(self, key: Any) -> None:
        """Cancels the task of a withdrawn call, or of a batch whose calls were all withdrawn
        (on the loop thread)."""
        task = self._tasks.pop(key, None)
        if task is not None:
            task.cancel()

    async def _run_async(self, function_id: str, data: bytes, call: "Call") -> Tuple[bool, Any]:
        function = self._functions.get(function_id)
        if function is None:
            return False, f"no handler for `{function_id}` in this process"
        try:
            args, kwargs = function.arguments(data, call)
            if function.kind == _Kind.ASYNC_GENERATOR:
                generator = function.fn(*args, **kwargs)
                try:
                    async for chunk in generator:
                        if call.cancelled:
                            break
                        await call.send_async(_encode(chunk))
                finally:
                    await generator.aclose()
                return True, b""
            return True, _encode(await function.fn(*args, **kwargs))
        except asyncio.CancelledError:
            raise
        except Exception as error:  # noqa: BLE001 - any failure fails this call only
            if _is_call_over(error):
                return False, str(error)
            return _failure(function, error)


class _LoopThread:
    """An event loop on its own thread, for async handlers served from sync code."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, name="mehr-async-handlers", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        try:
            self.loop.run_forever()
        finally:
            pending = [task for task in asyncio.all_tasks(self.loop) if not task.done()]
            for task in pending:
                task.cancel()
            if pending:
                self.loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            self.loop.close()

    def stop(self) -> None:
        if self.loop.is_closed():
            return
        self.loop.call_soon_threadsafe(self.loop.stop)
        if threading.current_thread() is not self._thread:
            self._thread.join(timeout=5)


class Service:
    """A set of functions served together on one connection.

    Items are functions marked with :func:`function`, objects whose methods are marked (each
    method is served bound to the object), or other services. Function ids must be unique.
    """

    def __init__(self, *items: Any) -> None:
        self._functions: Dict[str, _Function] = {}
        for item in items:
            self.add(item)

    def add(self, item: Any) -> "Service":
        """Adds a marked function, an object with marked methods, or a service."""
        if isinstance(item, Service):
            for function in item._functions.values():
                self._add(function)
            return self
        spec = getattr(item, _MARK, None)
        if isinstance(spec, FunctionSpec) and callable(item):
            self._add(_Function(item, spec))
            return self
        found = 0
        for name in dir(type(item)):
            attribute = getattr(type(item), name, None)
            spec = getattr(attribute, _MARK, None)
            if isinstance(spec, FunctionSpec):
                self._add(_Function(getattr(item, name), spec))
                found += 1
        if not found:
            raise TypeError(
                f"{item!r} is not a function marked with @mehr.function, an object with such methods, or a Service"
            )
        return self

    def function(
        self,
        id: Optional[str] = None,
        /,
        *,
        description: Optional[str] = None,
        price_umhr: int = 0,
        max_concurrency: int = 1,
        max_input_bytes: int = 0,
        batch: Optional[Batch] = None,
    ) -> Callable[[F], F]:
        """Like :func:`mehr.function`, and adds the function to this service."""

        def decorate(fn: F) -> F:
            marked = function(
                id,
                description=description,
                price_umhr=price_umhr,
                max_concurrency=max_concurrency,
                max_input_bytes=max_input_bytes,
                batch=batch,
            )(fn)
            self.add(marked)
            return marked

        return decorate

    def _add(self, function: _Function) -> None:
        if function.id in self._functions:
            raise ValueError(f"function id `{function.id}` is given twice")
        self._functions[function.id] = function

    @property
    def function_ids(self) -> List[str]:
        """The ids of the functions, in the order they were added."""
        return list(self._functions)

    def _prepared(self) -> Tuple[List[_Function], _Dispatcher]:
        if not self._functions:
            raise ValueError("the service has no functions to serve")
        return list(self._functions.values()), _Dispatcher(self._functions)

    def serve(self, client: Optional["Client"] = None, reconnect: bool = True) -> "Serving":
        """Registers the functions with the daemon and serves them in the background.

        ``client`` defaults to :func:`mehr.connect`. Raises :class:`mehr.AlreadyExists` when
        an id is served already and :class:`mehr.InvalidArgument` for an invalid spec. With
        ``reconnect`` (the default) serving survives daemon restarts: the functions are
        registered again once the daemon is back. Async handlers run on an event loop thread
        started for them.
        """
        from mehr._native import AsyncClient, Client

        if client is None:
            client = Client.connect()
        if isinstance(client, AsyncClient):
            raise TypeError("an AsyncClient serves with `await service.serve_async(client)`")
        functions, dispatcher = self._prepared()
        loop_thread = _LoopThread() if dispatcher.needs_loop else None
        try:
            return client._serve(
                functions,
                dispatcher,
                loop_thread.loop if loop_thread else None,
                reconnect,
                loop_thread.stop if loop_thread else None,
            )
        except BaseException:
            if loop_thread is not None:
                loop_thread.stop()
            raise

    async def serve_async(self, client: Optional["AsyncClient"] = None, reconnect: bool = True) -> "Serving":
        """Like :meth:`serve`, from async code: async handlers run on the running loop."""
        from mehr._native import AsyncClient, Client

        if client is None:
            client = await AsyncClient.connect()
        if isinstance(client, Client):
            raise TypeError("a Client serves with `service.serve(client)`")
        functions, dispatcher = self._prepared()
        return await client._serve(functions, dispatcher, asyncio.get_running_loop(), reconnect, None)

    def run(self, client: Optional["Client"] = None, reconnect: bool = True) -> None:
        """Serves until Ctrl-C (or until the daemon goes away for good), then unregisters
        cleanly and returns."""
        serving = self.serve(client, reconnect)
        try:
            serving.wait()
        except KeyboardInterrupt:
            _log.info("interrupted: stopped serving %s", serving.functions)

    async def run_async(self, client: Optional["AsyncClient"] = None, reconnect: bool = True) -> None:
        """Serves until cancelled (Ctrl-C under ``asyncio.run``), then unregisters cleanly."""
        serving = await self.serve_async(client, reconnect)
        try:
            await serving.wait_async()
        finally:
            await asyncio.shield(serving.stop_async())

    def __repr__(self) -> str:
        return f"Service({', '.join(self._functions)})"

