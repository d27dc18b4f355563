"""A small OpenTelemetry collector: an OTLP/gRPC trace receiver built on the official protos
(`opentelemetry-proto`) and grpcio. Used by tests/python/test_telemetry.py (imported) and by the
telemetry benchmark (run as a script: `python otlp_receiver.py PORT`, until SIGTERM; it prints
how many spans it received).
"""

from __future__ import annotations

import signal
import sys
import threading
from concurrent import futures

import grpc


class SpanReceiver:
    """An OTLP/gRPC trace receiver: keeps every span with its resource's attributes."""

    def __init__(self, port: int = 0) -> None:
        from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc

        receiver = self
        self.spans: list[tuple[dict, object]] = []
        self.lock = threading.Lock()

        class Service(trace_service_pb2_grpc.TraceServiceServicer):
            def Export(self, request, context):  # noqa: N802 (the proto's name)
                with receiver.lock:
                    for resource_spans in request.resource_spans:
                        resource = {a.key: a.value.string_value for a in resource_spans.resource.attributes}
                        for scope_spans in resource_spans.scope_spans:
                            for span in scope_spans.spans:
                                receiver.spans.append((resource, span))
                return trace_service_pb2.ExportTraceServiceResponse()

        self.port = port
        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        trace_service_pb2_grpc.add_TraceServiceServicer_to_server(Service(), self.server)
        self.port = self.server.add_insecure_port(f"127.0.0.1:{self.port}")
        self.server.start()

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def of_trace(self, trace_id: bytes) -> list[tuple[dict, object]]:
        with self.lock:
            return [(r, s) for r, s in self.spans if s.trace_id == trace_id]

    def stop(self) -> None:
        self.server.stop(grace=None)




if __name__ == "__main__":
    receiver = SpanReceiver(int(sys.argv[1]))
    stopped = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopped.set())
    print("ready", flush=True)
    stopped.wait()
    receiver.stop()
    print(f"received {len(receiver.spans)} spans", flush=True)
