"""The account store (layer 1): local domains, users (mailboxes) and aliases.

What this package promises:

- Everything lives in one SQLite file, ``DATA/accounts.sqlite3`` (WAL). A change is
  committed (``synchronous=FULL``) before the call returns, and every ``AccountStore`` on the
  same file, in any process, sees it at its next lookup: there is no cache, so a running
  server needs no restart or signal after ``hato user add``.
- Addresses and domains are normalized in one place (``parse_address``,
  ``normalize_domain``): domains are lowercase A-labels without a final dot; local parts are
  kept as written, in Unicode NFC, and compared without their quoting, casefolded unless the
  store is case-sensitive ("postmaster" is always compared case-insensitively).
- Passwords are stored only as scrypt hashes (``hash_password``), checked in constant time
  (``verify_password_hash``), and never logged, stored in clear or put in a message. Checking
  an unknown user's password costs as much as a known one's.
- Users and aliases are added only to local domains: those in the store or the ones the
  configuration names (``config_domains``). The store does not read the configuration.
- Every refusal is an ``AccountError`` whose message says what to do;
  ``InvalidInput``, its subclass, means the input itself is malformed.
"""

from hato.accounts._address import (
    POSTMASTER,
    Address,
    display_domain,
    fold_local,
    nfc,
    normalize_domain,
    parse_address,
    parse_alias_source,
)
from hato.accounts._admin import AccountAdmin, Change, format_size, named_domain, parse_size
from hato.accounts._errors import AccountError, InvalidInput
from hato.accounts._password import hash_password, verify_password_hash
from hato.accounts._store import ACCOUNTS_FILE, AccountStore, Alias, User

__all__ = [
    "ACCOUNTS_FILE",
    "POSTMASTER",
    "AccountAdmin",
    "AccountError",
    "AccountStore",
    "Address",
    "Alias",
    "Change",
    "InvalidInput",
    "User",
    "display_domain",
    "fold_local",
    "format_size",
    "hash_password",
    "named_domain",
    "nfc",
    "normalize_domain",
    "parse_address",
    "parse_alias_source",
    "parse_size",
    "verify_password_hash",
]
