"""Serving functions from Python against a real daemon: registration, sync and async handlers,
streaming, errors, concurrency limits, deadlines, stopping, and daemon restarts."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

import mehr
from conftest import eventually, function_ids

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def _interruptible() -> None:
    """Gives a child the default SIGINT handling. A shell that starts the test run in the
    background without job control ignores SIGINT, and an ignored signal is inherited, so the
    child's Python would never raise KeyboardInterrupt (nor install its handler)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def test_functions_register_with_their_terms(client):
    @mehr.function("terms", description="Echoes", price_umhr=7, max_concurrency=3, max_input_bytes=1024)
    def terms(data: bytes) -> bytes:
        return data

    @mehr.function
    def documented(data):
        """Counts bytes.

        Longer text that is not part of the description."""
        return len(data)

    with client.serve(terms, documented) as serving:
        assert serving.functions == ["terms", "documented"]
        assert serving.connected and not serving.done
        offered = {f.function_id: f for f in client.functions()}
        assert offered["terms"].kind == "served"
        assert offered["terms"].description == "Echoes"
        assert offered["terms"].price_per_invocation_umhr == 7
        assert offered["terms"].price_per_million_fuel_umhr is None
        assert offered["terms"].max_concurrency == 3
        assert offered["terms"].max_input_bytes == 1024
        assert offered["terms"].module_id is None
        assert len(offered["terms"].function_hash) == 64
        assert offered["documented"].description == "Counts bytes."
        assert offered["documented"].max_concurrency == 1
    assert serving.done
    assert function_ids(client) == []


def test_inputs_and_outputs_convert_by_annotation(client):
    @mehr.function
    def text(value: str) -> str:
        return value[::-1]

    @mehr.function
    def structured(request: dict) -> dict:
        return {"sum": sum(request["numbers"])}

    @mehr.function
    def raw(data):
        return bytearray(data) + b"!"

    @mehr.function
    def nothing(data: bytes) -> None:
        return None

    @mehr.function
    def no_input():
        return 42

    with client.serve(text, structured, raw, nothing, no_input):
        assert client.invoke("text", "héllo").text() == "olléh"
        assert client.invoke("structured", json.dumps({"numbers": [1, 2, 3]})).json() == {"sum": 6}
        assert bytes(client.invoke("raw", memoryview(b"abc"))) == b"abc!"
        assert client.invoke("nothing", b"x").output == b""
        assert client.invoke("no_input").json() == 42
        with pytest.raises(TypeError, match="int"):
            client.invoke("raw", 5)


def test_a_class_serves_its_marked_methods_with_its_state(client):
    class Counter:
        def __init__(self) -> None:
            self.calls = 0

        @mehr.function("counter.add", max_concurrency=1)
        def add(self, amount: str) -> str:
            self.calls += int(amount)
            return str(self.calls)

        @mehr.function("counter.peek")
        async def peek(self) -> str:
            return str(self.calls)

        def helper(self) -> None:
            """Not marked: not served."""

    counter = Counter()
    with client.serve(counter) as serving:
        assert sorted(serving.functions) == ["counter.add", "counter.peek"]
        client.invoke("counter.add", "2")
        assert client.invoke("counter.add", "3").text() == "5"
        assert client.invoke("counter.peek").text() == "5"
    assert counter.calls == 5


def test_a_service_object_collects_functions(client):
    service = mehr.Service()

    @service.function("svc.double")
    def double(text: str) -> str:
        return text * 2

    assert service.function_ids == ["svc.double"]
    with pytest.raises(ValueError, match="given twice"):
        service.add(double)
    with pytest.raises(TypeError, match="not a function marked"):
        mehr.Service(lambda data: data)
    with service.serve(client):
        assert client.invoke("svc.double", "ab").text() == "abab"


def test_sync_and_async_generators_stream_partial_outputs(client):
    @mehr.function
    def count(n: str):
        for i in range(int(n)):
            yield f"{i};"

    @mehr.function
    async def acount(n: str):
        for i in range(int(n)):
            await asyncio.sleep(0)
            yield {"i": i}

    with client.serve(count, acount):
        stream = client.invoke_stream("count", "4")
        assert stream.metering is None
        assert list(stream) == [b"0;", b"1;", b"2;", b"3;"]
        assert stream.metering is not None and stream.metering.kind == "served"
        assert [json.loads(c) for c in client.invoke_stream("acount", "3")] == [{"i": 0}, {"i": 1}, {"i": 2}]
        # A unary call gets the partial outputs concatenated.
        assert client.invoke("count", "3").output == b"0;1;2;"


