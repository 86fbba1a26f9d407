"""Correct use of the generated greeter stub, every call kind, both
clients and both kinds of implementation: `mypy --strict` must pass, and
test_stubs.py runs it against a knafeh.Server serving each implementation
(so what the stub promises is what the classes do)."""
from __future__ import annotations

import asyncio
from typing import AsyncIterator, Iterator

import greeter
import knafeh


class AsyncGreeter:
    """`async def` handlers; two take the call context."""

    async def say_hello(self, req: greeter.HelloRequest, ctx: knafeh.CallContext) -> greeter.HelloReply:
        return {"message": f"Hello, {req['name']}! ({ctx.method})"}

    async def count_to(self, req: greeter.CountRequest) -> AsyncIterator[greeter.Count]:
        for value in range(1, req["n"] + 1):
            yield {"value": value}

    async def add_up(self, requests: knafeh.RequestStream[greeter.Count]) -> greeter.Total:
        total: greeter.Total = {"sum": 0, "count": 0}
        async for count in requests:
            total["sum"] += count["value"]
            total["count"] += 1
        return total

    async def chat(
        self, requests: knafeh.RequestStream[greeter.HelloRequest], ctx: knafeh.CallContext
    ) -> AsyncIterator[greeter.HelloReply]:
        async for req in requests:
            yield {"message": f"Hello, {req['name']}! ({ctx.method})"}


class BlockingGreeter:
    """Plain `def` handlers; one takes the call context."""

    def say_hello(self, req: greeter.HelloRequest) -> greeter.HelloReply:
        return {"message": f"Hello, {req['name']}! (say_hello)"}

    def count_to(self, req: greeter.CountRequest, ctx: knafeh.CallContext) -> Iterator[greeter.Count]:
        for value in range(1, req["n"] + 1):
            yield {"value": value}

    def add_up(self, requests: knafeh.RequestStream[greeter.Count]) -> greeter.Total:
        values = [count["value"] for count in requests]
        return {"sum": sum(values), "count": len(values)}

    def chat(self, requests: knafeh.RequestStream[greeter.HelloRequest]) -> Iterator[greeter.HelloReply]:
        for req in requests:
            yield {"message": f"Hello, {req['name']}! (chat)"}


def services() -> list[greeter.GreeterService]:
    """One service per implementation: both satisfy `greeter.GreeterImpl`."""
    return [greeter.GreeterService(AsyncGreeter()), greeter.GreeterService(BlockingGreeter())]


async def use_async(addr: str, ca: str) -> list[object]:
    """Every method of the async client, each request form."""
    client = await greeter.GreeterClient.connect(addr, ca=ca, codec="json", timeout=30.0)
    by_fields = await client.say_hello(name="Ada")
    by_dict = await client.say_hello({"name": "Bo"}, timeout=10.0, metadata={"x-trace": "1"})
    counted = [c["value"] async for c in client.count_to(n=3)]

    async def more() -> AsyncIterator[greeter.Count]:
        yield {"value": 10}

    total = await client.add_up([{"value": 1}, {"value": 2}])
    total_async = await client.add_up(more())
    call = client.chat()
    await call.send(name="Cy")
    first = await call.__anext__()
    await call.send({"name": "Di"})
    await call.done_writing()
    rest = [reply["message"] async for reply in call]
    given = [reply["message"] async for reply in client.chat([{"name": "Ed"}])]
    both = await asyncio.gather(client.say_hello(name="Fa"), client.say_hello(name="Gu"))
    return [
        by_fields["message"], by_dict["message"], counted, total, total_async,
        first["message"], rest, given, [r["message"] for r in both],
    ]


def use_blocking(addr: str, ca: str) -> list[object]:
    """Every method of the blocking client."""
    client = greeter.GreeterBlockingClient.connect(addr, ca=ca)
    hello = client.say_hello(name="Ada")
    counted = [c["value"] for c in client.count_to({"n": 2})]
    total = client.add_up({"value": v} for v in (4, 5))
    requests: list[greeter.HelloRequest] = [{"name": "Bo"}]
    replies = [r["message"] for r in client.chat(iter(requests))]
    return [hello["message"], counted, total, replies]
