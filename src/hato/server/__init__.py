"""The SMTP service (layer 4): asyncio listeners and one :class:`Session` per connection.

A session feeds :mod:`hato.smtp`, answers its events, and streams message data into
:mod:`hato.spool`; the ``250`` after DATA is written only once the spool says the
message is durable. On shutdown, sessions in the middle of a message get a bounded
time to finish; all others are told ``421 4.3.2``.
"""

from ._context import ServerContext, limits_from
from ._received import ClientFacts, protocol_name, received_header
from ._server import SmtpServer
from ._session import Session

__all__ = [
    "ClientFacts",
    "ServerContext",
    "Session",
    "SmtpServer",
    "limits_from",
    "protocol_name",
    "received_header",
]
