import greeter


async def main(client: greeter.GreeterClient) -> None:
    for count in client.count_to(n=3):  # E: attr-defined: "AsyncIterator[Count]" has no attribute "__iter__"; maybe "__aiter__"? (not iterable)
        print(count)
