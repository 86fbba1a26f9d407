"""A Python handler learns that its server has begun a graceful shutdown
(`ctx.is_draining()`, `await ctx.draining()`) and ends its stream cleanly."""
import asyncio
import time

import greeter
import knafeh
from conftest import StreamingGreeter


class DrainingGreeter(StreamingGreeter):
    """count_to streams until the server drains, whatever `n` says."""

    def __init__(self):
        self.saw_draining = None

    async def count_to(self, req, ctx):
        assert not ctx.is_draining()
        # Waits on knafeh's runtime: the loop (and the GIL) stay free.
        draining = asyncio.ensure_future(ctx.draining())
        value = 0
        while not draining.done():
            value += 1
            yield {"value": value}
            await asyncio.sleep(0.01)
        self.saw_draining = ctx.is_draining()


def test_a_stream_ends_with_ok_when_the_server_drains(tmp_path):
    impl = DrainingGreeter()
    drain_timeout = 30.0

    async def main():
        ca, cert, key = knafeh.dev_cert(str(tmp_path))
        server = knafeh.Server("127.0.0.1:0", cert=cert, key=key, drain_timeout=drain_timeout)
        server.add_service(greeter.GreeterService(impl))
        addr = await server.start()
        client = await greeter.GreeterClient.connect(addr, ca=ca)
        stream = client.count_to(n=0).__aiter__()
        assert await stream.__anext__() == {"value": 1}
        started = time.monotonic()
        stopping = asyncio.ensure_future(server.stop())
        # The stream ends without an error (OK) once the handler sees the
        # drain; iterating raises RpcError otherwise.
        rest = [c async for c in stream]
        await stopping
        took = time.monotonic() - started
        assert all(c["value"] > 1 for c in rest)
        # The drain ended with the stream, not at the timeout.
        assert took < drain_timeout / 2, took

    asyncio.run(asyncio.wait_for(main(), 60))
    assert impl.saw_draining is True
