"""Type stubs for the `knafeh` Python runtime."""
import enum
from typing import Any, Coroutine, Mapping, Optional, Tuple, Union

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
    ) -> None: ...
    def add_service(self, service: object) -> None: ...
    def start(self) -> Coroutine[Any, Any, str]:
        """Starts serving; resolves to the bound `host:port`."""
    def stop(self) -> Coroutine[Any, Any, None]:
        """Graceful shutdown."""

def dev_cert(directory: str, names: list[str] = ...) -> Tuple[str, str, str]:
    """Writes a development CA and server certificate; returns (ca, cert, key) paths."""
