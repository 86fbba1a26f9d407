import greeter


async def main(client: greeter.GreeterClient) -> None:
    await client.say_hello(name=1)  # E: call-overload: No overload variant of "say_hello" of "GreeterClient" matches argument type "int"
