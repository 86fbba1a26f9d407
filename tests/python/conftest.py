"""Starts the Rust example server (examples/greeter) for the Python tests;
`probe_client` serves a Python implementation of the probe service."""
import contextlib
import os
import pathlib
import re
import subprocess
import tempfile
import time

import knafeh
import knafeh_probe
import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
SERVER = ROOT / "target" / "debug" / "greeter-server"


@pytest.fixture(scope="session")
def greeter_server():
    """(address, CA path) of a running Rust greeter-server on a free port."""
    with tempfile.TemporaryDirectory() as tmp:
        proc = subprocess.Popen(
            [str(SERVER), "--addr", "127.0.0.1:0", "--dev-cert-dir", tmp],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        addr = None
        deadline = time.monotonic() + 30
        try:
            while time.monotonic() < deadline:
                line = proc.stdout.readline()
                if not line:
                    break
                m = re.match(r"greeter listening on (\S+)", line)
                if m:
                    addr = m.group(1)
                    break
            if addr is None:
                raise RuntimeError("the greeter server did not start")
            yield addr, os.path.join(tmp, "ca.pem")
        finally:
            proc.send_signal(2)  # SIGINT: graceful shutdown
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()


@contextlib.asynccontextmanager
async def probe_client(tmp_path, implementation):
    """A `knafeh.Server` serving `implementation` of the probe service, and
    an async client for it."""
    ca, cert, key = knafeh.dev_cert(str(tmp_path))
    server = knafeh.Server("127.0.0.1:0", cert=cert, key=key)
    server.add_service(knafeh_probe.ProbeService(implementation))
    addr = await server.start()
    try:
        yield await knafeh_probe.ProbeClient.connect(addr, ca=ca)
    finally:
        await server.stop()
