"""``sendmail -bs``: an SMTP session on stdin and stdout, through the real SMTP engine.

``smtp.ServerConnection`` parses and sequences the dialogue exactly as on port 25 (syntax,
order, limits, dot-unstuffing, DSN parameters); each message ends in the maildrop, as
``sendmail`` without ``-bs`` would leave it, and ``250`` is said once it is durable.
"""

from __future__ import annotations

import os
from typing import BinaryIO

from .. import smtp
from ..config import Settings
from ..drop import Drop
from ..smtp import Reply, reply
from ..spool import Recipient
from ._sendmail import Failure, write_maildrop
from ._sendmail_args import Options

__all__ = ["smtp_session"]

_DATA_GO = reply(354, None, "End data with <CR><LF>.<CR><LF>")


class _Session:
    def __init__(self, settings: Settings, options: Options) -> None:
        self.settings, self.options = settings, options
        limits = smtp.Limits(max_message_size=settings.smtp.max_message_size)
        self.conn = smtp.ServerConnection(settings.server.hostname, limits)
        self.data = bytearray()

    def answer(self, event: smtp.Event) -> Reply | None:
        conn = self.conn
        match event:
            case smtp.Hello(name=name, extended=extended):
                greeting = f"{conn.hostname} Hello {name}"
                return (
                    Reply(250, None, (greeting, *conn.ehlo_keywords()))
                    if extended
                    else reply(250, None, greeting)
                )
            case smtp.MailFrom():
                self.data.clear()
                return reply(250, "2.1.0", "Ok")
            case smtp.RcptTo():
                return reply(250, "2.1.5", "Ok")
            case smtp.DataCommand():
                return _DATA_GO
            case smtp.DataChunk(data=data):
                self.data += data
                return None
            case smtp.MessageEnd(problem=problem):
                if problem is not None:
                    return problem
                return self._queue()
            case smtp.StartTls() | smtp.AuthStart() | smtp.AuthResponse():
                return reply(502, "5.5.1", "Error: command not implemented")
        return None

    def _queue(self) -> Reply:
        transaction = self.conn.transaction
        assert transaction is not None
        params = transaction.params
        drop = Drop(
            sender=transaction.reverse_path,
            recipients=tuple(
                Recipient(address=path, notify=rcpt.notify, orcpt=rcpt.orcpt)
                for path, rcpt in transaction.recipients
            ),
            ret=params.ret,
            envid=params.envid,
            full_name=self.options.full_name,
        )
        try:
            name = write_maildrop(self.settings.server.data_dir, drop, bytes(self.data))
        except Failure as failure:
            return reply(451, "4.3.0", f"Error: {failure}")
        finally:
            self.data.clear()
        return reply(250, "2.0.0", f"Ok: queued as {name}")


def smtp_session(settings: Settings, stdin: BinaryIO, stdout: BinaryIO, options: Options) -> int:
    """Serve one session until QUIT or the end of stdin; the exit status."""
    session = _Session(settings, options)
    conn = session.conn
    conn.send_greeting(reply(220, None, f"{settings.server.hostname} ESMTP Hato (sendmail -bs)"))
    fd = stdin.fileno()
    while True:
        event = conn.next_event()
        if event is smtp.CLOSED:
            break
        if event is smtp.NEED_DATA:
            stdout.write(conn.data_to_send())
            stdout.flush()
            data = os.read(fd, 65536)
            if not data:
                break
            conn.receive_data(data)
            continue
        if event is smtp.PAUSED:  # never: every event that needs a reply is answered
            conn.close_with(reply(421, "4.3.0", "Error: internal error"))
            continue
        answer = session.answer(event)
        if answer is not None:
            conn.send_reply(answer)
    stdout.write(conn.data_to_send())
    stdout.flush()
    return 0
