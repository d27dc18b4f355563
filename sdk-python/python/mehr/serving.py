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
"""

from __future__ import annotations

import asyncio
import inspect
import json
import logging
import threading
import typing
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Dict, List, Optional, Tuple, TypeVar, Union, overload

if TYPE_CHECKING:
    from mehr._native import AsyncClient, Call, Client, Serving

__all__ = ["FunctionSpec", "Service", "function"]

_log = logging.getLogger("mehr.serving")

#: The attribute :func:`function` puts on a marked function.
_MARK = "__mehr_function__"
#: The daemon's limit on descriptions, in bytes.
_MAX_DESCRIPTION_BYTES = 1024

F = TypeVar("F", bound=Callable[..., Any])


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
    #: Calls handled at once; the daemon queues the rest.
    max_concurrency: int = 1
    #: Largest input accepted, in bytes; 0: the node's maximum.
    max_input_bytes: int = 0


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
) -> Callable[[F], F]: ...


def function(
    id: Union[str, Callable[..., Any], None] = None,
    /,
    *,
    description: Optional[str] = None,
    price_umhr: int = 0,
    max_concurrency: int = 1,
    max_input_bytes: int = 0,
) -> Any:
    """Marks a function or method to be served as a Mehr function.

    Use it bare (``@mehr.function``: the id is the function's name) or with the id and terms
    (``@mehr.function("embed", max_concurrency=4, price_umhr=10)``). The function itself is
    returned unchanged, so it can still be called (and tested) directly.
    """
    if callable(id):
        return _mark(id, FunctionSpec())
    spec = FunctionSpec(id, description, price_umhr, max_concurrency, max_input_bytes)

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
        self._decode, self._takes_input, self._wants_call = _calling_convention(fn)

    def arguments(self, data: bytes, call: "Call") -> Tuple[Tuple[Any, ...], Dict[str, Any]]:
        args = (self._decode(data),) if self._takes_input else ()
        kwargs = {"call": call} if self._wants_call else {}
        return args, kwargs

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


def _as_bytes(data: bytes) -> bytes:
    return data


def _as_text(data: bytes) -> str:
    return data.decode("utf-8")


def _as_json(data: bytes) -> Any:
    return json.loads(data)


def _decoder_for(annotation: Any) -> Callable[[bytes], Any]:
    if annotation is str:
        return _as_text
    origin = typing.get_origin(annotation) or annotation
    if origin in (dict, list, Dict, List):
        return _as_json
    return _as_bytes


def _encode(value: Any) -> bytes:
    """A handler's result as the output bytes."""
    if isinstance(value, bytes):
        return value
    if isinstance(value, (bytearray, memoryview)):
        return bytes(value)
    if isinstance(value, str):
        return value.encode("utf-8")
    if value is None:
        return b""
    return json.dumps(value, separators=(",", ":")).encode("utf-8")


def _failure(function: _Function, error: BaseException) -> Tuple[bool, str]:
    _log.error("function `%s` failed", function.id, exc_info=(type(error), error, error.__traceback__))
    return False, f"{type(error).__name__}: {error}"


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

    def start_async(self, function_id: str, data: bytes, call: "Call", done: Callable[[bool, Any], None]) -> None:
        """Starts an async handler as a task (on the loop thread); `done` gets its outcome."""
        if call.cancelled:
            # Withdrawn while it was being scheduled: nobody waits for the result.
            done(False, "the call was cancelled")
            return
        task = asyncio.get_running_loop().create_task(self._run_async(function_id, data, call))
        self._tasks[call] = task

        def finished(task: "asyncio.Task[Tuple[bool, Any]]") -> None:
            self._tasks.pop(call, None)
            if task.cancelled():
                done(False, "the call was cancelled")
            else:
                ok, value = task.result()
                done(ok, value)

        task.add_done_callback(finished)

    def cancel_async(self, call: "Call") -> None:
        """Cancels the task of a withdrawn call (on the loop thread)."""
        task = self._tasks.pop(call, None)
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
    ) -> Callable[[F], F]:
        """Like :func:`mehr.function`, and adds the function to this service."""

        def decorate(fn: F) -> F:
            marked = function(
                id,
                description=description,
                price_umhr=price_umhr,
                max_concurrency=max_concurrency,
                max_input_bytes=max_input_bytes,
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

