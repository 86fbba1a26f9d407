import greeter


def main(client: greeter.GreeterBlockingClient) -> None:
    client.say_hello(name="Ada", nick="A")  # E: call-overload: Unexpected keyword argument "nick" for overloaded function "say_hello"
    client.say_hello({"name": "Ada", "nick": "A"})  # E: call-overload: matches argument type "dict[str, str]"
