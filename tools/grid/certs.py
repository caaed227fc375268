"""The partner door's TLS: a grid CA and the Glacier2 router's server certificate, made with openssl.

Partners authenticate with their app key and master secret, not with client certificates, so
TLS here only has to prove to a partner that it talks to this grid's router: the router shows a
certificate signed by the grid's own CA, whose certificate partners get in `partner.cfg`
(IceSSL.CAs) and check with IceSSL.CheckCertName. The certificate's names (SANs) must therefore
cover every address a partner may dial: 127.0.0.1, localhost and the partner host.

Both live in `<run>/certs/` as PEM (IceSSL 3.7 on OpenSSL loads a PEM chain with CertFile and a
PEM key with KeyFile; no password to hand around). The CA is made once and kept; the server
certificate is re-issued from the same CA when the partner host changes (or it nears expiry),
so partners keep the CA they already trust. Private keys are mode 0600.

`glacier2/router.xml` names these files: IceSSL.DefaultDir=${certs}, CertFile=router.pem,
KeyFile=router.key.
"""

from __future__ import annotations

import ipaddress
import os
import re
import subprocess
import tempfile
from dataclasses import dataclass

CA_CERT = "ca.pem"
CA_KEY = "ca.key"
SERVER_CERT = "router.pem"
SERVER_KEY = "router.key"

CA_DAYS = 3650
SERVER_DAYS = 825  # what browsers and most TLS stacks still accept for a leaf
RENEW_BEFORE_SECONDS = 30 * 86400
ALWAYS_NAMES = ("127.0.0.1", "localhost")
_HOSTNAME = re.compile(
    r"^(?=.{1,253}$)[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
    r"(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$"
)


class CertError(RuntimeError):
    """openssl failed, or a certificate cannot be made for the name asked; the message says why."""


class InvalidHost(ValueError):
    """A partner host that is neither an IPv4 address nor a DNS name."""


@dataclass(frozen=True)
class CertFiles:
    """Where one grid's certificates are; all PEM."""

    dir: str

    @property
    def ca_cert(self) -> str:
        return os.path.join(self.dir, CA_CERT)

    @property
    def ca_key(self) -> str:
        return os.path.join(self.dir, CA_KEY)

    @property
    def server_cert(self) -> str:
        return os.path.join(self.dir, SERVER_CERT)

    @property
    def server_key(self) -> str:
        return os.path.join(self.dir, SERVER_KEY)


def check_host(host: str) -> str:
    """host if a partner can dial it and it fits an Ice endpoint and a SAN, else InvalidHost.

    IPv6 is refused for now: a bare IPv6 address breaks an Ice proxy string (its colons separate
    endpoints) and Glacier2's address filters, and the local grid listens on IPv4 loopback.
    """
    try:
        addr = ipaddress.ip_address(host)
    except ValueError:
        if _HOSTNAME.match(host) and not host.replace(".", "").isdigit():
            return host.lower()
        raise InvalidHost(f"partner host {host!r} is neither an IPv4 address nor a DNS name") from None
    if addr.version != 4:
        raise InvalidHost(f"partner host {host!r}: IPv6 is not supported for the partner door yet")
    return str(addr)


def san_entries(hosts: list[str] | tuple[str, ...]) -> list[str]:
    """The subjectAltName entries covering hosts (IP: for addresses, DNS: for names), in order."""
    entries: list[str] = []
    for host in (*ALWAYS_NAMES, *hosts):
        host = check_host(host)
        entry = f"IP:{host}" if _is_ip(host) else f"DNS:{host}"
        if entry not in entries:
            entries.append(entry)
    return entries


def ensure(certs_dir: str, partner_host: str) -> str:
    """Makes what is missing so the router's certificate covers partner_host; says what it did.

    Idempotent: with a CA and a current server certificate that names partner_host it changes
    nothing (so `pushgrid up` on a running grid does not restart the router).
    """
    files = CertFiles(certs_dir)
    os.makedirs(certs_dir, exist_ok=True)
    os.chmod(certs_dir, 0o700)
    did = []
    if not (os.path.exists(files.ca_cert) and os.path.exists(files.ca_key)):
        _make_ca(files)
        did.append("made the grid CA")
    wanted = san_entries([partner_host])
    if not _server_cert_current(files, wanted):
        _issue_server_cert(files, partner_host, wanted)
        did.append(f"issued the router certificate for {', '.join(e.split(':', 1)[1] for e in wanted)}")
    return "; ".join(did) if did else "kept"


