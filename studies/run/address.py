"""A Ray cluster address, checked before anything starts (no Ray import)."""

from __future__ import annotations

import socket

from ..errors import StudyError


def check_address(address: str, timeout: float = 3.0) -> None:
    """Fail fast, with one line, if a cluster address cannot be reached."""
    if address == "auto":
        return
    hostport = address.removeprefix("ray://")
    host, _, port = hostport.rpartition(":")
    if not host or not port.isdigit():
        raise StudyError(
            f"--address {address!r} is not allowed: expected auto, HOST:PORT or ray://HOST:PORT"
        )
    try:
        socket.create_connection((host, int(port)), timeout=timeout).close()
    except OSError as exc:
        raise StudyError(
            f"--address {address}: cannot reach a Ray cluster there ({exc.strerror or exc}); "
            "start one with `ray start --head` or leave --address out for a local Ray"
        ) from None


def is_loopback(address: str) -> bool:
    host = address.removeprefix("ray://").rpartition(":")[0]
    return host.startswith("127.") or host in ("localhost", "[::1]", "::1")
