"""The node's object store from Python: put, get, stat, list, delete, files, and errors."""

from __future__ import annotations

import asyncio
import os

import pytest

import mehr


def test_put_get_stat_list_delete(client):
    stored = client.put(b"hello, storage", name="greeting")
    info = stored.object
    assert not stored.already_stored
    assert len(info.id) == 64 and info.length == 14 and info.chunk_count == 1
    assert info.name == "greeting"
    assert client.get(info.id) == b"hello, storage"
    assert client.get(info.id, offset=7, length=7) == b"storage"
    assert client.get(bytes.fromhex(info.id), offset=7) == b"storage"
    assert client.stat(info.id).length == 14
    again = client.put("hello, storage")
    assert again.already_stored and again.object.id == info.id and again.object.name == "greeting"

    other = client.put(bytearray(b"second"))
    page = client.list_objects()
    assert [o.id for o in page.objects] == [info.id, other.object.id]
    assert page.next_page_token is None
    first = client.list_objects(page_size=1)
    assert [o.id for o in first.objects] == [info.id] and first.next_page_token
    second = client.list_objects(page_size=1, page_token=first.next_page_token)
    assert [o.id for o in second.objects] == [other.object.id]
    by_id = client.list_objects(order="id")
    assert [o.id for o in by_id.objects] == sorted([info.id, other.object.id])

    assert client.delete(info.id).id == info.id
    with pytest.raises(mehr.NotFound):
        client.get(info.id)
    with pytest.raises(mehr.NotFound) as missing:
        client.stat(info.id)
    # The daemon's stable reason and its facts, for programs.
    assert missing.value.reason == "OBJECT_NOT_FOUND"
    assert missing.value.domain == "mehr.v1"
    assert missing.value.metadata["id"] == info.id
    assert missing.value.retry_delay is None

    with pytest.raises(mehr.InvalidArgument) as garbled:
        client.list_objects(page_token="not a token")
    assert garbled.value.reason == "PAGE_TOKEN_INVALID"
    assert garbled.value.metadata["field"] == "page_token"
    with pytest.raises(mehr.InvalidArgument) as mismatch:
        client.list_objects(order="id", page_token=first.next_page_token)
    assert mismatch.value.reason == "PAGE_TOKEN_MISMATCH"


def test_files_stream_to_and_from_the_node(client, workdir):
    data = os.urandom(3 * 1024 * 1024 + 17)
    source = workdir / "source.bin"
    source.write_bytes(data)
    stored = client.put_file(source, name="random")
    assert stored.object.length == len(data)
    target = workdir / "copy.bin"
    assert client.get_to_file(stored.object.id, target) == len(data)
    assert target.read_bytes() == data
    assert client.get_to_file(stored.object.id, workdir / "tail.bin", offset=len(data) - 17) == 17
    assert (workdir / "tail.bin").read_bytes() == data[-17:]
    with pytest.raises(FileNotFoundError):
        client.put_file(workdir / "missing.bin")


def test_bad_ids_and_arguments_are_invalid(client):
    with pytest.raises(mehr.InvalidArgument, match="not hex"):
        client.stat("zz" * 32)
    with pytest.raises(mehr.InvalidArgument, match="has 3 bytes, expected 32"):
        client.stat("abcdef")
    with pytest.raises(TypeError, match="hex str or bytes"):
        client.stat(12)
    with pytest.raises(mehr.InvalidArgument, match="order"):
        client.list_objects(order="size")


def test_async_storage(daemon):
    async def main() -> None:
        client = await daemon.async_client()
        stored = await client.put(b"async bytes")
        assert await client.get(stored.object.id) == b"async bytes"
        assert (await client.stat(stored.object.id)).length == 11
        assert [o.id for o in (await client.list_objects()).objects] == [stored.object.id]
        await client.delete(stored.object.id)
        with pytest.raises(mehr.NotFound):
            await client.get(stored.object.id)

    asyncio.run(main())
