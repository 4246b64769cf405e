"""Mail from local programs: the maildrop that ``sendmail`` writes and the pickup directory.

Promise: a file written into ``DATA/maildrop/`` (by ``sendmail``, atomically) or renamed
into ``DATA/pickup/`` is taken through the one intake (so it is checked, given its trace
and submission fields, signed and made durable like any other message) and removed only
once the intake has accepted it. What cannot be queued moves to ``bad/`` beside a
``NAME.reason`` file and is never deleted. A running server sees a new file within a
second (inotify, or polling); a stopped one takes what waits at its next start.
"""

from hato.drop._maildrop import (
    BAD_DIR,
    DATA_DIR_MODE,
    MAILDROP_DIR,
    MAILDROP_MODE,
    PICKUP_DIR,
    Drop,
    DropError,
    crlf,
    prepare_directories,
    read_drop,
    write_drop,
)
from hato.drop._pickup import PickupMessage, header_recipients, parse_pickup
from hato.drop._taker import DropTaker, Taken, user_of
from hato.drop._watch import DirectoryWatch

__all__ = [
    "BAD_DIR",
    "DATA_DIR_MODE",
    "MAILDROP_DIR",
    "MAILDROP_MODE",
    "PICKUP_DIR",
    "DirectoryWatch",
    "Drop",
    "DropError",
    "DropTaker",
    "PickupMessage",
    "Taken",
    "crlf",
    "header_recipients",
    "parse_pickup",
    "prepare_directories",
    "read_drop",
    "user_of",
    "write_drop",
]
