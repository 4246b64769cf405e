"""What the recorder is handed besides events: plain data, no imports from above."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Attempt", "TimedLine"]

# (unix time, "C" or "S", text): one line of a conversation.
TimedLine = tuple[float, str, str]


@dataclass(frozen=True, slots=True, kw_only=True)
class Attempt:
    """One try at handing one message to one host of its next hop."""

    queue_id: str
    domain: str  # the destination domain the message went to
    host: str  # the next hop's name (an MX, the smarthost, a transport's host)
    address: str  # the IP address connected to
    port: int
    started: float  # unix time the attempt began
    tls: str  # "TLSv1.3 TLS_AES_256_GCM_SHA384, certificate verified", or "" for none
    reused: bool  # over a session kept from an earlier message (no greeting or EHLO here)
    outcome: str  # in a few words: "accepted", "refused: ...", "connect to ...: refused"
    lines: tuple[TimedLine, ...]
