"""Telemetry with real receivers: a real Prometheus server (Debian's `prometheus`) scrapes the
`/metrics` endpoints of a three-node mesh and the values it stored are checked against what the
nodes did; a real OTLP/gRPC receiver built on the official OpenTelemetry protos
(`opentelemetry-proto`) takes the nodes' spans, and one trace links the caller, node A and node B
of a call that ran on the mesh.

The mesh is a line n0 — n1 — n2 over loopback TCP; every node exports its spans to the receiver
of this test and serves metrics on a port of its own.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Callable, Optional, TypeVar

import grpc
import pytest
from otlp_receiver import SpanReceiver

ROOT = Path(__file__).resolve().parents[2]
T = TypeVar("T")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def eventually(what: str, check: Callable[[], Optional[T]], timeout: float = 60.0) -> T:
    deadline = time.time() + timeout
    while True:
        value = check()
        if value is not None and value is not False:
            return value
        if time.time() > deadline:
            raise AssertionError(f"timed out waiting for: {what}")
        time.sleep(0.25)


def prometheus_binary() -> str:
    found = shutil.which("prometheus") or ("/usr/bin/prometheus" if Path("/usr/bin/prometheus").exists() else None)
    if not found:
        pytest.fail("no prometheus binary: deploy/setup.sh test installs Debian's `prometheus`")
    return found


# ---- the mesh -----------------------------------------------------------------------------


class Node:
    """One mehrd of the mesh, with its metrics port and its OTLP exporter pointed at the test."""

    def __init__(self, binary: str, root: Path, index: int, mesh_ports: list[int], otlp: str) -> None:
        self.index = index
        self.name = f"n{index}"
        self.data_dir = root / self.name
        self.api_port = free_port()
        self.address = f"127.0.0.1:{self.api_port}"
        self.metrics_port = free_port()
        config = (
            "[transport]\ncost_per_byte = 0.0\n\n"
            "[market]\ngossip_round_ms = 500\nbeacon_interval_ms = 1000\npull_timeout_ms = 1500\n"
            "heartbeat_interval_ms = 1000\nheartbeat_max_misses = 5\n\n"
            f'[metrics]\nlisten = "127.0.0.1:{self.metrics_port}"\n\n'
            f'[telemetry]\notlp_endpoint = "{otlp}"\n\n'
            f'[[interfaces]]\ntype = "tcp_server"\nlisten_ip = "127.0.0.1"\nlisten_port = {mesh_ports[index]}\n'
        )
        if index > 0:
            config += (
                f'\n[[interfaces]]\ntype = "tcp_client"\ntarget_host = "127.0.0.1"\n'
                f"target_port = {mesh_ports[index - 1]}\n"
            )
        self.config = root / f"{self.name}.toml"
        self.config.write_text(config)
        self.log = open(root / f"{self.name}.log", "w+")
        env = {k: v for k, v in os.environ.items() if not k.startswith(("MEHR_", "OTEL_"))}
        env.update(
            {
                "MEHR_LOG_LEVEL": "info",
                # How a deployment names its nodes in traces (Kubernetes: the pod name).
                "OTEL_RESOURCE_ATTRIBUTES": f"service.instance.id={self.name}",
                # Export batches every 200 ms instead of 5 s, so the test waits less.
                "OTEL_BSP_SCHEDULE_DELAY": "200",
            }
        )
        self.process = subprocess.Popen(
            [binary, "--data-dir", str(self.data_dir), "--config", str(self.config), "--api-listen", self.address],
            stdout=subprocess.DEVNULL,
            stderr=self.log,
            env=env,
        )
        deadline = time.time() + 30
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"mehrd exited early:\n{self.logs()}")
            try:
                if (self.data_dir / "api.token").exists():
                    with socket.create_connection(("127.0.0.1", self.api_port), timeout=1):
                        with socket.create_connection(("127.0.0.1", self.metrics_port), timeout=1):
                            break
            except OSError:
                pass
            if time.time() > deadline:
                raise RuntimeError(f"mehrd did not start:\n{self.logs()}")
            time.sleep(0.05)
        self.auth = [("authorization", f"Bearer {(self.data_dir / 'api.token').read_text().strip()}")]
        self.channel = grpc.insecure_channel(self.address)

    def logs(self) -> str:
        self.log.flush()
        self.log.seek(0)
        return self.log.read()

    def stop(self) -> None:
        self.channel.close()
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.log.close()


class Prometheus:
    """A real Prometheus server scraping the nodes every second, with its own storage dir."""

    def __init__(self, root: Path, nodes: list[Node]) -> None:
        self.port = free_port()
        config = root / "prometheus.yml"
        lines = ["global:", "  scrape_interval: 1s", "  scrape_timeout: 900ms", "scrape_configs:", "  - job_name: mehrd", "    static_configs:"]
        for node in nodes:
            lines += [f"      - targets: ['127.0.0.1:{node.metrics_port}']", f"        labels: {{node: {node.name}}}"]
        config.write_text("\n".join(lines) + "\n")
        self.log = open(root / "prometheus.log", "w+")
        self.process = subprocess.Popen(
            [
                prometheus_binary(),
                f"--config.file={config}",
                f"--storage.tsdb.path={root / 'prometheus-data'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                "--log.level=warn",
            ],
            stdout=subprocess.DEVNULL,
            stderr=self.log,
        )
        eventually("prometheus is ready", self._ready, timeout=60)

    def _ready(self) -> bool:
        if self.process.poll() is not None:
            self.log.seek(0)
            raise RuntimeError(f"prometheus exited:\n{self.log.read()}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/-/ready", timeout=2) as reply:
                return reply.status == 200
        except OSError:
            return False

    def query(self, promql: str) -> list[dict]:
        """An instant query through the HTTP API: the result vector."""
        url = f"http://127.0.0.1:{self.port}/api/v1/query?" + urllib.parse.urlencode({"query": promql})
        with urllib.request.urlopen(url, timeout=5) as reply:
            body = json.load(reply)
        assert body["status"] == "success", body
        return body["data"]["result"]

    def value(self, promql: str) -> Optional[float]:
        """The one value of `promql`, or None when it has no series (yet)."""
        result = self.query(promql)
        if not result:
            return None
        assert len(result) == 1, result
        return float(result[0]["value"][1])

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.log.close()


@pytest.fixture(scope="module")
def mesh(mehr_stubs):
    binary = os.environ.get("MEHRD_BIN")
    if not binary or not Path(binary).exists():
        pytest.fail("set MEHRD_BIN to the mehrd binary (tests/run.sh does)")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        receiver = SpanReceiver()
        mesh_ports = [free_port() for _ in range(3)]
        nodes: list[Node] = []
        prometheus = None
        try:
            for i in range(3):
                nodes.append(Node(binary, root, i, mesh_ports, receiver.endpoint))
            prometheus = Prometheus(root, nodes)
            yield nodes, prometheus, receiver, Path(binary)
        finally:
            if prometheus:
                prometheus.stop()
            for node in nodes:
                node.stop()
            receiver.stop()


def scraped_after(prometheus: Prometheus, node: Node, moment: float) -> None:
    """Waits until Prometheus holds a scrape of `node` taken after `moment` (Unix seconds)."""
    eventually(
        f"a scrape of {node.name} after {moment}",
        lambda: (prometheus.value(f'timestamp(mehr_build_info{{node="{node.name}"}})') or 0) > moment,
        timeout=20,
    )


# ---- metrics ------------------------------------------------------------------------------


def test_prometheus_scrapes_what_the_nodes_did(mesh):
    from mehr.v1 import node_pb2, node_pb2_grpc, storage_pb2, storage_pb2_grpc, transport_pb2, transport_pb2_grpc

    nodes, prometheus, _, _ = mesh
    # Prometheus reaches all three endpoints.
    up = eventually(
        "three targets up",
        lambda: (lambda r: r if len(r) == 3 and all(s["value"][1] == "1" for s in r) else None)(
            prometheus.query('up{job="mehrd"}')
        ),
    )
    assert {s["metric"]["node"] for s in up} == {"n0", "n1", "n2"}

    # API calls by method and code: 25 GetInfo, one NOT_FOUND, one call of a method that does
    # not exist (its label is _OTHER, whatever the code).
    n2 = nodes[2]
    node_stub = node_pb2_grpc.NodeServiceStub(n2.channel)
    for _ in range(25):
        node_stub.GetInfo(node_pb2.GetInfoRequest(), metadata=n2.auth, timeout=5)
    with pytest.raises(grpc.RpcError) as missing:
        storage_pb2_grpc.StorageServiceStub(n2.channel).StatObject(
            storage_pb2.StatObjectRequest(id=bytes(32)), metadata=n2.auth, timeout=5
        )
    assert missing.value.code() == grpc.StatusCode.NOT_FOUND
    unknown = n2.channel.unary_unary("/mehr.v1.NodeService/NoSuchMethod")
    with pytest.raises(grpc.RpcError):
        unknown(b"", metadata=n2.auth, timeout=5)

    calls = 'rpc_server_call_duration_seconds_count{{node="n2",rpc_method="{}",rpc_status_code="{}"}}'
    eventually(
        "25 GetInfo calls in Prometheus",
        lambda: prometheus.value(calls.format("mehr.v1.NodeService/GetInfo", "OK")) == 25,
        timeout=20,
    )
    assert prometheus.value(calls.format("mehr.v1.StorageService/StatObject", "NOT_FOUND")) == 1
    assert prometheus.value('sum(rpc_server_call_duration_seconds_count{node="n2",rpc_method="_OTHER"})') == 1
    # Every GetInfo took well under the histogram's top bucket, and the buckets add up.
    assert (
        prometheus.value(
            'rpc_server_call_duration_seconds_bucket{node="n2",rpc_method="mehr.v1.NodeService/GetInfo",'
            'rpc_status_code="OK",le="10.0"}'
        )
        == 25
    )
    # Nothing else was called on n0 and n1 from outside (the test's own probes are TCP connects).
    assert prometheus.value('sum(rpc_server_call_duration_seconds_count{node="n0"})') is None

    # The mesh forms: n1, in the middle, learns paths; Prometheus shows what GetStats says.
    n1 = nodes[1]
    transport = transport_pb2_grpc.TransportServiceStub(n1.channel)
    eventually(
        "n1 has paths to both ends",
        lambda: transport.GetStats(transport_pb2.GetStatsRequest(), metadata=n1.auth, timeout=5).paths >= 2,
    )

    # Counters scraped between two readings of the node's own counters lie between them.
    def interface_sums():
        reply = transport.ListInterfaces(
            transport_pb2.ListInterfacesRequest(page_size=1000), metadata=n1.auth, timeout=5
        )
        return (
            sum(i.tx_frames for i in reply.interfaces),
            sum(i.rx_frames for i in reply.interfaces),
            sum(i.tx_bytes for i in reply.interfaces),
        )

    before_stats = transport.GetStats(transport_pb2.GetStatsRequest(), metadata=n1.auth, timeout=5)
    before_interfaces = interface_sums()
    moment = time.time()
    scraped_after(prometheus, n1, moment)
    scraped = {
        "transmitted": prometheus.value('mehr_router_packets_total{node="n1",kind="transmitted"}'),
        "received": prometheus.value('mehr_router_packets_total{node="n1",kind="received"}'),
        "tx": prometheus.value('sum(mehr_interface_packets_total{node="n1",direction="tx"})'),
        "rx": prometheus.value('sum(mehr_interface_packets_total{node="n1",direction="rx"})'),
        "tx_bytes": prometheus.value('sum(mehr_interface_bytes_total{node="n1",direction="tx"})'),
        "paths": prometheus.value('mehr_routing_paths{node="n1"}'),
    }
    after_stats = transport.GetStats(transport_pb2.GetStatsRequest(), metadata=n1.auth, timeout=5)
    after_interfaces = interface_sums()
    assert before_stats.packets_transmitted <= scraped["transmitted"] <= after_stats.packets_transmitted, scraped
    assert before_stats.packets_received <= scraped["received"] <= after_stats.packets_received, scraped
    assert before_interfaces[0] <= scraped["tx"] <= after_interfaces[0], (scraped, before_interfaces)
    assert before_interfaces[1] <= scraped["rx"] <= after_interfaces[1], (scraped, before_interfaces)
    assert before_interfaces[2] <= scraped["tx_bytes"] <= after_interfaces[2], (scraped, before_interfaces)
    assert scraped["tx"] > 0 and scraped["rx"] > 0
    assert scraped["paths"] >= 2
    # The two interfaces of n1 (its server, whose accepted connection from n2 counts under
    # it, and its client to n0) are the only interface labels: no per-connection series.
    interfaces = {s["metric"]["interface"] for s in prometheus.query('mehr_interface_packets_total{node="n1"}')}
    assert len(interfaces) == 2, interfaces
    # Drops by reason: every reason has a series, so rates work from the first scrape.
    reasons = {s["metric"]["reason"] for s in prometheus.query('mehr_router_drops_total{node="n1"}')}
    assert {"malformed", "duplicate"} <= reasons or len(reasons) >= 10, reasons
    # Storage offered is the configured default; channels, balances, compute all present.
    assert prometheus.value('mehr_storage_offered_bytes{node="n1"}') == 10 * 2**30
    for series in (
        'mehr_ledger_balance_umhr{node="n1",kind="free"}',
        'mehr_ledger_tickets_won_total{node="n1"}',
        'mehr_compute_queue_depth{node="n1",queue="wasm"}',
        'mehr_storage_shards{node="n1",health="healthy"}',
        'mehr_gossip_links{node="n1"}',
        'mehr_build_info{node="n1"}',
    ):
        assert prometheus.value(series) is not None, series


# ---- traces -------------------------------------------------------------------------------


def export_caller_span(receiver: SpanReceiver, trace_id: bytes, span_id: bytes, start: int, end: int) -> None:
    """The caller's own span, exported to the same receiver the way an OTLP SDK would."""
    from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
    from opentelemetry.proto.common.v1 import common_pb2
    from opentelemetry.proto.resource.v1 import resource_pb2
    from opentelemetry.proto.trace.v1 import trace_pb2

    request = trace_service_pb2.ExportTraceServiceRequest(
        resource_spans=[
            trace_pb2.ResourceSpans(
                resource=resource_pb2.Resource(
                    attributes=[
                        common_pb2.KeyValue(key="service.name", value=common_pb2.AnyValue(string_value="python-caller"))
                    ]
                ),
                scope_spans=[
                    trace_pb2.ScopeSpans(
                        spans=[
                            trace_pb2.Span(
                                trace_id=trace_id,
                                span_id=span_id,
                                name="caller",
                                kind=trace_pb2.Span.SPAN_KIND_CLIENT,
                                start_time_unix_nano=start,
                                end_time_unix_nano=end,
                            )
                        ]
                    )
                ],
            )
        ]
    )
    with grpc.insecure_channel(f"127.0.0.1:{receiver.port}") as channel:
        trace_service_pb2_grpc.TraceServiceStub(channel).Export(request, timeout=5)


