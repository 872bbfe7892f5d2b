"""finwait.live: the engine on a Linux TUN device in a network-namespace lab,
driven by asyncio, with a streams API shaped like asyncio's (docs/live.md)."""

from .lab import Lab, LabConfig, LabError
from .streams import Server, Stack, StreamReader, StreamWriter, open_connection, start_server

__all__ = [
    "Lab",
    "LabConfig",
    "LabError",
    "Server",
    "Stack",
    "StreamReader",
    "StreamWriter",
    "open_connection",
    "start_server",
]
