"""scrypt password hashes: the stored format, verification, and what a bad hash does."""

import base64
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hato.accounts import InvalidInput, hash_password, verify_password_hash

FORMAT = re.compile(r"\$scrypt\$ln=14,r=8,p=1\$([A-Za-z0-9+/]{22})\$([A-Za-z0-9+/]{43})")


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode().rstrip("=")


def test_hash_is_self_describing_with_16_byte_salt_and_32_byte_key() -> None:
    encoded = hash_password("correct horse")
    match = FORMAT.fullmatch(encoded)
    assert match is not None, encoded
    assert len(base64.b64decode(match[1] + "==")) == 16
    assert len(base64.b64decode(match[2] + "=")) == 32
    assert "correct horse" not in encoded


def test_right_and_wrong_passwords() -> None:
    encoded = hash_password("correct horse")
    assert verify_password_hash("correct horse", encoded)
    assert not verify_password_hash("correct horse ", encoded)
    assert not verify_password_hash("Correct horse", encoded)


def test_every_hash_has_its_own_salt() -> None:
    assert hash_password("same") != hash_password("same")


def test_reads_the_rfc_7914_test_vector() -> None:
    # RFC 7914 section 12: scrypt(P="password", S="NaCl", N=1024, r=8, p=16, dkLen=64).
    expected = bytes.fromhex(
        "fdbabe1c9d3472007856e7190d01e9fe7c6ad7cbc8237830e77376634b373162"
        "2eaf30d92e22a3886ff109279d9830dac727afb94a83ee6d8360cbdfa2cc0640"
    )
    encoded = f"$scrypt$ln=10,r=8,p=16${b64(b'NaCl')}${b64(expected)}"
    assert verify_password_hash("password", encoded)
    assert not verify_password_hash("passwore", encoded)


def test_unicode_passwords_are_compared_in_nfc() -> None:
    encoded = hash_password("caf\u00e9")  # é as one code point
    assert verify_password_hash("cafe\u0301", encoded)  # e + combining acute


def test_empty_and_oversized_passwords_are_refused() -> None:
    with pytest.raises(InvalidInput, match="empty"):
        hash_password("")
    with pytest.raises(InvalidInput, match="at most"):
        hash_password("x" * 4097)
    assert not verify_password_hash("", hash_password("x"))


@pytest.mark.parametrize(
    "damaged",
    [
        "",
        "plaintext",
        "$2b$12$abcdefghijklmnopqrstuu",
        "$scrypt$ln=14,r=8,p=1$c2FsdA$",
        "$scrypt$ln=14,r=8,p=1$c2F*dA$aGFzaA",
        "$scrypt$ln=14,r=8,p=1$c$aGFzaA",
        "$scrypt$ln=31,r=8,p=1$c2FsdA$aGFzaA",  # absurd cost
        "$scrypt$ln=24,r=8,p=1$c2FsdA$aGFzaA",  # 2 GiB of memory
        "$scrypt$ln=14,r=8,p=99$c2FsdA$aGFzaA",  # 99 times the work
        "$scrypt$ln=0,r=8,p=1$c2FsdA$aGFzaA",
    ],
)
def test_damaged_hashes_raise_rather_than_answer(damaged: str) -> None:
    with pytest.raises(ValueError):
        verify_password_hash("anything", damaged)


def test_a_changed_hash_no_longer_matches() -> None:
    encoded = hash_password("secret")
    head, key = encoded.rsplit("$", 1)
    flipped = ("B" if key[0] == "A" else "A") + key[1:]
    assert not verify_password_hash("secret", f"{head}${flipped}")


@settings(max_examples=5, deadline=None)
@given(st.text(min_size=1, max_size=40))
def test_any_password_round_trips(password: str) -> None:
    assert verify_password_hash(password, hash_password(password))
