import greeter


async def main(client: greeter.GreeterClient) -> None:
    call = client.chat()
    await call.send(nmae="Ada")  # E: call-overload: Unexpected keyword argument "nmae" for overloaded function "send" of "GreeterChatCall"
    await call.send({"name": 1})  # E: call-overload: No overload variant of "send" of "GreeterChatCall" matches argument type "dict[str, int]"
