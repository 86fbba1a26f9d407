import greeter


async def main(client: greeter.GreeterClient) -> str:
    reply = await client.say_hello(name="Ada")
    return reply["mesage"]  # E: typeddict-item: TypedDict "HelloReply" has no key "mesage"
