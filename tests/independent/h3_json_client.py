#!/usr/bin/env python3
"""Independent HTTP/3 + JSON client for a knafeh greeter server.

Written only from PROTOCOL.md. Standard library + aioquic.

Usage:
  h3_json_client.py --addr 127.0.0.1:4433 --ca /tmp/knafeh-dev/ca.pem [--server-name localhost]
"""
import argparse
import asyncio
import json
import ssl
import struct
import sys
import urllib.parse

from aioquic.asyncio.client import connect
from aioquic.asyncio.protocol import QuicConnectionProtocol
from aioquic.h3.connection import H3_ALPN, H3Connection
from aioquic.h3.events import DataReceived, HeadersReceived
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.events import ConnectionTerminated, StreamReset

CT_JSON = b"application/grpc+json"
CALL_TIMEOUT = 10.0
CONNECT_TIMEOUT = 10.0


class CallResult:
    def __init__(self):
        self.header_blocks = []  # list of list[(bytes, bytes)]
        self.data = bytearray()
        self.ended = False
        self.reset_code = None
        self.done = asyncio.get_running_loop().create_future()

    def finish(self):
        if not self.done.done():
            self.done.set_result(None)


class GrpcH3Protocol(QuicConnectionProtocol):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._h3 = H3Connection(self._quic)
        self._calls = {}
        self.closed_reason = None

    def quic_event_received(self, event):
        if isinstance(event, StreamReset):
            call = self._calls.get(event.stream_id)
            if call is not None:
                call.reset_code = event.error_code
                call.finish()
        if isinstance(event, ConnectionTerminated):
            self.closed_reason = event
            for call in self._calls.values():
                call.finish()
        for h3_event in self._h3.handle_event(event):
            call = self._calls.get(getattr(h3_event, "stream_id", None))
            if call is None:
                continue
            if isinstance(h3_event, HeadersReceived):
                call.header_blocks.append(list(h3_event.headers))
                if h3_event.stream_ended:
                    call.ended = True
                    call.finish()
            elif isinstance(h3_event, DataReceived):
                call.data.extend(h3_event.data)
                if h3_event.stream_ended:
                    call.ended = True
                    call.finish()

    async def call(self, authority, path, body, extra_headers=(), content_type=CT_JSON):
        stream_id = self._quic.get_next_available_stream_id()
        call = CallResult()
        self._calls[stream_id] = call
        headers = [
            (b":method", b"POST"),
            (b":scheme", b"https"),
            (b":authority", authority.encode()),
            (b":path", path.encode()),
            (b"content-type", content_type),
            (b"te", b"trailers"),
        ] + [(k.encode(), v.encode()) for k, v in extra_headers]
        self._h3.send_headers(stream_id, headers, end_stream=False)
        self._h3.send_data(stream_id, body, end_stream=True)
        self.transmit()
        await asyncio.wait_for(asyncio.shield(call.done), CALL_TIMEOUT)
        return call


def frame(payload, flag=0):
    return struct.pack(">BI", flag, len(payload)) + payload


def pct_decode(s):
    return urllib.parse.unquote_to_bytes(s).decode("utf-8", errors="replace")


class Outcome:
    """A call's outcome interpreted per PROTOCOL.md §5.4."""

    def __init__(self, call):
        self.call = call
        self.status = None
        self.message = ""
        self.messages = []
        self.response_headers = {}
        self.error = None  # client-side protocol error description
        self._interpret()

    def _interpret(self):
        c = self.call
        if c.reset_code is not None and not c.ended:
            self.error = f"stream reset by server, code 0x{c.reset_code:x}"
            return
        if not c.header_blocks:
            self.error = "no HEADERS received"
            return
        first = dict((k.decode(), v.decode()) for k, v in c.header_blocks[0])
        self.response_headers = first
        if "grpc-status" in first:  # trailers-only
            self._read_status(first)
            if c.data:
                self.error = "DATA after trailers-only response"
            return
        if first.get(":status") != "200":
            self.error = f"non-200 :status {first.get(':status')} without grpc-status"
            return
        buf = bytes(c.data)
        i = 0
        while i < len(buf):
            if len(buf) - i < 5:
                self.error = "truncated message prefix"
                return
            flag, length = struct.unpack(">BI", buf[i:i + 5])
            if flag != 0:
                self.error = f"response message flag {flag}"
                return
            if len(buf) - i - 5 < length:
                self.error = "truncated message"
                return
            payload = buf[i + 5:i + 5 + length]
            try:
                self.messages.append(json.loads(payload))
            except ValueError as e:
                self.error = f"response payload is not JSON: {e}: {payload!r}"
                return
            i += 5 + length
        if len(c.header_blocks) < 2:
            self.error = "response ended without trailers"
            return
        trailers = dict((k.decode(), v.decode()) for k, v in c.header_blocks[1])
        if "grpc-status" not in trailers:
            self.error = "trailers without grpc-status"
            return
        self._read_status(trailers)
        if len(c.header_blocks) > 2:
            self.error = "more than two HEADERS blocks"

    def _read_status(self, fields):
        v = fields["grpc-status"]
        if not v.isdigit():
            self.error = f"grpc-status not numeric: {v!r}"
            return
        self.status = int(v)
        self.message = pct_decode(fields.get("grpc-message", ""))

    def describe(self):
        return (f"status={self.status} message={self.message!r} messages={self.messages} "
                f"headers={self.response_headers} error={self.error}")


def parse_addr(addr):
    if addr.startswith("["):
        host, _, rest = addr[1:].partition("]")
        port = rest.lstrip(":")
    else:
        host, _, port = addr.rpartition(":")
    return host, int(port)


