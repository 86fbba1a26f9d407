"""Type stubs for the `knafeh` Python runtime."""
import enum
from typing import Any, AsyncIterator, Coroutine, Generic, Iterator, Literal, Mapping, Optional, Tuple, TypeVar, Union, overload

__version__: str

class Code(enum.IntEnum):
    """The 17 gRPC status codes."""
    OK = 0
    CANCELLED = 1
    UNKNOWN = 2
    INVALID_ARGUMENT = 3
    DEADLINE_EXCEEDED = 4
    NOT_FOUND = 5
    ALREADY_EXISTS = 6
    PERMISSION_DENIED = 7
    RESOURCE_EXHAUSTED = 8
    FAILED_PRECONDITION = 9
    ABORTED = 10
    OUT_OF_RANGE = 11
    UNIMPLEMENTED = 12
    INTERNAL = 13
    UNAVAILABLE = 14
    DATA_LOSS = 15
    UNAUTHENTICATED = 16

Metadata = Mapping[str, Union[str, bytes]]

class RpcError(Exception):
    """A failed call, or the status a Python handler answers with by raising it."""
    code: Code
    message: str
    metadata: dict[str, Union[str, bytes]]
    def __init__(self, code: Union[Code, int], message: str = "", metadata: Optional[Metadata] = None) -> None: ...

class CallContext:
    """What a Python handler learns about its call; passed to handlers that
    declare a second parameter: `def say_hello(self, req, ctx)`."""
    path: str
    """The method's path, `/package.Service/method`."""
    method: str
    """The method name, as written in the trait."""
    peer_addr: str
    """The caller's address, `host:port`."""
    @property
    def metadata(self) -> dict[str, Union[str, bytes]]:
        """The caller's metadata (bytes for `-bin` keys)."""
    def time_remaining(self) -> Optional[float]:
        """Seconds left before the caller's deadline, or None without one."""
    def is_draining(self) -> bool:
        """Whether the server has begun a graceful shutdown (end long streams)."""
    def draining(self) -> Coroutine[Any, Any, None]:
        """Completes when the server begins a graceful shutdown (at once if it
        has): `await ctx.draining()` in an `async def` handler."""

T = TypeVar("T")

class RequestStream(Generic[T], AsyncIterator[T], Iterator[T]):
    """The requests of a client-streaming or bidirectional call, as a Python
    handler receives them: `async for req in requests` in an `async def`,
    `for req in requests` in a `def` (waits without holding the GIL; an
    `async def` must not use it, it would block its event loop). A request
    that does not decode raises `RpcError(INVALID_ARGUMENT)`; reading after
    the client cancelled raises `RpcError(CANCELLED)`."""
    def __aiter__(self) -> "RequestStream[T]": ...
    def __anext__(self) -> Coroutine[Any, Any, T]: ...
    def __iter__(self) -> "RequestStream[T]": ...
    def __next__(self) -> T: ...

Req = TypeVar("Req")
Resp = TypeVar("Resp")

class BidiCall(Generic[Req, Resp]):
    """A bidirectional call of a generated async client: iterate it for the
    replies while sending requests, independently. Dropping it, or
    `cancel()`, cancels the call."""
    def __aiter__(self) -> "BidiCall[Req, Resp]": ...
    def __anext__(self) -> Coroutine[Any, Any, Resp]:
        """The next reply; raises `RpcError` when the call fails, after the replies before it."""
    @overload
    def send(self, request: Req, /) -> Coroutine[Any, Any, None]:
        """Queues one request (waits while the server is not reading). Raises
        `RpcError(INVALID_ARGUMENT)` at once for a request that does not convert,
        `RpcError` with the call's status once it failed, `asyncio.InvalidStateError`
        after `done_writing()` or when the call was given an iterable."""
    @overload
    def send(self, /, **fields: Any) -> Coroutine[Any, Any, None]:
        """Queues one request given as keyword fields (a generated stub types
        them: the method returns a subclass naming the request's fields)."""
    def done_writing(self) -> Coroutine[Any, Any, None]:
        """Ends the requests; the replies keep coming."""
    def cancel(self) -> bool:
        """Cancels the call; True if it was still running."""
    def done(self) -> bool: ...

class Server:
    """Serves Python implementations wrapped in generated `{Trait}Service` objects."""
    def __init__(
        self,
        addr: str = "127.0.0.1:0",
        *,
        cert: str,
        key: str,
        max_message_size: Optional[int] = None,
        drain_timeout: Optional[float] = None,
        health: bool = False,
        compression: Optional[Literal["identity", "none", "gzip", "zstd"]] = None,
    ) -> None: ...
    def add_service(self, service: object) -> None: ...
    def set_health(self, service: str, status: Literal["SERVING", "NOT_SERVING", "UNKNOWN"]) -> None:
        """What knafeh.Health reports for `service` ("" = the whole server); needs health=True."""
    def start(self) -> Coroutine[Any, Any, str]:
        """Starts serving; resolves to the bound `host:port`."""
    def stop(self) -> Coroutine[Any, Any, None]:
        """Graceful shutdown."""

def dev_cert(directory: str, names: list[str] = ...) -> Tuple[str, str, str]:
    """Writes a development CA and server certificate; returns (ca, cert, key) paths."""
