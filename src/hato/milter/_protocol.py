"""The milter protocol's vocabulary (Sendmail's libmilter, protocol version 6), as data.

Every packet is a 4-byte length in network order (covering what follows), one command
byte and its data. The MTA sends commands; the milter answers those that expect an
answer (the negotiation can switch callbacks off, ``NO_*``, or their answers, ``NR_*``).
The values are the protocol's own (``mfdef.h``); the names here say what each means.
"""

from __future__ import annotations

import enum

__all__ = [
    "MAX_BODY_CHUNK",
    "PROTOCOL_VERSION",
    "Action",
    "Command",
    "Family",
    "MacroStage",
    "Protocol",
    "ReplyCode",
]

PROTOCOL_VERSION = 6
# A BODY packet carries at most this much (MILTER_CHUNK_SIZE).
MAX_BODY_CHUNK = 65535


class Command(bytes, enum.Enum):
    """What the MTA sends (SMFIC_*)."""

    ABORT = b"A"  # forget the current message, keep the connection
    BODY = b"B"
    CONNECT = b"C"
    MACRO = b"D"
    END_OF_MESSAGE = b"E"
    HELO = b"H"
    QUIT_NEW_CONNECTION = b"K"  # QUIT_NC: end this session, keep the connection for another
    HEADER = b"L"
    MAIL = b"M"
    END_OF_HEADERS = b"N"
    NEGOTIATE = b"O"
    QUIT = b"Q"
    RCPT = b"R"
    DATA = b"T"
    UNKNOWN = b"U"


class ReplyCode(bytes, enum.Enum):
    """What the milter sends (SMFIR_*)."""

    ADD_RECIPIENT = b"+"
    DELETE_RECIPIENT = b"-"
    ADD_RECIPIENT_PAR = b"2"  # with ESMTP arguments
    SHUTDOWN = b"4"
    ACCEPT = b"a"
    REPLACE_BODY = b"b"
    CONTINUE = b"c"
    DISCARD = b"d"
    CHANGE_FROM = b"e"
    CONNECTION_FAIL = b"f"
    ADD_HEADER = b"h"
    INSERT_HEADER = b"i"
    SET_SYMBOL_LIST = b"l"
    CHANGE_HEADER = b"m"
    NEGOTIATE = b"O"
    PROGRESS = b"p"
    QUARANTINE = b"q"
    REJECT = b"r"
    SKIP = b"s"
    TEMPFAIL = b"t"
    REPLY_CODE = b"y"


class Action(enum.IntFlag):
    """What a milter may do to a message (SMFIF_*), offered and asked in the negotiation."""

    ADD_HEADERS = 0x01
    CHANGE_BODY = 0x02
    ADD_RECIPIENTS = 0x04
    DELETE_RECIPIENTS = 0x08
    CHANGE_HEADERS = 0x10
    QUARANTINE = 0x20
    CHANGE_FROM = 0x40
    ADD_RECIPIENTS_PAR = 0x80
    SET_SYMBOL_LIST = 0x100


class Protocol(enum.IntFlag):
    """The protocol's options (SMFIP_*): callbacks the milter does not want (NO_*),
    callbacks it will not answer (NR_*), and a few others."""

    NO_CONNECT = 0x01
    NO_HELO = 0x02
    NO_MAIL = 0x04
    NO_RCPT = 0x08
    NO_BODY = 0x10
    NO_HEADERS = 0x20
    NO_END_OF_HEADERS = 0x40
    NR_HEADER = 0x80
    NO_UNKNOWN = 0x100
    NO_DATA = 0x200
    SKIP = 0x400  # the MTA understands SKIP in answer to BODY
    RCPT_REJECTED = 0x800  # the milter wants rejected recipients too
    NR_CONNECT = 0x1000
    NR_HELO = 0x2000
    NR_MAIL = 0x4000
    NR_RCPT = 0x8000
    NR_DATA = 0x10000
    NR_UNKNOWN = 0x20000
    NR_END_OF_HEADERS = 0x40000
    NR_BODY = 0x80000
    HEADER_LEADING_SPACE = 0x100000  # header values are sent and taken with their space
    MAX_DATA_256K = 0x10000000
    MAX_DATA_1M = 0x20000000


class MacroStage(enum.IntEnum):
    """Where a SET_SYMBOL_LIST names macros for (SMFIM_*)."""

    CONNECT = 0
    HELO = 1
    MAIL = 2
    RCPT = 3
    DATA = 4
    END_OF_MESSAGE = 5
    END_OF_HEADERS = 6


class Family(bytes, enum.Enum):
    """The client's address family in CONNECT (SMFIA_*)."""

    UNKNOWN = b"U"
    UNIX = b"L"
    INET = b"4"
    INET6 = b"6"


# The callbacks each command stands for: which NO_ flag skips it, which NR_ flag says no
# answer comes. Commands not listed always get an answer (NEGOTIATE, END_OF_MESSAGE) or
# never do (MACRO, ABORT, QUIT, QUIT_NEW_CONNECTION).
SKIPPED_BY: dict[Command, Protocol] = {
    Command.CONNECT: Protocol.NO_CONNECT,
    Command.HELO: Protocol.NO_HELO,
    Command.MAIL: Protocol.NO_MAIL,
    Command.RCPT: Protocol.NO_RCPT,
    Command.DATA: Protocol.NO_DATA,
    Command.HEADER: Protocol.NO_HEADERS,
    Command.END_OF_HEADERS: Protocol.NO_END_OF_HEADERS,
    Command.BODY: Protocol.NO_BODY,
    Command.UNKNOWN: Protocol.NO_UNKNOWN,
}
UNANSWERED_WITH: dict[Command, Protocol] = {
    Command.CONNECT: Protocol.NR_CONNECT,
    Command.HELO: Protocol.NR_HELO,
    Command.MAIL: Protocol.NR_MAIL,
    Command.RCPT: Protocol.NR_RCPT,
    Command.DATA: Protocol.NR_DATA,
    Command.HEADER: Protocol.NR_HEADER,
    Command.END_OF_HEADERS: Protocol.NR_END_OF_HEADERS,
    Command.BODY: Protocol.NR_BODY,
    Command.UNKNOWN: Protocol.NR_UNKNOWN,
}
NEVER_ANSWERED = frozenset(
    {Command.MACRO, Command.ABORT, Command.QUIT, Command.QUIT_NEW_CONNECTION}
)