def test_one_trace_spans_caller_node_a_mesh_and_node_b(mesh):
    from mehr.v1 import compute_pb2, compute_pb2_grpc

    nodes, prometheus, receiver, binary = mesh
    n0, n2 = nodes[0], nodes[2]
    # Node B (n2) offers a WASM function; node A (n0) does not, so a call on A runs on B.
    deploy = subprocess.run(
        [str(binary.with_name("mehr")), "--data-dir", str(n2.data_dir), "deploy",
         str(ROOT / "daemon" / "tests" / "wasm" / "fixture.wat"), "--name", "fx"],
        capture_output=True, text=True, timeout=60,
    )
    assert deploy.returncode == 0, deploy.stderr

    compute = compute_pb2_grpc.ComputeServiceStub(n0.channel)

    def call_through_the_mesh():
        trace_id, span_id = secrets.token_bytes(16), secrets.token_bytes(8)
        traceparent = f"00-{trace_id.hex()}-{span_id.hex()}-01"
        start = time.time_ns()
        try:
            reply = compute.Invoke(
                compute_pb2.InvokeRequest(
                    function_id="fx/reverse", input=b"stressed", placement=compute_pb2.PLACEMENT_MESH
                ),
                metadata=[*n0.auth, ("traceparent", traceparent)],
                timeout=30,
            )
        except grpc.RpcError:
            return None
        export_caller_span(receiver, trace_id, span_id, start, time.time_ns())
        return reply, trace_id, span_id

    reply, trace_id, caller_span = eventually("a call on n0 that runs on n2", call_through_the_mesh, timeout=90)
    assert reply.output == b"desserts"
    assert reply.remote.providers, reply

    def the_whole_trace():
        spans = receiver.of_trace(trace_id)
        names = {(r.get("service.instance.id", r.get("service.name")), s.name) for r, s in spans}
        wanted = {
            ("python-caller", "caller"),
            ("n0", "mehr.v1.ComputeService/Invoke"),
            ("n0", "mesh.request"),
            ("n2", "mesh.serve"),
            ("n2", "function.run"),
        }
        return spans if wanted <= names else None

    spans = eventually("the spans of caller, n0 and n2 under one trace id", the_whole_trace, timeout=30)
    by_id = {s.span_id: (r, s) for r, s in spans}

    def one(instance: str, name: str):
        found = [s for r, s in spans if r.get("service.instance.id") == instance and s.name == name]
        assert found, (instance, name)
        return found[0]

    from opentelemetry.proto.trace.v1 import trace_pb2

    api = one("n0", "mehr.v1.ComputeService/Invoke")
    assert api.parent_span_id == caller_span, "node A's server span continues the caller's traceparent"
    assert api.kind == trace_pb2.Span.SPAN_KIND_SERVER
    attributes = {a.key: a.value.string_value for a in api.attributes}
    assert attributes["rpc.method"] == "mehr.v1.ComputeService/Invoke"
    assert attributes["rpc.status_code"] == "OK"
    assert attributes["rpc.system.name"] == "grpc"

    serve = one("n2", "mesh.serve")
    request_span = by_id[serve.parent_span_id][1]
    assert request_span.name == "mesh.request", "node B's span is a child of node A's job"
    assert by_id[serve.parent_span_id][0]["service.instance.id"] == "n0"
    assert one("n2", "function.run").parent_span_id == serve.span_id
    # mesh.request sits under the API call (through no, one or more market spans).
    ancestor = request_span
    while ancestor.parent_span_id in by_id and ancestor.span_id != api.span_id:
        ancestor = by_id[ancestor.parent_span_id][1]
    assert ancestor.span_id == api.span_id
    # The market's own steps are in the trace too.
    names = {s.name for _, s in spans}
    assert "market.agree" in names, names

    # The agreement the call formed is visible in Prometheus on both ends.
    eventually(
        "an active agreement on n0 and n2 in Prometheus",
        lambda: (prometheus.value('mehr_market_agreements{node="n0",state="active"}') or 0) >= 1
        and (prometheus.value('mehr_market_agreements{node="n2",state="active"}') or 0) >= 1,
        timeout=20,
    )
    assert (prometheus.value('mehr_market_jobs_total{node="n2",result="served"}') or 0) >= 1


