"""Client-streaming (add_up) and bidirectional (chat) calls from the
generated Python clients, against the Rust example server and the Python
implementations (`async def` and plain `def`) served by knafeh.Server."""
import asyncio
import threading

import greeter
import knafeh
import pytest


def run(coro, seconds=60):
    return asyncio.run(asyncio.wait_for(coro, seconds))


async def connect(server):
    addr, ca = server
    return await greeter.GreeterClient.connect(addr, ca=ca)


def counts(*values):
    return [{"value": v} for v in values]


async def agen(items, pause=0):
    for item in items:
        await asyncio.sleep(pause)
        yield item


def hello(name):
    return {"message": f"Hello, {name}!"}


# --- client streaming --------------------------------------------------------


def test_add_up_takes_lists_generators_and_async_generators(streaming_server):
    async def go():
        client = await connect(streaming_server)
        assert await client.add_up(counts(1, 2, 3)) == {"sum": 6, "count": 3}
        assert await client.add_up({"value": v} for v in range(100)) == {"sum": 4950, "count": 100}
        assert await client.add_up(agen(counts(5, 6), pause=0.001)) == {"sum": 11, "count": 2}
        assert await client.add_up([]) == {"sum": 0, "count": 0}
        assert await client.add_up(agen([])) == {"sum": 0, "count": 0}
        # Large values: u32 items, u64 sum.
        big = counts(*[2**32 - 1] * 3)
        assert await client.add_up(big) == {"sum": 3 * (2**32 - 1), "count": 3}

    run(go())


def test_blocking_add_up(streaming_server):
    addr, ca = streaming_server
    client = greeter.GreeterBlockingClient.connect(addr, ca=ca)
    assert client.add_up(counts(1, 2, 3)) == {"sum": 6, "count": 3}
    assert client.add_up({"value": v} for v in range(10)) == {"sum": 45, "count": 10}
    assert client.add_up([]) == {"sum": 0, "count": 0}
    assert client.add_up(iter(counts(7)), timeout=10.0) == {"sum": 7, "count": 1}
    with pytest.raises(TypeError, match="not an async iterable"):
        client.add_up(agen(counts(1)))


def test_requests_must_be_an_iterable_of_requests(greeter_server):
    addr, ca = greeter_server
    client = greeter.GreeterBlockingClient.connect(addr, ca=ca)
    with pytest.raises(TypeError, match="not one request"):
        client.add_up({"value": 1})
    with pytest.raises(TypeError, match="expected an iterable of requests, got int"):
        client.add_up(3)

    async def go():
        client = await connect(greeter_server)
        with pytest.raises(TypeError, match="not one request"):
            client.chat({"name": "x"})

    run(go())


def test_a_bad_third_request_names_its_index_and_field(streaming_server):
    requests = counts(1, 2) + [{"value": "three"}]
    expected = "requests[2] does not convert to greeter::Count: value: expected int, got str"

    async def go():
        client = await connect(streaming_server)
        for given in (requests, agen(requests)):
            with pytest.raises(knafeh.RpcError) as info:
                await client.add_up(given)
            assert info.value.code == knafeh.Code.INVALID_ARGUMENT
            assert expected in info.value.message, info.value.message
        with pytest.raises(knafeh.RpcError) as info:
            [r async for r in client.chat([{"name": "a"}, {"name": "b"}, {"name": 3}])]
        assert "requests[2]" in info.value.message and "name: expected str, got int" in info.value.message

    run(go())
    addr, ca = streaming_server
    blocking = greeter.GreeterBlockingClient.connect(addr, ca=ca)
    with pytest.raises(knafeh.RpcError) as info:
        blocking.add_up(iter(requests))
    assert info.value.code == knafeh.Code.INVALID_ARGUMENT
    assert expected in info.value.message


