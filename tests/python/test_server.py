"""Greeter implemented in Python, served by knafeh.Server, called from
Python and from the Rust example client."""
import asyncio
import pathlib

import greeter
import knafeh
import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
RUST_CLIENT = ROOT / "target" / "debug" / "greeter-client"


class PyGreeter:
    def __init__(self):
        self.calls = 0

    async def say_hello(self, req):
        self.calls += 1
        name = req["name"]
        if name == "":
            raise knafeh.RpcError(knafeh.Code.INVALID_ARGUMENT, "name must not be empty")
        if name == "boom":
            raise ValueError("kaput")
        if name == "badreply":
            return {"nope": 1}
        if name == "gone":
            raise knafeh.RpcError(
                knafeh.Code.NOT_FOUND, "x", metadata={"x-why": "gone", "x-detail-bin": b"\x00\xff"}
            )
        if name == "badmeta":
            raise knafeh.RpcError(knafeh.Code.NOT_FOUND, "x", metadata={"Not A Key": "v"})
        return {"message": f"Hello, {name}!"}

    def count_to(self, req):
        for value in range(1, req["n"] + 1):
            yield {"value": value}


class AsyncGenGreeter(PyGreeter):
    def say_hello(self, req):  # a plain def
        return {"message": f"Hi, {req['name']}!"}

    async def count_to(self, req):
        for value in range(1, req["n"] + 1):
            await asyncio.sleep(0)
            yield {"value": value}


async def serving(impl, tmp_path, body):
    ca, cert, key = knafeh.dev_cert(str(tmp_path))
    server = knafeh.Server("127.0.0.1:0", cert=cert, key=key)
    server.add_service(greeter.GreeterService(impl))
    addr = await server.start()
    try:
        await asyncio.wait_for(body(addr, ca), 60)
    finally:
        await server.stop()


def test_python_service_called_from_python(tmp_path):
    impl = PyGreeter()

    async def body(addr, ca):
        client = await greeter.GreeterClient.connect(addr, ca=ca)
        assert await client.say_hello(name="Ada") == {"message": "Hello, Ada!"}
        assert [c async for c in client.count_to(n=3)] == [{"value": v} for v in (1, 2, 3)]
        with pytest.raises(knafeh.RpcError) as info:
            await client.say_hello(name="")
        assert info.value.code == knafeh.Code.INVALID_ARGUMENT
        assert info.value.message == "name must not be empty"
        # Any other exception: INTERNAL naming its type and message; the
        # server keeps serving.
        with pytest.raises(knafeh.RpcError) as info:
            await client.say_hello(name="boom")
        assert info.value.code == knafeh.Code.INTERNAL
        assert "ValueError" in info.value.message and "kaput" in info.value.message
        with pytest.raises(knafeh.RpcError) as info:
            await client.say_hello(name="badreply")
        assert info.value.code == knafeh.Code.INTERNAL
        assert await client.say_hello(name="again") == {"message": "Hello, again!"}

    asyncio.run(serving(impl, tmp_path, body))
    assert impl.calls == 5


def test_plain_def_and_async_generators(tmp_path):
    async def body(addr, ca):
        client = await greeter.GreeterClient.connect(addr, ca=ca)
        assert await client.say_hello(name="Bo") == {"message": "Hi, Bo!"}
        assert [c async for c in client.count_to(n=4)] == [{"value": v} for v in (1, 2, 3, 4)]
        replies = await asyncio.gather(*(client.say_hello(name=str(i)) for i in range(200)))
        assert replies == [{"message": f"Hi, {i}!"} for i in range(200)]

    asyncio.run(serving(AsyncGenGreeter(), tmp_path, body))


def test_python_service_called_from_the_rust_client(tmp_path):
    async def body(addr, ca):
        proc = await asyncio.create_subprocess_exec(
            str(RUST_CLIENT), "--addr", addr, "--ca", ca, "--name", "Rust", "--n", "2",
            stdout=asyncio.subprocess.PIPE,
        )
        out, _ = await asyncio.wait_for(proc.communicate(), 30)
        assert proc.returncode == 0
        text = out.decode()
        assert 'say_hello("Rust") -> "Hello, Rust!"' in text
        assert "count_to(2) -> [1, 2]" in text

    asyncio.run(serving(PyGreeter(), tmp_path, body))


class SlowGreeter(PyGreeter):
    def __init__(self):
        super().__init__()
        self.started = asyncio.Event()
        self.cancelled = asyncio.Event()

    async def say_hello(self, req):
        if req["name"] != "slow":
            return await super().say_hello(req)
        self.started.set()
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            self.cancelled.set()
            raise
        return {"message": "late"}


def test_cancelling_the_task_cancels_the_call_on_the_server(tmp_path):
    impl = SlowGreeter()

    async def body(addr, ca):
        client = await greeter.GreeterClient.connect(addr, ca=ca)
        task = asyncio.create_task(client.say_hello(name="slow"))
        await asyncio.wait_for(impl.started.wait(), 10)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        # The server-side handler is cancelled too.
        await asyncio.wait_for(impl.cancelled.wait(), 10)
        assert await client.say_hello(name="x") == {"message": "Hello, x!"}

    asyncio.run(serving(impl, tmp_path, body))


BLOCKING_CALLER = """
import sys, greeter, knafeh
client = greeter.GreeterBlockingClient.connect(sys.argv[1], ca=sys.argv[2])
print("calling", flush=True)
try:
    client.say_hello(name="slow")
except KeyboardInterrupt:
    print("interrupted", flush=True)
# Stay alive, as a program that handles Ctrl-C does, until the test closes
# stdin: the server must learn of the cancellation from the client, not
# from the process going away.
sys.stdin.read()
"""


