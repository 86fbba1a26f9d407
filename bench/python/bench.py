"""Python clients of the benchmark's 64-byte echo service.

knafeh's generated clients (asyncio and blocking, from the `knafeh_bench`
module that bench/py builds with #[pyservice]) call the knafeh Rust echo
server; grpcio's clients (grpc.aio and the blocking channel) call the tonic
echo server. Both servers are `knafeh-bench serve <system>` child
processes, the same ones the Rust benchmark runs.

Run through scripts/bench-python.sh, which builds everything first.

Figures: sequential calls/s on one connection, and calls/s with 32 calls in
flight on one connection (asyncio.gather of 32 looping coroutines for the
async clients, 32 threads sharing one client/channel for the blocking
ones). Rounds alternate the clients (A B C D, D C B A, ...); the table
shows the median of the rounds.
"""

import argparse
import asyncio
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time

import grpc
import grpc.aio
import knafeh
import knafeh_bench

PAYLOAD = bytes([0xA5]) * 64
IN_FLIGHT = 32
ECHO_PATH = "/bench.Echo/Echo"


# --- protobuf by hand: message Echo { bytes payload = 1; } ----------------

def encode_echo(payload: bytes) -> bytes:
    """Field 1, wire type 2 (length-delimited): tag 0x0a, varint length, bytes."""
    n = len(payload)
    out = bytearray(b"\x0a")
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            break
    out += payload
    return bytes(out)


def decode_echo(data: bytes) -> bytes:
    """Returns field 1; skips unknown varint and length-delimited fields."""
    i, payload = 0, b""

    def varint():
        nonlocal i
        shift = result = 0
        while True:
            b = data[i]
            i += 1
            result |= (b & 0x7F) << shift
            if not b & 0x80:
                return result
            shift += 7

    while i < len(data):
        key = varint()
        field, wire = key >> 3, key & 7
        if wire == 0:
            varint()
        elif wire == 2:
            n = varint()
            if field == 1:
                payload = data[i:i + n]
            i += n
        else:
            raise ValueError(f"unexpected wire type {wire}")
    return payload


# --- servers --------------------------------------------------------------

