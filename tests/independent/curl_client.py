#!/usr/bin/env python3
"""libcurl interop check for a knafeh greeter server, over HTTP/3 only.

Uses libcurl through curl_cffi (its wheel bundles a libcurl built with
ngtcp2 + nghttp3). Written from PROTOCOL.md; it guards issue 11 point 5: a
server that answers before it has read the whole request stops the request
with STOP_SENDING H3_NO_ERROR (0x100), which libcurl accepts; with
H3_REQUEST_CANCELLED (0x10c) libcurl failed the transfer with
"curl: (95) HTTP/3 stream N reset by server" although the response was
complete.

Every transfer must succeed (any libcurl error fails the run), must have
been made over HTTP/3 (CURLINFO_HTTP_VERSION == CURL_HTTP_VERSION_3, and
the status line reads "HTTP/3"), and must carry the complete response.
libcurl hands HTTP/3 trailers to the header callback after the blank line
that ends the response headers, so grpc-status is read from there.

Usage:
  curl_client.py --addr 127.0.0.1:4433 --ca /tmp/knafeh-dev/ca.pem
"""
import argparse
import io
import json
import struct
import sys
import time

from curl_cffi import Curl, CurlError, CurlHttpVersion, CurlInfo, CurlOpt

CT_JSON = "application/grpc+json"
TRANSFER_TIMEOUT_MS = 15_000
CURL_HTTP_VERSION_3 = 30  # CURLINFO_HTTP_VERSION's value for HTTP/3
# Larger than the server's per-stream receive window (1 000 000 bytes,
# PROTOCOL.md §1.1): such a body cannot have been sent completely before
# the server answers, since the server does not read it (an early answer).
BIG = 2 * 1024 * 1024


def frame(payload, flag=0):
    return struct.pack(">BI", flag, len(payload)) + payload


