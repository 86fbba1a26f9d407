"""Programs that use knafeh exit cleanly: no runtime thread touches Python
while the interpreter finalizes. Each shape runs 50 times, four processes
at once (more than this machine has cores), and any non-zero exit or
signal fails the test."""
import concurrent.futures
import pathlib
import subprocess
import sys

import knafeh

ROOT = pathlib.Path(__file__).resolve().parents[2]
RUST_CLIENT = ROOT / "target" / "debug" / "greeter-client"
RUNS = 50
AT_ONCE = 4

ASYNC_CLIENT = """
import asyncio, sys, greeter

async def main(addr, ca, shape):
    client = await greeter.GreeterClient.connect(addr, ca=ca)
    if shape == "connect-only":
        return
    assert await client.say_hello(name="x") == {"message": "Hello, x!"}
    assert [c["value"] async for c in client.count_to(n=3)] == [1, 2, 3]
    replies = await asyncio.gather(*(client.say_hello(name=str(i)) for i in range(20)))
    assert len(replies) == 20

asyncio.run(main(*sys.argv[1:4]))
"""

BLOCKING_CLIENT = """
import sys, greeter

client = greeter.GreeterBlockingClient.connect(sys.argv[1], ca=sys.argv[2])
assert client.say_hello(name="b") == {"message": "Hello, b!"}
assert [c["value"] for c in client.count_to(n=3)] == [1, 2, 3]
"""

PYTHON_SERVER = """
import asyncio, sys, greeter, knafeh

class Greeter:
    async def say_hello(self, req):
        return {"message": f"Hello, {req['name']}!"}

    def count_to(self, req):
        for value in range(1, req["n"] + 1):
            yield {"value": value}

async def main(rust_client, ca, cert, key):
    server = knafeh.Server("127.0.0.1:0", cert=cert, key=key)
    server.add_service(greeter.GreeterService(Greeter()))
    addr = await server.start()
    proc = await asyncio.create_subprocess_exec(
        rust_client, "--addr", addr, "--ca", ca, "--name", "R", "--n", "2",
        stdout=asyncio.subprocess.PIPE,
    )
    out, _ = await proc.communicate()
    assert proc.returncode == 0 and b"Hello, R!" in out, (proc.returncode, out)
    await server.stop()

asyncio.run(main(*sys.argv[1:5]))
"""


def run_many(argvs):
    """Runs every argv, AT_ONCE at a time; returns the failures."""

    def one(argv):
        try:
            p = subprocess.run(argv, capture_output=True, text=True, timeout=60)
        except subprocess.TimeoutExpired:
            return f"timed out: {argv[2:]}"
        if p.returncode != 0:
            return f"exit {p.returncode}: {p.stderr[-600:]}"
        return None

    with concurrent.futures.ThreadPoolExecutor(AT_ONCE) as pool:
        return [f for f in pool.map(one, argvs) if f]


def test_async_client_programs_exit_cleanly(greeter_server):
    addr, ca = greeter_server
    shapes = ["calls", "connect-only"]
    argvs = [[sys.executable, "-c", ASYNC_CLIENT, addr, ca, shapes[i % 2]] for i in range(RUNS)]
    failures = run_many(argvs)
    assert not failures, f"{len(failures)} of {RUNS} runs failed; first: {failures[0]}"


def test_blocking_client_programs_exit_cleanly(greeter_server):
    addr, ca = greeter_server
    failures = run_many([[sys.executable, "-c", BLOCKING_CLIENT, addr, ca]] * RUNS)
    assert not failures, f"{len(failures)} of {RUNS} runs failed; first: {failures[0]}"


def test_python_served_programs_called_from_rust_exit_cleanly(tmp_path):
    ca, cert, key = knafeh.dev_cert(str(tmp_path))
    argv = [sys.executable, "-c", PYTHON_SERVER, str(RUST_CLIENT), ca, cert, key]
    failures = run_many([argv] * RUNS)
    assert not failures, f"{len(failures)} of {RUNS} runs failed; first: {failures[0]}"


LATE_ASYNC_CALL = """
import asyncio, atexit, sys, greeter

def late():
    # Runs after knafeh's exit hook (registered later, so run earlier).
    try:
        asyncio.run(greeter.GreeterClient.connect(sys.argv[1], ca=sys.argv[2]))
    except RuntimeError as e:
        print("refused:", e, flush=True)
    # The blocking client still works.
    client = greeter.GreeterBlockingClient.connect(sys.argv[1], ca=sys.argv[2])
    print(client.say_hello(name="late")["message"], flush=True)

atexit.register(late)

async def main():
    client = await greeter.GreeterClient.connect(sys.argv[1], ca=sys.argv[2])
    await client.say_hello(name="x")

asyncio.run(main())
"""


def test_async_work_after_the_exit_hook_is_refused_not_hung(greeter_server):
    addr, ca = greeter_server
    p = subprocess.run([sys.executable, "-c", LATE_ASYNC_CALL, addr, ca], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr[-600:]
    assert "refused: knafeh cannot start async work: the interpreter is exiting" in p.stdout, p.stdout
    assert "Hello, late!" in p.stdout, p.stdout

SLOW_HANDLER_AT_EXIT = """
import asyncio, sys, time, greeter, knafeh

class Greeter:
    def say_hello(self, req):
        time.sleep(6)  # still running when the program exits
        return {"message": "late"}

    def count_to(self, req):
        yield from ()

async def main(ca, cert, key):
    server = knafeh.Server("127.0.0.1:0", cert=cert, key=key, drain_timeout=0.2)
    server.add_service(greeter.GreeterService(Greeter()))
    addr = await server.start()
    client = await greeter.GreeterClient.connect(addr, ca=ca)
    asyncio.create_task(client.say_hello(name="slow"))
    await asyncio.sleep(0.5)
    await server.stop()

asyncio.run(main(*sys.argv[1:4]))
"""


def test_exit_waits_for_a_handler_still_running(tmp_path):
    """A sync handler still inside Python at exit (longer than any fixed
    wait) finishes before the interpreter finalizes: no crash."""
    ca, cert, key = knafeh.dev_cert(str(tmp_path))
    p = subprocess.run([sys.executable, "-c", SLOW_HANDLER_AT_EXIT, ca, cert, key], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr[-600:]
