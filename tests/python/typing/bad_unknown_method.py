import greeter


async def main(client: greeter.GreeterClient) -> None:
    await client.say_helo(name="Ada")  # E: attr-defined: "GreeterClient" has no attribute "say_helo"; maybe "say_hello"?
