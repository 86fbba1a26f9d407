"""Calls the Rust example server from Python.

    python examples/greeter-py/client.py --addr 127.0.0.1:4433 --ca /tmp/knafeh-dev/ca.pem
"""
import argparse
import asyncio

import greeter
import knafeh


async def main(addr: str, ca: str) -> None:
    client = await greeter.GreeterClient.connect(addr, ca=ca)
    reply = await client.say_hello({"name": "Ada"})
    print("say_hello ->", reply)
    print("count_to ->", [c async for c in client.count_to(n=3)])
    try:
        await client.say_hello(name="")
    except knafeh.RpcError as e:
        print("say_hello('') ->", e.code.name, e.message)
    # Client streaming: any iterable or async iterable of requests.
    print("add_up ->", await client.add_up({"value": v} for v in (1, 2, 3)))
    # Bidirectional: send and receive on one call, independently.
    call = client.chat()
    for name in ("Ada", "Bo"):
        await call.send(name=name)
        print("chat ->", await anext(call))
    await call.done_writing()
    print("chat rest ->", [r async for r in call])
    # Or give it the requests up front and read the replies.
    print("chat ->", [r async for r in client.chat([{"name": "Cy"}, {"name": "Di"}])])


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("--addr", default="127.0.0.1:4433")
    p.add_argument("--ca", required=True)
    args = p.parse_args()
    asyncio.run(main(args.addr, args.ca))
