"""Python values that do not convert to the Rust types: the error names the
path of the field and what was expected, for requests (both clients,
unary and streaming) and for a Python handler's return value."""
import asyncio

import knafeh
import knafeh_probe
import pytest
from conftest import probe_client

GOOD = {"inner": {"name": "n"}, "items": [{"value": 1}]}


class Index:
    """An integer-like object, as numpy's integers are."""

    def __init__(self, v):
        self.v = v

    def __index__(self):
        return self.v


class Real:
    """A float-like object, as numpy's floats are."""

    def __init__(self, v):
        self.v = v

    def __float__(self):
        return self.v


class EchoOrders:
    """Echoes orders; `inner.name == "bad"` makes it return a bad value."""

    def order(self, req):
        if req["inner"]["name"] == "bad":
            return {"inner": {"name": 5}, "items": []}
        return req

    def orders(self, req):
        yield req
        if req["inner"]["name"] == "bad-later":
            yield {"inner": {"name": "x"}, "items": [{"value": -3}]}


# (request, what the message must contain)
BAD_REQUESTS = [
    ({"inner": {"name": 1}, "items": []}, "inner.name: expected str, got int"),
    (
        {"inner": {"name": "n"}, "items": [{"value": 1}, {"value": 2}, {"value": 3}, {"value": "x"}]},
        "items[3].value: expected int, got str",
    ),
    ({"inner": {"name": "n"}, "items": [{"value": True}]}, "items[0].value: expected int, got bool"),
    ({"inner": {"name": "n"}, "items": [{"value": -1}]}, "items[0].value: -1 is out of range for u32"),
    ({**GOOD, "small": 200}, "small: 200 is out of range for i8"),
    ({**GOOD, "small": 2**70}, f"small: {2**70} is out of range for i8"),
    ({"inner": {"name": "n"}, "items": "abc"}, "items: expected list, got str"),
    ({"inner": "n", "items": []}, "inner: expected dict, got str"),
    ({"items": []}, "missing field `inner`"),
    ({**GOOD, "shape": {"Circle": {"radius": "big"}}}, "shape.Circle.radius: expected float, got str"),
    ({**GOOD, "shape": {"Pair": [1]}}, "shape.Pair: expected a list of 2 items, got 1"),
    ({**GOOD, "shape": "Square"}, "shape: unknown variant `Square`"),
    ({**GOOD, "shape": {"Dot": None, "Pair": [1, 2]}}, "shape: expected a dict with one key"),
    ({**GOOD, "ratio": 1e300}, "ratio: 1e+300 is out of range for f32"),
    ({**GOOD, "ratio": "half"}, "ratio: expected float, got str"),
    ({**GOOD, "ratio": True}, "ratio: expected float, got bool"),
]


def check_bad_requests(client):
    """Unary and server-streaming requests fail alike, when the call is
    made (before anything is sent)."""
    for request, expected in BAD_REQUESTS:
        for call in (client.order, client.orders):
            with pytest.raises(knafeh.RpcError) as info:
                call(request)
            assert info.value.code == knafeh.Code.INVALID_ARGUMENT
            assert expected in info.value.message, (expected, info.value.message)


def test_bad_requests_name_the_path_async(tmp_path):
    async def go():
        async with probe_client(tmp_path, EchoOrders()) as client:
            check_bad_requests(client)
            # What does convert comes back as sent (an int for a float).
            converts = [
                ("Dot", "Dot"),
                ({"Circle": {"radius": 2}}, {"Circle": {"radius": 2.0}}),
                ({"Pair": [1, 2]}, {"Pair": (1, 2)}),
            ]
            for shape, back in converts:
                reply = await client.order({**GOOD, "small": -128, "shape": shape, "ratio": 0.5})
                assert reply == {**GOOD, "small": -128, "shape": back, "ratio": 0.5}
            # Integer-like and float-like objects (numpy's scalars are).
            reply = await client.order(inner={"name": "n"}, items=[{"value": Index(7)}], small=Index(-1), ratio=Real(0.25))
            assert (reply["items"], reply["small"], reply["ratio"]) == ([{"value": 7}], -1, 0.25)

    asyncio.run(asyncio.wait_for(go(), 60))


def test_bad_requests_name_the_path_blocking(tmp_path):
    ca, cert, key = knafeh.dev_cert(str(tmp_path))
    server = knafeh_probe.start_rust_server(knafeh_probe.ProbeService(EchoOrders()), cert, key)
    try:
        client = knafeh_probe.ProbeBlockingClient.connect(server.address, ca=ca)
        check_bad_requests(client)
        assert client.order(GOOD) == {**GOOD, "small": 0, "shape": None, "ratio": 0.0}
    finally:
        server.stop()


def test_a_handler_value_that_does_not_convert_is_internal_with_the_path(tmp_path):
    async def go():
        async with probe_client(tmp_path, EchoOrders()) as client:
            with pytest.raises(knafeh.RpcError) as info:
                await client.order(inner={"name": "bad"}, items=[])
            assert info.value.code == knafeh.Code.INTERNAL
            assert "inner.name: expected str, got int" in info.value.message, info.value.message
            # A stream item: the items before it arrive, then the status.
            got = []
            with pytest.raises(knafeh.RpcError) as info:
                async for item in client.orders(inner={"name": "bad-later"}, items=[]):
                    got.append(item)
            assert len(got) == 1
            assert info.value.code == knafeh.Code.INTERNAL
            assert "items[0].value: -3 is out of range for u32" in info.value.message, info.value.message
            # The server keeps serving.
            assert await client.order(GOOD) == {**GOOD, "small": 0, "shape": None, "ratio": 0.0}

    asyncio.run(asyncio.wait_for(go(), 60))
