"""The message a session is receiving, between the engine and the intake.

Opened at DATA (or by the first BDAT chunk), written as the engine hands out data, taken
at the end for ``finish``. A spool failure is remembered (``failed``) and answered after
the data, since SMTP has no way to stop a client mid-message."""

from __future__ import annotations

import time
from collections.abc import Mapping

from .. import smtp
from ..events import EventLog, InternalError
from ..spool import Envelope, IncomingMessage, Intake, Origin, Recipient, SpoolError
from ._received import ClientFacts, protocol_name

__all__ = ["Transfer", "envelope_for"]


class Transfer:
    def __init__(self, intake: Intake, log: EventLog, session: str) -> None:
        self._intake, self._log, self._session = intake, log, session
        self.message: IncomingMessage | None = None
        self.failed = False  # the spool could not take this message's data

    @property
    def active(self) -> bool:
        return self.message is not None

    def open(
        self, envelope: Envelope, origin: Origin, annotations: Mapping[str, object] = {}
    ) -> bool:
        """Hand a new message to the intake; False if the spool cannot take it."""
        self.abort()
        try:
            self.message = self._intake.open(envelope, origin, annotations=annotations)
        except (OSError, SpoolError) as error:
            self._spool_error(error)
            return False
        return True

    def write(self, data: bytes) -> None:
        if self.message is None:
            self.failed = True  # never opened: the spool refused it
            return
        try:
            self.message.write(data)
        except (OSError, SpoolError) as error:
            self._spool_error(error)
            self._drop()
            self.failed = True

    def take(self) -> IncomingMessage | None:
        """The whole message, to finish; None (and nothing kept) if the spool failed."""
        message, failed = self.message, self.failed
        if failed or message is None:
            self.abort()
            return None
        self.message = None
        return message

    def abort(self) -> None:
        """Forget the message (RSET, a new HELO, a refusal, the end of the session)."""
        self._drop()
        self.failed = False

    def _drop(self) -> None:
        message, self.message = self.message, None
        if message is not None:
            try:
                message.abort()
            except (OSError, SpoolError) as error:
                self._spool_error(error)

    def _spool_error(self, error: Exception) -> None:
        self._log.emit(InternalError(where="spool", error=repr(error), session=self._session))


def envelope_for(transaction: smtp.Transaction, facts: ClientFacts, *, session: str) -> Envelope:
    params = transaction.params
    return Envelope(
        reverse_path=transaction.reverse_path,
        recipients=tuple(
            Recipient(address=path, notify=rp.notify, orcpt=rp.orcpt)
            for path, rp in transaction.recipients
        ),
        envid=params.envid,
        ret=params.ret,
        body=params.body,
        smtputf8=params.smtputf8,
        client_ip=facts.ip,
        client_name=facts.name,
        helo=facts.helo,
        protocol=protocol_name(facts, smtputf8=params.smtputf8),
        tls=facts.tls,
        auth=facts.auth,
        arrival=time.time(),
        session_id=session,
    )
