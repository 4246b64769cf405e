"""The SMTP service (layer 4): asyncio listeners and one :class:`Session` per connection.

A session is I/O glue: it feeds :mod:`hato.smtp`, answers its events with what its
collaborators decide (:class:`Checks` per stage, :class:`Authenticator` for AUTH,
:class:`SubmissionRules`), and streams message data into the intake; the ``250`` after
DATA is written only once the intake says the message is durable. On shutdown, sessions
in the middle of a message get a bounded time to finish; all others are told
``421 4.3.2``. TLS is offered with STARTTLS on the plain listeners and from the first
byte on the implicit TLS ones, with one certificate (:class:`ServerTls`) that SIGHUP
reloads for new handshakes.
"""

from ._auth import Authenticator, AuthOutcome, Credentials, PasswordCheck, SaslExchange
from ._checks import Checks, ClientChecks, MailboxUsage, Rules
from ._context import ServerContext, limits_from
from ._proxy import ProxyHeader, ProxyHeaderError, ProxyHeaderReader
from ._received import ClientFacts, protocol_name
from ._registry import Sessions
from ._server import SmtpServer, bind
from ._session import Session
from ._submission import SubmissionRules
from ._tls import ServerTls, TlsError, ensure_self_signed, server_context

__all__ = [
    "AuthOutcome",
    "Authenticator",
    "Checks",
    "ClientChecks",
    "ClientFacts",
    "Credentials",
    "MailboxUsage",
    "PasswordCheck",
    "ProxyHeader",
    "ProxyHeaderError",
    "ProxyHeaderReader",
    "Rules",
    "SaslExchange",
    "ServerContext",
    "ServerTls",
    "Session",
    "Sessions",
    "SmtpServer",
    "SubmissionRules",
    "TlsError",
    "bind",
    "ensure_self_signed",
    "limits_from",
    "protocol_name",
    "server_context",
]
