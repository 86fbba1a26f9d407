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
from aioquic.quic.events import ConnectionTerminated, StopSendingReceived, StreamReset

CT_JSON = b"application/grpc+json"
CALL_TIMEOUT = 10.0
CONNECT_TIMEOUT = 10.0
PAUSE = 0.2  # between messages sent at different times
STOP_SENDING_WAIT = 2.0  # how long STOP_SENDING may trail the trailers


class CallResult:
    """Everything received on one request stream, in arrival order."""

    def __init__(self, stream_id):
        self.stream_id = stream_id
        self.header_blocks = []  # list of list[(bytes, bytes)]
        self.data = bytearray()
        self.ended = False  # the server's FIN arrived
        self.reset_code = None  # RESET_STREAM from the server
        self.stop_sending_code = None  # STOP_SENDING from the server
        self.closed = False  # the connection was lost
        self.sent_fin = False  # our own half-close
        self.done = asyncio.get_running_loop().create_future()
        self._waiters = []

    def changed(self):
        for w in self._waiters:
            if not w.done():
                w.set_result(None)
        self._waiters = []

    def finish(self):
        if not self.done.done():
            self.done.set_result(None)
        self.changed()

    async def until(self, predicate, timeout):
        """Waits until predicate() holds; False if it did not within timeout
        or the stream was reset or the connection lost without it holding.
        (The server's FIN does not end the wait: STOP_SENDING may follow it.)"""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not predicate():
            if self.closed or self.reset_code is not None:
                return predicate()
            left = deadline - loop.time()
            if left <= 0:
                return False
            w = loop.create_future()
            self._waiters.append(w)
            try:
                await asyncio.wait_for(w, left)
            except asyncio.TimeoutError:
                return predicate()
        return True


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
        if isinstance(event, StopSendingReceived):
            call = self._calls.get(event.stream_id)
            if call is not None:
                call.stop_sending_code = event.error_code
                call.changed()
        if isinstance(event, ConnectionTerminated):
            self.closed_reason = event
            for call in self._calls.values():
                call.closed = True
                call.finish()
        for h3_event in self._h3.handle_event(event):
            call = self._calls.get(getattr(h3_event, "stream_id", None))
            if call is None:
                continue
            if isinstance(h3_event, HeadersReceived):
                call.header_blocks.append(list(h3_event.headers))
            elif isinstance(h3_event, DataReceived):
                call.data.extend(h3_event.data)
            else:
                continue
            if h3_event.stream_ended:
                call.ended = True
                call.finish()
            call.changed()

    def open(self, authority, path, extra_headers=(), content_type=CT_JSON,
             method=b"POST", end_stream=False):
        """Sends a request header block on a new stream; returns its CallResult."""
        stream_id = self._quic.get_next_available_stream_id()
        call = CallResult(stream_id)
        self._calls[stream_id] = call
        headers = [
            (b":method", method),
            (b":scheme", b"https"),
            (b":authority", authority.encode()),
            (b":path", path.encode()),
            (b"content-type", content_type),
            (b"te", b"trailers"),
        ] + [(k.encode(), v.encode()) for k, v in extra_headers]
        self._h3.send_headers(stream_id, headers, end_stream=end_stream)
        call.sent_fin = end_stream
        self.transmit()
        return call

    def send(self, call, data, end_stream=False):
        """Sends data as one DATA frame (none when data is empty: then only
        the FIN, if end_stream)."""
        if data:
            self._h3.send_data(call.stream_id, data, end_stream=end_stream)
        elif end_stream:
            self._quic.send_stream_data(call.stream_id, b"", end_stream=True)
        call.sent_fin = call.sent_fin or end_stream
        self.transmit()

    async def call(self, authority, path, body, extra_headers=(), content_type=CT_JSON):
        call = self.open(authority, path, extra_headers, content_type)
        self.send(call, body, end_stream=True)
        await asyncio.wait_for(asyncio.shield(call.done), CALL_TIMEOUT)
        return call


def frame(payload, flag=0):
    return struct.pack(">BI", flag, len(payload)) + payload


def pct_decode(s):
    return urllib.parse.unquote_to_bytes(s).decode("utf-8", errors="replace")


def split_messages(data):
    """Splits response bytes into JSON messages (§3). Returns (messages,
    error); an incomplete last message is an error only once the caller
    knows the body ended, so callers reading mid-stream use complete_messages."""
    msgs, rest, err = complete_messages(data)
    if err is None and rest:
        err = "truncated message prefix" if rest < 5 else "truncated message"
    return msgs, err