def test_sampling_follows_the_callers_flag_and_the_default_ratio(mesh):
    """A caller's `sampled` flag decides (01: recorded, 00: no span at all); calls without a
    `traceparent` are recorded at `telemetry.sample_ratio`, 0.1 by default."""
    from mehr.v1 import node_pb2, node_pb2_grpc

    nodes, _prometheus, receiver, _binary = mesh
    n1 = nodes[1]
    stub = node_pb2_grpc.NodeServiceStub(n1.channel)

    def get_info(traceparent: Optional[str] = None) -> None:
        metadata = [*n1.auth] + ([("traceparent", traceparent)] if traceparent else [])
        stub.GetInfo(node_pb2.GetInfoRequest(), metadata=metadata, timeout=10)

    def get_info_spans() -> int:
        with receiver.lock:
            return sum(
                1
                for r, s in receiver.spans
                if r.get("service.instance.id") == "n1" and s.name == "mehr.v1.NodeService/GetInfo"
            )

    unsampled = secrets.token_bytes(16)
    get_info(f"00-{unsampled.hex()}-{secrets.token_bytes(8).hex()}-00")
    before = get_info_spans()
    calls = 300
    for _ in range(calls):
        get_info()
    # A sampled marker last: once its span is in, every span of the calls before it is too
    # (calls end in order and the batch exporter keeps that order).
    marker = secrets.token_bytes(16)
    get_info(f"00-{marker.hex()}-{secrets.token_bytes(8).hex()}-01")
    eventually("the sampled marker call's span", lambda: receiver.of_trace(marker) or None, timeout=30)

    assert receiver.of_trace(unsampled) == [], "a caller's unsampled trace is not recorded"
    recorded = get_info_spans() - before - 1
    # Binomial(300, 0.1): mean 30; outside 5..90 has a probability far below 1e-6.
    assert 5 <= recorded <= 90, f"{recorded} of {calls} calls without traceparent recorded at ratio 0.1"


