from typing import Iterator

import greeter
import knafeh


class WrongReply:
    async def say_hello(self, req: greeter.HelloRequest) -> str:
        return req["name"]

    def count_to(self, req: greeter.CountRequest) -> Iterator[greeter.Count]:
        yield {"value": req["n"]}

    def add_up(self, requests: knafeh.RequestStream[greeter.Count]) -> greeter.Total:
        return {"sum": 0, "count": 0}

    def chat(self, requests: knafeh.RequestStream[greeter.HelloRequest]) -> Iterator[greeter.HelloReply]:
        yield {"message": "hi"}


class WrongRequest(WrongReply):
    async def say_hello(self, req: greeter.CountRequest) -> greeter.HelloReply:  # type: ignore[override]
        return {"message": "hi"}


greeter.GreeterService(WrongReply())  # E: arg-type: say_hello: expected "Callable[[HelloRequest], HelloReply | Awaitable[HelloReply]] | Callable[[HelloRequest, CallContext], HelloReply | Awaitable[HelloReply]]", got "Callable[[HelloRequest], Coroutine[Any, Any, str]]"
greeter.GreeterService(WrongRequest())  # E: arg-type: got "Callable[[CountRequest], Coroutine[Any, Any, HelloReply]]"