def filler(payload, size):
    """Copies of frame(payload) adding up to at least size bytes."""
    m = frame(payload)
    return m * (size // len(m) + 1)


class Transfer:
    def __init__(self):
        self.error = None  # CurlError, if perform() failed
        self.http_version = None
        self.code = None
        self.status_line = ""
        self.headers = []  # [(name, value)] of the response header block
        self.trailers = []  # [(name, value)] after the blank line
        self.body = b""
        self.uploaded = None
        self.body_size = 0
        self.seconds = 0.0

    def header(self, name, block=None):
        block = self.headers if block is None else block
        vals = [v for k, v in block if k == name]
        return vals[0] if vals else None

    def grpc_status(self):
        """grpc-status from a trailers-only response or from the trailers."""
        v = self.header("grpc-status")
        if v is None:
            v = self.header("grpc-status", self.trailers)
        return v

    def grpc_message(self):
        v = self.header("grpc-message")
        if v is None:
            v = self.header("grpc-message", self.trailers)
        return v

    def messages(self):
        out, i, b = [], 0, self.body
        while i < len(b):
            if len(b) - i < 5:
                raise ValueError("truncated message prefix")
            flag, n = struct.unpack(">BI", b[i:i + 5])
            if flag != 0 or len(b) - i - 5 < n:
                raise ValueError(f"bad framing at byte {i}")
            out.append(json.loads(b[i + 5:i + 5 + n]))
            i += 5 + n
        return out

    def describe(self):
        return (f"error={self.error!r} http_version={self.http_version} code={self.code} "
                f"status_line={self.status_line!r} headers={self.headers} "
                f"trailers={self.trailers} body={self.body[:120]!r} "
                f"uploaded={self.uploaded}/{self.body_size} in {self.seconds:.2f}s")


def transfer(base, ca, path, body, content_type=CT_JSON, extra=()):
    """One POST over HTTP/3 only; returns a Transfer (never raises CurlError)."""
    t = Transfer()
    t.body_size = len(body)
    out, hdr = io.BytesIO(), io.BytesIO()
    c = Curl()
    try:
        c.setopt(CurlOpt.URL, (base + path).encode())
        c.setopt(CurlOpt.HTTP_VERSION, CurlHttpVersion.V3ONLY)
        c.setopt(CurlOpt.CAINFO, ca.encode())
        c.setopt(CurlOpt.POST, 1)
        c.setopt(CurlOpt.POSTFIELDS, body)
        c.setopt(CurlOpt.POSTFIELDSIZE, len(body))
        headers = [f"content-type: {content_type}", "te: trailers", "Expect:"]
        c.setopt(CurlOpt.HTTPHEADER, [h.encode() for h in headers + list(extra)])
        c.setopt(CurlOpt.WRITEDATA, out)
        c.setopt(CurlOpt.HEADERDATA, hdr)
        c.setopt(CurlOpt.TIMEOUT_MS, TRANSFER_TIMEOUT_MS)
        start = time.monotonic()
        try:
            c.perform()
        except CurlError as e:
            t.error = e
        t.seconds = time.monotonic() - start
        t.http_version = c.getinfo(CurlInfo.HTTP_VERSION)
        t.code = c.getinfo(CurlInfo.RESPONSE_CODE)
        t.uploaded = c.getinfo(CurlInfo.SIZE_UPLOAD_T)
    finally:
        c.close()
    t.body = out.getvalue()
    lines = hdr.getvalue().decode("latin-1").split("\r\n")
    if lines:
        t.status_line = lines[0].strip()
    block = t.headers
    for line in lines[1:]:
        if line == "":
            block = t.trailers  # the blank line ends the header block
            continue
        name, _, value = line.partition(":")
        block.append((name.strip().lower(), value.strip()))
    return t


def main():
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--addr", required=True, help="host:port of the server")
    p.add_argument("--ca", required=True, help="PEM file with the CA to trust")
    args = p.parse_args()
    base = f"https://{args.addr}"
    passes = failures = 0

    def report(ok, name, detail=""):
        nonlocal passes, failures
        if ok:
            passes += 1
        else:
            failures += 1
        print(f"{'PASS' if ok else 'FAIL'} {name}" + (f": {detail}" if detail else ""), flush=True)

    c = Curl()
    print(f"libcurl: {c.version().decode()}")
    c.close()

    def h3_ok(t):
        """The transfer succeeded, over HTTP/3."""
        return (t.error is None and t.http_version == CURL_HTTP_VERSION_3
                and t.status_line.startswith("HTTP/3 "))

    # 1. unary say_hello: the exact framed reply of PROTOCOL.md §10.1.
    t = transfer(base, args.ca, "/helloworld.Greeter/say_hello", frame(b'{"name":"Ada"}'))
    want = bytes.fromhex("0000000019") + b'{"message":"Hello, Ada!"}'
    ok = (h3_ok(t) and t.code == 200 and t.header("content-type") == CT_JSON
          and t.body == want and t.header("grpc-status", t.trailers) == "0")
    report(ok, "c1 say_hello over HTTP/3 -> 200, framed {\"message\":\"Hello, Ada!\"}, "
               "trailers grpc-status 0",
           f"{t.status_line}, CURLINFO_HTTP_VERSION={t.http_version}" if ok else t.describe())

    # 2. server streaming count_to n=2 (§10.2).
    t = transfer(base, args.ca, "/helloworld.Greeter/count_to", frame(b'{"n":2}'))
    ok = (h3_ok(t) and t.code == 200 and t.body == frame(b'{"value":1}') + frame(b'{"value":2}')
          and t.header("grpc-status", t.trailers) == "0")
    report(ok, "c2 count_to n=2 -> {\"value\":1}, {\"value\":2}, grpc-status 0",
           "" if ok else t.describe())

    # 3. client streaming add_up, the whole request stream as one body (§10.5).
    t = transfer(base, args.ca, "/helloworld.Greeter/add_up",
                 frame(b'{"value":1}') + frame(b'{"value":2}'))
    ok = (h3_ok(t) and t.code == 200 and t.body == frame(b'{"sum":3,"count":2}')
          and t.header("grpc-status", t.trailers) == "0")
    report(ok, "c3 add_up 1, 2 -> {\"sum\":3,\"count\":2}, grpc-status 0",
           "" if ok else t.describe())

    # 4. Early answers: the server answers before the request body ended and
    #    stops the request with STOP_SENDING H3_NO_ERROR. libcurl must report
    #    success (not error 95) with the complete response, having uploaded
    #    less than the body (which shows the answer really came early).
    ada = frame(b'{"name":"Ada"}')
    cases = [
        ("c4 unknown method", "/helloworld.Greeter/SayHello", ada + filler(b'{"name":"x"}', BIG),
         CT_JSON, (), 200, "12", []),
        ("c5 bad grpc-timeout 10x", "/helloworld.Greeter/say_hello",
         ada + filler(b'{"name":"x"}', BIG), CT_JSON, ("grpc-timeout: 10x",), 200, "3", []),
        ("c6 content-type application/json (415)", "/helloworld.Greeter/say_hello",
         ada + filler(b'{"name":"x"}', BIG), "application/json", (), 415, "3", []),
        ("c7 chat Ada, \"\", then more names", "/helloworld.Greeter/chat",
         ada + frame(b'{"name":""}') + filler(b'{"name":"x"}', BIG), CT_JSON, (), 200, "3",
         [{"message": "Hello, Ada!"}]),
        ("c8 add_up with a 5000000-byte length prefix", "/helloworld.Greeter/add_up",
         frame(b'{"value":5}') + struct.pack(">BI", 0, 5_000_000) + b"\0" * BIG,
         CT_JSON, (), 200, "8", []),
    ]
    for name, path, body, ct, extra, code, status, msgs in cases:
        t = transfer(base, args.ca, path, body, ct, extra)
        try:
            got = t.messages()
        except ValueError as e:
            got = f"unframeable body: {e}"
        # A refusal is trailers-only (grpc-status in the header block); chat
        # ends with trailers after its reply.
        where = t.headers if not msgs else t.trailers
        ok = (h3_ok(t) and t.code == code and got == msgs
              and t.header("grpc-status", where) == status
              and t.uploaded is not None and t.uploaded < len(body))
        report(ok, f"{name}, {len(body)}-byte body -> transfer OK, :status {code}, "
                   f"grpc-status {status}" + (f", {len(msgs)} reply" if msgs else ""),
               f"uploaded {t.uploaded} of {len(body)} bytes before the answer; "
               f"grpc-message={t.grpc_message()!r}" if ok else t.describe())

    print(f"curl interop: {passes} passed, {failures} failed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
