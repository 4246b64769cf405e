"""What a running ``hato serve`` really uses, written into its data directory at start.

Settings given only on the command line (``--hostname``, ``-o``) reach the server and no
one else; the other commands read this record so that they agree with the server on what
is local (``hato user add``), and ``hato test`` learns which listeners are this server and
which clients it trusts. The file is JSON, private to Hato's user (0600), replaced whole
(written beside, then renamed) so a reader never sees half of it.
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hato.config._settings import ListenAddress

__all__ = ["SERVER_RECORD", "ServerRecord", "read_server_record", "write_server_record"]

SERVER_RECORD = "server.json"


@dataclass(frozen=True, slots=True, kw_only=True)
class ServerRecord:
    """The effective settings of the last ``hato serve`` on a data directory."""

    pid: int
    started: float  # unix time
    version: str
    hostname: str
    local_domains: tuple[str, ...]
    trusted_networks: tuple[str, ...]
    # Every socket it listens on, as "ADDR:PORT" with the port the kernel gave (port 0).
    listening: tuple[str, ...]

    @property
    def running(self) -> bool:
        """Whether its process is still there (a reused pid can make this wrongly true)."""
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:  # there, but another user's
            return True
        return True

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def write_server_record(data_dir: Path, record: ServerRecord) -> None:
    """Replace ``DATA/server.json`` with ``record`` (mode 0600 whatever the umask)."""
    path = data_dir / SERVER_RECORD
    partial = path.with_name(f".{SERVER_RECORD}.{record.pid}")
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, (json.dumps(record.to_dict(), indent=2) + "\n").encode())
    finally:
        os.close(fd)
    os.replace(partial, path)


def read_server_record(data_dir: Path) -> ServerRecord | None:
    """The record in ``data_dir``; None when there is none or it cannot be read as one."""
    try:
        raw = json.loads((data_dir / SERVER_RECORD).read_text("utf-8"))
        return ServerRecord(
            pid=int(raw["pid"]),
            started=float(raw["started"]),
            version=str(raw["version"]),
            hostname=str(raw["hostname"]),
            local_domains=tuple(map(str, raw["local_domains"])),
            trusted_networks=tuple(map(str, raw["trusted_networks"])),
            listening=tuple(str(ListenAddress.parse(str(text))) for text in raw["listening"]),
        )
    except (OSError, ValueError, KeyError, TypeError):
        # Unreadable or of another shape: as if no server had written one.
        return None
