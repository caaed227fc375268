"""Makes and checks the credentials DBAgent hands out: app keys, master secrets, device tokens.

Only hashes are stored. Every comparison goes through hmac.compare_digest, and a check for an
unknown app or device compares against a dummy hash so it costs the same as a wrong secret.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import secrets
import time

# scrypt's interactive-login cost (RFC 7914 section 2): about 16 MiB and tens of ms per check.
# The parameters are stored with each hash, so raising them later leaves old hashes valid.
SCRYPT_N = 2**14
SCRYPT_R = 8
SCRYPT_P = 1
_SCRYPT_MAXMEM = 64 * 1024 * 1024
_SALT_BYTES = 16
_HASH_BYTES = 32


def new_app_key() -> str:
    """24 lowercase hex characters (96 random bits), the format validation.app_key accepts."""
    return secrets.token_hex(12)


def new_master_secret() -> str:
    """128 random bits as 32 hex characters; shown to the operator once, then only hashed."""
    return secrets.token_hex(16)


def new_device_token() -> str:
    """256 random bits as 64 hex characters: unguessable, so a plain SHA-256 suffices at rest."""
    return secrets.token_hex(32)


def new_registration_id(now_ms: int | None = None) -> str:
    """22 hex characters: 12 of the time in ms, then 40 random bits.

    Time first keeps inserts into the devices primary key near its right edge (cheap B-tree
    appends at hundreds of millions of rows); the random tail makes ids unguessable in practice.
    A collision is caught by the unique key and retried by the store.
    """
    ms = int(time.time() * 1000) if now_ms is None else now_ms
    return f"{ms:012x}{secrets.token_hex(5)}"


def _scrypt(secret: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    return hashlib.scrypt(secret.encode("utf-8"), salt=salt, n=n, r=r, p=p, maxmem=_SCRYPT_MAXMEM, dklen=_HASH_BYTES)


def hash_secret(secret: str) -> str:
    """scrypt with a random per-app salt, stored as scrypt$n$r$p$salt$hash (hex)."""
    salt = secrets.token_bytes(_SALT_BYTES)
    digest = _scrypt(secret, salt, SCRYPT_N, SCRYPT_R, SCRYPT_P)
    return f"scrypt${SCRYPT_N}${SCRYPT_R}${SCRYPT_P}${salt.hex()}${digest.hex()}"


@functools.lru_cache(maxsize=1)
def dummy_secret_hash() -> str:
    """A hash no secret matches in practice, checked when the app is unknown (same cost)."""
    return hash_secret(secrets.token_hex(16))


def verify_secret(secret: str, stored: str | None) -> bool:
    """True if secret hashes to stored. stored None (unknown app) still pays for one scrypt."""
    if stored is None:
        stored = dummy_secret_hash()
        secret_ok = False
    else:
        secret_ok = True
    try:
        scheme, n, r, p, salt_hex, digest_hex = stored.split("$")
        if scheme != "scrypt":
            raise ValueError(scheme)
        expected = bytes.fromhex(digest_hex)
        actual = _scrypt(secret or "", bytes.fromhex(salt_hex), int(n), int(r), int(p))
    except ValueError:
        return False
    return hmac.compare_digest(actual, expected) and secret_ok


def hash_token(token: str) -> str:
    """SHA-256 of a device token, hex, unsalted.

    Salts and slow hashes defend guessable secrets against dictionaries and precomputed tables;
    a token of 256 random bits has neither weakness, and STC checks one per device connection,
    so a fast hash is both enough and needed.
    """
    return hashlib.sha256((token or "").encode("utf-8")).hexdigest()


_DUMMY_TOKEN_HASH = hash_token(secrets.token_hex(32))


def verify_token(token: str, stored: str | None) -> bool:
    """True if token hashes to stored; stored None (unknown device) takes the same path."""
    expected = _DUMMY_TOKEN_HASH if stored is None else stored
    match = hmac.compare_digest(hash_token(token).encode("ascii"), expected.encode("ascii", "replace"))
    return match and stored is not None
