"""Sans-I/O SMTP (layer 0): bytes in, events out, replies in, bytes out.

No sockets, clocks or asyncio here, and nothing outside the standard library.
:class:`ServerConnection` enforces command order, PIPELINING order, SIZE, BDAT
framing, CRLF-only line ends and dot handling, and answers syntax and sequence
errors itself; its caller answers only the events that need a decision.
:class:`ClientConnection` is its mirror: commands out, replies in, each reply matched to
the command it answers, pipelined groups included.
"""

from ._address import (
    AddressError,
    Path,
    domain_a_label,
    is_ip_address,
    parse_path,
    split_path,
    xtext_decode,
    xtext_encode,
)
from ._client import (
    ClientConnection,
    ClientState,
    Command,
    ProtocolError,
    Response,
    TranscriptLine,
)
from ._content import ContentCheck, LineEnds
from ._events import (
    AuthResponse,
    AuthStart,
    CommandRejected,
    DataChunk,
    DataCommand,
    Event,
    Hello,
    MailFrom,
    MessageEnd,
    RcptTo,
    Reset,
    StartTls,
)
from ._help import help_reply
from ._limits import Limits
from ._params import MailParams, ParamError, RcptParams, parse_mail_params, parse_rcpt_params
from ._reply import Reply, parse_reply, reply
from ._server import (
    CLOSED,
    NEED_DATA,
    PAUSED,
    LocalProtocolError,
    ServerConnection,
    State,
    Transaction,
)

__all__ = [
    "CLOSED",
    "NEED_DATA",
    "PAUSED",
    "AddressError",
    "AuthResponse",
    "AuthStart",
    "ClientConnection",
    "ClientState",
    "Command",
    "CommandRejected",
    "ContentCheck",
    "DataChunk",
    "DataCommand",
    "Event",
    "Hello",
    "Limits",
    "LineEnds",
    "LocalProtocolError",
    "MailFrom",
    "MailParams",
    "MessageEnd",
    "ParamError",
    "Path",
    "ProtocolError",
    "RcptParams",
    "RcptTo",
    "Reply",
    "Reset",
    "Response",
    "ServerConnection",
    "StartTls",
    "State",
    "Transaction",
    "TranscriptLine",
    "domain_a_label",
    "help_reply",
    "is_ip_address",
    "parse_mail_params",
    "parse_path",
    "parse_rcpt_params",
    "parse_reply",
    "reply",
    "split_path",
    "xtext_decode",
    "xtext_encode",
]
