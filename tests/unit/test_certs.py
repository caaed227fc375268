"""The partner door's certificates, made with the real openssl: parsable, named right, reused."""

from __future__ import annotations

import os
import stat
import subprocess

import pytest

from tools.grid import certs


def _x509(path: str, *args: str) -> str:
    return subprocess.run(
        ["openssl", "x509", "-in", path, "-noout", *args], capture_output=True, text=True, check=True
    ).stdout


def _mode(path: str) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def _read(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read()


@pytest.fixture
def certs_dir(tmp_path) -> str:
    return str(tmp_path / "certs")


def test_first_ensure_makes_a_ca_and_a_router_certificate_openssl_can_read(certs_dir):
    said = certs.ensure(certs_dir, "127.0.0.1")
    files = certs.CertFiles(certs_dir)
    assert "made the grid CA" in said and "issued the router certificate" in said
    assert "CA:TRUE" in _x509(files.ca_cert, "-ext", "basicConstraints")
    text = _x509(files.server_cert, "-text")
    assert "TLS Web Server Authentication" in text and "CA:FALSE" in text
    assert "subject=O = pushgrid, CN = 127.0.0.1" in _x509(files.server_cert, "-subject")
    assert "issuer=O = pushgrid, CN = pushgrid grid CA" in _x509(files.server_cert, "-issuer")
    certs.verify_chain(files)  # openssl verify -purpose sslserver against the CA


def test_router_certificate_names_loopback_and_localhost(certs_dir):
    certs.ensure(certs_dir, "127.0.0.1")
    assert certs.subject_alt_names(certs.CertFiles(certs_dir).server_cert) == ["IP:127.0.0.1", "DNS:localhost"]


def test_private_keys_are_readable_by_the_owner_only(certs_dir):
    certs.ensure(certs_dir, "127.0.0.1")
    files = certs.CertFiles(certs_dir)
    assert _mode(files.ca_key) == 0o600 and _mode(files.server_key) == 0o600
    assert _mode(certs_dir) == 0o700
    assert _mode(files.ca_cert) == 0o644 and _mode(files.server_cert) == 0o644


def test_second_ensure_keeps_everything(certs_dir):
    certs.ensure(certs_dir, "127.0.0.1")
    files = certs.CertFiles(certs_dir)
    before = {p: _read(p) for p in (files.ca_cert, files.ca_key, files.server_cert, files.server_key)}
    assert certs.ensure(certs_dir, "127.0.0.1") == "kept"
    assert {p: _read(p) for p in before} == before


def test_a_new_partner_host_reissues_the_router_certificate_from_the_same_ca(certs_dir):
    certs.ensure(certs_dir, "127.0.0.1")
    files = certs.CertFiles(certs_dir)
    ca, old_cert, old_key = _read(files.ca_cert), _read(files.server_cert), _read(files.server_key)

    said = certs.ensure(certs_dir, "10.77.0.1")
    assert "made the grid CA" not in said and "10.77.0.1" in said
    assert _read(files.ca_cert) == ca
    assert _read(files.server_cert) != old_cert and _read(files.server_key) != old_key
    assert certs.subject_alt_names(files.server_cert) == ["IP:127.0.0.1", "DNS:localhost", "IP:10.77.0.1"]
    certs.verify_chain(files)

    certs.ensure(certs_dir, "127.0.0.1")  # moving back drops the old host from the names
    assert certs.subject_alt_names(files.server_cert) == ["IP:127.0.0.1", "DNS:localhost"]


def test_a_dns_partner_host_becomes_a_dns_name(certs_dir):
    certs.ensure(certs_dir, "Partners.Example.com")
    names = certs.subject_alt_names(certs.CertFiles(certs_dir).server_cert)
    assert names == ["IP:127.0.0.1", "DNS:localhost", "DNS:partners.example.com"]


def test_a_missing_key_or_a_certificate_near_expiry_is_reissued(certs_dir, monkeypatch):
    files = certs.CertFiles(certs_dir)
    certs.ensure(certs_dir, "127.0.0.1")
    os.remove(files.server_key)
    assert "issued the router certificate" in certs.ensure(certs_dir, "127.0.0.1")
    assert os.path.exists(files.server_key)

    monkeypatch.setattr(certs, "SERVER_DAYS", 1)  # inside RENEW_BEFORE_SECONDS
    os.remove(files.server_cert)
    certs.ensure(certs_dir, "127.0.0.1")
    monkeypatch.undo()
    assert "issued the router certificate" in certs.ensure(certs_dir, "127.0.0.1")
    assert certs.ensure(certs_dir, "127.0.0.1") == "kept"


def test_a_certificate_from_another_ca_is_replaced(certs_dir, tmp_path):
    certs.ensure(certs_dir, "127.0.0.1")
    other = str(tmp_path / "other")
    certs.ensure(other, "127.0.0.1")
    files, foreign = certs.CertFiles(certs_dir), certs.CertFiles(other)
    os.replace(foreign.server_cert, files.server_cert)
    os.replace(foreign.server_key, files.server_key)
    assert "issued the router certificate" in certs.ensure(certs_dir, "127.0.0.1")
    certs.verify_chain(files)


@pytest.mark.parametrize("host", ["127.0.0.1", "10.0.0.7", "localhost", "router.grid.internal"])
def test_check_host_takes_ipv4_and_dns_names(host):
    assert certs.check_host(host) == host


@pytest.mark.parametrize(
    "host", ["", "::1", "fe80::1", "bad host", "a:b", "1.2.3", "-x.example", "x" * 254, "host;rm -rf"]
)
def test_check_host_refuses_what_a_partner_cannot_dial_or_an_endpoint_cannot_hold(host):
    with pytest.raises(certs.InvalidHost):
        certs.check_host(host)


def test_openssl_failures_are_named(tmp_path):
    with pytest.raises(certs.CertError, match="openssl x509 failed"):
        certs.subject_alt_names(str(tmp_path / "missing.pem"))
