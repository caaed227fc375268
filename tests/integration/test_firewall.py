"""The firewall: a partner host that reaches only the Glacier2 router's address.

A network namespace (tests/integration/netns.py) stands for the partner's host outside the
firewall, joined to this host by a veth pair. First the namespace itself is checked: it reaches
the other end of its veth and nothing else, and is removed afterwards, also when interrupted.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import Iterator

import pytest

from tests.integration.netns import ROOT, Netns, Unavailable

pytestmark = pytest.mark.integration


def enter(ns: Netns) -> Netns:
    try:
        return ns.__enter__()
    except Unavailable as exc:
        pytest.skip(f"no network namespaces here: {exc}")


@pytest.fixture
def partner_host() -> Iterator[Netns]:
    """A fresh namespace for one test, gone (namespace and veth) after it."""
    ns = enter(Netns("partner"))
    try:
        yield ns
    finally:
        ns.__exit__(None, None, None)
        assert not ns.exists(), f"{ns.name} or {ns.host_link} is still there"


# ---------------------------------------------------------------- the namespace alone

def test_the_partner_host_reaches_only_its_veth_peer(partner_host: Netns) -> None:
    ns = partner_host
    addrs = ns.run(["ip", "-br", "-4", "addr"], check=True).stdout
    assert f"{ns.address}/30" in addrs and "127.0.0.1/8" in addrs, addrs
    lo = json.loads(ns.run(["ip", "-j", "link", "show", "dev", "lo"], check=True).stdout)[0]
    assert "UP" in lo["flags"], lo
    routes = ns.run(["ip", "-4", "route"], check=True).stdout.strip().splitlines()
    assert routes == [f"{ns.subnet} dev veth0 proto kernel scope link src {ns.address}"], routes
    assert ns.run(["ip", "-6", "addr"], check=True).stdout.strip() == ""   # no way around over IPv6

    assert ns.ping(ns.host_address)
    host_ip = subprocess.run(["hostname", "-I"], capture_output=True, text=True).stdout.split()
    elsewhere = [a for a in host_ip if ":" not in a][:1] or ["192.0.2.1"]
    assert not ns.ping(elsewhere[0], timeout=1)            # this host's other addresses: no route

    with listening(ns.host_address) as port:                # a server on the veth's host end: reached
        got = ns.probe([(ns.host_address, port), ("127.0.0.1", port), (elsewhere[0], port)])
    assert got == {(ns.host_address, port): "open", ("127.0.0.1", port): "refused",
                   (elsewhere[0], port): "unreachable"}, got


def test_an_interrupted_run_leaves_no_namespace(tmp_path) -> None:
    """SIGTERM to a process inside the context: the namespace and the veth are removed."""
    script = textwrap.dedent("""
        import sys, time
        from tests.integration.netns import Netns, Unavailable
        try:
            with Netns("partner") as ns:
                print(ns.name, ns.host_link, flush=True)
                time.sleep(60)
        except Unavailable as exc:
            print("unavailable", exc, flush=True)
        except KeyboardInterrupt:
            sys.exit(3)
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], cwd=ROOT, stdout=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": ROOT})
    try:
        first = proc.stdout.readline().split()
        if first[:1] == ["unavailable"]:
            pytest.skip(" ".join(first))
        name, link = first
        assert name in ip("netns", "list")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 3
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert name not in ip("netns", "list")
    assert link not in ip("-br", "link")


def ip(*args: str) -> str:
    from tests.integration.netns import ip_binary

    return subprocess.run([ip_binary(), *args], capture_output=True, text=True, timeout=10).stdout


class listening:
    """A TCP server on host (root namespace) for the duration of a with block; yields its port."""

    def __init__(self, host: str) -> None:
        import socket

        self.sock = socket.socket()
        self.sock.bind((host, 0))
        self.sock.listen(8)

    def __enter__(self) -> int:
        return self.sock.getsockname()[1]

    def __exit__(self, *exc) -> None:
        self.sock.close()
