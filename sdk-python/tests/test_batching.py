"""Dynamic batching against a real daemon: concurrent calls merged into one handler call and
split back in order, the size and wait limits, one bad input failing alone, and each caller's
deadline and cancellation holding inside a batch."""

from __future__ import annotations

import array
import asyncio
import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import List

import pytest

import mehr
from conftest import eventually


def call_all(client: mehr.Client, function_id: str, inputs: list, timeout: float = 60) -> list:
    """Calls `function_id` once per input, all at once from their own threads; returns what
    each call returned (its InvokeResult) or raised, in input order."""

    def one(data):
        try:
            return client.invoke(function_id, data, timeout=timeout)
        except mehr.MehrError as error:
            return error

    with ThreadPoolExecutor(len(inputs)) as pool:
        return list(pool.map(one, inputs))


def test_concurrent_calls_merge_into_one_handler_call_and_split_back_in_order(client):
    batches: List[List[str]] = []

    @mehr.function("shout", batch=mehr.Batch(max_size=8, max_wait=5.0))
    def shout(texts: List[str]) -> List[str]:
        batches.append(list(texts))
        return [text.upper() + "!" for text in texts]

    inputs = [f"caller {i}" for i in range(8)]
    with client.serve(shout) as serving:
        started = time.monotonic()
        results = call_all(client, "shout", inputs)
        # A full batch runs at once, without waiting out max_wait.
        assert time.monotonic() - started < 4.5
        stats = serving.batch_stats()
    assert [r.text() for r in results] == [f"CALLER {i}!" for i in range(8)]
    assert len(batches) == 1, "eight concurrent calls, one handler call"
    assert sorted(batches[0]) == sorted(inputs)
    # Each caller is metered on its own.
    assert all(r.metering is not None and r.metering.kind == "served" for r in results)
    assert stats == {
        "shout": {"batches": 1, "calls": 8, "largest": 8, "withdrawn_while_queued": 0, "rejected_queue_full": 0}
    }


def test_max_size_caps_each_batch_and_the_daemon_lets_enough_calls_through(client):
    sizes: List[int] = []

    @mehr.function("count", max_concurrency=1, batch=mehr.Batch(max_size=8, max_wait=0.5))
    def count(inputs: list) -> list:
        sizes.append(len(inputs))
        return [len(data) for data in inputs]

    with client.serve(count):
        offered = {f.function_id: f for f in client.functions()}["count"]
        # max_size calls in flight for each of the max_concurrency batches, and max_queue
        # (default: max_size) waiting for the next batch.
        assert offered.max_concurrency == 16
        results = call_all(client, "count", [b"x" * i for i in range(20)])
    assert [r.json() for r in results] == list(range(20))
    assert sizes == [8, 8, 4]


def test_a_batch_waits_at_most_max_wait_for_company(client):
    batches: List[int] = []

    @mehr.function("lonely", batch=mehr.Batch(max_size=64, max_wait=0.3))
    def lonely(inputs: list) -> list:
        batches.append(len(inputs))
        return inputs

    @mehr.function("eager", batch=mehr.Batch(max_size=64, max_wait=0))
    def eager(inputs: list) -> list:
        return inputs

    with client.serve(lonely, eager):
        started = time.monotonic()
        assert client.invoke("lonely", b"alone", timeout=30).output == b"alone"
        waited = time.monotonic() - started
        assert client.invoke("eager", b"now", timeout=30).output == b"now"
    assert batches == [1]
    assert waited >= 0.3, "the batch stays open for max_wait"


def test_one_bad_input_fails_only_its_own_call(client):
    seen: List[list] = []

    @mehr.function("invert", batch=mehr.Batch(max_size=4, max_wait=5.0))
    def invert(requests: List[dict]) -> list:
        seen.append([r["x"] for r in requests])
        return [ValueError("zero has no inverse") if r["x"] == 0 else {"inverse": 1 / r["x"]} for r in requests]

    inputs = [json.dumps({"x": 2}), "not json", json.dumps({"x": 0}), json.dumps({"x": 4})]
    with client.serve(invert):
        results = call_all(client, "invert", inputs)
    assert results[0].json() == {"inverse": 0.5}
    assert isinstance(results[1], mehr.Aborted) and "cannot decode the input: JSONDecodeError" in results[1].message
    assert isinstance(results[2], mehr.Aborted) and "ValueError: zero has no inverse" in results[2].message
    assert results[3].json() == {"inverse": 0.25}
    assert len(seen) == 1 and sorted(seen[0]) == [0, 2, 4], "the undecodable input never reached the handler"