def test_a_handler_exception_fails_only_its_call(client, caplog):
    calls = []

    @mehr.function
    def fragile(data: str) -> str:
        calls.append(data)
        if data == "bad":
            raise ValueError("cannot handle 'bad'")
        return "ok"

    @mehr.function
    async def afragile(data: str) -> str:
        raise KeyError(data)

    with client.serve(fragile, afragile) as serving:
        with pytest.raises(mehr.Aborted) as raised:
            client.invoke("fragile", "bad")
        assert raised.value.code is mehr.StatusCode.ABORTED
        assert "ValueError: cannot handle 'bad'" in raised.value.message
        assert "fragile" in raised.value.message
        with pytest.raises(mehr.Aborted, match="KeyError: 'x'"):
            client.invoke("afragile", "x")
        # Serving goes on.
        assert client.invoke("fragile", "good").text() == "ok"
        assert serving.connected
    assert calls == ["bad", "good"]
    assert any("function `fragile` failed" in r.getMessage() and r.exc_info for r in caplog.records)


def test_the_concurrency_limit_holds_under_50_parallel_calls(client):
    limit = 5
    lock = threading.Lock()
    running = 0
    most = 0
    # Each batch of `limit` calls must be running at the same time to pass the barrier: so the
    # limit is reached, and a sixth concurrent call would show in `most`.
    barrier = threading.Barrier(limit, timeout=20)

    @mehr.function("limited", max_concurrency=limit)
    def limited(data: str) -> str:
        nonlocal running, most
        with lock:
            running += 1
            most = max(most, running)
        try:
            barrier.wait()
            return data
        finally:
            with lock:
                running -= 1

    with client.serve(limited):
        with ThreadPoolExecutor(max_workers=50) as pool:
            results = list(pool.map(lambda i: client.invoke("limited", str(i), timeout=60).text(), range(50)))
    assert results == [str(i) for i in range(50)]
    assert most == limit


def test_async_handlers_respect_the_limit_too(client):
    limit = 3
    running = 0
    most = 0

    @mehr.function("alimited", max_concurrency=limit)
    async def alimited(data: str) -> str:
        nonlocal running, most
        running += 1
        most = max(most, running)
        await asyncio.sleep(0.02)
        running -= 1
        return data

    async def main() -> list:
        aclient = await mehr.connect_async(client.target)
        async with await aclient.serve(alimited):
            return await asyncio.gather(*(aclient.invoke("alimited", str(i), timeout=60) for i in range(50)))

    results = asyncio.run(main())
    assert [r.text() for r in results] == [str(i) for i in range(50)]
    assert 1 <= most <= limit


def test_registration_errors_are_clear(client):
    @mehr.function("taken")
    def taken(data):
        return data

    @mehr.function("bad id!")
    def bad(data):
        return data

    with client.serve(taken):
        with pytest.raises(mehr.AlreadyExists, match="taken"):
            mehr.connect(client.target).serve(taken)
    with pytest.raises(mehr.InvalidArgument, match=r"functions\[0\]\.name: has . . at byte 3"):
        client.serve(bad)
    with pytest.raises(ValueError, match="max_concurrency"):
        mehr.Service(mehr.function("x", max_concurrency=-1)(lambda d: d))
    assert function_ids(client) == []


def test_deadlines_cancel_the_call_and_the_handler_sees_it(client):
    saw_cancel = threading.Event()

    @mehr.function
    def patient(data, call: mehr.Call):
        assert call.function_id == "patient" and call.remaining > 0
        while not call.cancelled:
            time.sleep(0.01)
        saw_cancel.set()
        return b"too late"

    with client.serve(patient):
        with pytest.raises(mehr.DeadlineExceeded):
            client.invoke("patient", timeout=0.3)
        assert saw_cancel.wait(10)


def test_the_gil_is_released_while_a_call_waits(client):
    # The handler runs on another thread of this process and waits for an event that a
    # third Python thread sets: if the blocked `invoke` held the GIL, neither could run.
    release = threading.Event()

    @mehr.function
    def gated(data):
        if not release.wait(20):
            raise TimeoutError("never released")
        return b"released"

    with client.serve(gated):
        threading.Timer(0.05, release.set).start()
        assert client.invoke("gated", timeout=30).output == b"released"


def test_async_calls_do_not_block_the_event_loop(client):
    # The async handler runs on the same loop as the caller and waits for an event that
    # another coroutine of that loop sets after the call started: a blocked loop deadlocks.
    async def main() -> bytes:
        release = asyncio.Event()

        @mehr.function
        async def waiter(data):
            await asyncio.wait_for(release.wait(), 20)
            return b"done"

        aclient = await mehr.connect_async(client.target)
        async with await aclient.serve(waiter):
            call = asyncio.ensure_future(aclient.invoke("waiter", timeout=30))
            await asyncio.sleep(0.05)
            assert not call.done()
            release.set()
            return (await call).output

    assert asyncio.run(main()) == b"done"


def test_cancelling_an_awaited_call_withdraws_it(client):
    cancelled = threading.Event()

    @mehr.function
    def endless(data, call):
        while not call.cancelled:
            time.sleep(0.01)
        cancelled.set()

    async def main() -> None:
        aclient = await mehr.connect_async(client.target)
        with client.serve(endless):
            task = asyncio.ensure_future(aclient.invoke("endless", timeout=60))
            await asyncio.sleep(0.3)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            assert await asyncio.get_running_loop().run_in_executor(None, cancelled.wait, 10)

    asyncio.run(main())


