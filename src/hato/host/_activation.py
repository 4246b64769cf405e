"""systemd socket activation (sd_listen_fds(3)): listening sockets handed over as file
descriptors 3, 4, ... with ``LISTEN_FDS``, ``LISTEN_PID`` and ``LISTEN_FDNAMES``.

Each descriptor's name (``FileDescriptorName=`` in the socket unit) says what it serves:
``smtp``, ``submission`` or ``implicit_tls``. Without names every socket is ``smtp``.
The variables are removed once read, so no child process takes the sockets for its own.
"""

from __future__ import annotations

import os
import socket
from collections.abc import MutableMapping

__all__ = ["KINDS", "ActivationError", "inherited_sockets"]

SD_LISTEN_FDS_START = 3
KINDS = ("smtp", "submission", "implicit_tls")
_VARIABLES = ("LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES")


class ActivationError(Exception):
    """The sockets handed over cannot be used (a name no listener has, not a TCP listener)."""


def inherited_sockets(
    env: MutableMapping[str, str] | None = None,
) -> dict[str, list[socket.socket]]:
    """The sockets systemd passed to this process, by kind; {} when none were."""
    env = os.environ if env is None else env
    count, pid = env.get("LISTEN_FDS", ""), env.get("LISTEN_PID", "")
    names_text = env.get("LISTEN_FDNAMES", "")
    for name in _VARIABLES:
        env.pop(name, None)
    if not count.isdigit() or int(count) == 0:
        return {}
    if not pid.isdigit() or int(pid) != os.getpid():
        return {}  # meant for another process (the one that started us)
    names = names_text.split(":") if names_text else ["smtp"] * int(count)
    if len(names) != int(count):
        raise ActivationError(f"LISTEN_FDNAMES names {len(names)} sockets, LISTEN_FDS {count}")
    found: dict[str, list[socket.socket]] = {}
    for offset, name in enumerate(names):
        fd = SD_LISTEN_FDS_START + offset
        if name not in KINDS:
            raise ActivationError(
                f"socket {fd} is named {name!r}; FileDescriptorName= must be one of"
                f" {', '.join(KINDS)}"
            )
        found.setdefault(name, []).append(_listening(fd, name))
    return found


def _listening(fd: int, name: str) -> socket.socket:
    os.set_inheritable(fd, False)
    sock = socket.socket(fileno=fd)
    if sock.type != socket.SOCK_STREAM or sock.family not in (socket.AF_INET, socket.AF_INET6):
        sock.detach()
        raise ActivationError(f"socket {fd} ({name}) is not a TCP socket")
    if not sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN):
        sock.detach()
        raise ActivationError(f"socket {fd} ({name}) is not listening (ListenStream=)")
    return sock
