"""knafeh.Health on a Python server (`knafeh.Server(..., health=True)`),
checked with the `knafeh` command line."""
import asyncio
import pathlib
import subprocess

import greeter
import knafeh
import pytest
from conftest import StreamingGreeter

KNAFEH = pathlib.Path(__file__).resolve().parents[2] / "target" / "debug" / "knafeh"


def health(addr: str, ca: str, *service: str) -> tuple[int, str]:
    r = subprocess.run(
        [str(KNAFEH), "health", addr, *service, "--ca", ca], capture_output=True, text=True, timeout=30
    )
    return r.returncode, r.stdout.strip()


def test_a_python_server_serves_health_and_the_application_sets_it(tmp_path):
    async def go():
        ca, cert, key = knafeh.dev_cert(str(tmp_path))
        server = knafeh.Server("127.0.0.1:0", cert=cert, key=key, health=True)
        server.add_service(greeter.GreeterService(StreamingGreeter()))
        addr = await server.start()
        try:
            assert health(addr, ca) == (0, "SERVING")
            assert health(addr, ca, "helloworld.Greeter") == (0, "SERVING")
            server.set_health("helloworld.Greeter", "NOT_SERVING")
            assert health(addr, ca, "helloworld.Greeter") == (14, "NOT_SERVING")
            assert health(addr, ca) == (0, "SERVING")
            with pytest.raises(ValueError, match="MAYBE"):
                server.set_health("", "MAYBE")
        finally:
            await server.stop()

    asyncio.run(asyncio.wait_for(go(), 60))


def test_set_health_needs_health_on(tmp_path):
    _, cert, key = knafeh.dev_cert(str(tmp_path))
    server = knafeh.Server("127.0.0.1:0", cert=cert, key=key)
    with pytest.raises(RuntimeError, match="health=True"):
        server.set_health("", "SERVING")
