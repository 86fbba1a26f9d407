"""Failing fast: a client whose server's port is closed gets UNAVAILABLE
("connection refused") at once, not after the connect timeout."""
import asyncio
import socket
import time

import greeter
import knafeh
import pytest


def closed_port(host: str) -> str:
    """host:port where nothing listens (a UDP port just released)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as s:
        s.bind((host, 0))
        port = s.getsockname()[1]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


@pytest.mark.parametrize("host", ["127.0.0.1", "::1"])
def test_blocking_connect_to_a_closed_port_fails_at_once(host):
    started = time.monotonic()
    with pytest.raises(knafeh.RpcError) as info:
        greeter.GreeterBlockingClient.connect(closed_port(host), insecure=True, connect_timeout=30.0)
    assert info.value.code == knafeh.Code.UNAVAILABLE
    assert "connection refused" in info.value.message, info.value.message
    assert time.monotonic() - started < 1.0


def test_async_connect_to_a_closed_port_fails_at_once():
    async def go():
        started = time.monotonic()
        with pytest.raises(knafeh.RpcError) as info:
            await greeter.GreeterClient.connect(closed_port("127.0.0.1"), insecure=True, connect_timeout=30.0)
        assert info.value.code == knafeh.Code.UNAVAILABLE
        assert "connection refused" in info.value.message, info.value.message
        assert time.monotonic() - started < 1.0

    asyncio.run(asyncio.wait_for(go(), 20))