def test_a_failing_batch_fails_each_call_and_serving_goes_on(client, caplog):
    attempts = []

    @mehr.function("flaky", batch=mehr.Batch(max_size=2, max_wait=5.0))
    def flaky(inputs: list) -> list:
        attempts.append(len(inputs))
        if len(attempts) == 1:
            raise RuntimeError("CUDA out of memory")
        if len(attempts) == 2:
            return inputs[:1]
        return inputs

    with client.serve(flaky) as serving:
        first = call_all(client, "flaky", [b"a", b"b"])
        assert all(isinstance(r, mehr.Aborted) and "RuntimeError: CUDA out of memory" in r.message for r in first)
        second = call_all(client, "flaky", [b"c", b"d"])
        assert all(
            isinstance(r, mehr.Aborted) and "`flaky` returned 1 outputs for 2 inputs" in r.message for r in second
        )
        assert [r.output for r in call_all(client, "flaky", [b"e", b"f"])] == [b"e", b"f"]
        assert serving.connected
    assert any("function `flaky` failed" in r.getMessage() and r.exc_info for r in caplog.records)


def test_each_caller_keeps_its_deadline_inside_a_batch(client):
    saw = {}

    @mehr.function("mixed", batch=mehr.Batch(max_size=2, max_wait=5.0))
    def mixed(inputs: List[str], calls: List[mehr.Call]) -> List[str]:
        hasty = calls[inputs.index("hasty")]
        patient = calls[inputs.index("patient")]
        saw["remaining"] = (hasty.remaining, patient.remaining)
        # Work until the hasty caller's deadline has passed: only its call is withdrawn.
        deadline = time.monotonic() + 20
        while not hasty.cancelled and time.monotonic() < deadline:
            time.sleep(0.01)
        saw["cancelled"] = (hasty.cancelled, patient.cancelled)
        return [text.upper() for text in inputs]

    with client.serve(mixed):
        with ThreadPoolExecutor(2) as pool:
            hasty = pool.submit(client.invoke, "mixed", "hasty", timeout=0.5)
            patient = pool.submit(client.invoke, "mixed", "patient", timeout=60)
            with pytest.raises(mehr.DeadlineExceeded):
                hasty.result()
            assert patient.result().text() == "PATIENT"
    assert saw["cancelled"] == (True, False)
    assert saw["remaining"][0] < 1 < saw["remaining"][1]


def test_a_call_withdrawn_while_queued_never_reaches_the_handler(client):
    release = threading.Event()
    batches: List[List[bytes]] = []

    @mehr.function("busy", max_concurrency=1, batch=mehr.Batch(max_size=2, max_wait=0))
    def busy(inputs: list) -> list:
        batches.append(list(inputs))
        if inputs == [b"first"]:
            release.wait(20)
        return inputs

    with client.serve(busy) as serving:
        with ThreadPoolExecutor(2) as pool:
            first = pool.submit(client.invoke, "busy", b"first", timeout=60)
            eventually("the first batch runs", lambda: batches)
            # The only handler slot is busy: this call waits in the SDK's queue, and its
            # deadline passes there.
            with pytest.raises(mehr.DeadlineExceeded):
                client.invoke("busy", b"queued", timeout=0.5)
            release.set()
            assert first.result().output == b"first"
        assert client.invoke("busy", b"third", timeout=30).output == b"third"
        assert serving.batch_stats()["busy"]["withdrawn_while_queued"] == 1
    assert batches == [[b"first"], [b"third"]]


