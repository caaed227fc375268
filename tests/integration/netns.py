"""A network namespace for a test: a host the test controls, joined to this one by one veth pair.

    with Netns("partner") as ns:              # pg-<pid>-partner, 10.250.x.y/30
        ns.host_address                       # this (root) namespace's end of the veth
        ns.address                            # the namespace's own end
        ns.run(["ip", "route"])               # CompletedProcess, bounded by a timeout
        ns.probe([(ns.host_address, 4063)])   # {(host, port): "open" | "refused" | "timeout" | ...}

Several hosts that reach each other share a Bridge, a switch in the root namespace with a /24:

    with Bridge() as br, Netns("host1", bridge=br) as h1, Netns("host2", bridge=br) as h2:
        br.address                            # 10.77.x.254, the root namespace on the bridge
        h1.address, h2.address                # 10.77.x.1, 10.77.x.2; they reach each other too

The namespace gets loopback (up, and empty: nothing listens there) and the veth's /30 (or its
address on the bridge's /24), and no other route: from inside it reaches only the /30's other
end (or the bridge's /24), where the root namespace answers on whatever listens on that address
or on 0.0.0.0. IPv6 is off inside it, so no link-local
address leads around that. Everything is removed on exit, also when the body fails or is
interrupted (Ctrl-C, or SIGTERM while the context runs in the main thread); processes still
running inside are killed first. Removing what is already gone is not an error. What a killed
run (SIGKILL) left behind, the next Netns removes: names carry the creating process's pid.

Needs root and `ip netns` (iproute2); `Unavailable` says why not, for a test to skip.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterable, Sequence

from services.common import paths

ROOT = str(paths.ROOT)
POOL = ipaddress.ip_network("10.250.0.0/16")  # /30s are drawn from here, starting at one the pid picks
BRIDGE_POOL = ipaddress.ip_network("10.77.0.0/16")  # a bridge's /24 is drawn from here
IFNAMSIZ = 15  # longest interface name Linux takes
INSIDE_LINK = "veth0"  # the namespace's end of the veth, inside it
NAME_RE = re.compile(r"^pg-(\d+)-([a-z0-9]{1,16})$")
BRIDGE_RE = re.compile(r"^pg(\d+)br$")


class Unavailable(RuntimeError):
    """Network namespaces cannot be made here (not root, no iproute2, or the kernel refuses)."""


def ip_binary() -> str | None:
    return shutil.which("ip") or shutil.which("ip", path="/usr/sbin:/sbin:/usr/bin:/bin")


def require(ip: str | None) -> None:
    """Unavailable unless namespaces can be made here: root, and iproute2's ip."""
    if os.geteuid() != 0:
        raise Unavailable("network namespaces need root")
    if ip is None:
        raise Unavailable("no `ip` (iproute2) on this machine")


def names(pid: int, role: str) -> tuple[str, str]:
    """The namespace's name and the host-side veth's name for process pid and a role."""
    if not re.fullmatch(r"[a-z0-9]{1,16}", role):
        raise ValueError(f"role must be 1-16 lowercase letters or digits, not {role!r}")
    return f"pg-{pid}-{role}", f"pg{pid}{role}"[: IFNAMSIZ - 1] + "h"


def pick_subnet(
    pid: int, taken: Iterable[ipaddress.IPv4Network], pool: ipaddress.IPv4Network = POOL, prefix: int = 30
) -> ipaddress.IPv4Network:
    """A /prefix of pool that overlaps nothing in taken, starting at the one pid picks (so runs of
    several processes at once start apart) and going on from there."""
    taken = [n for n in taken if n.version == 4]
    subnets, size = 2 ** (prefix - pool.prefixlen), 2 ** (32 - prefix)
    for i in range(subnets):
        n = (pid + i) % subnets
        candidate = ipaddress.ip_network(f"{pool.network_address + size * n}/{prefix}")
        if not any(candidate.overlaps(t) for t in taken):
            return candidate
    raise Unavailable(f"every /{prefix} of {pool} is in use")


