"""Trace context: a `traceparent` the caller gives in the metadata reaches
the Python handler's context as it was sent (PROTOCOL.md §7.2, "Trace
context"); a malformed one is passed as it is, never refused."""
import asyncio

from conftest import probe_client

TP = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


class TraceImpl:
    def blob(self, req, ctx):
        return {
            "data": b"",
            "tag": "|".join(
                [ctx.metadata.get("traceparent", "-"), ctx.metadata.get("tracestate", "-")]
            ),
        }


def test_a_python_handler_sees_the_callers_traceparent(tmp_path):
    async def go():
        async with probe_client(tmp_path, TraceImpl()) as client:
            reply = await client.blob(
                data=b"", tag="", metadata={"traceparent": TP, "tracestate": "congo=t61rcWkgMzE"}
            )
            assert reply["tag"] == f"{TP}|congo=t61rcWkgMzE"
            # Malformed: not refused; the server's Rust side ignores it for
            # its span, the handler still sees the metadata as sent.
            reply = await client.blob(data=b"", tag="", metadata={"traceparent": "garbage"})
            assert reply["tag"] == "garbage|-"
            # None given, none made up (no handler context on this side).
            reply = await client.blob(data=b"", tag="")
            assert reply["tag"] == "-|-"

    asyncio.run(asyncio.wait_for(go(), 60))
