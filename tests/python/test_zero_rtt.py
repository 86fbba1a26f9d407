"""The `zero_rtt` option of generated clients' `connect`: calls work with it
on and off, and a value that is not a bool is refused. (That idempotent
calls really travel as 0-RTT early data, and that the server refuses early
data for other methods, is checked in tests/tests/zero_rtt.rs.)"""
import asyncio

import greeter
import pytest


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 60))


@pytest.mark.parametrize("zero_rtt", [True, False])
def test_calls_work_with_zero_rtt_on_and_off(greeter_server, zero_rtt):
    addr, ca = greeter_server

    async def go():
        client = await greeter.GreeterClient.connect(addr, ca=ca, zero_rtt=zero_rtt)
        assert await client.say_hello(name="Ada") == {"message": "Hello, Ada!"}
        assert [c async for c in client.count_to(n=2)] == [{"value": 1}, {"value": 2}]

    run(go())
    blocking = greeter.GreeterBlockingClient.connect(addr, ca=ca, zero_rtt=zero_rtt)
    assert blocking.say_hello(name="Bo") == {"message": "Hello, Bo!"}


def test_zero_rtt_must_be_a_bool(greeter_server):
    addr, ca = greeter_server
    with pytest.raises(TypeError):
        greeter.GreeterBlockingClient.connect(addr, ca=ca, zero_rtt="yes")