def _taken_networks(ip: str) -> list[ipaddress.IPv4Network]:
    """The IPv4 networks the root namespace has addresses or routes in (the default route aside)."""
    taken = []
    addrs = json.loads(
        subprocess.run([ip, "-j", "-4", "addr"], capture_output=True, text=True, check=True, timeout=10).stdout or "[]"
    )
    for link in addrs:
        for a in link.get("addr_info", []):
            taken.append(ipaddress.ip_network(f"{a['local']}/{a['prefixlen']}", strict=False))
    for table in ("main", "local"):
        routes = json.loads(
            subprocess.run(
                [ip, "-j", "-4", "route", "show", "table", table],
                capture_output=True,
                text=True,
                check=True,
                timeout=10,
            ).stdout
            or "[]"
        )
        for r in routes:
            dst = r.get("dst", "default")
            if dst != "default":
                taken.append(ipaddress.ip_network(dst, strict=False))
    return taken


def stale(listing: str, alive=lambda pid: os.path.exists(f"/proc/{pid}")) -> list[str]:
    """Namespaces in `ip netns list` output that this helper made in a process that is gone."""
    found = []
    for line in listing.splitlines():
        name = line.split(" ", 1)[0]
        m = NAME_RE.match(name)
        if m and not alive(int(m.group(1))):
            found.append(name)
    return found


def sweep_stale(ip: str) -> list[str]:
    """Removes what a killed test run (SIGKILL, a lost machine) left: namespaces and bridges this
    helper named after a process that no longer exists, with their veths. Returns their names."""
    listing = subprocess.run([ip, "netns", "list"], capture_output=True, text=True, timeout=10).stdout
    gone = stale(listing)
    for name in gone:
        pid, role = NAME_RE.match(name).groups()
        subprocess.run([ip, "link", "del", "dev", names(int(pid), role)[1]], capture_output=True, timeout=10)
        subprocess.run([ip, "netns", "del", name], capture_output=True, timeout=10)
    bridges = json.loads(
        subprocess.run([ip, "-j", "link", "show", "type", "bridge"], capture_output=True, text=True, timeout=10).stdout
        or "[]"
    )
    for link in bridges:
        m = BRIDGE_RE.match(link.get("ifname", ""))
        if m and not os.path.exists(f"/proc/{m.group(1)}"):
            subprocess.run([ip, "link", "del", "dev", link["ifname"]], capture_output=True, timeout=10)
            gone.append(link["ifname"])
    return gone


class Bridge:
    """A Linux bridge in the root namespace holding a /24's .254: the switch namespace hosts
    plug into (Netns(role, bridge=...)), so they reach each other and the root namespace."""

    def __init__(self) -> None:
        self.pid = os.getpid()
        self.link = f"pg{self.pid}br"
        self.subnet: ipaddress.IPv4Network | None = None
        self._ip = ip_binary()
        self._attached = 0

    @property
    def address(self) -> str:
        """The root namespace's address on the bridge: where backends and registries listen."""
        assert self.subnet is not None, "not set up"
        return str(self.subnet.network_address + 254)

    def attach(self) -> tuple[str, int]:
        """The next host's address on the bridge and the prefix length."""
        assert self.subnet is not None, "not set up"
        self._attached += 1
        return str(self.subnet.network_address + self._attached), self.subnet.prefixlen

    def __enter__(self) -> Bridge:
        require(self._ip)
        try:
            sweep_stale(self._ip)
            subprocess.run([self._ip, "link", "del", "dev", self.link], capture_output=True, timeout=10)
            self.subnet = pick_subnet(self.pid, _taken_networks(self._ip), BRIDGE_POOL, 24)
            for args in (
                ["link", "add", "name", self.link, "type", "bridge"],
                ["addr", "add", f"{self.address}/24", "dev", self.link],
                ["link", "set", self.link, "up"],
            ):
                subprocess.run([self._ip, *args], capture_output=True, text=True, check=True, timeout=10)
        except subprocess.CalledProcessError as exc:
            self.__exit__(None, None, None)
            raise Unavailable(f"a bridge cannot be made here: {exc.stderr.strip()}") from None
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        if self._ip is not None:
            subprocess.run([self._ip, "link", "del", "dev", self.link], capture_output=True, timeout=10)


