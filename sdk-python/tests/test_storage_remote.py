"""Remote storage from Python: an object replicated onto two providers (a 1 + 1 code), its shards
challenged, and read back from the providers once the local copy is gone."""

from __future__ import annotations

import pytest

import mehr
from conftest import Daemon, eventually, free_port

STORAGE = "[storage]\nchallenge_interval_secs = 0\nremote_timeout_secs = 30\n"


def test_replicate_challenge_and_read_back(mehrd_bin, workdir):
    port = free_port()
    server = f'[[interfaces]]\ntype = "tcp_server"\nlisten_ip = "127.0.0.1"\nlisten_port = {port}\n'
    client = f'[[interfaces]]\ntype = "tcp_client"\ntarget_host = "127.0.0.1"\ntarget_port = {port}\n'
    consumer = Daemon(mehrd_bin, workdir / "consumer", config=STORAGE + server)
    providers = [Daemon(mehrd_bin, workdir / f"provider{i}", config=STORAGE + client) for i in range(2)]
    try:
        c = consumer.client()
        ids = [p.client().info().node_id for p in providers]
        for node in ids:
            eventually("a provider as a neighbour", lambda: any(n.node_id == node for n in c.neighbours()), timeout=30)
            eventually(
                "the consumer known to the provider",
                lambda: any(n.node_id == c.info().node_id for n in providers[ids.index(node)].client().neighbours()),
                timeout=30,
            )
        data = bytes(range(256)) * 40
        stored = c.put(data)
        placement = c.replicate(stored.object.id, ids, data_shards=1, parity_shards=1)
        assert (placement.data_shards, placement.parity_shards) == (1, 1)
        assert sorted(s.provider for s in placement.shards) == sorted(ids)
        assert all(s.health == "healthy" for s in placement.shards)

        results = c.challenge(stored.object.id)
        assert len(results) == 2 and all(r.passed for r in results), results
        results = c.challenge(stored.object.id, timeout=20.0)
        assert len(results) == 2 and all(r.passed for r in results), results
        with pytest.raises(mehr.InvalidArgument):
            c.challenge(stored.object.id, timeout=-1.0)

        c.delete(stored.object.id)  # the local copy; the placement stays
        assert c.get(stored.object.id) == data
        assert c.list_objects().objects == []
        assert [o.id for o in c.list_objects(placed=True).objects] == [stored.object.id]
        with pytest.raises(mehr.InvalidArgument):
            c.replicate(stored.object.id, ["zz"])
    finally:
        for p in providers:
            p.stop()
        consumer.stop()