def test_an_exception_in_the_request_iterator_reaches_the_caller(streaming_server):
    def failing():
        yield {"value": 1}
        raise ValueError("no more")

    async def afailing(first={"value": 1}):
        yield first
        raise KeyError("gone")

    async def go():
        client = await connect(streaming_server)
        with pytest.raises(ValueError, match="no more"):
            await client.add_up(failing())
        with pytest.raises(KeyError, match="gone"):
            await client.add_up(afailing())
        with pytest.raises(KeyError, match="gone"):
            [r async for r in client.chat(afailing({"name": "a"}))]
        # The connection is still good.
        assert await client.add_up(counts(1)) == {"sum": 1, "count": 1}

    run(go())
    addr, ca = streaming_server
    with pytest.raises(ValueError, match="no more"):
        greeter.GreeterBlockingClient.connect(addr, ca=ca).add_up(failing())


# --- bidirectional -------------------------------------------------------------


def test_chat_round_trips_on_one_call(streaming_server):
    async def go():
        client = await connect(streaming_server)
        call = client.chat()
        for i in range(200):
            await call.send({"name": f"n{i}"})
            # The reply comes before the next request is sent.
            assert await asyncio.wait_for(anext(call), 10) == hello(f"n{i}")
        await call.send(name="kw")
        assert await anext(call) == hello("kw")
        await call.done_writing()
        assert [r async for r in call] == []
        assert call.done()

    run(go())


def test_chat_half_close_then_keep_receiving(streaming_server):
    async def go():
        client = await connect(streaming_server)
        call = client.chat()
        for name in ("a", "b", "c"):
            await call.send(name=name)
        await call.done_writing()
        await call.done_writing()  # again: nothing more happens
        assert [r async for r in call] == [hello("a"), hello("b"), hello("c")]
        with pytest.raises(asyncio.InvalidStateError):
            await call.send(name="late")
        # No requests at all.
        call = client.chat()
        await call.done_writing()
        assert [r async for r in call] == []

    run(go())


def test_chat_from_iterables(streaming_server):
    names = [{"name": n} for n in ("x", "y", "z")]

    async def go():
        client = await connect(streaming_server)
        assert [r async for r in client.chat(names)] == [hello("x"), hello("y"), hello("z")]
        assert [r async for r in client.chat(agen(names, pause=0.001))] == [hello("x"), hello("y"), hello("z")]
        assert [r async for r in client.chat([])] == []
        call = client.chat(names)
        with pytest.raises(asyncio.InvalidStateError, match="iterable"):
            await call.send(name="no")

    run(go())
    addr, ca = streaming_server
    client = greeter.GreeterBlockingClient.connect(addr, ca=ca)
    assert list(client.chat(names)) == [hello("x"), hello("y"), hello("z")]
    assert list(client.chat(iter([]))) == []


def test_chat_blocking_sends_as_it_receives(streaming_server):
    """Each request is produced only after the reply to the one before
    arrived: the generator and the reader take turns on one call."""
    addr, ca = streaming_server
    client = greeter.GreeterBlockingClient.connect(addr, ca=ca)
    got = []
    turn = threading.Semaphore(0)

    def requests():
        for i in range(20):
            yield {"name": str(i)}
            assert turn.acquire(timeout=10), "the reply did not come before the next request"

    for reply in client.chat(requests(), timeout=30.0):
        got.append(reply)
        turn.release()
    assert got == [hello(str(i)) for i in range(20)]


def test_an_empty_name_ends_chat_after_the_replies_before_it(streaming_server):
    requests = [{"name": "a"}, {"name": "b"}, {"name": ""}, {"name": "never"}]

    async def go():
        client = await connect(streaming_server)
        got = []
        with pytest.raises(knafeh.RpcError) as info:
            async for reply in client.chat(requests):
                got.append(reply)
        assert got == [hello("a"), hello("b")]
        assert info.value.code == knafeh.Code.INVALID_ARGUMENT
        assert info.value.message == "name must not be empty"

    run(go())
    addr, ca = streaming_server
    got = []
    with pytest.raises(knafeh.RpcError) as info:
        for reply in greeter.GreeterBlockingClient.connect(addr, ca=ca).chat(iter(requests)):
            got.append(reply)
    assert got == [hello("a"), hello("b")]
    assert info.value.code == knafeh.Code.INVALID_ARGUMENT