def test_the_grafana_dashboard_queries_what_the_nodes_export(mesh):
    """Every query of deploy/grafana/mehrd.json is valid PromQL for this Prometheus, and every
    metric it names is one the nodes export."""
    import re

    from mehr.v1 import node_pb2, node_pb2_grpc

    nodes, prometheus, _, _ = mesh
    node_pb2_grpc.NodeServiceStub(nodes[1].channel).GetInfo(node_pb2.GetInfoRequest(), metadata=nodes[1].auth, timeout=5)
    dashboard = json.loads((ROOT / "deploy" / "grafana" / "mehrd.json").read_text())
    url = f"http://127.0.0.1:{prometheus.port}/api/v1/label/__name__/values"

    def names():
        found = set(json.load(urllib.request.urlopen(url, timeout=5))["data"])
        return found if {"mehr_build_info", "rpc_server_call_duration_seconds_count"} <= found else None

    exported = eventually("the nodes' metric names in Prometheus", names, timeout=30)
    queries = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    assert len(queries) >= 20
    named = set()
    for query in queries:
        promql = query.replace("$__rate_interval", "1m").replace("$instance", ".*")
        prometheus.query(promql)  # fails on invalid PromQL
        for name in re.findall(r"\b((?:mehr|rpc)_[a-z_]+)\{", promql):
            assert name in exported, f"{name} (in `{query}`) is not exported"
            named.add(name)
    assert len(named) >= 25, named
