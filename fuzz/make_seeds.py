#!/usr/bin/env python3
"""Writes the hand-written seed inputs fuzz/corpus/TARGET/seed-*.

The input formats are described at the top of each fuzz_targets/*.rs.
Run from anywhere: python3 fuzz/make_seeds.py
"""
import json
import os
import struct

os.chdir(os.path.dirname(os.path.abspath(__file__)))


def w(target, name, data):
    if isinstance(data, str):
        data = data.encode()
    os.makedirs(f"corpus/{target}", exist_ok=True)
    with open(f"corpus/{target}/seed-{name}", "wb") as f:
        f.write(data)


def frame(payload, flag=0):
    if isinstance(payload, str):
        payload = payload.encode()
    return bytes([flag]) + struct.pack(">I", len(payload)) + payload


# frame_decoder: [limit pick][chunking seed: 2 bytes] stream.
# pick % 4: 0 -> limit pick >> 2, 1 -> 0, 2 -> 4 MiB, 3 -> usize::MAX.
w("frame_decoder", "messages", bytes([0x40, 7, 1]) + frame("hello") + frame("") + frame(b"\x00\x01\x02"))
w("frame_decoder", "limit-4mib", bytes([2, 9, 0]) + frame("x" * 100) + frame("y"))
w("frame_decoder", "compressed", bytes([3, 1, 2]) + frame("ok") + frame("zz", flag=1))
w("frame_decoder", "bad-flag", bytes([3, 3, 0]) + frame("ok") + frame("zz", flag=0x80))
w("frame_decoder", "too-large", bytes([0x10, 5, 5]) + frame("ok") + b"\x00\xff\xff\xff\xff")
w("frame_decoder", "truncated", bytes([1, 0, 0]) + frame("") + b"\x00\x00\x00")

# grpc_timeout: header text; the first 12 bytes also give a duration
# (u64 LE seconds, u32 LE nanoseconds).
for i, v in enumerate(["100m", "99999999H", "1S", "0n", "00000010u", "5M", "123456789S", "1s"]):
    w("grpc_timeout", f"text-{i}", v)
w("grpc_timeout", "duration", struct.pack("<QI", 3600, 250_000_000))
w("grpc_timeout", "duration-huge", struct.pack("<QI", 2**64 - 1, 999_999_999))

# metadata: a header block as text, "name value" per line.
w("metadata", "trailers", """grpc-status 5
grpc-message no such user: 100%25 %C3%A9
x-request-id 42
trace-bin AAEC
trace-bin Zm8
""")
w("metadata", "response-head", """:status 200
content-type application/grpc+json
X-Mixed-Case yes
empty
""")
w("metadata", "http-error", """:status 503
retry-after 5
""")
w("metadata", "bad-metadata", """grpc-status 2
bad key v
k-bin Zm9v!
""")
w("metadata", "bad-status", """grpc-status -1
grpc-message %zz%4%
""")

# request: [limit pick][seed] header text "\n\n" body.
# pick % 4: 0 -> 4 MiB, 1 -> 64, 2 -> 0, 3 -> 1024.
J = "application/grpc+json"
B = "application/grpc+bincode"


def req(path, ct, body, extra=(), pick=0, seed=0x11):
    lines = [":method POST", ":scheme https", ":authority localhost", f":path {path}",
             f"content-type {ct}", "te trailers", *extra]
    return bytes([pick, seed]) + "\n".join(lines).encode() + b"\n\n" + body


def bstr(s):
    s = s.encode()
    assert len(s) < 251
    return bytes([len(s)]) + s


def varint(n):
    """bincode 2 standard config, unsigned, up to u16."""
    assert 0 <= n < 2**16
    return bytes([n]) if n < 251 else b"\xfb" + struct.pack("<H", n)


def zigzag(n):
    return varint(n * 2 if n >= 0 else -n * 2 - 1)


w("request", "hello-json", req("/helloworld.Greeter/say_hello", J, frame(json.dumps({"name": "Ada"})),
                               extra=["grpc-timeout 100m", "x-request-id 7", "trace-bin AAEC"]))
w("request", "hello-bincode", req("/helloworld.Greeter/say_hello", B, frame(bstr("Ada")), pick=1))
w("request", "count-bincode", req("/helloworld.Greeter/count_to", B, frame(varint(300)), pick=3))
order = {
    "id": 7,
    "customer": {"name": "Ada", "email": "ada@example.com", "vip": True},
    "lines": [
        {"sku": "SKU-1", "qty": 3, "price_cents": 1999, "attrs": [["color", "red"]]},
        {"sku": "SKU-2", "qty": 1, "price_cents": -500, "attrs": []},
    ],
    "note": "leave at door",
    "tags": {"gift": 1, "rush": -1},
    "payment": {"Card": {"last4": 4242, "network": "V"}},
    "discount_filter": {"All": [{"Sku": "SKU-1"}, {"Not": {"Sku": "SKU-2"}}]},
    "blob": [222, 173, 190],
}
w("request", "order-json", req("/shop.Orders/place", J, frame(json.dumps(order))))


def order_bincode(discount_filter):
    """The same order in bincode (knafeh_fuzz::Order field order)."""
    b = varint(7)
    b += bstr("Ada") + bstr("ada@example.com") + b"\x01"
    b += varint(2)
    b += bstr("SKU-1") + varint(3) + zigzag(1999) + varint(1) + bstr("color") + bstr("red")
    b += bstr("SKU-2") + varint(1) + zigzag(-500) + varint(0)
    b += b"\x01" + bstr("leave at door")
    b += varint(2) + bstr("gift") + zigzag(1) + bstr("rush") + zigzag(-1)
    b += varint(0) + varint(4242) + b"V"  # Payment::Card { last4, network }
    b += discount_filter
    b += varint(3) + bytes([222, 173, 190])
    return b


# Some(All([Sku("SKU-1"), Not(Sku("SKU-2"))]))
flt = b"\x01" + varint(2) + varint(2) + varint(0) + bstr("SKU-1") + varint(1) + varint(0) + bstr("SKU-2")
w("request", "order-bincode", req("/shop.Orders/place", B, frame(order_bincode(flt)), seed=0x2a))
# Some(Not(Not(... 300 times ... Sku("SKU-1")))): over the bincode depth limit.
deep = b"\x01" + varint(1) * 300 + varint(0) + bstr("SKU-1")
w("request", "order-bincode-deep", req("/shop.Orders/place", B, frame(order_bincode(deep))))
# Some(Not(... 200 times ...)): fine for bincode, too deep for JSON.
deep = b"\x01" + varint(1) * 200 + varint(0) + bstr("SKU-1")
w("request", "order-bincode-200", req("/shop.Orders/place", B, frame(order_bincode(deep))))
w("request", "two-messages", req("/helloworld.Greeter/say_hello", B, frame(bstr("a")) + frame(bstr("b"))))
w("request", "compressed", req("/helloworld.Greeter/say_hello", B, frame(bstr("a"), flag=1)))
w("request", "get", bytes([0, 0]) + b":method GET\n:path /a.B/c\ncontent-type application/grpc+json\n\n")
w("request", "bad-content-type", req("/a.B/c", "application/grpc", frame("{}")))
w("request", "bad-timeout", req("/a.B/c", J, frame("{}"), extra=["grpc-timeout 1h"]))
w("request", "bad-path", req("/a.B/c/d", J, frame("{}")))
