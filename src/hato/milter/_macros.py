"""The macros sent at each stage by default: Postfix's defaults (``milter_*_macros``),
with the client's address, name and port at connect as milters such as rspamd use them."""

from __future__ import annotations

from ._protocol import MacroStage

__all__ = ["DEFAULT_MACROS", "MACRO_STAGES"]

# The configuration's names for the stages, in protocol order.
MACRO_STAGES: dict[str, MacroStage] = {
    "connect": MacroStage.CONNECT,
    "helo": MacroStage.HELO,
    "mail": MacroStage.MAIL,
    "rcpt": MacroStage.RCPT,
    "data": MacroStage.DATA,
    "eoh": MacroStage.END_OF_HEADERS,
    "eom": MacroStage.END_OF_MESSAGE,
}

DEFAULT_MACROS: dict[str, tuple[str, ...]] = {
    "connect": (
        "j",
        "{daemon_name}",
        "{daemon_addr}",
        "v",
        "_",
        "{client_addr}",
        "{client_name}",
        "{client_port}",
    ),
    "helo": ("{tls_version}", "{cipher}", "{cipher_bits}"),
    "mail": ("i", "{auth_type}", "{auth_authen}", "{mail_addr}", "{mail_host}"),
    "rcpt": ("i", "{rcpt_addr}", "{rcpt_host}"),
    "data": ("i",),
    "eoh": ("i",),
    "eom": ("i",),
}
