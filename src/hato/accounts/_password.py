"""Password hashes: scrypt (RFC 7914), stored as one self-describing string.

The format is ``$scrypt$ln=14,r=8,p=1$<salt>$<hash>`` with salt and hash in standard base64
without padding, as PHC strings write them. The parameters travel with each hash, so
stronger ones can be chosen later without invalidating the hashes already stored.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
import secrets
import unicodedata

from hato.accounts._errors import InvalidInput

__all__ = ["hash_password", "verify_password_hash"]

# RFC 7914 section 2 parameters: N = 2**14 with r = 8 costs 16 MiB and about 50 ms, the
# interactive-login figure the RFC's authors suggest; memory-hardness is what makes
# guessing on GPUs expensive.
SCRYPT_LN = 14
SCRYPT_R = 8
SCRYPT_P = 1
SALT_BYTES = 16
KEY_BYTES = 32
# A stored hash may name other parameters; refuse ones that would cost more than this much
# memory to check, so a damaged or planted row cannot exhaust the server.
MAX_SCRYPT_MEMORY = 256 * 1024 * 1024
# p multiplies the time a check takes without using more memory; bound it too.
MAX_SCRYPT_P = 16
# The longest password accepted, in UTF-8 octets; scrypt reads all of it on every check.
MAX_PASSWORD_BYTES = 4096

_FORMAT = re.compile(
    r"\$scrypt\$ln=(?P<ln>[0-9]{1,2}),r=(?P<r>[0-9]{1,3}),p=(?P<p>[0-9]{1,3})"
    r"\$(?P<salt>[A-Za-z0-9+/]+)\$(?P<hash>[A-Za-z0-9+/]+)"
)


def hash_password(password: str) -> str:
    """A new hash of ``password`` with a fresh random salt. Raises InvalidInput if empty."""
    salt = secrets.token_bytes(SALT_BYTES)
    key = _scrypt(_encode(password), salt, SCRYPT_LN, SCRYPT_R, SCRYPT_P, KEY_BYTES)
    params = f"ln={SCRYPT_LN},r={SCRYPT_R},p={SCRYPT_P}"
    return f"$scrypt${params}${_b64(salt)}${_b64(key)}"


def verify_password_hash(password: str, encoded: str) -> bool:
    """Whether ``password`` matches ``encoded``, compared in constant time.

    Raises ValueError when ``encoded`` is not a hash this module wrote (damaged data is the
    store's problem, not a wrong password).
    """
    match = _FORMAT.fullmatch(encoded)
    if match is None:
        raise ValueError("not an scrypt password hash")
    ln, r, p = int(match["ln"]), int(match["r"]), int(match["p"])
    if (
        not (1 <= ln <= 30 and r >= 1 and 1 <= p <= MAX_SCRYPT_P)
        or _memory(ln, r, p) > MAX_SCRYPT_MEMORY
    ):
        raise ValueError(f"scrypt parameters out of range: ln={ln}, r={r}, p={p}")
    salt, expected = _unb64(match["salt"]), _unb64(match["hash"])
    try:
        data = _encode(password)
    except InvalidInput:
        return False
    return hmac.compare_digest(_scrypt(data, salt, ln, r, p, len(expected)), expected)


def _encode(password: str) -> bytes:
    # RFC 8265 OpaqueString: NFC, so one password typed on two systems gives one hash.
    data = unicodedata.normalize("NFC", password).encode("utf-8")
    if not data:
        raise InvalidInput("a password cannot be empty")
    if len(data) > MAX_PASSWORD_BYTES:
        raise InvalidInput(f"a password can be at most {MAX_PASSWORD_BYTES} bytes long")
    return data


def _memory(ln: int, r: int, p: int) -> int:
    # RFC 7914 section 5: V holds N blocks of 128*r octets; B holds p more.
    return 128 * r * ((1 << ln) + p + 2)


def _scrypt(data: bytes, salt: bytes, ln: int, r: int, p: int, dklen: int) -> bytes:
    return hashlib.scrypt(
        data, salt=salt, n=1 << ln, r=r, p=p, dklen=dklen, maxmem=_memory(ln, r, p) + (1 << 20)
    )


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii").rstrip("=")


def _unb64(text: str) -> bytes:
    try:
        return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
    except binascii.Error:
        raise ValueError("bad base64 in password hash") from None