def test_ctrl_c_interrupts_a_blocking_call(tmp_path):
    import signal
    import sys

    impl = SlowGreeter()

    async def body(addr, ca):
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            BLOCKING_CALLER,
            addr,
            ca,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
        )
        try:
            await asyncio.wait_for(impl.started.wait(), 20)
            proc.send_signal(signal.SIGINT)

            async def interrupted():
                lines = []
                while True:
                    line = await proc.stdout.readline()
                    if not line:
                        raise AssertionError(f"the caller ended without 'interrupted': {lines}")
                    lines.append(line.decode().strip())
                    if lines[-1] == "interrupted":
                        return

            await asyncio.wait_for(interrupted(), 10)
            # Dropping the call on Ctrl-C cancelled it on the server too,
            # while the caller is still alive (blocked reading its stdin).
            await asyncio.wait_for(impl.cancelled.wait(), 10)
            assert proc.returncode is None, "the caller exited before the server saw the cancellation"
            proc.stdin.close()
            assert await asyncio.wait_for(proc.wait(), 10) == 0
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()

    asyncio.run(serving(impl, tmp_path, body))


def test_a_waiting_blocking_call_does_not_hold_the_gil(tmp_path):
    """A blocking call from a worker thread waits on a handler that runs
    on this thread's event loop: if the waiting call held the GIL, the
    handler could never run and the call would time out."""
    import concurrent.futures

    async def body(addr, ca):
        client = greeter.GreeterBlockingClient.connect(addr, ca=ca)
        loop = asyncio.get_running_loop()
        with concurrent.futures.ThreadPoolExecutor(4) as pool:
            replies = await asyncio.gather(
                *(loop.run_in_executor(pool, lambda i=i: client.say_hello(name=str(i), timeout=10.0)) for i in range(8))
            )
        assert replies == [{"message": f"Hello, {i}!"} for i in range(8)]

    asyncio.run(serving(PyGreeter(), tmp_path, body))


class ContextGreeter:
    """Handlers that declare a second parameter get the call context."""

    def say_hello(self, req, ctx):
        assert isinstance(ctx, knafeh.CallContext)
        left = ctx.time_remaining()
        assert ctx.method == "say_hello"
        return {
            "message": "|".join(
                [
                    ctx.path,
                    ctx.metadata.get("x-user", "-"),
                    "bin" if ctx.metadata.get("x-key-bin") == b"\x00\x01" else "-",
                    ctx.peer_addr.split(":")[0],
                    "none" if left is None else ("ok" if 0 < left <= 30 else f"bad {left}"),
                ]
            )
        }

    async def count_to(self, req, ctx):
        for value in range(1, req["n"] + 1):
            yield {"value": value * (10 if ctx.metadata.get("x-user") == "tens" else 1)}


def test_python_handlers_get_the_call_context(tmp_path):
    async def body(addr, ca):
        client = await greeter.GreeterClient.connect(addr, ca=ca)
        reply = await client.say_hello(
            name="Ada", timeout=30.0, metadata={"x-user": "ada", "x-key-bin": b"\x00\x01"}
        )
        assert reply["message"] == "/helloworld.Greeter/say_hello|ada|bin|127.0.0.1|ok"
        # Without a deadline or metadata.
        reply = await client.say_hello(name="Bo")
        assert reply["message"] == "/helloworld.Greeter/say_hello|-|-|127.0.0.1|none"
        # Streaming handlers get it too.
        items = [c async for c in client.count_to(n=2, metadata={"x-user": "tens"})]
        assert items == [{"value": 10}, {"value": 20}]

    asyncio.run(serving(ContextGreeter(), tmp_path, body))


def test_a_handler_error_carries_its_metadata_to_the_client(tmp_path):
    async def body(addr, ca):
        client = await greeter.GreeterClient.connect(addr, ca=ca)
        with pytest.raises(knafeh.RpcError) as info:
            await client.say_hello(name="gone")
        assert info.value.code == knafeh.Code.NOT_FOUND
        assert info.value.message == "x"
        assert info.value.metadata == {"x-why": "gone", "x-detail-bin": b"\x00\xff"}
        # Metadata the wire cannot carry is the handler's bug: INTERNAL,
        # saying why.
        with pytest.raises(knafeh.RpcError) as info:
            await client.say_hello(name="badmeta")
        assert info.value.code == knafeh.Code.INTERNAL
        assert "metadata" in info.value.message and "Not A Key" in info.value.message

    asyncio.run(serving(PyGreeter(), tmp_path, body))


def test_server_and_calls_work_as_tasks_and_in_task_groups(tmp_path):
    """start(), stop(), connect() and calls are coroutines: create_task and
    TaskGroup take them, as they take any coroutine."""

    async def go():
        ca, cert, key = knafeh.dev_cert(str(tmp_path))
        server = knafeh.Server("127.0.0.1:0", cert=cert, key=key)
        server.add_service(greeter.GreeterService(PyGreeter()))
        start = server.start()
        assert asyncio.iscoroutine(start)
        addr = await asyncio.create_task(start)
        client = await asyncio.create_task(greeter.GreeterClient.connect(addr, ca=ca))
        async with asyncio.TaskGroup() as group:
            tasks = [group.create_task(client.say_hello(name=str(i))) for i in range(20)]
        assert [t.result() for t in tasks] == [{"message": f"Hello, {i}!"} for i in range(20)]
        assert await asyncio.wait_for(client.say_hello(name="w"), 10) == {"message": "Hello, w!"}
        await asyncio.create_task(server.stop())

    asyncio.run(asyncio.wait_for(go(), 60))
