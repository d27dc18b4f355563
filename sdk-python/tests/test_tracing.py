"""The SDK carries the caller's trace: with `opentelemetry-api` installed, every call made while
a span is active sends its W3C `traceparent`, and the daemon's span of the call (exported to a
real OTLP receiver) is that span's child."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tests" / "python"))

from otlp_receiver import SpanReceiver  # noqa: E402

from conftest import Daemon, eventually, mehrd_binary  # noqa: E402

trace = pytest.importorskip("opentelemetry.trace")


@pytest.fixture
def traced_daemon(tmp_path):
    receiver = SpanReceiver()
    daemon = Daemon(
        mehrd_binary(),
        tmp_path / "node",
        config=f'[telemetry]\notlp_endpoint = "{receiver.endpoint}"\n'
        # every trace the node starts is recorded (the default samples one in ten)
        'sample_ratio = 1.0\n',
        env={"OTEL_BSP_SCHEDULE_DELAY": "100"},
    )
    try:
        yield daemon, receiver
    finally:
        daemon.stop()
        receiver.stop()


def test_calls_inside_a_span_continue_its_trace(traced_daemon):
    daemon, receiver = traced_daemon
    caller = trace.SpanContext(
        trace_id=0x0AF7651916CD43DD8448EB211C80319C,
        span_id=0xB7AD6B7169203331,
        is_remote=False,
        trace_flags=trace.TraceFlags(trace.TraceFlags.SAMPLED),
    )
    client = daemon.client()
    client.info()  # outside any span: a trace of its own
    with trace.use_span(trace.NonRecordingSpan(caller)):
        client.info()

    def children():
        return [
            span
            for _, span in receiver.spans
            if span.name == "mehr.v1.NodeService/GetInfo" and span.trace_id == caller.trace_id.to_bytes(16, "big")
        ] or None

    spans = eventually("the daemon's span under the caller's", children, timeout=20)
    assert len(spans) == 1
    assert spans[0].parent_span_id == caller.span_id.to_bytes(8, "big")
    # The call outside the span is exported too, in a trace of its own.
    others = eventually(
        "both GetInfo spans",
        lambda: (lambda found: found if len(found) == 2 else None)(
            [s for _, s in receiver.spans if s.name == "mehr.v1.NodeService/GetInfo"]
        ),
    )
    assert others[0].trace_id != others[1].trace_id