def test_async_handlers_are_cancelled_when_the_call_is_withdrawn(client):
    cancelled = threading.Event()

    @mehr.function
    async def sleeper(data):
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    with client.serve(sleeper):
        with pytest.raises(mehr.DeadlineExceeded):
            client.invoke("sleeper", timeout=0.3)
        assert cancelled.wait(10)


def test_stop_lets_running_calls_finish(client):
    started = threading.Event()

    @mehr.function
    def slow(data):
        started.set()
        time.sleep(0.5)
        return b"finished"

    serving = client.serve(slow)
    with ThreadPoolExecutor(max_workers=1) as pool:
        call = pool.submit(client.invoke, "slow")
        assert started.wait(10)
        serving.stop()
        assert call.result(timeout=30).output == b"finished"
    assert serving.done
    assert function_ids(client) == []
    assert serving.wait(timeout=0.01) is True


def test_serving_survives_a_daemon_restart(daemon):
    @mehr.function("survivor")
    def survivor(data: str) -> str:
        return data.upper()

    client = daemon.client()
    with client.serve(survivor) as serving:
        assert client.invoke("survivor", "before").text() == "BEFORE"
        daemon.restart()
        eventually("the function registered again", lambda: "survivor" in function_ids(client))
        assert client.invoke("survivor", "after").text() == "AFTER"
        assert serving.reconnects == 1
        assert serving.connected


def test_without_reconnect_a_daemon_restart_ends_serving_with_unavailable(daemon):
    @mehr.function("once")
    def once(data):
        return data

    serving = daemon.client().serve(once, reconnect=False)
    daemon.restart()
    with pytest.raises(mehr.Unavailable, match="reconnect=False"):
        serving.wait(timeout=30)
    assert serving.done and not serving.connected
    assert function_ids(daemon.client()) == []


def test_ctrl_c_unregisters_cleanly(daemon, client):
    env = {**__import__("os").environ, "MEHR_DATA_DIR": str(daemon.data_dir)}
    env.pop("MEHR_ENDPOINT", None)
    process = subprocess.Popen(
        [sys.executable, str(EXAMPLES / "hello_service.py")],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=_interruptible,
    )
    try:
        eventually("the example registered", lambda: "greet" in function_ids(client), timeout=30)
        assert client.invoke("greet", "Grace").text() == "Hello, Grace!"
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0, err
    assert "stopped" in out
    assert "Traceback" not in err
    assert function_ids(client) == []


def test_handlers_can_call_other_functions(client):
    @mehr.function
    def inner(text: str) -> str:
        return text.upper()

    @mehr.function
    def outer(text: str) -> str:
        # A sync handler runs on a thread of the SDK's runtime: blocking calls still work.
        return client.invoke("inner", text).text() + "!"

    @mehr.function
    async def aouter(text: str) -> str:
        aclient = await mehr.connect_async(client.target)
        return (await aclient.invoke("inner", text)).text() + "?"

    with client.serve(inner, outer, aouter):
        assert client.invoke("outer", "nested").text() == "NESTED!"
        assert client.invoke("aouter", "nested").text() == "NESTED?"


def test_dropping_the_serving_object_stops_serving(client):
    @mehr.function("dropped")
    def dropped(data):
        return data

    client.serve(dropped)  # not kept
    eventually("the function unregistered", lambda: "dropped" not in function_ids(client))


def test_a_process_that_exits_while_serving_ends_promptly(daemon, client):
    script = (
        "import mehr, sys\n"
        "@mehr.function('exiting')\n"
        "def exiting(data):\n"
        "    return data\n"
        "serving = mehr.connect(data_dir=sys.argv[1]).serve(exiting)\n"
        "print('serving', flush=True)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script, str(daemon.data_dir)], capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout == "serving\n"
    eventually("the function unregistered", lambda: "exiting" not in function_ids(client))


def test_ctrl_c_cancels_a_blocking_call(daemon, client):
    entered, withdrawn = threading.Event(), threading.Event()

    @mehr.function
    def hang(data, call):
        entered.set()
        while not call.cancelled:
            time.sleep(0.01)
        withdrawn.set()

    script = (
        "import mehr, sys\n"
        "client = mehr.connect(data_dir=sys.argv[1])\n"
        "try:\n"
        "    client.invoke('hang', timeout=120)\n"
        "except KeyboardInterrupt:\n"
        "    print('interrupted', flush=True)\n"
    )
    with client.serve(hang):
        process = subprocess.Popen(
            [sys.executable, "-c", script, str(daemon.data_dir)],
            stdout=subprocess.PIPE,
            text=True,
            preexec_fn=_interruptible,
        )
        try:
            assert entered.wait(30)
            process.send_signal(signal.SIGINT)
            out, _ = process.communicate(timeout=30)
        finally:
            if process.poll() is None:
                process.kill()
        assert process.returncode == 0 and out == "interrupted\n"
        assert withdrawn.wait(10), "the interrupted call was withdrawn from the handler"
