import greeter


async def main(client: greeter.GreeterClient) -> None:
    await client.say_hello({"name": 1})  # E: call-overload: matches argument type "dict[str, int]"
    request: greeter.HelloRequest = {"name": b"Ada"}  # E: typeddict-item: Incompatible types (expression has type "bytes", TypedDict item "name" has type "str")
