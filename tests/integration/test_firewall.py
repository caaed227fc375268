"""The firewall: a partner host that reaches only the Glacier2 router's address.

A network namespace (tests/integration/netns.py) stands for the partner's host outside the
firewall, joined to this host by a veth pair and routed to nothing but the pair's /30. The
router's partner endpoint is moved onto this host's end of the veth (set_partner_host), as an
operator puts it on the public interface. From the partner host then:

- the router's ports answer; no other port any process of the grid listens on does (registries,
  nodes, DBAgent, TagAlias, Push, STC's Ice adapters and device ports, the gateway, MariaDB, Redis,
  Kafka), neither at this host's veth address nor at the partner host's own 127.0.0.1, and an
  Ice call to the grid's locator fails;
- `pushgrid-partner push` through the router reaches a device connected to STC on loopback,
  with the msg id the CLI printed;
- proxies the partner forges to the grid's well-known objects and sends through its session at
  the router are refused with ObjectNotExistException.

The namespace itself is checked first: it reaches its veth peer and nothing else, and it is
removed afterwards, also when interrupted.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from services.common.contract import PushGrid
from tests.integration.netns import ROOT, Netns, Unavailable
from tests.integration.waiting import until_async as until
from tools.device.sdk import Device, Message, register
from tools.grid import icegrid, lifecycle, procs
from tools.grid.rundir import RunDir

pytestmark = pytest.mark.integration


def enter(ns: Netns) -> Netns:
    try:
        return ns.__enter__()
    except Unavailable as exc:
        pytest.skip(f"no network namespaces here: {exc}")


@pytest.fixture
def partner_host() -> Iterator[Netns]:
    """A fresh namespace for one test, gone (namespace and veth) after it."""
    ns = enter(Netns("self"))
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
    assert ns.run(["ip", "-6", "addr"], check=True).stdout.strip() == ""  # no way around over IPv6

    assert ns.ping(ns.host_address)
    host_ip = subprocess.run(["hostname", "-I"], capture_output=True, text=True).stdout.split()
    elsewhere = [a for a in host_ip if ":" not in a][:1] or ["192.0.2.1"]
    assert not ns.ping(elsewhere[0], timeout=1)  # this host's other addresses: no route

    with listening(ns.host_address) as port:  # a server on the veth's host end: reached
        got = ns.probe([(ns.host_address, port), ("127.0.0.1", port), (elsewhere[0], port)])
    assert got == {
        (ns.host_address, port): "open",
        ("127.0.0.1", port): "refused",
        (elsewhere[0], port): "unreachable",
    }, got


def test_an_interrupted_run_leaves_no_namespace(tmp_path) -> None:
    """SIGTERM to a process inside the context: the namespace and the veth are removed."""
    script = textwrap.dedent("""
        import sys, time
        from tests.integration.netns import Netns, Unavailable
        try:
            with Netns("self") as ns:
                print(ns.name, ns.host_link, flush=True)
                time.sleep(60)
        except Unavailable as exc:
            print("unavailable", exc, flush=True)
        except KeyboardInterrupt:
            sys.exit(3)
    """)
    proc = subprocess.Popen(
        [sys.executable, "-c", script],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": ROOT},
    )
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


# ---------------------------------------------------------------- the grid behind the router


def router_endpoints(partner_cfg: str) -> list[tuple[str, str, int]]:
    """(transport, host, port) of the router's client endpoints, from the partner's Ice config."""
    import Ice

    props = Ice.createProperties()
    props.load(partner_cfg)
    router = props.getProperty("Ice.Default.Router")
    assert router, f"{partner_cfg} names no Ice.Default.Router"
    found = []
    for ep in router.split(":")[1:]:
        words = ep.split()
        opts = dict(zip(words[1::2], words[2::2], strict=True)) if len(words) % 2 == 1 else {}
        if "-h" in opts and "-p" in opts:
            found.append((words[0], opts["-h"], int(opts["-p"])))
    assert found, f"no endpoints with a host and port in {router!r}"
    return found


def listening_ports(pids: set[int]) -> set[int]:
    """TCP ports that any of pids listens on, on any address (ss -ltnp)."""
    out = subprocess.run(["ss", "-Hltnp"], capture_output=True, text=True, timeout=10).stdout
    ports = set()
    for line in out.splitlines():
        fields = line.split()
        if len(fields) < 6:
            continue
        owners = {int(p) for p in re.findall(r"pid=(\d+)", fields[-1])}
        if owners & pids:
            ports.add(int(fields[3].rsplit(":", 1)[1]))
    return ports


@dataclass
class Door:
    """The partner host and where the router listens for it."""

    ns: Netns
    partner_cfg: str
    router: list[tuple[str, str, int]]


@pytest.fixture(scope="module")
def door(grid: RunDir) -> Iterator[Door]:
    """A partner host, and the router's partner endpoint moved onto its veth's host end; moved
    back (and the namespace removed) after this module's tests."""
    partner_cfg = grid.partner_config
    before = router_endpoints(partner_cfg)
    ns = enter(Netns("partner"))
    try:
        lifecycle.set_partner_host(grid, ns.host_address, progress=lambda *_: None)
        router = router_endpoints(partner_cfg)
        assert {h for _, h, _ in router} == {ns.host_address}, router
        yield Door(ns, partner_cfg, router)
    finally:
        try:
            lifecycle.set_partner_host(grid, before[0][1], progress=lambda *_: None)
        finally:
            ns.__exit__(None, None, None)
        assert {h for _, h, _ in router_endpoints(partner_cfg)} == {h for _, h, _ in before}
        assert not ns.exists(), f"{ns.name} or {ns.host_link} is still there"


