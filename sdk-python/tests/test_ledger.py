"""The ledger from Python: two linked daemons that share a genesis allocation open a channel,
pay through it, and a function called across the mesh is paid through the same channel."""

from __future__ import annotations

import pytest

import mehr
from conftest import eventually

GENESIS = 10_000_000


def with_genesis(daemons) -> None:
    """Restarts `daemons` with a genesis allocation that lists them all (their ids are known
    only once they ran)."""
    ids = [d.client().info().node_id for d in daemons]
    table = "\n[ledger]\n" + "".join(
        f'[[ledger.genesis]]\nnode = "{node}"\namount_umhr = {GENESIS}\n' for node in ids
    )
    for d in daemons:
        d.stop()
        d.config_file.write_text(d.config_file.read_text() + table)
    for d in daemons:
        d.start()


def test_channel_open_pay_and_a_paid_call(linked_daemons):
    a, b = linked_daemons
    with_genesis([a, b])
    a_client, b_client = a.client(), b.client()
    a_id, b_id = a_client.info().node_id, b_client.info().node_id
    eventually("B as A's neighbour", lambda: any(n.node_id == b_id for n in a_client.neighbours()), timeout=30)
    assert a_client.balance().free_umhr == GENESIS
    assert a_client.channels() == []
    with pytest.raises(mehr.MehrError):
        a_client.pay(b_id, 100)  # no channel yet

    channel = a_client.open_channel(b_id, 1_000_000)
    assert (channel.peer, channel.role, channel.phase, channel.seq) == (b_id, "opener", "open", 0)
    paid = a_client.pay(b_id, 5_000)
    assert paid.paid_umhr == 5_000 and paid.balance_umhr == 1_000_000 - 5_000
    received = eventually(
        "B's side of the payment",
        lambda: next((c for c in b_client.channels() if c.peer == a_id and c.received_umhr == 5_000), None),
    )
    assert received.role == "acceptor"
    assert received.balance_umhr == 5_000 - 100  # the payee keeps 98 %
    with pytest.raises(mehr.InvalidArgument):
        a_client.pay("not hex", 1)
    # An idempotency key: the repeat answers with the first payment and moves nothing.
    keyed = a_client.pay(b_id, 2_000, request_id="test-ledger-pay")
    repeated = a_client.pay(b_id, 2_000, request_id="test-ledger-pay")
    assert keyed.paid_umhr == repeated.paid_umhr == 7_000
    with pytest.raises(mehr.InvalidArgument) as reused:
        a_client.pay(b_id, 3_000, request_id="test-ledger-pay")
    assert reused.value.reason == "REQUEST_ID_REUSED"

    # A function served on B and called from A: its charge is paid through the channel.
    @mehr.function("ledger.echo", price_umhr=1_000)
    def echo(data: bytes) -> bytes:
        return data

    with b_client.serve(echo):
        result = eventually("ledger.echo on the mesh", lambda: _try(a_client, "ledger.echo"), timeout=60)
        assert result.remote is not None and result.remote.charged_umhr == 1_000
        eventually(
            "the call paid through the channel",
            lambda: next((c for c in a_client.channels() if c.peer == b_id and c.paid_umhr == 8_000), None),
        )


def _try(client: mehr.Client, function: str):
    try:
        return client.invoke(function, b"x", placement="mesh", timeout=30)
    except mehr.NotFound:
        return None
