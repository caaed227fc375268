"""The one config loader: every setting is an Ice property, whoever reads it.

Servers get their properties from the config file IceGrid's node writes for them; tools and
tests load the run directory's `pushgrid.cfg`, which `pushgrid up` writes with the same names.
Either way the settings below are built from an `Ice.Properties` by the same code.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

import Ice

from services.common import limits


class InvalidInternalHost(ValueError):
    """An address internal endpoints may not listen on; str() says why."""


def check_internal_host(host: str) -> str:
    """host, if servers and backends may listen on it: a loopback or private IPv4 address (never
    a public one or every address: only the Glacier2 router faces the outside)."""
    try:
        addr = ipaddress.ip_address(host)
    except ValueError:
        raise InvalidInternalHost(f"internal host {host!r} is not an IPv4 address") from None
    if addr.version != 4 or not (addr.is_loopback or addr.is_private) or addr.is_unspecified:
        raise InvalidInternalHost(f"internal host {host} is not a loopback or private IPv4 address")
    return str(addr)


def load_properties(path: str) -> Ice.Properties:
    """Reads an Ice config file (as `--Ice.Config=path` would)."""
    props = Ice.createProperties()
    props.load(path)
    return props


def _int(props: Ice.Properties, name: str, default: int) -> int:
    return props.getPropertyAsIntWithDefault(name, default)


def _secret(props: Ice.Properties, prefix: str) -> str:
    """A password from the file <prefix>.PasswordFile names (readable by the grid's user only),
    else from <prefix>.Password (a grid deployed before password files)."""
    path = props.getProperty(prefix + ".PasswordFile")
    if path:
        with open(path, encoding="utf-8") as f:
            return f.read().strip()
    return props.getProperty(prefix + ".Password")


@dataclass(frozen=True)
class MySQLSettings:
    """Where DBAgent finds MySQL: writes go to host, reads to read_host (a replica) if set."""

    host: str
    port: int
    user: str
    password: str
    database: str
    read_host: str
    read_port: int
    pool_size: int
    connect_timeout: int
    query_timeout: int

    @classmethod
    def from_properties(cls, props: Ice.Properties) -> MySQLSettings:
        host = props.getPropertyWithDefault("PushGrid.MySQL.Host", "127.0.0.1")
        port = _int(props, "PushGrid.MySQL.Port", 3306)
        return cls(
            host=host,
            port=port,
            user=props.getPropertyWithDefault("PushGrid.MySQL.User", "pushgrid"),
            password=_secret(props, "PushGrid.MySQL"),
            database=props.getPropertyWithDefault("PushGrid.MySQL.Database", "pushgrid"),
            read_host=props.getPropertyWithDefault("PushGrid.MySQL.ReadHost", host),
            read_port=_int(props, "PushGrid.MySQL.ReadPort", port),
            pool_size=_int(props, "PushGrid.MySQL.PoolSize", 8),
            connect_timeout=_int(props, "PushGrid.MySQL.ConnectTimeout", 3),
            query_timeout=_int(props, "PushGrid.MySQL.QueryTimeout", 5),
        )


@dataclass(frozen=True)
class RedisSettings:
    """The Redis Cluster's seed nodes (the client discovers the rest) and its password."""

    nodes: tuple[tuple[str, int], ...]
    timeout: float
    password: str = ""

    @classmethod
    def from_properties(cls, props: Ice.Properties) -> RedisSettings:
        nodes = cls.parse_nodes(props.getPropertyWithDefault("PushGrid.Redis.Nodes", "127.0.0.1:7000"))
        return cls(
            nodes=nodes,
            timeout=_int(props, "PushGrid.Redis.TimeoutMs", 2000) / 1000.0,
            password=_secret(props, "PushGrid.Redis"),
        )

    @staticmethod
    def parse_nodes(text: str) -> tuple[tuple[str, int], ...]:
        """ "host:port host:port" (or comma-separated) as pairs; ValueError names a bad item."""
        nodes = []
        for item in text.replace(",", " ").split():
            host, _, port = item.rpartition(":")
            if not host or not port.isdigit():
                raise ValueError(f"{item!r} is not HOST:PORT")
            nodes.append((host, int(port)))
        return tuple(nodes)


@dataclass(frozen=True)
class KafkaSettings:
    """The Kafka bootstrap servers and the topic names pushgrid uses."""

    bootstrap: str
    tasks_topic: str
    receipts_topic: str

    @classmethod
    def from_properties(cls, props: Ice.Properties) -> KafkaSettings:
        return cls(
            bootstrap=props.getPropertyWithDefault("PushGrid.Kafka.Bootstrap", "127.0.0.1:9092"),
            tasks_topic=props.getPropertyWithDefault("PushGrid.Kafka.TasksTopic", "pushgrid.tasks"),
            receipts_topic=props.getPropertyWithDefault("PushGrid.Kafka.ReceiptsTopic", "pushgrid.receipts"),
        )


@dataclass(frozen=True)
class STCSettings:
    """Who one STC process is (its Ice identity is its id) and where its devices connect."""

    stc_id: str
    node: str
    device_host: str
    device_port: int
    # registrations a second and at most at once, per address and per app (the operator's)
    registrations_per_address: tuple[float, int] = limits.REGISTRATIONS_PER_ADDRESS
    registrations_per_app: tuple[float, int] = limits.REGISTRATIONS_PER_APP

    @classmethod
    def from_properties(cls, props: Ice.Properties) -> STCSettings:
        def rate(name: str, default: tuple[float, int]) -> tuple[float, int]:
            per_second = _int(props, f"PushGrid.STC.{name}PerSecond", int(default[0]))
            burst = _int(props, f"PushGrid.STC.{name}Burst", default[1])
            if per_second <= 0 or burst <= 0:
                raise ValueError(f"PushGrid.STC.{name}PerSecond and ...Burst must be more than 0")
            return float(per_second), burst

        return cls(
            stc_id=props.getPropertyWithDefault("PushGrid.STC.Id", "STC"),
            node=props.getProperty("PushGrid.STC.Node"),
            device_host=props.getPropertyWithDefault("PushGrid.STC.DeviceHost", "127.0.0.1"),
            device_port=_int(props, "PushGrid.STC.DevicePort", 8081),
            registrations_per_address=rate("RegistrationsPerAddress", limits.REGISTRATIONS_PER_ADDRESS),
            registrations_per_app=rate("RegistrationsPerApp", limits.REGISTRATIONS_PER_APP),
        )


@dataclass(frozen=True)
class CallTimeouts:
    """How long a server waits for another service's reply, in ms (Ice invocation timeouts).

    TagAlias gets longer: one audience page may resolve up to limits.PAGE_MAX devices. Push (the
    partners' gateway calling it) longer than DBAgent, since Push waits for DBAgent itself and its
    own Unavailable should reach the partner first; past it, the partner hears Unavailable("push"):
    the push may or may not have been accepted (a Push replica cut off from the network).
    """

    dbagent_ms: int
    tagalias_ms: int
    push_ms: int

    @classmethod
    def from_properties(cls, props: Ice.Properties) -> CallTimeouts:
        return cls(
            dbagent_ms=_int(props, "PushGrid.Timeout.DBAgentMs", 10_000),
            tagalias_ms=_int(props, "PushGrid.Timeout.TagAliasMs", 30_000),
            push_ms=_int(props, "PushGrid.Timeout.PushMs", 15_000),
        )


@dataclass(frozen=True)
class PushSettings:
    """One Push replica: worker_id goes into the msg ids it draws, so replicas never collide."""

    worker_id: int

    @classmethod
    def from_properties(cls, props: Ice.Properties) -> PushSettings:
        return cls(worker_id=_int(props, "PushGrid.Push.WorkerId", 0))


@dataclass(frozen=True)
class DispatcherSettings:
    """One dispatcher: its id (Kafka client id, checkpoint owner), its audience page size, and
    how many days reports are kept after their message expires (the operator's retention)."""

    dispatcher_id: str
    page_size: int
    report_days: float = limits.REPORT_RETENTION_DAYS

    @classmethod
    def from_properties(cls, props: Ice.Properties) -> DispatcherSettings:
        days = props.getPropertyWithDefault("PushGrid.Retention.ReportDays", str(limits.REPORT_RETENTION_DAYS))
        try:
            report_days = float(days)
        except ValueError:
            raise ValueError(f"PushGrid.Retention.ReportDays must be a number of days, not {days!r}") from None
        if not report_days > 0:
            raise ValueError(f"PushGrid.Retention.ReportDays must be more than 0, not {days!r}")
        return cls(
            dispatcher_id=props.getPropertyWithDefault("PushGrid.Dispatcher.Id", "Dispatcher"),
            page_size=_int(props, "PushGrid.Dispatcher.PageSize", limits.DISPATCH_PAGE),
            report_days=report_days,
        )


@dataclass(frozen=True)
class ConsoleSettings:
    """The operators' console: where it listens (the grid's internal address; the descriptor
    gives ${bind}), which application it shows, and how long a login lasts unused."""

    host: str
    port: int
    application: str
    idle_seconds: int

    @classmethod
    def from_properties(cls, props: Ice.Properties) -> ConsoleSettings:
        idle = _int(props, "PushGrid.Console.IdleSeconds", 900)
        if idle <= 0:
            raise ValueError(f"PushGrid.Console.IdleSeconds must be more than 0, not {idle}")
        return cls(
            host=props.getPropertyWithDefault("PushGrid.Console.Host", "127.0.0.1"),
            port=_int(props, "PushGrid.Console.Port", 0),
            application=props.getPropertyWithDefault("PushGrid.Console.Application", "pushgrid"),
            idle_seconds=idle,
        )