def grid_ports(grid: RunDir) -> dict[str, int]:
    """Named ports of the grid a partner must not reach: registries, every Ice adapter the
    registry knows (DBAgent, TagAlias, Push, STC, the gateway, ...), devices', the backends'."""
    import Ice

    named = {name: port for name, port in grid.ports.items()}
    with icegrid.admin_session(grid) as admin:
        for adapter_id in admin.getAllAdapterIds():
            for info in admin.getAdapterInfo(adapter_id):
                if info.proxy is None:
                    continue
                for ep in info.proxy.ice_getEndpoints():
                    ep_info = ep.getInfo()
                    while ep_info is not None and not isinstance(ep_info, Ice.IPEndpointInfo):
                        ep_info = ep_info.underlying
                    if ep_info is not None:
                        named[f"adapter {info.id}"] = ep_info.port
    return named


def test_from_the_partner_host_only_the_router_is_reachable(grid: RunDir, door: Door) -> None:
    ns = door.ns
    router_ports = {p for _, _, p in door.router}
    named = grid_ports(grid)
    assert any(k.startswith("adapter DBAgent") for k in named) and "registry-master" in named, named
    # and every other port a process of this grid listens on, whatever it is
    every = listening_ports(set(procs.processes_under(grid.path))) - router_ports
    assert grid.ports["registry-master"] in every and named["adapter DBAgent-1.DBAgent"] in every, every

    targets = [(h, p) for _, h, p in door.router]
    targets += [(ns.host_address, p) for p in every | set(named.values()) if p not in router_ports]
    targets += [("127.0.0.1", p) for p in every | set(named.values()) | router_ports]
    got = ns.probe(targets, timeout=1.0)

    assert {t: got[t] for t in [(h, p) for _, h, p in door.router]} == {(h, p): "open" for _, h, p in door.router}
    reached = {t: r for t, r in got.items() if r == "open" and t not in {(h, p) for _, h, p in door.router}}
    names_of = {p: n for n, p in named.items()}
    assert not reached, {f"{h}:{p} ({names_of.get(p, 'grid process')})": r for (h, p), r in reached.items()}
    # by name, what the issue lists: the registries, DBAgent, Push, TagAlias and STC (Ice and devices)
    closed = {"refused", "timeout", "unreachable"}
    for name in (
        "registry-master",
        "registry-replica",
        "adapter DBAgent-1.DBAgent",
        "adapter Push-1.Push",
        "adapter TagAlias-1.TagAlias",
        "adapter STC-node1-1.STC",
        "stc-node1",
        "stc-node2",
        "mysql",
        "redis1",
        "kafka",
    ):
        assert name in named, sorted(named)
        for host in (ns.host_address, "127.0.0.1"):
            assert got[(host, named[name])] in closed, f"{name} at {host}:{named[name]}: {got[(host, named[name])]}"


def test_the_grid_locator_cannot_be_called_from_the_partner_host(grid: RunDir, door: Door) -> None:
    """With the grid's own client config (locator on 127.0.0.1) and with the registry's port on
    this host's veth address: no Ice call gets through."""
    script = textwrap.dedent("""
        import sys, Ice
        from services.common.ice import client_communicator
        comm = client_communicator(sys.argv[1], "--Ice.RetryIntervals=-1", "--Ice.Default.Timeout=2000")
        out = []
        for proxy in ("DBAgent", "PushGrid/Locator", sys.argv[2]):
            try:
                comm.stringToProxy(proxy).ice_invocationTimeout(5000).ice_ping()
                out.append("reached " + proxy)
            except Ice.Exception as e:
                out.append(e.ice_id())
        comm.destroy()
        print("\\n".join(out))
    """)
    direct = f"PushGrid/Locator:tcp -h {door.ns.host_address} -p {grid.ports['registry-master']} -t 2000"
    result = door.ns.python(script, grid.client_config, direct, timeout=60)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.split()
    assert len(lines) == 3 and not any(line.startswith("reached") for line in lines), result.stdout
    assert all(line in ("::Ice::ConnectionRefusedException", "::Ice::ConnectTimeoutException") for line in lines), lines