class Netns:
    """One namespace and its veth pair; a context manager (see the module's docstring)."""

    def __init__(self, role: str = "partner", timeout: float = 30.0, bridge: Bridge | None = None) -> None:
        self.pid = os.getpid()
        self.name, self.host_link = names(self.pid, role)
        self.timeout = timeout
        self.bridge = bridge
        self.subnet: ipaddress.IPv4Network | None = None
        self._address: str | None = None
        self._ip = ip_binary()
        self._old_sigterm = None

    # ---- addresses

    @property
    def host_address(self) -> str:
        """The root namespace's end of the veth (or its address on the bridge): what the
        namespace can reach."""
        if self.bridge is not None:
            return self.bridge.address
        assert self.subnet is not None, "not set up"
        return str(self.subnet.network_address + 1)

    @property
    def address(self) -> str:
        """The namespace's own end of the veth."""
        if self._address is not None:
            return self._address
        assert self.subnet is not None, "not set up"
        return str(self.subnet.network_address + 2)

    # ---- life cycle

    def __enter__(self) -> Netns:
        self._check()
        self._catch_sigterm()
        try:
            sweep_stale(self._ip)
            self._teardown()  # a namespace of this name is a leftover of an earlier process with our pid
            self._setup()
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, *exc) -> None:
        try:
            self._teardown()
        finally:
            self._restore_sigterm()

    def exists(self) -> bool:
        """Whether the namespace or the host-side veth is still there."""
        in_list = self.name in self._ip_out(["netns", "list"]).split()
        link = (
            subprocess.run(
                [self._ip, "link", "show", "dev", self.host_link], capture_output=True, timeout=10
            ).returncode
            == 0
        )
        return in_list or link

    def _check(self) -> None:
        require(self._ip)

    def _setup(self) -> None:
        if self.bridge is not None:
            self._address, prefix = self.bridge.attach()
            self.subnet = self.bridge.subnet
        else:
            self.subnet = pick_subnet(self.pid, _taken_networks(self._ip))
            prefix = self.subnet.prefixlen
        try:
            self._ip_run(["netns", "add", self.name])
        except subprocess.CalledProcessError as exc:
            raise Unavailable(f"`ip netns add` is not permitted here: {exc.stderr.strip()}") from None
        # IPv6 off first, so the veth never gets a link-local address that leads around the /30
        for key in ("all", "default"):
            self.run(["sh", "-c", f"echo 1 > /proc/sys/net/ipv6/conf/{key}/disable_ipv6"], check=True)
        self._ip_run(["link", "add", self.host_link, "type", "veth", "peer", "name", INSIDE_LINK, "netns", self.name])
        if self.bridge is not None:
            self._ip_run(["link", "set", self.host_link, "master", self.bridge.link])
        else:
            self._ip_run(["addr", "add", f"{self.host_address}/{prefix}", "dev", self.host_link])
        self._ip_run(["link", "set", self.host_link, "up"])
        self.run([self._ip, "link", "set", "lo", "up"], check=True)
        self.run([self._ip, "addr", "add", f"{self.address}/{prefix}", "dev", INSIDE_LINK], check=True)
        self.run([self._ip, "link", "set", INSIDE_LINK, "up"], check=True)
        # the kernel adds the subnet's route itself: no default route, nothing else
        self._wait_link_up()

    def _wait_link_up(self) -> None:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            out = self.run([self._ip, "-j", "link", "show", "dev", INSIDE_LINK]).stdout
            if out and json.loads(out)[0].get("operstate") == "UP":
                return
            time.sleep(0.05)
        raise RuntimeError(f"the veth in {self.name} did not come up")

    def _teardown(self) -> None:
        if self._ip is None:
            return
        for pid in self.pids():  # processes a test started in the namespace and left running
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        # deleting either end of a veth deletes both; the namespace goes with its last user
        subprocess.run([self._ip, "link", "del", "dev", self.host_link], capture_output=True, timeout=10)
        subprocess.run([self._ip, "netns", "del", self.name], capture_output=True, timeout=10)

    def pids(self) -> list[int]:
        if self._ip is None:
            return []
        out = subprocess.run([self._ip, "netns", "pids", self.name], capture_output=True, text=True, timeout=10).stdout
        return [int(p) for p in out.split() if p.isdigit()]

    def _catch_sigterm(self) -> None:
        """SIGTERM while the namespace exists raises KeyboardInterrupt, so __exit__ still runs."""
        if threading.current_thread() is not threading.main_thread():
            return
        if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:

            def interrupt(*_):
                raise KeyboardInterrupt("SIGTERM")

            self._old_sigterm = signal.signal(signal.SIGTERM, interrupt)

    def _restore_sigterm(self) -> None:
        if self._old_sigterm is not None:
            signal.signal(signal.SIGTERM, self._old_sigterm)
            self._old_sigterm = None

    # ---- running things inside

    def run(
        self,
        cmd: Sequence[str],
        timeout: float | None = None,
        check: bool = False,
        input: str | None = None,  # noqa: A002 - subprocess.run's name, passed through
        env: dict[str, str] | None = None,
    ) -> subprocess.CompletedProcess:
        """Runs cmd inside the namespace (text output captured); killed after timeout seconds."""
        return subprocess.run(
            [self._ip, "netns", "exec", self.name, *cmd],
            capture_output=True,
            text=True,
            timeout=timeout or self.timeout,
            check=check,
            input=input,
            cwd=ROOT,
            env={**os.environ, **(env or {})},
        )

    def python(
        self, code: str, *args: str, timeout: float | None = None, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess:
        """Runs a Python snippet inside the namespace, with this checkout importable."""
        path = os.pathsep.join(p for p in (ROOT, os.environ.get("PYTHONPATH")) if p)
        return self.run([sys.executable, "-c", code, *args], timeout=timeout, env={"PYTHONPATH": path, **(env or {})})

    def probe(self, targets: Iterable[tuple[str, int]], timeout: float = 2.0) -> dict[tuple[str, int], str]:
        """TCP connects from inside to each (host, port): "open", "refused", "timeout",
        "unreachable" (no route), or the error's name."""
        targets = list(dict.fromkeys((h, int(p)) for h, p in targets))
        out = self.python(
            _PROBE, json.dumps([[h, p] for h, p in targets]), str(timeout), timeout=30 + timeout * len(targets)
        )
        if out.returncode != 0:
            raise RuntimeError(f"probe in {self.name} failed: {out.stderr.strip()}")
        return {(h, p): r for (h, p), r in zip(targets, json.loads(out.stdout), strict=True)}

    def ping(self, host: str, timeout: float = 2.0) -> bool:
        """One ICMP echo from inside to host; True if it answered."""
        out = self.python(_PING, host, str(timeout), timeout=timeout + 20)
        if out.returncode not in (0, 1):
            raise RuntimeError(f"ping in {self.name} failed: {out.stderr.strip()}")
        return out.returncode == 0

    def _ip_run(self, args: Sequence[str]) -> None:
        subprocess.run([self._ip, *args], capture_output=True, text=True, check=True, timeout=10)

    def _ip_out(self, args: Sequence[str]) -> str:
        return subprocess.run([self._ip, *args], capture_output=True, text=True, timeout=10).stdout


_PROBE = r"""
import errno, json, socket, sys
out = []
for host, port in json.loads(sys.argv[1]):
    s = socket.socket()
    s.settimeout(float(sys.argv[2]))
    try:
        s.connect((host, port))
        out.append("open")
    except ConnectionRefusedError:
        out.append("refused")
    except (socket.timeout, TimeoutError):
        out.append("timeout")
    except OSError as e:
        out.append("unreachable" if e.errno in (errno.ENETUNREACH, errno.EHOSTUNREACH) else
                   errno.errorcode.get(e.errno, type(e).__name__))
    finally:
        s.close()
print(json.dumps(out))
"""

_PING = r"""
import os, socket, struct, sys, time
def checksum(b):
    if len(b) % 2: b += b"\0"
    s = sum(struct.unpack("!%dH" % (len(b) // 2), b))
    s = (s >> 16) + (s & 0xffff); s += s >> 16
    return ~s & 0xffff
ident = os.getpid() & 0xffff
body = b"pushgrid-netns"
packet = struct.pack("!BBHHH", 8, 0, 0, ident, 1) + body
packet = packet[:2] + struct.pack("!H", checksum(packet)) + packet[4:]
s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
s.settimeout(float(sys.argv[2]))
try:
    s.sendto(packet, (sys.argv[1], 0))
    deadline = time.monotonic() + float(sys.argv[2])
    while time.monotonic() < deadline:
        data, (src, _) = s.recvfrom(1024)
        icmp = data[(data[0] & 0x0f) * 4:]
        if src == sys.argv[1] and icmp[0] == 0 and struct.unpack("!H", icmp[4:6])[0] == ident:
            sys.exit(0)
except (socket.timeout, TimeoutError, OSError):
    pass
sys.exit(1)
"""
