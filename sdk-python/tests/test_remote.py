"""Serving on one node and invoking from another: `invoke` with the default placement runs a
function this node lacks on a provider found on the mesh, and says who ran it and what it cost;
a consumer that cannot pay is refused once its unpaid dues exceed the provider's credit."""

from __future__ import annotations

import pytest

import mehr
from conftest import eventually

# Each call's price: the provider's default credit (`market.consumer_credit_umhr`, 100 000 μMHR)
# covers the dues of the first three calls (0, 40 000 and 80 000 owed when each is asked), not
# those of a fourth (120 000 owed).
PRICE = 40_000


def test_serve_on_a_invoke_from_b(linked_daemons):
    a, b = linked_daemons

    @mehr.function("remote.upper", description="Upper-cases text", max_concurrency=4, price_umhr=PRICE)
    def upper(text: str) -> str:
        return text.upper()

    a_client, b_client = a.client(), b.client()
    a_id = a_client.info().node_id
    with a_client.serve(upper):
        # B knows A as a neighbour before it can route a call to it.
        eventually("A as B's neighbour", lambda: any(n.node_id == a_id for n in b_client.neighbours()), timeout=30)
        offers = eventually(
            "remote.upper discovered",
            lambda: b_client.discover("remote.upper", max_price=PRICE),
            timeout=60,
        )
        assert offers[0].node_id == a_id and offers[0].unit_price_umhr == PRICE and offers[0].hops == 1
        with pytest.raises(mehr.InvalidArgument):
            b_client.discover(kind="teleport")
        assert b_client.balance().free_umhr == 0  # no genesis allocation in this network
        result = eventually(
            "remote.upper found on the mesh",
            lambda: _try_invoke(b_client, "remote.upper", "over the mesh"),
            timeout=60,
        )
        assert result.text() == "OVER THE MESH"
        assert result.metering is not None and result.metering.provider_node_id == a_id
        assert result.remote is not None
        assert [p.node_id for p in result.remote.providers] == [a_id]
        assert result.remote.providers[0].outcome == "agreed"
        assert result.remote.charged_umhr == PRICE

        # Local placement never leaves the node.
        with pytest.raises(mehr.NotFound):
            b_client.invoke("remote.upper", "x", placement="local")
        # A bad tier is the caller's mistake.
        with pytest.raises(mehr.InvalidArgument):
            b_client.invoke("remote.upper", "x", placement="mesh", tier="redundant:1")

        # B has no money, so its charges stay owed: served while they are within A's credit,
        # refused (and told why) once they exceed it.
        for text in ["second", "third"]:
            served = b_client.invoke("remote.upper", text, timeout=30)
            assert served.text() == text.upper() and served.remote.charged_umhr == PRICE
        with pytest.raises(mehr.FailedPrecondition) as refused:
            b_client.invoke("remote.upper", "fourth", timeout=30)
        assert refused.value.reason == "PAYMENT_OVERDUE"
        assert "100000" in refused.value.message


def _try_invoke(client: mehr.Client, function: str, text: str):
    try:
        return client.invoke(function, text, timeout=30)
    except mehr.NotFound:
        return None  # A's advert has not reached B yet