def test_the_sender_fails_once_the_server_ended_the_call(streaming_server):
    async def go():
        client = await connect(streaming_server)
        call = client.chat()
        await call.send(name="a")
        assert await anext(call) == hello("a")
        await call.send(name="")
        with pytest.raises(knafeh.RpcError) as info:
            await anext(call)
        assert info.value.code == knafeh.Code.INVALID_ARGUMENT
        # Once the reader has seen the status, send() raises it at once.
        with pytest.raises(knafeh.RpcError) as info:
            await call.send(name="b")
        assert info.value.code == knafeh.Code.INVALID_ARGUMENT
        assert info.value.message == "name must not be empty"
        assert call.done()
        # A sender that never reads learns it promptly too.
        call = client.chat()
        await call.send(name="")

        async def send_until_refused():
            while True:
                await call.send(name="more")
                await asyncio.sleep(0.01)

        with pytest.raises(knafeh.RpcError) as info:
            await asyncio.wait_for(send_until_refused(), 10)
        assert info.value.code == knafeh.Code.INVALID_ARGUMENT

    run(go())


def test_a_request_that_does_not_convert_is_refused_by_send_and_the_call_goes_on(streaming_server):
    async def go():
        client = await connect(streaming_server)
        call = client.chat()
        with pytest.raises(knafeh.RpcError) as info:
            await call.send({"name": 3})
        assert info.value.code == knafeh.Code.INVALID_ARGUMENT
        assert "name: expected str, got int" in info.value.message
        await call.send(name="ok")
        assert await anext(call) == hello("ok")
        await call.done_writing()
        assert [r async for r in call] == []

    run(go())


# --- timeouts, cancellation, metadata ---------------------------------------------


def test_a_timeout_covers_the_whole_streaming_call(streaming_server):
    async def go():
        client = await connect(streaming_server)
        never = asyncio.Event()

        async def first_then_wait():
            yield {"value": 1}
            await never.wait()

        with pytest.raises(knafeh.RpcError) as info:
            await client.add_up(first_then_wait(), timeout=0.5)
        assert info.value.code == knafeh.Code.DEADLINE_EXCEEDED
        call = client.chat(timeout=0.5)
        await call.send(name="a")
        assert await anext(call) == hello("a")
        with pytest.raises(knafeh.RpcError) as info:
            await anext(call)
        assert info.value.code == knafeh.Code.DEADLINE_EXCEEDED
        with pytest.raises(knafeh.RpcError) as info:
            await call.send(name="late")
        assert info.value.code == knafeh.Code.DEADLINE_EXCEEDED

    run(go(), 30)
    addr, ca = streaming_server
    client = greeter.GreeterBlockingClient.connect(addr, ca=ca)
    stop = threading.Event()

    def slow():
        yield {"value": 1}
        stop.wait(20)

    with pytest.raises(knafeh.RpcError) as info:
        client.add_up(slow(), timeout=0.5)
    stop.set()
    assert info.value.code == knafeh.Code.DEADLINE_EXCEEDED


class WatchedGreeter:
    """Records what its streaming handlers observe; uses its metadata."""

    def __init__(self):
        self.started = asyncio.Event()
        self.cancelled = asyncio.Event()
        self.seen = []

    async def say_hello(self, req):
        return {"message": "unused"}

    def count_to(self, req):
        return iter([])

    async def add_up(self, requests, ctx):
        total = {"sum": 0, "count": 0}
        try:
            async for count in requests:
                self.started.set()
                total["sum"] += count["value"]
                total["count"] += 1
        except (asyncio.CancelledError, knafeh.RpcError) as e:
            self.seen.append(type(e).__name__)
            self.cancelled.set()
            raise
        if ctx.metadata.get("x-scale"):
            total["sum"] *= int(ctx.metadata["x-scale"])
        if ctx.metadata.get("x-fail"):
            raise knafeh.RpcError(knafeh.Code.ABORTED, "as asked", metadata={"x-why": "asked", "x-raw-bin": b"\x01"})
        return total

    async def chat(self, requests, ctx):
        try:
            async for req in requests:
                self.started.set()
                yield {"message": f"{ctx.metadata.get('x-greeting', 'Hello')}, {req['name']}!"}
        except (asyncio.CancelledError, knafeh.RpcError, GeneratorExit) as e:
            self.seen.append(type(e).__name__)
            self.cancelled.set()
            raise