@pytest.fixture(scope="module")
def partner_app(dbagent) -> PushGrid.AppCredentials:
    """An app of this module's own, with its master secret (as the partner holds them)."""
    return dbagent.createApp("firewall-" + uuid.uuid4().hex[:8], 0)


def partner_cli(door: Door, creds, *command: str, timeout: float = 60) -> subprocess.CompletedProcess:
    """`pushgrid-partner --config partner.cfg --app-key K --json COMMAND...` on the partner host,
    the master secret in the environment as its help advises."""
    exe = os.path.join(ROOT, ".venv", "bin", "pushgrid-partner")
    base = [exe] if os.path.exists(exe) else [sys.executable, "-m", "tools.partner.cli"]
    return door.ns.run(
        [*base, "--config", door.partner_cfg, "--app-key", creds.appKey, "--json", *command],
        timeout=timeout,
        env={"PYTHONPATH": ROOT, "PUSHGRID_MASTER_SECRET": creds.masterSecret},
    )


def test_a_push_from_the_partner_host_reaches_the_device(grid: RunDir, door: Door, partner_app) -> None:
    alert = "through the firewall " + uuid.uuid4().hex[:6]

    async def main() -> tuple[subprocess.CompletedProcess, list[Message]]:
        shown: list[Message] = []
        creds = await register(grid.device_urls[0], partner_app.appKey)
        device = Device(creds, grid.device_urls, on_message=shown.append, backoff=(0.3, 2.0))
        device.start()
        try:
            await asyncio.wait_for(device.connected.wait(), 20)
            cli = await asyncio.to_thread(
                partner_cli, door, partner_app, "push", "--rid", creds.registration_id, "--alert", alert
            )
            assert cli.returncode == 0, f"pushgrid-partner failed:\n{cli.stdout}\n{cli.stderr}"
            await until(lambda: shown, "the push to reach the device", timeout=30)
            await asyncio.sleep(1.0)  # anything else it would get arrives by now
            return cli, shown
        finally:
            await device.close()

    cli, shown = asyncio.run(main())
    assert [m.notification.get("alert") for m in shown] == [alert], shown
    assert json.loads(cli.stdout)["msg_id"] == shown[0].msg_id, f"the CLI printed:\n{cli.stdout}"


def test_internal_objects_through_the_router_are_refused(grid: RunDir, door: Door, partner_app) -> None:
    """A partner that forges proxies to the grid's well-known objects and sends them through its
    own session at the router gets ObjectNotExistException for each; its own session answers."""
    with icegrid.admin_session(grid) as admin:
        dbagent_proxy = admin.getAdapterInfo("DBAgentGroup")[0].proxy
    forged = [
        "DBAgent",
        "Push",
        "TagAlias",
        "STC-node1-1",
        "PushGrid/Query",
        "PushGrid/Locator",
        "PushGrid/Registry",
        "PushGrid/AdminSessionManager",
        "PartnerVerifier",
        "PartnerSessionManager",
        "DBAgent:" + dbagent_proxy.ice_getEndpoints()[0].toString(),
    ]
    script = textwrap.dedent("""
        import json, sys, Ice
        from services.common.contract import Glacier2, PushGrid
        cfg, key, secret = sys.argv[1:4]
        init = Ice.InitializationData()
        init.properties = Ice.createProperties(["--Ice.Config=" + cfg, "--Ice.RetryIntervals=-1"])
        with Ice.initialize(init) as comm:
            router = Glacier2.RouterPrx.checkedCast(comm.getDefaultRouter())
            session = PushGrid.PartnerSessionPrx.uncheckedCast(router.createSession(key, secret))
            out = {"own session": session.appKey()}
            for forged in json.loads(sys.argv[4]):
                try:
                    comm.stringToProxy(forged).ice_invocationTimeout(10000).ice_ping()
                    out[forged] = "reached"
                except Ice.Exception as e:
                    out[forged] = e.ice_id()
            try:   # a real operation, not only ice_ping
                PushGrid.DBAgentPrx.uncheckedCast(comm.stringToProxy("DBAgent")).listApps()
                out["DBAgent.listApps"] = "reached"
            except Ice.Exception as e:
                out["DBAgent.listApps"] = e.ice_id()
            router.destroySession()
        print(json.dumps(out))
    """)
    result = door.ns.python(
        script, door.partner_cfg, partner_app.appKey, partner_app.masterSecret, json.dumps(forged), timeout=90
    )
    assert result.returncode == 0, result.stderr
    got = json.loads(result.stdout)
    assert got.pop("own session") == partner_app.appKey
    assert got == {k: "::Ice::ObjectNotExistException" for k in [*forged, "DBAgent.listApps"]}, got
