"""HELP (RFC 5321 4.1.1.8): the syntax of every command, for the person at the prompt."""

from __future__ import annotations

from ._reply import Reply, reply

__all__ = ["help_reply"]

SYNTAX = {
    "EHLO": "EHLO <your hostname>   (HELO <hostname> for plain SMTP)",
    "HELO": "HELO <your hostname>",
    "MAIL": (
        "MAIL FROM:<sender@domain> [SIZE=n] [BODY=7BIT|8BITMIME|BINARYMIME] [SMTPUTF8]"
        " [RET=FULL|HDRS] [ENVID=id]"
    ),
    "RCPT": "RCPT TO:<recipient@domain> [NOTIFY=NEVER|SUCCESS,FAILURE,DELAY] [ORCPT=rfc822;addr]",
    "DATA": "DATA   (then the message; end it with a line holding a single dot)",
    "BDAT": "BDAT <octets> [LAST]   (then exactly that many octets)",
    "RSET": "RSET   (forget the current transaction)",
    "NOOP": "NOOP",
    "VRFY": "VRFY <address>   (never confirms users: answers 252)",
    "EXPN": "EXPN <list>   (disabled)",
    "HELP": "HELP [command]",
    "QUIT": "QUIT",
    "STARTTLS": "STARTTLS   (when advertised in EHLO)",
    "AUTH": "AUTH <mechanism> [initial-response]   (when advertised in EHLO)",
}


def help_reply(topic: str) -> Reply:
    if not topic:
        lines = ["Commands:", *(f"  {text}" for text in SYNTAX.values()), "End of HELP info"]
        return reply(214, "2.0.0", *lines)
    text = SYNTAX.get(topic.upper())
    if text is None:
        shown = "".join(c if c.isprintable() else "?" for c in topic[:32])
        return reply(504, "5.5.1", f'HELP topic unknown: "{shown}"')
    return reply(214, "2.0.0", text)
