"""Credentials: formats, hashing at rest, and the same work for unknown and wrong."""

from __future__ import annotations

import hashlib

import pytest

from services.common import limits, validation
from services.dbagent import credentials


def test_app_keys_pass_validation_and_differ():
    keys = {credentials.new_app_key() for _ in range(100)}
    assert len(keys) == 100
    for key in keys:
        assert validation.app_key(key) == key


def test_registration_ids_pass_validation_and_sort_by_time():
    early = credentials.new_registration_id(1_700_000_000_000)
    late = credentials.new_registration_id(1_700_000_000_001)
    for reg_id in (early, late, credentials.new_registration_id()):
        assert validation.registration_id(reg_id) == reg_id
        assert len(reg_id) <= limits.REGID_MAX_BYTES
    assert early < late


def test_secret_hash_is_salted_scrypt_and_verifies():
    secret = credentials.new_master_secret()
    first, second = credentials.hash_secret(secret), credentials.hash_secret(secret)
    assert first.startswith("scrypt$") and secret not in first
    assert first != second  # per-app salt
    assert credentials.verify_secret(secret, first) and credentials.verify_secret(secret, second)
    assert not credentials.verify_secret(secret + "x", first)
    assert not credentials.verify_secret("", first)


def test_verify_secret_rejects_unknown_and_malformed_stored_hashes():
    assert not credentials.verify_secret("anything", None)
    assert not credentials.verify_secret("anything", "plain")
    assert not credentials.verify_secret("anything", "md5$1$2$3$00$00")


def test_unknown_app_and_wrong_secret_cost_one_scrypt_each(monkeypatch):
    stored = credentials.hash_secret("right")
    credentials.dummy_secret_hash()  # made once, up front
    calls = []
    real = hashlib.scrypt
    monkeypatch.setattr(credentials.hashlib, "scrypt", lambda *a, **k: calls.append(1) or real(*a, **k))
    credentials.verify_secret("wrong", stored)
    credentials.verify_secret("wrong", None)
    assert len(calls) == 2


def test_device_tokens_are_256_bit_and_hash_with_sha256():
    token = credentials.new_device_token()
    assert len(bytes.fromhex(token)) == 32
    stored = credentials.hash_token(token)
    assert stored == hashlib.sha256(token.encode()).hexdigest()
    assert credentials.verify_token(token, stored)
    assert not credentials.verify_token(token[:-1] + ("0" if token[-1] != "0" else "1"), stored)
    assert not credentials.verify_token(token, None)
    assert not credentials.verify_token("", stored)


@pytest.mark.parametrize("token", ["", "ünïcode", "x" * 1000])
def test_odd_tokens_fail_without_error(token):
    assert not credentials.verify_token(token, credentials.hash_token(credentials.new_device_token()))
