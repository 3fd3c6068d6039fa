"""Free TCP ports for the servers tests start (MLflow, the UI, optuna-dashboard, Ray, ...)."""

from __future__ import annotations

import random
import socket
from pathlib import Path

# below Linux's default ephemeral range (32768-60999): the kernel never hands these out as the
# source port of an outgoing connection, so a port chosen now is still free when the server
# binds it seconds later, however many connections the machine opens meanwhile
LOW, HIGH = 20000, 32000


def _ephemeral_start() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now, outside the ephemeral range
    where there is room (else any free port)."""
    high = min(HIGH, _ephemeral_start())
    rng = random.Random()
    for _ in range(200):
        port = rng.randrange(LOW, high) if high > LOW else 0
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return sock.getsockname()[1]
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
