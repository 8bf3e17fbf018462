"""`make dev`'s check before it starts anything: is one of its ports already held, and by what?

    python -m taskservice.devtools.ports API=8001 Temporal=7233 ...

Prints one line per held port (`port 7233 (Temporal) is in use by temporal (pid 4242): ...`) and exits 1;
exits 0, silent, when every port is free. A port is held when binding it on all interfaces fails, whoever
holds it (the process is named when this user may see it).
"""

from __future__ import annotations

import argparse
import errno
import socket
import sys
from dataclasses import dataclass

import psutil

__all__ = ["HeldPort", "held_ports"]


@dataclass(frozen=True)
class HeldPort:
    """A port `make dev` needs and cannot bind; `holder` names the process when it is visible."""

    name: str
    port: int
    holder: str | None

    def describe(self) -> str:
        who = f"in use by {self.holder}" if self.holder else "in use (by a process of another user)"
        return f"port {self.port} ({self.name}) is {who}"


def _bindable(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("0.0.0.0", port))
        except OSError as refused:
            if refused.errno in (errno.EADDRINUSE, errno.EACCES):
                return False
            raise
    return True


def _holder(port: int) -> str | None:
    """The listening process, as `name (pid N): command line`, when this user may see it."""
    try:
        connections = psutil.net_connections(kind="tcp")
    except psutil.AccessDenied:
        return None
    for conn in connections:
        if conn.status == psutil.CONN_LISTEN and conn.laddr and conn.laddr.port == port and conn.pid:
            try:
                process = psutil.Process(conn.pid)
                command = " ".join(process.cmdline())[:120]
                return f"{process.name()} (pid {conn.pid}): {command}"
            except psutil.Error:
                return f"pid {conn.pid}"
    return None


def held_ports(ports: dict[str, int]) -> list[HeldPort]:
    """The ports among `ports` (name → number) that cannot be bound now."""
    return [HeldPort(name, port, _holder(port)) for name, port in ports.items() if not _bindable(port)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("ports", nargs="+", metavar="NAME=PORT")
    args = parser.parse_args(argv)
    wanted = {name: int(port) for name, _, port in (item.partition("=") for item in args.ports)}
    held = held_ports(wanted)
    for port in held:
        print(port.describe(), file=sys.stderr)
    return 1 if held else 0


if __name__ == "__main__":
    raise SystemExit(main())
