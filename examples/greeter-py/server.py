"""A Greeter implemented in Python, served by knafeh's Rust server.

    python examples/greeter-py/server.py [--addr 127.0.0.1:0] [--dev-cert-dir DIR]

Prints the CA path and the address, like the Rust example server, and
serves until interrupted. The Rust example client can call it:

    greeter-client --addr ADDR --ca DIR/ca.pem
"""
from __future__ import annotations

import argparse
import asyncio
import tempfile
from typing import AsyncIterator, Iterator

import greeter
import knafeh


class PyGreeter:
    """Type-checked against the generated `greeter.GreeterImpl` where
    `GreeterService(PyGreeter())` is built (mypy --strict passes)."""

    async def say_hello(self, req: greeter.HelloRequest) -> greeter.HelloReply:
        if not req["name"]:
            raise knafeh.RpcError(knafeh.Code.INVALID_ARGUMENT, "name must not be empty")
        return {"message": f"Hello, {req['name']}!"}

    def count_to(self, req: greeter.CountRequest) -> Iterator[greeter.Count]:
        for value in range(1, req["n"] + 1):
            yield {"value": value}

    async def add_up(self, requests: knafeh.RequestStream[greeter.Count]) -> greeter.Total:
        total: greeter.Total = {"sum": 0, "count": 0}
        async for count in requests:
            total["sum"] += count["value"]
            total["count"] += 1
        return total

    async def chat(
        self, requests: knafeh.RequestStream[greeter.HelloRequest]
    ) -> AsyncIterator[greeter.HelloReply]:
        # One reply per request, as soon as it arrives; an empty name ends
        # the call after the replies before it.
        async for req in requests:
            if not req["name"]:
                raise knafeh.RpcError(knafeh.Code.INVALID_ARGUMENT, "name must not be empty")
            yield {"message": f"Hello, {req['name']}!"}


async def main(addr: str, cert_dir: str) -> None:
    ca, cert, key = knafeh.dev_cert(cert_dir)
    print(f"development CA written to {ca}", flush=True)
    server = knafeh.Server(addr, cert=cert, key=key, health=True)
    server.add_service(greeter.GreeterService(PyGreeter()))
    address = await server.start()
    print(f"greeter listening on {address}", flush=True)
    try:
        await asyncio.Event().wait()
    finally:
        await server.stop()


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("--addr", default="127.0.0.1:4433")
    p.add_argument("--dev-cert-dir", default=tempfile.mkdtemp(prefix="knafeh-py-"))
    args = p.parse_args()
    try:
        asyncio.run(main(args.addr, args.dev_cert_dir))
    except KeyboardInterrupt:
        pass
