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


def _details(error):
    """The google.rpc.Status of a failed call, decoded from its grpc-status-details-bin trailer
    by grpcio-status, and its ErrorInfo, BadRequest and RetryInfo details."""
    from google.rpc import error_details_pb2
    from grpc_status import rpc_status

    status = rpc_status.from_call(error)
    assert status is not None, "the status carries no grpc-status-details-bin trailer"
    assert status.code == error.code().value[0]
    found = {}
    for detail in status.details:
        for kind in (error_details_pb2.ErrorInfo, error_details_pb2.BadRequest, error_details_pb2.RetryInfo):
            if detail.Is(kind.DESCRIPTOR):
                message = kind()
                detail.Unpack(message)
                found[kind.__name__] = message
    return found


def test_errors_carry_google_rpc_details(daemon, mehr_stubs):
    from mehr.v1 import storage_pb2, storage_pb2_grpc

    auth = [("authorization", f"Bearer {daemon.token}")]
    with grpc.insecure_channel(daemon.address) as channel:
        stub = storage_pb2_grpc.StorageServiceStub(channel)

        # No token: the reason says which of the two token problems it is.
        try:
            stub.StatObject(storage_pb2.StatObjectRequest(id=bytes(32)), timeout=5)
            raise AssertionError("a call without the token must fail")
        except grpc.RpcError as error:
            assert error.code() == grpc.StatusCode.UNAUTHENTICATED
            info = _details(error)["ErrorInfo"]
            assert (info.reason, info.domain) == ("TOKEN_MISSING", "mehr.v1")

        # A malformed field: INVALID_ARGUMENT, reason and a BadRequest naming the field.
        try:
            stub.StatObject(storage_pb2.StatObjectRequest(id=b"short"), metadata=auth, timeout=5)
            raise AssertionError("a 5-byte id must be refused")
        except grpc.RpcError as error:
            assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
            details = _details(error)
            assert details["ErrorInfo"].reason == "INVALID_FIELD"
            assert [v.field for v in details["BadRequest"].field_violations] == ["id"]

        # Something missing: NOT_FOUND with the object's id in the metadata.
        try:
            stub.StatObject(storage_pb2.StatObjectRequest(id=bytes(32)), metadata=auth, timeout=5)
            raise AssertionError("an unknown object must be NOT_FOUND")
        except grpc.RpcError as error:
            assert error.code() == grpc.StatusCode.NOT_FOUND
            info = _details(error)["ErrorInfo"]
            assert info.reason == "OBJECT_NOT_FOUND"
            assert info.metadata["id"] == "00" * 32

        # A page token from another list (or garbage) is refused as such.
        try:
            stub.ListObjects(storage_pb2.ListObjectsRequest(page_token="garbage"), metadata=auth, timeout=5)
            raise AssertionError("a garbage page token must be refused")
        except grpc.RpcError as error:
            assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
            details = _details(error)
            assert details["ErrorInfo"].reason == "PAGE_TOKEN_INVALID"
            assert details["BadRequest"].field_violations[0].field == "page_token"


def test_unix_socket_needs_default_authority(daemon, mehr_stubs):
    """grpcio sends the socket path as `:authority`, which h2 (under tonic) refuses before any
    server code runs; with `grpc.default_authority` set to "localhost" the socket works, with
    no token (the socket is owner-only)."""
    from mehr.v1 import node_pb2, node_pb2_grpc

    target = f"unix://{daemon.data_dir / 'mehrd.sock'}"
    with grpc.insecure_channel(target, options=[("grpc.default_authority", "localhost")]) as channel:
        reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5)
        assert reply.status == health_pb2.HealthCheckResponse.SERVING
        info = node_pb2_grpc.NodeServiceStub(channel).GetInfo(node_pb2.GetInfoRequest(), timeout=5)
        assert len(info.identity_hash) == 16


def test_scoped_token_is_refused_with_error_info(daemon, mehr_stubs):
    """A readonly token minted over the socket reads, and is refused PERMISSION_DENIED with
    reason SCOPE_DENIED on a pay method."""
    from mehr.v1 import admin_pb2, admin_pb2_grpc, ledger_pb2, ledger_pb2_grpc

    socket = f"unix://{daemon.data_dir / 'mehrd.sock'}"
    with grpc.insecure_channel(socket, options=[("grpc.default_authority", "localhost")]) as channel:
        minted = admin_pb2_grpc.AdminServiceStub(channel).CreateToken(
            admin_pb2.CreateTokenRequest(scopes=[admin_pb2.TOKEN_SCOPE_READONLY]), timeout=5
        )
    auth = [("authorization", f"Bearer {minted.secret}")]
    with grpc.insecure_channel(daemon.address) as channel:
        ledger = ledger_pb2_grpc.LedgerServiceStub(channel)
        ledger.GetBalance(ledger_pb2.GetBalanceRequest(), metadata=auth, timeout=5)
        try:
            ledger.Pay(ledger_pb2.PayRequest(), metadata=auth, timeout=5)
            raise AssertionError("Pay with a readonly token must fail")
        except grpc.RpcError as error:
            assert error.code() == grpc.StatusCode.PERMISSION_DENIED
            info = _details(error)["ErrorInfo"]
            assert info.reason == "SCOPE_DENIED"
            assert info.metadata["required_scope"] == "pay"
