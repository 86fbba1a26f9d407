"""Binary fields (`Vec<u8>`) travel as Python `bytes` both ways."""
import asyncio

import knafeh
import knafeh_probe
from conftest import probe_client


class BlobImpl:
    def blob(self, req):
        data = req["data"]
        return {"data": bytes(reversed(data)), "tag": type(data).__name__}


def test_vec_u8_fields_are_bytes(tmp_path):
    async def go():
        async with probe_client(tmp_path, BlobImpl()) as client:
            reply = await client.blob(data=b"\x00\x01\xff", tag="t")
            assert reply == {"data": b"\xff\x01\x00", "tag": "bytes", "block": b""}
            # An empty byte string still converts; a plain Vec<u8> that is
            # empty cannot be told from an empty list on the way back.
            reply = await client.blob(data=b"", tag="t")
            assert reply["data"] in (b"", [])
            assert reply["block"] == b"" and type(reply["block"]) is bytes

    asyncio.run(asyncio.wait_for(go(), 60))


class BlockImpl:
    def blob(self, req):
        block = req["block"]
        return {"data": b"", "tag": type(block).__name__, "block": block[::-1]}


def test_as_bytes_fields_are_always_bytes(tmp_path):
    """A field marked `knafeh::as_bytes` is `bytes` both ways, also when
    empty, and a value that is not bytes is refused with INVALID_ARGUMENT."""

    async def go():
        async with probe_client(tmp_path, BlockImpl()) as client:
            reply = await client.blob(data=b"", tag="", block=b"\x01\x02\x03")
            assert reply["block"] == b"\x03\x02\x01"
            assert reply["tag"] == "bytes"
            for empty in (dict(block=b""), {}):
                reply = await client.blob(data=b"", tag="", **empty)
                assert type(reply["block"]) is bytes and reply["block"] == b""
                assert type(reply["data"]) in (bytes, list)
            try:
                await client.blob(data=b"", tag="", block="not bytes")
            except knafeh.RpcError as e:
                assert e.code == knafeh.Code.INVALID_ARGUMENT, e
                assert "block" in e.message or "bytes" in e.message, e.message
            else:
                raise AssertionError("a str for a bytes field was accepted")

    asyncio.run(asyncio.wait_for(go(), 60))


class AsyncBlobImpl:
    async def blob(self, req):
        await asyncio.sleep(0)
        return {"data": req["data"] * 2, "tag": "async"}


def test_a_python_implementation_served_by_a_rust_server(tmp_path):
    """knafeh_py::PyService in a Rust knafeh::Server; `async def` handlers
    run on knafeh's own background event loop."""
    ca, cert, key = knafeh.dev_cert(str(tmp_path))
    server = knafeh_probe.start_rust_server(knafeh_probe.ProbeService(AsyncBlobImpl()), cert, key)
    try:
        client = knafeh_probe.ProbeBlockingClient.connect(server.address, ca=ca)
        assert client.blob(data=b"ab", tag="") == {"data": b"abab", "tag": "async", "block": b""}
    finally:
        server.stop()


def test_generated_classes_name_their_module():
    """The classes say which module they come from (the extension's crate
    name unless `#[pyservice(module = "...")]` says otherwise), not
    `builtins`, so reprs, pickling errors and documentation tools point at
    the right place."""
    for cls in (knafeh_probe.ProbeClient, knafeh_probe.ProbeBlockingClient, knafeh_probe.ProbeService):
        assert cls.__module__ == "knafeh_probe", cls
        assert f"{cls.__module__}.{cls.__qualname__}" in repr(cls)
