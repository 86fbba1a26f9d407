"""Starts the Rust example server (examples/greeter) for the Python tests;
`probe_client` serves a Python implementation of the probe service."""
import contextlib
import os
import pathlib
import re
import subprocess
import tempfile
import time

import greeter
import knafeh
import knafeh_probe
import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
SERVER = ROOT / "target" / "debug" / "greeter-server"


@pytest.fixture(scope="session")
def greeter_server():
    """(address, CA path) of a running Rust greeter-server on a free port."""
    with tempfile.TemporaryDirectory() as tmp:
        proc = subprocess.Popen(
            [str(SERVER), "--addr", "127.0.0.1:0", "--dev-cert-dir", tmp],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        addr = None
        deadline = time.monotonic() + 30
        try:
            while time.monotonic() < deadline:
                line = proc.stdout.readline()
                if not line:
                    break
                m = re.match(r"greeter listening on (\S+)", line)
                if m:
                    addr = m.group(1)
                    break
            if addr is None:
                raise RuntimeError("the greeter server did not start")
            yield addr, os.path.join(tmp, "ca.pem")
        finally:
            proc.send_signal(2)  # SIGINT: graceful shutdown
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()


@contextlib.asynccontextmanager
async def probe_client(tmp_path, implementation):
    """A `knafeh.Server` serving `implementation` of the probe service, and
    an async client for it."""
    ca, cert, key = knafeh.dev_cert(str(tmp_path))
    server = knafeh.Server("127.0.0.1:0", cert=cert, key=key)
    server.add_service(knafeh_probe.ProbeService(implementation))
    addr = await server.start()
    try:
        yield await knafeh_probe.ProbeClient.connect(addr, ca=ca)
    finally:
        await server.stop()


class StreamingGreeter:
    """The example Greeter's add_up and chat in Python, `async def`
    flavour (async for over the requests, an async generator of replies);
    say_hello and count_to as the example's."""

    async def say_hello(self, req):
        return {"message": f"Hello, {req['name']}!"}

    def count_to(self, req):
        for value in range(1, req["n"] + 1):
            yield {"value": value}

    async def add_up(self, requests):
        total = {"sum": 0, "count": 0}
        async for count in requests:
            total["sum"] += count["value"]
            total["count"] += 1
        return total

    async def chat(self, requests):
        async for req in requests:
            if not req["name"]:
                raise knafeh.RpcError(knafeh.Code.INVALID_ARGUMENT, "name must not be empty")
            yield {"message": f"Hello, {req['name']}!"}


class BlockingStreamingGreeter(StreamingGreeter):
    """The same with plain `def` handlers: `for` over the requests (which
    waits on the handler's own thread) and a generator of replies."""

    def add_up(self, requests):
        total = {"sum": 0, "count": 0}
        for count in requests:
            total["sum"] += count["value"]
            total["count"] += 1
        return total

    def chat(self, requests):
        for req in requests:
            if not req["name"]:
                raise knafeh.RpcError(knafeh.Code.INVALID_ARGUMENT, "name must not be empty")
            yield {"message": f"Hello, {req['name']}!"}


@contextlib.contextmanager
def python_server(implementation, directory):
    """(address, CA path) of a `knafeh.Server` serving `implementation` of
    the Greeter from an event loop on a thread of its own, so that the
    blocking client can call it too."""
    import asyncio
    import threading

    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True, name="greeter-py-server")
    thread.start()
    ca, cert, key = knafeh.dev_cert(str(directory))

    async def start():
        server = knafeh.Server("127.0.0.1:0", cert=cert, key=key)
        server.add_service(greeter.GreeterService(implementation))
        return server, await server.start()

    async def stop():
        await server.stop()

    server, addr = asyncio.run_coroutine_threadsafe(start(), loop).result(30)
    try:
        yield addr, ca
    finally:
        asyncio.run_coroutine_threadsafe(stop(), loop).result(30)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)


@pytest.fixture(scope="session", params=["rust", "python-async", "python-def"])
def streaming_server(request, greeter_server, tmp_path_factory):
    """(address, CA path) of a server with the example's add_up and chat:
    the Rust example server, or the Python implementation with `async def`
    or with plain `def` handlers."""
    if request.param == "rust":
        yield greeter_server
        return
    impl = StreamingGreeter() if request.param == "python-async" else BlockingStreamingGreeter()
    with python_server(impl, tmp_path_factory.mktemp(request.param)) as server:
        yield server
