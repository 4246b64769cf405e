"""A peer for the benchmark: aiosmtpd storing each message in a Maildir, or discarding it.

What a small, honest aiosmtpd deployment would do: accept mail for one domain and, before
answering 250, write the message into ``MAILDIR/tmp``, fsync it, link it into ``new/``,
remove the tmp name and fsync ``new/`` (so the 250 means durable, like the others). The
file work runs in the event loop, as a plain handler's would: one fsync at a time.
``--discard`` answers 250 without storing anything (the protocol's ceiling).

    python bench/peer_aiosmtpd.py --listen 127.0.0.1:2600 --domain bench.test --maildir DIR
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import signal
import socket
import time
from pathlib import Path
from typing import Any

from aiosmtpd.smtp import SMTP, Envelope, Session


class MaildirHandler:
    def __init__(self, domain: str, maildir: Path | None) -> None:
        self.suffix = "@" + domain.lower()
        self.maildir = maildir
        self.names = itertools.count()
        self.host = socket.gethostname()
        if maildir is not None:
            for sub in ("tmp", "new", "cur"):
                (maildir / sub).mkdir(parents=True, exist_ok=True)
            self.new_dir = os.open(maildir / "new", os.O_RDONLY | os.O_DIRECTORY)

    async def handle_RCPT(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        rcpt_options: list[str],
    ) -> str:
        if not address.lower().endswith(self.suffix):
            return "550 5.1.1 not a local domain"
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 Ok"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        if self.maildir is None:
            return "250 2.0.0 Ok: discarded"
        content = envelope.original_content or b""
        prefix = "".join(f"Delivered-To: {rcpt}\r\n" for rcpt in envelope.rcpt_tos).encode()
        name = f"{time.time_ns()}.P{os.getpid()}Q{next(self.names)}.{self.host}"
        tmp = self.maildir / "tmp" / name
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.write(fd, prefix + content)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.link(tmp, self.maildir / "new" / name)
        os.unlink(tmp)
        os.fsync(self.new_dir)
        return "250 2.0.0 Ok: stored"


async def serve(host: str, port: int, handler: MaildirHandler) -> None:
    loop = asyncio.get_running_loop()

    def factory() -> Any:
        return SMTP(handler, hostname="aiosmtpd.bench.test", data_size_limit=64 * 2**20)

    server = await loop.create_server(factory, host, port, backlog=1024)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print(f"listening {server.sockets[0].getsockname()[1]}", flush=True)
    await stop.wait()
    server.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--listen", required=True, help="ADDR:PORT")
    parser.add_argument("--domain", required=True)
    store = parser.add_mutually_exclusive_group(required=True)
    store.add_argument("--maildir", type=Path)
    store.add_argument("--discard", action="store_true")
    args = parser.parse_args()
    host, _, port = args.listen.rpartition(":")
    asyncio.run(serve(host, int(port), MaildirHandler(args.domain, args.maildir)))


if __name__ == "__main__":
    main()