async def serving(impl, tmp_path, body):
    ca, cert, key = knafeh.dev_cert(str(tmp_path))
    server = knafeh.Server("127.0.0.1:0", cert=cert, key=key)
    server.add_service(greeter.GreeterService(impl))
    addr = await server.start()
    try:
        await asyncio.wait_for(body(await greeter.GreeterClient.connect(addr, ca=ca)), 60)
    finally:
        await server.stop()


def test_cancelling_add_up_cancels_the_handler(tmp_path):
    impl = WatchedGreeter()

    async def body(client):
        closed = asyncio.Event()

        async def one_then_wait():
            try:
                yield {"value": 1}
                await asyncio.Event().wait()
            finally:
                closed.set()

        task = asyncio.create_task(client.add_up(one_then_wait()))
        await asyncio.wait_for(impl.started.wait(), 10)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await asyncio.wait_for(impl.cancelled.wait(), 10)
        # The caller's generator is closed too.
        await asyncio.wait_for(closed.wait(), 10)
        assert await client.add_up(counts(2)) == {"sum": 2, "count": 1}

    asyncio.run(serving(impl, tmp_path, body))


def test_cancelling_chat_cancels_the_handler_and_the_call_object(tmp_path):
    impl = WatchedGreeter()

    async def body(client):
        call = client.chat()
        await call.send(name="a")
        assert await anext(call) == hello("a")
        pending = asyncio.ensure_future(anext(call))
        await asyncio.sleep(0.05)
        assert call.cancel() is True
        assert call.cancel() is False
        # A reader waiting for a reply learns of it.
        with pytest.raises(knafeh.RpcError) as info:
            await asyncio.wait_for(pending, 10)
        assert info.value.code == knafeh.Code.CANCELLED
        with pytest.raises(knafeh.RpcError) as info:
            await call.send(name="b")
        assert info.value.code == knafeh.Code.CANCELLED
        await asyncio.wait_for(impl.cancelled.wait(), 10)
        # Dropping a call object cancels too.
        impl.cancelled.clear()
        call = client.chat()
        await call.send(name="c")
        assert await anext(call) == hello("c")
        del call
        await asyncio.wait_for(impl.cancelled.wait(), 10)

    asyncio.run(serving(impl, tmp_path, body))


def test_metadata_both_ways(tmp_path):
    async def body(client):
        assert await client.add_up(counts(1, 2), metadata={"x-scale": "10"}) == {"sum": 30, "count": 2}
        with pytest.raises(knafeh.RpcError) as info:
            await client.add_up(counts(1), metadata={"x-fail": "1"})
        assert info.value.code == knafeh.Code.ABORTED
        assert info.value.metadata == {"x-why": "asked", "x-raw-bin": b"\x01"}
        call = client.chat(metadata={"x-greeting": "Hi"})
        await call.send(name="md")
        assert await anext(call) == {"message": "Hi, md!"}
        await call.done_writing()
        assert [r async for r in call] == []
        # Metadata the wire cannot carry is refused before the call.
        with pytest.raises(knafeh.RpcError) as info:
            client.chat(metadata={"grpc-status": "0"})
        assert info.value.code == knafeh.Code.INVALID_ARGUMENT

    asyncio.run(serving(WatchedGreeter(), tmp_path, body))


def test_streaming_calls_carry_metadata_to_every_server(streaming_server):
    addr, ca = streaming_server
    client = greeter.GreeterBlockingClient.connect(addr, ca=ca)
    md = {"x-request-id": "7", "x-trace-bin": b"\x00\x01"}
    assert client.add_up(counts(4), metadata=md) == {"sum": 4, "count": 1}
    assert list(client.chat([{"name": "m"}], metadata=md)) == [hello("m")]


def test_many_concurrent_chats(streaming_server):
    async def go():
        client = await connect(streaming_server)

        async def one(i):
            call = client.chat()
            out = []
            for j in range(5):
                await call.send(name=f"{i}.{j}")
                out.append(await anext(call))
            await call.done_writing()
            out += [r async for r in call]
            return out

        results = await asyncio.gather(*(one(i) for i in range(100)))
        assert results == [[hello(f"{i}.{j}") for j in range(5)] for i in range(100)]

    run(go())
