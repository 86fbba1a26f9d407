"""Type stubs for the generated Greeter classes (written by hand next to
the module; see the README's "Type stubs" section)."""
from typing import Any, AsyncIterator, Awaitable, Coroutine, Iterator, Optional, Protocol, TypedDict, Union

from knafeh import CallContext, Metadata

class HelloRequest(TypedDict):
    name: str

class HelloReply(TypedDict):
    message: str

class CountRequest(TypedDict):
    n: int

class Count(TypedDict):
    value: int

class GreeterClient:
    @staticmethod
    def connect(
        addr: str,
        *,
        ca: Optional[str] = None,
        server_name: Optional[str] = None,
        insecure: bool = False,
        codec: Optional[str] = None,
        timeout: Optional[float] = None,
        connect_timeout: Optional[float] = None,
    ) -> Coroutine[Any, Any, "GreeterClient"]: ...
    def say_hello(
        self, request: Optional[HelloRequest] = None, /, *, timeout: Optional[float] = None,
        metadata: Optional[Metadata] = None, **fields: object,
    ) -> Coroutine[Any, Any, HelloReply]: ...
    def count_to(
        self, request: Optional[CountRequest] = None, /, *, timeout: Optional[float] = None,
        metadata: Optional[Metadata] = None, **fields: object,
    ) -> AsyncIterator[Count]: ...

class GreeterBlockingClient:
    @staticmethod
    def connect(
        addr: str,
        *,
        ca: Optional[str] = None,
        server_name: Optional[str] = None,
        insecure: bool = False,
        codec: Optional[str] = None,
        timeout: Optional[float] = None,
        connect_timeout: Optional[float] = None,
    ) -> "GreeterBlockingClient": ...
    def say_hello(
        self, request: Optional[HelloRequest] = None, /, *, timeout: Optional[float] = None,
        metadata: Optional[Metadata] = None, **fields: object,
    ) -> HelloReply: ...
    def count_to(
        self, request: Optional[CountRequest] = None, /, *, timeout: Optional[float] = None,
        metadata: Optional[Metadata] = None, **fields: object,
    ) -> Iterator[Count]: ...

class GreeterImpl(Protocol):
    """What GreeterService expects: `def` or `async def` methods; a
    generator or async generator for count_to. A method may take a second
    parameter, the `knafeh.CallContext` (`def say_hello(self, req, ctx)`)."""
    def say_hello(self, req: HelloRequest, ctx: CallContext = ..., /) -> Union[HelloReply, Awaitable[HelloReply]]: ...
    def count_to(self, req: CountRequest, ctx: CallContext = ..., /) -> Union[Iterator[Count], AsyncIterator[Count]]: ...

class GreeterService:
    def __init__(self, implementation: GreeterImpl) -> None: ...
    @property
    def implementation(self) -> GreeterImpl: ...
