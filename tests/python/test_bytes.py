"""Binary fields (`Vec<u8>`) travel as Python `bytes` both ways."""
import asyncio

import knafeh
import knafeh_probe


class BlobImpl:
    def blob(self, req):
        data = req["data"]
        return {"data": bytes(reversed(data)), "tag": type(data).__name__}


def test_vec_u8_fields_are_bytes(tmp_path):
    async def go():
        ca, cert, key = knafeh.dev_cert(str(tmp_path))
        server = knafeh.Server("127.0.0.1:0", cert=cert, key=key)
        server.add_service(knafeh_probe.ProbeService(BlobImpl()))
        addr = await server.start()
        try:
            client = await knafeh_probe.ProbeClient.connect(addr, ca=ca)
            reply = await client.blob(data=b"\x00\x01\xff", tag="t")
            assert reply == {"data": b"\xff\x01\x00", "tag": "bytes"}
            # An empty byte string still converts.
            reply = await client.blob(data=b"", tag="t")
            assert reply["data"] in (b"", [])
        finally:
            await server.stop()

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
        assert client.blob(data=b"ab", tag="") == {"data": b"abab", "tag": "async"}
    finally:
        server.stop()
