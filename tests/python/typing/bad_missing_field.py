import greeter


def main(client: greeter.GreeterBlockingClient) -> None:
    client.count_to()  # E: call-overload: All overload variants of "count_to" of "GreeterBlockingClient" require at least one argument
    client.say_hello({})  # E: call-overload: matches argument type "dict[Never, Never]"
    total: greeter.Total = {"sum": 1}  # E: typeddict-item: Missing key "count" for TypedDict "Total"
