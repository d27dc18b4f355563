"""Messaging between two daemons linked by TCP: listen on one, send from the other, read the
messages with `for` and `async for`."""

from __future__ import annotations

import asyncio

import pytest

import mehr


def test_send_and_subscribe_across_two_nodes(linked_daemons):
    a, b = linked_daemons
    sender, receiver = a.client(), b.client()
    with receiver.listen("sdk.inbox", announce=True) as inbox:
        assert len(inbox.destination) == 32
        result = sender.send(inbox.destination, b"hello from A", timeout=30)
        assert result.delivered and result.method in ("packet", "link")
        message = next(inbox)
        assert message.payload == b"hello from A"
        assert bytes(message) == b"hello from A"
        # One path only, so every policy takes it: one hop, straight to the destination.
        cheapest = sender.send(inbox.destination, b"cheaply", timeout=30, policy="cheapest")
        assert cheapest.delivered and cheapest.hops == 1
        assert cheapest.next_hop == inbox.destination
        assert next(inbox).payload == b"cheaply"
        # Large enough for a link: arrives in one message, with the link's id.
        big = bytes(range(256)) * 20
        assert sender.send(inbox.destination, big, timeout=60).method == "link"
        message = next(inbox)
        assert message.payload == big and message.link_id is not None and len(message.link_id) == 32
    with pytest.raises(StopIteration):
        next(inbox)


def test_async_iteration(linked_daemons):
    a, b = linked_daemons

    async def main() -> list:
        sender, receiver = await a.async_client(), await b.async_client()
        inbox = await receiver.listen("sdk.async", announce=True)
        got = []
        async with inbox:
            for n in range(3):
                await sender.send(inbox.destination, f"message {n}", timeout=30)
            async for message in inbox:
                got.append(message.payload)
                if len(got) == 3:
                    break
        return got

    assert asyncio.run(main()) == [b"message 0", b"message 1", b"message 2"]


def test_send_errors(client):
    with pytest.raises(mehr.InvalidArgument, match="destination has 2 bytes"):
        client.send("abcd", b"x")
    with pytest.raises(mehr.InvalidArgument, match="policy must be"):
        client.send("00" * 16, b"x", policy="scenic")
    with pytest.raises(mehr.MehrError):
        # Nobody announces this destination: no path within the timeout.
        client.send("00" * 16, b"x", timeout=0.5)
