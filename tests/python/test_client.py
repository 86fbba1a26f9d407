"""The generated Python clients (examples/greeter-py) against the Rust
example server."""
import asyncio
import collections.abc
import concurrent.futures

import greeter
import knafeh
import pytest


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 60))


def test_async_unary_and_streaming(greeter_server):
    addr, ca = greeter_server

    async def go():
        client = await greeter.GreeterClient.connect(addr, ca=ca)
        assert await client.say_hello({"name": "Ada"}) == {"message": "Hello, Ada!"}
        assert await client.say_hello(name="Bo") == {"message": "Hello, Bo!"}
        items = [c async for c in client.count_to({"n": 3})]
        assert items == [{"value": 1}, {"value": 2}, {"value": 3}]
        assert [c async for c in client.count_to(n=0)] == []

    run(go())


def test_blocking_unary_and_streaming(greeter_server):
    addr, ca = greeter_server
    client = greeter.GreeterBlockingClient.connect(addr, ca=ca)
    assert client.say_hello({"name": "Ada"}) == {"message": "Hello, Ada!"}
    assert list(client.count_to(n=3)) == [{"value": 1}, {"value": 2}, {"value": 3}]


def test_server_status_raises_rpc_error(greeter_server):
    addr, ca = greeter_server
    client = greeter.GreeterBlockingClient.connect(addr, ca=ca)
    with pytest.raises(knafeh.RpcError) as info:
        client.say_hello(name="")
    assert info.value.code == knafeh.Code.INVALID_ARGUMENT
    assert info.value.message == "name must not be empty"


def test_bad_request_fails_before_sending_naming_the_field(greeter_server):
    addr, ca = greeter_server
    client = greeter.GreeterBlockingClient.connect(addr, ca=ca)
    with pytest.raises(knafeh.RpcError) as info:
        client.say_hello({"nam": "typo"})
    assert info.value.code == knafeh.Code.INVALID_ARGUMENT
    assert "name" in info.value.message
    with pytest.raises(knafeh.RpcError) as info:
        client.count_to(n="three")
    assert info.value.code == knafeh.Code.INVALID_ARGUMENT


WRONG_TYPES = [
    ("say_hello", {"name": 1}, "name: expected str, got int"),
    ("count_to", {"n": -1}, "n: -1 is out of range for u32"),
    ("count_to", {"n": 2**40}, "n: 1099511627776 is out of range for u32"),
    ("count_to", {"n": "three"}, "n: expected int, got str"),
    ("count_to", {"n": 1.5}, "n: expected int, got float"),
]


def test_wrong_types_name_the_field_and_what_was_expected(greeter_server):
    addr, ca = greeter_server

    def check(client):
        for method, request, expected in WRONG_TYPES:
            for as_dict in (True, False):
                call = getattr(client, method)
                with pytest.raises(knafeh.RpcError) as info:
                    call(request) if as_dict else call(**request)
                assert info.value.code == knafeh.Code.INVALID_ARGUMENT
                assert expected in info.value.message, (expected, info.value.message)

    check(greeter.GreeterBlockingClient.connect(addr, ca=ca))

    async def go():
        check(await greeter.GreeterClient.connect(addr, ca=ca))

    run(go())


def test_a_server_name_the_certificate_lacks_is_refused_naming_it(greeter_server):
    addr, ca = greeter_server
    with pytest.raises(knafeh.RpcError) as info:
        greeter.GreeterBlockingClient.connect(addr, ca=ca, server_name="other.example", connect_timeout=30.0)
    assert info.value.code == knafeh.Code.UNAVAILABLE
    assert "the server's certificate is not valid for other.example" in info.value.message, info.value.message


def test_calls_are_coroutines(greeter_server):
    """asyncio.create_task and TaskGroup take calls (they want coroutines)."""
    addr, ca = greeter_server

    async def go():
        client = await asyncio.create_task(greeter.GreeterClient.connect(addr, ca=ca))
        call = client.say_hello(name="c")
        assert asyncio.iscoroutine(call)
        assert await asyncio.create_task(call) == {"message": "Hello, c!"}
        async with asyncio.TaskGroup() as group:
            tasks = [group.create_task(client.say_hello(name=str(i))) for i in range(10)]
        assert [t.result() for t in tasks] == [{"message": f"Hello, {i}!"} for i in range(10)]
        # The coroutine protocol: throw() raises in the caller and cancels.
        pending = client.say_hello(name="t")
        with pytest.raises(ValueError, match="msg"):
            pending.throw(ValueError, "msg")
        with pytest.raises(KeyError):
            client.say_hello(name="t").throw(KeyError("k"))
        assert isinstance(pending, collections.abc.Coroutine)
        # A server status raised inside a task reaches whoever awaits it.
        with pytest.raises(knafeh.RpcError) as info:
            await asyncio.create_task(client.say_hello(name=""))
        assert info.value.code == knafeh.Code.INVALID_ARGUMENT

    run(go())


def test_tls_is_verified_by_default(greeter_server, tmp_path):
    addr, _ = greeter_server
    # No CA given: the system trust store does not know the dev CA.
    with pytest.raises(knafeh.RpcError) as info:
        greeter.GreeterBlockingClient.connect(addr, connect_timeout=3.0)
    assert info.value.code == knafeh.Code.UNAVAILABLE
    # A CA that did not sign the server certificate.
    other_ca, _, _ = knafeh.dev_cert(str(tmp_path))
    with pytest.raises(knafeh.RpcError) as info:
        greeter.GreeterBlockingClient.connect(addr, ca=other_ca, connect_timeout=3.0)
    assert info.value.code == knafeh.Code.UNAVAILABLE
    # Only the explicitly insecure option skips verification.
    client = greeter.GreeterBlockingClient.connect(addr, insecure=True)
    assert client.say_hello(name="x") == {"message": "Hello, x!"}


def test_a_thousand_concurrent_calls_with_gather(greeter_server):
    addr, ca = greeter_server

    async def go():
        client = await greeter.GreeterClient.connect(addr, ca=ca)
        replies = await asyncio.gather(*(client.say_hello(name=str(i)) for i in range(1000)))
        assert replies == [{"message": f"Hello, {i}!"} for i in range(1000)]

    run(go())


def test_blocking_client_from_several_threads(greeter_server):
    addr, ca = greeter_server
    client = greeter.GreeterBlockingClient.connect(addr, ca=ca)
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        replies = list(pool.map(lambda i: client.say_hello(name=str(i)), range(200)))
    assert replies == [{"message": f"Hello, {i}!"} for i in range(200)]


def test_timeout_and_metadata_arguments(greeter_server):
    addr, ca = greeter_server
    client = greeter.GreeterBlockingClient.connect(addr, ca=ca)
    reply = client.say_hello(name="m", timeout=5.0, metadata={"x-request-id": "7", "trace-bin": b"\x00\x01"})
    assert reply == {"message": "Hello, m!"}
    with pytest.raises(knafeh.RpcError) as info:
        client.say_hello(name="late", timeout=0.0)
    assert info.value.code == knafeh.Code.DEADLINE_EXCEEDED
    with pytest.raises(knafeh.RpcError) as info:
        client.say_hello(name="m", metadata={"grpc-status": "0"})
    assert info.value.code == knafeh.Code.INVALID_ARGUMENT