async def run(args):
    host, port = parse_addr(args.addr)
    server_name = args.server_name or host
    config = QuicConfiguration(is_client=True, alpn_protocols=H3_ALPN,
                               verify_mode=ssl.CERT_REQUIRED,
                               server_name=server_name)
    config.load_verify_locations(cafile=args.ca)
    failures = 0
    passes = 0

    def report(ok, name, detail=""):
        nonlocal failures, passes
        passes += 1 if ok else 0
        if not ok:
            failures += 1
        print(f"{'PASS' if ok else 'FAIL'} {name}" + (f": {detail}" if detail else ""), flush=True)

    # aioquic's connect() waits for the handshake; bound it in time.
    cm = connect(host, port, configuration=config, create_protocol=GrpcH3Protocol,
                 wait_connected=True)
    try:
        client = await asyncio.wait_for(cm.__aenter__(), CONNECT_TIMEOUT)
    except Exception as e:  # noqa: BLE001
        report(False, "connect", f"{type(e).__name__}: {e}")
        return 1
    report(True, "connect", f"TLS verified against {args.ca} as {server_name!r}, ALPN h3")

    async def do(name, path, body, extra_headers=()):
        try:
            call = await client.call(args.addr, path, body, extra_headers)
        except asyncio.TimeoutError:
            report(False, name, f"timed out after {CALL_TIMEOUT}s")
            return None
        except Exception as e:  # noqa: BLE001
            report(False, name, f"{type(e).__name__}: {e}")
            return None
        return Outcome(call)

    try:
        # 1. unary say_hello
        o = await do("say_hello", "/helloworld.Greeter/say_hello",
                     frame(b'{"name":"Ada"}'))
        if o:
            ok = (o.error is None and o.status == 0
                  and o.messages == [{"message": "Hello, Ada!"}]
                  and o.response_headers.get("content-type") == "application/grpc+json")
            report(ok, "1 say_hello {\"name\":\"Ada\"} -> {\"message\":\"Hello, Ada!\"}, grpc-status 0",
                   "" if ok else o.describe())

        # 2. server streaming count_to
        o = await do("count_to", "/helloworld.Greeter/count_to", frame(b'{"n":3}'))
        if o:
            ok = (o.error is None and o.status == 0
                  and o.messages == [{"value": 1}, {"value": 2}, {"value": 3}])
            report(ok, "2 count_to {\"n\":3} -> 1,2,3 then grpc-status 0",
                   "" if ok else o.describe())

        # 3. unknown method (and unknown service)
        o = await do("unknown method", "/helloworld.Greeter/SayHello",
                     frame(b'{"name":"Ada"}'))
        if o:
            ok = o.error is None and o.status == 12 and not o.messages
            report(ok, "3 unknown method /helloworld.Greeter/SayHello -> grpc-status 12",
                   f"message={o.message!r}" if ok else o.describe())
        o = await do("unknown service", "/helloworld.Nope/say_hello",
                     frame(b'{"name":"Ada"}'))
        if o:
            ok = o.error is None and o.status == 12 and not o.messages
            report(ok, "3b unknown service /helloworld.Nope/say_hello -> grpc-status 12",
                   f"message={o.message!r}" if ok else o.describe())

        # 4. body that does not decode
        for label, payload in (("not JSON", b"not json"),
                               ("missing field", b"{}"),
                               ("u32 out of range", None)):
            path = "/helloworld.Greeter/say_hello"
            if payload is None:
                path, payload = "/helloworld.Greeter/count_to", b'{"n":-1}'
            o = await do(f"undecodable ({label})", path, frame(payload))
            if o:
                ok = o.error is None and o.status == 3 and not o.messages
                report(ok, f"4 undecodable body ({label}: {payload!r}) -> grpc-status 3",
                       f"message={o.message!r}" if ok else o.describe())

        # 5. compressed flag set -> UNIMPLEMENTED (§3, §6.2 row 12)
        o = await do("compressed flag", "/helloworld.Greeter/say_hello",
                     frame(b'{"name":"Ada"}', flag=1))
        if o:
            ok = o.error is None and o.status == 12 and not o.messages
            report(ok, "5 compressed flag 01 -> grpc-status 12",
                   f"message={o.message!r}" if ok else o.describe())

        # 6. grpc-timeout and custom metadata
        o = await do("timeout+metadata", "/helloworld.Greeter/say_hello",
                     frame(b'{"name":"Ada"}'),
                     [("grpc-timeout", "2000000u"),
                      ("user-agent", "indep-check/1"),
                      ("x-request-id", "42"),
                      ("trace-bin", "AAEC"),
                      ("x-request-id", "43")])
        if o:
            ok = (o.error is None and o.status == 0
                  and o.messages == [{"message": "Hello, Ada!"}])
            report(ok, "6 say_hello with grpc-timeout 2000000u + metadata -> OK",
                   "" if ok else o.describe())
    finally:
        try:
            await asyncio.wait_for(cm.__aexit__(None, None, None), 5)
        except Exception:  # noqa: BLE001
            pass

    print(f"conformance: {passes} passed, {failures} failed")
    return 1 if failures else 0


def main():
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--addr", required=True, help="host:port of the server")
    p.add_argument("--ca", required=True, help="PEM file with the CA to trust")
    p.add_argument("--server-name", default=None,
                   help="TLS server name to verify (default: host of --addr)")
    args = p.parse_args()
    try:
        rc = asyncio.run(asyncio.wait_for(run(args), 120))
    except asyncio.TimeoutError:
        print("FAIL overall timeout")
        rc = 1
    sys.exit(rc)


if __name__ == "__main__":
    main()
