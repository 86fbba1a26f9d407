"""knafeh: typed RPC over HTTP/3. The Python runtime (native module)."""
from .knafeh import *  # noqa: F401,F403
from .knafeh import __version__  # noqa: F401
