"""Correct use of a stub generated from tests/python/schemas/shapes.json
(every shape a schema can describe): `mypy --strict` must pass."""
from __future__ import annotations

from typing import AsyncIterator, Iterator

import knafeh
import shapes

DRAWING: shapes.Drawing = {
    "shapes": ["Dot", {"Circle": 1.5}, {"Pair": (1, 2)}, {"Rect": {"w": 1.0, "h": 2}}, {"Group": [{"Circle": 2}]}],
    "labels": {"a": 1, "b": None},
    "raw": b"\x00",
    "pixels": b"\x01\x02",
    "origin": (0.0, 1),
    "rgb": (255, 0, 0),
    "key": (0,) * 32,
    "initial": "k",
    "visible": True,
    "nothing": None,
    "empty": (),
    "from": -1,
    "big": 2**100,
    "marker": None,
    "size": 2.5,
    "point": (1, -1),
}


def describe(shape: shapes.Shape) -> str:
    """Narrowing an enum value: its unit variants are strings, the others
    one-key dicts."""
    if isinstance(shape, str):
        return shape
    if "Circle" in shape:
        return f"circle {shape['Circle']}"
    if "Rect" in shape:
        return f"rect {shape['Rect']['w']}x{shape['Rect']['h']}"
    return "other"


async def use_async(client: shapes.ShapesClient) -> list[object]:
    drawn = await client.draw(DRAWING)
    by_fields = await client.draw(**DRAWING)
    color: shapes.Color = await client.classify("Dot")
    walked = [t["name"] async for t in client.walk(name="root", children=[{"name": "leaf", "children": []}])]
    await client.configure({"timeout": 1.0, "verbose": True})
    meters: float = await client.total([1, 2, 3])
    call = client.echo()
    await call.send(items=["a"])
    await call.send({"items": ("b", "c")})
    echoed = await call.__anext__()
    relayed = [s.upper() async for s in client.relay(["x"])]
    return [describe(drawn), describe(by_fields), color, walked, meters, echoed, relayed]


def use_blocking(client: shapes.ShapesBlockingClient) -> list[object]:
    tree: shapes.Tree = {"name": "root", "children": [], "parent": None}
    walked = [t["children"] for t in client.walk(tree, timeout=1.0)]
    client.configure({"verbose": False})
    return [walked, list(client.echo([{"items": []}]))]


class Impl:
    def draw(self, req: shapes.Drawing) -> shapes.Shape:
        return {"Group": [s for s in req["shapes"]]}

    async def classify(self, req: shapes.Shape, ctx: knafeh.CallContext) -> shapes.Color:
        return "Red" if req == "Dot" else "Green"

    def walk(self, req: shapes.Tree) -> Iterator[shapes.Tree]:
        yield from req["children"]

    def configure(self, req: shapes.Options) -> None:
        return None

    async def total(self, requests: knafeh.RequestStream[int]) -> shapes.Meters:
        return float(sum([r async for r in requests]))

    async def echo(self, requests: knafeh.RequestStream[shapes.Sequence]) -> AsyncIterator[shapes.Sequence | None]:
        async for r in requests:
            yield r

    def relay(self, requests: knafeh.RequestStream[str]) -> list[str]:
        return list(requests)


SERVICE = shapes.ShapesService(Impl())