def complete_messages(data):
    """(messages, leftover byte count, error) for the complete messages so far."""
    buf = bytes(data)
    msgs = []
    i = 0
    while len(buf) - i >= 5:
        flag, length = struct.unpack(">BI", buf[i:i + 5])
        if flag != 0:
            return msgs, 0, f"response message flag {flag}"
        if len(buf) - i - 5 < length:
            break
        payload = buf[i + 5:i + 5 + length]
        try:
            msgs.append(json.loads(payload))
        except ValueError as e:
            return msgs, 0, f"response payload is not JSON: {e}: {payload!r}"
        i += 5 + length
    return msgs, len(buf) - i, None


class Outcome:
    """A call's outcome interpreted per PROTOCOL.md §5.5."""

    def __init__(self, call):
        self.call = call
        self.status = None
        self.message = ""
        self.messages = []
        self.response_headers = {}
        self.trailers = {}
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
        self.messages, self.error = split_messages(c.data)
        if self.error:
            return
        if len(c.header_blocks) < 2:
            self.error = "response ended without trailers"
            return
        trailers = dict((k.decode(), v.decode()) for k, v in c.header_blocks[1])
        self.trailers = trailers
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

        # 5. compressed flag set without grpc-encoding -> INTERNAL (§3.2, §6.2 row 12)
        o = await do("compressed flag", "/helloworld.Greeter/say_hello",
                     frame(b'{"name":"Ada"}', flag=1))
        if o:
            ok = o.error is None and o.status == 13 and not o.messages
            report(ok, "5 compressed flag 01 without grpc-encoding -> grpc-status 13",
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

        # ---- Client streaming and bidirectional calls (§2, §5.4, §10.5, §10.6) ----

        def msgs_now(call):
            return complete_messages(call.data)[0]

        async def streaming(name, path, body_steps):
            """Opens a call and runs body_steps(call); reports a failure for an
            exception. Returns the call (or None)."""
            try:
                call = client.open(args.addr, path)
                await body_steps(call)
                return call
            except Exception as e:  # noqa: BLE001
                report(False, name, f"{type(e).__name__}: {e}")
                return None

        # 7. add_up: three messages, each in its own DATA frame, with a pause
        #    between them; nothing comes back before our FIN (a client-streaming
        #    response is a unary one, §5.4/§5.1); then {"sum":43,"count":3}.
        early = {}

        async def add_up_paced(call):
            for i, v in enumerate((1, 2, 40)):
                if i:
                    await asyncio.sleep(PAUSE)
                client.send(call, frame(b'{"value":%d}' % v))
            await asyncio.sleep(PAUSE)
            early["blocks"] = len(call.header_blocks)
            early["stop"] = call.stop_sending_code
            client.send(call, b"", end_stream=True)
            await call.until(lambda: call.ended, CALL_TIMEOUT)

        call = await streaming("add_up paced", "/helloworld.Greeter/add_up", add_up_paced)
        if call:
            o = Outcome(call)
            ok = (o.error is None and o.status == 0 and early["blocks"] == 0
                  and early["stop"] is None
                  and o.messages == [{"sum": 43, "count": 3}]
                  and o.response_headers.get(":status") == "200"
                  and o.response_headers.get("content-type") == "application/grpc+json")
            report(ok, "7 add_up 1, 2, 40 in 3 DATA frames 0.2 s apart, then FIN -> "
                       "{\"sum\":43,\"count\":3}, grpc-status 0; nothing before FIN",
                   "" if ok else f"before FIN: {early}; " + o.describe())

        # 7b. add_up: message boundaries are not DATA frame boundaries (§3): two
        #     messages in one frame, a third split inside its length prefix; the
        #     sum exceeds u32 (sum is a u64).
        async def add_up_split(call):
            m = frame(b'{"value":4294967295}')
            client.send(call, m + m + m[:3])
            await asyncio.sleep(PAUSE / 2)
            client.send(call, m[3:], end_stream=True)
            await call.until(lambda: call.ended, CALL_TIMEOUT)

        call = await streaming("add_up split", "/helloworld.Greeter/add_up", add_up_split)
        if call:
            o = Outcome(call)
            ok = (o.error is None and o.status == 0
                  and o.messages == [{"sum": 3 * 4294967295, "count": 3}])
            report(ok, "7b add_up 3 x 4294967295 (2 messages in one DATA frame, 1 split "
                       "inside its prefix) -> sum 12884901885 (u64), count 3",
                   "" if ok else o.describe())

        # 8. add_up with zero messages: HEADERS, then a bare FIN; and HEADERS
        #    carrying the FIN themselves. Both -> {"sum":0,"count":0}.
        for label, fin_on_headers in (("HEADERS then FIN", False),
                                      ("FIN on HEADERS", True)):
            async def add_up_empty(call, fin_on_headers=fin_on_headers):
                if not fin_on_headers:
                    await asyncio.sleep(PAUSE / 2)
                    client.send(call, b"", end_stream=True)
                await call.until(lambda: call.ended, CALL_TIMEOUT)

            try:
                call = client.open(args.addr, "/helloworld.Greeter/add_up",
                                   end_stream=fin_on_headers)
                await add_up_empty(call)
            except Exception as e:  # noqa: BLE001
                report(False, f"add_up empty ({label})", f"{type(e).__name__}: {e}")
                call = None
            if call:
                o = Outcome(call)
                ok = (o.error is None and o.status == 0
                      and o.messages == [{"sum": 0, "count": 0}])
                report(ok, f"8{'b' if fin_on_headers else ''} add_up with no message "
                           f"({label}) -> {{\"sum\":0,\"count\":0}}, grpc-status 0",
                       "" if ok else o.describe())

        # 9. chat: interleaved round trips on one stream. Each reply must
        #    arrive while our side is still open, before we send the next
        #    request; then half-close -> trailers grpc-status 0.
        names = ["Ada", "Grace", "Émilie"]
        trips = []

        async def chat_round_trips(call):
            for i, nm in enumerate(names):
                client.send(call, frame(json.dumps({"name": nm}).encode()))
                got = await call.until(lambda: len(msgs_now(call)) >= i + 1, CALL_TIMEOUT)
                trips.append((nm, got and not call.ended))
                if not got:
                    return
            await asyncio.sleep(PAUSE / 2)
            trips.append(("before FIN", len(call.header_blocks) == 1 and not call.ended))
            client.send(call, b"", end_stream=True)
            await call.until(lambda: call.ended, CALL_TIMEOUT)

        call = await streaming("chat round trips", "/helloworld.Greeter/chat", chat_round_trips)
        if call:
            o = Outcome(call)
            want = [{"message": f"Hello, {nm}!"} for nm in names]
            ok = (o.error is None and o.status == 0 and o.messages == want
                  and all(t[1] for t in trips) and len(trips) == len(names) + 1
                  and o.response_headers.get("content-type") == "application/grpc+json"
                  and call.stop_sending_code is None)
            report(ok, "9 chat: 3 round trips on one stream (each reply before the next "
                       "request), then FIN -> grpc-status 0",
                   "" if ok else f"trips={trips} stop_sending={call.stop_sending_code} "
                                 + o.describe())

        # 10. chat: an empty name mid-stream ends the call with status 3 after
        #     the replies before it, while our side is still open; the server
        #     then sends STOP_SENDING H3_NO_ERROR (0x100) (§5.3, §5.4, §10.6).
        async def chat_empty(call, first_frame):
            client.send(call, first_frame)
            if not await call.until(lambda: len(msgs_now(call)) >= 1, CALL_TIMEOUT):
                return
            client.send(call, frame(b'{"name":""}'))
            await call.until(lambda: call.ended, CALL_TIMEOUT)
            # STOP_SENDING may follow the trailers in a later packet.
            await call.until(lambda: call.stop_sending_code is not None, STOP_SENDING_WAIT)

        call = await streaming("chat empty name", "/helloworld.Greeter/chat",
                               lambda c: chat_empty(c, frame(b'{"name":"Ada"}')))
        if call:
            o = Outcome(call)
            ok = (o.error is None and o.status == 3
                  and o.message == "name must not be empty"
                  and o.messages == [{"message": "Hello, Ada!"}]
                  and call.ended and not call.sent_fin and call.reset_code is None)
            report(ok, "10 chat Ada, then {\"name\":\"\"} without FIN -> Hello, Ada!, then "
                       "trailers grpc-status 3 \"name must not be empty\" while our side is open",
                   "" if ok else f"sent_fin={call.sent_fin} reset={call.reset_code} "
                                 + o.describe())
            code = call.stop_sending_code
            report(code == 0x100, "10b ... and the server's STOP_SENDING carries H3_NO_ERROR (0x100)",
                   f"got {'none' if code is None else hex(code)}")

        # 10c. Requests in one DATA frame: Bob, "", Carol (no FIN). Only Bob
        #      is answered; Carol, after the empty name, is not.
        async def chat_batch(call):
            client.send(call, b"".join(frame(json.dumps({"name": n}).encode())
                                       for n in ("Bob", "", "Carol")))
            await call.until(lambda: call.ended, CALL_TIMEOUT)
            await call.until(lambda: call.stop_sending_code is not None, STOP_SENDING_WAIT)

        call = await streaming("chat batch", "/helloworld.Greeter/chat", chat_batch)
        if call:
            o = Outcome(call)
            ok = (o.error is None and o.status == 3
                  and o.messages == [{"message": "Hello, Bob!"}]
                  and call.stop_sending_code == 0x100)
            report(ok, "10c chat Bob, \"\", Carol in one DATA frame -> Hello, Bob! only, "
                       "grpc-status 3, STOP_SENDING 0x100",
                   "" if ok else f"stop_sending={call.stop_sending_code} " + o.describe())

        # 10d. chat: a request that does not decode mid-stream (§5.4 Limits,
        #      §6.2 row 18): the reply before it, then grpc-status 3.
        async def chat_undecodable(call):
            client.send(call, frame(b'{"name":"Ada"}'))
            if not await call.until(lambda: len(msgs_now(call)) >= 1, CALL_TIMEOUT):
                return
            client.send(call, frame(b'{"nom":"Ada"}'))
            await call.until(lambda: call.ended, CALL_TIMEOUT)

        call = await streaming("chat undecodable", "/helloworld.Greeter/chat", chat_undecodable)
        if call:
            o = Outcome(call)
            ok = (o.error is None and o.status == 3
                  and o.messages == [{"message": "Hello, Ada!"}])
            report(ok, "10d chat Ada, then {\"nom\":\"Ada\"} -> Hello, Ada!, then grpc-status 3",
                   f"message={o.message!r}" if ok else o.describe())

        # 11. add_up: a message length over the 4 MiB limit (§3, §6.2 row 11)
        #     while our side is open -> RESOURCE_EXHAUSTED, no message, and
        #     STOP_SENDING 0x100.
        async def add_up_over_limit(call):
            client.send(call, frame(b'{"value":5}') + struct.pack(">BI", 0, 5_000_000))
            await call.until(lambda: call.ended, CALL_TIMEOUT)
            await call.until(lambda: call.stop_sending_code is not None, STOP_SENDING_WAIT)

        call = await streaming("add_up over limit", "/helloworld.Greeter/add_up", add_up_over_limit)
        if call:
            o = Outcome(call)
            ok = (o.error is None and o.status == 8 and not o.messages
                  and not call.sent_fin and call.stop_sending_code == 0x100)
            report(ok, "11 add_up {\"value\":5}, then a 5000000-byte length prefix, no FIN -> "
                       "grpc-status 8, STOP_SENDING 0x100",
                   f"message={o.message!r}" if ok else
                   f"stop_sending={call.stop_sending_code} " + o.describe())

        # 12. An early answer before the request ended (§10.4): unknown method,
        #     half a message sent, no FIN -> trailers-only 12, STOP_SENDING 0x100.
        async def unknown_open(call):
            client.send(call, frame(b'{"name":"Ada"}')[:8])
            await call.until(lambda: call.ended, CALL_TIMEOUT)
            await call.until(lambda: call.stop_sending_code is not None, STOP_SENDING_WAIT)

        call = await streaming("unknown method, open", "/helloworld.Greeter/SayHello", unknown_open)
        if call:
            o = Outcome(call)
            ok = (o.error is None and o.status == 12 and not o.messages
                  and len(call.header_blocks) == 1 and call.stop_sending_code == 0x100)
            report(ok, "12 unknown method with the request still open -> trailers-only 12, "
                       "STOP_SENDING 0x100",
                   "" if ok else f"stop_sending={call.stop_sending_code} " + o.describe())

        # 13. GET -> 405, grpc-status 12, Allow: POST (§6.2 row 1, RFC 9110 §15.5.6).
        try:
            call = client.open(args.addr, "/helloworld.Greeter/say_hello",
                               method=b"GET", end_stream=True)
            await call.until(lambda: call.ended, CALL_TIMEOUT)
        except Exception as e:  # noqa: BLE001
            report(False, "GET", f"{type(e).__name__}: {e}")
            call = None
        if call:
            o = Outcome(call)
            allow = [v for k, v in (call.header_blocks[0] if call.header_blocks else [])
                     if k == b"allow"]
            ok = (o.error is None and o.status == 12
                  and o.response_headers.get(":status") == "405" and allow == [b"POST"])
            report(ok, "13 GET -> :status 405, grpc-status 12, allow: POST",
                   f"message={o.message!r}" if ok else f"allow={allow} " + o.describe())
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
