"""Correct use of the stub `knafeh.stubgen` writes for the test probe
module (tests/python/probe, a real #[pyservice] module: bytes, nested
structs and lists, an optional enum with struct and tuple variants):
`mypy --strict` must pass."""
from __future__ import annotations

from typing import Iterator

import knafeh_probe


async def use(client: knafeh_probe.ProbeClient) -> list[object]:
    blob = await client.blob(data=b"\x00\x01", tag="t", block=b"")
    order: knafeh_probe.Order = {
        "inner": {"name": "n"},
        "items": [{"value": 1}, {"value": 2}],
        "small": -1,
        "shape": {"Circle": {"radius": 1.0}},
        "ratio": 0.5,
    }
    got = await client.order(order)
    shape = got.get("shape")
    radius = shape["Circle"]["radius"] if isinstance(shape, dict) and "Circle" in shape else None
    smalls = [o["small"] async for o in client.orders(order)]
    return [blob["data"], blob["block"], radius, smalls, got["items"][0]["value"]]


class Echo:
    def blob(self, req: knafeh_probe.Blob) -> knafeh_probe.Blob:
        return req

    async def order(self, req: knafeh_probe.Order) -> knafeh_probe.Order:
        return {**req, "shape": "Dot"}

    def orders(self, req: knafeh_probe.Order) -> Iterator[knafeh_probe.Order]:
        yield {**req, "shape": {"Pair": (1, 2)}}


SERVICE = knafeh_probe.ProbeService(Echo())