def subject_alt_names(cert_path: str) -> list[str]:
    """The certificate's SANs as openssl prints them, normalised to IP:x / DNS:x."""
    out = _openssl("x509", "-in", cert_path, "-noout", "-ext", "subjectAltName")
    names = []
    for line in out.splitlines()[1:]:
        for item in line.split(","):
            item = item.strip()
            if item.startswith("IP Address:"):
                names.append("IP:" + item.removeprefix("IP Address:"))
            elif item.startswith("DNS:"):
                names.append(item)
    return names


def verify_chain(files: CertFiles) -> None:
    """Raises CertError unless the server certificate verifies against the CA for TLS servers."""
    _openssl("verify", "-purpose", "sslserver", "-CAfile", files.ca_cert, files.server_cert)


# ------------------------------------------------------------------ internals


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
        return True
    except ValueError:
        return False


def _openssl(*args: str) -> str:
    try:
        # umask 077: a key openssl writes is never readable by others, not even for a moment
        result = subprocess.run(["openssl", *args], capture_output=True, text=True, timeout=60, umask=0o077)
    except FileNotFoundError:
        raise CertError("openssl is not installed (tools/bootstrap.sh installs it)") from None
    if result.returncode != 0:
        raise CertError(f"openssl {args[0]} failed: {result.stderr.strip() or result.stdout.strip()}")
    return result.stdout


# openssl req options for a new, unencrypted EC P-256 key (the CA's and the router's)
_NEW_EC_KEY = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes")


def _make_ca(files: CertFiles) -> None:
    _openssl(
        "req",
        "-x509",
        *_NEW_EC_KEY,
        "-keyout",
        files.ca_key,
        "-out",
        files.ca_cert,
        "-days",
        str(CA_DAYS),
        "-sha256",
        "-subj",
        "/O=pushgrid/CN=pushgrid grid CA",
        "-addext",
        "basicConstraints=critical,CA:TRUE,pathlen:0",
        "-addext",
        "keyUsage=critical,keyCertSign,cRLSign",
    )
    _private(files.ca_key)
    os.chmod(files.ca_cert, 0o644)


def _issue_server_cert(files: CertFiles, host: str, sans: list[str]) -> None:
    """A new key and certificate, written beside the old ones and then moved over them, so a
    router restarting meanwhile never reads a key that does not match its certificate."""
    with tempfile.TemporaryDirectory(dir=files.dir) as tmp:
        key, csr, cert, ext = (os.path.join(tmp, n) for n in ("key", "csr", "cert", "ext"))
        with open(ext, "w") as f:
            f.write(
                "basicConstraints=critical,CA:FALSE\n"
                "keyUsage=critical,digitalSignature,keyEncipherment\n"
                "extendedKeyUsage=serverAuth\n"
                f"subjectAltName={','.join(sans)}\n"
            )
        _openssl(
            "req",
            "-new",
            *_NEW_EC_KEY,
            "-keyout",
            key,
            "-out",
            csr,
            "-subj",
            f"/O=pushgrid/CN={host}",
        )
        _openssl(
            "x509",
            "-req",
            "-in",
            csr,
            "-CA",
            files.ca_cert,
            "-CAkey",
            files.ca_key,
            "-set_serial",
            str(int.from_bytes(os.urandom(16), "big") >> 1),
            "-days",
            str(SERVER_DAYS),
            "-sha256",
            "-extfile",
            ext,
            "-out",
            cert,
        )
        _private(key)
        os.chmod(cert, 0o644)
        os.replace(key, files.server_key)
        os.replace(cert, files.server_cert)
    verify_chain(files)


def _server_cert_current(files: CertFiles, wanted: list[str]) -> bool:
    """True if the server certificate exists, is signed by the CA, names every wanted SAN and
    does not expire within RENEW_BEFORE_SECONDS."""
    if not (os.path.exists(files.server_cert) and os.path.exists(files.server_key)):
        return False
    try:
        verify_chain(files)
        if subject_alt_names(files.server_cert) != wanted:  # exactly: an old host is not left in
            return False
        _openssl("x509", "-in", files.server_cert, "-noout", "-checkend", str(RENEW_BEFORE_SECONDS))
    except CertError:
        return False
    return True


def _private(path: str) -> None:
    os.chmod(path, 0o600)
