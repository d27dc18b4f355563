"""An outside witness of the API: the reference gRPC implementation (grpcio) talks to mehrd."""

from __future__ import annotations

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc


def test_health_is_open_and_serving(daemon):
    with grpc.insecure_channel(daemon.address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        for service in ("", "mehr.v1.NodeService"):
            reply = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
            assert reply.status == health_pb2.HealthCheckResponse.SERVING


def test_reflection_lists_the_services(daemon):
    with grpc.insecure_channel(daemon.address) as channel:
        stub = reflection_pb2_grpc.ServerReflectionStub(channel)
        request = reflection_pb2.ServerReflectionRequest(list_services="")
        reply = next(iter(stub.ServerReflectionInfo(iter([request]), timeout=5)))
        names = {s.name for s in reply.list_services_response.service}
        assert {"mehr.v1.NodeService", "grpc.health.v1.Health"} <= names


def test_get_info_with_generated_stubs_and_token(daemon, mehr_stubs):
    from mehr.v1 import node_pb2, node_pb2_grpc

    with grpc.insecure_channel(daemon.address) as channel:
        stub = node_pb2_grpc.NodeServiceStub(channel)
        try:
            stub.GetInfo(node_pb2.GetInfoRequest(), timeout=5)
            raise AssertionError("GetInfo without a token must fail")
        except grpc.RpcError as error:
            assert error.code() == grpc.StatusCode.UNAUTHENTICATED
            assert "bearer token" in error.details()

        info = stub.GetInfo(
            node_pb2.GetInfoRequest(), metadata=[("authorization", f"Bearer {daemon.token}")], timeout=5
        )
        assert len(info.identity_hash) == 16
        assert len(info.ed25519_public_key) == 32
        assert info.participation_level == node_pb2.PARTICIPATION_LEVEL_L2_FULL
        assert any(e.address == daemon.address and e.requires_token for e in info.api_endpoints)
