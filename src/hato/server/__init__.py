"""The SMTP service (layer 4): asyncio listeners and one :class:`Session` per connection.

A session feeds :mod:`hato.smtp`, answers its events, and streams message data into
:mod:`hato.spool`; the ``250`` after DATA is written only once the spool says the
message is durable. On shutdown, sessions in the middle of a message get a bounded
time to finish; all others are told ``421 4.3.2``. TLS is offered with STARTTLS on the
plain listeners and from the first byte on the implicit TLS ones, with one certificate
(:class:`ServerTls`) that SIGHUP reloads for new handshakes.
"""

from ._context import ServerContext, limits_from
from ._received import ClientFacts, protocol_name
from ._server import SmtpServer
from ._session import Session
from ._tls import ServerTls, TlsError, ensure_self_signed, server_context

__all__ = [
    "ClientFacts",
    "ServerContext",
    "ServerTls",
    "Session",
    "SmtpServer",
    "TlsError",
    "ensure_self_signed",
    "limits_from",
    "protocol_name",
    "server_context",
]
