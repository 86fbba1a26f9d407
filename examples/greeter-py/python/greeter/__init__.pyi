"""Type stubs for the generated Greeter classes (written by hand next to
the module; see the README's "Type stubs" section)."""
from typing import (
    Any, AsyncIterable, AsyncIterator, Awaitable, Coroutine, Iterable, Iterator, Optional, Protocol,
    TypedDict, TypeVar, Union,
)

from knafeh import BidiCall, CallContext, Metadata, RequestStream

class HelloRequest(TypedDict):
    name: str

class HelloReply(TypedDict):
    message: str

class CountRequest(TypedDict):
    n: int

class Count(TypedDict):
    value: int

class Total(TypedDict):
    sum: int
    count: int

Req = TypeVar("Req")
Requests = Union[Iterable[Req], AsyncIterable[Req]]

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
    def add_up(
        self, requests: Requests[Count], /, *, timeout: Optional[float] = None,
        metadata: Optional[Metadata] = None,
    ) -> Coroutine[Any, Any, Total]: ...
    def chat(
        self, requests: Optional[Requests[HelloRequest]] = None, /, *, timeout: Optional[float] = None,
        metadata: Optional[Metadata] = None,
    ) -> BidiCall[HelloRequest, HelloReply]:
        """Starts the call. Without `requests`, send them with `await call.send(...)`."""

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
    def add_up(
        self, requests: Iterable[Count], /, *, timeout: Optional[float] = None,
        metadata: Optional[Metadata] = None,
    ) -> Total: ...
    def chat(
        self, requests: Iterable[HelloRequest], /, *, timeout: Optional[float] = None,
        metadata: Optional[Metadata] = None,
    ) -> Iterator[HelloReply]:
        """The replies, as they come; the requests are pulled from `requests` meanwhile."""

class GreeterImpl(Protocol):
    """What GreeterService expects: `def` or `async def` methods; a
    generator or async generator for count_to and chat. add_up and chat
    receive a `knafeh.RequestStream` of requests: `async for` in an
    `async def`, `for` in a `def`. A method may take a second parameter,
    the `knafeh.CallContext` (`def say_hello(self, req, ctx)`)."""
    def say_hello(self, req: HelloRequest, ctx: CallContext = ..., /) -> Union[HelloReply, Awaitable[HelloReply]]: ...
    def count_to(self, req: CountRequest, ctx: CallContext = ..., /) -> Union[Iterator[Count], AsyncIterator[Count]]: ...
    def add_up(self, req: RequestStream[Count], ctx: CallContext = ..., /) -> Union[Total, Awaitable[Total]]: ...
    def chat(
        self, req: RequestStream[HelloRequest], ctx: CallContext = ..., /
    ) -> Union[Iterator[HelloReply], AsyncIterator[HelloReply]]: ...

class GreeterService:
    def __init__(self, implementation: GreeterImpl) -> None: ...
    @property
    def implementation(self) -> GreeterImpl: ...
