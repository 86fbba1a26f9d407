"""The `compression` option of generated clients' `connect` and of
`knafeh.Server`: gzip and zstd for every call kind, against the Rust
example server and a Python server. (What the wire carries, flag 1 and
`grpc-encoding`, is checked byte by byte in tests/tests/compression.rs.)"""
import asyncio

import greeter
import knafeh
import pytest

from conftest import StreamingGreeter

# Long enough to be compressed (messages under 128 bytes are sent as they
# are), and compressible.
NAME = "Ada Lovelace, " * 400


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 60))


async def every_kind(client):
    assert await client.say_hello(name=NAME) == {"message": f"Hello, {NAME}!"}
    assert [c async for c in client.count_to(n=3)] == [{"value": v} for v in (1, 2, 3)]
    total = await client.add_up([{"value": v} for v in (1, 2, 3)])
    assert total == {"sum": 6, "count": 3}
    replies = [r async for r in client.chat([{"name": NAME}, {"name": "Bo"}])]
    assert replies == [{"message": f"Hello, {NAME}!"}, {"message": "Hello, Bo!"}]


@pytest.mark.parametrize("compression", ["gzip", "zstd", "identity"])
def test_compressed_calls_to_the_rust_server(greeter_server, compression):
    addr, ca = greeter_server

    async def go():
        client = await greeter.GreeterClient.connect(addr, ca=ca, compression=compression)
        await every_kind(client)

    run(go())
    blocking = greeter.GreeterBlockingClient.connect(addr, ca=ca, compression=compression)
    assert blocking.say_hello(name=NAME) == {"message": f"Hello, {NAME}!"}


@pytest.mark.parametrize("server_side", ["gzip", "zstd"])
def test_a_python_server_answers_compressed(tmp_path, server_side):
    ca, cert, key = knafeh.dev_cert(str(tmp_path))

    async def go():
        server = knafeh.Server("127.0.0.1:0", cert=cert, key=key, compression=server_side)
        server.add_service(greeter.GreeterService(StreamingGreeter()))
        addr = await server.start()
        try:
            # Requests in the other encoding, or none: the server reads any.
            for sent in ("gzip", "zstd", None):
                client = await greeter.GreeterClient.connect(addr, ca=ca, compression=sent)
                await every_kind(client)
        finally:
            await server.stop()

    run(go())


def test_an_unknown_compression_is_refused(greeter_server, tmp_path):
    addr, ca = greeter_server
    with pytest.raises(knafeh.RpcError) as info:
        greeter.GreeterBlockingClient.connect(addr, ca=ca, compression="brotli")
    assert info.value.code == knafeh.Code.INVALID_ARGUMENT
    assert "unknown compression" in info.value.message
    _, cert, key = knafeh.dev_cert(str(tmp_path))
    with pytest.raises(ValueError, match="unknown compression"):
        knafeh.Server("127.0.0.1:0", cert=cert, key=key, compression="lz4")
