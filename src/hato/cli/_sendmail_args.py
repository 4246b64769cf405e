"""The ``sendmail`` command line, as cron, PHP, mutt, ``mail(1)`` and git send-email use it.

Parsed as sendmail's getopt does (flags may be bundled, ``-fADDR`` or ``-f ADDR``, ``-q``
with an optional interval); an option Hato does not know is ignored with a warning, as
sendmail does, so a program written for another MTA still gets its mail sent.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["EX_USAGE", "USAGE", "Options", "UsageError", "parse_args"]

USAGE = """\
usage: sendmail [-t] [-i] [-f SENDER] [-F NAME] [-N DSN] [-R full|hdrs] [-V ENVID] [-v]
                [--config FILE] [--data-dir DIR] [--] [RECIPIENT...]
       sendmail -bs | -bp | -q

Reads a message on stdin and queues it with Hato (through DATA/maildrop/).
  -t            recipients from To:, Cc: and Bcc: too (Bcc: is removed)
  -i, -oi       a line of a single dot does not end the message
  -f SENDER     envelope sender (-f '<>' for none); -F NAME: the From: full name
  -N never|success,failure,delay    -R full|hdrs    -V ENVID: DSN parameters
  -bs           an SMTP session on stdin and stdout
  -bp           list the queue (mailq); -q: deliver the queue now
Exit status: 0 queued, or a sysexits code (64 usage, 65 data, 67 user unknown, 73, 75
try again later, 77 permission denied, 78 configuration)."""

EX_USAGE = 64  # sysexits.h

# Options that take a value (attached, or the next argument), and flags.
_WITH_VALUE = frozenset("BbCdFfhLMNOopRrVX")
_FLAGS = frozenset("cGIimnstTv")
# Taken and without effect here: sendmail's own tuning (-B body type, -h hop count, -L log
# tag, -p protocol, -O/-o options other than those below, -X traffic log, -d debugging).
_QUIET = frozenset("BhLpXdOM")
_SILENT_FLAGS = frozenset("cGImnsT")  # -c, -G, -I, -m, -n, -s, -T: historical no-ops
_MODES = {"m": "deliver", "s": "smtp", "p": "list", "i": "newaliases"}
_NOTIFY = frozenset({"SUCCESS", "FAILURE", "DELAY"})


class UsageError(Exception):
    """A command line sendmail could not act on (exit EX_USAGE)."""


@dataclass(slots=True)
class Options:
    # deliver (-bm), smtp (-bs), list (-bp), flush (-q), newaliases (-bi), help (--help)
    mode: str = "deliver"
    extract: bool = False  # -t: recipients from To/Cc/Bcc
    sender: str | None = None  # -f/-r; "" the null sender
    full_name: str | None = None  # -F
    dot_ends: bool = True  # a line of a single dot ends the message, unless -i/-oi
    notify: tuple[str, ...] = ()  # -N
    ret: str | None = None  # -R
    envid: str | None = None  # -V
    verbose: bool = False
    config: Path | None = None  # -C or --config
    data_dir: Path | None = None  # --data-dir
    recipients: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def _notify(value: str) -> tuple[str, ...]:
    words = tuple(w.strip().upper() for w in value.split(",") if w.strip())
    if words == ("NEVER",) or (words and _NOTIFY.issuperset(words)):
        return words
    raise UsageError(f"-N {value}: expected never, or a list of success, failure and delay")


def _option(options: Options, letter: str, value: str) -> None:
    if letter == "b":
        mode = _MODES.get(value[:1])
        if mode is None or len(value) != 1:
            raise UsageError(f"-b{value}: not supported (only -bm, -bs, -bp and -bi)")
        options.mode = mode
    elif letter in ("f", "r"):
        options.sender = "" if value in ("<>", "") else value.removeprefix("<").removesuffix(">")
    elif letter == "F":
        options.full_name = value
    elif letter == "N":
        options.notify = _notify(value)
    elif letter == "R":
        if value.upper() not in ("FULL", "HDRS"):
            raise UsageError(f"-R {value}: expected full or hdrs")
        options.ret = value.upper()
    elif letter == "V":
        options.envid = value
    elif letter == "C":
        options.config = Path(value)
    elif letter == "o":
        if value == "i":
            options.dot_ends = False
        elif not value.startswith("e"):  # -oem and the other error modes: the exit code
            options.warnings.append(f"-o{value}: ignored")
    elif letter not in _QUIET:
        options.warnings.append(f"-{letter} {value}: ignored")


def _flag(options: Options, letter: str) -> None:
    if letter == "t":
        options.extract = True
    elif letter == "i":
        options.dot_ends = False
    elif letter == "v":
        options.verbose = True
    elif letter not in _SILENT_FLAGS:
        options.warnings.append(f"-{letter}: ignored")


def _long(options: Options, argv: list[str], at: int) -> int:
    """``--config`` and ``--data-dir`` (``=VALUE`` or the next argument); the next index."""
    name, equals, value = argv[at].partition("=")
    if name == "--help":
        options.mode = "help"
        return at + 1
    if name not in ("--config", "--data-dir"):
        options.warnings.append(f"{name}: unknown option, ignored")
        return at + 1
    if not equals:
        if at + 1 >= len(argv):
            raise UsageError(f"{name} needs a value")
        at, value = at + 1, argv[at + 1]
    if name == "--config":
        options.config = Path(value)
    else:
        options.data_dir = Path(value)
    return at + 1


def parse_args(argv: list[str]) -> Options:
    """Options and recipients (options may come after recipients, as GNU getopt allows)."""
    options, at = Options(), 0
    while at < len(argv):
        arg = argv[at]
        if arg == "--":
            options.recipients += argv[at + 1 :]
            break
        if arg.startswith("--"):
            at = _long(options, argv, at)
            continue
        if not arg.startswith("-") or arg == "-":
            options.recipients.append(arg)
            at += 1
            continue
        letters = arg[1:]
        for index, letter in enumerate(letters):
            if letter == "q":  # -q, -q30m, -qIqueueid: run the queue now
                options.mode = "flush"
                break
            if letter in _WITH_VALUE:
                value = letters[index + 1 :]
                if not value:
                    if at + 1 >= len(argv):
                        raise UsageError(f"-{letter} needs a value")
                    at += 1
                    value = argv[at]
                _option(options, letter, value)
                break
            if letter in _FLAGS:
                _flag(options, letter)
            else:
                options.warnings.append(f"-{letter}: unknown option, ignored")
        at += 1
    return options