def test_async_batched_handlers_merge_and_are_cancelled_when_every_caller_left(client):
    cancelled = threading.Event()
    sizes: List[int] = []

    @mehr.function("alen", batch=mehr.Batch(max_size=4, max_wait=5.0))
    async def alen(texts: List[str]) -> List[int]:
        sizes.append(len(texts))
        await asyncio.sleep(0)
        return [len(text) for text in texts]

    @mehr.function("asleep", batch=mehr.Batch(max_size=2, max_wait=0))
    async def asleep(inputs: list) -> list:
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            cancelled.set()
            raise
        return inputs

    with client.serve(alen, asleep):
        assert [r.json() for r in call_all(client, "alen", ["a", "bb", "ccc", "dddd"])] == [1, 2, 3, 4]
        with pytest.raises(mehr.DeadlineExceeded):
            client.invoke("asleep", b"x", timeout=0.3)
        assert cancelled.wait(10), "nobody waits for the batch: its task is cancelled"
    assert sizes == [4]


def test_batched_functions_serve_from_async_code(client):
    async def main() -> list:
        @mehr.function("aupper", batch=mehr.Batch(max_size=3, max_wait=5.0))
        async def aupper(texts: List[str]) -> List[str]:
            return [t.upper() for t in texts]

        aclient = await mehr.connect_async(client.target)
        async with await aclient.serve(aupper):
            results = await asyncio.gather(*(aclient.invoke("aupper", t, timeout=30) for t in ["x", "y", "z"]))
            return [r.text() for r in results]

    assert asyncio.run(main()) == ["X", "Y", "Z"]


def test_batched_outputs_may_be_buffers_and_calls_cannot_stream(client):
    @mehr.function("floats", batch=mehr.Batch(max_size=1, max_wait=0))
    def floats(inputs: list, calls: list) -> list:
        with pytest.raises(mehr.FailedPrecondition, match="batched function cannot send partial output"):
            calls[0].send(b"partial")
        return [array.array("f", [float(len(data))]) for data in inputs]

    with client.serve(floats):
        assert array.array("f", client.invoke("floats", b"abc", timeout=30).output).tolist() == [3.0]


def test_the_queue_bound_sizes_the_registration_and_the_daemon_queues_the_rest(client):
    release = threading.Event()
    sizes: List[int] = []

    @mehr.function("bounded", max_concurrency=2, batch=mehr.Batch(max_size=2, max_wait=0, max_queue=3))
    def bounded(inputs: list) -> list:
        sizes.append(len(inputs))
        release.wait(20)
        return inputs

    with client.serve(bounded) as serving:
        offered = {f.function_id: f for f in client.functions()}["bounded"]
        assert offered.max_concurrency == 2 * 2 + 3
        with ThreadPoolExecutor(10) as pool:
            pending = [pool.submit(client.invoke, "bounded", b"%d" % i, timeout=60) for i in range(10)]
            # Two batches run; the daemon holds what does not fit the SDK's bound.
            eventually("two batches run", lambda: len(sizes) == 2)
            release.set()
            assert sorted(f.result().output for f in pending) == sorted(b"%d" % i for i in range(10))
        stats = serving.batch_stats()["bounded"]
    assert stats["calls"] == 10 and stats["rejected_queue_full"] == 0
    assert max(sizes) <= 2


def test_batch_settings_are_checked_where_they_are_written():
    with pytest.raises(ValueError, match="max_size must be an int from 1 to 1024"):
        mehr.Batch(max_size=0)
    with pytest.raises(ValueError, match="max_wait must be 0 to 10 seconds"):
        mehr.Batch(max_wait=-1)
    with pytest.raises(ValueError, match=r"max_queue must be an int from max_size \(8\) to 65536"):
        mehr.Batch(max_size=8, max_queue=7)
    assert mehr.Batch(max_size=8, max_queue=8).max_queue == 8
    with pytest.raises(TypeError, match="must be a mehr.Batch"):
        mehr.function("x", batch=8)  # type: ignore[arg-type]

    @mehr.function("streamed", batch=mehr.Batch())
    def streamed(inputs: list):
        yield b"no"

    with pytest.raises(TypeError, match="cannot be a generator"):
        mehr.Service(streamed)

    @mehr.function("no-input", batch=mehr.Batch())
    def no_input() -> list:
        return []

    with pytest.raises(TypeError, match="takes the list of inputs"):
        mehr.Service(no_input)
