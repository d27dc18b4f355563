"""fork(): objects from the parent refuse to work in the child with a clear error; the child
connects again and works; the parent is unaffected."""

from __future__ import annotations

import multiprocessing
import os
import sys

import pytest

import mehr

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="fork() is POSIX only")


def _in_child(body) -> int:
    """Runs `body` in a forked child; returns its exit code (0: all assertions held)."""
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            body()
            code = 0
        except BaseException as error:  # noqa: BLE001 - reported through the exit code
            print(f"child failed: {error!r}", file=sys.stderr, flush=True)
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


def test_a_forked_child_refuses_the_parents_client_and_connects_anew(daemon):
    client = daemon.client()
    node_id = client.info().node_id
    subscription = client.listen("fork.inbox")

    def child() -> None:
        with pytest.raises(mehr.FailedPrecondition, match=r"cannot be used in process \d+, a fork"):
            client.info()
        with pytest.raises(mehr.FailedPrecondition, match="Subscription"):
            next(subscription)
        fresh = mehr.connect(data_dir=daemon.data_dir)
        assert fresh.info().node_id == node_id

    assert _in_child(child) == 0
    # The parent's connection and stream still work.
    assert client.info().node_id == node_id
    subscription.close()


def test_serving_in_the_parent_goes_on_while_children_work(daemon):
    @mehr.function("forked.echo")
    def echo(data):
        return data

    client = daemon.client()
    with client.serve(echo) as serving:

        def child() -> None:
            with pytest.raises(mehr.FailedPrecondition):
                serving.stop()
            assert mehr.connect(data_dir=daemon.data_dir).invoke("forked.echo", b"from child").output == b"from child"

        assert _in_child(child) == 0
        assert client.invoke("forked.echo", b"from parent").output == b"from parent"
        assert serving.connected


def _worker(data_dir: str, queue) -> None:
    queue.put(mehr.connect(data_dir=data_dir).invoke("pool.square", "7").text())


def test_multiprocessing_fork_workers_connect_themselves(daemon):
    @mehr.function("pool.square")
    def square(n: str) -> str:
        return str(int(n) ** 2)

    context = multiprocessing.get_context("fork")
    with daemon.client().serve(square):
        queue = context.Queue()
        workers = [context.Process(target=_worker, args=(str(daemon.data_dir), queue)) for _ in range(2)]
        for worker in workers:
            worker.start()
        results = [queue.get(timeout=60) for _ in workers]
        for worker in workers:
            worker.join(30)
            assert worker.exitcode == 0
    assert results == ["49", "49"]
