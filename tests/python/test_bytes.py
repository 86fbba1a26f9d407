"""Binary fields (`Vec<u8>`) travel as Python `bytes` both ways."""
import asyncio

import knafeh
import knafeh_probe


class BlobImpl:
    def blob(self, req):
        data = req["data"]
        return {"data": bytes(reversed(data)), "tag": type(data).__name__}


def test_vec_u8_fields_are_bytes(tmp_path):
    async def go():
        ca, cert, key = knafeh.dev_cert(str(tmp_path))
        server = knafeh.Server("127.0.0.1:0", cert=cert, key=key)
        server.add_service(knafeh_probe.ProbeService(BlobImpl()))
        addr = await server.start()
        try:
            client = await knafeh_probe.ProbeClient.connect(addr, ca=ca)
            reply = await client.blob(data=b"\x00\x01\xff", tag="t")
            assert reply == {"data": b"\xff\x01\x00", "tag": "bytes"}
            # An empty byte string still converts.
            reply = await client.blob(data=b"", tag="t")
            assert reply["data"] in (b"", [])
        finally:
            await server.stop()

    asyncio.run(asyncio.wait_for(go(), 60))
