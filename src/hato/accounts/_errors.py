"""The one exception family of the account store."""

from __future__ import annotations

__all__ = ["AccountError", "InvalidInput"]


class AccountError(Exception):
    """A request the store cannot carry out; the message says what to do about it.

    Raised for state the caller can change (an unknown user, a domain that is not local, a
    user that already exists). Never carries a password.
    """


class InvalidInput(AccountError):
    """The request itself is malformed (an address, domain, password or quota), whatever the
    store holds: asking again with the same input cannot succeed."""