class ServerChild:
    """`knafeh-bench serve <system>`: prints `listening <addr>`, stops when
    its stdin closes."""

    def __init__(self, bench_bin, system, cert, key):
        self.proc = subprocess.Popen(
            [bench_bin, "serve", system, "--cert", cert, "--key", key],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        line = self.proc.stdout.readline().strip()
        if not line.startswith("listening "):
            self.stop()
            raise RuntimeError(f"{system} server did not start: {line!r}")
        self.addr = line[len("listening "):]

    def stop(self):
        if self.proc.poll() is None:
            self.proc.stdin.close()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


# --- clients: each returns calls/s ----------------------------------------

def check(reply_payload):
    if reply_payload != PAYLOAD:
        raise RuntimeError("echo returned a different payload")


async def knafeh_async(addr, ca, in_flight, seconds, warmup):
    client = await knafeh_bench.EchoClient.connect(addr, ca=ca)

    async def loop(deadline):
        n = 0
        while time.perf_counter() < deadline:
            check((await client.echo(payload=PAYLOAD))["payload"])
            n += 1
        return n

    await loop(time.perf_counter() + warmup)
    deadline = time.perf_counter() + seconds
    start = time.perf_counter()
    counts = await asyncio.gather(*(loop(deadline) for _ in range(in_flight)))
    return sum(counts) / (time.perf_counter() - start)


async def grpc_aio(addr, in_flight, seconds, warmup):
    async with grpc.aio.insecure_channel(addr) as channel:
        echo = channel.unary_unary(
            ECHO_PATH, request_serializer=encode_echo, response_deserializer=decode_echo
        )

        async def loop(deadline):
            n = 0
            while time.perf_counter() < deadline:
                check(await echo(PAYLOAD))
                n += 1
            return n

        await loop(time.perf_counter() + warmup)
        deadline = time.perf_counter() + seconds
        start = time.perf_counter()
        counts = await asyncio.gather(*(loop(deadline) for _ in range(in_flight)))
        return sum(counts) / (time.perf_counter() - start)


def threaded(call, in_flight, seconds, warmup):
    """`in_flight` threads calling `call()` back to back."""

    def loop(deadline, out, i):
        n = 0
        while time.perf_counter() < deadline:
            call()
            n += 1
        out[i] = n

    loop(time.perf_counter() + warmup, [0], 0)
    if in_flight == 1:
        out = [0]
        start = time.perf_counter()
        loop(start + seconds, out, 0)
        return out[0] / (time.perf_counter() - start)
    out = [0] * in_flight
    start = time.perf_counter()
    deadline = start + seconds
    threads = [threading.Thread(target=loop, args=(deadline, out, i)) for i in range(in_flight)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return sum(out) / (time.perf_counter() - start)


def knafeh_blocking(addr, ca, in_flight, seconds, warmup):
    client = knafeh_bench.EchoBlockingClient.connect(addr, ca=ca)

    def call():
        check(client.echo(payload=PAYLOAD)["payload"])

    return threaded(call, in_flight, seconds, warmup)


def grpc_sync(addr, in_flight, seconds, warmup):
    with grpc.insecure_channel(addr) as channel:
        echo = channel.unary_unary(
            ECHO_PATH, request_serializer=encode_echo, response_deserializer=decode_echo
        )

        def call():
            check(echo(PAYLOAD))

        return threaded(call, in_flight, seconds, warmup)


CLIENTS = ["knafeh async", "knafeh blocking", "grpcio aio", "grpcio sync"]


def measure(name, servers, ca, in_flight, seconds, warmup):
    k, t = servers["knafeh"].addr, servers["tonic"].addr
    if name == "knafeh async":
        return asyncio.run(knafeh_async(k, ca, in_flight, seconds, warmup))
    if name == "knafeh blocking":
        return knafeh_blocking(k, ca, in_flight, seconds, warmup)
    if name == "grpcio aio":
        return asyncio.run(grpc_aio(t, in_flight, seconds, warmup))
    if name == "grpcio sync":
        return grpc_sync(t, in_flight, seconds, warmup)
    raise ValueError(name)


def fmt(x):
    return f"{x:,.0f}"


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--bench-bin", required=True, help="path of the knafeh-bench binary")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--duration", type=float, default=2.0, help="seconds per measurement")
    p.add_argument("--warmup", type=float, default=0.3, help="seconds of warm-up calls")
    args = p.parse_args()

    tmp = tempfile.mkdtemp(prefix="knafeh-bench-py-")
    servers = {}
    try:
        ca, cert, key = knafeh.dev_cert(tmp, ["localhost", "127.0.0.1"])
        for system in ("knafeh", "tonic"):
            servers[system] = ServerChild(args.bench_bin, system, cert, key)
        print("knafeh-bench (Python): 64 B echo over loopback; servers are `knafeh-bench serve` child processes")
        print(f"machine: {os.cpu_count()} cores, {platform.system()} {platform.release()} {platform.machine()}; "
              f"Python {platform.python_version()}, grpcio {grpc.__version__}")
        print(f"mode: {args.rounds} rounds of {args.duration:g} s per figure and client, clients alternate "
              f"(A B C D, D C B A, ...); figures are medians of the rounds (calls/s, higher is better)")
        scenarios = [("sequential, 1 conn", 1), (f"{IN_FLIGHT} in flight, 1 conn", IN_FLIGHT)]
        results = {}
        for title, in_flight in scenarios:
            print(f"{title}:", file=sys.stderr)
            for r in range(args.rounds):
                order = CLIENTS if r % 2 == 0 else list(reversed(CLIENTS))
                for name in order:
                    rate = measure(name, servers, ca, in_flight, args.duration, args.warmup)
                    results.setdefault((title, name), []).append(rate)
                    print(f"  round {r + 1} {name:<16} {fmt(rate)} calls/s", file=sys.stderr)

        head = ["scenario"] + CLIENTS + ["knafeh/grpcio async", "knafeh/grpcio blocking"]
        rows = [head]
        for title, _ in scenarios:
            med = {name: statistics.median(results[(title, name)]) for name in CLIENTS}
            rows.append(
                [title]
                + [fmt(med[name]) for name in CLIENTS]
                + [f"{med['knafeh async'] / med['grpcio aio']:.2f}",
                   f"{med['knafeh blocking'] / med['grpcio sync']:.2f}"]
            )
        widths = [max(len(r[c]) for r in rows) for c in range(len(head))]
        print()
        for i, row in enumerate(rows):
            cells = [row[0].ljust(widths[0])] + [c.rjust(w) for c, w in zip(row[1:], widths[1:])]
            print("| " + " | ".join(cells) + " |")
            if i == 0:
                print("|-" + "-|-".join("-" * w for w in widths) + "-|")
        print("calls/s: higher is better; ratios above 1 favour knafeh. "
              "async: asyncio.gather of coroutines (knafeh EchoClient / grpc.aio); "
              "blocking: threads sharing one client (knafeh EchoBlockingClient / grpc channel)")
    finally:
        for s in servers.values():
            s.stop()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
